"""Cache errors: one line per kind per interval, with a count, in Redis's words."""

from __future__ import annotations

import logging

import pytest
from redis.exceptions import (
    AuthenticationError,
    ConnectionError,
    OutOfMemoryError,
    ResponseError,
)

from hita.cache.errorlog import ErrorLog, error_kind, redis_reason

OOM = OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def test_repeats_within_the_interval_are_counted_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    errors = ErrorLog(logging.getLogger("t"), 10.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="t"):
        for _ in range(500):
            errors.report(logging.ERROR, OOM, "cache fill (user_details) refused")
            clock.now += 0.01  # 500 errors in 5 s
        assert lines(caplog) == [
            "cache fill (user_details) refused: OOM command not allowed when used memory"
            " > 'maxmemory'."
        ]
        clock.now = 12.0
        errors.report(logging.ERROR, OOM, "cache read (user_list) refused")
    assert lines(caplog)[1] == (
        "cache read (user_list) refused: OOM command not allowed when used memory"
        " > 'maxmemory'. (and 499 more like it in the last 12 s)"
    )
    assert [r.levelno for r in caplog.records] == [logging.ERROR, logging.ERROR]


def test_each_kind_has_its_own_interval(caplog: pytest.LogCaptureFixture) -> None:
    errors = ErrorLog(logging.getLogger("t"), 10.0, clock=Clock())
    wrong = AuthenticationError("invalid username-password pair or user is disabled.")
    with caplog.at_level(logging.WARNING, logger="t"):
        for _ in range(3):
            errors.report(logging.ERROR, OOM, "fill refused")
            errors.report(logging.WARNING, wrong, "read failed")
    assert lines(caplog) == [
        "fill refused: OOM command not allowed when used memory > 'maxmemory'.",
        "read failed: WRONGPASS invalid username-password pair or user is disabled.",
    ]
    assert errors.last is not None
    assert errors.last.kind == "WRONGPASS"
    assert errors.last.as_dict()["operation"] == "read failed"


@pytest.mark.parametrize(
    ("exc", "reason", "kind"),
    [
        (
            AuthenticationError("Authentication required."),
            "NOAUTH Authentication required.",
            "NOAUTH",
        ),
        (
            AuthenticationError("invalid username-password pair or user is disabled."),
            "WRONGPASS invalid username-password pair or user is disabled.",
            "WRONGPASS",
        ),
        (OOM, "OOM command not allowed when used memory > 'maxmemory'.", "OOM"),
        (
            ResponseError(
                "Error running script (call to f_0123): @user_script:10: @user_script: 10:"
                " -OOM command not allowed when used memory > 'maxmemory'."
            ),
            "OOM command not allowed when used memory > 'maxmemory'. (in a script)",
            "OOM",
        ),
        (
            OutOfMemoryError(
                "Command # 1 (SET user_details:5779356081 abc) of pipeline caused error:"
                " (\"command not allowed when used memory > 'maxmemory'.\",)"
            ),
            "OOM command not allowed when used memory > 'maxmemory'. (SET in a pipeline)",
            "OOM",
        ),
        (
            ConnectionError(
                "Error 1 connecting to localhost:6390. [SSL: CERTIFICATE_VERIFY_FAILED]"
                " certificate verify failed: self-signed certificate."
            ),
            "TLS: Error 1 connecting to localhost:6390. [SSL: CERTIFICATE_VERIFY_FAILED]"
            " certificate verify failed: self-signed certificate.",
            "TLS",
        ),
        (ResponseError("ERR unknown command 'FOO'"), "ERR unknown command 'FOO'", "ERR"),
        (TimeoutError(), "TimeoutError: TimeoutError", "TimeoutError"),
    ],
)
def test_reasons_are_redis_own_words(exc: BaseException, reason: str, kind: str) -> None:
    assert redis_reason(exc) == reason
    assert error_kind(exc) == kind


def test_a_pipeline_error_keeps_key_names_out_of_the_log() -> None:
    exc = OutOfMemoryError(
        "Command # 1 (SET user_details:5779356081 v) of pipeline caused error: ('x',)"
    )
    assert "5779356081" not in redis_reason(exc)
