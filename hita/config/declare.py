"""How a setting is declared: once, on the dataclass field it fills.

``port: int = integer("PORT", 8080, "port the HTTP server binds", minimum=1)``
names the environment variable, its type and bounds, its default and its help.
The loader, ``hita config`` and the documentation tables all read these
declarations; nothing else lists the settings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any, Final, TypeVar

T = TypeVar("T")
N = TypeVar("N", int, float)

SETTING: Final = "hita.setting"  # field metadata: the Setting that fills the field
DERIVED: Final = "hita.derived"  # field metadata: built from several settings
SECTION: Final = "hita.section"  # field metadata: a nested group of settings


class ConfigError(ValueError):
    """The configuration cannot be used; the message says which setting and why."""


class Kind(Enum):
    """How a raw value is read, and how the documentation names its type."""

    INTEGER = "integer"
    MILLISECONDS = "integer ms"  # kept in the config in seconds
    NUMBER = "number"
    FLAG = "true/false"
    CHOICE = "one of"
    TEXT = "text"
    PATH = "path"
    URL = "URL"
    SECRET = "secret"  # noqa: S105 - the name of a kind, not a password


Check = Callable[[str, str], object]  # (name, raw text) -> value, or ConfigError


@dataclass(frozen=True, slots=True)
class Setting:
    """One environment variable. ``default`` is written as in the environment;
    ``None`` is unset (an empty value then counts as unset too)."""

    name: str
    default: str | None
    help: str
    kind: Kind = Kind.TEXT
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    check: Check | None = None

    @property
    def secret(self) -> bool:
        return self.kind is Kind.SECRET

    def parse(self, raw: str | None) -> object:
        """The typed value of ``raw``; bounds and checks applied."""
        if raw is None or (raw == "" and self.default is None):
            if self.default is None:
                return None
            raw = self.default
        value = _READERS[self.kind](self, raw)
        return self.check(self.name, raw) if self.check else value

    def describe(self) -> str:
        """The type and bounds, as the documentation tables show them."""
        if self.kind is Kind.CHOICE:
            return " / ".join(f"`{c}`" for c in self.choices)
        kind: str = self.kind.value
        low, high = self.minimum, self.maximum
        if low is not None and high is not None:
            return f"{kind} {_num(low)}–{_num(high)}"  # noqa: RUF001 - a range
        if low is not None:
            return f"{kind} ≥ {_num(low)}"
        return kind


def _num(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def _bounded(setting: Setting, raw: str, convert: Callable[[str], N], what: str) -> N:
    """``raw`` read by ``convert`` (int or float) and kept within the bounds."""
    try:
        value = convert(raw)
    except ValueError:
        raise ConfigError(f"{setting.name} must be {what}, not {raw!r}") from None
    if setting.minimum is not None and value < setting.minimum:
        raise ConfigError(f"{setting.name} must be at least {_num(setting.minimum)}, not {value}")
    if setting.maximum is not None and value > setting.maximum:
        raise ConfigError(f"{setting.name} must be at most {_num(setting.maximum)}, not {value}")
    return value


def _integer(setting: Setting, raw: str) -> int:
    return _bounded(setting, raw, int, "an integer")


def _number(setting: Setting, raw: str) -> float:
    return _bounded(setting, raw, float, "a number")


def _flag(setting: Setting, raw: str) -> bool:
    text = raw.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{setting.name} must be true or false, not {text!r}")


def _choice(setting: Setting, raw: str) -> str:
    """Case-insensitive (``LOG_LEVEL=info``); the value is the declared spelling."""
    wanted = raw.strip().lower()
    for choice in setting.choices:
        if choice.lower() == wanted:
            return choice
    options = ", ".join(setting.choices)
    raise ConfigError(f"{setting.name} must be one of {options}, not {raw.strip()!r}")


_READERS: Final[Mapping[Kind, Callable[[Setting, str], object]]] = {
    Kind.INTEGER: _integer,
    Kind.MILLISECONDS: lambda s, raw: _integer(s, raw) / 1000,
    Kind.NUMBER: _number,
    Kind.FLAG: _flag,
    Kind.CHOICE: _choice,
    Kind.TEXT: lambda s, raw: raw,
    Kind.PATH: lambda s, raw: Path(raw),
    Kind.URL: lambda s, raw: raw,
    Kind.SECRET: lambda s, raw: raw,
}


def _field(setting: Setting, default: T) -> T:
    """A dataclass field filled by ``setting``; ``default`` is its parsed default."""
    value: T = field(default=default, repr=not setting.secret, metadata={SETTING: setting})
    return value


def integer(
    name: str, default: int, help_: str, *, minimum: int = 0, maximum: int | None = None
) -> int:
    return _field(Setting(name, str(default), help_, Kind.INTEGER, minimum, maximum), default)


def millis(name: str, default_ms: int, help_: str, *, minimum: int = 0) -> float:
    """Written in milliseconds, kept in seconds."""
    setting = Setting(name, str(default_ms), help_, Kind.MILLISECONDS, minimum)
    return _field(setting, default_ms / 1000)


def number(
    name: str, default: float, help_: str, *, minimum: float = 0.0, maximum: float | None = None
) -> float:
    return _field(Setting(name, str(default), help_, Kind.NUMBER, minimum, maximum), default)


def flag(name: str, default: bool, help_: str) -> bool:
    return _field(Setting(name, str(default).lower(), help_, Kind.FLAG), default)


def choice(name: str, choices: tuple[str, ...], default: str, help_: str) -> str:
    return _field(Setting(name, default, help_, Kind.CHOICE, choices=choices), default)


def text(name: str, default: str, help_: str, *, check: Check | None = None) -> str:
    return _field(Setting(name, default, help_, check=check), default)


def path(name: str, default: str, help_: str) -> Path:
    return _field(Setting(name, default, help_, Kind.PATH), Path(default))


def url(name: str, help_: str, *, check: Check) -> str | None:
    """Unset by default; kept out of ``repr`` (it may carry a password)."""
    value: str | None = field(
        default=None,
        repr=False,
        metadata={SETTING: Setting(name, None, help_, Kind.URL, check=check)},
    )
    return value


@dataclass(frozen=True, slots=True)
class Derived:
    """A field built from several settings (``inputs``) by ``build``."""

    build: Callable[[Parsed], object]
    inputs: tuple[Setting, ...]


def derived(build: Callable[[Parsed], T], *inputs: Setting, default: T, secret: bool = False) -> T:
    value: T = field(default=default, repr=not secret, metadata={DERIVED: Derived(build, inputs)})
    return value


def section(cls: type[T]) -> T:
    """A nested group; its own fields' defaults make its default."""
    value: T = field(default_factory=cls, metadata={SECTION: cls})
    return value


class Parsed:
    """Every setting's typed value by name, with typed accessors for ``derived``."""

    def __init__(self, values: Mapping[str, object]) -> None:
        self._values = values

    def __getitem__(self, name: str) -> object:
        return self._values[name]

    def text(self, name: str) -> str:
        value = self._values[name]
        assert isinstance(value, str), name
        return value

    def optional(self, name: str) -> str | None:
        value = self._values[name]
        assert value is None or isinstance(value, str), name
        return value

    def integer(self, name: str) -> int:
        value = self._values[name]
        assert isinstance(value, int), name
        return value


def settings_of(cls: type[Any]) -> Iterator[Setting]:
    """Every setting of ``cls`` and its sections, in declaration order."""
    for f in fields(cls):
        if SETTING in f.metadata:
            yield f.metadata[SETTING]
        elif DERIVED in f.metadata:
            yield from f.metadata[DERIVED].inputs
        elif SECTION in f.metadata:
            yield from settings_of(f.metadata[SECTION])


def build(cls: type[T], parsed: Parsed) -> T:
    """An instance of ``cls`` with every field filled from ``parsed``."""
    values: dict[str, object] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if SETTING in f.metadata:
            values[f.name] = parsed[f.metadata[SETTING].name]
        elif DERIVED in f.metadata:
            values[f.name] = f.metadata[DERIVED].build(parsed)
        elif SECTION in f.metadata:
            values[f.name] = build(f.metadata[SECTION], parsed)
    return cls(**values)
