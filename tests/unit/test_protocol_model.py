"""The reader-lease protocol, every interleaving of a small world explored
(tests/model.py): no stale read; and each rule, switched off, lets the
explorer find one."""

from __future__ import annotations

import pytest

from tests.model import Flaws, Stale, explore


def test_no_interleaving_of_a_write_and_two_reads_gives_a_stale_read() -> None:
    assert explore(writes=1, reads=2) > 100_000  # it really went through them


@pytest.mark.parametrize(
    "flaw",
    [
        Flaws(report_current_snapshot=True),
        Flaws(writer_does_not_wait=True),
        Flaws(trust_past_the_lease=True),
        Flaws(fill_without_lease=True),
    ],
    ids=["report-before-processing", "writer-does-not-wait", "trust-past-lease", "fill-no-lease"],
)
def test_control_each_rule_switched_off_lets_a_stale_read_through(flaw: Flaws) -> None:
    with pytest.raises(Stale):
        explore(writes=1, reads=2, flaws=flaw)
