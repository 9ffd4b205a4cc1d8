"""Benchmark what an idle instance costs: its CPU share with no request coming in.

An instance with nothing to serve still has timers: the reader lease's
renewal, the tracking keepalive, the statistics refresh, admission's probe.
This script starts HITA with the service's defaults on the server CPU (the
same world as ``bench_http.py``: embedded PostgreSQL and Redis, 300 users),
waits for its start-up work to end, and reads its CPU time from
``/proc/<pid>/stat`` over a quiet window. With ``--hita-tree`` it compares
checkouts, each started afresh per repetition, alternating, in one run.

    python scripts/bench_idle.py
    python scripts/bench_idle.py --hita-tree before=/path/to/checkout --hita-tree now=.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Final

from bench_http_world import Variant, World, cpu_seconds, hita_server, pin_self, world
from harness.reports import command_line, machine_facts, publish

HEADING: Final = "Idle instance: CPU (scripts/bench_idle.py)"
SETTLE_S: Final = 3.0  # start-up work (the warm-up, the first renewals) ends first
USERS: Final = 300


def idle_share(variant: Variant, w: World, seconds: float) -> float:
    """The CPU share (1.0: a whole core) of a fresh instance left alone ``seconds``."""
    with hita_server(w, variant) as child:
        time.sleep(SETTLE_S)
        cpu, start = cpu_seconds(child.pid), time.monotonic()
        time.sleep(seconds)
        return (cpu_seconds(child.pid) - cpu) / (time.monotonic() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="quiet window per repetition")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per checkout")
    parser.add_argument(
        "--hita-tree",
        action="append",
        default=[],
        metavar="LABEL=DIR[;NAME=VALUE...]",
        help="a checkout to measure (repeatable); default: this one",
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    variants = [Variant.parse(t) for t in args.hita_tree] or [Variant(", this checkout", {})]
    pin_self()
    shares: dict[str, list[float]] = {v.label: [] for v in variants}
    with world(USERS) as w:
        for _ in range(args.reps):
            for variant in variants:
                share = idle_share(variant, w, args.seconds)
                shares[variant.label].append(share)
                print(f"{variant.label[2:]}: {share:.2%} of a core", flush=True)
    rows = [
        f"| {label[2:]} | {statistics.median(s):.2%} | {', '.join(f'{x:.2%}' for x in s)} |"
        for label, s in shares.items()
    ]
    body = "\n".join(
        [
            f"Command: `{command_line('bench_idle.py')}`",
            "",
            *machine_facts(),
            "",
            "| HITA | CPU share while idle (median) | each repetition |",
            "| --- | ---: | --- |",
            *rows,
            "",
            f"Each repetition starts the instance afresh (the service's defaults, {USERS} users),",
            f"leaves it {SETTLE_S:.0f} s to end its start-up work, then reads its CPU time over",
            f"{args.seconds:.0f} s with no request; 100% is one core.",
        ]
    )
    publish(HEADING, body, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
