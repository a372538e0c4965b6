"""Plain, timestamped, flushed progress lines for a study whose output is not a terminal.

A study sent to a file (`> study.log`, nohup, sbatch, `ray job logs`) is read there while it runs,
hours later: Python block-buffers a redirected stdout and a rich bar draws only on a terminal.
Each line here is written and flushed at once: the study (parent run, tracking URI), each trial's
start, its epochs (at most one line per trial every `epoch_every_s`, and its first), its end,
a crash Tune retries, a failure, and the summary.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, TextIO

from ray import tune

from svdablate.schema import Metric, TrialStatus

#: Seconds between two epoch lines of one trial: a 40-epoch CIFAR trial logs every epoch, a
#: demo trial of one-second epochs its first and its end.
EPOCH_EVERY_S = 60.0


def stamped(text: str) -> str:
    """`text` after the local time with its UTC offset (2026-12-05T21:11:03+00:00)."""
    return f"{datetime.now().astimezone().isoformat(timespec='seconds')} {text}"


def write_line(stream: TextIO, text: str) -> None:
    """One timestamped line on `stream`, flushed."""
    stream.write(stamped(text) + "\n")
    stream.flush()


def _percent(value: Any) -> str:
    return f"{value:.2f}%" if isinstance(value, int | float) else "n/a"


class TrialLog(tune.Callback):
    """Tune callback writing one line per trial event; pickles to a no-op (Tune saves it)."""

    def __init__(
        self,
        stream: TextIO,
        names: dict[str, str],
        epochs: dict[str, int],
        *,
        total: int,
        already_done: int = 0,
        epoch_every_s: float = EPOCH_EVERY_S,
    ) -> None:
        self.stream: TextIO | None = stream
        self.names = names  # trial id → run name
        self.epochs = epochs  # trial id → epochs it trains
        self.total = total
        self.done = already_done
        self.epoch_every_s = epoch_every_s
        self.last_line: dict[str, float] = {}  # trial id → when its last epoch line was written
        self.last_result: dict[str, dict[str, Any]] = {}
        self.ended: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.stream = None

    def line(self, text: str) -> None:
        if self.stream is not None:
            write_line(self.stream, text)

    def _name(self, trial: Any) -> str:
        trial_id = _trial_id(trial)
        return f"trial {self.names.get(trial_id, trial_id)}"

    def _end(self, trial: Any, text: str) -> None:
        trial_id = _trial_id(trial)
        if trial_id in self.ended:
            return
        self.ended.add(trial_id)
        self.done += 1
        self.line(f"{self._name(trial)} {text} [{self.done}/{self.total} done]")

    def on_trial_start(self, iteration, trials, trial, **info):
        self.ended.discard(_trial_id(trial))
        self.line(f"{self._name(trial)} started")

    def on_trial_recover(self, iteration, trials, trial, **info):
        error = _last_line(getattr(trial, "error_msg", "") or "")
        self.line(f"{self._name(trial)} crashed, retried from its last checkpoint: {error}")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        trial_id = _trial_id(trial)
        if result.get("error"):
            self._end(trial, f"failed: {result['error']}")
            return
        if "epoch" not in result:
            return
        self.last_result[trial_id] = result
        epoch = int(result["epoch"]) + 1
        total = self.epochs.get(trial_id, 0)
        now = time.monotonic()
        since = now - self.last_line.get(trial_id, -float("inf"))
        if epoch >= total or since < self.epoch_every_s:
            return  # the last epoch is the end's line
        self.last_line[trial_id] = now
        error, best = result.get(Metric.VAL_ERR), result.get(Metric.BEST_VAL_ERR)
        self.line(
            f"{self._name(trial)} epoch {epoch}/{total}: val_err {_percent(error)}, best "
            f"{_percent(best)}, {result.get(Metric.EPOCH_SECONDS, 0):.1f} s/epoch"
        )

    def on_trial_complete(self, iteration, trials, trial, **info):
        trial_id = _trial_id(trial)
        result = self.last_result.get(trial_id, {})
        epoch = int(result.get("epoch", -1)) + 1
        total = self.epochs.get(trial_id, 0)
        best = _percent(result.get(Metric.BEST_VAL_ERR))
        if result.get(Metric.DIVERGED):
            self._end(trial, f"{TrialStatus.DIVERGED} at epoch {epoch}/{total}")
        elif epoch >= total:
            self._end(trial, f"{TrialStatus.FINISHED}: best val_err {best} in {total} epochs")
        elif trial_id not in self.ended:
            self.line(f"{self._name(trial)} stopped at epoch {epoch}/{total} (resume continues it)")

    def on_trial_error(self, iteration, trials, trial, **info):
        error = _last_line(getattr(trial, "error_msg", "") or "")
        self._end(trial, f"{TrialStatus.FAILED}: {error}")


def _trial_id(trial: Any) -> str:
    """The study's trial id (Tune names each trial after it)."""
    from svdablate.spec.config import TrialConfig

    return TrialConfig.model_validate(trial.config["trial"]).trial_id


def _last_line(text: str) -> str:
    """The last non-empty line of a traceback (the exception), else the text."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"
