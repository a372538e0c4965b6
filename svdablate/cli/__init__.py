"""`svdablate`: plan · rehearse · run · resume · status · report · plot · analyze · fields · ui.

Thin: each command parses its options, calls the `Study` API (or the report), and prints. `--help`
lists the commands in the order they register: the study's first, then the readers'.
"""

from svdablate.cli import (
    rehearse_commands,  # noqa: F401  (rehearse)
    study_commands,  # noqa: F401  (plan, fields, run, resume)
)

# isort: split
from svdablate.cli import analyze_commands, read_commands  # noqa: F401  (status, report, plot, ui; analyze)
from svdablate.cli.app import _complete_presets, _complete_rows, app, console, main

__all__ = ["_complete_presets", "_complete_rows", "app", "console", "main"]
