"""Admission control by queueing delay: refuse only what the instance cannot serve in time.

An asyncio instance queues work in its event loop: a request that arrives
while the loop is busy waits its turn there. ``Admission`` measures that wait
as CoDel does a packet queue's sojourn time: a probe asks to be woken every
``PROBE_S`` and records how late it ran (the loop's lag), and the standing
delay is the *least* lag seen over the last ``INTERVAL_S``: a queue that never
drains. A flood arrives as one long turn of the loop that no probe has
measured yet (a thousand requests read at once); while it is worked through,
the probe's lateness so far says how long the requests at its end have
waited. That lateness counts only while ``FLOOD_IN_FLIGHT`` requests or more
are in flight: a late turn with a few requests is a loop starved by something
else (other processes on the CPU, a pause), and refusing them would relieve
nothing. While Redis cannot be used, every request waits for a PostgreSQL
connection too: then the queue in front of the pool counts as well, once it
refuses waiters, by how long it has not been empty (``downstream``;
``PoolGate.refusing_s``), so requests are refused at the door rather than
after their token check, at the pool. (A queue that stands but serves every
waiter in time does not count: with Redis paused, 16 clients and a burst on a
pool of 2 kept it standing for seconds while each waited milliseconds, and the
door refused one request in six.) The delay is the largest of these.

While the delay is at or under ``OVERLOAD_QUEUE_DELAY_MS`` (the target) every
request is admitted: 50 or 200 connections on an idle instance queue a few
milliseconds and are all served. Past it, a new request is answered at once,
before any other work, with 503 ``{"success": false, "error": "Service
overloaded; retry shortly"}`` and ``Retry-After``, with a probability that
grows with the delay (0 at the target, 1 at twice it), rather than joining a
queue whose wait would end in a timeout. Routes marked ``always_admitted`` (``/metrics``)
are always served, so an overloaded instance can still be seen. A target of
0 turns admission off. The queue in front of the PostgreSQL pool has its own
bound and budget (``hita.db.gate``).

An instance with nothing to admit has no queue to measure: once
``IDLE_PROBES`` probes in a row ran on time with no request in flight, the
probe rests (no timer, no wake-up of the loop) until the next request
arrives. That request wakes it, and the probe is due ``PROBE_S`` after it, so
a flood that arrives at a resting probe is measured from its first request,
as any other. An idle instance so costs the loop nothing.

A client that ignores ``Retry-After`` and sends its next request on the same
connection at once would keep the instance busy answering 503s, and the
requests it did admit would wait behind them. So once a 503 "overloaded"
(this one's, or the PostgreSQL queue's) has been sent, the next request on
that connection is read ``OVERLOAD_PACE_MS`` later: the answer goes out at
once, the connection is paced. Other connections are not affected.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from aiohttp import hdrs, web

PROBE_S: Final = 0.005  # how often the probe asks to be woken: 5 ms
INTERVAL_S: Final = 0.1  # the standing delay is the least lag over 100 ms (CoDel's interval)
# A turn of the loop that runs late with fewer requests than this in flight is
# not a flood of our own: the process was starved of CPU or paused (a neighbour
# starting on a shared machine, a GC pause). Its lateness alone refuses nothing;
# a delay that stands (the least lag over an interval) still does.
FLOOD_IN_FLIGHT: Final = 32
# Probes in a row that ran on time (within ``PROBE_S`` of due) with no request
# in flight before the probe rests: one interval's worth.
IDLE_PROBES: Final = round(INTERVAL_S / PROBE_S)


@dataclass(slots=True)
class Admission:
    """The standing queueing delay, the requests in flight and the refusals,
    read by the metrics collector."""

    target_s: float  # 0: admit everything
    rng: Callable[[], float] = field(default=random.random, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)  # the loop's
    # Another queue's delay that every request waits in now (0: none), in seconds.
    downstream: Callable[[], float] | None = field(default=None, repr=False)
    delay_s: float = 0.0  # the least lag over the last complete interval
    in_flight: int = 0
    peak: int = 0
    refused: int = 0
    _due: float = float("inf")  # when the probe is next due to run
    _window_start: float = 0.0
    _window_min: float = float("inf")
    _resting: asyncio.Event | None = None  # the probe rests until it is set

    def admit(self) -> bool:
        """Whether to serve a new request; if so, it is in flight until ``done``."""
        if self._resting is not None:
            self._wake()
        delay = self.delay_s
        if self.in_flight >= FLOOD_IN_FLIGHT:  # a flood being worked through
            delay = max(delay, self.clock() - self._due)
        if self.downstream is not None:
            delay = max(delay, self.downstream())
        if delay > self.target_s > 0 and self.rng() < (delay - self.target_s) / self.target_s:
            self.refused += 1
            return False
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        return True

    def done(self) -> None:
        self.in_flight -= 1

    def observe(self, lag_s: float, now: float) -> None:
        """One probe: it ran ``lag_s`` late, at ``now`` (the loop's clock)."""
        self._window_min = min(self._window_min, lag_s)
        if now - self._window_start >= INTERVAL_S:
            self.delay_s = self._window_min
            self._window_start, self._window_min = now, float("inf")

    @property
    def resting(self) -> bool:
        """Whether the probe rests (nothing in flight for a while)."""
        return self._resting is not None

    def _wake(self) -> None:
        """A request arrived at a resting probe: it is due ``PROBE_S`` from now,
        in a new interval."""
        resting, self._resting = self._resting, None
        now = self.clock()
        self._due = now + PROBE_S
        self._window_start, self._window_min = now, float("inf")
        if resting is not None:
            resting.set()

    async def watch(self) -> None:
        """The probe, for as long as the app runs (an owned background task)."""
        loop = asyncio.get_running_loop()
        self.clock = loop.time
        self._window_start = loop.time()
        self._due = loop.time() + PROBE_S
        idle = 0  # probes in a row on time with nothing in flight
        quiet = float("inf")  # the least lag they saw
        try:
            while True:
                await asyncio.sleep(max(self._due - loop.time(), 0.0))
                now = loop.time()
                lag = max(now - self._due, 0.0)
                self.observe(lag, now)
                if self.in_flight or lag > PROBE_S:
                    idle, quiet = 0, float("inf")
                else:
                    idle, quiet = idle + 1, min(quiet, lag)
                if idle < IDLE_PROBES:
                    self._due = now + PROBE_S
                    continue
                self.delay_s = quiet  # no queue stands: what those probes saw
                idle, quiet = 0, float("inf")
                self._due = float("inf")  # a request does not count a rest as lateness
                resting = self._resting = asyncio.Event()
                await resting.wait()  # ``_wake`` set the next due time
        finally:
            self._due = float("inf")
            self._resting = None


def to_pace(response: web.StreamResponse, pace_s: float) -> bool:
    """Whether an answer is a 503 overloaded, after which its connection is paced."""
    return pace_s > 0 and response.status == 503 and hdrs.RETRY_AFTER in response.headers


async def send_then_pace(
    request: web.Request, response: web.StreamResponse, pace_s: float
) -> web.StreamResponse:
    """Send a 503 overloaded now; read this connection's next request later."""
    try:
        await response.prepare(request)
        await response.write_eof()
    except ConnectionError:
        return response  # the client left: aiohttp drops the answer quietly
    await asyncio.sleep(pace_s)
    return response
