"""Typed application and request keys, all in one place (no string keys anywhere)."""

from typing import Final

from aiohttp import web

from hita.cache.client import RedisCache
from hita.config import Config
from hita.db.database import Database
from hita.domain.users import Principal
from hita.services.auth import AuthService
from hita.services.permissions import PermissionService
from hita.services.points import PointsService
from hita.services.users import UserService

CONFIG: Final = web.AppKey("config", Config)
DATABASE: Final = web.AppKey("database", Database)
CACHE: Final = web.AppKey("cache", RedisCache)
USER_SERVICE: Final = web.AppKey("user_service", UserService)
POINTS_SERVICE: Final = web.AppKey("points_service", PointsService)
PERMISSION_SERVICE: Final = web.AppKey("permission_service", PermissionService)
AUTH_SERVICE: Final = web.AppKey("auth_service", AuthService)

# The verified caller of a request, set by the auth middleware.
PRINCIPAL: Final = web.RequestKey("principal", Principal)
