"""The driver's spooled MLflow writes, typed (`CreateRun`, `LogRun`, `TerminateRun`, `LogText`,
`SetStudyStatus`), and their JSON form in the spool file."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Final


@dataclass(frozen=True)
class CreateRun:
    """Create a trial's child run (tags, params, and the data MLflow's `log_input` records)."""

    OP: ClassVar[str] = "create"
    trial: str
    tags: dict[str, str]
    params: dict[str, str]
    dataset: dict[str, str] | None = None


@dataclass(frozen=True)
class LogRun:
    """Log metrics (each `[key, value, timestamp ms, step]`) and tags on a trial's child run."""

    OP: ClassVar[str] = "log"
    trial: str
    metrics: list[list[Any]] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TerminateRun:
    """End a trial's child run with an MLflow status (`RunStatus`)."""

    OP: ClassVar[str] = "terminate"
    trial: str
    status: str


@dataclass(frozen=True)
class LogText:
    """Log a text file (`file`) as an artifact of a trial's child run, e.g. a failed trial's
    traceback."""

    OP: ClassVar[str] = "text"
    trial: str
    text: str
    file: str


@dataclass(frozen=True)
class SetStudyStatus:
    """Set the parent run's status (`StudyStatus`)."""

    OP: ClassVar[str] = "parent"
    status: str


SpoolOp = CreateRun | LogRun | TerminateRun | LogText | SetStudyStatus
SPOOL_OPS: Final = {op.OP: op for op in (CreateRun, LogRun, TerminateRun, LogText, SetStudyStatus)}


def spool_record(op: SpoolOp) -> dict[str, Any]:
    """An operation as the spool's JSON object: `{"op": "log", "trial": …, …}`."""
    return {"op": op.OP, **asdict(op)}


def parse_spool_record(record: dict[str, Any]) -> SpoolOp:
    """A spool line's JSON object as its operation; ValueError for an unknown or malformed one."""
    fields = dict(record)
    kind = fields.pop("op", None)
    if kind not in SPOOL_OPS:
        raise ValueError(f"unknown spool operation {kind!r}")
    try:
        return SPOOL_OPS[kind](**fields)
    except TypeError as exc:
        raise ValueError(f"malformed spool operation {kind!r}: {exc}") from None
