"""marshmallow schemas of every response body, for the OpenAPI document only.

The handlers answer plain dicts (``hita.api.responses``); these schemas say
what those dicts hold, field for field: every field is required unless a body
may lack it, and no body carries a field not listed here (``additionalProperties:
false``). ``tests/integration/test_schemathesis.py`` holds real responses to them.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from hita.cache.breaker import BreakerState
from hita.constants import JWT_TOKEN_TYPE
from hita.domain.ids import USER_ID_PATTERN
from hita.domain.roles import Role


def _int(**kwargs: Any) -> fields.Integer:
    return fields.Integer(required=True, **kwargs)


def _count() -> fields.Integer:
    return _int(validate=validate.Range(min=0))


def _str(**kwargs: Any) -> fields.String:
    return fields.String(required=True, **kwargs)


def _float() -> fields.Float:
    return fields.Float(required=True)


def _bool() -> fields.Boolean:
    return fields.Boolean(required=True)


def _flag(value: bool) -> fields.Boolean:
    return fields.Boolean(required=True, validate=validate.Equal(value))


def _nested(schema: type[Schema], **kwargs: Any) -> fields.Nested:
    return fields.Nested(schema, required=True, **kwargs)


def _list(schema: type[Schema]) -> fields.List[Any]:
    return fields.List(fields.Nested(schema), required=True)


def _one_of(*choices: str) -> fields.String:
    return _str(validate=validate.OneOf(choices))


def _user_id() -> fields.String:
    return _str(validate=validate.Regexp(f"^{USER_ID_PATTERN}$"))


def _moment(**kwargs: Any) -> fields.DateTime:
    return fields.DateTime(required=True, **kwargs)


# -- errors -----------------------------------------------------------------


class ErrorSchema(Schema):
    success = _flag(False)
    error = _str()


class InvalidInputSchema(ErrorSchema):
    """400: ``details`` holds the messages per field (``_schema``: the whole body)."""

    details = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))


class UnavailableSchema(ErrorSchema):
    """503: the cache endpoints add ``cache_available: false`` when Redis is away,
    and the detailed cache health Redis's own ``reason`` (NOAUTH, WRONGPASS, TLS...)."""

    cache_available = fields.Boolean(validate=validate.Equal(False))
    reason = fields.String()


# -- auth and users -----------------------------------------------------------


class TokenSchema(Schema):
    success = _flag(True)
    access_token = _str()
    token_type = _one_of(JWT_TOKEN_TYPE)
    expires_in = _int(validate=validate.Range(min=1))


class UserSummarySchema(Schema):
    id = _user_id()
    username = _str()
    email = _str()
    full_name = _str()
    role = _one_of(*Role)
    is_active = _bool()
    points = _count()
    created_at = _moment()
    updated_at = _moment()


class UserSchema(UserSummarySchema):
    permissions = fields.List(fields.String(), required=True)
    last_login_at = _moment(allow_none=True)
    # tokens issued before it no longer work
    password_changed_at = _moment()


class UserBodySchema(Schema):
    success = _flag(True)
    user = _nested(UserSchema)


class PaginationSchema(Schema):
    page = _int(validate=validate.Range(min=1))
    page_size = _int(validate=validate.Range(min=1))
    total = _count()
    pages = _count()


class UserListSchema(Schema):
    success = _flag(True)
    users = _list(UserSummarySchema)
    pagination = _nested(PaginationSchema)


class UserDeletedSchema(Schema):
    success = _flag(True)
    message = _str()
    user_id = _user_id()


# -- statistics ---------------------------------------------------------------


class UsersByRoleSchema(Schema):
    user = _count()
    admin = _count()
    superadmin = _count()


class UserStatsSchema(Schema):
    total_users = _count()
    active_users = _count()
    inactive_users = _count()
    users_by_role = _nested(UsersByRoleSchema)
    new_users_last_7_days = _count()
    total_points = _count()
    generated_at = _moment()


class TopUserSchema(Schema):
    id = _user_id()
    username = _str()
    full_name = _str()
    points = _count()


class SignupDaySchema(Schema):
    date = fields.Date(required=True)
    count = _count()


class DashboardStatsSchema(UserStatsSchema):
    points_issued_last_30_days = _count()
    points_redeemed_last_30_days = _count()
    top_users = _list(TopUserSchema)
    signups_per_day = _list(SignupDaySchema)


class UserStatsBodySchema(Schema):
    success = _flag(True)
    stats = _nested(UserStatsSchema)


class DashboardStatsBodySchema(Schema):
    success = _flag(True)
    stats = _nested(DashboardStatsSchema)


# -- points and permissions ---------------------------------------------------


class TransactionSchema(Schema):
    id = _int()
    type = _one_of("add", "redeem")
    amount = _int(validate=validate.Range(min=1))
    reason = _str()
    balance_after = _count()
    created_at = _moment()


class PointsChangeSchema(Schema):
    success = _flag(True)
    user_id = _user_id()
    points = _count()
    transaction = _nested(TransactionSchema)


class PointsHistorySchema(Schema):
    success = _flag(True)
    user_id = _user_id()
    transactions = _list(TransactionSchema)
    pagination = _nested(PaginationSchema)


class PermissionsSchema(Schema):
    success = _flag(True)
    user_id = _user_id()
    permissions = fields.List(fields.String(), required=True)


# -- operations ---------------------------------------------------------------


class DependencyStateSchema(Schema):
    status = _one_of("ok", "unavailable")


class ListenStateSchema(Schema):
    """Whether this instance's LISTEN delivers its own probe (``unknown``
    until the first is judged); ``deaf`` changes no answer."""

    status = _one_of("ok", "deaf", "unknown")


class HealthSchema(Schema):
    success = _flag(True)
    status = _one_of("ok", "degraded")
    database = _nested(DependencyStateSchema)
    cache = _nested(DependencyStateSchema)
    notifications = _nested(ListenStateSchema)


class HealthUnavailableSchema(ErrorSchema):
    """503 from ``/health``: PostgreSQL cannot be used; the states as for a 200."""

    status = _one_of("unavailable")
    database = _nested(DependencyStateSchema)
    cache = _nested(DependencyStateSchema)
    notifications = _nested(ListenStateSchema)


class LivenessSchema(Schema):
    success = _flag(True)
    status = _one_of("ok")


# -- cache management (the seed's bodies, with our additions) -----------------


class CacheInfoBriefSchema(Schema):
    status = _one_of("available")
    redis_version = _str()
    hit_rate = _float()


class CacheInfoSchema(CacheInfoBriefSchema):
    used_memory = _str()
    connected_clients = _count()


class KeyCountsSchema(Schema):
    user_stats_keys = _count()
    user_list_keys = _count()
    user_details_keys = _count()
    dashboard_stats_keys = _count()
    superadmin_user_list_keys = _count()
    total_keys = _count()
    estimated = _bool()


class TypeCountersSchema(Schema):
    hits = _count()
    misses = _count()
    errors = _count()
    sets = _count()
    invalidations = _count()
    lease_waits = _count()
    early_refreshes = _count()
    l1_hits = _count()
    l1_misses = _count()
    fills_refused = _count()
    hit_rate = _float()


class LastCacheErrorSchema(Schema):
    """The last error Redis gave this instance, in Redis's own words."""

    kind = _str(metadata={"description": "OOM, NOAUTH, WRONGPASS, TLS, or a class name"})
    reason = _str()
    operation = _str()
    at = _moment()


class ServiceStatisticsSchema(Schema):
    by_type = fields.Dict(
        keys=fields.String(), values=fields.Nested(TypeCountersSchema), required=True
    )
    totals = _nested(TypeCountersSchema)
    breaker_state = _one_of(*(state.value for state in BreakerState))
    pending_invalidations = _count()
    last_error = fields.Nested(LastCacheErrorSchema, required=True, allow_none=True)


class MemoryUsageSchema(Schema):
    used_memory = _str()
    used_memory_peak = _str()
    memory_fragmentation_ratio = _float()


class ConnectionsSchema(Schema):
    connected_clients = _count()
    total_connections_received = _count()
    uptime_in_seconds = _count()


class PerformanceSchema(Schema):
    keyspace_hits = _count()
    keyspace_misses = _count()
    hit_rate = _float()
    total_commands_processed = _count()


class DetailedStatisticsSchema(Schema):
    key_counts = _nested(KeyCountsSchema)
    memory_usage = _nested(MemoryUsageSchema)
    connections = _nested(ConnectionsSchema)
    performance = _nested(PerformanceSchema)
    redis_version = _str()
    redis_mode = _str()
    redis_nodes = _int()
    service_statistics = _nested(ServiceStatisticsSchema)


class CacheHealthSchema(Schema):
    success = _flag(True)
    cache_info = _nested(CacheInfoSchema)


class CacheDetailedHealthSchema(CacheHealthSchema):
    timestamp = _moment()
    detailed_statistics = _nested(DetailedStatisticsSchema)


class MessageSchema(Schema):
    success = _flag(True)
    message = _str()


class CacheClearedSchema(MessageSchema):
    keys_deleted = _count()


class CacheWarmedSchema(MessageSchema):
    warmed = fields.List(fields.String(), required=True)
    duration_ms = fields.Float(required=True, validate=validate.Range(min=0))


class CacheTestResultsSchema(Schema):
    cache_available = _bool()
    set_operation = _bool()
    get_operation = _bool()
    exists_operation = _bool()
    delete_operation = _bool()
    get_after_delete = _bool()


class CacheTestSchema(Schema):
    success = _flag(True)
    test_results = _nested(CacheTestResultsSchema)
