"""A study's runs in MLflow: the experiment, the parent run, the child runs and their tags.

Plain MLflow client calls, importable without Ray (`status` reads a study through them).
"""

from __future__ import annotations

from typing import Any

from mlflow.entities import Param
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

from svdablate.schema import (
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    PARENT_RUN_TAG,
    Role,
    RunStatus,
    Tag,
    TrialStatus,
    search_child_runs,
)
from svdablate.spec.config import TrialConfig

PARAM_VALUE_LIMIT = 6000


def get_or_create_experiment(
    client: MlflowClient, name: str, artifact_location: str | None = None
) -> str:
    """Experiment id of `name`, created if missing (artifacts where given, else the store's),
    tagged as model training so that the MLflow UI opens it on its runs."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        experiment_id = experiment.experiment_id
    else:
        try:
            experiment_id = client.create_experiment(name, artifact_location=artifact_location)
        except MlflowException:
            experiment = client.get_experiment_by_name(name)  # another study created it meanwhile
            if experiment is None:
                raise
            experiment_id = experiment.experiment_id
    if experiment is None or EXPERIMENT_KIND_TAG not in experiment.tags:
        try:
            client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        except MlflowException:  # two first studies tagging at once: SQLite's UNIQUE refuses one
            tags = client.get_experiment(experiment_id).tags
            if tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
                raise
    return experiment_id


def create_parent_run(
    tracking_uri: str,
    experiment: str,
    tags: dict[str, str],
    params: dict[str, str],
    artifact_location: str | None = None,
    run_name: str | None = None,
) -> str:
    """Create the study's parent run and return its id."""
    client = MlflowClient(tracking_uri)
    experiment_id = get_or_create_experiment(client, experiment, artifact_location)
    run = client.create_run(experiment_id, tags={**tags, Tag.ROLE: Role.PARENT}, run_name=run_name)
    client.log_batch(
        run.info.run_id,
        params=[Param(k, v[:PARAM_VALUE_LIMIT]) for k, v in params.items()],
    )
    return run.info.run_id


def child_runs(client: MlflowClient, parent_run_id: str) -> dict[str, Any]:
    """Existing child runs of a parent, keyed by trial id."""
    parent = client.get_run(parent_run_id)
    runs = search_child_runs(client, parent.info.experiment_id, parent_run_id)
    return {r.data.tags.get(Tag.TRIAL_ID): r for r in runs}


def trial_tags(config: TrialConfig, parent_run_id: str, grid_id: str) -> dict[str, str]:
    """The tags of a trial's child run (what the report reads)."""
    return {
        PARENT_RUN_TAG: parent_run_id,
        MLFLOW_RUN_NAME: config.trial_id,
        Tag.ROLE: Role.TRIAL,
        Tag.ROW: config.row,
        Tag.SEED: str(config.seed),
        Tag.CONFIG_HASH: config.config_hash,
        Tag.TRIAL_ID: config.trial_id,
        Tag.STATUS: TrialStatus.RUNNING,
        Tag.METHOD: config.method,
        Tag.PROTOCOL: config.protocol,
        Tag.DATASET: config.reported_dataset,
        Tag.PRECISION: config.precision,
        Tag.APPLICATION: config.application,
        Tag.MODEL: config.model,
        Tag.GRID_ID: grid_id,
    }


def mark_children_interrupted(client: MlflowClient, parent_run_id: str) -> list[str]:
    """Tag the study's child runs still running as interrupted (MLflow's KILLED), as its parent
    is when the study stops early; returns their trial ids."""
    marked = []
    for trial_id, run in child_runs(client, parent_run_id).items():
        if run.data.tags.get(Tag.STATUS, TrialStatus.RUNNING) != TrialStatus.RUNNING:
            continue
        client.set_terminated(run.info.run_id, RunStatus.KILLED)
        client.set_tag(run.info.run_id, Tag.STATUS, TrialStatus.INTERRUPTED)
        marked.append(trial_id)
    return marked
