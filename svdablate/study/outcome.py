"""What a `run`, `resume` or `extend` did (`StudyOutcome`), where a study stands (`StudyProgress`),
and the exit codes they mean (README, "Exit codes")."""

from __future__ import annotations

from dataclasses import dataclass

from svdablate.errors import ExitCode
from svdablate.schema import StudyStatus


@dataclass
class StudyOutcome:
    """What a `run`, `resume` or `extend` did, and the exit code it means."""

    name: str
    parent_run_id: str
    results_dir: str
    trials: int = 0
    finished: int = 0
    diverged: int = 0
    failed: int = 0
    unfinished: int = 0  # running when interrupted, or never started
    skipped: int = 0  # already finished before this invocation
    interrupted_by: str | None = None  # "SIGINT" or "SIGTERM"
    seconds: float = 0.0
    mlflow_write_seconds: float = 0.0
    epochs_logged: int = 0
    unsent_writes: int = 0  # MLflow writes the store never took: they wait in `spool`
    spool: str = ""

    @property
    def exit_code(self) -> int:
        """0: every trial finished or diverged; 1: a trial failed or the study was interrupted;
        130: interrupted by Ctrl-C."""
        if self.interrupted_by == "SIGINT":
            return ExitCode.CTRL_C
        if self.failed or self.unfinished or self.interrupted_by or self.unsent_writes:
            return ExitCode.FAILED
        return ExitCode.OK

    @property
    def resume_command(self) -> str:
        return f"svdablate resume {self.parent_run_id} --results-dir {self.results_dir}"

    @property
    def unsent_line(self) -> str:
        """One line when MLflow writes are left in the spool ('' when none are)."""
        if not self.unsent_writes:
            return ""
        return (
            f"the MLflow store did not answer: {self.unsent_writes} writes wait in {self.spool}; "
            f"send them with `{self.resume_command}`"
        )


@dataclass(frozen=True)
class StudyProgress:
    """Where a study stands, read from its MLflow runs (`Study.status`, `svdablate status`)."""

    study: str
    parent_run_id: str
    study_status: str  # `schema.StudyStatus`
    trials: int
    pending: int  # no child run yet
    finished: int
    diverged: int
    failed: int
    running: int
    interrupted: int  # stopped with their study (a signal, a killed driver): resumable
    epochs_logged: int

    @property
    def exit_code(self) -> int:
        """1 when a trial failed or the study failed or was interrupted, else 0."""
        bad = self.failed or self.study_status in (StudyStatus.INTERRUPTED, StudyStatus.FAILED)
        return ExitCode.FAILED if bad else ExitCode.OK
