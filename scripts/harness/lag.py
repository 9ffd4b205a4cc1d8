"""How late a test driver's own event loop runs, and why.

A driver that runs fault proxies (``harness.proxy``) relays, in its own event
loop, every byte between the service and its servers: while that loop is late
(its clients' work, a garbage collection of a large history), each query the
service makes takes longer, as if the path were delayed. ``LoopLag`` measures
that, so a fault run can tell a slow service from a slow driver: a ticker's
lateness (how long a ready callback waited for the loop) and the time spent in
the garbage collector, by generation.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from dataclasses import dataclass, field, replace
from typing import Any, Final

TICK_S: Final = 0.005


@dataclass(slots=True)
class LagFigures:
    """What the loop went through over a stretch of time."""

    late_max_s: float = 0.0  # the longest a tick waited past its time
    late_total_s: float = 0.0  # all ticks' waits past their time
    ticks: int = 0
    gc_s: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # by generation
    gc_runs: list[int] = field(default_factory=lambda: [0, 0, 0])
    gc_max_s: float = 0.0

    def minus(self, before: LagFigures) -> LagFigures:
        """The figures of the stretch since ``before`` (maxima: since the last
        ``LoopLag.mark``)."""
        return LagFigures(
            late_max_s=self.late_max_s,
            late_total_s=self.late_total_s - before.late_total_s,
            ticks=self.ticks - before.ticks,
            gc_s=[a - b for a, b in zip(self.gc_s, before.gc_s, strict=True)],
            gc_runs=[a - b for a, b in zip(self.gc_runs, before.gc_runs, strict=True)],
            gc_max_s=self.gc_max_s,
        )

    def text(self) -> str:
        """One line: ``"loop late 41 ms at most, 180 ms in all; GC 3 runs
        (1 of gen 2), 52 ms, 48 at most"``."""
        runs = sum(self.gc_runs)
        return (
            f"loop late {1000 * self.late_max_s:.0f} ms at most,"
            f" {1000 * self.late_total_s:.0f} ms in all;"
            f" GC {runs} runs ({self.gc_runs[2]} of gen 2), {1000 * sum(self.gc_s):.0f} ms,"
            f" {1000 * self.gc_max_s:.0f} at most"
        )


class LoopLag:
    """``start()`` in the running loop; ``mark()`` before a stretch, then
    ``since(mark)`` after it; ``close()`` at the end."""

    def __init__(self, tick_s: float = TICK_S) -> None:
        self.tick_s = tick_s
        self.figures = LagFigures()
        self._gc_began: float | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        gc.callbacks.append(self._on_gc)
        self._task = asyncio.create_task(self._tick())

    async def close(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._on_gc)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def mark(self) -> LagFigures:
        """The figures so far; the maxima start again from here."""
        figures = self.figures = replace(
            self.figures,
            late_max_s=0.0,
            gc_max_s=0.0,
            gc_s=list(self.figures.gc_s),
            gc_runs=list(self.figures.gc_runs),
        )
        return replace(figures, gc_s=list(figures.gc_s), gc_runs=list(figures.gc_runs))

    def since(self, mark: LagFigures) -> LagFigures:
        return self.figures.minus(mark)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_began = time.perf_counter()
            return
        if self._gc_began is None:
            return
        took = time.perf_counter() - self._gc_began
        self._gc_began = None
        generation = int(info.get("generation", 0))
        figures = self.figures
        figures.gc_s[generation] += took
        figures.gc_runs[generation] += 1
        figures.gc_max_s = max(figures.gc_max_s, took)

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.tick_s
            await asyncio.sleep(self.tick_s)
            self.note_tick(loop.time() - due)

    def note_tick(self, late_s: float) -> None:
        late_s = max(0.0, late_s)
        figures = self.figures
        figures.ticks += 1
        figures.late_total_s += late_s
        figures.late_max_s = max(figures.late_max_s, late_s)
