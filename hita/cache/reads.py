"""Reading an entry from Redis: plain GETs when it is there (a hit costs no
script), the READ script (generation, lease) when it is not; a read ahead
shares one MGET between a request's reads. Every read is judged against the
invalidations that arrived while it was in flight."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final, cast

from redis.asyncio import Redis

from hita.cache.codec import decode, new_token
from hita.cache.core import _Failed, text
from hita.cache.keys import AnyKey, Key
from hita.cache.outcome import HIT, MISSED, Read, hit
from hita.cache.xfetch import EarlyRefresh

MAX_GENERATIONS_KEPT: Final = 1_024  # namespaces whose generation is remembered


@dataclass(slots=True)
class _Ahead:
    """An answer read ahead, with what was known when it was asked for."""

    raw: bytes | None
    epoch: int  # the pending invalidations' epoch when the read was sent
    began: int | None  # L1's sequence number then
    uses: int  # reads it may still serve


# Answers read ahead by a task (one request), for that task alone: each is
# used once, by the task's next read of its key. aiohttp runs every request in
# its own task, so nothing read ahead outlives its request; a task started from
# it copies the variable but is not its owner, so it reads for itself.
_AHEAD: ContextVar[tuple[asyncio.Task[Any], dict[str, _Ahead]] | None] = ContextVar(
    "hita_cache_read_ahead", default=None
)


class Reads(EarlyRefresh):
    _generations: dict[str, str]  # generation key -> the generation last seen

    async def read_ahead(self, keys: Sequence[Key]) -> None:
        """Read ``keys`` in one round trip (one MGET) for this task's next
        reads of them, so that a request's token check and its data read share
        one round trip: a key listed twice serves two reads. Keys that L1
        holds, suspect keys and a failed read are left to those reads; on
        Redis Cluster, whose keys sit in different slots, nothing is read ahead."""
        if len(keys) < 2 or not isinstance(self._redis, Redis):
            return  # one read: its own GET is the same round trip
        near = self._usable_near(drain=False)  # what L1 holds; its reads drain and check
        uses: dict[str, int] = {}
        for key in keys:
            if not self.pending.covers(key) and (near is None or key.redis_key not in near):
                uses[key.redis_key] = uses.get(key.redis_key, 0) + 1
        if sum(uses.values()) < 2:
            return
        epoch, began = self.pending.epoch, self._near_fence()
        names = list(uses)
        replies = await self._call(
            keys[0].cache_type, "get", lambda: self._read_command("MGET", *names)
        )
        task = asyncio.current_task()
        if isinstance(replies, _Failed) or task is None:
            return
        owned = _AHEAD.get()
        if owned is None or owned[0] is not task:
            owned = (task, {})
            _AHEAD.set(owned)
        for name, raw in zip(names, cast(list[bytes | None], replies), strict=True):
            owned[1][name] = _Ahead(raw, epoch, began, uses[name])

    async def _read(self, key: AnyKey, *, lease: bool, check: bool = True) -> Read | None:
        """One entry: plain GETs when it is there (a hit costs no script), the
        READ script (generation, lease) when it is not."""
        taken = _take_ahead(key)
        read: Read | _Failed | None
        if taken is not None:  # read ahead: judged as a read sent back then
            epoch, began = taken.epoch, taken.began
            read = hit(cast(Key, key).redis_key, taken.raw)
        else:
            epoch, began = self.pending.epoch, self._near_fence()
            read = await self._call(key.cache_type, "get", lambda: self._read_plain(key))
            if isinstance(read, _Failed):
                return None
        if read is None:
            token = new_token() if lease else ""
            scripted = await self._call(
                key.cache_type, "read", lambda: self._read_scripted(key, token)
            )
            if isinstance(scripted, _Failed):
                if token:  # the script may still run, or have run: its lease goes back
                    self._spawn(self._release_later(key, Read(MISSED, "", token=token)))
                return None
            read = scripted
        if check and self.pending.epoch != epoch and self.pending.covers(key):
            # An invalidation of this entry arrived while the read was in flight.
            if read.status == MISSED and read.token:
                self._spawn(self._release(key, read))
            return None
        self._keep_near(key, read, began)
        return read

    async def _read_plain(self, key: AnyKey) -> Read | None:
        """A hit in one plain command (its time to live is in the entry's
        header), or None. A namespaced key is read under the generation last
        seen here, with the namespace's current generation beside it in one
        MGET: a mismatch means the generation moved."""
        raw: bytes | None
        if isinstance(key, Key):
            data_key, generation = key.redis_key, None
            raw = cast(bytes | None, await self._read_command("GET", data_key))
        else:
            generation_key = key.namespace.generation_key
            generation = self._generations.get(generation_key)
            if generation is None:
                return None
            data_key = key.namespace.data_key(generation, key.suffix)
            # One command, one slot: the namespace's hash tag holds both keys.
            replies = await self._read_command("MGET", generation_key, data_key)
            current, raw = cast(list[bytes | None], replies)
            if current is None or text(current) != generation:
                return None
        return hit(data_key, raw, generation)

    async def _read_scripted(self, key: AnyKey, token: str) -> Read:
        lease_ms = str(self.config.lease_ttl_ms)
        if isinstance(key, Key):
            keys, args = [key.redis_key], ["", "", "", token, lease_ms]
        else:
            ns = key.namespace
            keys = [ns.generation_key]
            args = [ns.data_prefix, key.suffix, new_token(), token, lease_ms]
        result = await self._read_script(keys=keys, args=args)
        status = int(result[0])
        generation: str | None = None
        if isinstance(key, Key):
            data_key = key.redis_key
        else:
            generation = text(result[1])
            self._remember_generation(key.namespace.generation_key, generation)
            data_key = key.namespace.data_key(generation, key.suffix)
        if status == HIT:
            return Read(
                HIT,
                data_key,
                entry=decode(result[2]),
                pttl_ms=int(result[3]),
                raw=result[2],
                generation=generation,
            )
        return Read(status, data_key, token=text(result[2]) if len(result) > 2 else "")

    def _remember_generation(self, generation_key: str, generation: str) -> None:
        if len(self._generations) >= MAX_GENERATIONS_KEPT:
            self._generations.clear()
        self._generations[generation_key] = generation


def _take_ahead(key: AnyKey) -> _Ahead | None:
    """This task's answer read ahead for ``key``, used once per listing."""
    owned = _AHEAD.get()
    if owned is None or not isinstance(key, Key) or owned[0] is not asyncio.current_task():
        return None
    taken = owned[1].get(key.redis_key)
    if taken is not None:
        taken.uses -= 1
        if not taken.uses:
            del owned[1][key.redis_key]
    return taken
