"""URL and TLS policy for the servers HITA connects to, and the one function
that hides a password in a URL or DSN before it is shown or logged."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Final
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from hita.config.declare import ConfigError

MASK: Final = "***"
_SECRET_PARAMS: Final = frozenset({"password", "passwd", "sslpassword"})


def redact(url: str) -> str:
    """``url`` (a Redis URL or a PostgreSQL DSN) with every password replaced by
    ``***``: the one in the user part and any ``?password=`` parameter."""
    parts = urlsplit(url)
    if parts.password is not None:
        masked = f"{parts.username or ''}:{MASK}@{parts.netloc.rpartition('@')[2]}"
        url = url.replace(parts.netloc, masked, 1)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if any(key.lower() in _SECRET_PARAMS for key, _ in pairs):
        query = urlencode(
            [(k, MASK if k.lower() in _SECRET_PARAMS else v) for k, v in pairs], safe="/*"
        )
        url = url.replace(f"?{parts.query}", f"?{query}", 1)
    return url


def url_check(*schemes: str) -> Callable[[str, str], str]:
    """A check for ``url``: it parses, has one of ``schemes`` and a valid port, so
    a value that cannot work is a configuration error at once, never a retry."""

    def check(name: str, url: str) -> str:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a port out of range
        except ValueError as exc:
            raise ConfigError(f"{name} is not a valid URL: {exc}") from None
        if parts.scheme not in schemes:
            wanted = ", ".join(f"{s}://" for s in schemes)
            raise ConfigError(f"{name} must be a URL starting with {wanted}")
        return url

    return check


_redis_scheme = url_check("redis", "rediss", "unix")


def redis_url_check(name: str, url: str) -> str:
    """A Redis URL whose ``rediss://`` keeps the certificate and host name check."""
    _redis_scheme(name, url)
    query = {k.lower(): v.lower() for k, v in parse_qsl(urlsplit(url).query)}
    if query.get("ssl_cert_reqs", "required") != "required" or query.get(
        "ssl_check_hostname", "true"
    ) in ("false", "0", "no", "off"):
        raise ConfigError(
            f"{name} turns off Redis's certificate check (ssl_cert_reqs or"
            " ssl_check_hostname): HITA always checks it; name your CA with"
            " ssl_ca_certs=/path/to/ca.pem instead"
        )
    return url


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` added; a different one already there is refused."""
    parts = urlsplit(url)
    if parts.password is not None:
        if unquote(parts.password) != password:
            raise ConfigError(
                "REDIS_PASSWORD and the password in REDIS_URL differ: set only one of them"
            )
        return url
    user = quote(unquote(parts.username), safe="") if parts.username else ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}"))


def host_url(host: str, port: int, db: int, password: str | None) -> str:
    """The seed's REDIS_HOST/PORT/DB/PASSWORD as one URL, the password escaped."""
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{host}:{port}/{db}"


def nodes_check(name: str, text: str) -> tuple[tuple[str, int], ...]:
    """``host:port,host:port`` as pairs; at least one."""
    nodes = []
    for item in text.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{name} must be host:port,host:port..., not {item.strip()!r}")
        nodes.append((host.strip("[]"), int(port)))
    return tuple(nodes)


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host`` (a name other than localhost
    might resolve to anything, so it counts as reachable from outside)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
