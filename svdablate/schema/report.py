"""What `svdablate report` prints and publishes: its layouts and error metrics, the parent run's
artifacts and per-row summary metrics, and the meta-layer speed experiment's names."""

from __future__ import annotations

import re
from typing import Final

from svdablate.schema.metrics import Metric
from svdablate.schema.rows import ROW_SEPARATOR

#: What `svdablate report` can print: the papers' table layouts, which error of a run (its formats
#: are the renderers `report.render.formats.FORMATS` registers).
REPORT_LAYOUTS: Final = (
    "summary",
    "eccv22-t1",
    "eccv22-t2",
    "eccv22-t3",
    "eccv22-t4",
    "eccv22-t5",
    "iccv21-t2",
    "iccv21-t3",
    "iccv21-t4",
    "iccv21-t5",
)
ERROR_METRICS: Final = ("best", "final")  # best epoch (the papers' convention) or final epoch

#: Artifacts of a parent run.
REPORT_ARTIFACT_DIR: Final = "report"
GRID_ARTIFACT: Final = "grid.json"

#: Per-row summary metrics `report.publish_study` logs on a parent run (`row_metric_key`):
#: mean and std over the finished seeds of the report's error metric (`{error}`:
#: best_val_err by default, final_val_err), median of their final κ, and how many finished.
ROW_STATS: Final = ("{error}_mean", "{error}_std", "final_kappa_median", "n_finished")

#: `benchmarks/metalayer_speed.py --tracking-uri` writes here; `report --layout iccv21-t5` reads.
SPEED_EXPERIMENT: Final = "metalayer-speed"
SPEED_PARAMS: Final = ("method", "batch", "dim", "dtype")
SPEED_METRICS: Final = ("fp_s", "bp_s")


def metric_key(text: str) -> str:
    """A row label or any text as a valid MLflow metric-key part (`SVD+NOG` → `SVD-NOG`)."""
    return re.sub(r"[^0-9A-Za-z_\-. /]", "-", text.replace(ROW_SEPARATOR, "-"))


def row_metric_key(stat: str, row: str, error: str = Metric.BEST_VAL_ERR) -> str:
    """A parent run's summary metric of one row: `best_val_err_mean/SVD-NOG` (ROW_STATS)."""
    return f"{stat.format(error=error)}/{metric_key(row)}"
