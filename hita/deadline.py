"""How long the request being served may still wait for a shared resource.

The front middleware gives each request one budget for waiting in queues
(``DB_QUEUE_TIMEOUT_MS``) as a deadline in a context variable; the queue in
front of the PostgreSQL pool (``hita.db.gate``) waits no longer than what is
left of it. A request that reads twice from PostgreSQL (its token's user, then
its data) so waits the budget once in all, not once per read. Work outside a
request (the outbox sweep, the refresh) has no deadline: each wait has the
whole budget.
"""

from __future__ import annotations

from contextvars import ContextVar

# The monotonic time (time.monotonic, the event loop's clock) past which the
# current request waits no more; None outside a request.
wait_deadline: ContextVar[float | None] = ContextVar("hita_wait_deadline", default=None)
