"""How long the request being served may still wait in queues for a shared resource.

The front gives each request one budget for waiting in queues
(``DB_QUEUE_TIMEOUT_MS``) in a context variable; the queue in front of the
PostgreSQL pool (``hita.db.gate``) waits no longer than what is left of it and
takes what it waited from it. A request that reads twice from PostgreSQL (its
token's user, then its data) so waits the budget once in all, not once per
read. Only queue waits spend it: time the request spent elsewhere (a Redis
timeout before its breaker opened, its own statements) does not, so a request
slowed by Redis still gets its whole wait for a connection instead of being
refused as overloaded by a pool that is not. Work outside a request (the outbox
sweep, the refresh) has no budget: each wait has the whole queue timeout.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(slots=True)
class WaitBudget:
    """Seconds the current request may still wait in queues."""

    left_s: float

    def spend(self, seconds: float) -> None:
        self.left_s -= seconds


# The budget of the request being served; None outside a request. Tasks the
# request starts copy the context, so they share (and spend) the same budget.
wait_budget: ContextVar[WaitBudget | None] = ContextVar("hita_wait_budget", default=None)
