"""The metric names a PromQL expression reads, for the tests that check the
Grafana dashboard and the Prometheus rules against the real exposition.

Not a parser: strings, label matchers, ranges, grouping clauses, offsets and
numbers are blanked out, and what is left that is neither a keyword nor called
like a function is a metric name (``promtool check rules`` checks the syntax).
"""

from __future__ import annotations

import re
from typing import Final

KEYWORDS: Final = frozenset(
    {
        "and",
        "or",
        "unless",
        "bool",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "inf",
        "nan",
    }
)
_BLANKED: Final = (
    re.compile(r'"(?:[^"\\]|\\.)*"'),  # strings
    re.compile(r"\{[^}]*\}"),  # label matchers
    re.compile(r"\[[^\]]*\]"),  # ranges and subqueries
    re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"),
    re.compile(r"\boffset\s+\S+"),
    re.compile(r"(?<![\w:])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?"),  # numbers
)
_NAME: Final = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    text = expr
    for pattern in _BLANKED:
        text = pattern.sub(" ", text)
    names = set()
    for match in _NAME.finditer(text):
        called = text[match.end() :].lstrip().startswith("(")
        if not called and match.group() not in KEYWORDS:
            names.add(match.group())
    return names
