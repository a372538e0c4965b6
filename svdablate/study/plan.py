"""`StudyPlan`: a study validated and not yet started — its spec, the preset resolved once, every
trial config, the resources, the warnings and the data — and `start()`, which makes it a `Study`.

Everything a study is told is validated in `StudyPlan.create` (the grid, every trial config, the
data, each row's starting checkpoint), before Ray starts; nothing runs and nothing is written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from svdablate.errors import UserError
from svdablate.spec import grid
from svdablate.spec.checkpoints import check_checkpoints
from svdablate.spec.config import Resources, StudySpec, TrialConfig, validated
from svdablate.spec.overrides import Overrides, as_overrides
from svdablate.spec.presets import Preset
from svdablate.spec.rows import Rows, as_rows
from svdablate.study.manifest import TUNE_DIR
from svdablate.study.parent_run import start_study
from svdablate.study.preflight import DataRecords, check_data, join_ray
from svdablate.study.study import Study

EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"


@dataclass
class StudyPlan:
    """A validated study that has not started: `start()` creates its parent run and manifest."""

    spec: StudySpec
    preset: Preset  # resolved once: the spec's seeds, rows and overrides applied
    configs: list[TrialConfig]
    resources: Resources
    warnings: list[str]
    results_dir: Path
    tracking_uri: str | None = None
    storage_path: str | None = None
    address: str | None = None
    experiment_option: str | None = None
    data: DataRecords = field(default_factory=dict)  # `check_data`'s records (empty unchecked)

    @classmethod
    def create(
        cls,
        preset: str = "demo",
        *,
        seeds: int | None = None,
        rows: Rows = None,
        epochs: int | None = None,
        smoke: bool = False,
        overrides: Overrides = None,
        results_dir: str | Path = "results",
        tracking_uri: str | None = None,
        storage_path: str | None = None,
        address: str | None = None,
        experiment: str | None = None,
        data_dir: str | None = None,
        download: bool = False,
        cpus_per_trial: float | None = None,
        gpus_per_trial: float | None = None,
        max_concurrent: int | None = None,
        max_failures: int = 2,
        checkpoints: str | Path | None = None,
        check: bool = True,
    ) -> StudyPlan:
        """A plan of `preset`, validated (grid, trial configs, data, the rows' starting
        checkpoints; `check=False` skips the data, the checkpoints' files and the refusal of a
        fine-tuning preset without them: what `svdablate plan` shows).

        `rows` is 'SVD,SVD+NOG' or a list; `overrides` is {key: value} or ['key=value', …]
        (`--set`), `epochs` sugar for the override `epochs`; `checkpoints` is a folder with one
        file per row (`checkpoints.py`), which a preset that fine-tunes requires. Bad input raises
        UserError with one line naming the fix.
        """
        spec = validated(
            StudySpec,
            preset=preset,
            seeds=seeds,
            rows=as_rows(rows),
            smoke=smoke,
            data_dir=data_dir,
            download=download,
            overrides=as_overrides(overrides, epochs),
            checkpoints=None if checkpoints is None else str(Path(checkpoints).resolve()),
        )
        chosen = grid.resolve_preset(spec)
        refusal = grid.missing_checkpoints(chosen, spec)
        if check and refusal and not smoke:
            raise UserError(refusal)
        resources = validated(
            Resources,
            cpus_per_trial=chosen.cpus_per_trial if cpus_per_trial is None else cpus_per_trial,
            gpus_per_trial=chosen.gpus_per_trial if gpus_per_trial is None else gpus_per_trial,
            max_concurrent=max_concurrent,
            max_failures=max_failures,
        )
        configs = grid.expand(chosen, spec)
        data: DataRecords = {}
        if check:
            data = check_data(configs)
            check_checkpoints(configs, data)
        return cls(
            spec,
            chosen,
            configs,
            resources,
            grid.warnings_for(chosen, spec),
            Path(results_dir),
            tracking_uri=tracking_uri,
            storage_path=storage_path,
            address=address,
            experiment_option=experiment,
            data=data,
        )

    @property
    def name(self) -> str:
        return self.preset.name

    @property
    def experiment(self) -> str:
        """The MLflow experiment: --experiment, else $MLFLOW_EXPERIMENT_NAME, else the preset."""
        return self.experiment_option or os.environ.get(EXPERIMENT_ENV) or self.name

    @property
    def tune_storage(self) -> str:
        """Ray Tune's storage path (the results dir's `ray/` unless --storage-path was given)."""
        return self.storage_path or str(Path(self.results_dir).resolve() / TUNE_DIR)

    def start(self) -> Study:
        """Join Ray (checking the cluster can hold a trial), create the study's MLflow parent
        run and save its manifest: the started `Study`, whose `run()` trains the trials."""
        from svdablate.runtime.ray_cluster import resolve_address
        from svdablate.store.health import check_writable
        from svdablate.store.tracking import check_store, opening_store, resolve_tracking_uri

        resolve_address(self.address)  # an address that does not answer: before the store
        uri = resolve_tracking_uri(self.tracking_uri, self.results_dir)
        check_writable(self.results_dir, uri)  # read-only or full: one line, nothing started
        check_store(uri, open_now=False)
        with opening_store(uri):
            join_ray(self.address, self.resources, self.tune_storage)
        manifest = start_study(
            self.preset,
            self.spec,
            self.configs,
            self.resources,
            uri=uri,
            results_dir=self.results_dir,
            experiment=self.experiment,
            storage_path=self.storage_path,
            address=self.address,
        )
        return Study(manifest, data=dict(self.data), fresh=True)
