"""``login_attempts``: fixed-window counters of login attempts, in PostgreSQL.

Counting is one statement for the username and the address together, done
before the password is checked: concurrent attempts each see their own count
(the row lock orders them), across every worker and instance. The username
is folded by PostgreSQL's ``lower()``, as the login lookup folds it, so no
spelling that reaches the same user escapes its count.

No two statements here can wait for each other in a cycle (PostgreSQL would
abort one with "deadlock detected", a plain 500 for a login): a count locks
its two rows in the order of their names; expired windows are removed apart,
by a statement that skips rows locked by others instead of waiting for them;
a successful login's two changes are two statements, each on one row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from hita.db.database import Queryable

EXPIRED_PER_ATTEMPT: Final = 10  # expired windows removed by each count

_COUNT: Final = """
WITH names(name) AS (
    VALUES ('user:' || encode(sha256(convert_to(lower($1), 'UTF8')), 'hex')), ('addr:' || $2)
)
INSERT INTO login_attempts AS a (name, attempts, window_ends)
SELECT name, 1, now() + make_interval(secs => $3) FROM names ORDER BY name
ON CONFLICT (name) DO UPDATE SET
    attempts = CASE WHEN a.window_ends <= now() THEN 1 ELSE a.attempts + 1 END,
    window_ends = CASE WHEN a.window_ends <= now() THEN EXCLUDED.window_ends
                       ELSE a.window_ends END
RETURNING name, attempts, EXTRACT(EPOCH FROM window_ends - now())::float8 AS left_s
"""

_FORGET_EXPIRED: Final = """
DELETE FROM login_attempts WHERE name IN (
    SELECT name FROM login_attempts WHERE window_ends < now()
    LIMIT $1 FOR UPDATE SKIP LOCKED)
"""


@dataclass(frozen=True, slots=True)
class Window:
    name: str
    attempts: int  # this attempt included
    left_s: float  # until the window closes


@dataclass(frozen=True, slots=True)
class Counted:
    """This attempt's place in its username's and its address's windows."""

    user: Window
    address: Window


class LoginAttempts:
    def __init__(self, db: Queryable) -> None:
        self._db = db

    async def count(self, username: str, address: str, window_s: int) -> Counted:
        rows = await self._db.fetch(_COUNT, username, address, window_s)
        await self._db.execute(_FORGET_EXPIRED, EXPIRED_PER_ATTEMPT)
        windows = {
            row["name"].partition(":")[0]: Window(
                row["name"], int(row["attempts"]), float(row["left_s"])
            )
            for row in rows
        }
        return Counted(windows["user"], windows["addr"])

    async def succeeded(self, counted: Counted) -> None:
        """A right password: the username's window starts over, and this
        attempt no longer counts against the address."""
        await self._db.execute("DELETE FROM login_attempts WHERE name = $1", counted.user.name)
        await self._db.execute(
            "UPDATE login_attempts SET attempts = attempts - 1 WHERE name = $1 AND attempts > 0",
            counted.address.name,
        )
