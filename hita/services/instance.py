"""``InstanceView``: what this instance sees of its cache right now.

It is the ``instance`` object of ``GET /v1.0/cache/stats`` (the cache
console draws it), read from the same objects the Prometheus collectors
read: L1 and its tracking, pending invalidations, the coherence channel and
the outbox, the breaker's last transitions, the scheduled refresh, the Redis
servers, and the HTTP figures. The outbox lag is one query, made at most
once per ``OUTBOX_LAG_MAX_AGE_S`` whoever asks (a scrape or the console).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from hita.cache.client import RedisCache
from hita.cache.near import FLUSH_REASONS
from hita.cache.stats import ACK_STAGES, WAIT_OUTCOMES
from hita.db.database import Database
from hita.db.outbox_lag import OutboxLag, read_outbox_lag
from hita.domain.timefmt import iso_utc
from hita.domain.typedefs import JsonDict
from hita.errors import DatabaseUnavailable, Overloaded
from hita.services.coherence import CacheCoherence
from hita.services.refresh import StatsRefresher

log = logging.getLogger(__name__)

OUTBOX_LAG_MAX_AGE_S: Final = 1.0  # a lag read this recently is reused
OUTBOX_LAG_TIMEOUT_S: Final = 0.5  # past this, the last lag read stands


def _iso(unix_time: float) -> str:
    return iso_utc(datetime.fromtimestamp(unix_time, UTC))


class InstanceView:
    def __init__(
        self,
        cache: RedisCache,
        coherence: CacheCoherence,
        refresher: StatsRefresher,
        database: Database,
        *,
        redis_mode: str,
        http: Callable[[], JsonDict],
    ) -> None:
        self._cache = cache
        self._coherence = coherence
        self._refresher = refresher
        self._database = database
        self._redis_mode = redis_mode
        self._http = http
        self.outbox_lag: OutboxLag | None = None  # the last read
        self._lag_read_at = -math.inf

    async def read_outbox_lag(self) -> OutboxLag | None:
        """The outbox lag, read again when the last read is over a second old
        and a pooled connection is free (it never queues for one, nor counts
        as an overload refusal); otherwise, or when PostgreSQL cannot answer in
        time, the last one read (or None)."""
        now = time.monotonic()
        gate = self._database.gate
        if now - self._lag_read_at >= OUTBOX_LAG_MAX_AGE_S and (gate is None or gate.free):
            self._lag_read_at = now
            try:
                async with asyncio.timeout(OUTBOX_LAG_TIMEOUT_S):
                    self.outbox_lag = await read_outbox_lag(self._database)
            except (DatabaseUnavailable, Overloaded, TimeoutError) as exc:
                log.debug("outbox lag not read: %s", exc.__class__.__name__)
        return self.outbox_lag

    async def snapshot(self) -> JsonDict:
        lag = await self.read_outbox_lag()
        servers = await self._cache.servers()
        return {
            "at": round(time.time(), 3),
            "l1": self.l1(),
            "coherence": self.coherence(lag),
            "breaker": self.breaker(),
            "refresher": self.refresher(),
            "topology": {"mode": self._redis_mode, "servers": servers or []},
            "http": self._http(),
        }

    def l1(self) -> JsonDict:
        near, tracking = self._cache.near, self._cache.tracking
        usage = near.usage() if near is not None else {}
        state = "off" if tracking is None else "connected" if tracking.active else "lost"
        return {
            "enabled": near is not None,
            "tracking": state,
            "tracking_connections": tracking.connections if tracking is not None else 0,
            "tracking_messages": tracking.messages if tracking is not None else 0,
            "entries": len(near) if near is not None else 0,
            "bytes": near.size_bytes if near is not None else 0,
            "max_entries_per_type": near.max_entries if near is not None else 0,
            "max_bytes_per_type": near.max_bytes if near is not None else 0,
            "by_type": {
                name: {"entries": entries, "bytes": size}
                for name, (entries, size) in sorted(usage.items())
            },
            "flushes": {
                reason: near.stats.flush_reasons.get(reason, 0) if near is not None else 0
                for reason in FLUSH_REASONS
            },
        }

    def coherence(self, lag: OutboxLag | None) -> JsonDict:
        stats, pending = self._cache.stats, self._cache.pending
        session, counts = self._coherence.session, self._coherence.stats
        return {
            "session_open": session.open,
            "session_connections": session.connections,
            "trusted": pending.trusted,
            "renewals": counts.renewals,
            "rows_taken_in": counts.rows_taken_in,
            "rows_acknowledged": counts.rows_acked,
            "pending_invalidations": len(pending),
            "oldest_pending_s": round(stats.pending_age(pending.oldest_ticket()), 3),
            "invalidations_sent": stats.invalidations_sent,
            "acknowledged": {stage: stats.acknowledged.get(stage, 0) for stage in ACK_STAGES},
            "retries": stats.invalidation_retries,
            "writer_waits": {o: stats.coherence_waits.get(o, 0) for o in WAIT_OUTCOMES},
            "outbox_rows": lag.rows if lag is not None else None,
            "outbox_oldest_s": round(lag.oldest_age_s, 3) if lag is not None else None,
            "swept_rows": counts.swept,
        }

    def breaker(self) -> JsonDict:
        return {
            "state": self._cache.breaker.state.value,
            "transitions": [
                {"at": _iso(at), "transition": transition}
                for at, transition in reversed(self._cache.stats.breaker_log)
            ],
        }

    def refresher(self) -> JsonDict:
        counters = self._refresher.counters
        last = counters.last_success_at
        return {
            "interval_s": self._refresher.interval_s,
            "runs": counters.runs,
            "failures": counters.failures,
            "skipped": counters.skipped,
            "last_success_at": _iso(last) if last is not None else None,
            "last_duration_ms": round(counters.last_duration_s * 1000, 1),
        }
