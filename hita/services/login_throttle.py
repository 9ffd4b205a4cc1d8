"""Throttling of failed logins, per username and per client address.

Each failed login counts once against the username (lower-cased, hashed: the
same for a user that exists and one that does not, so the throttle tells no
one which usernames exist) and once against the client address, in windows of
``window_s``. While either count is at its limit, a login is refused at once
with ``LoginThrottled`` (429 with ``Retry-After``), whatever the password. A
successful login clears its username's count.

The counts live in Redis, shared by every instance. When Redis cannot be
reached they are kept in this process instead, in a table of at most
``local_max_keys`` entries (the oldest go first), so guessing stays slow.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from hita.cache.counters import Count, WindowCounters
from hita.config import LoginThrottleConfig
from hita.errors import CacheUnavailable, HitaError

log = logging.getLogger(__name__)

KEY_FAMILY = "login_throttle"


class LoginThrottled(HitaError):
    message = "Too many failed logins; try again later"

    def __init__(self, retry_after_s: int) -> None:
        super().__init__()
        self.retry_after_s = retry_after_s


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class LocalCounters:
    """The fallback: window counters in this process, bounded in size."""

    def __init__(self, max_keys: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_keys = max_keys
        self._clock = clock
        self._entries: OrderedDict[str, tuple[int, float]] = OrderedDict()  # count, expiry

    def __len__(self) -> int:
        return len(self._entries)

    def _live(self, name: str) -> tuple[int, float] | None:
        entry = self._entries.get(name)
        if entry is not None and entry[1] <= self._clock():
            del self._entries[name]
            return None
        return entry

    def add(self, name: str, window_s: int) -> Count:
        now = self._clock()
        entry = self._live(name)
        count, expires = (entry[0] + 1, entry[1]) if entry else (1, now + window_s)
        self._entries[name] = (count, expires)
        self._entries.move_to_end(name)
        while len(self._entries) > self._max_keys:
            self._entries.popitem(last=False)
        return Count(count, expires - now)

    def read(self, name: str) -> Count:
        entry = self._live(name)
        return Count(0, 0.0) if entry is None else Count(entry[0], entry[1] - self._clock())

    def clear(self, name: str) -> None:
        self._entries.pop(name, None)


class LoginThrottle:
    def __init__(
        self,
        counters: WindowCounters,
        config: LoginThrottleConfig,
        local: LocalCounters | None = None,
    ) -> None:
        self._counters = counters
        self._config = config
        self.local = local or LocalCounters(config.local_max_keys)

    def _names(self, username: str, address: str) -> list[tuple[str, int]]:
        c = self._config
        return [
            (f"{KEY_FAMILY}:user:{_digest(username.lower())}", c.max_failures_per_user),
            (f"{KEY_FAMILY}:addr:{_digest(address)}", c.max_failures_per_address),
        ]

    async def check(self, username: str, address: str) -> None:
        """Raise ``LoginThrottled`` while the username or the address is at its limit."""
        if not self._config.enabled:
            return
        names = self._names(username, address)
        # Counts kept here while Redis was away still hold once it is back.
        counts = [self.local.read(name) for name, _ in names]
        try:
            shared = await self._counters.read([name for name, _ in names])
        except CacheUnavailable:
            shared = counts
        counts = [max(a, b, key=lambda c: c.value) for a, b in zip(counts, shared, strict=True)]
        blocked = [
            count.retry_after_s
            for count, (_, limit) in zip(counts, names, strict=True)
            if count.value >= limit
        ]
        if blocked:
            raise LoginThrottled(max(blocked))

    async def failed(self, username: str, address: str) -> None:
        if not self._config.enabled:
            return
        for name, _ in self._names(username, address):
            try:
                await self._counters.add(name, self._config.window_s)
            except CacheUnavailable:
                self.local.add(name, self._config.window_s)

    async def succeeded(self, username: str) -> None:
        if not self._config.enabled:
            return
        name, _ = self._names(username, "")[0]
        self.local.clear(name)
        try:
            await self._counters.clear(name)
        except CacheUnavailable:
            log.warning("login throttle: could not clear a username's count (Redis down)")
