"""Roles, lowest to highest; a higher role has every right of a lower one."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    USER = "user"
    ADMIN = "admin"
    SUPERADMIN = "superadmin"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def at_least(self, other: Role) -> bool:
        return self.rank >= other.rank


_RANKS = {Role.USER: 0, Role.ADMIN: 1, Role.SUPERADMIN: 2}
