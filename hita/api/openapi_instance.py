"""Response schemas of ``GET /v1.0/cache/stats`` and of what this instance
sees of its cache (``hita.services.instance``), for the OpenAPI document.

Like ``openapi_schemas``, every field is listed and none other may appear.
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from hita.api.openapi_schemas import (
    CacheInfoBriefSchema,
    KeyCountsSchema,
    ServiceStatisticsSchema,
    UnavailableSchema,
    _bool,
    _count,
    _float,
    _moment,
    _nested,
    _one_of,
    _str,
)
from hita.cache.breaker import BreakerState
from hita.cache.near import FLUSH_REASONS
from hita.cache.stats import ACK_STAGES, WAIT_OUTCOMES


def _counts(name: str, keys: tuple[str, ...]) -> type[Schema]:
    """A schema named ``name`` of one count per key (reasons, stages, outcomes)."""
    return Schema.from_dict({key: _count() for key in keys}, name=name)


def _seconds() -> fields.Float:
    return fields.Float(required=True, validate=validate.Range(min=0))


class L1UsageSchema(Schema):
    entries = _count()
    bytes = _count()


class L1Schema(Schema):
    """The in-process near cache and the Redis tracking that keeps it coherent."""

    enabled = _bool()
    tracking = _one_of("connected", "lost", "off")
    tracking_connections = _count()
    tracking_messages = _count()
    entries = _count()
    bytes = _count()
    max_entries_per_type = _count()
    max_bytes_per_type = _count()
    by_type = fields.Dict(keys=fields.String(), values=fields.Nested(L1UsageSchema), required=True)
    flushes = _nested(_counts("L1FlushesSchema", FLUSH_REASONS))


class CoherenceSchema(Schema):
    """Invalidations not yet acknowledged by Redis, this instance's reader lease
    and session, and the outbox (``outbox_*`` null until PostgreSQL has answered
    once)."""

    session_open = _bool()
    session_connections = _count()
    trusted = _bool()
    renewals = _count()
    rows_taken_in = _count()
    rows_acknowledged = _count()
    pending_invalidations = _count()
    oldest_pending_s = _seconds()
    invalidations_sent = _count()
    acknowledged = _nested(_counts("AcknowledgedSchema", ACK_STAGES))
    retries = _count()
    writer_waits = _nested(_counts("WriterWaitsSchema", WAIT_OUTCOMES))
    outbox_rows = fields.Integer(required=True, allow_none=True, validate=validate.Range(min=0))
    outbox_oldest_s = fields.Float(required=True, allow_none=True, validate=validate.Range(min=0))
    swept_rows = _count()


class TransitionSchema(Schema):
    at = _moment()
    transition = _str()


class BreakerSchema(Schema):
    state = _one_of(*(state.value for state in BreakerState))
    transitions = fields.List(fields.Nested(TransitionSchema), required=True)


class RefresherSchema(Schema):
    interval_s = _seconds()
    runs = _count()
    failures = _count()
    skipped = _count()
    last_success_at = fields.DateTime(required=True, allow_none=True)
    last_duration_ms = _seconds()


class ServerSchema(Schema):
    address = _str()
    role = _str(metadata={"description": "server, master, primary or replica"})


class TopologySchema(Schema):
    mode = _one_of("standalone", "cluster", "sentinel")
    servers = fields.List(fields.Nested(ServerSchema), required=True)


class HttpSummarySchema(Schema):
    """Every request this instance served; ``latency_counts`` is cumulative, one
    longer than ``latency_buckets_s`` (its last entry counts every request)."""

    requests = _count()
    server_errors = _count()
    latency_buckets_s = fields.List(fields.Float(), required=True)
    latency_counts = fields.List(fields.Integer(validate=validate.Range(min=0)), required=True)


class InstanceSchema(Schema):
    """What this instance sees now (the cache console draws it)."""

    at = _float()
    l1 = _nested(L1Schema)
    coherence = _nested(CoherenceSchema)
    breaker = _nested(BreakerSchema)
    refresher = _nested(RefresherSchema)
    topology = _nested(TopologySchema)
    http = _nested(HttpSummarySchema)


class RedisMemorySchema(Schema):
    used_bytes = _count()
    max_bytes = _count()


class CacheStatsSchema(Schema):
    success = fields.Boolean(required=True, validate=validate.Equal(True))
    cache_info = _nested(CacheInfoBriefSchema)
    key_counts = _nested(KeyCountsSchema)
    service_statistics = _nested(ServiceStatisticsSchema)
    redis_memory = _nested(RedisMemorySchema)
    instance = _nested(InstanceSchema)


class CacheStatsUnavailableSchema(UnavailableSchema):
    """503: Redis cannot be reached (with ``cache_available: false`` and what this
    instance sees, ``instance``), or the instance is overloaded."""

    instance = fields.Nested(InstanceSchema)
