"""Does the reader session's LISTEN deliver? It sends itself a probe to find out.

Behind a pooler in transaction mode (PgBouncer's usual mode) a LISTEN is
issued on whichever server connection the pooler lends for that statement,
and notifications never come back: the session is deaf. Nothing breaks
(notifications are only hints: renewals carry every change), but writers
that wait on the durable path then wait for the readers' periodic renewals
instead of hurrying them. So every ``LISTEN_PROBE_INTERVAL_S`` a probe is
NOTIFYed on the channel from another connection (the shared pool: a
session's own NOTIFY would come back on the very server connection it ran
on, deaf or not), and the session calls itself deaf if the probe has not come
back within ``LISTEN_PROBE_BOUND_S``; health and metrics say so. The probe
is sent in the background: a busy pool never delays a renewal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Final

from hita.constants import LISTEN_PROBE_BOUND_S, LISTEN_PROBE_INTERVAL_S
from hita.errors import HitaError

log = logging.getLogger(__name__)

PREFIX: Final = "probe:"  # a probe's payload: probe:<instance>:<number>
SEND_TIMEOUT_S: Final = 1.0  # a probe not sent by then is not judged


class ListenProbe:
    def __init__(
        self,
        instance: str,
        send: Callable[[str], Awaitable[None]],
        *,
        interval_s: float = LISTEN_PROBE_INTERVAL_S,
        bound_s: float = LISTEN_PROBE_BOUND_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._mine = f"{PREFIX}{instance}:"
        self._send = send
        self._interval_s = interval_s
        self._bound_s = bound_s
        self._clock = clock
        self._number = 0
        self._started = -math.inf  # when the last probe was begun
        self._sent_at = math.inf  # when the probe awaited was surely sent
        self._waiting = False  # a probe is awaited
        self._back = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.deaf: bool | None = None  # None until a probe is judged
        self.judged = asyncio.Event()  # set once ``deaf`` is known
        self.probes = 0
        self.missed = 0  # probes that did not come back within the bound

    @staticmethod
    def is_probe(payload: str) -> bool:
        return payload.startswith(PREFIX)

    def heard(self, payload: str) -> None:
        """A probe came back (ours or another instance's)."""
        if self._waiting and payload == f"{self._mine}{self._number}":
            self._waiting = False
            self._back.set()
            if self.deaf:
                log.info("the reader session's LISTEN delivers again")
            self.deaf = False
            self.judged.set()

    def tick(self) -> None:
        """Judge the probe awaited; begin the next one when due."""
        now = self._clock()
        if self._waiting and now - self._sent_at > self._bound_s:
            self._waiting = False
            self.missed += 1
            if not self.deaf:
                log.warning(
                    "the reader session's LISTEN did not deliver a probe within %.1f s (a"
                    " pooler in transaction mode?): writers that wait for the readers wait"
                    " for their periodic renewals; give DATABASE_READER_URL a direct or"
                    " session-mode address",
                    self._bound_s,
                )
            self.deaf = True
            self.judged.set()
        busy = self._task is not None and not self._task.done()
        if not self._waiting and not busy and now - self._started >= self._interval_s:
            self._task = asyncio.get_running_loop().create_task(self._probe())

    async def _probe(self) -> None:
        self._number += 1
        self._started = self._clock()
        self._sent_at = math.inf
        self._back.clear()
        self._waiting = True
        self.probes += 1
        try:
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await self._send(f"{self._mine}{self._number}")
        except (HitaError, TimeoutError) as exc:  # not sent: nothing to judge
            log.debug("listen probe not sent: %s", exc.__class__.__name__)
            self._waiting = False
            return
        self._sent_at = self._clock()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
