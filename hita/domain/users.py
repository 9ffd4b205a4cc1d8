"""User records, the actors that act on them, and list queries."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Final

from hita.domain.roles import Role
from hita.domain.timefmt import iso_utc, iso_utc_or_none
from hita.domain.typedefs import JsonDict

DEFAULT_PAGE_SIZE: Final = 20
MAX_PAGE_SIZE: Final = 100
MAX_LIST_OFFSET_ROWS: Final = 10_000  # deepest row a page may start at: OFFSET cost is linear
# The last page: page 101 of 100 rows starts 10 000 rows deep. One bound for every
# page size, so that an OpenAPI document (one `maximum` per parameter) can state it.
MAX_PAGE: Final = MAX_LIST_OFFSET_ROWS // MAX_PAGE_SIZE + 1


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified caller: the subject of a token that is still valid.
    ``issued_at`` is the token's ``iat`` as the API writes times (ISO 8601 UTC,
    fixed width, so that it compares as text with ``password_changed_at``)."""

    user_id: str
    role: Role
    issued_at: str = ""


@dataclass(frozen=True, slots=True)
class Standing:
    """What a user's tokens may do now: act as ``user_id`` with ``role`` if
    issued at or after ``password_changed_at`` (as the API writes times; ""
    when never changed)."""

    user_id: str
    role: Role
    password_changed_at: str = ""

    def admits(self, principal: Principal) -> bool:
        return (
            principal.user_id == self.user_id
            and principal.role is self.role
            and principal.issued_at >= self.password_changed_at
        )


@dataclass(frozen=True, slots=True)
class Operator:
    """Whoever runs the command line on the server: above every role. Only the
    CLI builds one; it is how the first superadmin of a deployment is made."""


Actor = Principal | Operator


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A user as stored, without the password hash."""

    id: str
    username: str
    email: str
    full_name: str
    role: Role
    is_active: bool
    points: int
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None
    password_changed_at: datetime | None = None
    permissions: tuple[str, ...] = ()

    def summary_json(self) -> JsonDict:
        """The list item shape: no permissions, no last login."""
        return {
            "id": self.id,
            "username": self.username,
            "email": self.email,
            "full_name": self.full_name,
            "role": self.role.value,
            "is_active": self.is_active,
            "points": self.points,
            "created_at": iso_utc(self.created_at),
            "updated_at": iso_utc(self.updated_at),
        }

    def to_json(self) -> JsonDict:
        """The full user of ``GET /v1.0/user/{user_id}``."""
        return {
            **self.summary_json(),
            "permissions": list(self.permissions),
            "last_login_at": iso_utc_or_none(self.last_login_at),
            "password_changed_at": iso_utc_or_none(self.password_changed_at),
        }


@dataclass(frozen=True, slots=True)
class Credentials:
    """What login needs; the only shape that carries a password hash."""

    user_id: str
    role: Role
    is_active: bool
    password_hash: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class NewUser:
    username: str
    email: str
    full_name: str
    password: str = field(repr=False)
    role: Role = Role.USER
    is_active: bool = True


@dataclass(frozen=True, slots=True)
class UserChanges:
    """The fields a PUT or PATCH sets; None leaves a field as it is."""

    username: str | None = None
    email: str | None = None
    full_name: str | None = None
    password: str | None = field(default=None, repr=False)
    role: Role | None = None
    is_active: bool | None = None

    def changed_fields(self, current: UserRecord) -> frozenset[str]:
        """Names whose new value differs from ``current`` (a password always counts)."""
        changed = set()
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name == "password" or value != getattr(current, f.name):
                changed.add(f.name)
        return frozenset(changed)


@dataclass(frozen=True, slots=True)
class UserListQuery:
    """Filters and page of ``GET /v1.0/user/list`` (a cache keys on these values)."""

    page: int = 1
    page_size: int = DEFAULT_PAGE_SIZE
    role: Role | None = None
    is_active: bool | None = None
    search: str | None = None

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size


def pagination(page: int, page_size: int, total: int) -> JsonDict:
    return {
        "page": page,
        "page_size": page_size,
        "total": total,
        "pages": (total + page_size - 1) // page_size,
    }
