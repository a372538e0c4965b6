"""Ray Tune runs a study's trials: one Tune experiment per run/extend, restored on resume.

`train_trial` is wrapped in a trainable that checkpoints through Tune. A deterministic error
(a bad value, a bug: ValueError, TypeError, …) is reported as the trial's `error` instead of
raised, so Tune never retries it; a crash (a lost node, an OOM) is retried from the last
checkpoint up to `max_failures` times. A checkpoint whose `state.pt` cannot be read (truncated
by a killed driver, damaged) is set aside, kept and named, and the trial starts again from
scratch. Ctrl-C and SIGTERM stop the study the way Tune stops it on SIGINT: the experiment state
is saved, trials in flight stay resumable.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray import tune

from svdablate.errors import StudyStopped
from svdablate.schema import ResultKey, TrialResult, TrialStatus
from svdablate.spec.config import Resources, TrialConfig
from svdablate.store.health import DiskFull, is_disk_full
from svdablate.study.manifest import StudyManifest
from svdablate.training.faults import FAULTS_ENV

if TYPE_CHECKING:  # the driver's side only: a trial's worker never imports MLflow or rich
    from svdablate.runtime.progress import RichProgress
    from svdablate.store.writer import MLflowRecorder

#: Errors that would happen again on a retry: reported as the trial's failure, never retried.
DETERMINISTIC_ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    LookupError,
    AttributeError,
    NotImplementedError,
    ImportError,
)


def _trainable(
    config: dict[str, Any],
    done: frozenset[str] = frozenset(),
    resources: dict | None = None,
    faults: str | None = None,
) -> None:
    """Ray Tune trainable around `train_trial`: checkpoints by the trial's policy, resumes.
    `faults`: the driver's $SVDABLATE_TEST_FAULTS (the tests' fault injection), set here for
    `train_trial` (a reused worker drops the last trial's)."""
    import torch

    from svdablate.training.checkpoint_files import UnreadableCheckpoint, set_aside
    from svdablate.training.loop import save_state, train_trial

    if faults:
        os.environ[FAULTS_ENV] = faults
    else:
        os.environ.pop(FAULTS_ENV, None)
    trial = TrialConfig.model_validate(config["trial"])
    if trial.trial_id in done:
        return  # finished before a driver restart: never train it twice
    request = Resources.model_validate(resources or {})
    torch.set_num_threads(max(1, int(request.cpus_per_trial)))
    fraction = request.gpus_per_trial if 0 < request.gpus_per_trial < 1 else None
    last_checkpoint = time.monotonic()

    def report(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        nonlocal last_checkpoint
        due = checkpoint_due(trial, metrics, time.monotonic() - last_checkpoint)
        if state is None or not due:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            save_state(state, folder)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        last_checkpoint = time.monotonic()

    checkpoint = tune.get_checkpoint()
    try:
        if checkpoint is not None:
            try:
                with checkpoint.as_directory() as folder:
                    train_trial(trial, report, folder, gpu_fraction=fraction)
                return
            except UnreadableCheckpoint as bad:
                kept = set_aside(checkpoint.filesystem, checkpoint.path)
                tune.report(TrialResult(set_aside=f"{kept} ({bad.reason})").as_report())
        train_trial(trial, report, gpu_fraction=fraction)
    except DETERMINISTIC_ERRORS as exc:
        tune.report(TrialResult(error=f"{type(exc).__name__}: {exc}").as_report())


def checkpoint_due(trial: TrialConfig, metrics: dict[str, Any], since_last_s: float) -> bool:
    """The checkpoint policy: after the last epoch always, else once `checkpoint_every_s` has
    passed since the previous checkpoint (0: every epoch). A crash or an interrupt loses at most
    that much training; fewer checkpoints cost less (a checkpoint is a state file Tune copies)."""
    if int(metrics.get(ResultKey.EPOCH, -1)) + 1 >= trial.epochs:
        return True
    return since_last_s >= trial.checkpoint_every_s


@dataclass
class TuneOutcome:
    """What one Tune run did: errored trials, and the signal that interrupted it (if any)."""

    errored: int = 0
    interrupted_by: str | None = None
    seconds: float = 0.0


class _Interrupts:
    """Ctrl-C and SIGTERM end `Tuner.fit` the way Tune ends it on SIGINT (state saved, trials in
    flight resumable), and remember which signal came; a second Ctrl-C aborts at once."""

    def __init__(self) -> None:
        self.received: str | None = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name
        if not callable(signal.getsignal(signal.SIGUSR1)):  # Tune's loop has not begun yet
            raise KeyboardInterrupt
        signal.raise_signal(signal.SIGUSR1)  # Tune's own "stop and save" signal

    @contextlib.contextmanager
    def installed(self) -> Iterator[_Interrupts]:
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        old_env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # ours forwards to Tune's SIGUSR1
        for s in previous:
            signal.signal(s, self._handler)
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            if old_env is None:
                os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
            else:
                os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = old_env


def run_trials(
    manifest: StudyManifest,
    configs: list[TrialConfig],
    recorder: MLflowRecorder,
    *,
    restore: bool = False,
    progress: RichProgress | None = None,
    log: tune.Callback | None = None,
    keep_checkpoints: bool = True,
) -> TuneOutcome:
    """Run (or restore) the study's current Tune experiment over `configs`; `progress` draws a
    bar on a terminal, `log` writes plain lines elsewhere (`log_lines.TrialLog`)."""
    from svdablate.runtime.progress import ProgressCallback

    resources = manifest.resources
    done = frozenset(recorder.done_trials())
    todo = [c for c in configs if c.trial_id not in done]
    outcome = TuneOutcome()
    if not todo:
        return outcome
    trainable = tune.with_resources(
        tune.with_parameters(
            _trainable,
            done=done,
            resources=resources.model_dump(),
            faults=os.environ.get(FAULTS_ENV),
        ),
        {"cpu": resources.cpus_per_trial, "gpu": resources.gpus_per_trial},
    )
    callbacks: list[tune.Callback] = [recorder, ProgressCallback(progress)]
    # A trial's exception is recorded on its run (`svdablate.error`, `error.txt`); Ray would also
    # print it as an "Unhandled error" traceback when a stopped study drops its result.
    os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
    # A crashed trial's traceback goes to its MLflow run (`error.txt`), not the terminal.
    logging.getLogger("ray.tune.execution.tune_controller").setLevel(logging.CRITICAL)
    if log is not None:
        callbacks.append(log)
    path = manifest.tune_path
    began = time.perf_counter()
    interrupts = _Interrupts()
    with interrupts.installed(), progress.live() if progress else contextlib.nullcontext():
        param_space = {"trial": tune.grid_search([c.model_dump(mode="json") for c in todo])}
        if restore and tune.Tuner.can_restore(path):
            # The grid again: where Tune cannot read the old run's state (a driver killed while
            # writing it), it logs "Restarting experiment" and expands `param_space` afresh;
            # without it, every new trial's config was empty (a KeyError in `_trial_name`).
            tuner = tune.Tuner.restore(
                path,
                trainable=trainable,
                param_space=param_space,
                resume_unfinished=True,
                resume_errored=True,
            )
            # Tuner.restore unpickles the old driver's callbacks; give it ones bound to this one.
            tuner._local_tuner.get_run_config().callbacks = callbacks
        else:
            tuner = tune.Tuner(
                trainable,
                param_space=param_space,
                tune_config=tune.TuneConfig(
                    max_concurrent_trials=resources.max_concurrent,
                    reuse_actors=True,  # a process per slot imports torch once, not per trial
                    trial_name_creator=_trial_name,
                    trial_dirname_creator=_trial_name,
                ),
                run_config=tune.RunConfig(
                    name=manifest.tune_experiments[-1],
                    storage_path=manifest.tune_storage,
                    failure_config=tune.FailureConfig(max_failures=resources.max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                    callbacks=callbacks,
                    verbose=0,
                ),
            )
        try:
            results = tuner.fit()
        except Exception as exc:  # Tune wraps a callback's exception in a TuneError
            full = disk_full_in(exc)
            if full is None:
                raise
            raise stop_on_full_disk(manifest, recorder, full, len(todo)) from None
    outcome.errored = sum(1 for r in results if r.error is not None)
    outcome.interrupted_by = interrupts.received
    outcome.seconds = round(time.perf_counter() - began, 1)
    if not keep_checkpoints:
        finished = {t for t, s in recorder.statuses().items() if s != TrialStatus.RUNNING}
        prune_checkpoints(
            r.path for r in results if r.error is None and Path(str(r.path)).name in finished
        )
    return outcome


def disk_full_in(exc: BaseException) -> BaseException | None:
    """The full-disk error in an exception's chain (causes and contexts), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, DiskFull) or is_disk_full(current):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def stop_on_full_disk(
    manifest: StudyManifest, recorder: MLflowRecorder, exc: BaseException, trials_left: int
) -> StudyStopped:
    """The one line of a study whose disk filled: which path, how much it needs, and `resume`;
    the study is marked interrupted and its unsent writes stay in its spool."""
    from svdablate.store.health import space_needed_line
    from svdablate.store.spool import spool_path

    storage = Path(manifest.tune_storage)
    where = getattr(exc, "path", None) or getattr(exc, "filename", None) or storage
    marked = recorder.stop_on_full_disk()
    spool = spool_path(manifest.results_dir, manifest.parent_run_id)
    unsent = f", its unsent records wait in {spool}" if spool.exists() else ""
    return StudyStopped(
        f"no space left on the device of {where} ({space_needed_line(storage, trials_left)}): "
        f"the study stopped{'' if marked else ' (its store is on that disk too)'}{unsent}; "
        f"free space, then `svdablate resume {manifest.parent_run_id} --results-dir "
        f"{manifest.results_dir}`"
    )


def _trial_name(trial: Any) -> str:
    return TrialConfig.model_validate(trial.config["trial"]).trial_id


def prune_checkpoints(trial_paths: Iterable[Any]) -> int:
    """Delete the checkpoints of finished trials (local storage); returns how many went."""
    removed = 0
    for path in trial_paths:
        if not path or "://" in str(path):
            continue  # remote storage: its own lifecycle rules apply
        for checkpoint in Path(path).glob("checkpoint_*"):
            shutil.rmtree(checkpoint, ignore_errors=True)
            removed += 1
    return removed
