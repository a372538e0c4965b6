"""Every test docs/reliability.md names exists: a guarantee cannot silently lose its test."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RELIABILITY = ROOT / "docs" / "reliability.md"

#: `test_x.py`, `test_x.py::test_name`, `::test_name` (the row's previous file), a name cut by `…`.
REFERENCE = re.compile(r"`(?P<file>test_\w+\.py)?(?:::(?P<test>test_\w+)(?P<cut>…)?)?`")


def named_tests(markdown: str) -> list[tuple[str, str | None, bool]]:
    """(file, test name or None, whether the name is a prefix) for each reference in the table."""
    references = []
    for line in markdown.splitlines():
        if not line.startswith("|"):
            continue
        cells = line.strip("|").split("|")
        current = None
        for match in REFERENCE.finditer(cells[-1]):
            current = match["file"] or current
            if current is None:
                continue
            references.append((current, match["test"], bool(match["cut"])))
    return references


def test_every_named_test_file_and_function_exists():
    references = named_tests(RELIABILITY.read_text())
    assert len(references) >= 20, "the reliability table names its tests"
    missing = []
    for file, test, is_prefix in references:
        found = [p for p in (ROOT / "tests").rglob(file)]
        if not found:
            missing.append(file)
            continue
        if test is None:
            continue
        source = found[0].read_text()
        boundary = "" if is_prefix else r"\b"
        pattern = rf"def {re.escape(test)}{boundary}"
        if not re.search(pattern, source):
            missing.append(f"{file}::{test}{'…' if is_prefix else ''}")
    assert not missing, f"docs/reliability.md names tests that do not exist: {missing}"


def test_the_parser_reads_a_cut_name_and_a_row_s_previous_file():
    row = "| a | b | `test_a.py::test_x_…`, `::test_y` and `test_b.py` |"
    assert named_tests(row) == [
        ("test_a.py", "test_x_", True),
        ("test_a.py", "test_y", False),
        ("test_b.py", None, False),
    ]
