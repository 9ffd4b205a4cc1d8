"""Domain errors. The HTTP layer maps them to statuses in one table
(``hita.api.errors.ERROR_TO_HTTP_STATUS``); nothing below the API knows HTTP."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class HitaError(Exception):
    """Base of every error the service raises on purpose."""

    message = "Request failed"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.message)

    @property
    def public_message(self) -> str:
        return str(self)


class InvalidInput(HitaError):
    message = "Invalid input"

    def __init__(
        self,
        message: str | None = None,
        details: Mapping[str, Sequence[str] | Mapping[str, object]] | None = None,
    ) -> None:
        super().__init__(message)
        self.details = dict(details or {})


class NotAuthenticated(HitaError):
    message = "Authentication required"


class PermissionDenied(HitaError):
    message = "You are not allowed to do this"


class NotFound(HitaError):
    message = "Not found"


class UserNotFound(NotFound):
    message = "User not found"


class Conflict(HitaError):
    message = "Conflict"


class BusinessRuleViolation(HitaError):
    message = "Business rule violated"


class InsufficientPoints(BusinessRuleViolation):
    message = "Insufficient points"


class IdempotencyKeyReused(BusinessRuleViolation):
    message = "This Idempotency-Key was used for another change of this user's points"


class DependencyUnavailable(HitaError):
    message = "A dependency is unavailable"


class DatabaseUnavailable(DependencyUnavailable):
    message = "Database not available"

    def __init__(self, message: str | None = None, *, retryable: bool = False) -> None:
        super().__init__(message)
        # The connection was lost before anything committed: running the same
        # work again on another connection is safe.
        self.retryable = retryable


class CacheUnavailable(DependencyUnavailable):
    message = "Redis cache not available"

    def __init__(self, message: str | None = None, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason  # Redis's own words (NOAUTH, WRONGPASS, TLS...), for admins


class Overloaded(DependencyUnavailable):
    """More work than this instance takes in time: answered at once, to be retried
    (a standing queue in the event loop, or a wait for a PostgreSQL connection
    past its budget). Never a sign that a dependency is down."""

    message = "Service overloaded; retry shortly"

    def __init__(self, message: str | None = None, *, reason: str = "queue_delay") -> None:
        super().__init__(message)
        self.reason = reason
