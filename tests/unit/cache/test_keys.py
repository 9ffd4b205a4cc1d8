from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hita.cache.keys import (
    KeyBuilder,
    Namespace,
    bind_arguments,
    cache_key_builder,
    digest,
    escape,
    key_part,
)

SAFE_KEY_RE = re.compile(r"[A-Za-z0-9_.%~:-]*")


def test_the_seed_decorator_key_format() -> None:
    key = KeyBuilder().function_key("user_service", "get_user_details", {"user_id": "5779356081"})
    assert key.redis_key == "user_service:get_user_details:user_id:5779356081"
    assert key.cache_type == "user_service"


def test_seed_builder_puts_positional_parts_then_sorted_keywords() -> None:
    assert cache_key_builder("a", 2, b=1, a=True) == "a:2:a:true:b:1"


def test_glob_and_hash_tag_characters_never_reach_a_key() -> None:
    part = key_part("x*y?[ab]{tag}\\ :%")
    assert part == "x%2Ay%3F%5Bab%5D%7Btag%7D%5C%20%3A%25"
    for ch in "*?[]{}\\ :":
        assert ch not in part


def test_long_values_become_a_digest() -> None:
    part = key_part("a" * 500)
    assert part.startswith("~")
    assert len(part) == 33


def test_non_primitive_arguments_are_digested_canonically() -> None:
    assert key_part({"b": 1, "a": [1, 2]}) == key_part({"a": [1, 2], "b": 1})
    assert key_part({3, 1, 2}) == key_part({2, 3, 1})
    assert key_part({"a": 1}) != key_part({"a": 2})
    assert digest([Decimal("1.50")]) == digest(["1.50"])


def test_values_render_as_readable_parts() -> None:
    assert key_part(None) == "null"
    assert key_part(False) == "false"
    assert (
        key_part(datetime(2024, 12, 17, 15, 30, tzinfo=UTC)) == "2024-12-17T15%3A30%3A00%2B00%3A00"
    )


def test_an_object_without_a_canonical_form_is_refused() -> None:
    class Opaque:
        pass

    with pytest.raises(TypeError, match="no canonical form"):
        key_part(Opaque())


@given(st.text())
def test_escape_is_made_of_safe_characters_only(text: str) -> None:
    assert re.fullmatch(r"[A-Za-z0-9_.%-]*", escape(text))


@given(st.text(), st.text())
def test_escape_is_injective(a: str, b: str) -> None:
    if a != b:
        assert escape(a) != escape(b)


@given(
    st.one_of(
        st.text(),
        st.integers(),
        st.booleans(),
        st.none(),
        st.lists(st.text()),
        st.dictionaries(st.text(), st.integers()),
    )
)
def test_every_key_part_is_pattern_safe(value: object) -> None:
    assert SAFE_KEY_RE.fullmatch(key_part(value))


def test_namespaced_keys_share_a_hash_tag_and_match_the_seed_pattern() -> None:
    ns = Namespace("user_list")
    assert ns.generation_key == "user_list:{user_list}:gen"
    assert ns.data_key("abc", "page:1") == "user_list:{user_list}:gabc:page:1"
    assert ns.pattern == "user_list:*"
    key = KeyBuilder().namespaced("user_list", page=1, role="admin")
    assert key.suffix == "page:1:role:admin"
    assert KeyBuilder().namespaced("user_stats").suffix == "all"


def test_a_global_prefix_goes_in_front_of_everything() -> None:
    keys = KeyBuilder("hita:")
    assert keys.key("user_details", "5779356081").redis_key == "hita:user_details:5779356081"
    assert keys.namespace("user_list").generation_key == "hita:user_list:{user_list}:gen"
    assert keys.pattern("user_details") == "hita:user_details:*"


@pytest.mark.parametrize("name", ["User", "user-list", "", "a*", "user_list:x"])
def test_cache_names_must_be_identifiers(name: str) -> None:
    with pytest.raises(ValueError, match="lower-case identifiers"):
        KeyBuilder().key(name, "1")


def test_arguments_bind_by_name_whatever_the_call_style() -> None:
    async def f(self: object, user_id: str, page: int = 1) -> None:
        return None

    by_position = bind_arguments(f, (object(), "7"), {}, skip_first=True)
    by_name = bind_arguments(f, (object(),), {"user_id": "7", "page": 1}, skip_first=True)
    assert by_position == by_name == {"user_id": "7", "page": 1}
