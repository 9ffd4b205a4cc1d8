"""soak.py's measurements and report: the answers of each sampling window,
the samples, least-squares slopes, and the section of docs/soak.md (between
its markers) with start, end and slope of every figure."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from prometheus_client.parser import text_string_to_metric_families

from hita.config import PROJECT_ROOT

from harness.reports import write_marked

if TYPE_CHECKING:
    from soak import Soak

# The service's own counters reported at the end (from /metrics).
SERVICE_FIGURES: Final = frozenset(
    {
        "hita_overload_refusals_total",
        "hita_http_client_disconnects_total",
        "hita_http_in_flight_peak",
        "hita_db_queue_waits_total",
        "hita_cache_breaker_transitions_total",
        "hita_cache_errors_total",
    }
)
REPORT: Final = PROJECT_ROOT / "docs" / "soak.md"
BEGIN: Final = "<!-- soak:begin (written by scripts/soak.py) -->"
END: Final = "<!-- soak:end -->"


@dataclass
class Window:
    """Answers since the last sample (kept per window so the sender stays flat)."""

    statuses: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    dropped: int = 0

    def record(self, status: str, elapsed_s: float) -> None:
        self.statuses[status] += 1
        self.latencies_ms.append(elapsed_s * 1000)


@dataclass(frozen=True)
class Sample:
    t_s: float
    rss_mb: float
    fds: int
    http_conns: int
    redis_conns: int | None
    pg_conns: int
    requests: int
    server_errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    redis: str


def quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def slope_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return 0.0 if var == 0 else cov / var * 60


# -- the run --------------------------------------------------------------------


def report(soak: Soak, command: str, facts: dict[str, str], extra: dict[str, str]) -> str:
    samples = soak.samples
    settled = [s for s in samples if s.t_s >= soak.args.settle_minutes * 60]
    first, last = (settled[0], settled[-1]) if settled else (samples[0], samples[-1])

    def row(name: str, unit: str, get: Callable[[Sample], float | None]) -> str:
        points = [(s.t_s, v) for s in settled if (v := get(s)) is not None]
        values = [v for _, v in points]
        start = get(samples[0])
        end = get(last)
        at5 = get(first)
        idle = "" if soak.idle is None else get(soak.idle)
        return (
            f"| {name} | {start} | {at5} | {end} | {idle} | "
            f"{slope_per_min(points):+.4f} {unit}/min | "
            f"{min(values, default=0)} to {max(values, default=0)} |"
        )

    settle = soak.args.settle_minutes
    total = sum(v for k, v in soak.totals.items() if k != "dropped")
    five_xx = sum(v for k, v in soak.totals.items() if k.startswith("5"))
    lines = [
        BEGIN,
        "",
        f"Command: `{command}`",
        "",
        *(f"- {k}: {v}" for k, v in facts.items()),
        f"- requests answered: {total:,}; 5xx: {five_xx}; dropped by the sender: "
        f"{soak.totals['dropped']}",
        f"- answers: {', '.join(f'{k}: {v:,}' for k, v in sorted(soak.totals.items()))}",
        f"- Redis faults: {'; '.join(soak.events) or 'none'}",
        "",
        f"| figure | first sample | at {settle:g} min | end of load | 5 s after |"
        f" slope after {settle:g} min | range after {settle:g} min |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
        row("RSS (MB)", "MB", lambda s: round(s.rss_mb, 1)),
        row("open descriptors", "fds", lambda s: s.fds),
        row("HTTP connections", "conns", lambda s: s.http_conns),
        row("Redis connections", "conns", lambda s: s.redis_conns),
        row("PostgreSQL connections", "conns", lambda s: s.pg_conns),
        "",
        "Samples (one a minute; Redis connections are blank while Redis is paused or down):",
        "",
        "| min | RSS (MB) | fds | HTTP conns | Redis conns | PG conns | requests | 5xx | p50 (ms) |"
        " p99 (ms) | max (ms) | Redis |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    per_minute = max(1, round(60 / soak.args.sample_every))
    for i, s in enumerate(samples):
        if i % per_minute and i != len(samples) - 1:
            continue
        lines.append(
            f"| {s.t_s / 60:.1f} | {s.rss_mb:.1f} | {s.fds} | {s.http_conns} | "
            f"{'' if s.redis_conns is None else s.redis_conns} | {s.pg_conns} | {s.requests} | "
            f"{s.server_errors} | {s.p50_ms:.1f} | {s.p99_ms:.1f} | {s.max_ms:.0f} | {s.redis} |"
        )
    if extra.get("service"):
        lines += [
            "",
            "The service's own counters at the end (`/metrics`, non-zero ones):",
            "",
            "```text",
            extra["service"].strip(),
            "```",
        ]
    if extra.get("tracemalloc"):
        lines += [
            "",
            "tracemalloc, growth from the 5-minute mark to the end (top lines):",
            "",
            "```text",
            extra["tracemalloc"].strip(),
            "```",
        ]
    lines += ["", END]
    return "\n".join(lines)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def http_connections(port: int) -> int:
    """Established TCP connections to the service's port (the client's keep-alive
    pool grows with the peak of concurrent requests: descriptors, not a leak)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
            count += 1
    return count


def service_figures(metrics: str) -> str:
    """The non-zero ``SERVICE_FIGURES`` of a /metrics text, one a line."""
    figures = []
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name in SERVICE_FIGURES and sample.value:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                figures.append(f"{sample.name}{{{labels}}} {sample.value:g}")
    return "\n".join(figures)


def write_report(section: str) -> None:
    write_marked(section, BEGIN, END, REPORT, "# Soak\n\n")
