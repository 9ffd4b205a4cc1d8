"""``@cached``: the seed's decorator for coroutine functions and methods.

    class UserService:
        def __init__(self, cache: RedisCache) -> None:
            self.cache = cache

        @cached(ttl=300, key_prefix="user_service")
        async def get_user_details(self, user_id: str) -> dict[str, object] | None: ...

    # key: user_service:get_user_details:user_id:5779356081

Methods find their cache on ``self.cache`` (``self`` never enters the key);
plain functions are given one with ``cache=``. Arguments are bound to their
parameter names, so ``f("1")`` and ``f(user_id="1")`` share an entry; a
``key`` function may choose the parts instead. The call goes through
``RedisCache.get_or_load``: one loader call per miss, straight through to the
function when Redis is unavailable.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, ParamSpec, TypeVar

from hita.cache.client import RedisCache
from hita.cache.keys import bind_arguments, check_name

P = ParamSpec("P")
R = TypeVar("R")

# Prefixes of every decorated function: a static set of names (filled as
# modules are imported), so ``cache clear`` can remove decorator keys too.
DECORATOR_PREFIXES: Final[set[str]] = set()


def cached(
    ttl: float,
    key_prefix: str,
    *,
    key: Callable[..., Mapping[str, object]] | None = None,
    negative_ttl: float | None = None,
    cache: RedisCache | Callable[[], RedisCache] | None = None,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Cache a coroutine function's result for ``ttl`` seconds (or a per-call
    ``cache_ttl=`` keyword). ``key(*args, **kwargs)`` returns the named parts
    of the key (without ``self``); ``negative_ttl`` caches a ``None`` result."""
    check_name(key_prefix)
    DECORATOR_PREFIXES.add(key_prefix)

    def decorate(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        if not inspect.iscoroutinefunction(func):
            raise TypeError("@cached decorates coroutine functions")
        params = list(inspect.signature(func).parameters)
        is_method = bool(params) and params[0] == "self"

        def find_cache(args: tuple[Any, ...]) -> RedisCache:
            if cache is not None:
                return cache if isinstance(cache, RedisCache) else cache()
            owner_cache = getattr(args[0], "cache", None) if is_method and args else None
            if not isinstance(owner_cache, RedisCache):
                raise TypeError(f"{func.__qualname__}: pass cache= or give self a .cache")
            return owner_cache

        @functools.wraps(func)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            call_ttl = kwargs.pop("cache_ttl", ttl)
            store = find_cache(args)
            if key is not None:
                parts = key(*(args[1:] if is_method else args), **kwargs)
            else:
                parts = bind_arguments(func, args, kwargs, skip_first=is_method)
            cache_key = store.keys.function_key(key_prefix, func.__name__, parts)
            return await store.get_or_load(
                cache_key,
                lambda: func(*args, **kwargs),
                ttl=float(call_ttl),  # type: ignore[arg-type]
                negative_ttl=negative_ttl,
            )

        return wrapper

    return decorate
