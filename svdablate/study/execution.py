"""Run a started study's trials: replay the spool, run what is left through Ray Tune, count the
outcome, set the parent run's status and publish the report on it (`Study.run/extend`).

It takes records (the manifest, the trial configs, the data records), never the `Study`."""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections import Counter
from typing import Any

from svdablate.schema import StudyStatus, TrialStatus
from svdablate.spec.checkpoints import check_checkpoints
from svdablate.spec.config import TrialConfig
from svdablate.study.manifest import StudyManifest
from svdablate.study.outcome import StudyOutcome
from svdablate.study.preflight import DataRecords, check_data, join_ray, run_names

#: What publishing a study imports (≈1.4 s): loaded on a thread while the trials run.
PUBLISH_IMPORTS = ("svdablate.report", "matplotlib.backends.backend_agg", "matplotlib.figure")


def _import_in_background(*modules: str) -> None:
    """Import `modules` on a daemon thread; a failure is left for the real import to raise."""

    def load() -> None:
        for name in modules:
            with contextlib.suppress(Exception):
                importlib.import_module(name)

    threading.Thread(target=load, name="svdablate-imports", daemon=True).start()


def execute(
    manifest: StudyManifest,
    configs: list[TrialConfig],
    data: DataRecords,
    *,
    restore: bool,
    progress: bool,
    console: Any,
    keep_checkpoints: bool | None = None,
) -> StudyOutcome:
    """Run `configs` of the started study (those not already finished) and publish its report.

    `data`: the data records known so far (`preflight.check_data`); those of the trials left are
    added to it. `restore`: continue the study's current Tune experiment (its trials' starting
    checkpoints are checked again first). What the store has not taken when this returns or
    raises stays in the spool for the next run.
    """
    from svdablate.runtime.progress import RichProgress
    from svdablate.runtime.tune_runner import run_trials
    from svdablate.store.spool import spool_path
    from svdablate.store.writer import MLflowRecorder

    spool = spool_path(manifest.results_dir, manifest.parent_run_id)
    recorder = MLflowRecorder(
        manifest.store_uri, manifest.parent_run_id, spool, run_names=run_names(manifest.configs)
    )
    before = recorder.statuses()  # replays the writes an earlier driver left in the spool
    todo = [c for c in configs if before.get(c.trial_id) not in TrialStatus.DONE]
    skipped = len(configs) - len(todo)
    unseen = [c for c in todo if c.data_key not in data]
    if unseen:  # a loaded study: describe its data for the child runs still to be made
        try:
            data.update(check_data(unseen))
        except BaseException:
            recorder.close(0)
            raise
    if restore:  # resume: the starting checkpoints of the trials left, before Ray starts
        try:
            check_checkpoints(todo, data)
        except BaseException:
            recorder.close(0)
            raise
    recorder.datasets.update({c.trial_id: data[c.data_key] for c in todo})
    if todo:
        try:
            join_ray(manifest.address, manifest.resources, manifest.tune_storage)  # once
        except BaseException:
            recorder.close(0)
            raise
    recorder.set_study_status(StudyStatus.RUNNING)
    terminal = progress and (console is None or console.is_terminal)
    bar = (
        RichProgress(
            len(configs),
            manifest.name,
            already_done=skipped,
            console=console,
            pending_writes=recorder.pending_writes,
        )
        if terminal
        else None
    )
    log = _trial_log(manifest, configs, skipped, console) if progress and not terminal else None
    keep = not manifest.spec.smoke if keep_checkpoints is None else keep_checkpoints
    _import_in_background(*PUBLISH_IMPORTS)  # the driver idles while the trials run
    try:
        tuned = run_trials(
            manifest,
            configs,
            recorder,
            restore=restore,
            progress=bar,
            log=log,
            keep_checkpoints=keep,
        )
    except BaseException:
        recorder.close(0)  # what the store has not taken stays in the spool for `resume`
        raise
    statuses = recorder.statuses()
    counts = Counter(statuses.get(c.trial_id, TrialStatus.PENDING) for c in configs)
    outcome = StudyOutcome(
        name=manifest.name,
        parent_run_id=manifest.parent_run_id,
        results_dir=manifest.results_dir,
        trials=len(configs),
        finished=counts[TrialStatus.FINISHED],
        diverged=counts[TrialStatus.DIVERGED],
        failed=counts[TrialStatus.FAILED],
        unfinished=counts[TrialStatus.RUNNING] + counts[TrialStatus.PENDING],
        skipped=skipped,
        interrupted_by=tuned.interrupted_by,
        seconds=tuned.seconds,
        epochs_logged=recorder.epochs_logged,
    )
    recorder.set_study_status(_study_status(outcome))
    outcome.unsent_writes = recorder.close()
    outcome.spool = str(spool) if outcome.unsent_writes else ""
    outcome.mlflow_write_seconds = round(recorder.write_seconds, 3)
    if not outcome.unsent_writes:
        from svdablate.report import publish_study

        # The table, report, plots and per-row metrics on the parent run (the MLflow UI).
        publish_study(manifest.store_uri, manifest.parent_run_id)
    return outcome


def _trial_log(
    manifest: StudyManifest, configs: list[TrialConfig], skipped: int, console: Any
) -> Any:
    """The plain progress lines of a study whose output is not a terminal, from its first."""
    from svdablate.runtime.log_lines import TrialLog

    log = TrialLog(
        console.file,
        run_names(manifest.configs),
        {c.trial_id: c.epochs for c in configs},
        total=len(configs),
        already_done=skipped,
    )
    log.line(
        f"study {manifest.name}: {len(configs)} trials ({skipped} finished before), parent run "
        f"{manifest.parent_run_id}, tracking {manifest.store_uri}"
    )
    return log


def _study_status(outcome: StudyOutcome) -> str:
    """The parent run's status: interrupted while trials are left, else failed or finished."""
    if outcome.interrupted_by or outcome.unfinished:
        return StudyStatus.INTERRUPTED
    if outcome.failed:
        return StudyStatus.FAILED
    return StudyStatus.FINISHED
