"""Find a study's parent run(s) in MLflow; every miss is a one-line LookupError naming the fix."""

from __future__ import annotations

import json
from collections.abc import Sequence

from mlflow import MlflowClient
from mlflow.entities import Run, ViewType
from mlflow.exceptions import MlflowException

from svdablate.schema import PARENT_TAGS, Role, Tag

NEWEST_HINT = "`svdablate report --latest` picks the newest study"


def client(tracking_uri: str | None) -> MlflowClient:
    """The MLflow client of the store."""
    return MlflowClient(tracking_uri=tracking_uri)


def _experiment_ids(mlflow: MlflowClient, experiment: str | None) -> list[str]:
    if experiment is None:
        return [e.experiment_id for e in mlflow.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        try:
            exp = mlflow.get_experiment(experiment)
        except MlflowException:
            raise LookupError(
                f"no MLflow experiment named or numbered {experiment!r}: "
                "leave out the experiment to search every one"
            ) from None
    return [exp.experiment_id]


def latest_parent(tracking_uri: str | None, experiment: str | None = None) -> str:
    """Run id of the newest study (parent run), in one experiment or all; LookupError if none."""
    mlflow = client(tracking_uri)
    ids = _experiment_ids(mlflow, experiment)
    page = (
        mlflow.search_runs(
            ids,
            filter_string=f"tags.`{Tag.ROLE}` = '{Role.PARENT}'",
            max_results=1,
            order_by=["attributes.start_time DESC"],
        )
        if ids
        else []
    )
    if not page:
        where = f"experiment {experiment!r} of {tracking_uri}" if experiment else tracking_uri
        raise LookupError(
            f"no svdablate study in {where}: run one (`svdablate run --preset demo`) or point "
            "--results-dir/--tracking-uri at the store that holds it"
        )
    return page[0].info.run_id


def get_parent(tracking_uri: str | None, run_id: str) -> Run:
    """The parent run `run_id`; LookupError when it is unknown or not a study's parent run."""
    mlflow = client(tracking_uri)
    try:
        run = mlflow.get_run(run_id)
    except MlflowException:
        raise LookupError(
            f"no run {run_id!r} in {tracking_uri}: pass a study's parent run id "
            f"(`svdablate status` shows it; {NEWEST_HINT})"
        ) from None
    role = run.data.tags.get(Tag.ROLE)
    if role == Role.PARENT:
        return run
    parent = run.data.tags.get("mlflow.parentRunId")
    if role == Role.TRIAL and parent:
        raise LookupError(f"run {run_id} is one trial of study {parent}: pass {parent} instead")
    raise LookupError(
        f"run {run_id} is not an svdablate study (no tag {Tag.ROLE}={Role.PARENT}): pass a "
        f"study's parent run id ({NEWEST_HINT})"
    )


def parent_info(tracking_uri: str | None, parent_run_id: str) -> dict[str, object]:
    """The parent's tags by short name (schema.PARENT_TAGS), `rows` decoded from JSON to a list."""
    run = get_parent(tracking_uri, parent_run_id)
    tags = run.data.tags
    info: dict[str, object] = {name: tags.get(tag, "") for name, tag in PARENT_TAGS.items()}
    try:
        rows = json.loads(tags.get(Tag.ROWS, "[]"))
    except json.JSONDecodeError:
        rows = []
    info["rows"] = [str(r) for r in rows] if isinstance(rows, list) else []
    info["run_id"] = parent_run_id
    info["experiment_id"] = run.info.experiment_id
    return info


def resolve_parents(
    tracking_uri: str | None,
    parent_run_id: str | Sequence[str] | None,
    experiment: str | None = None,
) -> list[str]:
    """The parent run ids to report (each checked): those given, else the newest study."""
    if parent_run_id is None:
        return [latest_parent(tracking_uri, experiment)]
    given = [parent_run_id] if isinstance(parent_run_id, str) else list(parent_run_id)
    parents = list(dict.fromkeys(given)) or [latest_parent(tracking_uri, experiment)]
    for run_id in parents:
        get_parent(tracking_uri, run_id)
    return parents
