"""`plan`, `fields`, `run` and `resume`: the commands that make and run studies."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from svdablate.cli.app import (
    EXIT_CODES,
    Address,
    Checkpoints,
    Epochs,
    ErrorMetric,
    GpusPerTrial,
    Preset,
    ResultsDir,
    Rows,
    Seeds,
    Sets,
    Smoke,
    TrackingUri,
    _complete_presets,
    _examples,
    _rows,
    _warn,
    app,
    console,
    err_console,
)
from svdablate.errors import ExitCode, UserError
from svdablate.schema import StudyStatus
from svdablate.spec.presets import PRESETS


def _grid(
    seeds: int | None,
    rows: str | None,
    epochs: int | None,
    smoke: bool,
    sets: list[str] | None,
    gpus_per_trial: float | None,
    checkpoints: Path | None,
) -> dict[str, Any]:
    """`StudyPlan.create`'s keywords from the grid options that `plan` and `run` share."""
    return {
        "seeds": seeds,
        "rows": _rows(rows),
        "epochs": epochs,
        "smoke": smoke,
        "overrides": sets,
        "gpus_per_trial": gpus_per_trial,
        "checkpoints": checkpoints,
    }


@app.command(
    epilog=_examples(
        "svdablate plan --preset eccv22-dbn-cifar100",
        "svdablate plan --preset demo --epochs 30 --set milestones=[0.5,0.75]",
        "svdablate plan --preset iccv21-fgvc --checkpoints imagenet-models/",
    )
)
def plan(
    preset: Preset = "demo",
    seeds: Seeds = None,
    rows: Rows = None,
    epochs: Epochs = None,
    smoke: Smoke = False,
    gpus_per_trial: GpusPerTrial = None,
    checkpoints: Checkpoints = None,
    set_: Sets = None,
    results_dir: ResultsDir = Path("results"),
) -> None:
    """Print the trial list, the effective schedule, resources and GPU-hours (measured by the
    preset's `rehearse` under --results-dir when there is one); nothing runs."""
    from svdablate.spec.cost import load_rehearsal, plan_table
    from svdablate.spec.grid import missing_checkpoints
    from svdablate.study.plan import StudyPlan

    planned = StudyPlan.create(
        preset,
        **_grid(seeds, rows, epochs, smoke, set_, gpus_per_trial, checkpoints),
        check=False,
    )
    _warn(planned.warnings)
    refusal = None if smoke else missing_checkpoints(planned.preset, planned.spec)
    if refusal:
        _warn([f"`run` will refuse: {refusal}"])
    rehearsal = None if smoke else load_rehearsal(results_dir, preset)
    console.print(plan_table(planned.preset, planned.configs, planned.resources, rehearsal))


@app.command(
    "fields", epilog=_examples("svdablate fields", "svdablate fields --markdown > fields.md")
)
def fields_cmd(
    markdown: Annotated[bool, typer.Option(help="Print docs/config.md's markdown table.")] = False,
) -> None:
    """Every trial-config field `--set` accepts: type, default, allowed range, unit, meaning."""
    from rich.table import Table

    from svdablate.spec.field_reference import field_reference, reference_markdown

    if markdown:
        sys.stdout.write(reference_markdown() + "\n")
        return
    table = Table(title="Trial config: svdablate run --set KEY=VALUE")
    for column in ("key", "type", "default", "allowed", "unit", "meaning"):
        table.add_column(column, overflow="fold")
    for row in field_reference():
        table.add_row(*(row[k] for k in ("key", "type", "default", "range", "unit", "meaning")))
    console.print(table)


def _say(to: Any, text: str) -> None:
    """One line: as is on a terminal, else timestamped and flushed (a log file read meanwhile)."""
    from svdablate.runtime.log_lines import write_line

    if to.is_terminal:
        to.print(text, highlight=False, soft_wrap=True, markup=False)
    else:
        write_line(to.file, text)


def _print_outcome(study: Any, outcome: Any, *, report: bool, metric: str) -> None:
    from svdablate.cli.read_commands import _print_report

    _say(
        console,
        f"{outcome.name}: {outcome.trials} trials — {outcome.finished} finished, "
        f"{outcome.diverged} diverged, {outcome.failed} failed, {outcome.unfinished} unfinished "
        f"({outcome.skipped} already finished before) in {outcome.seconds} s; MLflow writes "
        f"{outcome.mlflow_write_seconds} s for {outcome.epochs_logged} epochs",
    )
    if report and not outcome.interrupted_by and not outcome.unsent_writes:
        _print_report(study.tracking_uri, [outcome.parent_run_id], fmt="rich", metric=metric)
    left = outcome.unfinished + outcome.failed
    if outcome.exit_code != ExitCode.OK and (left or outcome.interrupted_by):
        interrupted = outcome.interrupted_by or outcome.unfinished
        what = StudyStatus.INTERRUPTED if interrupted else StudyStatus.FAILED
        if outcome.failed:
            _say(
                err_console,
                f"{outcome.failed} trial(s) failed: their errors are the "
                "svdablate.error tag of their MLflow runs",
            )
        _say(err_console, f"{what}: {left} trial(s) left; continue with `{outcome.resume_command}`")
    if outcome.unsent_writes:  # the last line: where the unsent records wait
        _say(err_console, outcome.unsent_line)


@app.command(
    epilog=_examples(
        "svdablate run                                   (the demo: digits, CPU, minutes)",
        "svdablate run --preset demo --rows SVD,SVD+NOG --seeds 5 --set lr=0.1",
        "svdablate run --preset eccv22-dbn-cifar100 --data-dir /data --address ray://head:10001 "
        "--gpus-per-trial 0.25 --tracking-uri http://mlflow:5000",
        "svdablate run --preset demo --extend RUN_ID --seeds 10",
        "svdablate run --preset demo --until-decided --max-seeds 20 --budget-hours 1",
        "svdablate run --preset iccv21-fgvc --checkpoints imagenet-models/ --data-dir /data",
        EXIT_CODES,
    )
)
def run(
    preset: Annotated[
        str,
        typer.Option(
            "--preset",
            help=f"Preset name(s), comma-separated: {', '.join(PRESETS)}.",
            autocompletion=_complete_presets,
        ),
    ] = "demo",
    seeds: Seeds = None,
    rows: Rows = None,
    epochs: Epochs = None,
    smoke: Smoke = False,
    results_dir: ResultsDir = Path("results"),
    tracking_uri: TrackingUri = None,
    experiment: Annotated[
        str | None,
        typer.Option(
            help="MLflow experiment (default: $MLFLOW_EXPERIMENT_NAME, else the preset's name)."
        ),
    ] = None,
    address: Address = None,
    storage_path: Annotated[
        str | None,
        typer.Option(help="Ray Tune storage (shared FS or s3://, gs://) for multi-node."),
    ] = None,
    data_dir: Annotated[
        str | None, typer.Option(help="Dataset root (CIFAR files, ImageFolder trees).")
    ] = None,
    download: Annotated[
        bool, typer.Option(help="Download CIFAR where the network allows.")
    ] = False,
    gpus_per_trial: GpusPerTrial = None,
    cpus_per_trial: Annotated[float | None, typer.Option(help="CPUs per trial.")] = None,
    max_concurrent: Annotated[
        int | None, typer.Option(help="At most this many trials at once.")
    ] = None,
    max_failures: Annotated[
        int, typer.Option(help="Retries of a crashed trial from its checkpoint.")
    ] = 2,
    extend: Annotated[
        str | None, typer.Option(help="Add seeds/rows to this study (its parent run id).")
    ] = None,
    checkpoints: Checkpoints = None,
    set_: Sets = None,
    until_decided: Annotated[
        bool,
        typer.Option(
            help="Add seeds in waves to the rows the claims compare until every claim is decided "
            "or beyond the budget (docs/sequential.md)."
        ),
    ] = False,
    max_seeds: Annotated[
        int | None,
        typer.Option(
            help="--until-decided: at most this many seeds per row (default 4 × --seeds)."
        ),
    ] = None,
    budget_hours: Annotated[
        float | None,
        typer.Option(
            help="--until-decided: no wave that the measured time per trial says would "
            "pass this many hours in all."
        ),
    ] = None,
    report: Annotated[bool, typer.Option(help="Print the study's table at the end.")] = True,
    metric: Annotated[
        ErrorMetric,
        typer.Option(help="Error of each run in the table: best epoch (the papers') or final."),
    ] = "best",
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
    keep_checkpoints: Annotated[
        bool | None,
        typer.Option(
            help="Keep finished trials' last checkpoints (default: yes, except with --smoke)."
        ),
    ] = None,
) -> None:
    """Run presets' grids through Ray Tune, record them in MLflow and print their tables.

    `--preset a,b` runs several studies (one MLflow parent each) in one Ray session.
    """
    from svdablate.study.plan import StudyPlan
    from svdablate.study.study import Study

    names = [n.strip() for n in preset.split(",") if n.strip()]
    if not names:
        raise UserError("--preset is empty: name a preset, e.g. --preset demo")
    if (max_seeds is not None or budget_hours is not None) and not until_decided:
        raise UserError("--max-seeds and --budget-hours go with --until-decided: add it")
    if until_decided and (extend or len(names) != 1):
        raise UserError("--until-decided runs one new study: name one --preset, without --extend")
    if extend:
        if len(names) != 1:
            raise UserError("--extend takes one study: name one --preset")
        if checkpoints is not None:
            raise UserError(
                "--extend keeps the study's --checkpoints folder (new rows' files go there): "
                "drop --checkpoints"
            )
        study = Study.load(results_dir, extend)
        outcome = study.extend(
            seeds=seeds,
            rows=_rows(rows),
            epochs=epochs,
            overrides=set_,
            progress=progress,
            console=console,
        )
        _say(console, f"extended study {study.parent_run_id} with {outcome.trials} new trials")
        _print_outcome(study, outcome, report=report, metric=metric)
        raise typer.Exit(outcome.exit_code)
    plans = [  # every grid is checked before Ray starts
        StudyPlan.create(
            name,
            **_grid(seeds, rows, epochs, smoke, set_, gpus_per_trial, checkpoints),
            results_dir=results_dir,
            tracking_uri=tracking_uri,
            storage_path=storage_path,
            address=address,
            experiment=experiment,
            data_dir=data_dir,
            download=download,
            cpus_per_trial=cpus_per_trial,
            max_concurrent=max_concurrent,
            max_failures=max_failures,
        )
        for name in names
    ]
    for planned in plans:
        _warn(planned.warnings)
    if until_decided:
        from svdablate.study.sequential import design_for, run_until_decided

        design = design_for(plans[0], max_seeds, budget_hours)
        study = plans[0].start()
        decided = run_until_decided(
            study, design, metric=metric, progress=progress, console=console,
            keep_checkpoints=keep_checkpoints,
        )  # fmt: skip
        _print_decided(study, decided, report=report, metric=metric)
    code = ExitCode.OK
    for planned in plans:
        study = planned.start()
        outcome = study.run(progress=progress, keep_checkpoints=keep_checkpoints, console=console)
        _say(
            console,
            f"study {study.name}: {outcome.trials} trials, parent run "
            f"{study.parent_run_id}, tracking {study.tracking_uri}",
        )
        _print_outcome(study, outcome, report=report, metric=metric)
        code = max(code, outcome.exit_code)
        if outcome.interrupted_by:
            break
    raise typer.Exit(code)


def _print_decided(study: Any, decided: Any, *, report: bool, metric: str) -> None:
    """The last wave's outcome and table, what the waves decided, then exit."""
    _print_outcome(study, decided.outcome, report=report, metric=metric)
    console.print(decided.design.summary(), highlight=False, soft_wrap=True)
    raise typer.Exit(decided.outcome.exit_code)


@app.command(
    epilog=_examples(
        "svdablate resume --latest",
        "svdablate resume RUN_ID --results-dir /shared/results --address ray://head:10001",
        EXIT_CODES,
    )
)
def resume(
    run_id: Annotated[str | None, typer.Argument(help="Parent run id of the study.")] = None,
    latest: Annotated[bool, typer.Option(help="The newest study under --results-dir.")] = False,
    results_dir: ResultsDir = Path("results"),
    tracking_uri: TrackingUri = None,
    address: Annotated[str | None, typer.Option(help="Ray cluster address.")] = None,
    report: Annotated[bool, typer.Option(help="Print the study's table at the end.")] = True,
    metric: Annotated[
        ErrorMetric, typer.Option(help="Error of each run: best epoch (the papers') or final.")
    ] = "best",
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
) -> None:
    """Continue an interrupted study: finished trials are not re-run, MLflow runs are reused."""
    from svdablate.study.study import Study

    if run_id is None and not latest:
        raise UserError("name the study: `svdablate resume RUN_ID` or `svdablate resume --latest`")
    study = Study.load(
        results_dir, None if latest else run_id, tracking_uri=tracking_uri, address=address
    )
    _say(console, f"resuming study {study.name} ({study.parent_run_id})")
    from svdablate.report.claims.sequential import TRIALS_LEFT
    from svdablate.study.sequential import resume_until_decided, saved_design

    design = saved_design(study)
    if design is not None and design.stopped in ("", TRIALS_LEFT):
        decided = resume_until_decided(
            study, design, metric=metric, progress=progress, console=console
        )
        _print_decided(study, decided, report=report, metric=metric)
    outcome = study.run(progress=progress, console=console)
    _print_outcome(study, outcome, report=report, metric=metric)
    raise typer.Exit(outcome.exit_code)
