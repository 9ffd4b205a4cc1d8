"""What the documentation says of the settings, generated from their declarations:
the tables of docs/configuration.md and README (``hita config --markdown``), and
the warning for a variable that looks like a setting but is none."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Final

from hita.config.loader import SETTING_NAMES, SETTINGS, resolve

PROFILES_SHOWN: Final = ("development", "production")
_PREFIX: Final = "HITA_"


def _cell(value: str | None) -> str:
    return f"`{value}`" if value not in (None, "") else "(unset)"


def settings_markdown(*, differing_only: bool = False) -> str:
    """One row per setting: its value in the development and production profiles,
    its type and bounds, and what it does. ``differing_only``: the rows whose two
    values differ (README's table)."""
    columns = {env: dict(_values(env)) for env in PROFILES_SHOWN}
    lines = [
        "| variable | development | production | type | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for s in SETTINGS:
        dev, prod = (columns[env][s.name] for env in PROFILES_SHOWN)
        if differing_only and dev == prod:
            continue
        lines.append(f"| `{s.name}` | {_cell(dev)} | {_cell(prod)} | {s.describe()} | {s.help} |")
    return "\n".join(lines)


def _values(env: str) -> Iterator[tuple[str, str | None]]:
    """Each setting's value in profile ``env``, the environment left aside."""
    _, rows = resolve({"HITA_ENV": env})
    for row in rows:
        yield row.setting.name, row.value


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One warning per variable that looks like a setting but is none: any
    ``HITA_*``, and a name one or two edits from a setting's (REDIS_URLL)."""
    warnings = []
    for name in sorted(set(environ) - SETTING_NAMES):
        guess = _closest(name)
        if guess is not None:
            warnings.append(f"{name} is not a HITA setting; did you mean {guess}?")
        elif name.startswith(_PREFIX):
            warnings.append(f"{name} is not a HITA setting (hita config lists them)")
    return warnings


def _closest(name: str) -> str | None:
    allowed = 1 if len(name) <= 8 else 2  # HOME is not HOST; REDIS_URLL is REDIS_URL
    best = min(SETTING_NAMES, key=lambda known: _distance(name, known))
    return best if _distance(name, best) <= allowed else None


def _distance(a: str, b: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]
