"""The one reader of a study's child runs (`search_child_runs`: every page of MLflow's
search_runs), used by the orchestrator and the report."""

from __future__ import annotations

from typing import Any, Final

from svdablate.schema.tags import Tag

#: MLflow's own tag naming a child run's parent run.
PARENT_RUN_TAG: Final = "mlflow.parentRunId"
SEARCH_PAGE: Final = 1000  # runs per search_runs page


def search_child_runs(
    client: Any, experiment_id: str, parent_run_id: str, *, trial_id: str | None = None
) -> list[Any]:
    """Every active child run of `parent_run_id` (one trial's with `trial_id`), all pages of
    `MlflowClient.search_runs`: the orchestrator and the report read a study's trials here."""
    query = f"tags.`{PARENT_RUN_TAG}` = '{parent_run_id}'"
    if trial_id is not None:
        query += f" and tags.`{Tag.TRIAL_ID}` = '{trial_id}'"
    return search_all_runs(client, [experiment_id], query)


def search_all_runs(client: Any, experiment_ids: list[str], query: str) -> list[Any]:
    """Every active run of the experiments matching `query`, all pages of search_runs."""
    from mlflow.entities import ViewType

    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            experiment_ids,
            filter_string=query,
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=SEARCH_PAGE,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs
