"""A fault run's own event loop, measured (scripts/harness/lag.py): how late
its ticks ran and how long its garbage collections took, per stretch."""

from __future__ import annotations

import asyncio
import gc
import time

from harness.lag import LagFigures, LoopLag


def test_a_stretch_counts_its_own_lateness_and_restarts_the_maximum() -> None:
    lag = LoopLag()
    lag.note_tick(0.040)
    lag.note_tick(-0.001)  # early: not late
    first = lag.mark()
    lag.note_tick(0.003)
    lag.note_tick(0.002)
    stretch = lag.since(first)
    assert stretch.ticks == 2
    assert abs(stretch.late_total_s - 0.005) < 1e-12
    assert stretch.late_max_s == 0.003  # the 40 ms before the mark is not this stretch's
    assert lag.figures.ticks == 4


def test_a_full_collection_is_counted_as_generation_two() -> None:
    lag = LoopLag()
    gc.callbacks.append(lag._on_gc)
    try:
        mark = lag.mark()
        gc.collect(2)
        stretch = lag.since(mark)
    finally:
        gc.callbacks.remove(lag._on_gc)
    assert stretch.gc_runs[2] >= 1
    assert stretch.gc_s[2] > 0.0
    assert stretch.gc_max_s >= stretch.gc_s[2] / stretch.gc_runs[2]


async def test_a_blocked_loop_shows_as_a_late_tick() -> None:
    lag = LoopLag(tick_s=0.002)
    lag.start()
    try:
        await asyncio.sleep(0.02)
        mark = lag.mark()
        time.sleep(0.05)  # noqa: ASYNC251 -- the loop blocked for 50 ms, on purpose
        await asyncio.sleep(0.01)
        stretch = lag.since(mark)
    finally:
        await lag.close()
    assert stretch.late_max_s >= 0.04
    assert "loop late" in stretch.text()


def test_the_text_reads_the_figures() -> None:
    figures = LagFigures(
        late_max_s=0.041,
        late_total_s=0.18,
        ticks=10,
        gc_s=[0.001, 0.003, 0.048],
        gc_runs=[1, 1, 1],
        gc_max_s=0.048,
    )
    assert figures.text() == (
        "loop late 41 ms at most, 180 ms in all; GC 3 runs (1 of gen 2), 52 ms, 48 at most"
    )
