from __future__ import annotations

import fnmatch
from copy import deepcopy

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from hita.cache.keys import AnyKey, Key, KeyBuilder, Namespace, NamespacedKey
from hita.cache.pending import Invalidation, PendingInvalidations, Snapshot

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


def test_past_its_lease_a_process_suspects_everything_but_knows_what_was_specific() -> None:
    now = [100.0]
    pending = PendingInvalidations(max_keys=10, trusted_until=101.0, clock=lambda: now[0])
    add(pending, Invalidation(keys=(DETAILS[0],)))
    assert suspects(pending, PAGE, DETAILS[0], DETAILS[1]) == [False, True, False]
    now[0] = 101.0
    assert suspects(pending, PAGE, DETAILS[0], DETAILS[1]) == [True, True, True]
    assert [pending.covers_specifically(k) for k in (PAGE, DETAILS[0], DETAILS[1])] == [
        False,
        True,
        False,
    ]


def test_a_key_added_under_a_pending_family_pattern_outlives_the_patterns_older_success() -> None:
    pending = PendingInvalidations(max_keys=10)
    add(pending, Invalidation(patterns=("user_details:*",)))
    older = pending.snapshot()  # being applied: a SCAN + UNLINK in flight
    add(pending, Invalidation(keys=(DETAILS[3],)))  # a newer change to one user
    pending.applied(older.invalidation, older.ticket)
    assert pending.covers(DETAILS[3])  # its own invalidation has not been applied yet
    newer = pending.snapshot()
    pending.applied(newer.invalidation, newer.ticket)
    assert not pending


def test_every_addition_moves_the_epoch() -> None:
    pending = PendingInvalidations(max_keys=10)
    first = add(pending, Invalidation(keys=(DETAILS[0],)))
    second = add(pending, Invalidation(keys=(DETAILS[0],)))
    assert second == first + 1 == pending.epoch


# -- random interleavings of add / snapshot / applied (Hypothesis) ------------------

FAMILY_KEYS = [KEYS.key("user_details", i) for i in ("1000000001", "1000000002", "2000000003")]
OTHER_KEY = KEYS.key("user_service", "f")
LIST_NAMESPACE = PAGE.namespace
WHOLE = "user_details:*"
PARTIAL = "user_details:1*"  # matches the first two keys only
TARGETS: list[object] = [*FAMILY_KEYS, OTHER_KEY, LIST_NAMESPACE, WHOLE, PARTIAL]
PROBES: list[AnyKey] = [*FAMILY_KEYS, OTHER_KEY, PAGE]


def _invalidation(targets: list[object]) -> Invalidation:
    return Invalidation(
        namespaces=tuple(t for t in targets if isinstance(t, Namespace)),
        keys=tuple(t for t in targets if isinstance(t, Key)),
        patterns=tuple(t for t in targets if isinstance(t, str)),
    )


def _deletes(invalidation: Invalidation, target: object) -> bool:
    """Does applying ``invalidation`` in Redis remove what ``target`` named?"""
    if isinstance(target, Namespace):
        return target in invalidation.namespaces
    if isinstance(target, Key):
        return target in invalidation.keys or any(
            fnmatch.fnmatchcase(target.redis_key, p) for p in invalidation.patterns
        )
    return target in invalidation.patterns or WHOLE in invalidation.patterns


def _names(target: object, probe: AnyKey) -> bool:
    """Is ``probe`` among the entries ``target`` invalidates?"""
    if isinstance(target, Namespace):
        return isinstance(probe, NamespacedKey) and probe.namespace == target
    if isinstance(target, Key):
        return target == probe
    return isinstance(probe, Key) and fnmatch.fnmatchcase(probe.redis_key, str(target))


class PendingMachine(RuleBasedStateMachine):
    """A model of the promise: an addition stays suspect until a snapshot taken
    at or after it, that deletes what it names, has been applied."""

    snapshots = Bundle("snapshots")

    def __init__(self) -> None:
        super().__init__()
        self.pending = PendingInvalidations(max_keys=2)
        self.outstanding: list[tuple[object, int]] = []  # (target, ticket)

    @rule(names=st.lists(st.sampled_from(TARGETS), min_size=1, max_size=4))
    def add(self, names: list[object]) -> None:
        ticket = add(self.pending, _invalidation(names))
        self.outstanding += [(t, ticket) for t in names]

    @rule(target=snapshots)
    def snapshot(self) -> Snapshot:
        return self.pending.snapshot()

    @rule(snapshot=snapshots)
    def apply(self, snapshot: Snapshot) -> None:  # appliers may finish in any order
        self.pending.applied(snapshot.invalidation, snapshot.ticket)
        self.outstanding = [
            (t, ticket)
            for t, ticket in self.outstanding
            if ticket > snapshot.ticket or not _deletes(snapshot.invalidation, t)
        ]

    @invariant()
    def nothing_outstanding_is_trusted(self) -> None:
        for probe in PROBES:
            if any(_names(t, probe) for t, _ in self.outstanding):
                assert self.pending.covers(probe), (probe, self.outstanding)

    @invariant()
    def settled_through_names_only_applied_additions(self) -> None:
        settled = self.pending.settled_through()
        assert all(ticket > settled for _, ticket in self.outstanding)

    @invariant()
    def a_fresh_snapshot_applied_clears_everything(self) -> None:
        copy = deepcopy(self.pending)
        snapshot = copy.snapshot()
        copy.applied(snapshot.invalidation, snapshot.ticket)
        assert not copy
        assert copy.settled_through() == copy.epoch


TestPendingInterleavings = PendingMachine.TestCase
TestPendingInterleavings.settings = settings(
    max_examples=300, stateful_step_count=30, deadline=None
)
