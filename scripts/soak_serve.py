"""soak.py's service process: ``hita serve``, optionally tracing its memory.

python scripts/soak_serve.py [SNAPSHOT_FILE]
"""

from __future__ import annotations

import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType
from typing import Final

from hita.cli import main as hita_main

TOP_ALLOCATIONS: Final = 12


def serve(tracemalloc_out: str | None) -> int:
    """Run ``hita serve``; with tracing, SIGUSR1 takes a snapshot: the first
    one is the baseline, each later one writes the growth since it."""
    if tracemalloc_out:
        tracemalloc.start(1)
        baseline: list[tracemalloc.Snapshot] = []

        def snapshot(_signum: int, _frame: FrameType | None) -> None:
            snap = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__)]
            )
            if not baseline:
                baseline.append(snap)
                text = f"baseline traced={tracemalloc.get_traced_memory()[0]}\n"
            else:
                stats = snap.compare_to(baseline[0], "lineno")[:TOP_ALLOCATIONS]
                current = tracemalloc.get_traced_memory()[0]
                text = f"traced={current}\n" + "\n".join(str(s) for s in stats) + "\n"
            Path(tracemalloc_out).write_text(text)

        signal.signal(signal.SIGUSR1, snapshot)
    return hita_main(["serve"])


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] else None))
