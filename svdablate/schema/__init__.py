"""Every name a writer and a reader share, defined once (torch-free: the report imports it).

One module per kind of name, all re-exported here (`from svdablate.schema import Tag`):

- `tags`: MLflow tags of a study's parent run and of each trial's child run (`Tag`), the tags and
  params the report reads, `Role`;
- `statuses`: `TrialStatus`, `StudyStatus` and MLflow's own `RunStatus`;
- `metrics`: the metric names a trial logs per epoch and once at the end (`Metric`);
- `results`: what a trial reports to Tune each epoch (`TrialResult`, its keys `ResultKey`);
- `spool`: the driver's spooled MLflow writes (`CreateRun`, `LogRun`, `TerminateRun`, `LogText`,
  `SetStudyStatus`) and their JSON lines;
- `search`: the one reader of a study's child runs (`search_child_runs`: every page of MLflow's
  search_runs);
- `rows`: the row grammar (`SVD+NOG+OW`: a method, then `+`-joined treatments in any order and
  case; `format_row` writes them in the canonical order `NOG SN OL OW OLR`) and the papers' names
  of our methods (`paper_method_name`);
- `report`: the report's layouts and error metrics, the parent run's artifacts and per-row
  summary metrics, the meta-layer speed experiment's names (the report's formats are its
  renderers', `report/render/formats.py`).

The orchestrator writes these names (trial configs become params under their field names), the
report reads them, and nothing else spells them out.
"""

from svdablate.schema.metrics import EPOCH_METRICS, FINAL_OF, RUN_METRICS, Metric
from svdablate.schema.report import (
    ERROR_METRICS,
    GRID_ARTIFACT,
    REPORT_ARTIFACT_DIR,
    REPORT_LAYOUTS,
    ROW_STATS,
    SPEED_EXPERIMENT,
    SPEED_METRICS,
    SPEED_PARAMS,
    metric_key,
    row_metric_key,
)
from svdablate.schema.results import ResultKey, TrialResult
from svdablate.schema.rows import (
    PAPERS,
    ROW_SEPARATOR,
    TREATMENT_ORDER,
    Row,
    canonical_treatments,
    format_row,
    paper_method_name,
    paper_row_name,
    split_row,
)
from svdablate.schema.search import (
    PARENT_RUN_TAG,
    SEARCH_PAGE,
    search_all_runs,
    search_child_runs,
)
from svdablate.schema.spool import (
    SPOOL_OPS,
    CreateRun,
    LogRun,
    LogText,
    SetStudyStatus,
    SpoolOp,
    TerminateRun,
    parse_spool_record,
    spool_record,
)
from svdablate.schema.statuses import RunStatus, StudyStatus, TrialStatus
from svdablate.schema.tags import (
    CAPTION_PARAMS,
    CONTEXT_TAGS,
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    PARENT_TAGS,
    PREFIX,
    Role,
    Tag,
)

__all__ = [
    "CAPTION_PARAMS",
    "CONTEXT_TAGS",
    "EPOCH_METRICS",
    "ERROR_METRICS",
    "EXPERIMENT_KIND",
    "EXPERIMENT_KIND_TAG",
    "FINAL_OF",
    "GRID_ARTIFACT",
    "PAPERS",
    "PARENT_RUN_TAG",
    "PARENT_TAGS",
    "PREFIX",
    "REPORT_ARTIFACT_DIR",
    "REPORT_LAYOUTS",
    "ROW_SEPARATOR",
    "ROW_STATS",
    "RUN_METRICS",
    "SEARCH_PAGE",
    "SPEED_EXPERIMENT",
    "SPEED_METRICS",
    "SPEED_PARAMS",
    "SPOOL_OPS",
    "TREATMENT_ORDER",
    "CreateRun",
    "LogRun",
    "LogText",
    "Metric",
    "ResultKey",
    "Role",
    "Row",
    "RunStatus",
    "SetStudyStatus",
    "SpoolOp",
    "StudyStatus",
    "Tag",
    "TerminateRun",
    "TrialResult",
    "TrialStatus",
    "canonical_treatments",
    "format_row",
    "metric_key",
    "paper_method_name",
    "paper_row_name",
    "parse_spool_record",
    "row_metric_key",
    "search_all_runs",
    "search_child_runs",
    "split_row",
    "spool_record",
]
