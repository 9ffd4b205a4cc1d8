"""Report files: a script replaces its own part of a markdown file and leaves
the rest as it is, either a ``## heading`` section or the text between a
pair of HTML comment markers; plus the facts every report starts with."""

from __future__ import annotations

import os
import platform
import re
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from hita.config import PROJECT_ROOT

BENCHMARKS: Final = PROJECT_ROOT / "docs" / "benchmarks.md"


def command_line(script: str) -> str:
    """How this script was called, as ``python scripts/<script> <args>``."""
    return shlex.join(["python", f"scripts/{script}", *sys.argv[1:]])


def facts() -> dict[str, str]:
    """When and where: date, machine, Python."""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared with other work)",
        "Python": platform.python_version(),
    }


def machine_facts() -> list[str]:
    return [f"- {name}: {value}" for name, value in facts().items()]


def write_section(heading: str, body: str, path: Path = BENCHMARKS) -> None:
    """Replace (or append) the ``## heading`` section of ``path``."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = text.rstrip("\n").split("\n")
    marker = f"## {heading}"
    if marker in lines:
        start = lines.index(marker)
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        lines[start:end] = [marker, "", *body.rstrip("\n").split("\n"), ""]
    else:
        lines += ["", marker, "", *body.rstrip("\n").split("\n")]
    path.write_text("\n".join(lines).rstrip("\n") + "\n")


def publish(heading: str, body: str, *, write: bool = True) -> None:
    """Print a benchmark's section and, if ``write``, put it in benchmarks.md."""
    print(body)
    if write:
        write_section(heading, body)


def write_marked(text: str, begin: str, end: str, path: Path, title: str = "") -> None:
    """Replace what stands between the ``begin`` and ``end`` markers of ``path``
    (markers included: ``text`` carries them) or append ``text``; a missing
    file starts with ``title``."""
    old = path.read_text() if path.exists() else title
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    body = text.rstrip("\n")
    if pattern.search(old):
        path.write_text(pattern.sub(lambda _: body, old))
    else:
        path.write_text(old.rstrip("\n") + "\n\n" + body + "\n")
