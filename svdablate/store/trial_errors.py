"""Why a trial failed, from Ray Tune's record of it: the exception's type and message (the
child run's `svdablate.error` tag) and the last lines of its traceback (`error.txt`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ERROR_ARTIFACT = "error.txt"
ERROR_TAG_LIMIT = 500  # characters of the tag
TRACE_LINES = 40  # lines of the traceback kept in the artifact
ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


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
    """`describe` of the error a Tune trial has just failed with, read from the files Tune has
    just written on the driver (`error.pkl`, `error.txt`; the storage's copies come later)."""
    import cloudpickle

    try:
        if trial.pickled_error_file and Path(trial.pickled_error_file).exists():
            return describe(cloudpickle.loads(Path(trial.pickled_error_file).read_bytes()))
        if trial.error_file and Path(trial.error_file).exists():
            return describe(Path(trial.error_file).read_text(errors="replace"))
    except Exception as exc:  # an unpicklable or unreadable record: say that, not nothing
        return f"{type(exc).__name__} reading the trial's error: {exc}", ""
    return "", ""


def _tail(text: str) -> str:
    plain = ANSI_COLOUR.sub("", text)  # Ray colours the remote task's name
    return "\n".join(plain.strip().splitlines()[-TRACE_LINES:]) + "\n"


def _last_exception_line(text: str) -> str:
    """The `Type: message` line of a traceback's text (its last line that names an error)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if head.replace(".", "").isidentifier() and (head.endswith(("Error", "Exception"))):
            return line
    return lines[-1] if lines else ""
