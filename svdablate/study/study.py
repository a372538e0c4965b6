"""`Study`: the public API under the CLI — create from a preset, run, resume, extend, status, table.

    from svdablate import Study
    study = Study.create("demo", seeds=2, epochs=1, results_dir="results")
    outcome = study.run()              # Ray Tune + MLflow; outcome.exit_code is the CLI's
    print(study.table())               # the report's numbers as a pandas DataFrame
    Study.load("results").status()     # trial counts, from MLflow

Everything a study is told is validated in `create` (the grid, every trial config, the data),
before Ray starts. A study lives in its results dir: `mlflow.db` (unless another tracking URI),
`ray/` (Tune's state and checkpoints, unless --storage-path) and `studies/<parent-run-id>.json`.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from svdablate.errors import UserError
from svdablate.schema import StudyStatus, Tag, TrialStatus
from svdablate.spec import grid
from svdablate.spec.checkpoints import check_checkpoints
from svdablate.spec.config import Resources, StudySpec, TrialConfig, validated
from svdablate.spec.overrides import parse_overrides
from svdablate.spec.presets import Preset
from svdablate.study.execution import execute
from svdablate.study.manifest import TUNE_DIR, StudyManifest
from svdablate.study.outcome import StudyOutcome
from svdablate.study.preflight import check_data

EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"


class Study:
    """One study of a preset: its trials, where it records them, and how to run them."""

    def __init__(
        self,
        spec: StudySpec,
        configs: list[TrialConfig],
        resources: Resources,
        *,
        results_dir: str | Path = "results",
        tracking_uri: str | None = None,
        storage_path: str | None = None,
        address: str | None = None,
        experiment: str | None = None,
        manifest: StudyManifest | None = None,
    ) -> None:
        self.spec = spec
        self.experiment_option = experiment
        self.data: dict[tuple[Any, ...], dict[str, str]] = {}  # preflight.check_data's records
        self.preset: Preset = grid.resolve_preset(spec)
        self.configs = configs
        self.resources = resources
        self.results_dir = Path(results_dir)
        self.tracking_uri_option = tracking_uri
        self.storage_path = storage_path
        self.address = address
        self.manifest = manifest
        self._storage_checked = False

    # ---- construction -----------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        preset: str = "demo",
        *,
        seeds: int | None = None,
        rows: str | list[str] | tuple[str, ...] | None = None,
        epochs: int | None = None,
        smoke: bool = False,
        overrides: dict[str, Any] | list[str] | None = None,
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
    ) -> Study:
        """A new study of `preset`, validated (grid, trial configs, data, the rows' starting
        checkpoints); nothing runs yet.

        `rows` is 'SVD,SVD+NOG' or a list; `overrides` is {key: value} or ['key=value', …]
        (`--set`); `checkpoints` is a folder with one file per row (`checkpoints.py`), which a
        preset that fine-tunes requires. Bad input raises UserError with one line naming the fix.
        """
        if isinstance(rows, str):
            rows = tuple(rows.split(","))
        if isinstance(overrides, list | tuple):
            overrides = parse_overrides(list(overrides))
        spec = validated(
            StudySpec,
            preset=preset,
            seeds=seeds,
            rows=rows,
            epochs=epochs,
            smoke=smoke,
            data_dir=data_dir,
            download=download,
            overrides=overrides or {},
            checkpoints=None if checkpoints is None else str(Path(checkpoints).resolve()),
        )
        refusal = grid.missing_checkpoints(spec)
        if check and refusal and not smoke:
            raise UserError(refusal)
        chosen = grid.resolve_preset(spec)
        resources = validated(
            Resources,
            cpus_per_trial=chosen.cpus_per_trial if cpus_per_trial is None else cpus_per_trial,
            gpus_per_trial=chosen.gpus_per_trial if gpus_per_trial is None else gpus_per_trial,
            max_concurrent=max_concurrent,
            max_failures=max_failures,
        )
        configs = grid.expand(spec)
        study = cls(
            spec,
            configs,
            resources,
            results_dir=results_dir,
            tracking_uri=tracking_uri,
            storage_path=storage_path,
            address=address,
            experiment=experiment,
        )
        if check:
            study.data = check_data(configs)
            check_checkpoints(configs, study.data)
        return study

    @classmethod
    def load(
        cls,
        results_dir: str | Path = "results",
        run_id: str | None = None,
        *,
        tracking_uri: str | None = None,
    ) -> Study:
        """The study `run_id` (its parent run id) under `results_dir`, or the newest one there.

        Its store: `tracking_uri`, else $MLFLOW_TRACKING_URI, else the one it was run with (the
        results dir's own `mlflow.db` wherever the folder now is).
        """
        from svdablate.store.relocate import relocate_artifacts
        from svdablate.store.tracking import TRACKING_URI_ENV, resolve_tracking_uri

        manifest = StudyManifest.load(results_dir, run_id)
        override = tracking_uri or os.environ.get(TRACKING_URI_ENV)
        if override:
            manifest.tracking_uri = resolve_tracking_uri(override, results_dir, create=False)
        if manifest.tracking_uri is None:
            relocate_artifacts(results_dir)  # a copied or moved folder writes into itself
        return cls(
            StudySpec.model_validate(manifest.spec),
            manifest.trial_configs(),
            manifest.resource_request(),
            results_dir=results_dir,
            tracking_uri=manifest.tracking_uri,
            storage_path=manifest.storage_path,
            address=manifest.address,
            manifest=manifest,
        )

    @property
    def warnings(self) -> list[str]:
        """One line per row whose treatments the papers advise against combining."""
        return grid.warnings_for(self.spec)

    # ---- properties -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.preset.name

    @property
    def experiment(self) -> str:
        """The MLflow experiment: --experiment, else $MLFLOW_EXPERIMENT_NAME, else the preset."""
        return self.experiment_option or os.environ.get(EXPERIMENT_ENV) or self.name

    @property
    def parent_run_id(self) -> str | None:
        """The MLflow parent run id, once the study has started."""
        return self.manifest.parent_run_id if self.manifest else None

    @property
    def tracking_uri(self) -> str:
        if self.manifest is not None:
            return self.manifest.store_uri
        from svdablate.store.tracking import resolve_tracking_uri

        return resolve_tracking_uri(self.tracking_uri_option, self.results_dir, create=False)

    # ---- running ----------------------------------------------------------------------------
    def run(
        self,
        *,
        progress: bool = False,
        keep_checkpoints: bool | None = None,
        console: Any = None,
    ) -> StudyOutcome:
        """Start the study (MLflow parent run, manifest) and run every trial through Ray Tune."""
        if self.manifest is not None:
            raise UserError(f"study {self.parent_run_id} has already run: resume() or extend() it")
        from svdablate.runtime.ray_cluster import resolve_address

        resolve_address(self.address)  # an address that does not answer: before the store
        from svdablate.store.tracking import opening_store

        uri = self._prepare_store(open_now=False)
        with opening_store(uri):
            self.connect()
        self.manifest = self._start(uri)
        return execute(
            self,
            self.configs,
            restore=False,
            progress=progress,
            console=console,
            keep_checkpoints=keep_checkpoints,
        )

    def resume(self, *, progress: bool = False, console: Any = None) -> StudyOutcome:
        """Continue an interrupted study: finished trials are not re-run, MLflow runs are reused."""
        if self.manifest is None:
            raise UserError("this study has not started: run() it")
        self._prepare_store()  # Ray is joined in execute(), only when a trial is left to run
        return execute(self, self.configs, restore=True, progress=progress, console=console)

    def extend(
        self,
        *,
        seeds: int | None = None,
        rows: str | list[str] | tuple[str, ...] | None = None,
        epochs: int | None = None,
        overrides: dict[str, Any] | list[str] | None = None,
        progress: bool = False,
        console: Any = None,
    ) -> StudyOutcome:
        """Add seeds or rows to a started study as new trials under its parent run, and run them.

        The recipe stays the study's: `epochs` and `overrides` may repeat it, not change it.
        """
        if self.manifest is None:
            raise UserError("this study has not started: run() it first")
        if isinstance(rows, str):
            rows = tuple(rows.split(","))
        if isinstance(overrides, list | tuple):
            overrides = parse_overrides(list(overrides))
        if (epochs is not None and epochs != self.spec.epochs) or (
            overrides and overrides != self.spec.overrides
        ):
            raise UserError(
                "--extend keeps the study's recipe: drop --epochs and --set, or start a new study"
            )
        changes = {"seeds": seeds, "rows": rows}
        spec = validated(
            StudySpec,
            **{**self.spec.model_dump(), **{k: v for k, v in changes.items() if v is not None}},
        )
        wanted = grid.expand(spec)
        known = {c.trial_id for c in self.configs}
        added = [c for c in wanted if c.trial_id not in known]
        self.data.update(check_data(added))
        check_checkpoints(added, self.data)
        self._prepare_store()
        self.connect()
        manifest = self.manifest
        self.spec = spec
        manifest.spec = spec.model_dump(mode="json")
        manifest.configs.extend(c.model_dump(mode="json") for c in added)
        manifest.tune_experiments.append(
            f"{manifest.name}-{manifest.grid_id}-ext{len(manifest.tune_experiments)}"
        )
        manifest.save()
        self.configs.extend(added)
        self._log_grid()
        return execute(self, added, restore=False, progress=progress, console=console)

    # ---- reading ----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Trial counts by status, read from the study's MLflow runs (works while it runs)."""
        from mlflow import MlflowClient

        from svdablate.store.runs import child_runs

        if self.manifest is None:
            raise UserError("this study has not started: run() it")
        from mlflow.exceptions import MlflowException

        client = MlflowClient(self.tracking_uri)
        try:
            parent = client.get_run(self.manifest.parent_run_id)
            runs = child_runs(client, self.manifest.parent_run_id)
        except MlflowException:
            raise UserError(
                f"study {self.manifest.parent_run_id} is not in the MLflow store "
                f"{self.tracking_uri}: pass the --tracking-uri it ran with (or unset "
                "MLFLOW_TRACKING_URI)"
            ) from None
        counts = Counter(r.data.tags.get(Tag.STATUS, TrialStatus.RUNNING) for r in runs.values())
        return {
            "study": self.name,
            "parent_run_id": self.manifest.parent_run_id,
            "study_status": parent.data.tags.get(Tag.STATUS, StudyStatus.RUNNING),
            "trials": len(self.configs),
            "pending": len({c.trial_id for c in self.configs} - set(runs)),
            **{s: counts[s] for s in TrialStatus.ALL},
            "epochs_logged": sum(
                int(r.data.metrics.get("epochs_completed", 0)) for r in runs.values()
            ),
        }

    def table(self, *, layout: str | None = None, metric: str = "best") -> Any:
        """The report's table of this study, a pandas DataFrame (what `svdablate report` prints)."""
        from svdablate.report import report_table

        if self.manifest is None:
            raise UserError("this study has not started: run() it")
        return report_table(
            self.tracking_uri, [self.manifest.parent_run_id], layout=layout, metric=metric
        ).to_frame()

    # ---- internals --------------------------------------------------------------------------
    def _prepare_store(self, *, open_now: bool = True) -> str:
        from svdablate.store.tracking import check_store, resolve_tracking_uri

        uri = (
            self.manifest.store_uri
            if self.manifest is not None
            else resolve_tracking_uri(self.tracking_uri_option, self.results_dir)
        )
        check_store(uri, open_now=open_now)
        return uri

    @property
    def tune_storage(self) -> str:
        """Ray Tune's storage: --storage-path, else the results dir's `ray/`."""
        if self.manifest is not None:
            return self.manifest.tune_storage
        return self.storage_path or str(self.results_dir.resolve() / TUNE_DIR)

    def connect(self) -> None:
        """Join the study's Ray cluster (start a local one without an address); check resources
        and that every node which may run a trial shares the Tune storage."""
        from svdablate.runtime.ray_cluster import check_resources, connect_ray
        from svdablate.runtime.shared_storage import check_shared_storage

        connect_ray(self.address)
        check_resources(self.resources)
        if not self._storage_checked:
            check_shared_storage(self.tune_storage, self.resources)
            self._storage_checked = True

    def _start(self, uri: str) -> StudyManifest:
        from svdablate.study.parent_run import start_study

        self.manifest = start_study(self, uri)
        return self.manifest

    def _log_grid(self) -> None:
        from svdablate.study.parent_run import log_grid

        assert self.manifest is not None
        log_grid(self.manifest)
