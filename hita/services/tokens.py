"""Access tokens: HS256 JWTs carrying ``sub``, ``role``, ``iat`` and ``exp``.

Verification is aiohttp-jwt's (``hita.api.auth``), with the same pinned
algorithm; ``required_claims_error`` is the check it does not do.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

import jwt

from hita.config import AuthConfig
from hita.constants import JWT_ALGORITHM
from hita.domain.ids import is_user_id
from hita.domain.roles import Role
from hita.domain.timefmt import iso_utc
from hita.domain.users import Principal

REQUIRED_CLAIMS: Final = ("sub", "role", "iat", "exp")
_ROLES: Final = frozenset(r.value for r in Role)


class Tokens:
    def __init__(self, config: AuthConfig) -> None:
        if not config.jwt_secret:
            raise ValueError("no token-signing secret (see hita.devsecret)")
        self._secret = config.jwt_secret
        self.ttl_s = config.jwt_ttl_s

    def issue(self, user_id: str, role: Role, now_ns: int | None = None) -> str:
        issued_at = issued_time(time.time_ns() if now_ns is None else now_ns)
        claims = {
            "sub": user_id,
            "role": role.value,
            "iat": issued_at,
            "exp": issued_at + self.ttl_s,
        }
        return jwt.encode(claims, self._secret, algorithm=JWT_ALGORITHM)


def issued_time(now_ns: int) -> float:
    """``iat`` for a token issued at ``now_ns`` (the system clock in ns): to the
    microsecond, rounded down.

    Down, because PyJWT refuses a token whose ``iat`` is ahead of its clock:
    rounded up (it once was, to the millisecond), a token used within that
    rounding of its issue was refused in the rare case the rounding crossed a
    second. The microsecond is the one ``datetime.now`` gives a password's
    change (``hita.db.users``): the clock's ns, rounded down, so a token issued
    at or after a change is never taken for older (``Standing.admits``). From
    the ns, not from ``time.time()``: a float of the seconds is off by up to a
    tenth of a microsecond and may round to the one before."""
    return (now_ns // 1000) / 1_000_000


def principal_from_claims(claims: Mapping[str, object]) -> Principal | None:
    """The caller named by verified claims, or None when a required claim is
    missing or malformed. PyJWT checks ``exp`` only when present, so a token
    without one would never expire: it is refused here."""
    if any(name not in claims for name in REQUIRED_CLAIMS):
        return None
    sub, role = claims["sub"], claims["role"]
    for name in ("iat", "exp"):
        value = claims[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
    if not is_user_id(sub) or not isinstance(role, str) or role not in _ROLES:
        return None
    assert isinstance(sub, str)  # is_user_id said so
    issued = float(claims["iat"])  # type: ignore[arg-type]  # a number, checked above
    try:
        issued_at = iso_utc(datetime.fromtimestamp(issued, UTC))
    except (OverflowError, OSError, ValueError):
        return None
    return Principal(sub, Role(role), issued_at)
