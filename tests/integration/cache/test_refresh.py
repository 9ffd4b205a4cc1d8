"""The scheduled refresh task and the start-up warm-up."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest
from pytest_aiohttp import AiohttpClient

from hita.app import create_app
from hita.appkeys import CACHE, WARMUP
from hita.services.refresh import StatsRefresher
from hita.services.warmup import CacheWarmupService
from hita.tasks import cancel_and_wait
from tests.conftest import RedisTarget, make_config
from tests.integration.cache.conftest import Backend, real_backend_factory


class Refresh:
    def __init__(self, fail_first: int = 0) -> None:
        self.calls = 0
        self.fail_first = fail_first

    async def __call__(self) -> None:
        self.calls += 1
        if self.calls <= self.fail_first:
            raise RuntimeError("the database hiccuped")


def test_wake_ups_are_aligned_to_slots_with_jitter_inside_the_slot() -> None:
    refresher = StatsRefresher(
        None,  # type: ignore[arg-type]  # scheduling needs no cache
        Refresh(),
        10.0,
        0.1,
        clock=lambda: 1003.0,
        rng=lambda: 0.5,
    )
    assert refresher.delay_to_next_run() == pytest.approx(7.0 + 0.5)
    refresher = StatsRefresher(
        None,  # type: ignore[arg-type]  # scheduling needs no cache
        Refresh(),
        10.0,
        0.1,
        clock=lambda: 1009.999,
        rng=lambda: 0.0,
    )
    assert refresher.delay_to_next_run() == pytest.approx(0.001)


async def test_a_failing_refresh_is_counted_and_the_next_one_runs(
    fake_backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    refresh = Refresh(fail_first=1)
    refresher = StatsRefresher(fake_backend.make(), refresh, 0.05, 0.0)
    with caplog.at_level(logging.ERROR):
        assert not await refresher.run_once()
    assert "stats refresh failed" in caplog.text
    await asyncio.sleep(0.06)  # the next slot
    assert await refresher.run_once()
    assert (refresher.counters.failures, refresher.counters.runs) == (1, 1)
    assert refresher.counters.last_success_at is not None


async def test_a_refresh_while_redis_is_down_is_skipped_not_fatal(fake_backend: Backend) -> None:
    refresh = Refresh()
    refresher = StatsRefresher(fake_backend.make(), refresh, 0.05, 0.0)
    fake_backend.disconnect()
    assert not await refresher.run_once()
    assert refresher.counters.skipped == 1
    assert refresh.calls == 0


async def test_the_loop_keeps_going_and_stops_cleanly_when_cancelled(redis_url: str) -> None:
    backend = await real_backend_factory(RedisTarget("standalone", {"REDIS_URL": redis_url}))
    refresh = Refresh(fail_first=1)
    refresher = StatsRefresher(backend.make(), refresh, 0.02, 0.1)
    task = asyncio.create_task(refresher.run_forever())
    for _ in range(500):  # until two runs followed the failure (not a fixed 150 ms)
        if refresher.counters.runs >= 2:
            break
        await asyncio.sleep(0.01)
    # Cancelled as the app cancels its tasks: again if Python 3.11's wait_for
    # (inside redis-py) swallowed the first cancellation; once, it hung here.
    await cancel_and_wait(task)
    assert task.cancelled()
    await backend.close()
    assert refresher.counters.failures == 1
    assert refresher.counters.runs >= 2


async def test_start_up_warms_the_essential_caches(
    aiohttp_client: AiohttpClient, clean_database: str, clean_redis: str
) -> None:
    config = make_config(
        DATABASE_URL=clean_database,
        REDIS_URL=clean_redis,
        WARMUP_ON_START="true",
        WARMUP_TIMEOUT_S="5",
    )
    app = create_app(config)
    await aiohttp_client(app)
    stats = app[CACHE].stats
    for cache_type in ("user_stats", "dashboard_stats", "user_list", "superadmin_user_list"):
        assert stats[cache_type].sets == 1, cache_type
    result = await app[WARMUP].warm_essential_caches()  # again: everything is there
    assert result.warmed == ("user_stats", "dashboard_stats", "user_list", "superadmin_user_list")
    assert stats["dashboard_stats"].hits == 1


async def test_start_up_does_not_wait_longer_than_its_bound_for_the_warm_up(
    aiohttp_client: AiohttpClient,
    clean_database: str,
    clean_redis: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = asyncio.Event()

    async def slow_warm(self: CacheWarmupService) -> None:
        await release.wait()

    monkeypatch.setattr(CacheWarmupService, "warm_essential_caches", slow_warm)
    config = make_config(
        DATABASE_URL=clean_database,
        REDIS_URL=clean_redis,
        WARMUP_ON_START="true",
        WARMUP_TIMEOUT_S="0.05",
    )
    client = await asyncio.wait_for(aiohttp_client(create_app(config)), timeout=10)
    assert (await client.get("/v1.0/health")).status == 200  # serving, warm-up still going
    release.set()


async def test_shutdown_leaves_no_pending_task_behind(
    aiohttp_client: AiohttpClient,
    clean_database: str,
    clean_redis: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = make_config(
        DATABASE_URL=clean_database,
        REDIS_URL=clean_redis,
        STATS_REFRESH_ENABLED="true",
        STATS_REFRESH_INTERVAL_S="0.1",
        WARMUP_ON_START="true",
    )
    client = await aiohttp_client(create_app(config))
    await asyncio.sleep(0.35)  # a few refreshes run
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        await client.close()
        gc.collect()
        await asyncio.sleep(0)
    assert "Task was destroyed but it is pending" not in caplog.text
    leftovers = [
        t
        for t in asyncio.all_tasks()
        if t is not asyncio.current_task() and t.get_name() in ("stats-refresh", "cache-warmup")
    ]
    assert leftovers == []
