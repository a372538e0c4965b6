"""A results dir that was copied or moved keeps writing into itself.

MLflow stores artifact locations as absolute URIs (the experiment's `artifact_location`, each
run's `artifact_uri`); a study's own SQLite store keeps its artifacts in
`<results-dir>/mlartifacts`.
After a copy or a move those URIs still name the old folder, so attaching a report to the copy
would write into the original (or re-create a deleted one). Before a command uses a results dir's
own store, `relocate_artifacts` rewrites those URIs to the folder the store is in now. Only
URIs that end in this layout's `mlartifacts` folder are touched; a read-only store is left as is.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from svdablate.study.manifest import STORE_FILE

ARTIFACTS_DIR = "mlartifacts"


def artifacts_uri(results_dir: str | Path) -> str:
    """The artifact location of a results dir's own store."""
    return (Path(results_dir).resolve() / ARTIFACTS_DIR).as_uri()


def relocate_artifacts(results_dir: str | Path) -> int:
    """Point the store's artifact URIs at this results dir; returns how many experiments moved."""
    db = Path(results_dir) / STORE_FILE
    if not db.is_file():
        return 0
    here = artifacts_uri(results_dir)
    moved = 0
    try:
        with sqlite3.connect(db, timeout=30) as connection:
            rows = connection.execute(
                "select experiment_id, artifact_location from experiments"
            ).fetchall()
            for experiment_id, location in rows:
                old = (location or "").rstrip("/")
                if not old.endswith(f"/{ARTIFACTS_DIR}") or old == here:
                    continue
                connection.execute(
                    "update experiments set artifact_location = ? where experiment_id = ?",
                    (here, experiment_id),
                )
                connection.execute(
                    "update runs set artifact_uri = ? || substr(artifact_uri, ?) "
                    "where experiment_id = ? and substr(artifact_uri, 1, ?) = ?",
                    (here, len(old) + 1, experiment_id, len(old), old),
                )
                moved += 1
    except sqlite3.Error:  # a read-only archive or another layout: reading still works
        return 0
    return moved
