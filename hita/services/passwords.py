"""Password hashing with argon2id, off the event loop.

argon2 is deliberately slow and memory-hard; each hash or check runs in a
small thread pool of our own, so requests keep flowing while it works and
the memory in use stays bounded by the pool size.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from hita.config import AuthConfig


class Passwords:
    def __init__(self, config: AuthConfig, workers: int | None = None) -> None:
        self._hasher = PasswordHasher(
            time_cost=config.argon2_time_cost,
            memory_cost=config.argon2_memory_kib,
            parallelism=config.argon2_parallelism,
        )
        self._executor = ThreadPoolExecutor(
            max_workers=workers or os.cpu_count() or 1, thread_name_prefix="argon2"
        )
        # Checked when a username is unknown, so that answering takes as long.
        self._dummy_hash = self._hasher.hash("not a password")

    async def hash(self, password: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._hasher.hash, password)

    def _check(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches; with no hash, spends the same time and says no."""
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(
            self._executor, self._check, password_hash or self._dummy_hash, password
        )
        return ok and password_hash is not None

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
