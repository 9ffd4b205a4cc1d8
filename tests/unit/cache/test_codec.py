from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from hita.cache.codec import MISS, decode, encode, encode_lease


@pytest.mark.parametrize("value", [0, [], {}, "", False, None, 0.0])
def test_falsy_values_round_trip(value: object) -> None:
    entry = decode(encode(value, ttl_ms=60_000))
    assert entry is not None
    assert entry.value == value
    assert entry.value is not MISS


def test_datetimes_and_decimals_become_json_strings() -> None:
    entry = decode(
        encode(
            {"at": datetime(2024, 12, 17, 15, 30, tzinfo=UTC), "amount": Decimal("1.50")},
            ttl_ms=60_000,
        )
    )
    assert entry is not None
    assert entry.value == {"at": "2024-12-17T15:30:00Z", "amount": "1.50"}


def test_header_carries_version_and_compute_time() -> None:
    entry = decode(encode([1], delta_ms=1234.9, version="0123456789abcdef", ttl_ms=60_000))
    assert entry is not None
    assert entry.version == "0123456789abcdef"
    assert entry.delta_ms == 1234


def test_header_carries_the_expiry_so_a_hit_needs_no_pttl() -> None:
    entry = decode(encode([1], ttl_ms=60_000))
    assert entry is not None
    assert 59_000 <= entry.ttl_ms() <= 60_000
    past = decode(encode([1], ttl_ms=-5_000))
    assert past is not None
    assert past.ttl_ms() == 0


def test_a_value_of_an_older_format_is_foreign_data_until_it_expires() -> None:
    assert decode(b"v" + b"0123456789abcdef" + b"000004d2" + b'{"a": 1}') is None


def test_a_header_that_is_not_hex_is_foreign_data() -> None:
    good = encode([1], version="0123456789abcdef", ttl_ms=60_000)
    assert decode(good[:25] + b"zzzzzzzzzzzz" + good[37:]) is None
    assert decode(good[:30]) is None  # cut inside the header


def test_leases_and_foreign_bytes_are_not_values() -> None:
    assert decode(encode_lease("0123456789abcdef")) is None
    assert decode(b"plain text") is None
    assert decode(None) is None
    assert decode(b"") is None


def test_miss_is_falsy_and_distinct() -> None:
    assert not MISS
    assert MISS is not None
    assert repr(MISS) == "MISS"


def test_values_that_are_not_json_safe_are_refused() -> None:
    with pytest.raises(TypeError):
        encode(object(), ttl_ms=60_000)
