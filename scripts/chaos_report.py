"""The chaos run's report: the checker's counts first, then operations,
latency per phase, an example of each finding, and the fault log. Each
topology (and the slowed-sweep variant) has its own section of docs/chaos.md,
between markers, so one run replaces only its own."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Final

from chaos_history import (
    COMMITTED_5XX,
    FIVE_XX_UP,
    KINDS,
    LATE_COMMIT,
    LOGIN,
    LOST,
    NON_JSON,
    READ_AFTER_LOGIN,
    REFUSED_COMMITTED,
    STALE,
    TWICE,
    Answer,
    History,
    five_xx_unreachable,
)

EXAMPLES: Final = 5  # findings shown per kind
HEADLINE: Final = (STALE, COMMITTED_5XX, NON_JSON, FIVE_XX_UP)
LABELS: Final = {
    STALE: "stale reads",
    COMMITTED_5XX: "committed writes answered 5xx (ledger and users table read back)",
    NON_JSON: "non-JSON answers",
    FIVE_XX_UP: "5xx while PostgreSQL was up and reachable from that instance",
    READ_AFTER_LOGIN: "reads that failed after a failed login",
    LOST: "acknowledged writes missing from PostgreSQL",
    REFUSED_COMMITTED: "refused writes (4xx) that committed",
    LATE_COMMIT: "writes that committed after being read back as not committed",
    TWICE: "retried writes that committed twice",
    LOGIN: "login answers that contradict the credentials",
}


@dataclass(frozen=True)
class RunFacts:
    command: str
    topology: str
    key: str  # the section's name in docs/chaos.md
    title: str
    instances: int
    elapsed_s: float
    t0: float
    faults: Counter[str]
    failed: Counter[str]
    kinds: list[str]
    log: list[str]


def markers(key: str) -> tuple[str, str]:
    return f"<!-- chaos:{key}:begin (written by scripts/chaos.py) -->", f"<!-- chaos:{key}:end -->"


def _figures(history: History, answers: list[Answer], facts: RunFacts) -> list[str]:
    counts = history.counts()
    attempts = [a for a in history.attempts if a.answer.started >= facts.t0]
    unknown = sum(1 for a in attempts if a.answer.status == 0 or a.answer.status >= 500)
    rows = [
        "| figure | value |",
        "| --- | ---: |",
        f"| duration | {facts.elapsed_s / 60:.1f} min |",
        f"| operations | {len(answers):,} |",
        f"| reads checked against the history | {history.reads_checked:,} |",
    ]
    for kind in KINDS:
        label = LABELS[kind]
        if kind == READ_AFTER_LOGIN:
            label += f" (of {history.login_probes} login probes)"
        value = f"{counts[kind]:,}"
        rows.append(
            f"| **{label}** | **{value}** |" if kind in HEADLINE else f"| {label} | {value} |"
        )
    rows += [
        "| 5xx while PostgreSQL was down or out of that instance's reach (or reconnecting) |"
        f" {sum(1 for _ in five_xx_unreachable(history)):,} |",
        f"| no answer (instance killed, connection reset, timeout) |"
        f" {sum(1 for a in answers if a.status == 0):,} |",
        f"| write tries of unknown outcome (5xx, no answer), read back from PostgreSQL |"
        f" {unknown:,} |",
        f"| of those, committed with no answer | {history.committed_no_answer:,} |",
    ]
    return rows


def _operations(answers: list[Answer]) -> list[str]:
    rows = [
        "| kind | count | 2xx | 4xx | 5xx | no answer | not JSON |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    by_kind: dict[str, list[Answer]] = defaultdict(list)
    for answer in answers:
        by_kind[answer.kind].append(answer)
    for kind, items in sorted(by_kind.items()):
        rows.append(
            f"| {kind} | {len(items):,} | {sum(200 <= a.status < 300 for a in items):,} |"
            f" {sum(400 <= a.status < 500 for a in items):,} |"
            f" {sum(a.status >= 500 for a in items):,} | {sum(a.status == 0 for a in items):,} |"
            f" {sum(bool(a.status) and not a.json for a in items):,} |"
        )
    return rows


def _latency(answers: list[Answer]) -> list[str]:
    rows = ["| phase | ops | p50 ms | p99 ms |", "| --- | ---: | ---: | ---: |"]
    by_phase: dict[str, list[float]] = defaultdict(list)
    for answer in answers:
        by_phase[answer.phase].append((answer.ended - answer.started) * 1000)
    for phase, values in sorted(by_phase.items()):
        values.sort()
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
        rows.append(f"| {phase} | {len(values):,} | {statistics.median(values):.1f} | {p99:.1f} |")
    return rows


def _findings(history: History, t0: float) -> list[str]:
    rows: list[str] = []
    for kind, found in history.by_kind().items():
        rows += ["", f"{LABELS[kind]}: {len(found):,}", ""]
        for f in sorted(found, key=lambda f: f.at)[:EXAMPLES]:
            where = "" if f.instance is None else f" on instance {f.instance}"
            rows.append(f"- {f.at - t0:.2f} s{where} ({f.phase}): {f.detail}")
    five = [f for f in history.findings if f.kind == FIVE_XX_UP]
    if five:
        rows += ["", "5xx while PostgreSQL was up and reachable, by phase and answer:", ""]
        for (phase, detail), n in Counter((f.phase, f.detail) for f in five).most_common(20):
            rows.append(f"- {phase}: {detail} x{n}")
    return rows


def render(history: History, facts: RunFacts) -> str:
    answers = [a for a in history.answers if a.started >= facts.t0]
    begin, end = markers(facts.key)
    faults = ", ".join(f"{kind} x{facts.faults[kind]}" for kind in sorted(facts.kinds))
    failed = ", ".join(f"{k} x{n}" for k, n in sorted(facts.failed.items()))
    lines = [
        begin,
        "",
        f"### {facts.title}",
        "",
        f"Command: `{facts.command}`",
        "",
        f"{facts.instances} `hita serve` instances (production profile, L1 on) on one"
        f" PostgreSQL 16 and a Redis 6.2 {facts.topology} that the script owns, each instance"
        " through fault proxies of its own; every request to a random live instance.",
        "",
        *_figures(history, answers, facts),
        "",
        f"Faults: {faults}" + (f"; failed to run: {failed}" if failed else ""),
        "",
        "#### Operations",
        "",
        *_operations(answers),
        "",
        "#### Latency per phase",
        "",
        *_latency(answers),
    ]
    if history.findings:
        lines += ["", "#### Findings (the first of each kind)", *_findings(history, facts.t0)]
    lines += ["", "#### Fault log", "", "```", *facts.log, "```", "", end]
    return "\n".join(lines)
