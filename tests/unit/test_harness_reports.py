"""The scripts' report writers (scripts/harness/reports.py) replace only their
own part of a file."""

from __future__ import annotations

from pathlib import Path

from harness.reports import write_marked, write_section

BEGIN, END = "<!-- x:begin -->", "<!-- x:end -->"
OTHER = ("<!-- y:begin -->", "<!-- y:end -->")


def test_write_marked_replaces_between_its_markers(tmp_path: Path) -> None:
    path = tmp_path / "r.md"
    path.write_text(f"# R\n\nbefore\n\n{BEGIN}\nold\n{END}\n\nafter\n")
    write_marked(f"{BEGIN}\nnew\n{END}\n", BEGIN, END, path)
    assert path.read_text() == f"# R\n\nbefore\n\n{BEGIN}\nnew\n{END}\n\nafter\n"


def test_write_marked_appends_when_the_markers_are_missing(tmp_path: Path) -> None:
    path = tmp_path / "r.md"
    write_marked(f"{BEGIN}\nfirst\n{END}", BEGIN, END, path, "# R\n")
    write_marked(f"{OTHER[0]}\nsecond\n{OTHER[1]}", *OTHER, path)
    write_marked(f"{BEGIN}\nthird\n{END}", BEGIN, END, path)
    expected = f"# R\n\n{BEGIN}\nthird\n{END}\n\n{OTHER[0]}\nsecond\n{OTHER[1]}\n"
    assert path.read_text() == expected


def test_write_section_replaces_up_to_the_next_heading(tmp_path: Path) -> None:
    path = tmp_path / "b.md"
    path.write_text("# B\n\n## One\n\nold\n\n## Two\n\nkept\n")
    write_section("One", "new", path)
    write_section("Three", "added", path)
    assert path.read_text() == "# B\n\n## One\n\nnew\n\n## Two\n\nkept\n\n## Three\n\nadded\n"
