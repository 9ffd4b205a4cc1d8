"""Typed application and request keys, all in one place (no string keys anywhere)."""

from typing import Final

from aiohttp import web

from hita.api.access_log import AccessLog
from hita.api.admission import Admission
from hita.cache.client import RedisCache
from hita.config import Config
from hita.db.database import Database
from hita.domain.users import Principal
from hita.metrics import Metrics
from hita.services.auth import AuthService
from hita.services.cache_admin import CacheAdmin
from hita.services.cache_keys import CacheKeys
from hita.services.coherence import CacheCoherence
from hita.services.instance import InstanceView
from hita.services.permissions import PermissionService
from hita.services.points import PointsService
from hita.services.refresh import StatsRefresher
from hita.services.users import UserService
from hita.services.warmup import CacheWarmupService

CONFIG: Final = web.AppKey("config", Config)
METRICS: Final = web.AppKey("metrics", Metrics)
DATABASE: Final = web.AppKey("database", Database)
CACHE: Final = web.AppKey("cache", RedisCache)
CACHE_KEYS: Final = web.AppKey("cache_keys", CacheKeys)
COHERENCE: Final = web.AppKey("coherence", CacheCoherence)
# Reads go through the cache (a CachedUserService); writes are UserService's own.
USER_SERVICE: Final = web.AppKey("user_service", UserService)
POINTS_SERVICE: Final = web.AppKey("points_service", PointsService)
PERMISSION_SERVICE: Final = web.AppKey("permission_service", PermissionService)
AUTH_SERVICE: Final = web.AppKey("auth_service", AuthService)
WARMUP: Final = web.AppKey("warmup", CacheWarmupService)
CACHE_ADMIN: Final = web.AppKey("cache_admin", CacheAdmin)
REFRESHER: Final = web.AppKey("refresher", StatsRefresher)
# What this instance sees of its cache now (the `instance` of /cache/stats, the console's data).
INSTANCE: Final = web.AppKey("instance", InstanceView)
# The OpenAPI document, built from the route table once per process.
OPENAPI: Final = web.AppKey("openapi", bytes)
ADMISSION: Final = web.AppKey("admission", Admission)
ACCESS_LOG: Final = web.AppKey("access_log", AccessLog)

# The verified caller of a request, set by the auth middleware.
PRINCIPAL: Final = web.RequestKey("principal", Principal)
# The user a mutating request changed when its path names none (create, login),
# set by the handler for the cache-invalidation middleware.
AFFECTED_USER: Final = web.RequestKey("affected_user", str)
