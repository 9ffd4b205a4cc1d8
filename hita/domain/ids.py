"""User ids: 10-digit numeric strings drawn at random (never sequential)."""

from __future__ import annotations

import re
import secrets
from typing import Final, TypeGuard

USER_ID_DIGITS: Final = 10
_LOWEST: Final = 10 ** (USER_ID_DIGITS - 1)  # no leading zero: ids survive being read as numbers
USER_ID_PATTERN: Final = r"[0-9]{10}"  # [0-9], not \d: no other scripts' digits
_USER_ID_RE: Final = re.compile(USER_ID_PATTERN)


def new_user_id() -> str:
    return str(_LOWEST + secrets.randbelow(9 * _LOWEST))


def is_user_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _USER_ID_RE.fullmatch(value) is not None
