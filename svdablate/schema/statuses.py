"""Status words: a child run's (`TrialStatus`), a parent run's (`StudyStatus`) and MLflow's own
(`RunStatus`)."""

from __future__ import annotations

from typing import Final


class TrialStatus:
    """Values of `Tag.STATUS` on a child run. A diverged trial is a result, not a failure."""

    RUNNING = "running"
    FINISHED = "finished"
    DIVERGED = "diverged"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # its study was stopped (signal, killed driver): resumable
    ALL = (FINISHED, DIVERGED, FAILED, RUNNING, INTERRUPTED)
    DONE = (FINISHED, DIVERGED)  # never trained again by resume or extend
    PENDING = "pending"  # no child run yet: counted, never a tag value


class StudyStatus:
    """Values of `Tag.STATUS` on a parent run."""

    RUNNING = "running"
    FINISHED = "finished"  # every trial finished or diverged
    FAILED = "failed"  # some trial failed after its retries
    INTERRUPTED = "interrupted"  # Ctrl-C / SIGTERM: resumable
    ALL = (RUNNING, FINISHED, FAILED, INTERRUPTED)


class RunStatus:
    """MLflow's own run statuses (`RunInfo.status`), as the writer sets and the report reads."""

    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"
    #: A parent run's MLflow status for each study status.
    OF_STUDY: Final = {
        StudyStatus.RUNNING: RUNNING,
        StudyStatus.FINISHED: FINISHED,
        StudyStatus.FAILED: FAILED,
        StudyStatus.INTERRUPTED: KILLED,
    }
