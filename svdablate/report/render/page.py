"""What the HTML page shows beside the table: the figures, the recipe and the provenance.

All read from MLflow: the figures from the child runs' metric histories (`plots`), the recipe
from their params (`recipe`), the provenance from the parent run's tags, params and times.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pandas as pd
from mlflow.utils.mlflow_tags import (
    MLFLOW_GIT_BRANCH,
    MLFLOW_GIT_COMMIT,
    MLFLOW_SOURCE_NAME,
    MLFLOW_SOURCE_TYPE,
    MLFLOW_USER,
)

from svdablate.report.reading.parents import get_parent
from svdablate.report.render.plots import FIGURES, StudyFigures
from svdablate.report.tables.recipe import Recipe, study_recipe
from svdablate.schema import PARENT_TAGS, Tag

#: Provenance lines of a parent run: label -> MLflow tag (the library versions follow).
PROVENANCE_TAGS = {
    "user": MLFLOW_USER,
    "source": MLFLOW_SOURCE_NAME,
    "source type": MLFLOW_SOURCE_TYPE,
    "git commit": MLFLOW_GIT_COMMIT,
    "git branch": MLFLOW_GIT_BRANCH,
    "host": Tag.HOST,
    "python": Tag.PYTHON,
}
STUDY_TAGS = ("preset", "grid_id", "status", "application", "dataset", "model", "protocol", "smoke")


@dataclass
class Figure:
    """One embedded figure: PNG bytes and what it shows."""

    png: bytes
    caption: str


@dataclass
class StudyPage:
    """The parts of the HTML page that are not the table (each may be empty)."""

    figures: list[Figure] = field(default_factory=list)
    recipe: Recipe = field(default_factory=Recipe)
    provenance: pd.DataFrame = field(default_factory=pd.DataFrame)


def _time(ms: int | None) -> str:
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def parent_provenance(tracking_uri: str | None, parent_id: str) -> dict[str, str]:
    """Label -> value: the run's name, id, times, study tags, who/where/what code ran it, the
    library versions (`svdablate.version.*`) and the parent's params (trials, resources)."""
    run = get_parent(tracking_uri, parent_id)
    tags = run.data.tags
    lines = {
        "run": run.info.run_name or "",
        "run id": run.info.run_id,
        "started": _time(run.info.start_time),
        "ended": _time(run.info.end_time),
    }
    lines |= {name.replace("_", " "): tags.get(PARENT_TAGS[name], "") for name in STUDY_TAGS}
    lines |= {label: tags.get(tag, "") for label, tag in PROVENANCE_TAGS.items()}
    lines |= {
        f"{key.removeprefix(Tag.VERSION_PREFIX)} version": value
        for key, value in sorted(tags.items())
        if key.startswith(Tag.VERSION_PREFIX)
    }
    lines |= {f"param {key}": value for key, value in run.data.params.items()}
    return {label: value for label, value in lines.items() if value}


def provenance_frame(tracking_uri: str | None, parent_ids: Sequence[str]) -> pd.DataFrame:
    """`parent_provenance` of each parent: a row per label, a column per parent run."""
    columns = {pid: parent_provenance(tracking_uri, pid) for pid in parent_ids}
    return pd.DataFrame(columns).fillna("")


def page_figures(drawn: StudyFigures) -> list[Figure]:
    """The study's figures as PNGs with their captions (none when no run logged a history)."""
    what = {stem: name for stem, _, _, name in FIGURES.values()}
    return [
        Figure(
            drawn.png(stem),
            f"{what[stem].capitalize()} over epochs, per row: the line is the median over the "
            "seeds, the band spans their minimum to maximum.",
        )
        for stem, curves in drawn.curves.items()
        if curves
    ]


def study_page(
    tracking_uri: str | None,
    parent_ids: Sequence[str],
    drawn: StudyFigures,
    rows_order: Sequence[str] = (),
) -> StudyPage:
    """The page's figures (from `drawn`), the study's recipe (rows in `rows_order`) and the
    parents' provenance."""
    return StudyPage(
        figures=page_figures(drawn),
        recipe=study_recipe(tracking_uri, parent_ids, rows_order),
        provenance=provenance_frame(tracking_uri, parent_ids),
    )
