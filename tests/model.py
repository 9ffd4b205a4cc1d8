"""A small model of the reader-lease protocol, explored exhaustively.

One cache entry, two instances, a few writes and reads; every interleaving of
their steps and of the faults (an invalidation Redis does not take, a lease
that lapses, an eviction, the sweep) is explored breadth-first. A read that
starts after a write was acknowledged must not return an older version.

The model follows docs/cache.md, "No read older than an acknowledged write":

* a write commits a version and its outbox row, invalidates Redis (which may
  fail), marks its row acknowledged if Redis took it, and otherwise waits
  until every instance with a live lease has *reported* a snapshot that
  covers its row;
* a renewal is two steps, as it is on the wire: the statement (the lease
  granted in PostgreSQL, the previous snapshot reported, the new rows read),
  then the instance processing its answer (the new rows made suspect, trust
  extended);
* a suspect entry is read from PostgreSQL until the instance's own
  invalidation, owed since, was acknowledged;
* a miss takes a lease in Redis, loads from PostgreSQL and fills only if its
  lease is still there.

``Flaws`` switches one rule off, so the tests show that the explorer finds
the stale read each rule prevents.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

NONE = ("none", 0)


@dataclass(frozen=True)
class Flaws:
    report_current_snapshot: bool = False  # report rows before processing them
    writer_does_not_wait: bool = False  # answer a write whose invalidation failed
    trust_past_the_lease: bool = False  # PostgreSQL's lease lapses, the instance still trusts
    fill_without_lease: bool = False  # a miss fills whatever Redis holds then


class Instance(NamedTuple):
    trusted: bool = False  # may serve from Redis (its lease, as it sees it)
    live: bool = False  # its lease, as PostgreSQL sees it
    reported: int = 0  # outbox rows covered by the snapshot it reported
    read: int = 0  # rows its last renewal statement read
    taken: int = 0  # rows it has processed
    renewing: bool = False  # a renewal's answer not yet processed
    suspect: bool = False
    owed: bool = False  # an invalidation queued after a take-in


class Op(NamedTuple):
    kind: str  # "write" or "read"
    where: int  # the instance
    phase: str = "new"
    row: int = -1  # a write's outbox row
    version: int = 0  # a write's version; a read's loaded version
    floor: int = 0  # a read: the newest version acknowledged when it started


class State(NamedTuple):
    db: int = 0
    rows: tuple[bool, ...] = ()  # per outbox row: acknowledged?
    redis: tuple[str, int] = NONE  # ("none", 0), ("val", version) or ("lease", op index)
    acked: int = 0  # newest version a client was told is written
    instances: tuple[Instance, ...] = (Instance(), Instance())
    ops: tuple[Op, ...] = ()


def replace(record: Any, **changes: Any) -> Any:
    return record._replace(**changes)


def with_instance(s: State, i: int, inst: Instance) -> State:
    return s._replace(instances=(*s.instances[:i], inst, *s.instances[i + 1 :]))


def with_op(s: State, n: int, op: Op) -> State:
    return s._replace(ops=(*s.ops[:n], op, *s.ops[n + 1 :]))


class Stale(Exception):
    pass


def steps(s: State, flaws: Flaws) -> Iterator[State]:
    """Every state one step away."""
    for i, inst in enumerate(s.instances):
        if not inst.renewing:  # the renewal statement
            reported = len(s.rows) if flaws.report_current_snapshot else inst.taken
            yield with_instance(
                s, i, replace(inst, live=True, reported=reported, read=len(s.rows), renewing=True)
            )
        else:  # the instance processes its answer
            new = s.rows[inst.taken : inst.read]
            owed = any(not acked for acked in new)
            yield with_instance(
                s,
                i,
                replace(
                    inst,
                    taken=inst.read,
                    renewing=False,
                    trusted=inst.live,  # an answer later than its lease trusts nothing
                    suspect=inst.suspect or owed,
                    owed=inst.owed or owed,
                ),
            )
        if inst.trusted:  # its lease lapses, on its own clock first
            yield with_instance(s, i, replace(inst, trusted=False))
        if inst.live and (not inst.trusted or flaws.trust_past_the_lease):
            yield with_instance(s, i, replace(inst, live=False))
        if inst.owed:  # its invalidation, taken by Redis (a failure changes nothing)
            rows = tuple(a or n < inst.taken for n, a in enumerate(s.rows))
            applied = replace(inst, owed=False, suspect=False)
            yield with_instance(replace(s, redis=NONE, rows=rows), i, applied)
    for n, acked in enumerate(s.rows):  # the sweep applies a row nobody acknowledged
        if not acked:
            yield replace(s, redis=NONE, rows=(*s.rows[:n], True, *s.rows[n + 1 :]))
    if s.redis != NONE:  # eviction, expiry, a restart
        yield replace(s, redis=NONE)
    for n, op in enumerate(s.ops):
        yield from (
            op_steps(s, n, op, flaws) if op.kind == "read" else write_steps(s, n, op, flaws)
        )


def write_steps(s: State, n: int, op: Op, flaws: Flaws) -> Iterator[State]:
    if op.phase == "new":  # commit, with its outbox row
        committed = replace(s, db=s.db + 1, rows=(*s.rows, False))
        yield with_op(committed, n, replace(op, phase="inline", row=len(s.rows), version=s.db + 1))
    elif op.phase == "inline":
        rows = (*s.rows[: op.row], True, *s.rows[op.row + 1 :])  # Redis took it: acknowledged
        yield with_op(
            replace(s, redis=NONE, rows=rows, acked=max(s.acked, op.version)), n, done(op)
        )
        if flaws.writer_does_not_wait:
            yield with_op(replace(s, acked=max(s.acked, op.version)), n, done(op))
        else:
            yield with_op(s, n, replace(op, phase="wait"))
    elif op.phase == "wait" and all(
        not inst.live or inst.reported > op.row for inst in s.instances
    ):
        yield with_op(replace(s, acked=max(s.acked, op.version)), n, done(op))


def op_steps(s: State, n: int, op: Op, flaws: Flaws) -> Iterator[State]:
    inst = s.instances[op.where]
    if op.phase == "new":
        op = replace(op, floor=s.acked)
        if not inst.trusted or inst.suspect or s.redis[0] == "lease":
            yield with_op(s, n, done(op))  # PostgreSQL answers: never older than acked
        elif s.redis[0] == "val":
            if s.redis[1] < op.floor:
                raise Stale(f"read on instance {op.where} got {s.redis[1]} < {op.floor}")
            yield with_op(s, n, done(op))
        else:  # a miss: a lease in the entry's place
            yield with_op(replace(s, redis=("lease", n)), n, replace(op, phase="load"))
    elif op.phase == "load":
        yield with_op(s, n, replace(op, phase="fill", version=s.db))
    elif op.phase == "fill":
        if s.redis == ("lease", n) or flaws.fill_without_lease:
            yield with_op(replace(s, redis=("val", op.version)), n, done(op))
        else:
            yield with_op(s, n, done(op))


def done(op: Op) -> Op:
    """A finished operation: what it saw no longer matters."""
    return Op(op.kind, op.where, "done")


def explore(writes: int, reads: int, flaws: Flaws = Flaws()) -> int:
    """Every reachable state; raises ``Stale`` on a stale read. Returns the count."""
    ops = tuple(Op("write", 0) for _ in range(writes)) + tuple(
        Op("read", k % 2) for k in range(reads)
    )
    start = State(redis=("val", 0), ops=ops)
    seen = {start}
    queue = deque([start])
    while queue:
        for following in steps(queue.popleft(), flaws):
            if following not in seen:
                seen.add(following)
                queue.append(following)
    return len(seen)


if __name__ == "__main__":  # larger worlds than the suite explores: python -m tests.model 2 1
    import sys
    import time

    started = time.monotonic()
    count = explore(writes=int(sys.argv[1]), reads=int(sys.argv[2]))
    print(f"{count:,} states, no stale read, {time.monotonic() - started:.0f} s")
