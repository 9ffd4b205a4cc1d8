"""The chaos run's checker: what each answer was allowed to show, given what
was acknowledged before it was asked, and what PostgreSQL holds at the end.

Writes to one user are serialized by the client, so each field has one
history: the values it took in commit order, each with the time its write was
acknowledged (+inf while the write is in flight). A read started at t may
show, for each field, the value the field held at the last acknowledgement
before t or any later one; anything older is a stale read. A write whose
answer says nothing certain (5xx, no answer) is read back from PostgreSQL
before the next write to that user (``Field.settle``).

Besides stale reads the checker finds (``Finding.kind``): writes that
committed although answered 5xx, acknowledged writes missing from
PostgreSQL, refused writes that committed, client retries that committed
twice, answers that are not JSON, 5xx while PostgreSQL was up and reachable
from the instance that answered (``Outages`` knows when it was not), reads
that failed right after a failed login although they had just succeeded, and
login answers that contradict the credentials. Nothing here does I/O: the
run feeds it, and tests/unit/test_chaos_history.py checks it.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

INF: Final = float("inf")
STALE: Final = "stale read"
COMMITTED_5XX: Final = "committed write answered 5xx"
LOST: Final = "acknowledged write not in PostgreSQL"
REFUSED_COMMITTED: Final = "refused write (4xx) committed"
LATE_COMMIT: Final = "write committed after it was read back as not committed"
TWICE: Final = "retried write committed twice"
NON_JSON: Final = "non-JSON answer"
FIVE_XX_UP: Final = "5xx while PostgreSQL was up and reachable from that instance"
READ_AFTER_LOGIN: Final = "read failed after a failed login"
LOGIN: Final = "login answer contradicts the credentials"
KINDS: Final = (
    STALE,
    COMMITTED_5XX,
    LOST,
    REFUSED_COMMITTED,
    LATE_COMMIT,
    TWICE,
    NON_JSON,
    FIVE_XX_UP,
    READ_AFTER_LOGIN,
    LOGIN,
)


@dataclass
class Field:
    """The values one field took, in commit order, with acknowledgement times.
    A write in flight is the last value, acknowledged at +inf until it is."""

    values: list[Any]
    acked_at: list[float]  # acked_at[i]: when the write that set values[i] was acked

    @classmethod
    def new(cls, value: Any) -> Field:
        return cls([value], [0.0])

    @property
    def last(self) -> Any:
        return self.values[-1]

    def begin(self, value: Any) -> None:
        self.values.append(value)
        self.acked_at.append(INF)

    def ack(self, at: float) -> None:
        self.acked_at[-1] = at

    def drop(self) -> None:
        self.values.pop()
        self.acked_at.pop()

    def settle(self, truth: Any, at: float) -> bool:
        """Resolve the write in flight from PostgreSQL's ``truth``, read at
        ``at``: whether it committed."""
        if self.acked_at[-1] == INF:
            if self.values[-1] == truth:
                self.ack(at)
                return True
            self.drop()
        if self.values[-1] != truth:  # not ours (a retry's earlier try, say): still the truth
            self.values.append(truth)
            self.acked_at.append(at)
        return False

    def allowed_from(self, started: float) -> list[Any]:
        """Values a read started at ``started`` may show: from the last one
        acknowledged before it on (ack times only grow; a write in flight is last)."""
        last = max(0, bisect.bisect_left(self.acked_at, started) - 1)
        return self.values[last:]


@dataclass(frozen=True)
class Finding:
    kind: str
    at: float  # when the request started (monotonic)
    instance: int | None
    phase: str
    detail: str


@dataclass(frozen=True)
class Answer:
    """One HTTP exchange. ``status`` 0: no answer (refused, reset, timed out)."""

    kind: str
    instance: int
    status: int
    started: float
    ended: float
    phase: str
    json: bool = True  # its content type was application/json (or there was no answer)
    error: str = ""  # the ``error`` of a JSON error body
    replayed: bool = False  # ``Idempotent-Replayed: true``: a change made by an earlier try


@dataclass
class Attempt:
    """One try of a write. Retries of one write share ``chain``; ``key`` names
    what it leaves in PostgreSQL when it commits (a ledger reason, a username);
    ``committed`` is what reading PostgreSQL back said (None: not read back)."""

    chain: int
    kind: str
    user_id: str
    answer: Answer
    key: str | None = None
    committed: bool | None = None


class Outages:
    """When PostgreSQL could not be used from an instance: stopped for every
    instance (``instance`` None) or one instance's path cut, each span
    including the grace its pools get to reconnect."""

    def __init__(self) -> None:
        self.spans: list[tuple[int | None, float, float]] = []

    def add(self, start: float, end: float, instance: int | None = None) -> None:
        self.spans.append((instance, start, end))

    def reachable(self, instance: int, start: float, end: float) -> bool:
        """Whether PostgreSQL was up and reachable from ``instance`` all along."""
        return not any(
            who in (None, instance) and s < end and start < e for who, s, e in self.spans
        )


class History:
    def __init__(self, base_users: int) -> None:
        self.fields: dict[str, dict[str, Field]] = {}
        self.base_users = base_users
        self.created: list[float] = []  # ack times of creates
        self.issued: list[tuple[float, int]] = []  # ack times and amounts of adds
        self.findings: list[Finding] = []
        self.answers: list[Answer] = []
        self.attempts: list[Attempt] = []
        self.outages = Outages()
        self.reads_checked = 0
        self.login_probes = 0
        self.probes: list[tuple[Answer, list[int], list[int], float]] = []
        self.committed_no_answer = 0
        self.contradicted: set[str] = set()  # users whose final row contradicts the history

    def track(self, user_id: str, **initial: Any) -> None:
        self.fields[user_id] = {name: Field.new(value) for name, value in initial.items()}

    def _find(self, kind: str, answer: Answer, detail: str) -> None:
        self.findings.append(Finding(kind, answer.started, answer.instance, answer.phase, detail))

    # -- answers and reads ---------------------------------------------------------

    def answered(self, answer: Answer) -> None:
        self.answers.append(answer)
        if answer.status and not answer.json:
            self._find(NON_JSON, answer, f"{answer.kind} answered {answer.status}, not JSON")

    def check_user(self, answer: Answer, shown: Mapping[str, Any]) -> None:
        """``shown``: the fields a read showed for one user (``id`` names it)."""
        fields = self.fields.get(str(shown.get("id")))
        if fields is None:
            return
        self.reads_checked += 1
        for name, history in fields.items():
            if name not in shown:
                continue
            allowed = history.allowed_from(answer.started)
            if shown[name] not in allowed:
                self._find(
                    STALE,
                    answer,
                    f"{answer.kind}, user {shown['id']}, {name}: showed {shown[name]!r},"
                    f" allowed {allowed!r}",
                )

    def check_totals(self, answer: Answer, stats: Mapping[str, Any]) -> None:
        """Totals may not fall below what acknowledged creates and adds imply."""
        self.reads_checked += 1
        floors = {
            "total_users": self.base_users + sum(1 for at in self.created if at < answer.started),
            "points_issued_last_30_days": sum(a for at, a in self.issued if at < answer.started),
        }
        for name, floor in floors.items():
            shown = stats.get(name)
            if shown is not None and shown < floor:
                self._find(STALE, answer, f"{answer.kind}: {name} {shown} below {floor}")

    def login(self, answer: Answer, *, right_password: bool, user_id: str | None) -> None:
        """A wrong password is never let in; a right one is never told it is
        wrong; 403 (deactivated) or 200 must match the user's ``is_active``."""
        status = answer.status
        if not right_password and 200 <= status < 300:
            self._find(LOGIN, answer, "a wrong password was let in")
        elif right_password and status == 401:
            self._find(LOGIN, answer, f"user {user_id}: the right password answered 401")
        elif right_password and user_id is not None and status in (200, 403):
            self.check_user(answer, {"id": user_id, "is_active": status == 200})

    def login_probe(
        self, answer: Answer, before: list[int], after: list[int], ended: float
    ) -> None:
        """The same reads before and after a failed login (``answer``), on one
        instance, the last read done at ``ended``; judged at the end, once every
        outage is known (``failed_probes``)."""
        self.login_probes += 1
        self.probes.append((answer, before, after, ended))

    def failed_probes(self) -> None:
        """Each read that answered 200 before a failed login must answer 200
        after it, while PostgreSQL stayed up and reachable from that instance
        (out of its reach, an instance fails closed; no answer at all says the
        instance went away, not what the login did)."""
        for answer, before, after, ended in self.probes:
            failed = sum(
                1 for b, a in zip(before, after, strict=True) if b == 200 and a not in (0, 200)
            )
            if failed and self.outages.reachable(answer.instance, answer.started, ended):
                self._find(
                    READ_AFTER_LOGIN,
                    answer,
                    f"login answered {answer.status}; reads before {before}, after {after}",
                )

    # -- writes --------------------------------------------------------------------

    def attempted(self, attempt: Attempt) -> None:
        self.attempts.append(attempt)
        if attempt.kind == "create" and 200 <= attempt.answer.status < 300:
            self.created.append(attempt.answer.ended)

    def audit(self, rows: Mapping[str, int]) -> None:
        """``rows``: how many rows each key left in PostgreSQL at the end (ledger
        reasons, usernames), read back after the run. The tries of one change
        share its key (a points change and its retries carry one reason and one
        Idempotency-Key): at most one row, left by the first try that was
        answered 2xx (not as a replay) or read back as committed; a try after it
        can only be a replay of it."""
        chains: defaultdict[int, list[Attempt]] = defaultdict(list)
        for attempt in self.attempts:
            if attempt.key is not None:
                chains[attempt.chain].append(attempt)
        for tries in chains.values():
            first = tries[0]
            found = rows.get(cast(str, first.key), 0)
            if found > 1:
                self._find(
                    TWICE, first.answer, f"{first.kind} of user {first.user_id}: {found} rows"
                )
            by = _committing_try(tries) if found else None
            for n, attempt in enumerate(tries):
                if by is None or n <= by:
                    self._judge(attempt, n == by)
                elif 400 <= attempt.answer.status < 500:  # a retry of a committed change
                    what = f"{attempt.kind} of {attempt.user_id}, a retry answered"
                    self._find(REFUSED_COMMITTED, attempt.answer, f"{what} {attempt.answer.status}")

    def judge_read_back(self) -> None:
        """Attempts without a key (users-table writes): judged by their read-back."""
        for attempt in self.attempts:
            if attempt.key is None and attempt.committed is not None:
                self._judge(attempt, attempt.committed)

    def _judge(self, attempt: Attempt, committed: bool) -> None:
        status = attempt.answer.status
        what = f"{attempt.kind} of {attempt.key if attempt.kind == 'create' else attempt.user_id}"
        if committed and attempt.committed is False:
            self._find(LATE_COMMIT, attempt.answer, f"{what}, answered {status}")
        if status >= 500 and committed:
            self._find(COMMITTED_5XX, attempt.answer, f"{what}: {attempt.answer.error!r}")
        elif 200 <= status < 300 and not committed:
            self._find(LOST, attempt.answer, what)
        elif 400 <= status < 500 and committed:
            self._find(REFUSED_COMMITTED, attempt.answer, f"{what}, answered {status}")
        elif status == 0 and committed:
            self.committed_no_answer += 1

    def audit_final(self, rows: Mapping[str, Mapping[str, Any]], at: float) -> None:
        """Every user's row at the end must hold the last value of each field."""
        for user_id, fields in self.fields.items():
            row = rows.get(user_id, {})
            for name, history in fields.items():
                if name in row and row[name] != history.last:
                    self.contradicted.add(user_id)
                    self.findings.append(
                        Finding(
                            LOST,
                            at,
                            None,
                            "end",
                            f"user {user_id}, {name}: PostgreSQL has {row[name]!r},"
                            f" the history ends at {history.last!r}",
                        )
                    )

    def trace(self, user_id: str, t0: float) -> list[str]:
        """What the checker knows of one user, for a reader of a finding: each
        field's values with their acknowledgement times, then every write try
        (seconds since ``t0``)."""

        def at(moment: float) -> str:
            if moment == INF:
                return "in flight"
            return "seeded" if moment == 0.0 else f"{moment - t0:.2f} s"

        lines = [f"user {user_id}"]
        for name, history in self.fields[user_id].items():
            steps = (
                f"{v!r} ({at(a)})" for v, a in zip(history.values, history.acked_at, strict=True)
            )
            lines.append(f"  {name}: " + ", ".join(steps))
        for attempt in self.attempts:
            if attempt.user_id == user_id:
                answer = attempt.answer
                lines.append(
                    f"  try of chain {attempt.chain}: {attempt.kind} key={attempt.key!r}"
                    f" instance {answer.instance} answered {answer.status}"
                    f"{' (replayed)' if answer.replayed else ''}"
                    f" {at(answer.started)} .. {at(answer.ended)}, read back: {attempt.committed}"
                )
        return lines

    def five_xx(self) -> None:
        """Every 5xx while PostgreSQL was up and reachable from its instance."""
        for answer in self.answers:
            if answer.status >= 500 and self.outages.reachable(
                answer.instance, answer.started, answer.ended
            ):
                self._find(FIVE_XX_UP, answer, f"{answer.kind} {answer.status} {answer.error!r}")

    def counts(self) -> dict[str, int]:
        found = Counter(f.kind for f in self.findings)
        return {kind: found[kind] for kind in KINDS}

    def by_kind(self) -> dict[str, list[Finding]]:
        grouped: dict[str, list[Finding]] = defaultdict(list)
        for finding in self.findings:
            grouped[finding.kind].append(finding)
        return grouped


def _committing_try(tries: list[Attempt]) -> int:
    """Which try of a change that committed left its row: the first answered
    2xx (not as a replay) or read back as committed; else the try before the
    first replay (it committed after its read-back); else the last."""
    for n, attempt in enumerate(tries):
        ok = 200 <= attempt.answer.status < 300
        if (ok and not attempt.answer.replayed) or attempt.committed:
            return n
        if ok:
            return max(n - 1, 0)
    return len(tries) - 1


def five_xx_unreachable(history: History) -> Iterable[Answer]:
    """5xx answered while PostgreSQL was down or out of the instance's reach."""
    return (
        a
        for a in history.answers
        if a.status >= 500 and not history.outages.reachable(a.instance, a.started, a.ended)
    )
