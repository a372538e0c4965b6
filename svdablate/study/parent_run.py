"""A study's MLflow parent run and manifest: created when a plan starts (`StudyPlan.start`)."""

from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path

from svdablate.schema import GRID_ARTIFACT, Tag
from svdablate.spec.config import Resources, StudySpec, TrialConfig
from svdablate.spec.presets import Preset
from svdablate.study.manifest import TUNE_DIR, StudyManifest, default_tracking_uri


def parent_tags(
    preset: Preset, spec: StudySpec, configs: list[TrialConfig], grid_id: str
) -> dict[str, str]:
    """What the report reads of a study: preset, rows in table order, the axes, OW's operator."""
    rows = list(dict.fromkeys(c.row for c in configs))
    ow_maps = sorted({c.ow_map for c in configs if "OW" in c.treatments})
    return {
        Tag.PRESET: preset.name,
        Tag.GRID_ID: grid_id,
        Tag.ROWS: json.dumps(rows),
        Tag.APPLICATION: preset.application,
        Tag.DATASET: ",".join(preset.datasets),
        Tag.MODEL: preset.model,
        Tag.PROTOCOL: ",".join(preset.protocols),
        Tag.SMOKE: str(spec.smoke).lower(),
        Tag.OW_MAP: ",".join(ow_maps) or "none",
    }


def start_study(
    preset: Preset,
    spec: StudySpec,
    configs: list[TrialConfig],
    resources: Resources,
    *,
    uri: str,
    results_dir: str | Path,
    experiment: str,
    storage_path: str | None,
    address: str | None,
) -> StudyManifest:
    """Create the parent run (named after the study, with provenance) and save the manifest."""
    from svdablate.store.provenance import provenance_tags
    from svdablate.store.relocate import artifacts_uri
    from svdablate.store.runs import create_parent_run

    grid_id = uuid.uuid4().hex[:8]
    results = Path(results_dir).resolve()
    own_store = uri == default_tracking_uri(results)
    # A local store keeps its artifacts (tables, figures) beside it, not in the caller's cwd.
    artifacts = artifacts_uri(results) if uri.startswith("sqlite:") else None
    parent = create_parent_run(
        uri,
        experiment,
        {**provenance_tags(), **parent_tags(preset, spec, configs, grid_id)},
        {
            "trials": str(len(configs)),
            "grid_id": grid_id,
            **{f"resources.{k}": str(v) for k, v in resources.model_dump().items()},
        },
        artifact_location=artifacts,
        run_name=f"{preset.name} · {grid_id}",
    )
    manifest = StudyManifest(
        parent_run_id=parent,
        name=preset.name,
        grid_id=grid_id,
        results_dir=str(results),
        spec=spec,
        resources=resources,
        configs=list(configs),
        tracking_uri=None if own_store else uri,
        storage_path=None if storage_path in (None, str(results / TUNE_DIR)) else storage_path,
        tune_experiments=[f"{preset.name}-{grid_id}"],
        address=address,
    )
    manifest.save()
    log_grid(manifest)
    return manifest


def log_grid(manifest: StudyManifest) -> None:
    """Attach the study's trial configs to its parent run (`grid.json`)."""
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / GRID_ARTIFACT
        path.write_text(json.dumps(manifest.configs_json(), indent=1, default=str))
        MlflowClient(manifest.store_uri).log_artifact(manifest.parent_run_id, str(path))
