from __future__ import annotations

from hita.cache.keys import AnyKey, KeyBuilder
from hita.cache.pending import Invalidation, PendingInvalidations

KEYS = KeyBuilder()
DETAILS = [KEYS.key("user_details", f"{i:010d}") for i in range(12)]
PAGE = KEYS.namespaced("user_list", page=1)


def family_of(pattern: str) -> str:
    return pattern.partition(":")[0]


def add(pending: PendingInvalidations, invalidation: Invalidation) -> int:
    return pending.add(invalidation, family_of, KEYS.pattern)


def suspects(pending: PendingInvalidations, *keys: AnyKey) -> list[bool]:
    return [pending.covers(key) for key in keys]


def test_keys_beyond_the_bound_collapse_into_their_family_pattern() -> None:
    pending = PendingInvalidations(max_keys=3)
    add(pending, Invalidation(keys=tuple(DETAILS[:3])))
    assert len(pending.keys) == 3
    add(pending, Invalidation(keys=(DETAILS[9],)))
    assert pending.keys == {}
    assert pending.patterns == {"user_details:*": "user_details"}
    add(pending, Invalidation(keys=(DETAILS[10],)))
    assert pending.keys == {}
    assert all(suspects(pending, *DETAILS))  # the whole family is suspect now


def test_a_pattern_covers_the_keys_of_its_family_only() -> None:
    pending = PendingInvalidations(max_keys=10)
    other = KEYS.key("user_service", "f")
    add(pending, Invalidation(keys=(DETAILS[1], other)))
    add(pending, Invalidation(patterns=("user_details:*",)))
    assert list(pending.keys) == ["user_service:f"]
    assert suspects(pending, DETAILS[5], other, PAGE) == [True, True, False]


def test_namespaces_make_every_key_of_theirs_suspect() -> None:
    pending = PendingInvalidations(max_keys=10)
    add(pending, Invalidation(namespaces=(PAGE.namespace,)))
    add(pending, Invalidation(namespaces=(PAGE.namespace,)))
    assert len(pending) == 1
    assert suspects(pending, PAGE, KEYS.namespaced("user_list", page=7), DETAILS[0]) == [
        True,
        True,
        False,
    ]


def test_applying_a_snapshot_keeps_what_was_added_again_since() -> None:
    pending = PendingInvalidations(max_keys=10)
    add(pending, Invalidation(namespaces=(PAGE.namespace,), keys=(DETAILS[0], DETAILS[1])))
    snapshot = pending.snapshot()
    add(pending, Invalidation(keys=(DETAILS[1],)))  # a newer change while the first is applied
    pending.applied(snapshot.invalidation, snapshot.ticket)
    assert suspects(pending, PAGE, DETAILS[0], DETAILS[1]) == [False, False, True]
    snapshot = pending.snapshot()
    pending.applied(snapshot.invalidation, snapshot.ticket)
    assert not pending


def test_a_blind_process_suspects_everything_but_knows_what_was_specific() -> None:
    pending = PendingInvalidations(max_keys=10)
    add(pending, Invalidation(keys=(DETAILS[0],)))
    pending.blind = True
    assert suspects(pending, PAGE, DETAILS[0], DETAILS[1]) == [True, True, True]
    assert [pending.covers_specifically(k) for k in (PAGE, DETAILS[0], DETAILS[1])] == [
        False,
        True,
        False,
    ]


def test_every_addition_moves_the_epoch() -> None:
    pending = PendingInvalidations(max_keys=10)
    first = add(pending, Invalidation(keys=(DETAILS[0],)))
    second = add(pending, Invalidation(keys=(DETAILS[0],)))
    assert second == first + 1 == pending.epoch
