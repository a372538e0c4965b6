"""The `svdablate` Typer app: its options shared by commands, and `main` (one line per mistake).

The commands register on `app` from `study_commands`, `read_commands` and `analyze_commands`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from typer._click.exceptions import ClickException

from svdablate import __version__
from svdablate.errors import ExitCode, UserError
from svdablate.schema import ERROR_METRICS, REPORT_LAYOUTS
from svdablate.spec.presets import PRESETS

EXIT_CODES = (
    "Exit codes: 0 every trial finished (diverged trials are results); 1 a trial failed after "
    "its retries, or the study was interrupted; 2 bad input (nothing started); 130 Ctrl-C."
)
app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Ablation studies of SVD meta-layers (ICCV'21, ECCV'22): Ray Tune grids, MLflow records, "
    f"the papers' tables.\n\n{EXIT_CODES}",
)
analyze_app = typer.Typer(no_args_is_help=True, help="Numerical analyses of the ICCV'21 paper.")
app.add_typer(analyze_app, name="analyze")
console = Console()
err_console = Console(stderr=True)

PresetName = Literal[tuple(PRESETS)]  # type: ignore[valid-type]
Layout = Literal[REPORT_LAYOUTS]  # type: ignore[valid-type]
ErrorMetric = Literal[ERROR_METRICS]  # type: ignore[valid-type]


def _version(value: bool) -> None:
    if value:
        from svdablate.store.provenance import library_versions

        versions = library_versions()
        versions.pop("svdablate", None)
        libraries = ", ".join(f"{name} {version}" for name, version in versions.items())
        console.print(f"svdablate {__version__} ({libraries})")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Ablation studies of SVD meta-layers (ICCV'21, ECCV'22)."""


def _complete_presets(incomplete: str) -> list[str]:
    """Shell completion of --preset (comma-separated lists complete their last name)."""
    head, _, last = incomplete.rpartition(",")
    prefix = f"{head}," if head else ""
    return [prefix + name for name in PRESETS if name.startswith(last)]


def _complete_rows(incomplete: str) -> list[str]:
    """Shell completion of --rows: the preset rows' spellings, methods and treatments."""
    from svdablate.treatments import TREATMENTS

    head, _, last = incomplete.rpartition(",")
    prefix = f"{head}," if head else ""
    rows = dict.fromkeys(r for p in PRESETS.values() for r in p.rows)
    method, plus, _ = last.partition("+")
    if plus:
        return [f"{prefix}{method}+{t}" for t in TREATMENTS]
    return [prefix + row for row in rows if row.lower().startswith(last.lower())]


def _examples(*lines: str) -> str:
    """A command's examples, shown under its --help."""
    return "Examples:\n\n" + "\n\n".join(f"  {line}" for line in lines)


Preset = Annotated[PresetName, typer.Option("--preset", help="The preset.")]
Address = Annotated[
    str | None,
    typer.Option(
        help="Ray cluster address: host:port, ray://host:10001, 'auto' (the last `ray start` "
        "cluster) or 'local' (default: $RAY_ADDRESS, else a local Ray of this command's own)."
    ),
]
ResultsDir = Annotated[
    Path,
    typer.Option(
        "--results-dir", help="Where the study's MLflow store, Ray state and manifests live."
    ),
]
TrackingUri = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
        "sqlite:///<results-dir>/mlflow.db).",
    ),
]
Seeds = Annotated[int | None, typer.Option(help="Seeds per row (default: the preset's).")]
Rows = Annotated[
    str | None,
    typer.Option(
        help="Comma-separated rows, e.g. 'SVD,SVD+NOG' (method + treatments, any order/case).",
        autocompletion=_complete_rows,
    ),
]
Epochs = Annotated[int | None, typer.Option(help="Epochs per trial (default: the preset's).")]
Smoke = Annotated[bool, typer.Option(help="Every trial on fake data, 2 steps, on CPU.")]
GpusPerTrial = Annotated[float | None, typer.Option(help="GPUs per trial; 0.25 packs four.")]
Checkpoints = Annotated[
    Path | None,
    typer.Option(
        "--checkpoints",
        help="Folder with each row's own starting checkpoint, one file per row named as the row "
        "(iSQRT-COV.pt, SVD-Pade.pt, ...): required by iccv21-fgvc "
        "(docs/presets.md, Fine-grained).",
    ),
]
Sets = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a trial-config field: key=value (docs/config.md)."),
]


def _rows(text: str | None) -> tuple[str, ...] | None:
    """None when --rows is absent; an empty --rows is kept so that it is refused, not ignored."""
    return None if text is None else tuple(text.split(","))


def _warn(lines: list[str]) -> None:
    for line in lines:
        err_console.print(f"[yellow]warning[/]: {line}", soft_wrap=True, highlight=False)


def main() -> None:
    """Entry point: a user mistake is one line on stderr and exit code 2, never a traceback.

    Only `UserError` (and the report's `LookupError` for an unknown study) are user mistakes: any
    other exception is a bug and shows its traceback.
    """
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # no store-migration chatter
    try:
        code = app(standalone_mode=False)
    except ClickException as exc:  # a wrong option, value or type: click's message, one line
        if exc.exit_code == 0 or type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()
            sys.exit(exc.exit_code)
        command = getattr(getattr(exc, "ctx", None), "command_path", "svdablate")
        _error(f"{exc.format_message()} (see `{command} --help`)")
        sys.exit(ExitCode.USAGE)
    except typer.Abort:
        sys.exit(ExitCode.CTRL_C)
    except (UserError, LookupError) as exc:
        if isinstance(exc, KeyError | IndexError):  # bugs, not an unknown study
            raise
        _error(str(exc))
        sys.exit(getattr(exc, "exit_code", ExitCode.USAGE))
    sys.exit(code if isinstance(code, int) else ExitCode.OK)


def _error(text: str) -> None:
    """One line on stderr, whatever the terminal's width."""
    message = text.strip().splitlines()[0] if text.strip() else "error"
    err_console.print(f"[bold red]error[/]: {message}", highlight=False, soft_wrap=True)
