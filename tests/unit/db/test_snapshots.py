"""``covers`` against a model of transactions starting and finishing (Hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hita.db.snapshots import Snapshot, covers


def test_parse_reads_pg_snapshot_text() -> None:
    assert Snapshot.parse("10:20:10,14,15") == Snapshot(10, 20, frozenset({10, 14, 15}))
    assert Snapshot.parse("7:7:") == Snapshot(7, 7, frozenset())


def test_finished_follows_the_snapshot_rules() -> None:
    snap = Snapshot.parse("10:20:12,15")
    assert [snap.finished(x) for x in (9, 10, 12, 15, 19, 20, 25)] == [
        True,
        True,
        False,
        False,
        True,
        False,
        False,
    ]


# A history: each step starts a transaction or finishes one in progress; a
# snapshot may be taken between steps, as PostgreSQL takes them.
steps = st.lists(st.tuples(st.booleans(), st.integers(0, 10_000)), max_size=40)


def snapshots_along(history: list[tuple[bool, int]]) -> list[tuple[Snapshot, frozenset[int]]]:
    """Every snapshot along the history, with the set of transactions it saw finished."""
    next_xid, running, done = 3, set[int](), set[int]()
    taken = []
    for start, pick in history:
        if start or not running:
            running.add(next_xid)
            next_xid += 1
        else:
            finished = sorted(running)[pick % len(running)]
            running.remove(finished)
            done.add(finished)
        xmin = min(running) if running else next_xid
        taken.append((Snapshot(xmin, next_xid, frozenset(running)), frozenset(done)))
    return taken


@settings(max_examples=400)
@given(steps, st.data())
def test_covers_is_exactly_set_inclusion_of_finished_transactions(
    history: list[tuple[bool, int]], data: st.DataObject
) -> None:
    taken = snapshots_along(history)
    if not taken:
        return
    first = data.draw(st.integers(0, len(taken) - 1))
    second = data.draw(st.integers(0, len(taken) - 1))
    (a, seen_a), (b, seen_b) = taken[first], taken[second]
    assert {x for x in range(3, b.xmax + 5) if b.finished(x)} == seen_b
    assert covers(a, b) == (seen_b <= seen_a)
    if first >= second:  # taken at the same time or later: never behind
        assert covers(a, b)
