"""Write back to a study's parent run(s): files under `report/`, the claims tag, warnings.

A read-only store or artifact folder (an archive) refuses the writes; every writer here turns
that into one warning line, never a traceback: the report itself is complete either way.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

from svdablate.report.reading.parents import client
from svdablate.schema import REPORT_ARTIFACT_DIR, Tag

#: What attaching can raise on a read-only archive: the artifact folder (OSError) or the store.
ATTACH_ERRORS = (OSError, MlflowException)


def claim_lines(claims: pd.DataFrame) -> list[str]:
    """One line per claim: where, what, the verdict and its numbers (the parent run's tag)."""
    lines = []
    for c in claims.itertuples(index=False):
        context = f" [{c.context}]" if c.context else ""
        p = f"; p_Holm {c.p_holm:.3g}" if pd.notna(c.p_holm) else ""
        note = f"; {c.note}" if c.note else ""
        lines.append(
            f"{c.paper} {c.where}: {c.claim}{context}: {c.verdict} "
            f"({c.rows}: {c.values}, n {c.n}{p}{note})"
        )
    return lines


def claims_tag(claims: pd.DataFrame) -> str:
    """The `svdablate.claims` tag's value: `claim_lines`, cut to MLflow's tag length."""
    return "\n".join(claim_lines(claims))[:MAX_TAG_VAL_LENGTH]


@contextlib.contextmanager
def quiet_store_errors() -> Iterator[None]:
    """MLflow's SQL store logs a traceback before raising on a read-only database: hide it
    (the caller reports the failure in one line)."""
    logger = logging.getLogger("mlflow.store")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def refused(parent_ids: Sequence[str], err: BaseException) -> str:
    """The one warning line for writes a read-only store or artifact folder refused."""
    reason = str(err).splitlines()[0] if str(err) else type(err).__name__
    return (
        f"warning: not attached to parent run(s) {', '.join(parent_ids)} (read-only store "
        f"or artifact folder? {type(err).__name__}: {reason})"
    )


def attach_to_parents(
    tracking_uri: str | None,
    parent_ids: Sequence[str],
    paths: Sequence[Path],
    claims: pd.DataFrame | None = None,
) -> str | None:
    """Attach files under `report/` to each parent run and, with `claims`, tag it with their
    verdicts (`Tag.CLAIMS`). Returns None, or a one-line warning when the store or its artifact
    folder refuses (a read-only archive)."""
    mlflow = client(tracking_uri)
    try:
        with quiet_store_errors():
            for parent in parent_ids:
                for path in paths:
                    mlflow.log_artifact(parent, str(path), artifact_path=REPORT_ARTIFACT_DIR)
                if claims is not None:
                    mlflow.set_tag(parent, Tag.CLAIMS, claims_tag(claims))
    except ATTACH_ERRORS as err:
        return refused(parent_ids, err)
    return None


def print_warning(message: str | None, warnings: list[str]) -> None:
    """Print a warning line to stderr and keep it in `warnings` (nothing for None)."""
    if message:
        warnings.append(message)
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
