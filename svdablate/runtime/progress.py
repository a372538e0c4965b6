"""The progress display of `run` and `resume`: one bar over trials with their status counts, and
the MLflow writes that wait while the store does not answer."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from ray import tune
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from svdablate.schema import Metric, TrialStatus

SHOWN = (TrialStatus.RUNNING, TrialStatus.FINISHED, TrialStatus.FAILED, TrialStatus.DIVERGED)


class PendingWritesColumn(ProgressColumn):
    """'N MLflow writes pending' while the store does not take them (read at every redraw)."""

    def __init__(self, pending: Callable[[], int]) -> None:
        super().__init__()
        self.pending = pending

    def render(self, task: Any) -> Text:
        count = self.pending()
        return Text(f"{count} MLflow writes pending" if count else "", style="yellow")


class RichProgress:
    """One rich progress bar over trials: running/finished/failed/diverged counts and an ETA."""

    def __init__(
        self,
        total: int,
        description: str,
        already_done: int = 0,
        console: Console | None = None,
        pending_writes: Callable[[], int] | None = None,
    ) -> None:
        columns: list[ProgressColumn] = [
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        ]
        if pending_writes is not None:
            columns.append(PendingWritesColumn(pending_writes))
        self.progress = Progress(
            *columns,
            console=console,
            transient=False,
        )
        self.already_done = already_done
        self.notes = ""
        self.counts: Counter[str] = Counter()
        self.task = self.progress.add_task(description, total=total, counts="", completed=0)
        self.progress.update(self.task, completed=already_done)

    def live(self) -> contextlib.AbstractContextManager[Any]:
        """Draw the bar while the block runs."""
        return self.progress

    def set(self, statuses: dict[str, str]) -> None:
        """Redraw from trial id → status (trials never seen count as pending)."""
        self.counts = Counter(statuses.values())
        done = sum(self.counts[s] for s in (*TrialStatus.DONE, TrialStatus.FAILED))
        text = " ".join(f"{s}={self.counts[s]}" for s in SHOWN)
        self.progress.update(
            self.task, completed=self.already_done + done, counts=text + self.notes
        )


class ProgressCallback(tune.Callback):
    """Feeds trial state changes to the progress bar; pickles to a no-op (Tune saves it)."""

    def __init__(self, progress: RichProgress | None) -> None:
        self.progress = progress
        self.status: dict[str, str] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.progress, self.status = None, {}

    def _set(self, trial: Any, status: str) -> None:
        self.status[trial.trial_id] = status
        if self.progress is not None:
            self.progress.set(self.status)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._set(trial, TrialStatus.RUNNING)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result.get("error"):
            self._set(trial, TrialStatus.FAILED)
        elif result.get(Metric.DIVERGED):
            self._set(trial, TrialStatus.DIVERGED)

    def on_trial_complete(self, iteration, trials, trial, **info):
        if self.status.get(trial.trial_id) == TrialStatus.RUNNING:
            self._set(trial, TrialStatus.FINISHED)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._set(trial, TrialStatus.FAILED)


@contextlib.contextmanager
def nothing() -> Iterator[None]:
    yield
