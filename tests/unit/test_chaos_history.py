"""The chaos run's checker (scripts/chaos_history.py) on handcrafted histories:
each kind of finding is found where it is, and not where it is not."""

from __future__ import annotations

from typing import Any

import pytest

from chaos_history import (
    COMMITTED_5XX,
    FIVE_XX_UP,
    LATE_COMMIT,
    LOGIN,
    LOST,
    NON_JSON,
    READ_AFTER_LOGIN,
    REFUSED_COMMITTED,
    STALE,
    TWICE,
    Answer,
    Attempt,
    Field,
    History,
)

USER = "2000000001"


def answer(
    status: int = 200,
    started: float = 0.0,
    *,
    ended: float | None = None,
    instance: int = 0,
    kind: str = "read_user",
    json: bool = True,
) -> Answer:
    return Answer(
        kind, instance, status, started, started + 0.1 if ended is None else ended, "p", json
    )


def history() -> History:
    h = History(base_users=2)
    h.track(USER, full_name="v0", points=0, is_active=True)
    return h


def name(h: History) -> Field:
    return h.fields[USER]["full_name"]


def read(h: History, started: float, **shown: Any) -> None:
    h.check_user(answer(started=started), {"id": USER, **shown})


def found(h: History) -> dict[str, int]:
    return {kind: n for kind, n in h.counts().items() if n}


class TestClean:
    def test_reads_around_an_acknowledged_write(self) -> None:
        h = history()
        name(h).begin("v1")  # sent at 1.0
        read(h, 0.5, full_name="v0")
        read(h, 1.5, full_name="v1")  # in flight: either value
        read(h, 1.5, full_name="v0")
        name(h).ack(2.0)
        read(h, 1.9, full_name="v0")  # started before the acknowledgement
        read(h, 3.0, full_name="v1", points=0, is_active=True)
        h.attempted(Attempt(1, "rename", USER, answer(200, 1.0, ended=2.0)))
        h.audit({})
        h.judge_read_back()
        h.audit_final({USER: {"full_name": "v1", "points": 0, "is_active": True}}, 4.0)
        h.five_xx()
        assert h.reads_checked == 5
        assert found(h) == {}

    def test_a_later_value_than_the_last_acknowledged_is_allowed(self) -> None:
        h = history()
        name(h).begin("v1")
        name(h).ack(1.0)
        name(h).begin("v2")
        name(h).ack(2.0)
        read(h, 1.5, full_name="v2")
        assert found(h) == {}


class TestStaleRead:
    def test_an_older_value_after_the_acknowledgement(self) -> None:
        h = history()
        name(h).begin("v1")
        name(h).ack(2.0)
        read(h, 3.0, full_name="v0")
        assert found(h) == {STALE: 1}
        assert "showed 'v0', allowed ['v1']" in h.findings[0].detail

    def test_an_aggregate_below_what_acknowledged_creates_imply(self) -> None:
        h = history()
        h.attempted(Attempt(1, "create", "-", answer(201, 1.0, ended=1.5)))
        h.check_totals(answer(started=1.4), {"total_users": 2})  # before the ack: fine
        h.check_totals(answer(started=2.0), {"total_users": 2})
        assert found(h) == {STALE: 1}


class TestUncertainWrite:
    def test_committed_write_answered_5xx(self) -> None:
        h = history()
        name(h).begin("v1")
        attempt = Attempt(1, "rename", USER, answer(503, 1.0, kind="write_rename"))
        h.attempted(attempt)
        read(h, 2.0, full_name="v0")  # unknown outcome: both allowed
        read(h, 2.0, full_name="v1")
        attempt.committed = name(h).settle("v1", 3.0)
        read(h, 4.0, full_name="v0")
        h.judge_read_back()
        assert attempt.committed is True
        assert found(h) == {STALE: 1, COMMITTED_5XX: 1}

    def test_a_write_that_did_not_commit_is_dropped(self) -> None:
        h = history()
        name(h).begin("v1")
        attempt = Attempt(1, "rename", USER, answer(0, 1.0, kind="write_rename"))
        h.attempted(attempt)
        attempt.committed = name(h).settle("v0", 3.0)
        read(h, 4.0, full_name="v0")
        read(h, 4.0, full_name="v1")  # a value that never committed
        h.judge_read_back()
        assert attempt.committed is False
        assert found(h) == {STALE: 1}

    def test_committed_with_no_answer_is_counted_not_found(self) -> None:
        h = history()
        name(h).begin("v1")
        attempt = Attempt(1, "rename", USER, answer(0, 1.0, kind="write_rename"))
        h.attempted(attempt)
        attempt.committed = name(h).settle("v1", 3.0)
        h.judge_read_back()
        assert h.committed_no_answer == 1
        assert found(h) == {}

    def test_unknown_outcome_unjudged(self) -> None:
        h = history()
        h.attempted(Attempt(1, "rename", USER, answer(503, 1.0)))  # committed None
        h.judge_read_back()
        assert found(h) == {}


class TestLedger:
    @pytest.mark.parametrize(
        ("status", "rows", "expected"),
        [
            (200, 1, {}),
            (200, 0, {LOST: 1}),
            (422, 0, {}),
            (422, 1, {REFUSED_COMMITTED: 1}),
            (503, 0, {}),
            (503, 1, {COMMITTED_5XX: 1}),
            (0, 1, {}),
        ],
    )
    def test_each_try_against_its_rows(
        self, status: int, rows: int, expected: dict[str, int]
    ) -> None:
        h = history()
        h.attempted(Attempt(1, "add", USER, answer(status, 1.0), key="chaos 1.0"))
        h.audit({"chaos 1.0": rows} if rows else {})
        assert found(h) == expected

    def test_a_retry_that_committed_twice(self) -> None:
        h = history()
        h.attempted(Attempt(7, "add", USER, answer(503, 1.0), key="chaos 7", committed=True))
        h.attempted(Attempt(7, "add", USER, answer(200, 2.0), key="chaos 7"))
        h.audit({"chaos 7": 2})
        assert found(h) == {COMMITTED_5XX: 1, TWICE: 1}

    def test_a_retry_that_committed_once(self) -> None:
        h = history()
        h.attempted(Attempt(7, "add", USER, answer(503, 1.0), key="chaos 7", committed=False))
        h.attempted(Attempt(7, "add", USER, answer(200, 2.0), key="chaos 7"))
        h.audit({"chaos 7": 1})
        assert found(h) == {}

    def test_a_retry_of_a_change_that_committed_unanswered_is_a_replay(self) -> None:
        """The instance died after the commit; the retry elsewhere is answered
        again: one row, no finding (the commit with no answer is counted)."""
        h = history()
        h.attempted(Attempt(7, "add", USER, answer(0, 1.0), key="chaos 7", committed=True))
        replay = Answer("add", 1, 200, 2.0, 2.1, "p", replayed=True)
        h.attempted(Attempt(7, "add", USER, replay, key="chaos 7"))
        h.audit({"chaos 7": 1})
        assert found(h) == {}
        assert h.committed_no_answer == 1

    def test_a_replay_after_a_read_back_that_said_no_is_a_late_commit(self) -> None:
        h = history()
        h.attempted(Attempt(7, "add", USER, answer(503, 1.0), key="chaos 7", committed=False))
        replay = Answer("add", 1, 200, 2.0, 2.1, "p", replayed=True)
        h.attempted(Attempt(7, "add", USER, replay, key="chaos 7"))
        h.audit({"chaos 7": 1})
        assert found(h) == {LATE_COMMIT: 1, COMMITTED_5XX: 1}

    def test_a_retry_refused_after_its_change_committed(self) -> None:
        h = history()
        h.attempted(Attempt(7, "add", USER, answer(0, 1.0), key="chaos 7", committed=True))
        h.attempted(Attempt(7, "add", USER, answer(422, 2.0), key="chaos 7"))
        h.audit({"chaos 7": 1})
        assert found(h) == {REFUSED_COMMITTED: 1}

    def test_a_commit_after_the_read_back(self) -> None:
        h = history()
        h.attempted(Attempt(1, "add", USER, answer(503, 1.0), key="chaos 1", committed=False))
        h.audit({"chaos 1": 1})
        assert found(h) == {LATE_COMMIT: 1, COMMITTED_5XX: 1}

    def test_the_final_row_must_hold_the_last_value(self) -> None:
        h = history()
        name(h).begin("v1")
        name(h).ack(1.0)
        h.audit_final({USER: {"full_name": "v0"}}, 2.0)
        assert found(h) == {LOST: 1}
        assert h.contradicted == {USER}

    def test_a_contradicted_users_trace_names_its_values_and_tries(self) -> None:
        h = history()
        name(h).begin("v1")
        h.attempted(Attempt(1, "rename", USER, answer(0, 11.0, ended=12.5), committed=False))
        name(h).drop()
        h.attempted(Attempt(2, "rename", USER, answer(200, 13.0, ended=13.25)))
        name(h).begin("v1")
        name(h).ack(13.25)
        assert h.trace(USER, t0=10.0) == [
            f"user {USER}",
            "  full_name: 'v0' (seeded), 'v1' (3.25 s)",
            "  points: 0 (seeded)",
            "  is_active: True (seeded)",
            "  try of chain 1: rename key=None instance 0 answered 0 1.00 s .. 2.50 s,"
            " read back: False",
            "  try of chain 2: rename key=None instance 0 answered 200 3.00 s .. 3.25 s,"
            " read back: None",
        ]


class TestAnswers:
    def test_non_json_answers(self) -> None:
        h = history()
        h.answered(answer(500, json=False))
        h.answered(answer(0, json=False))  # no answer: nothing to parse
        h.answered(answer(200))
        assert found(h) == {NON_JSON: 1}

    def test_5xx_while_postgresql_was_up_and_reachable(self) -> None:
        h = history()
        h.outages.add(10.0, 20.0)  # down for everyone
        h.outages.add(30.0, 40.0, instance=1)  # out of instance 1's reach
        for started, instance in ((5.0, 0), (15.0, 0), (35.0, 0), (35.0, 1), (19.95, 1)):
            h.answered(answer(503, started, instance=instance))
        h.answered(answer(200, 50.0))
        h.five_xx()
        assert found(h) == {FIVE_XX_UP: 2}
        assert sorted((f.at, f.instance) for f in h.findings) == [(5.0, 0), (35.0, 0)]


class TestLogin:
    @pytest.mark.parametrize(
        ("before", "after", "failed"),
        [
            ([200, 200], [200, 200], 0),
            ([200, 200], [503, 200], 1),
            ([503, 200], [503, 200], 0),  # failing before already
            ([200, 200], [0, 0], 0),  # the instance went away
            ([200, 200], [401, 503], 1),  # one finding per probe
        ],
    )
    def test_reads_that_fail_after_a_failed_login(
        self, before: list[int], after: list[int], failed: int
    ) -> None:
        h = history()
        h.login_probe(answer(401, kind="login_wrong"), before, after, 0.5)
        h.failed_probes()
        assert h.login_probes == 1
        assert found(h) == ({READ_AFTER_LOGIN: failed} if failed else {})

    @pytest.mark.parametrize(
        ("outage", "failed"),
        [
            ((0.3, 4.0, 0), 0),  # the instance lost its PostgreSQL path during the reads after
            ((0.3, 4.0, None), 0),  # PostgreSQL stopped for everyone
            ((0.3, 4.0, 1), 1),  # another instance's path: this one had no excuse
            ((0.6, 4.0, 0), 1),  # after the probe's last read
        ],
    )
    def test_a_read_that_fails_while_postgres_is_out_of_reach_is_no_finding(
        self, outage: tuple[float, float, int | None], failed: int
    ) -> None:
        h = history()
        h.login_probe(answer(401, kind="login_wrong"), [200, 200], [200, 503], 0.5)
        start, end, instance = outage
        h.outages.add(start, end, instance)
        h.failed_probes()
        assert found(h) == ({READ_AFTER_LOGIN: failed} if failed else {})

    @pytest.mark.parametrize(
        ("right", "status", "expected"),
        [
            (True, 200, {}),
            (True, 429, {}),
            (True, 503, {}),
            (True, 401, {LOGIN: 1}),
            (True, 403, {STALE: 1}),  # the user is active
            (False, 401, {}),
            (False, 429, {}),
            (False, 200, {LOGIN: 1}),
        ],
    )
    def test_login_answers(self, right: bool, status: int, expected: dict[str, int]) -> None:
        h = history()
        h.login(answer(status, 1.0, kind="login"), right_password=right, user_id=USER)
        assert found(h) == expected
