from __future__ import annotations

import time

from hita.api.auth import VerifiedTokens
from hita.domain.roles import Role
from hita.domain.users import Principal

CALLER = Principal("1234567890", Role.USER)


def test_a_verified_token_is_known_until_its_exp() -> None:
    tokens = VerifiedTokens()
    tokens.put("fresh", CALLER, time.time() + 60)
    tokens.put("expired", CALLER, time.time() - 1)
    assert tokens.get("fresh") == CALLER
    assert tokens.get("expired") is None
    assert tokens.get("never seen") is None
    assert len(tokens) == 1  # the expired one is gone


def test_the_least_recently_used_token_goes_first_past_the_bound() -> None:
    tokens = VerifiedTokens(max_entries=3)
    later = time.time() + 60
    for name in ("a", "b", "c"):
        tokens.put(name, CALLER, later)
    assert tokens.get("a") == CALLER  # "b" is now the oldest
    tokens.put("d", CALLER, later)
    assert len(tokens) == 3
    assert [tokens.get(n) is not None for n in ("a", "b", "c", "d")] == [True, False, True, True]
