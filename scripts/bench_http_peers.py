"""The peers bench_http.py measures HITA against, served in a process of their own.

``/hello`` (``web.json_response``: the ceiling), ``/get/{id}`` (one
``redis.asyncio`` GET + orjson), ``/aiocache/{id}`` and ``/cashews/{id}`` (each
library's decorated hit), no auth; every id's key is written before the first
request. ``/kept/{id}``: aiohttp alone answering the user read's shape (a
dynamic route; the body, ``ETag`` and request id of a user's answer, kept
in a dict), so what aiohttp itself costs for that answer is measured beside
HITA's.

    python scripts/bench_http_peers.py PORT REDIS_URL IDS_FILE
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import orjson
from aiohttp import hdrs, web

from hita.api.etag import etag_of
from hita.api.middlewares import REQUEST_ID_HEADER
from hita.api.responses import JSON_UTF8

from harness.bench import DOCUMENT


async def hello(request: web.Request) -> web.Response:
    """The ceiling: aiohttp's own JSON answer, nothing else."""
    return web.json_response({"success": True, "message": "hello, world"})


def kept_answers(ids: list[str]) -> Callable[[web.Request], Awaitable[web.Response]]:
    """aiohttp alone: each user's answer (body, ``ETag``) made once and kept."""
    kept: dict[str, tuple[bytes, str]] = {}
    for user_id in ids:
        body = orjson.dumps({"success": True, "user": {**DOCUMENT, "id": user_id}})
        kept[user_id] = (body, etag_of(body))

    async def kept_answer(request: web.Request) -> web.Response:
        body, etag = kept[request.match_info["id"]]
        headers = {
            hdrs.CONTENT_TYPE: JSON_UTF8,
            hdrs.ETAG: etag,
            REQUEST_ID_HEADER: "0123456789abcdef0123456789abcdef",
        }
        return web.Response(body=body, headers=headers)

    return kept_answer


def peers_app(redis_url: str, ids: list[str]) -> web.Application:
    from aiocache import RedisCache as AioRedisCache  # noqa: PLC0415 - the bench extra
    from aiocache import cached as aio_cached  # noqa: PLC0415
    from cashews import Cache as CashewsCache  # noqa: PLC0415
    from redis.asyncio import Redis  # noqa: PLC0415

    raw = Redis.from_url(redis_url)
    cashews = CashewsCache()
    cashews.setup(redis_url)
    host, port = redis_url.removeprefix("redis://").split("/", 1)[0].split(":")

    @cashews(ttl=3600, key="peers:cashews:{user_id}")
    async def cashews_user(user_id: str) -> dict[str, Any]:
        return {**DOCUMENT, "id": user_id}

    async def user(user_id: str) -> dict[str, Any]:
        return {**DOCUMENT, "id": user_id}

    decorate = aio_cached(
        ttl=3600,
        cache=AioRedisCache,
        endpoint=host,
        port=int(port),
        namespace="peers-aiocache",
        key_builder=lambda _f, user_id: user_id,
    )
    aiocache_user = cast(Callable[[str], Awaitable[dict[str, Any]]], decorate(user))

    def dumps(value: Any) -> str:
        return orjson.dumps(value).decode()

    async def get(request: web.Request) -> web.Response:
        value = orjson.loads(await raw.get(f"peers:raw:{request.match_info['id']}") or b"null")
        return web.json_response({"success": True, "user": value}, dumps=dumps)

    async def via_aiocache(request: web.Request) -> web.Response:
        user = await aiocache_user(request.match_info["id"])
        return web.json_response({"success": True, "user": user}, dumps=dumps)

    async def via_cashews(request: web.Request) -> web.Response:
        user = await cashews_user(request.match_info["id"])
        return web.json_response({"success": True, "user": user}, dumps=dumps)

    async def fill(app: web.Application) -> Any:
        for user_id in ids:  # every key warm before the first request
            await raw.set(f"peers:raw:{user_id}", orjson.dumps({**DOCUMENT, "id": user_id}))
            await cashews_user(user_id)
            await aiocache_user(user_id)
        yield
        await raw.aclose()
        await cashews.close()

    app = web.Application()
    app.cleanup_ctx.append(fill)
    app.router.add_get("/hello", hello)
    app.router.add_get("/get/{id}", get)
    app.router.add_get("/aiocache/{id}", via_aiocache)
    app.router.add_get("/cashews/{id}", via_cashews)
    app.router.add_get("/kept/{id}", kept_answers(ids))
    return app


def serve_peers(port: int, redis_url: str, ids_file: Path) -> int:
    ids = ids_file.read_text().split()
    web.run_app(peers_app(redis_url, ids), host="127.0.0.1", port=port, access_log=None, print=None)
    return 0


if __name__ == "__main__":
    port, redis_url, ids_file = sys.argv[1:4]
    sys.exit(serve_peers(int(port), redis_url, Path(ids_file)))
