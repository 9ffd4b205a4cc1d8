"""What the sentinels say about the master: where it is, whether it has a
replica they could promote, and word of a failover as it happens.

One background task subscribes to ``+switch-master`` on a sentinel (the next
one in turn after a failure) and, on each such message, on a WAIT that fell
short, and every ``REFRESH_S``, asks again: the master's address through the
pool (whose listeners hear of a change before any command reaches the new
master), of one sentinel the master's run id and, of every sentinel, the
replicas they could ever promote: as many as the sentinel that lists most
lists, held down or not (a frozen replica comes back with its memory and can
be promoted), but those of ``replica-priority 0``. Until the first answer, a
replica is assumed: invalidations WAIT for one (the safe side).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import RedisError

from hita.cache.connection import BoundedRedisCluster, BoundedSentinelPool, RedisClient
from hita.cache.replication import ONE, ClusterReplicas, NoReplicas, Replicas

log = logging.getLogger(__name__)

SWITCH_MASTER: Final = "+switch-master"
REFRESH_S: Final = 1.0  # the replicas are asked about this often, at least
POLL_S: Final = 0.05  # how long one wait for a sentinel message lasts
RETRY_S: Final = 0.5  # pause before trying the next sentinel


class SentinelWatch:
    def __init__(self, pool: BoundedSentinelPool) -> None:
        self._pool = pool
        self.replicas = ONE  # replicas the sentinels could promote, as last heard
        self.master_run_id = ""  # the run id of the master they name, as last heard
        self.switches = 0  # +switch-master messages about our master
        self._kicked = False
        self._turn = 0

    @property
    def master_name(self) -> str:
        return str(self._pool.service_name)

    def wanted(self, slot: int | None) -> int:
        return ONE if self.replicas else 0

    def missed(self) -> None:
        self._kicked = True

    def sole_master(self) -> str:
        """Only the master the sentinels name acknowledges alone (not an old
        master restarted empty that a lagging sentinel still names)."""
        return self.master_run_id

    async def refresh(self) -> None:
        """Ask the sentinels again (errors propagate; the last answer stands)."""
        await self._pool.get_master_address()
        manager = self._pool.sentinel_manager
        sentinel = manager.sentinels[self._turn % len(manager.sentinels)]
        state = await sentinel.sentinel_master(self.master_name)
        self.replicas = await self._most_replicas()
        self.master_run_id = str(state.get("runid") or "")  # one sentinel's one answer

    async def _most_replicas(self) -> int:
        """The most replicas any sentinel lists (the one that leads a failover
        promotes from its own list; one reset or new may list fewer)."""
        asked = self._pool.sentinel_manager.sentinels
        answers = await asyncio.gather(
            *(s.sentinel_slaves(self.master_name) for s in asked), return_exceptions=True
        )
        counts = [promotable(a) for a in answers if not isinstance(a, BaseException)]
        if not counts:
            raise RedisError("no sentinel listed the replicas")
        return max(counts)

    async def run_forever(self) -> None:
        while True:
            try:
                await self._follow()
            except (RedisError, OSError) as exc:
                log.debug("sentinel watch: %s; trying the next sentinel", exc.__class__.__name__)
            self._turn += 1
            await asyncio.sleep(RETRY_S)

    async def _follow(self) -> None:
        manager = self._pool.sentinel_manager
        pubsub = manager.sentinels[self._turn % len(manager.sentinels)].pubsub()
        try:
            await pubsub.subscribe(SWITCH_MASTER)
            while True:
                self._kicked = False
                await self.refresh()
                due = time.monotonic() + REFRESH_S
                while time.monotonic() < due and not self._kicked:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=POLL_S
                    )
                    if message is not None and self._about_us(message.get("data")):
                        self.switches += 1
                        log.warning("the sentinels switched the master: %s", message["data"])
                        break
        finally:
            await pubsub.aclose()

    def _about_us(self, data: object) -> bool:
        """``<name> <old ip> <old port> <new ip> <new port>``."""
        text = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
        return text.split(" ", 1)[0] == self.master_name


def promotable(replicas: list[dict[str, Any]]) -> int:
    """The replicas, as ``SENTINEL REPLICAS`` lists them, that the sentinels
    could promote some day: held down (``s_down``, disconnected) or not, all
    but those whose ``replica-priority`` is 0."""
    return sum(1 for replica in replicas if replica.get("slave-priority", 1) != 0)


def replicas_for(redis: RedisClient) -> Replicas:
    """Who says whether a master has a replica to WAIT for, on ``redis``'s
    topology: the slot map (Cluster), the sentinels (Sentinel), nobody (one
    server, which nothing can be promoted in place of)."""
    if isinstance(redis, BoundedRedisCluster):
        return ClusterReplicas(redis)
    if isinstance(redis, Redis) and isinstance(redis.connection_pool, BoundedSentinelPool):
        return SentinelWatch(redis.connection_pool)
    return NoReplicas()
