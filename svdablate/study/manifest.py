"""A study's manifest, `<results-dir>/studies/<parent-run-id>.json`: what resume, extend and status
need from another process.

Paths inside the results dir are stored relative to it (the default SQLite store, Tune's state in
`ray/`), so a copied or moved results dir reads and writes its own store, never the original.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from svdablate.errors import UserError
from svdablate.spec.config import RECORDED, Resources, StudySpec, TrialConfig

STUDIES_DIR = "studies"
STORE_FILE = "mlflow.db"
TUNE_DIR = "ray"


@dataclass
class StudyManifest:
    """Where a study lives and what it runs: its spec (what extend builds on), resources and
    trial configs, typed. `tracking_uri`/`storage_path` are None when they are the results dir's
    own (`mlflow.db`, `ray/`), resolved against `results_dir` when loaded."""

    parent_run_id: str
    name: str
    grid_id: str
    results_dir: str
    spec: StudySpec
    resources: Resources
    configs: list[TrialConfig]
    tracking_uri: str | None = None
    storage_path: str | None = None
    tune_experiments: list[str] = field(default_factory=list)
    address: str | None = None

    # ---- resolved views ---------------------------------------------------------------------
    @property
    def store_uri(self) -> str:
        """The MLflow tracking URI (the results dir's SQLite store unless another was given)."""
        return self.tracking_uri or default_tracking_uri(self.results_dir)

    @property
    def tune_storage(self) -> str:
        """Ray Tune's storage path (the results dir's `ray/` unless --storage-path was given)."""
        return self.storage_path or str(Path(self.results_dir).resolve() / TUNE_DIR)

    @property
    def tune_path(self) -> str:
        """The folder of the study's current Tune experiment (the last run or extend's)."""
        return f"{self.tune_storage.rstrip('/')}/{self.tune_experiments[-1]}"

    def configs_json(self) -> list[dict[str, Any]]:
        """The trial configs as JSON objects (the manifest's, `grid.json`'s)."""
        return [c.model_dump(mode="json") for c in self.configs]

    # ---- persistence ------------------------------------------------------------------------
    def save(self) -> Path:
        path = manifest_path(self.results_dir, self.parent_run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            **{f.name: getattr(self, f.name) for f in fields(self)},
            "spec": self.spec.model_dump(mode="json"),
            "resources": self.resources.model_dump(mode="json"),
            "configs": self.configs_json(),
        }
        record.pop("results_dir")  # the folder the manifest sits in says where it is
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1, default=str))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, results_dir: str | os.PathLike, run_id: str | None = None) -> StudyManifest:
        """The manifest of `run_id`, or of the newest study under `results_dir`."""
        folder = Path(results_dir) / STUDIES_DIR
        if run_id is None:
            candidates = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime)
            if not candidates:
                raise UserError(f"no study under {folder}: run `svdablate run` first")
            path = candidates[-1]
        else:
            path = manifest_path(results_dir, run_id)
            if not path.exists():
                raise UserError(
                    f"no study {run_id} under {folder}: pass the --results-dir it was run with"
                )
        try:
            record = json.loads(path.read_text())
            record["results_dir"] = str(Path(results_dir).resolve())
            # names were checked against the registries when the study was made
            record["configs"] = [
                TrialConfig.model_validate(c, context=RECORDED) for c in record["configs"]
            ]
            record["spec"] = StudySpec.model_validate(record.get("spec") or {})
            record["resources"] = Resources.model_validate(record["resources"])
            return cls(**record)
        except (json.JSONDecodeError, TypeError, KeyError, ValidationError) as exc:
            raise UserError(
                f"unreadable study manifest {path} ({exc}): run the study again"
            ) from None


def manifest_path(results_dir: str | os.PathLike, run_id: str) -> Path:
    return Path(results_dir) / STUDIES_DIR / f"{run_id}.json"


def default_tracking_uri(results_dir: str | os.PathLike) -> str:
    """`sqlite:///<results-dir>/mlflow.db`, absolute, resolved on the driver."""
    return f"sqlite:///{Path(results_dir).resolve() / STORE_FILE}"
