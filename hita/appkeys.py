"""Typed application keys, all in one place (no string keys anywhere)."""

from typing import Final

from aiohttp import web

from hita.cache.client import RedisCache
from hita.config import Config
from hita.db.database import Database

CONFIG: Final = web.AppKey("config", Config)
DATABASE: Final = web.AppKey("database", Database)
CACHE: Final = web.AppKey("cache", RedisCache)
