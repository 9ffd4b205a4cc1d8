from __future__ import annotations

from hita.cache.keys import KeyBuilder
from hita.cache.pending import PendingInvalidations

KEYS = KeyBuilder()


def test_keys_beyond_the_bound_collapse_into_their_family_pattern() -> None:
    pending = PendingInvalidations(max_keys=3)
    for i in range(3):
        pending.add_key(KEYS.key("user_details", f"{i:010d}"), "user_details:*")
    assert len(pending.keys) == 3
    pending.add_key(KEYS.key("user_details", "0000000009"), "user_details:*")
    assert pending.keys == {}
    assert pending.patterns == {"user_details:*"}
    pending.add_key(KEYS.key("user_details", "0000000010"), "user_details:*")
    assert pending.keys == {}


def test_a_pattern_covers_the_keys_of_its_family() -> None:
    pending = PendingInvalidations(max_keys=10)
    pending.add_key(KEYS.key("user_details", "1"), "user_details:*")
    pending.add_key(KEYS.key("user_service", "f"), "user_service:*")
    pending.add_pattern("user_details:*")
    assert list(pending.keys) == ["user_service:f"]


def test_namespaces_are_kept_once_and_merge_back() -> None:
    pending = PendingInvalidations(max_keys=10)
    pending.add_namespace(KEYS.namespace("user_list"))
    pending.add_namespace(KEYS.namespace("user_list"))
    assert len(pending) == 1
    other = PendingInvalidations(max_keys=10)
    other.add_namespace(KEYS.namespace("user_stats"))
    other.add_key(KEYS.key("user_details", "1"), "user_details:*")
    pending.merge(other)
    assert set(pending.namespaces) == {"user_list", "user_stats"}
    assert list(pending.keys) == ["user_details:1"]
    assert bool(pending)
