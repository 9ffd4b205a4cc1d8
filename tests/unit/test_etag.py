"""Parsing If-None-Match: what counts as a list of entity tags, what is ignored."""

from __future__ import annotations

import re

import pytest

from hita.api.etag import etag_of, if_none_match_tags
from hita.constants import MAX_IF_NONE_MATCH_BYTES, MAX_IF_NONE_MATCH_TAGS


def test_the_tag_is_a_strong_digest_of_the_bytes() -> None:
    tag = etag_of(b'{"success":true}')
    assert re.fullmatch(r'"[0-9a-f]{32}"', tag)
    assert tag == etag_of(b'{"success":true}')
    assert tag != etag_of(b'{"success":false}')


@pytest.mark.parametrize(
    ("header", "tags"),
    [
        ('"abc"', {'"abc"'}),
        ('W/"abc"', {'"abc"'}),
        ('"a", W/"b",   "c"', {'"a"', '"b"', '"c"'}),
        ('"a","b"', {'"a"', '"b"'}),
        ("*", {"*"}),
        ("  *  ", {"*"}),
        ('""', {'""'}),
    ],
)
def test_lists_of_entity_tags_are_read(header: str, tags: set[str]) -> None:
    assert if_none_match_tags(header) == frozenset(tags)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "abc",
        '"unterminated',
        'W/ "a"',
        'w/"a"',
        '"a" "b"',
        '"a", , "b"',
        '"a",*',
        '"in"side"',
        '"tab\tinside"',
        '"a"; q=1',
        "W/",
        ",",
    ],
)
def test_malformed_values_are_ignored(header: str) -> None:
    assert if_none_match_tags(header) is None


def test_over_long_values_are_ignored() -> None:
    many = ", ".join(f'"{n}"' for n in range(MAX_IF_NONE_MATCH_TAGS + 1))
    assert len(many) <= MAX_IF_NONE_MATCH_BYTES
    assert if_none_match_tags(many) is None
    assert if_none_match_tags(", ".join(f'"{n}"' for n in range(MAX_IF_NONE_MATCH_TAGS)))
    assert if_none_match_tags('"' + "a" * MAX_IF_NONE_MATCH_BYTES + '"') is None
