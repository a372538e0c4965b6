"""Why a trial failed, from Ray Tune's record of it: the exception's type and message (the
child run's `svdablate.error` tag) and the last lines of its traceback (`error.txt`)."""

from __future__ import annotations

from typing import Any

ERROR_ARTIFACT = "error.txt"
ERROR_TAG_LIMIT = 500  # characters of the tag
TRACE_LINES = 40  # lines of the traceback kept in the artifact


def describe(error: BaseException | str | None) -> tuple[str, str]:
    """(type: message, traceback tail) of what Tune recorded for a failed trial.

    A `RayTaskError` wraps the trainable's exception (its `cause`) and carries the remote
    traceback in its text; a `RayActorError` (the trial's process died) has only its message.
    """
    if error is None or error == "":
        return "", ""
    if isinstance(error, str):
        return _last_exception_line(error), _tail(error)
    cause = getattr(error, "cause", None)
    shown = cause if isinstance(cause, BaseException) else error
    message = str(shown).strip().splitlines()
    summary = f"{type(shown).__name__}: {message[0]}" if message else type(shown).__name__
    return summary, _tail(str(error))


def trial_error(trial: Any) -> tuple[str, str]:
    """`describe` of the error a Tune trial has just failed with (read from its error files)."""
    try:
        error = trial.get_pickled_error() or trial.get_error()
    except Exception as exc:  # an unpicklable or unreadable record: say that, not nothing
        return f"{type(exc).__name__} reading the trial's error: {exc}", ""
    return describe(error)


def _tail(text: str) -> str:
    return "\n".join(text.strip().splitlines()[-TRACE_LINES:]) + "\n"


def _last_exception_line(text: str) -> str:
    """The `Type: message` line of a traceback's text (its last line that names an error)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if head.replace(".", "").isidentifier() and (head.endswith(("Error", "Exception"))):
            return line
    return lines[-1] if lines else ""
