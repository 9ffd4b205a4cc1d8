"""Throttling of failed logins, per username and per client address.

Every attempt is counted before its password is checked, against its
username (folded as the login lookup folds it) and its client address, in
windows of ``window_s`` (``hita.db.login_attempts``). An attempt past either
limit is refused with ``LoginThrottled`` (429 with ``Retry-After``) without
checking its password; a right password starts its username's window over
and stops counting against its address, so only failures add up. The same
count holds for a user that exists and one that does not, so the throttle
tells no one which usernames exist.

The counts live in PostgreSQL, which a login needs anyway: one count shared
by every worker and instance, taken atomically, with no Redis in the way.
"""

from __future__ import annotations

import math

from hita.config import LoginThrottleConfig
from hita.db.database import Database
from hita.db.login_attempts import Counted, LoginAttempts
from hita.errors import HitaError


class LoginThrottled(HitaError):
    message = "Too many failed logins; try again later"

    def __init__(self, retry_after_s: int) -> None:
        super().__init__()
        self.retry_after_s = retry_after_s


class LoginThrottle:
    def __init__(self, database: Database, config: LoginThrottleConfig) -> None:
        self._attempts = LoginAttempts(database)
        self._config = config

    async def attempt(self, username: str, address: str) -> Counted | None:
        """Count this attempt; raise ``LoginThrottled`` when it is past a limit.
        None when throttling is off."""
        c = self._config
        if not c.enabled:
            return None
        counted = await self._attempts.count(username, address, c.window_s)
        over = [
            window.left_s
            for window, limit in (
                (counted.user, c.max_failures_per_user),
                (counted.address, c.max_failures_per_address),
            )
            if window.attempts > limit
        ]
        if over:
            raise LoginThrottled(max(1, math.ceil(max(over))))
        return counted

    async def succeeded(self, counted: Counted | None) -> None:
        if counted is not None:
            await self._attempts.succeeded(counted)
