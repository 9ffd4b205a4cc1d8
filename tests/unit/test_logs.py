from __future__ import annotations

import json
import logging
import random

import pytest

from hita.logs import (
    JsonFormatter,
    RequestIdFilter,
    iso_time_ms,
    request_id_var,
    setup_logging,
    skip_unused_record_fields,
)


def record(message: str, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("hita.test", logging.WARNING, __file__, 1, message, None, None)
    rec.__dict__.update(extra)
    RequestIdFilter().filter(rec)
    return rec


def test_json_lines_carry_the_request_id_and_extras() -> None:
    token = request_id_var.set("abc123def456")
    try:
        line = JsonFormatter().format(record("cache %s", user_id="5779356081"))
    finally:
        request_id_var.reset(token)
    entry = json.loads(line)
    assert entry["message"] == "cache %s"
    assert entry["request_id"] == "abc123def456"
    assert entry["user_id"] == "5779356081"
    assert entry["level"] == "WARNING"
    assert entry["time"].endswith("+00:00")
    assert "\n" not in line


def test_the_time_is_the_datetime_text_whatever_the_second_or_its_rounding() -> None:
    formatter = JsonFormatter()
    rng = random.Random(10)
    base = 1_795_000_000
    instants = [base + rng.random() * 5 for _ in range(20_000)]  # several seconds, back and forth
    for second in range(base, base + 5):  # the edges, where microseconds round up a second
        instants += [second + f for f in (0.0, 0.0005, 0.0009995, 0.9994999, 0.9995, 0.9999995)]
        instants += [second + 0.999999 + k * 1e-7 for k in range(10)]
    instants += [0.0, 1e-7, 59.9999996, 86_399.9999999, 951_782_399.9999996]
    for created in instants:
        rec = logging.LogRecord("hita.test", logging.INFO, __file__, 1, "m", None, None)
        rec.created = created
        assert json.loads(formatter.format(rec))["time"] == iso_time_ms(created), created


def test_extras_keep_their_order_and_may_override() -> None:
    entry = json.loads(JsonFormatter().format(record("m", b=1, a=2, level="mine")))
    assert list(entry) == ["time", "level", "logger", "message", "request_id", "b", "a"]
    assert (entry["level"], entry["b"], entry["a"]) == ("mine", 1, 2)


def test_exceptions_stay_inside_one_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        rec = record("failed")
        rec.exc_info = __import__("sys").exc_info()
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exception"]


@pytest.mark.parametrize(
    ("fmt", "formatter"), [("json", JsonFormatter), ("text", logging.Formatter)]
)
def test_setup_picks_the_format_and_quiets_aiohttp_jwt(fmt: str, formatter: type) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("INFO", fmt)
        assert isinstance(root.handlers[0].formatter, formatter)
        assert logging.getLogger("aiohttp_jwt").level == logging.CRITICAL
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


def test_lean_records_still_make_whole_json_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("logThreads", "logProcesses", "logMultiprocessing"):
        monkeypatch.setattr(logging, name, getattr(logging, name))  # restored after the test
    skip_unused_record_fields()
    records: list[logging.LogRecord] = []
    logger = logging.getLogger("hita.test.lean")

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger.addHandler(handler)
    try:
        logger.warning("hi %s", "x")
    finally:
        logger.removeHandler(handler)
    (rec,) = records
    assert (rec.thread, rec.process) == (None, None)  # not computed
    RequestIdFilter().filter(rec)
    entry = json.loads(JsonFormatter().format(rec))
    assert entry["message"] == "hi x"
    assert entry["level"] == "WARNING"
