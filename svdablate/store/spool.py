"""The driver's MLflow writes, off the Tune loop: a spool file as the queue, one writer thread.

`MLflowRecorder` (the Tune callback) only appends an operation to the study's spool,
`studies/<parent-run-id>.spool.jsonl` beside its manifest, and returns: a local append, never the
network. A writer thread applies the spool to the store in order, with backoff (0.5 s doubling to
5 s) while the store does not answer, and empties the file whenever it has caught up. So an
outage of the tracking server stalls nothing: trials keep running, the spool grows, and the
thread drains it, in order, when the server answers again: a trial's consecutive `log`
operations go as one `log_batch`, so a backlog takes a few requests, not one per epoch. What is
left at the end stays in the file; the next `resume` replays it before anything else.

Nothing is written twice. Operations name trials, not run ids: a trial's child run is created
once (an operation whose earlier attempt failed, or that an earlier driver left, looks the run up
before it creates one). Tags and statuses are idempotent, and so is sending a metric batch again:
each metric keeps the timestamp it was given when queued, and MLflow's SQL store keeps one row per
(key, value, timestamp, step), ignoring a row it already holds.
Over HTTP the thread makes MLflow's client fail fast (no retries of its own, a 15 s timeout), so
a dead server turns into backoff here, not minutes inside `requests`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT, MLFLOW_RUN_NAME

from svdablate.errors import UserError
from svdablate.schema import (
    CreateRun,
    LogRun,
    LogText,
    RunStatus,
    SetStudyStatus,
    SpoolOp,
    StudyStatus,
    Tag,
    TerminateRun,
    TrialStatus,
    parse_spool_record,
    search_child_runs,
    spool_record,
)
from svdablate.store.health import DiskFull, is_disk_full
from svdablate.store.runs import mark_children_interrupted
from svdablate.study.manifest import STUDIES_DIR

SPOOL_SUFFIX = ".spool.jsonl"
RESERVE_SUFFIX = ".reserve"  # beside the spool: space kept for a study's last writes
RESERVE_BYTES = 1 << 20
PARAM_BATCH = 100  # MLflow's limit of params per log_batch
BATCH_METRICS, BATCH_TAGS = 900, 100  # within its limits of 100 tags and 1000 values in all
MERGED_LOGS = 64  # most spooled `log` operations of one trial sent as one log_batch
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 5.0)  # waits between attempts while the store does not answer
JOIN_S = 20.0  # longest wait for an attempt in flight when the writer stops (> the HTTP timeout)
FAST_FAIL_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}
PERMANENT_HTTP = (400, 404)  # a bad value or a missing run: sending it again cannot help
WRITER_THREAD = "mlflow-writer"
log = logging.getLogger(__name__)


class _HandledByTheWriter(logging.Filter):
    """Drops what MLflow's SQL store logs from the writer thread: a traceback for each write
    that failed (a full disk, a locked or vanished file), which the thread retries, or reports
    in one line itself; the user saw 160 lines of it before a full disk's one."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.threadName != WRITER_THREAD


logging.getLogger("mlflow.store.db.utils").addFilter(_HandledByTheWriter())


def spool_path(results_dir: str | os.PathLike, parent_run_id: str) -> Path:
    """`<results-dir>/studies/<parent-run-id>.spool.jsonl`: the study's unsent MLflow writes."""
    return Path(results_dir) / STUDIES_DIR / f"{parent_run_id}{SPOOL_SUFFIX}"


def apply_parent_status(client: MlflowClient, parent_run_id: str, status: str) -> None:
    """Mark the parent run running, finished, failed or interrupted (MLflow's KILLED; its child
    runs still running are marked interrupted too)."""
    if status == StudyStatus.RUNNING:
        client.update_run(parent_run_id, status=RunStatus.OF_STUDY[status])
    else:
        client.set_terminated(parent_run_id, RunStatus.OF_STUDY[status])
    if status == StudyStatus.INTERRUPTED:  # its trials in flight with it
        mark_children_interrupted(client, parent_run_id)
    client.set_tag(parent_run_id, Tag.STATUS, status)


def merge_logs(raws: list[bytes]) -> tuple[SpoolOp, int]:
    """The first spooled operation, with the `log` operations of the same trial that follow it
    merged in (one `log_batch` within MLflow's limits); and how many lines it took.

    A backlog (a store that was away, a slow server) then drains in a few requests, not one per
    epoch. Metrics keep their own timestamps and steps; a later tag value wins, as it would.
    """
    op = parse_spool_record(json.loads(raws[0]))
    if not isinstance(op, LogRun):
        return op, 1
    metrics, tags = list(op.metrics), dict(op.tags)
    used = 1
    for raw in raws[1:]:
        try:
            following = parse_spool_record(json.loads(raw))
        except ValueError:
            break
        if not isinstance(following, LogRun) or following.trial != op.trial:
            break
        if (
            len(metrics) + len(following.metrics) > BATCH_METRICS
            or len(tags.keys() | following.tags.keys()) > BATCH_TAGS
        ):
            break
        metrics += following.metrics
        tags.update(following.tags)
        used += 1
    return LogRun(op.trial, metrics, tags), used


def is_permanent(error: Exception) -> bool:
    """An error that sending the same operation again cannot cure: a value or a run the store
    refuses, or a malformed operation."""
    if isinstance(error, MlflowException):
        return error.get_http_status_code() in PERMANENT_HTTP
    return isinstance(error, ValueError | KeyError | TypeError)


class SpooledWriter:
    """The study's MLflow writes: `submit` appends to the spool; a thread applies it in order.

    Operations are `schema`'s typed records, one JSON object a line (`spool_record`):
    `CreateRun` (a trial's child run: tags, params), `LogRun` (metrics as [key, value,
    timestamp, step] and tags), `TerminateRun` (a child run's MLflow status), `LogText` (an
    artifact file of a child run, e.g. a failed trial's traceback) and `SetStudyStatus` (the
    study's status).
    """

    def __init__(self, tracking_uri: str, parent_run_id: str, spool: str | os.PathLike) -> None:
        self.tracking_uri = tracking_uri
        self.parent_run_id = parent_run_id
        self.spool = Path(spool)
        self.client = MlflowClient(tracking_uri)
        self.write_seconds = 0.0  # time the thread spent in MLflow calls
        self.dropped = 0  # operations the store refused for good (logged one line each)
        self.last_error = ""
        self._cond = threading.Condition()
        self._lines = 0  # operations in the spool file
        self._applied = 0  # of which applied (from the top)
        self._offset = 0  # bytes of the file applied
        self._inherited = 0  # lines an earlier driver left: each may already be in the store
        self._uncertain: set[int] = set()  # lines whose last attempt failed
        self._failing_since: float | None = None
        self._stop = False
        self._runs: dict[str, str] = {}  # trial id → child run id
        self._experiment_id = ""
        self._thread: threading.Thread | None = None
        self._saved_env: dict[str, str | None] = {}
        self._writer: Any = None
        self._reader: Any = None

    # ---- life --------------------------------------------------------------------------------
    def start(self, runs: dict[str, str]) -> SpooledWriter:
        """Own the spool (one driver per study) and start the thread; `runs`: trial → run id."""
        self._runs = dict(runs)
        self._experiment_id = self.client.get_run(self.parent_run_id).info.experiment_id
        self.spool.parent.mkdir(parents=True, exist_ok=True)
        self._writer = open(self.spool, "ab")  # noqa: SIM115 (held for the writer's life)
        try:
            fcntl.flock(self._writer, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._writer.close()
            raise UserError(
                f"another process is running this study (it holds {self.spool}): wait for it, "
                "or stop it before resuming"
            ) from None
        self._reader = open(self.spool, "rb")  # noqa: SIM115
        self._hold_reserve()
        self._lines = self._inherited = self._complete_lines()
        if self.tracking_uri.startswith(("http://", "https://")):
            self._saved_env = {k: os.environ.get(k) for k in FAST_FAIL_ENV}
            os.environ.update(FAST_FAIL_ENV)
        self._thread = threading.Thread(target=self._loop, name=WRITER_THREAD, daemon=True)
        self._thread.start()
        return self

    @property
    def reserve(self) -> Path:
        return self.spool.with_suffix(RESERVE_SUFFIX)

    def _hold_reserve(self) -> None:
        """Keep RESERVE_BYTES of the disk for the study's last writes (the parent's status)
        should the disk fill; a disk too full for it is found when the study starts."""
        with contextlib.suppress(OSError), open(self.reserve, "wb") as handle:
            handle.write(b"\0" * RESERVE_BYTES)

    def _release_reserve(self) -> None:
        with contextlib.suppress(OSError):
            self.reserve.unlink(missing_ok=True)

    def abandon(self) -> None:
        """The disk is full: stop the thread at once and give the reserve back, so that the
        parent's status can still be written; what is unsent stays in the spool."""
        self._release_reserve()
        self.close(0)

    def _complete_lines(self) -> int:
        """Lines an earlier driver left; a torn last line (it died mid-append) is never read,
        and goes when the file is emptied."""
        lines = sum(1 for raw in self._reader if raw.endswith(b"\n"))
        self._reader.seek(0)
        return lines

    def drain(self, timeout: float) -> int:
        """Wait until every operation is applied, or `timeout` seconds; the number still pending."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending() and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            return self._pending()

    def close(self, drain_seconds: float) -> int:
        """Drain for up to `drain_seconds`, stop the thread; the number left in the spool (the
        file is removed when none is)."""
        self.drain(drain_seconds)
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(JOIN_S)
        with self._cond:
            left = self._pending()
            if not left:
                self.spool.unlink(missing_ok=True)
            if self._thread is None or not self._thread.is_alive():  # else it still needs them
                for handle in (self._reader, self._writer):
                    if handle is not None:
                        with contextlib.suppress(OSError):  # a torn last line is never read
                            handle.close()
            self._release_reserve()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = {}
        return left

    # ---- the callback's side ---------------------------------------------------------------
    def submit(self, op: SpoolOp) -> None:
        """Append one operation to the spool (a local write: never waits for the store)."""
        line = (json.dumps(spool_record(op), default=str) + "\n").encode()
        with self._cond:
            try:
                self._writer.write(line)
                self._writer.flush()
            except OSError as exc:
                if is_disk_full(exc):
                    raise DiskFull(self.spool, str(exc)) from None
                raise
            self._lines += 1
            self._cond.notify_all()

    def pending(self) -> int:
        """Operations not yet in the store."""
        with self._cond:
            return self._pending()

    def behind(self) -> int:
        """Operations waiting while the store does not answer (0 while it keeps up)."""
        with self._cond:
            return self._pending() if self._failing_since is not None else 0

    def _pending(self) -> int:
        return self._lines - self._applied

    # ---- the thread ------------------------------------------------------------------------
    def _loop(self) -> None:
        failures = 0
        merge = True  # off for one attempt after the store refused a merged batch for good
        while True:
            with self._cond:
                while not self._pending() and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                index = self._applied
                self._reader.seek(self._offset)
                lines = min(self._pending(), MERGED_LOGS if merge else 1)
                raws = [self._reader.readline() for _ in range(lines)]
            began = time.perf_counter()
            used = 1
            try:
                op, used = merge_logs(raws)
                self._apply(op, uncertain=self._is_uncertain(index))
            except Exception as exc:  # the store's or the network's: retried, or dropped
                self.write_seconds += time.perf_counter() - began
                self.last_error = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
                if not is_permanent(exc):
                    self._uncertain.add(index)
                    self._back_off(BACKOFF_S[min(failures, len(BACKOFF_S) - 1)])
                    failures += 1
                    continue
                if used > 1:  # which of the merged operations? send them one at a time
                    merge = False
                    continue
                self.dropped += 1
                log.warning("MLflow refused a write for good, dropped: %s", self.last_error)
            else:
                self.write_seconds += time.perf_counter() - began
            failures = 0
            merge = True
            self._advance(sum(len(raw) for raw in raws[:used]), used)

    def _back_off(self, seconds: float) -> None:
        """Wait `seconds` before the next attempt (new submissions do not cut it short)."""
        until = time.monotonic() + seconds
        with self._cond:
            self._failing_since = self._failing_since or time.monotonic()
            while not self._stop and (left := until - time.monotonic()) > 0:
                self._cond.wait(left)

    def _is_uncertain(self, index: int) -> bool:
        return index < self._inherited or index in self._uncertain

    def _advance(self, size: int, lines: int) -> None:
        with self._cond:
            self._offset += size
            self._applied += lines
            self._failing_since = None
            if not self._pending():  # caught up: start the file afresh
                self._writer.truncate(0)
                self._lines = self._applied = self._offset = self._inherited = 0
                self._uncertain.clear()
            self._cond.notify_all()

    # ---- one operation ---------------------------------------------------------------------
    def _apply(self, op: SpoolOp, *, uncertain: bool) -> None:
        if isinstance(op, SetStudyStatus):
            apply_parent_status(self.client, self.parent_run_id, op.status)
        elif isinstance(op, CreateRun):
            self._create(op, uncertain=uncertain)
        elif isinstance(op, LogRun):
            self._log(op)
        elif isinstance(op, TerminateRun):
            self.client.set_terminated(self._run_of(op.trial), op.status)
        elif isinstance(op, LogText):
            self.client.log_text(self._run_of(op.trial), op.text, op.file)

    def _run_of(self, trial_id: str) -> str:
        if trial_id not in self._runs:
            found = self._find_run(trial_id)
            if found is None:
                raise MlflowException(
                    f"no child run of trial {trial_id}", error_code="RESOURCE_DOES_NOT_EXIST"
                )
            self._runs[trial_id] = found
        return self._runs[trial_id]

    def _find_run(self, trial_id: str) -> str | None:
        found = search_child_runs(
            self.client, self._experiment_id, self.parent_run_id, trial_id=trial_id
        )
        return found[0].info.run_id if found else None

    def _create(self, op: CreateRun, *, uncertain: bool) -> None:
        trial_id = op.trial
        run_id = self._runs.get(trial_id) or (self._find_run(trial_id) if uncertain else None)
        created = run_id is None
        if created:
            name = op.tags.get(MLFLOW_RUN_NAME, trial_id)
            run_id = self.client.create_run(
                self._experiment_id, tags=op.tags, run_name=name
            ).info.run_id
        self._runs[trial_id] = run_id
        params = [Param(k, v) for k, v in op.params.items()]
        for i in range(0, len(params), PARAM_BATCH):
            self.client.log_batch(run_id, params=params[i : i + PARAM_BATCH])
        if op.dataset and created:  # a creation replayed onto an existing run did it
            dataset = Dataset(source_type="local", **op.dataset)
            context = InputTag(MLFLOW_DATASET_CONTEXT, "train+val")
            self.client.log_inputs(run_id, [DatasetInput(dataset, tags=[context])])

    def _log(self, op: LogRun) -> None:
        metrics = [Metric(key, value, ts, step) for key, value, ts, step in op.metrics]
        tags = [RunTag(k, v) for k, v in op.tags.items()]
        run_id = self._run_of(op.trial)
        self.client.log_batch(run_id, metrics=metrics, tags=tags)
        if op.tags.get(Tag.STATUS) == TrialStatus.RUNNING:  # (re)started: no longer KILLED
            self.client.update_run(run_id, status=RunStatus.RUNNING)
