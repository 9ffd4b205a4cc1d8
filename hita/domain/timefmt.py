"""Timestamps as the API and the cache carry them: ISO 8601, UTC, ending in ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_utc_or_none(moment: datetime | None) -> str | None:
    return None if moment is None else iso_utc(moment)
