"""Bad user input and the exit codes of `run`, `resume`, `status` and `report`."""

from enum import IntEnum


class ExitCode(IntEnum):
    """What a command's exit status means (README, "Exit codes")."""

    OK = 0  # every trial finished (diverged trials are results, not failures)
    FAILED = 1  # a trial failed after its retries, or the study was interrupted
    USAGE = 2  # bad input: nothing started
    CTRL_C = 130  # interrupted by Ctrl-C; resumable


class UserError(Exception):
    """A mistake the user can fix; the message (one line) names the fix. Exit code 2."""

    exit_code = ExitCode.USAGE


class StudyStopped(UserError):
    """A started study that had to stop (its disk filled): one line naming the cause and the
    `resume` that continues it. Exit code 1, as for an interrupted study."""

    exit_code = ExitCode.FAILED
