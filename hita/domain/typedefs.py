"""Shapes shared across layers."""

from typing import Any

# JSON-ready data: str, int, bool, None, lists and dicts of them (timestamps as strings).
JsonDict = dict[str, Any]
