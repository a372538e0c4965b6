"""`Study`: a started study — its manifest (spec, resources, trial configs, where it lives) and
what can be done with it: run its trials, extend it, read its status and its table.

    from svdablate import Study, StudyPlan
    study = StudyPlan.create("demo", seeds=2, epochs=1, results_dir="results").start()
    outcome = study.run()              # Ray Tune + MLflow; outcome.exit_code is the CLI's
    print(study.table().table)         # the report's numbers (and .claims) as pandas DataFrames
    Study.load("results").status()     # trial counts, from MLflow

A study lives in its results dir: `mlflow.db` (unless another tracking URI), `ray/` (Tune's
state and checkpoints, unless --storage-path) and `studies/<parent-run-id>.json`.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from svdablate.errors import UserError
from svdablate.schema import Metric, StudyStatus, Tag, TrialStatus
from svdablate.spec import grid
from svdablate.spec.checkpoints import check_checkpoints
from svdablate.spec.config import Resources, StudySpec, TrialConfig, validated
from svdablate.spec.overrides import as_overrides
from svdablate.spec.rows import as_rows
from svdablate.study.execution import execute
from svdablate.study.manifest import StudyManifest
from svdablate.study.outcome import StudyOutcome, StudyProgress
from svdablate.study.parent_run import log_grid
from svdablate.study.preflight import DataRecords, check_data, join_ray

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class StudyTables:
    """The report of a study: its table's numbers (one row per table row) and the papers'
    claims its rows test (`report.claims_frame`'s columns)."""

    table: pd.DataFrame
    claims: pd.DataFrame


class Study:
    """A started study: its MLflow parent run, its manifest, and how to run its trials."""

    def __init__(
        self, manifest: StudyManifest, *, data: DataRecords | None = None, fresh: bool = False
    ) -> None:
        """`fresh`: started by this process and never run (`StudyPlan.start`); a loaded study
        continues its Tune experiment."""
        self.manifest = manifest
        self.data: DataRecords = data or {}  # `preflight.check_data`'s records, as gathered
        self._restore = not fresh

    @classmethod
    def load(
        cls,
        results_dir: str | Path = "results",
        run_id: str | None = None,
        *,
        tracking_uri: str | None = None,
        address: str | None = None,
    ) -> Study:
        """The study `run_id` (its parent run id) under `results_dir`, or the newest one there.

        Its store: `tracking_uri`, else $MLFLOW_TRACKING_URI, else the one it was run with (the
        results dir's own `mlflow.db` wherever the folder now is). `address`: the Ray cluster to
        run on now (default: the one it ran on).
        """
        from svdablate.store.health import check_readable_store
        from svdablate.store.relocate import relocate_artifacts
        from svdablate.store.tracking import TRACKING_URI_ENV, resolve_tracking_uri

        manifest = StudyManifest.load(results_dir, run_id)
        override = tracking_uri or os.environ.get(TRACKING_URI_ENV)
        if override:
            manifest.tracking_uri = resolve_tracking_uri(override, results_dir, create=False)
        check_readable_store(manifest.store_uri)  # a server that is down: seconds, not minutes
        if manifest.tracking_uri is None:
            relocate_artifacts(results_dir)  # a copied or moved folder writes into itself
        if address:
            manifest.address = address
        return cls(manifest)

    # ---- what it is -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def parent_run_id(self) -> str:
        return self.manifest.parent_run_id

    @property
    def tracking_uri(self) -> str:
        return self.manifest.store_uri

    @property
    def spec(self) -> StudySpec:
        return self.manifest.spec

    @property
    def configs(self) -> list[TrialConfig]:
        return self.manifest.configs

    @property
    def resources(self) -> Resources:
        return self.manifest.resources

    # ---- running ----------------------------------------------------------------------------
    def run(
        self,
        *,
        progress: bool = False,
        keep_checkpoints: bool | None = None,
        console: Any = None,
    ) -> StudyOutcome:
        """Run every trial not finished through Ray Tune: the first time in a new Tune
        experiment, then (a loaded or interrupted study: `svdablate resume`) by restoring it;
        finished trials are never re-run, MLflow runs are reused."""
        restore, self._restore = self._restore, True  # whatever happens, the next run restores
        if restore:  # Ray is joined in execute(), only when a trial is left to run
            from svdablate.store.health import check_writable
            from svdablate.store.tracking import check_store

            check_writable(self.manifest.results_dir, self.tracking_uri)  # read-only or full
            check_store(self.tracking_uri)
        return execute(
            self.manifest,
            self.configs,
            self.data,
            restore=restore,
            progress=progress,
            console=console,
            keep_checkpoints=keep_checkpoints,
        )

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
        """Add seeds or rows to the study as new trials under its parent run, and run them.

        The recipe stays the study's: `epochs` and `overrides` may repeat it, not change it.
        """
        from svdablate.store.health import check_writable
        from svdablate.store.tracking import check_store

        given = as_overrides(overrides, epochs)
        if any(self.spec.overrides.get(k) != v for k, v in given.items()):
            raise UserError(
                "--extend keeps the study's recipe: drop --epochs and --set, or start a new study"
            )
        changes = {"seeds": seeds, "rows": as_rows(rows)}
        spec = validated(
            StudySpec,
            **{**self.spec.model_dump(), **{k: v for k, v in changes.items() if v is not None}},
        )
        known = {c.trial_id for c in self.configs}
        added = [c for c in grid.expand(grid.resolve_preset(spec), spec) if c.trial_id not in known]
        self.data.update(check_data(added))
        check_checkpoints(added, self.data)
        manifest = self.manifest
        check_writable(manifest.results_dir, manifest.store_uri)  # read-only or full: one line
        check_store(manifest.store_uri)
        join_ray(manifest.address, manifest.resources, manifest.tune_storage)
        manifest.spec = spec
        manifest.configs.extend(added)
        manifest.tune_experiments.append(
            f"{manifest.name}-{manifest.grid_id}-ext{len(manifest.tune_experiments)}"
        )
        manifest.save()
        log_grid(manifest)
        return execute(
            manifest, added, self.data, restore=False, progress=progress, console=console
        )

    # ---- reading ----------------------------------------------------------------------------
    def status(self) -> StudyProgress:
        """Trial counts by status, read from the study's MLflow runs (works while it runs)."""
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        from svdablate.store.liveness import settle_abandoned
        from svdablate.store.runs import child_runs
        from svdablate.store.spool import spool_path

        client = MlflowClient(self.tracking_uri)
        try:
            spool = spool_path(self.manifest.results_dir, self.parent_run_id)
            settle_abandoned(client, self.parent_run_id, spool)  # a killed driver's: interrupted
            parent = client.get_run(self.parent_run_id)
            runs = child_runs(client, self.parent_run_id)
        except MlflowException:
            raise UserError(
                f"study {self.parent_run_id} is not in the MLflow store "
                f"{self.tracking_uri}: pass the --tracking-uri it ran with (or unset "
                "MLFLOW_TRACKING_URI)"
            ) from None
        counts = Counter(r.data.tags.get(Tag.STATUS, TrialStatus.RUNNING) for r in runs.values())
        return StudyProgress(
            study=self.name,
            parent_run_id=self.parent_run_id,
            study_status=parent.data.tags.get(Tag.STATUS, StudyStatus.RUNNING),
            trials=len(self.configs),
            pending=len({c.trial_id for c in self.configs} - set(runs)),
            finished=counts[TrialStatus.FINISHED],
            diverged=counts[TrialStatus.DIVERGED],
            failed=counts[TrialStatus.FAILED],
            running=counts[TrialStatus.RUNNING],
            interrupted=counts[TrialStatus.INTERRUPTED],
            epochs_logged=sum(
                int(r.data.metrics.get(Metric.EPOCHS_COMPLETED, 0)) for r in runs.values()
            ),
        )

    def table(self, *, layout: str | None = None, metric: str = "best") -> StudyTables:
        """The report of this study (what `svdablate report` prints): its table's numbers and
        the claims its rows test, pandas DataFrames."""
        from svdablate.report import report_table

        table = report_table(self.tracking_uri, [self.parent_run_id], layout=layout, metric=metric)
        return StudyTables(table.to_frame(), table.claims.copy())
