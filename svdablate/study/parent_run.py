"""A study's MLflow parent run and manifest: created when the study starts."""

from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from svdablate.schema import GRID_ARTIFACT, Tag
from svdablate.study.manifest import TUNE_DIR, StudyManifest, default_tracking_uri

if TYPE_CHECKING:
    from svdablate.study.study import Study


def parent_tags(study: Study, grid_id: str) -> dict[str, str]:
    """What the report reads of a study: preset, rows in table order, the axes, OW's operator."""
    rows = list(dict.fromkeys(c.row for c in study.configs))
    ow_maps = sorted({c.ow_map for c in study.configs if "OW" in c.treatments})
    return {
        Tag.PRESET: study.name,
        Tag.GRID_ID: grid_id,
        Tag.ROWS: json.dumps(rows),
        Tag.APPLICATION: study.preset.application,
        Tag.DATASET: ",".join(study.preset.datasets),
        Tag.MODEL: study.preset.model,
        Tag.PROTOCOL: ",".join(study.preset.protocols),
        Tag.SMOKE: str(study.spec.smoke).lower(),
        Tag.OW_MAP: ",".join(ow_maps) or "none",
    }


def start_study(study: Study, uri: str) -> StudyManifest:
    """Create the parent run (named after the study, with provenance) and save the manifest."""
    from svdablate.store.provenance import provenance_tags
    from svdablate.store.relocate import artifacts_uri
    from svdablate.store.runs import create_parent_run

    grid_id = uuid.uuid4().hex[:8]
    results = study.results_dir.resolve()
    own_store = uri == default_tracking_uri(results)
    # A local store keeps its artifacts (tables, figures) beside it, not in the caller's cwd.
    artifacts = artifacts_uri(results) if uri.startswith("sqlite:") else None
    resources = study.resources.model_dump()
    parent = create_parent_run(
        uri,
        study.experiment,
        {**provenance_tags(), **parent_tags(study, grid_id)},
        {
            "trials": str(len(study.configs)),
            "grid_id": grid_id,
            **{f"resources.{k}": str(v) for k, v in resources.items()},
        },
        artifact_location=artifacts,
        run_name=f"{study.name} · {grid_id}",
    )
    storage = study.storage_path
    manifest = StudyManifest(
        parent_run_id=parent,
        name=study.name,
        grid_id=grid_id,
        results_dir=str(results),
        resources=resources,
        configs=[c.model_dump(mode="json") for c in study.configs],
        tracking_uri=None if own_store else uri,
        storage_path=None if storage in (None, str(results / TUNE_DIR)) else storage,
        tune_experiments=[f"{study.name}-{grid_id}"],
        address=study.address,
        spec=study.spec.model_dump(mode="json"),
    )
    manifest.save()
    log_grid(manifest)
    return manifest


def log_grid(manifest: StudyManifest) -> None:
    """Attach the study's trial configs to its parent run (`grid.json`)."""
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / GRID_ARTIFACT
        path.write_text(json.dumps(manifest.configs, indent=1, default=str))
        MlflowClient(manifest.store_uri).log_artifact(manifest.parent_run_id, str(path))
