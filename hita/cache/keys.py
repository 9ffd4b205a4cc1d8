"""Cache keys: stable across processes, safe whatever the client sent.

The seed builds keys with Python's ``hash()``, which is randomised per process
(PYTHONHASHSEED), so two instances never share an entry. Here every argument
is rendered canonically: primitives verbatim when they are made of safe
characters, percent-escaped otherwise, and anything else (or anything long) as
a SHA-256 digest of its canonical JSON. No client byte reaches a key
unescaped, so nothing can widen a SCAN pattern (``*``, ``?``, ``[``) or forge a
Redis Cluster hash tag (``{``).

Two kinds of key:

* ``Key``: one entry, e.g. ``user_details:5779356081``; invalidated by deleting it.
* ``NamespacedKey``: an entry of a namespace (``user_list``, ``user_stats``...),
  stored as ``user_list:{user_list}:g<generation>:<suffix>``. Replacing the
  namespace's generation invalidates every entry at once, in O(1); the old
  entries are never read again and die by their TTL. The ``{user_list}`` hash
  tag keeps a namespace's generation and entries in one Redis Cluster slot, so
  the server-side read script may touch both. The seed's patterns
  (``user_list:*``) still match every key.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Final, cast
from uuid import UUID

_SAFE: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_ALL_SAFE_RE: Final = re.compile(r"[A-Za-z0-9_.-]*")  # the same set, as a pattern
_NAME_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")
MAX_PART_CHARS: Final = 96  # longer parts are replaced by their digest
MAX_CHECKED_NAMES: Final = 64  # valid cache names remembered (there are a handful)
_CHECKED_NAMES: set[str] = set()
DIGEST_HEX_CHARS: Final = 32  # 128 bits of SHA-256


def _canonical_default(value: object) -> object:
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value, key=canonical_json)
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"no canonical form for {type(value).__name__}; pass a key function")


def canonical_json(value: object) -> bytes:
    """The same bytes for equal values in every process: sorted keys, fixed
    separators, and never ``hash()`` or ``repr()`` (which may hold addresses)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), default=_canonical_default
    ).encode()


def digest(value: object) -> str:
    return "~" + hashlib.sha256(canonical_json(value)).hexdigest()[:DIGEST_HEX_CHARS]


def escape(text: str) -> str:
    """Percent-escape every byte outside ``[A-Za-z0-9_.-]`` (injective)."""
    if _ALL_SAFE_RE.fullmatch(text):  # nothing to escape (every id, most parts)
        return text
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in text.encode())


def key_part(value: object) -> str:
    """One argument as a key part: readable when it can be, a digest otherwise."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, Enum):
        return key_part(value.value)
    elif isinstance(value, str | int | float | Decimal | UUID):
        text = str(value)
    elif isinstance(value, datetime | date):
        text = value.isoformat()
    else:
        return digest(value)
    escaped = escape(text)
    return escaped if len(escaped) <= MAX_PART_CHARS else digest(text)


def cache_key_builder(*args: object, **kwargs: object) -> str:
    """The seed's builder, made stable: positional parts, then sorted ``name:value``."""
    parts = [key_part(arg) for arg in args]
    parts += [f"{escape(name)}:{key_part(value)}" for name, value in sorted(kwargs.items())]
    return ":".join(parts)


def bind_arguments(
    func: Callable[..., object],
    args: tuple[object, ...],
    kwargs: Mapping[str, object],
    *,
    skip_first: bool,
) -> dict[str, object]:
    """Arguments by parameter name, defaults applied, so ``f(1)`` and ``f(x=1)`` agree."""
    bound = inspect.signature(func).bind(*args, **kwargs)
    bound.apply_defaults()
    items = list(bound.arguments.items())
    return dict(items[1:] if skip_first else items)


def check_name(name: str) -> str:
    if name not in _CHECKED_NAMES:
        if not _NAME_RE.fullmatch(name):
            raise ValueError(f"cache names are lower-case identifiers, not {name!r}")
        if len(_CHECKED_NAMES) < MAX_CHECKED_NAMES:
            _CHECKED_NAMES.add(name)
    return name


def _kept_verbatim(part: object) -> bool:
    """Would ``key_part`` return this part unchanged? (A short string of safe characters.)"""
    return (
        type(part) is str
        and 0 < len(part) <= MAX_PART_CHARS
        and _ALL_SAFE_RE.fullmatch(part) is not None
    )


@dataclass(frozen=True, slots=True)
class Key:
    """A single entry: ``<prefix><cache_type>:<rest>``."""

    cache_type: str
    redis_key: str


@dataclass(frozen=True, slots=True)
class Namespace:
    """A family of entries invalidated together by replacing its generation."""

    name: str
    prefix: str = ""

    @property
    def _base(self) -> str:
        return f"{self.prefix}{self.name}:{{{self.name}}}"

    @property
    def generation_key(self) -> str:
        return f"{self._base}:gen"

    @property
    def data_prefix(self) -> str:
        """The data key up to the generation: ``user_list:{user_list}:g``."""
        return f"{self._base}:g"

    def data_key(self, generation: str, suffix: str) -> str:
        return f"{self.data_prefix}{generation}:{suffix}"

    @property
    def pattern(self) -> str:
        return f"{self.prefix}{self.name}:*"


@dataclass(frozen=True, slots=True)
class NamespacedKey:
    namespace: Namespace
    suffix: str

    @property
    def cache_type(self) -> str:
        return self.namespace.name


AnyKey = Key | NamespacedKey


@dataclass(frozen=True, slots=True)
class KeyBuilder:
    """Builds keys under one optional global prefix (for a shared Redis)."""

    prefix: str = ""

    def key(self, cache_type: str, *parts: object) -> Key:
        if len(parts) == 1 and _kept_verbatim(parts[0]):
            rest = cast(str, parts[0])  # what key_part makes of it (every user id), at once
        else:
            rest = ":".join(key_part(p) for p in parts)
        return Key(check_name(cache_type), f"{self.prefix}{cache_type}:{rest}")

    def namespace(self, name: str) -> Namespace:
        return Namespace(check_name(name), self.prefix)

    def namespaced(self, name: str, **arguments: object) -> NamespacedKey:
        return NamespacedKey(self.namespace(name), cache_key_builder(**arguments) or "all")

    def pattern(self, cache_type: str) -> str:
        """Every key of one family, for SCAN: ``user_details:*``."""
        return f"{self.prefix}{check_name(cache_type)}:*"

    def function_key(self, key_prefix: str, func_name: str, arguments: Mapping[str, Any]) -> Key:
        """The decorator's key, in the seed's format:
        ``user_service:get_user_details:user_id:5779356081``."""
        rest = cache_key_builder(**arguments)
        name = escape(func_name)
        return Key(
            check_name(key_prefix),
            f"{self.prefix}{key_prefix}:{name}" + (f":{rest}" if rest else ""),
        )
