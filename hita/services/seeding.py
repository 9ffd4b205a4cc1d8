"""Realistic demo data: guests and staff with points histories and permissions.

Rows are generated in memory and streamed into PostgreSQL with COPY inside
one transaction. Every seeded user shares one demo password, hashed once.
Each user's ledger is consistent: ``balance_after`` runs over the rows in
time order, never below zero, and ``users.points`` is the sum of the ledger.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from hita.db.bulk import BulkLoader
from hita.db.database import Database
from hita.domain.ids import USER_ID_DIGITS
from hita.domain.roles import Role

Row = tuple[Any, ...]
# Wraps a stream of rows, e.g. in a progress bar: (rows, label, count) -> rows.
Track = Callable[[Iterable[Row], str, int], Iterable[Row]]

HISTORY_DAYS: Final = 730  # sign-ups spread over the last two years
MAX_LEDGER_ROWS_PER_USER: Final = 6
DEMO_PASSWORD_BYTES: Final = 12
ID_LOW: Final = 10 ** (USER_ID_DIGITS - 1)
DEMO_ACCOUNTS: Final = (
    ("demo.superadmin", Role.SUPERADMIN),
    ("demo.admin", Role.ADMIN),
    ("demo.user", Role.USER),
)
_ROLES: Final = (Role.USER, Role.ADMIN, Role.SUPERADMIN)
_ROLE_WEIGHTS: Final = (0.965, 0.03, 0.005)
_FIRST: Final = (
    "anna", "ben", "carla", "david", "elena", "farid", "grace", "hugo", "ines", "jonas",
    "kaito", "lea", "marco", "nadia", "omar", "paula", "quentin", "rosa", "sven", "tara",
    "ugo", "vera", "wen", "ximena", "yusuf", "zoe", "amara", "bruno", "chloe", "dmitri",
)  # fmt: skip
_LAST: Final = (
    "smith", "garcia", "müller", "rossi", "dubois", "silva", "novak", "kowalski", "tanaka",
    "kim", "nguyen", "okafor", "haddad", "jensen", "costa", "ivanova", "larsen", "moreau",
    "schmidt", "fischer", "weber", "bianchi", "santos", "ali", "khan", "lopez", "brown",
)  # fmt: skip
_DOMAINS: Final = ("mail.example", "guest.example", "travel.example", "hotel.example")
_EARN: Final = ("hotel stay", "restaurant", "spa visit", "welcome bonus", "referral", "event")
_SPEND: Final = ("room upgrade", "free night", "breakfast voucher", "late checkout", "spa credit")
_PERMISSIONS: Final = (
    "reservations.read", "reservations.write", "rooms.read", "rooms.write",
    "billing.read", "billing.write", "housekeeping.write", "reports.read", "guests.read",
)  # fmt: skip


@dataclass
class Population:
    users: list[Row] = field(default_factory=list)
    ledger: list[Row] = field(default_factory=list)
    permissions: list[Row] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SeedResult:
    users: int
    ledger_rows: int
    permissions: int
    password: str
    logins: tuple[tuple[str, Role], ...]


def _fresh_ids(rng: random.Random, count: int, taken: set[str]) -> list[str]:
    """``count`` new random ids, in the order drawn (reproducible for a seeded rng)."""
    ids: list[str] = []
    while len(ids) < count:
        candidate = str(ID_LOW + rng.randrange(9 * ID_LOW))
        if candidate not in taken:
            taken.add(candidate)
            ids.append(candidate)
    return ids


def _ledger(
    rng: random.Random, user_id: str, joined: datetime, now: datetime
) -> tuple[list[Row], datetime]:
    """A consistent history: (rows oldest first, time of the last one)."""
    span = (now - joined).total_seconds()
    moments = sorted(
        joined + timedelta(seconds=rng.uniform(0, span))
        for _ in range(rng.randrange(MAX_LEDGER_ROWS_PER_USER + 1))
    )
    rows: list[Row] = []
    balance = 0
    for moment in moments:
        amount = rng.choice((50, 100, 150, 250, 500, 1000))
        if balance >= amount and rng.random() < 0.4:
            balance -= amount
            rows.append((user_id, -amount, rng.choice(_SPEND), balance, moment))
        else:
            balance += amount
            rows.append((user_id, amount, rng.choice(_EARN), balance, moment))
    return rows, moments[-1] if moments else joined


def generate(
    count: int, password_hash: str, taken: set[str], start: int, rng: random.Random
) -> Population:
    """``count`` users numbered from ``start`` (usernames stay unique across runs)."""
    now = datetime.now(UTC)
    population = Population()
    for n, user_id in enumerate(_fresh_ids(rng, count, taken), start=start):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        name = f"{first}.{last}{n}".replace("ü", "u")
        joined = now - timedelta(seconds=rng.uniform(0, HISTORY_DAYS * 86_400))
        ledger, last_change = _ledger(rng, user_id, joined, now)
        role = rng.choices(_ROLES, _ROLE_WEIGHTS)[0]
        last_login = None
        if rng.random() < 0.8:
            last_login = joined + (now - joined) * rng.random()
        population.users.append(
            (
                user_id,
                name,
                f"{name}@{rng.choice(_DOMAINS)}",
                f"{first.title()} {last.title()}",
                password_hash,
                role.value,
                rng.random() < 0.92,
                ledger[-1][3] if ledger else 0,
                joined,
                last_change,
                last_login,
            )
        )
        population.ledger.extend(ledger)
        grants = 0 if role is Role.USER and rng.random() < 0.7 else rng.randrange(1, 4)
        for permission in rng.sample(_PERMISSIONS, grants):
            population.permissions.append((user_id, permission, joined))
    return population


def _untracked(rows: Iterable[Row], label: str, count: int) -> Iterable[Row]:
    return rows


def new_demo_password() -> str:
    return secrets.token_urlsafe(DEMO_PASSWORD_BYTES)


async def seed(
    database: Database,
    count: int,
    password: str,
    password_hash: str,
    *,
    track: Track = _untracked,
    rng: random.Random | None = None,
) -> SeedResult:
    """Add ``count`` users with histories, and the demo logins, in one transaction."""
    rng = rng or random.Random()  # noqa: S311 - demo data, not secrets
    async with database.transaction() as conn:
        loader = BulkLoader(conn)
        taken = await loader.user_ids()
        population = generate(count, password_hash, taken, len(taken) + 1, rng)
        await loader.copy_users(track(population.users, "users", len(population.users)))
        await loader.copy_ledger(
            track(population.ledger, "points_transactions", len(population.ledger))
        )
        await loader.copy_permissions(
            track(population.permissions, "user_permissions", len(population.permissions))
        )
        for (username, role), user_id in zip(
            DEMO_ACCOUNTS, _fresh_ids(rng, len(DEMO_ACCOUNTS), taken), strict=True
        ):
            await loader.upsert_demo_account(user_id, username, role.value, password_hash)
    async with database.connection() as conn:  # VACUUM cannot run in a transaction
        await BulkLoader(conn).analyze()
    return SeedResult(
        users=len(population.users),
        ledger_rows=len(population.ledger),
        permissions=len(population.permissions),
        password=password,
        logins=DEMO_ACCOUNTS,
    )


def logins_text(result: SeedResult, base_url: str) -> str:
    """What ``hita seed`` and the first ``make run`` print, and demo-logins.txt holds."""
    lines = [f"Demo logins (local use only), password: {result.password}"]
    lines += [f"  {role.value:<10}  {username}" for username, role in result.logins]
    lines.append(
        f"  token: curl -s -X POST {base_url}/v1.0/auth/login"
        " -H 'Content-Type: application/json'"
        f' -d \'{{"username": "demo.admin", "password": "{result.password}"}}\''
    )
    return "\n".join(lines) + "\n"
