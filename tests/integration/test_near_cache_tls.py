"""L1 over TLS with an ACL user: its tracking connections are made like the
command connections (``rediss://``, the CA named in the URL, the user and
password), a warm read is served from L1, and a write through another
instance is seen at once.

Needs a redis-server built with TLS: Debian's ``redis-server`` package (7.0),
which ``make test`` installs as root. Without it the test says so in the
session's environment notes and skips.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest
from pytest_aiohttp import AiohttpClient
from redis import Redis as SyncRedis
from redis.exceptions import RedisError

from hita.domain.roles import Role
from hita.embedded.process import ServerProcess, wait_until
from tests.conftest import TEST_CLIENT_TIMEOUT_S, RedisTarget, note
from tests.integration.test_near_cache import l1_hits, warm
from tests.integration.test_near_cache_topologies import renamed_and_read, two_worlds_on
from tests.integration.test_redis_tls import (
    DEBIAN_REDIS,
    free_port,
    make_certificates,
    tls_argv,
)

pytestmark = pytest.mark.slow

USER: Final = "hita-app"
PASSWORD: Final = "tls and acl"


@dataclass
class AclTlsRedis:
    port: int
    ca: Path

    @property
    def url(self) -> str:
        return f"rediss://{USER}:tls%20and%20acl@localhost:{self.port}/0?ssl_ca_certs={self.ca}"

    def ready(self, process: ServerProcess) -> bool:
        reason = process.exited_early()
        if reason is not None:
            raise RuntimeError(f"redis-server (TLS, ACL) exited: {reason}")
        try:
            with self.client() as client:
                return bool(client.ping())
        except (RedisError, OSError):
            return False

    def client(self) -> SyncRedis:
        return SyncRedis(
            host="localhost",
            port=self.port,
            username=USER,
            password=PASSWORD,
            ssl=True,
            ssl_ca_certs=str(self.ca),
            socket_timeout=TEST_CLIENT_TIMEOUT_S,
        )


@pytest.fixture
def acl_tls_redis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AclTlsRedis]:
    """Debian's redis-server on a TLS port only, the default user off and one
    ACL user with a password."""
    if not DEBIAN_REDIS.exists() or shutil.which("openssl") is None:
        note(request, "L1 over TLS NOT RUN: /usr/bin/redis-server (Debian's) is not installed.")
        pytest.skip("needs Debian's redis-server (TLS): apt-get install -y redis-server")
    make_certificates(tmp_path)
    port = free_port()
    acl = ("--user", "default", "off", "--user", USER, "on", f">{PASSWORD}", "~*", "&*", "+@all")
    argv = tls_argv(port, tmp_path, *acl)
    process = ServerProcess("redis-server-tls-acl", argv, tmp_path / "redis.log")
    process.start()
    server = AclTlsRedis(port, tmp_path / "ca.pem")
    try:
        wait_until(lambda: server.ready(process), timeout_s=30, what="TLS Redis with ACL")
        yield server
    finally:
        process.stop()


async def test_l1_over_tls_with_an_acl_user(
    request: pytest.FixtureRequest,
    aiohttp_client: AiohttpClient,
    clean_database: str,
    acl_tls_redis: AclTlsRedis,
) -> None:
    target = RedisTarget("standalone", {"REDIS_URL": acl_tls_redis.url})
    a, b = await two_worlds_on(aiohttp_client, clean_database, target)
    with acl_tls_redis.client() as server:
        tracking = [c for c in server.client_list() if {"P", "t"} & set(c["flags"])]
    # Each instance's subscriber (P) and tracking connection (t, BCAST), as the ACL user.
    flags = sorted((c["flags"], c["user"]) for c in tracking)
    assert flags == [("P", USER), ("P", USER), ("tB", USER), ("tB", USER)]

    admin = await a.make_user(Role.ADMIN)
    guest = await a.make_user()
    path = f"/v1.0/user/{guest.id}"
    await warm(b, admin, path)
    assert await l1_hits(b, admin, path) == 2  # the token check and the read, from L1

    shown = [await renamed_and_read(a, b, admin, guest, n) for n in range(1, 21)]
    assert [s for n, s in enumerate(shown, 1) if s != f"Name {n}"] == []
    note(request, f"L1 over TLS with an ACL user run against {DEBIAN_REDIS}.")
