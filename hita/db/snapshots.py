"""PostgreSQL transaction snapshots (``pg_snapshot``), compared in Python.

A snapshot ``xmin:xmax:xip,...`` says which transactions were finished when it
was taken: every id below ``xmin``, and every id below ``xmax`` that is not
in ``xip`` (still in progress then). An instance reports the snapshot whose
outbox rows it has taken in; a writer asks whether that snapshot already
sees every transaction its own (taken after its commit) sees.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Snapshot:
    xmin: int
    xmax: int
    xip: frozenset[int]

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        """``pg_snapshot``'s text form, ``"10:20:10,14,15"``."""
        xmin, xmax, xip = text.split(":")
        return cls(int(xmin), int(xmax), frozenset(int(x) for x in xip.split(",") if x))

    def finished(self, xid: int) -> bool:
        """Was transaction ``xid`` over (committed or aborted) when this was taken?"""
        return xid < self.xmin or (xid < self.xmax and xid not in self.xip)


def covers(later: Snapshot, earlier: Snapshot) -> bool:
    """Does ``later`` see as finished every transaction ``earlier`` does?

    Transactions at or past ``later.xmax`` had not finished for ``later``, so
    each of them must still be in progress for ``earlier``; below it, only the
    ones ``later`` saw in progress can differ. A finished transaction stays
    finished, so a snapshot taken after another always covers it, and a
    writer waiting for a reader's next snapshot always stops waiting."""
    if earlier.xmax > later.xmax:
        unseen = sum(1 for x in earlier.xip if x >= later.xmax)
        if unseen < earlier.xmax - later.xmax:
            return False
    return not any(earlier.finished(x) for x in later.xip)
