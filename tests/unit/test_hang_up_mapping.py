"""A body read that fails because the client hung up is a 499 logged at
INFO, never a 500 logged at ERROR; the same failure with the client still
there is a server error (``hita.api.errors.answer_error``)."""

from __future__ import annotations

import logging
from unittest import mock

import pytest
from aiohttp.test_utils import make_mocked_request

from hita.api.errors import answer_error
from hita.constants import CLIENT_CLOSED_REQUEST


def request_with(*, closing: bool) -> object:
    transport = mock.Mock()
    transport.is_closing.return_value = closing
    return make_mocked_request("PATCH", "/v1.0/user/update/1", transport=transport)


def test_a_lost_body_of_a_client_gone_is_a_499_at_info(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        response = answer_error(
            request_with(closing=True),  # type: ignore[arg-type]
            ConnectionResetError("Connection lost"),
            1,
        )
    assert response.status == CLIENT_CLOSED_REQUEST
    assert "client hung up during PATCH" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_control_the_same_error_with_the_client_there_is_a_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    response = answer_error(
        request_with(closing=False),  # type: ignore[arg-type]
        ConnectionResetError("Connection lost"),
        1,
    )
    assert response.status == 500
    assert [r for r in caplog.records if r.levelno >= logging.ERROR]
