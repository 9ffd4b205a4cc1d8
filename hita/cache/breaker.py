"""A small circuit breaker, its state in process.

closed --(failure_threshold consecutive failures, or one ``trip``)--> open
open --(open_s elapsed; one probe)--> half-open
half-open --(probe succeeds)--> closed;  --(probe fails)--> open again

While open, callers are refused at once, without touching the network. The
probe is ``probe()``, started in the background, when one is given (no
request waits for it: the cache's), else the next caller, let through.
Every transition is logged and reported to ``on_transition``.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


Transition = Callable[[BreakerState, BreakerState], None]


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int,
        open_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_transition: Transition | None = None,
        probe: Callable[[], None] | None = None,
        name: str = "redis",
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.failure_threshold = failure_threshold
        self.open_s = open_s
        self.name = name
        self._clock = clock
        self._on_transition = on_transition
        self._probe = probe  # starts a probe that reports with record_success/failure
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def allow(self) -> bool:
        """May a call go to the network now? In half-open, only one probe may:
        the background one when there is one (this caller is refused), else
        this caller."""
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.OPEN:
            if self._clock() - self._opened_at < self.open_s:
                return False
            self._move(BreakerState.HALF_OPEN)
        if self._probe_in_flight:
            return False
        self._probe_in_flight = True
        if self._probe is not None:
            self._probe()
            return False
        return True

    def record_success(self) -> None:
        self._failures = 0
        self._probe_in_flight = False
        if self._state is not BreakerState.CLOSED:
            self._move(BreakerState.CLOSED)

    def record_failure(self) -> None:
        self._failures += 1
        self._probe_in_flight = False
        if self._state is BreakerState.HALF_OPEN or (
            self._state is BreakerState.CLOSED and self._failures >= self.failure_threshold
        ):
            self._opened_at = self._clock()
            self._move(BreakerState.OPEN)

    def trip(self) -> None:
        """A failure that says on its own that the service is away (a call that
        timed out): open now, without waiting for the threshold."""
        self._failures = max(self._failures + 1, self.failure_threshold)
        self._probe_in_flight = False
        if self._state is not BreakerState.OPEN:
            self._opened_at = self._clock()
            self._move(BreakerState.OPEN, why="a call timed out")

    def abandon(self) -> None:
        """A call that was let through ended without a verdict (it was cancelled)."""
        self._probe_in_flight = False

    def _move(self, new: BreakerState, *, why: str | None = None) -> None:
        old, self._state = self._state, new
        level = logging.INFO if new is BreakerState.CLOSED else logging.WARNING
        log.log(
            level,
            "circuit breaker %s: %s -> %s (%s)",
            self.name,
            old.value,
            new.value,
            why or f"after {self._failures} consecutive failures",
        )
        if self._on_transition is not None:
            self._on_transition(old, new)
