from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from hita.config import (
    PROJECT_ROOT,
    SETTINGS,
    AuthConfig,
    BreakerConfig,
    CacheConfig,
    CacheTTLs,
    Config,
    ConfigError,
    DatabaseConfig,
    HttpConfig,
    LoginThrottleConfig,
    RedisConfig,
    RefreshConfig,
    load_config,
    settings_markdown,
    unknown_variables,
)

SECRET = "s" * 40


def test_development_defaults_are_the_seed_development_profile() -> None:
    config = load_config({})
    assert config == Config(
        env="development",
        data_dir=Path(".hita"),
        log_level="INFO",
        log_format="text",
        http=HttpConfig(
            host="127.0.0.1",
            port=8080,
            client_max_size=1024 * 1024,
            queue_delay_s=0.1,
            retry_after_s=1,
            overload_pace_s=0.5,
            access_log=True,
        ),
        database=DatabaseConfig(
            url=None,
            pool_min_size=2,
            pool_max_size=20,
            connect_timeout_s=3.0,
            command_timeout_s=10.0,
            acquire_timeout_s=3.0,
            startup_attempts=3,
            auto_migrate=True,
            queue_max=128,
            queue_timeout_s=0.25,
        ),
        redis=RedisConfig(
            url=None,
            max_connections=32,
            socket_timeout_s=0.25,
            connect_timeout_s=0.25,
            pool_timeout_s=0.25,
            key_prefix="",
        ),
        cache=CacheConfig(
            ttls=CacheTTLs(
                user_stats=60,
                user_list=30,
                user_details=180,
                dashboard_stats=120,
                superadmin_user_list=900,
                negative=15,
            ),
            breaker=BreakerConfig(failure_threshold=5, open_s=2.0),
            lease_ttl_ms=10_000,
            lease_wait_ms=1_000,
            xfetch_beta=1.0,
            pending_max_users=1_000,
            scan_budget_s=1.0,
            invalidation_budget_s=0.1,
            reader_lease_s=1.5,
            reader_renew_s=0.25,
            outbox_sweep_s=1.0,
            outbox_retention_s=30,
            outbox_max_rows=10_000,
            serve_when_db_down=True,
            l1_enabled=True,
            l1_max_entries=10_000,
            l1_max_bytes=32 * 1024 * 1024,
        ),
        refresh=RefreshConfig(
            enabled=True,
            interval_s=0.8 * 60,
            jitter=0.1,
            warmup_on_start=True,
            warmup_timeout_s=5.0,
        ),
        auth=AuthConfig(
            jwt_secret="",  # hita.devsecret supplies the data folder's own
            jwt_ttl_s=3600,
            argon2_time_cost=3,
            argon2_memory_kib=65536,
            argon2_parallelism=4,
        ),
        login_throttle=LoginThrottleConfig(
            enabled=True,
            max_failures_per_user=5,
            max_failures_per_address=50,
            window_s=300,
            trust_forwarded_for=False,
        ),
    )


def test_production_profile_has_the_seed_production_ttls() -> None:
    config = load_config(
        {
            "HITA_ENV": "production",
            "JWT_SECRET": SECRET,
            "DATABASE_URL": "postgresql://db/hita",
            "REDIS_URL": "redis://cache:6379/0",
        }
    )
    assert config.cache.ttls == CacheTTLs(
        user_stats=600,
        user_list=300,
        user_details=180,
        dashboard_stats=1800,
        superadmin_user_list=900,
        negative=15,
    )
    assert config.log_format == "json"
    assert config.database.auto_migrate is False


def test_every_ttl_is_overridable_by_its_environment_variable() -> None:
    config = load_config(
        {
            "USER_STATS_TTL": "11",
            "USER_LIST_TTL": "12",
            "USER_DETAILS_TTL": "13",
            "DASHBOARD_STATS_TTL": "14",
            "SUPERADMIN_USER_LIST_TTL": "15",
            "NEGATIVE_CACHE_TTL": "16",
        }
    )
    assert config.cache.ttls == CacheTTLs(11, 12, 13, 14, 15, 16)
    assert config.cache.ttls.for_type("user_details") == 13


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "JWT_SECRET must be set"),
        ({"JWT_SECRET": "short"}, "at least 32 bytes"),
    ],
)
def test_production_refuses_to_start_without_a_real_secret(
    environ: dict[str, str], message: str
) -> None:
    base = {
        "HITA_ENV": "production",
        "DATABASE_URL": "postgresql://db/h",
        "REDIS_URL": "redis://r:6379/0",
    }
    with pytest.raises(ConfigError, match=message):
        load_config(base | environ)


def test_production_refuses_the_embedded_servers() -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL and REDIS_URL"):
        load_config({"HITA_ENV": "production", "JWT_SECRET": SECRET})


def test_redis_url_wins_over_the_seed_host_settings() -> None:
    config = load_config({"REDIS_URL": "unix:///tmp/r.sock?db=2", "REDIS_HOST": "elsewhere"})
    assert config.redis.url == "unix:///tmp/r.sock?db=2"


def test_redis_host_settings_build_a_url_with_an_escaped_password() -> None:
    config = load_config(
        {
            "REDIS_HOST": "cache",
            "REDIS_PORT": "6380",
            "REDIS_DB": "3",
            "REDIS_PASSWORD": "p@ss/word",
        }
    )
    assert config.redis.url == "redis://:p%40ss%2Fword@cache:6380/3"


def test_secrets_stay_out_of_the_repr() -> None:
    config = load_config(
        {
            "JWT_SECRET": SECRET,
            "DATABASE_URL": "postgresql://u:pw@h/d",
            "REDIS_URL": "redis://:pw@h:6379/0",
        }
    )
    text = repr(config)
    assert SECRET not in text
    assert "pw" not in text


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"PORT": "eighty"}, "PORT must be an integer"),
        ({"USER_LIST_TTL": "0"}, "USER_LIST_TTL must be at least 1"),
        ({"HITA_ENV": "staging"}, "HITA_ENV must be one of"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT must be one of"),
        ({"STATS_REFRESH_ENABLED": "maybe"}, "must be true or false"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL must be a URL starting with"),
        ({"CACHE_KEY_PREFIX": "a*"}, "CACHE_KEY_PREFIX may hold only"),
        ({"PORT": "70000"}, "PORT must be at most 65535, not 70000"),
        ({"PORT": "0"}, "PORT must be at least 1"),
        ({"HOST": " "}, "HOST must name an address"),
        ({"REDIS_HOST": "r", "REDIS_PORT": "65536"}, "REDIS_PORT must be at most 65535"),
        (
            {"DB_POOL_MIN_SIZE": "30", "DB_POOL_MAX_SIZE": "20"},
            r"DB_POOL_MIN_SIZE \(30\) must not exceed DB_POOL_MAX_SIZE \(20\)",
        ),
        ({"DATABASE_URL": "nonsense"}, "DATABASE_URL must be a URL starting with postgresql://"),
        ({"DATABASE_URL": "postgresql://h:99999/d"}, "DATABASE_URL is not a valid URL"),
        ({"DATABASE_URL": "mysql://h/d"}, "DATABASE_URL must be a URL starting with"),
        ({"REDIS_URL": "redis://h:port/0"}, "REDIS_URL is not a valid URL"),
    ],
)
def test_bad_values_are_named_in_the_error(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(environ)


def test_a_profile_with_an_unknown_setting_is_refused(tmp_path: Path) -> None:
    (tmp_path / "development.toml").write_text("USER_STATS_TTLL = 5\n")
    with pytest.raises(ConfigError, match="unknown settings: USER_STATS_TTLL"):
        load_config({"HITA_CONFIG_DIR": str(tmp_path)})


def test_refresh_interval_defaults_to_80_percent_of_the_shortest_stats_ttl() -> None:
    config = load_config({"USER_STATS_TTL": "100", "DASHBOARD_STATS_TTL": "1000"})
    assert config.refresh.interval_s == pytest.approx(80.0)
    explicit = load_config({"STATS_REFRESH_INTERVAL_S": "2.5"})
    assert explicit.refresh.interval_s == 2.5


def test_the_configuration_reference_documents_every_setting() -> None:
    reference = (PROJECT_ROOT / "docs" / "configuration.md").read_text()
    assert settings_markdown() in reference
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert settings_markdown(differing_only=True) in readme
    assert "(docs/configuration.md)" in readme


def test_every_setting_is_declared_once() -> None:
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names)) > 60


def test_with_an_empty_profile_the_config_is_the_declared_defaults(tmp_path: Path) -> None:
    (tmp_path / "development.toml").write_text("# nothing\n")
    assert load_config({"HITA_CONFIG_DIR": str(tmp_path)}) == Config()


def test_the_profiles_are_read_from_the_package_not_the_checkout() -> None:
    # The checkout's config/ is a link to them, for readers; nothing reads through it.
    assert (PROJECT_ROOT / "config").resolve() == (PROJECT_ROOT / "hita/config/profiles")
    assert load_config({"HITA_ENV": "test"}).refresh.enabled is False


def test_a_profile_may_not_choose_the_profile(tmp_path: Path) -> None:
    (tmp_path / "development.toml").write_text('HITA_ENV = "production"\n')
    with pytest.raises(ConfigError, match="sets HITA_ENV: only the environment may"):
        load_config({"HITA_CONFIG_DIR": str(tmp_path)})


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"LOG_LEVEL": "info"}, ("INFO", "text", "standalone")),
        ({"LOG_LEVEL": "Debug", "LOG_FORMAT": "JSON"}, ("DEBUG", "json", "standalone")),
        (
            {"REDIS_MODE": "Sentinel", "REDIS_SENTINELS": "s:26379"},
            ("INFO", "text", "sentinel"),
        ),
    ],
)
def test_choices_are_case_insensitive(
    environ: dict[str, str], expected: tuple[str, str, str]
) -> None:
    config = load_config(environ)
    assert (config.log_level, config.log_format, config.redis.mode) == expected


@pytest.mark.parametrize(
    ("environ", "warnings"),
    [
        (
            {"REDIS_URLL": "redis://x"},
            ["REDIS_URLL is not a HITA setting; did you mean REDIS_URL?"],
        ),
        ({"LOGLEVEL": "info"}, ["LOGLEVEL is not a HITA setting; did you mean LOG_LEVEL?"]),
        (
            {"HITA_DATADIR": "/x"},
            ["HITA_DATADIR is not a HITA setting; did you mean HITA_DATA_DIR?"],
        ),
        ({"HITA_PROFILE": "x"}, ["HITA_PROFILE is not a HITA setting (hita config lists them)"]),
        (
            {
                "HOME": "/root",
                "HOSTNAME": "box",
                "PATH": "/bin",
                "TEST_DATABASE_URL": "postgresql://h/d",
                "REDIS_URL": "redis://h",
                "PYTHONPATH": ".",
            },
            [],
        ),
    ],
)
def test_a_variable_that_looks_like_a_setting_is_named(
    environ: dict[str, str], warnings: list[str]
) -> None:
    assert unknown_variables(environ) == warnings


def test_config_is_frozen() -> None:
    config = load_config({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.env = "production"  # type: ignore[misc]


def test_cluster_mode_reads_the_seed_nodes_and_needs_no_url() -> None:
    config = load_config(
        {
            "HITA_ENV": "production",
            "JWT_SECRET": SECRET,
            "DATABASE_URL": "postgresql://h/d",
            "REDIS_MODE": "cluster",
            "REDIS_CLUSTER_NODES": "10.0.0.1:7000, 10.0.0.2:7001",
            "REDIS_PASSWORD": "pw",
        }
    )
    assert (config.redis.mode, config.redis.nodes) == (
        "cluster",
        (("10.0.0.1", 7000), ("10.0.0.2", 7001)),
    )
    assert config.redis.url is None
    assert not config.redis.needs_embedded
    assert config.redis.password == "pw"
    assert "pw" not in repr(config)


def test_sentinel_mode_reads_the_sentinels_and_the_master_name() -> None:
    config = load_config(
        {
            "REDIS_MODE": "sentinel",
            "REDIS_SENTINELS": "s1:26379,s2:26379",
            "REDIS_SENTINEL_MASTER": "m",
        }
    )
    assert config.redis.nodes == (("s1", 26379), ("s2", 26379))
    assert config.redis.sentinel_master == "m"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"REDIS_MODE": "ring"}, "REDIS_MODE must be one of"),
        ({"REDIS_MODE": "cluster"}, "REDIS_MODE=cluster needs REDIS_CLUSTER_NODES"),
        ({"REDIS_MODE": "sentinel"}, "REDIS_MODE=sentinel needs REDIS_SENTINELS"),
        ({"REDIS_MODE": "cluster", "REDIS_CLUSTER_NODES": "h:x"}, "REDIS_CLUSTER_NODES must be"),
        ({"REDIS_MODE": "sentinel", "REDIS_SENTINELS": "h"}, "REDIS_SENTINELS must be"),
    ],
)
def test_bad_topology_settings_are_named(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(environ)
