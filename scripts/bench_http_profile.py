"""bench_http.py --profile: HITA under cProfile while wrk loads the warm
``GET /v1.0/user/{id}``, and the per-request cost by part of the request.

The profiled server is this file run as ``--serve OUT`` (bench_http_world
starts it): ``hita serve`` with cProfile switched on and off by signals.
"""

from __future__ import annotations

import cProfile
import pstats
import signal
import sys
import time
from pathlib import Path
from typing import Any, Final

from redis import Redis as SyncRedis

from bench_http_world import CONNECTIONS, Variant, World, hita_server, load, targets, warm
from harness.reports import machine_facts

PROFILE_WAIT_S: Final = 60.0  # for the profile file once profiling is switched off


def serve_profiled(out: Path) -> int:
    """``hita serve`` with cProfile switched on by SIGUSR1 and off (and written
    to ``out``) by SIGUSR2, so start-up and warm-up stay out of the profile."""
    from hita.cli import main as hita_main  # noqa: PLC0415

    profiler = cProfile.Profile()

    def start(signum: int, frame: object) -> None:
        profiler.enable()

    def stop(signum: int, frame: object) -> None:
        profiler.disable()
        profiler.dump_stats(str(out))

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    return hita_main(["serve"])


# Parts of a request, each the cumulative time of one function (file suffix, name).
PARTS: Final = (
    (
        "aiohttp: the whole request (RequestHandler._handle_request)",
        "web_protocol.py",
        "_handle_request",
    ),
    ("aiohttp: routing and the handler (Application._handle)", "web_app.py", "_handle"),
    ("the front, each route's handler (everything of ours)", "api/front.py", "serve"),
    ("  request id (RequestIds.of)", "api/front.py", "of"),
    ("  admission (Admission.admit)", "api/admission.py", "admit"),
    ("  access line, formatted (AccessLog.line)", "api/access_log.py", "line"),
    ("  Prometheus (Metrics.observe_request)", "metrics.py", "observe_request"),
    ("  the fast lane, whole (_RouteFront.held_answer)", "api/front.py", "held_answer"),
    (
        "    token and access check, known token (Authenticator.known_authorized)",
        "api/auth.py",
        "known_authorized",
    ),
    ("    the answer held in L1 (held_user)", "handlers/users.py", "held_user"),
    (
        "  token and access check, the waiting way (Authenticator.authorize)",
        "api/auth.py",
        "authorize",
    ),
    ("    the token's user check, held in L1 (held_check)", "api/auth.py", "held_check"),
    (
        "    the token's user check, read through (check_principal)",
        "api/auth.py",
        "check_principal",
    ),
    ("    PyJWT decode and verify (a new token)", "api_jwt.py", "decode_complete"),
    ("  handler get_user, the waiting way", "handlers/users.py", "get_user"),
    ("    the response object (Answer.response)", "api/answers.py", "response"),
    ("  ETag and If-None-Match (tagged)", "api/etag.py", "tagged"),
    ("L1 views, both reads (NearReads.near_view)", "cache/near_reads.py", "near_view"),
    (
        "  L1: drain the tracking socket, once a loop turn (Tracking.drain)",
        "cache/tracking.py",
        "drain",
    ),
    ("  cache keys (KeyBuilder.key)", "cache/keys.py", "key"),
    ("reads through the cache (get_or_load: L1 miss)", "cache/readthrough.py", "get_or_load"),
    ("  decode the stored JSON (Entry.value)", "cache/codec.py", "value"),
    ("access lines written (AccessLog.flush)", "api/access_log.py", "flush"),
    ("the kept answer's one write (StoredResponse.prepare)", "api/wire.py", "prepare"),
    ("aiohttp: write any other response (StreamResponse.prepare)", "web_response.py", "prepare"),
)


def profile_parts(path: Path) -> tuple[int, list[tuple[str, float]], list[str]]:
    stats = pstats.Stats(str(path))
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    requests = sum(
        v[0] for (file, _, fn), v in raw.items() if fn == "serve" and file.endswith("front.py")
    )
    rows = []
    for label, file_suffix, name in PARTS:
        cum = sum(
            v[3] for (file, _, fn), v in raw.items() if fn == name and file.endswith(file_suffix)
        )
        rows.append((label, cum / max(requests, 1) * 1e6))
    top = sorted(raw.items(), key=lambda kv: -kv[1][2])[:15]
    top_rows = [
        f"| `{Path(file).name}:{line}` {fn} | {v[2] / max(requests, 1) * 1e6:.1f} |"
        for (file, line, fn), v in top
    ]
    return requests, rows, top_rows


def run_profile(w: World, variant: Variant, seconds: float, command: str) -> str:
    out = w.root / "hita.prof"
    out.unlink(missing_ok=True)
    with hita_server(w, variant, profile=out) as child:
        target = next(t for t in targets(w) if t.name.startswith("HITA `GET /v1.0/user/{id}`"))
        warm(w, target)
        redis = SyncRedis.from_url(w.redis_url)
        load(w, target, min(2.0, seconds), redis)  # pools and code paths, unprofiled
        child.send_signal(signal.SIGUSR1)
        run = load(w, target, seconds, redis)
        child.send_signal(signal.SIGUSR2)
        redis.close()
        deadline = time.monotonic() + PROFILE_WAIT_S
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    requests, parts, top = profile_parts(out)
    return "\n".join(
        [
            f"Command: `{command}`",
            "",
            *machine_facts(),
            f"- {target.name}: {run.requests:,} requests under wrk -t1 -c{CONNECTIONS}"
            f" for {seconds:g} s, all of them profiled (cProfile on: {run.rps:,.0f} req/s;"
            f" {requests:,} requests counted)",
            "",
            "| part of a request | µs per request (cumulative, under cProfile) | share |",
            "| --- | ---: | ---: |",
            *(
                f"| {label.replace('  ', '&nbsp;&nbsp;')} | {us:.1f} | {us / parts[0][1]:.0%} |"
                for label, us in parts
            ),
            "",
            "The hardest hitters by own time (tottime), µs per request:",
            "",
            "| function | µs per request |",
            "| --- | ---: |",
            *top,
            "",
            "cProfile slows every Python call down, so the absolute figures are inflated",
            "(compare the req/s above with the wrk table); read the shares. An indented part",
            "is inside the one above it. Coroutine parts count only the time they run, not",
            "the time they wait for Redis.",
        ]
    )


if __name__ == "__main__" and sys.argv[1:2] == ["--serve"]:
    sys.exit(serve_profiled(Path(sys.argv[2])))
