"""Small helpers shared by tests."""

from hita.cache.breaker import BreakerState, CircuitBreaker


def state_of(breaker: CircuitBreaker) -> BreakerState:
    """The breaker's state, read afresh (keeps mypy from narrowing across calls)."""
    return breaker.state
