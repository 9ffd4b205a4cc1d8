"""L1's freshness rule and the writer's wait, over random timelines (Hypothesis).

The node is ``NodeTracking`` itself, its subscriber one end of a socket pair
and its clock the test's. The test plays Redis and the paths: one instance's
path is cut (held, or slowed) at a random moment; a writer whose own path is
fast has Redis queue the invalidation near that moment and answers ``W``
after Redis acknowledged it; the client then reads from the cut instance.
Before that, the instance reads (drains) and its timer fires at random
moments. Redis answers each PING when it arrives and writes what it queued
in order, on a path that delivers in order. A read is stale when the drain
says L1 may serve while the invalidation is not applied.

With ``W = FRESH_S`` (what the writer does) no timeline is stale; with the
writer answering at once, or with L1 trusting any PONG of the last second,
Hypothesis finds one."""

from __future__ import annotations

import contextlib
import math
import socket
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.connection import AbstractConnection

from hita.cache import tracking_node
from hita.cache.tracking_node import NodeTracking, command
from hita.constants import L1_FRESH_MS

START_S = 10.0  # the node's clock when the test begins
PONG = b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
KEY = b"user_details:5779356081"
INVALIDATION = b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n$%d\r\n%s\r\n" % (
    len(KEY),
    KEY,
)


@dataclass
class Timeline:
    delay_s: float  # each way, on a path that works
    cut_s: float  # when the instance's path is cut, both ways
    held: bool  # the cut holds everything (blackhole), else slows it by slow_s
    slow_s: float
    queued_s: float  # when Redis queues the invalidation, from the cut
    writer_s: float  # Redis's reply to the writer, on its own path
    client_s: float  # from the writer's answer to the read reaching the instance
    reads: list[float] = field(default_factory=list)  # earlier drains
    timers: list[float] = field(default_factory=list)  # the keepalive timer


def timelines() -> st.SearchStrategy[Timeline]:
    moment = st.floats(0.0, 0.3)
    return st.builds(
        Timeline,
        delay_s=st.floats(0.00005, 0.002),
        cut_s=st.floats(0.05, 0.3),
        held=st.booleans(),
        slow_s=st.floats(0.01, 0.4),
        queued_s=st.floats(-0.06, 0.06),
        writer_s=st.floats(0.00005, 0.002),
        client_s=st.floats(0.0, 0.005),
        reads=st.lists(moment, max_size=40),
        timers=st.lists(moment, max_size=8),
    )


class Path:
    """Redis's side: what it queued (at which moment), written to the
    instance's socket in order, each no earlier than its path delivers it."""

    def __init__(self, t: Timeline, peer: socket.socket) -> None:
        self.t = t
        self.peer = peer
        self.queued: list[tuple[float, bytes]] = []
        self.written = 0

    def delay(self, at: float) -> float:
        if at < self.t.cut_s:
            return self.t.delay_s
        return math.inf if self.t.held else self.t.slow_s

    def redis_takes_pings(self, sent_at: float) -> None:
        """Each PING the node wrote since, sent at ``sent_at``: answered on arrival."""
        self.peer.setblocking(False)
        try:
            data = self.peer.recv(65_536)
        except BlockingIOError:
            return
        for _ in range(data.count(command("PING"))):
            arrives = sent_at + self.delay(sent_at)
            if arrives < math.inf:
                self.queued.append((arrives, PONG))

    def deliver(self, now: float) -> None:
        """Write to the instance's socket, in order, what has reached it by ``now``."""
        self.queued.sort(key=lambda item: item[0])
        last = -math.inf
        for i, (at, data) in enumerate(self.queued):
            last = max(last, at + self.delay(at))
            if last > now:
                break
            if i >= self.written:
                self.peer.sendall(data)
                self.written = i + 1


def unopened() -> AbstractConnection:
    raise AssertionError("the node's sockets are the test's")


def stale_read(t: Timeline, writer_waits_s: float) -> bool:
    """Whether the read after the writer's answer is served from L1 with the
    invalidation not applied."""
    now = [START_S]
    applied: list[list[str] | None] = []
    node = NodeTracking(
        "server",
        unopened,
        [],
        applied.append,
        lambda _node, _why: None,
        clock=lambda: now[0],
    )
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    node._sub = ours
    node._readable = tracking_node._poller(ours)
    node.active = True
    path = Path(t, peer)
    queued = t.cut_s + t.queued_s
    path.queued.append((queued, INVALIDATION))
    read_at = queued + t.writer_s + writer_waits_s + t.client_s
    steps = sorted(
        [(r, "read") for r in t.reads if r < read_at]
        + [(r, "timer") for r in t.timers if r < read_at]
        + [(0.0, "timer"), (read_at, "last")]
    )
    try:
        for at, what in steps:
            now[0] = START_S + at
            path.deliver(at)
            if what == "timer":
                node._keepalive()
                served = None
            else:
                served = node.drain()
            path.redis_takes_pings(at)
            if what == "last":
                return bool(served) and not applied
        raise AssertionError("the timeline has no last read")
    finally:
        ours.close()
        peer.close()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(timelines())
def test_no_timeline_lets_l1_serve_a_write_it_has_not_taken_in(t: Timeline) -> None:
    assert not stale_read(t, writer_waits_s=tracking_node.FRESH_S)


def some_timeline_is_stale(writer_waits_s: float) -> bool:
    found: list[Timeline] = []

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(timelines())
    def search(t: Timeline) -> None:
        if stale_read(t, writer_waits_s):
            found.append(t)
            raise AssertionError("stale")

    with contextlib.suppress(AssertionError):
        search()
    return bool(found)


def test_control_a_writer_answering_at_once_lets_some_timeline_through() -> None:
    assert some_timeline_is_stale(writer_waits_s=0.0)


def test_control_l1_trusting_any_pong_of_the_last_second_lets_some_timeline_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tracking_node, "FRESH_S", 1.0)
    assert some_timeline_is_stale(writer_waits_s=L1_FRESH_MS / 1000)
