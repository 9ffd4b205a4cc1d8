"""The reader session's probe: a LISTEN that hears it back is not deaf; one
that does not within the bound is; a probe that could not be sent is not
judged. A clock and a sender the test drives."""

from __future__ import annotations

import asyncio

from hita.db.listen_probe import ListenProbe
from hita.errors import DatabaseUnavailable


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def probe_and_sent(clock: Clock, *, fails: bool = False) -> tuple[ListenProbe, list[str]]:
    sent: list[str] = []

    async def send(payload: str) -> None:
        if fails:
            raise DatabaseUnavailable("pool busy")
        sent.append(payload)

    return ListenProbe("i1", send, interval_s=5.0, bound_s=2.0, clock=clock), sent


def verdict(probe: ListenProbe) -> bool | None:
    """``probe.deaf`` as of now (a call, so no narrowing carries over)."""
    return probe.deaf


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_a_probe_heard_back_says_the_listen_delivers() -> None:
    clock = Clock()
    probe, sent = probe_and_sent(clock)
    probe.tick()
    await settle()
    assert sent == ["probe:i1:1"]
    probe.heard("probe:i2:1")  # another instance's
    probe.heard("probe:i1:1")
    assert probe.deaf is False
    assert probe.judged.is_set()
    clock.now += 10
    probe.tick()
    assert probe.deaf is False


async def test_a_probe_not_heard_within_the_bound_says_deaf_until_one_is() -> None:
    clock = Clock()
    probe, sent = probe_and_sent(clock)
    probe.tick()
    await settle()
    clock.now += 1.9
    probe.tick()
    assert verdict(probe) is None  # within the bound: not judged yet
    clock.now += 0.2
    probe.tick()
    assert verdict(probe) is True
    assert probe.missed == 1
    clock.now += 5
    probe.tick()  # the next probe
    await settle()
    assert sent == ["probe:i1:1", "probe:i1:2"]
    probe.heard("probe:i1:1")  # late: no longer awaited
    assert verdict(probe) is True
    probe.heard("probe:i1:2")
    assert verdict(probe) is False


async def test_a_probe_that_could_not_be_sent_is_not_judged() -> None:
    clock = Clock()
    probe, _ = probe_and_sent(clock, fails=True)
    probe.tick()
    await settle()
    clock.now += 10
    probe.tick()
    await settle()
    assert probe.deaf is None
    assert probe.missed == 0
    await probe.close()
