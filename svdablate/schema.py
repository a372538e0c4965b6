"""Every name a writer and a reader share, defined once (torch-free: the report imports it).

- MLflow tags of a study's parent run and of each trial's child run (`Tag`), their values
  (`Role`, `TrialStatus`, `StudyStatus`), the metric names a trial logs per epoch and once at the
  end (`Metric`), artifact paths, and the meta-layer speed experiment's names.
- The row grammar: `SVD+NOG+OW` is a meta-layer method followed by `+`-joined treatments, in any
  order and case; `format_row` writes them in the canonical order `NOG SN OL OW OLR`.
- The papers' names of our methods (`paper_method_name`), so a row can be matched with the
  numbers a paper prints.
- What a trial reports to Tune each epoch (`TrialResult`, its keys `ResultKey`), the driver's
  spooled MLflow writes (`CreateRun`, `LogRun`, `TerminateRun`, `SetStudyStatus`), and the one
  reader of a study's child runs (`search_child_runs`: every page of MLflow's search_runs).

The orchestrator writes these names (trial configs become params under their field names), the
report reads them, and nothing else spells them out.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Final

PREFIX: Final = "svdablate."


class Tag:
    """MLflow tag keys (parent run: study-wide; child run: one trial)."""

    ROLE = PREFIX + "role"
    STATUS = PREFIX + "status"
    GRID_ID = PREFIX + "grid_id"
    # parent run
    PRESET = PREFIX + "preset"
    ROWS = PREFIX + "rows"  # JSON list of row labels, table order
    APPLICATION = PREFIX + "application"
    DATASET = PREFIX + "dataset"  # the real dataset (also under --smoke); comma-joined on a parent
    MODEL = PREFIX + "model"
    PROTOCOL = PREFIX + "protocol"
    SMOKE = PREFIX + "smoke"  # "true" when every trial ran on FakeData
    OW_MAP = PREFIX + "ow_map"  # the OW operator the study ran (table captions name it)
    CLAIMS = PREFIX + "claims"  # the report's verdicts, one line each
    UNTIL_DECIDED = PREFIX + "until_decided"  # run --until-decided: design, waves, why it stopped
    # child run
    ROW = PREFIX + "row"
    SEED = PREFIX + "seed"
    CONFIG_HASH = PREFIX + "config_hash"
    TRIAL_ID = PREFIX + "trial_id"
    METHOD = PREFIX + "method"  # canonical meta-layer method of the row
    PRECISION = PREFIX + "precision"
    METHOD_USED = PREFIX + "method_used"  # the last epoch's solver (`ns` before a hybrid switch)
    ERROR = PREFIX + "error"  # the last error of a failed trial: its type and message
    SET_ASIDE = PREFIX + "checkpoint_set_aside"  # an unreadable state.pt kept there (and why)
    DEVICE = PREFIX + "device"  # the device the trial resolved
    EIGH_DEVICE = PREFIX + "eigh_device"  # where its eigh ran, and the measurement that chose it
    # provenance (parent run)
    VERSION_PREFIX = PREFIX + "version."  # + svdablate, torch, ray, mlflow
    HOST = PREFIX + "host"
    PYTHON = PREFIX + "python"


#: MLflow's experiment tag that makes its UI open an experiment on its runs (model training),
#: not on MLflow 3's GenAI traces page.
EXPERIMENT_KIND_TAG: Final = "mlflow.experimentKind"
EXPERIMENT_KIND: Final = "custom_model_development"


#: The per-trial tags that also describe a variant of a row (the report splits rows by them).
CONTEXT_TAGS: Final = {
    "application": Tag.APPLICATION,
    "dataset": Tag.DATASET,
    "model": Tag.MODEL,
    "protocol": Tag.PROTOCOL,
    "precision": Tag.PRECISION,
}
#: Trial params (flattened `TrialConfig` field names) the report reads for its captions'
#: fidelity notes (`report.fidelity`), by the column name it gives them.
CAPTION_PARAMS: Final = {
    "solver": "model_options.solver",
    "ow_map": "ow_map",
    "normalization": "normalization",
    "grad_clip_norm": "grad_clip_norm",
    "classifier_lr_factor": "classifier_lr_factor",
    "layer4_stride1": "model_options.layer4_stride1",
}
#: Parent tags `report` reads, by the short name it uses.
PARENT_TAGS: Final = {
    "preset": Tag.PRESET,
    "grid_id": Tag.GRID_ID,
    "application": Tag.APPLICATION,
    "dataset": Tag.DATASET,
    "model": Tag.MODEL,
    "protocol": Tag.PROTOCOL,
    "smoke": Tag.SMOKE,
    "ow_map": Tag.OW_MAP,
    "status": Tag.STATUS,
    "until_decided": Tag.UNTIL_DECIDED,
}


class Role:
    """Values of `Tag.ROLE`."""

    PARENT = "parent"
    TRIAL = "trial"


class TrialStatus:
    """Values of `Tag.STATUS` on a child run. A diverged trial is a result, not a failure."""

    RUNNING = "running"
    FINISHED = "finished"
    DIVERGED = "diverged"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # its study was stopped (signal, killed driver): resumable
    ALL = (FINISHED, DIVERGED, FAILED, RUNNING, INTERRUPTED)
    DONE = (FINISHED, DIVERGED)  # never trained again by resume or extend
    PENDING = "pending"  # no child run yet: counted, never a tag value


class StudyStatus:
    """Values of `Tag.STATUS` on a parent run."""

    RUNNING = "running"
    FINISHED = "finished"  # every trial finished or diverged
    FAILED = "failed"  # some trial failed after its retries
    INTERRUPTED = "interrupted"  # Ctrl-C / SIGTERM: resumable
    ALL = (RUNNING, FINISHED, FAILED, INTERRUPTED)


class RunStatus:
    """MLflow's own run statuses (`RunInfo.status`), as the writer sets and the report reads."""

    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"
    #: A parent run's MLflow status for each study status.
    OF_STUDY: Final = {
        StudyStatus.RUNNING: RUNNING,
        StudyStatus.FINISHED: FINISHED,
        StudyStatus.FAILED: FAILED,
        StudyStatus.INTERRUPTED: KILLED,
    }


class Metric:
    """Metric keys. Per epoch (step = epoch index from 0) unless marked final."""

    TRAIN_LOSS = "train_loss"
    VAL_ERR = "val_err"  # top-1 validation error, %
    VAL_ERR5 = "val_err5"  # top-5, % (≥ 5 classes)
    BEST_VAL_ERR = "best_val_err"  # best so far; its last value is the run's best epoch
    BEST_VAL_ERR5 = "best_val_err5"
    # κ = λmax/λmin of the batch covariance P of eq. 2 (the papers' κ), over the epoch's samples
    KAPPA_MEAN = "kappa_mean"
    KAPPA_MEDIAN = "kappa_median"
    KAPPA_MAX = "kappa_max"
    # κ of P + εI, the matrix the decorrelated BN whitens (≈ 1 + λmax/ε): named apart
    KAPPA_RIDGED_MEDIAN = "kappa_ridged_median"
    LAMBDA_RATIO = "lambda_ratio"  # λ1/λ2
    FAILURES = "failures"  # solver failures in the epoch
    FAILURES_TOTAL = "failures_total"
    PRE_SVD_GRAD_NORM = "pre_svd_grad_norm"  # as the step uses it: after clipping, before NOG
    PRE_SVD_LR = "pre_svd_lr"
    GRAD_NORM = "grad_norm"  # all parameters' gradient before clipping (where the recipe clips)
    EPOCH_SECONDS = "epoch_seconds"
    DIVERGED = "diverged"  # 0/1
    EPOCHS_COMPLETED = "epochs_completed"
    # final (logged once, at the last epoch's step)
    FINAL_VAL_ERR = "final_val_err"
    FINAL_VAL_ERR5 = "final_val_err5"
    FINAL_KAPPA = "final_kappa"  # median κ of the last epoch
    FINAL_KAPPA_RIDGED = "final_kappa_ridged"


#: What a trial reports each epoch and the writer logs (numbers only).
EPOCH_METRICS: Final = (
    Metric.TRAIN_LOSS,
    Metric.VAL_ERR,
    Metric.VAL_ERR5,
    Metric.BEST_VAL_ERR,
    Metric.BEST_VAL_ERR5,
    Metric.KAPPA_MEAN,
    Metric.KAPPA_MEDIAN,
    Metric.KAPPA_MAX,
    Metric.KAPPA_RIDGED_MEDIAN,
    Metric.LAMBDA_RATIO,
    Metric.FAILURES,
    Metric.FAILURES_TOTAL,
    Metric.PRE_SVD_GRAD_NORM,
    Metric.PRE_SVD_LR,
    Metric.GRAD_NORM,
    Metric.EPOCH_SECONDS,
    Metric.DIVERGED,
)
#: Final metrics of a child run and the epoch metric each one is the last value of.
FINAL_OF: Final = {
    Metric.FINAL_VAL_ERR: Metric.VAL_ERR,
    Metric.FINAL_VAL_ERR5: Metric.VAL_ERR5,
    Metric.FINAL_KAPPA: Metric.KAPPA_MEDIAN,
    Metric.FINAL_KAPPA_RIDGED: Metric.KAPPA_RIDGED_MEDIAN,
}
#: What the report reads of a child run (latest value of each).
RUN_METRICS: Final = (
    Metric.FINAL_VAL_ERR,
    Metric.FINAL_VAL_ERR5,
    Metric.BEST_VAL_ERR,
    Metric.BEST_VAL_ERR5,
    Metric.FINAL_KAPPA,
    Metric.FINAL_KAPPA_RIDGED,
    Metric.FAILURES_TOTAL,
    Metric.EPOCHS_COMPLETED,
)


class ResultKey:
    """Keys of a trial's report to Tune besides its metrics (`TrialResult`)."""

    EPOCH = "epoch"  # the epoch just trained, from 0
    ERROR = "error"  # a deterministic failure, reported instead of raised (never retried)
    METHOD_USED = "method_used"  # the meta-layer solver the epoch ran (`ns` before a hybrid switch)
    DEVICE = "device"  # the device the trial resolved
    EIGH_DEVICE = "eigh_device"  # where its eigendecomposition ran (`eigh_device`), and why
    STATUS = "status"  # of `train_trial`'s return: finished or diverged
    SET_ASIDE = "checkpoint_set_aside"  # its unreadable checkpoint was kept there: it restarts


@dataclass(frozen=True)
class TrialResult:
    """What a trial reports to Tune after an epoch (or instead of one: `error`), and what the
    driver's MLflow writer reads back from Tune's flat result dict."""

    epoch: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # `Metric` names
    method_used: str = ""
    device: str = ""
    eigh_device: str = ""
    error: str | None = None
    set_aside: str | None = None  # where its unreadable checkpoint was kept (and why)

    def as_report(self) -> dict[str, Any]:
        """The flat dict Tune takes (`tune.report`)."""
        if self.error is not None:
            return {ResultKey.ERROR: self.error}
        if self.set_aside is not None:
            return {ResultKey.SET_ASIDE: self.set_aside}
        return {
            ResultKey.EPOCH: self.epoch,
            **self.metrics,
            ResultKey.METHOD_USED: self.method_used,
            ResultKey.DEVICE: self.device,
            ResultKey.EIGH_DEVICE: self.eigh_device,
        }

    @classmethod
    def from_report(cls, result: dict[str, Any]) -> TrialResult:
        """A result Tune hands a callback: its epoch, its `Metric` values (numbers only; Tune's
        own keys are left out), the solver and device, or the error, or a set-aside checkpoint."""
        if result.get(ResultKey.ERROR):
            return cls(error=str(result[ResultKey.ERROR]))
        if result.get(ResultKey.SET_ASIDE):
            return cls(set_aside=str(result[ResultKey.SET_ASIDE]))
        names = {v for k, v in vars(Metric).items() if k.isupper()}
        return cls(
            epoch=int(result[ResultKey.EPOCH]) if ResultKey.EPOCH in result else None,
            metrics={k: v for k, v in result.items() if k in names and isinstance(v, int | float)},
            method_used=str(result.get(ResultKey.METHOD_USED, "")),
            device=str(result.get(ResultKey.DEVICE) or ""),
            eigh_device=str(result.get(ResultKey.EIGH_DEVICE) or ""),
        )


# --------------------------------------------------------------------------- the spool's operations


@dataclass(frozen=True)
class CreateRun:
    """Create a trial's child run (tags, params, and the data MLflow's `log_input` records)."""

    OP: ClassVar[str] = "create"
    trial: str
    tags: dict[str, str]
    params: dict[str, str]
    dataset: dict[str, str] | None = None


@dataclass(frozen=True)
class LogRun:
    """Log metrics (each `[key, value, timestamp ms, step]`) and tags on a trial's child run."""

    OP: ClassVar[str] = "log"
    trial: str
    metrics: list[list[Any]] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TerminateRun:
    """End a trial's child run with an MLflow status (`RunStatus`)."""

    OP: ClassVar[str] = "terminate"
    trial: str
    status: str


@dataclass(frozen=True)
class LogText:
    """Log a text file (`file`) as an artifact of a trial's child run, e.g. a failed trial's
    traceback."""

    OP: ClassVar[str] = "text"
    trial: str
    text: str
    file: str


@dataclass(frozen=True)
class SetStudyStatus:
    """Set the parent run's status (`StudyStatus`)."""

    OP: ClassVar[str] = "parent"
    status: str


SpoolOp = CreateRun | LogRun | TerminateRun | LogText | SetStudyStatus
SPOOL_OPS: Final = {op.OP: op for op in (CreateRun, LogRun, TerminateRun, LogText, SetStudyStatus)}


def spool_record(op: SpoolOp) -> dict[str, Any]:
    """An operation as the spool's JSON object: `{"op": "log", "trial": …, …}`."""
    return {"op": op.OP, **asdict(op)}


def parse_spool_record(record: dict[str, Any]) -> SpoolOp:
    """A spool line's JSON object as its operation; ValueError for an unknown or malformed one."""
    fields = dict(record)
    kind = fields.pop("op", None)
    if kind not in SPOOL_OPS:
        raise ValueError(f"unknown spool operation {kind!r}")
    try:
        return SPOOL_OPS[kind](**fields)
    except TypeError as exc:
        raise ValueError(f"malformed spool operation {kind!r}: {exc}") from None


# --------------------------------------------------------------------------- reading child runs

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


#: What `svdablate report` can print: formats, the papers' table layouts, which error of a run.
REPORT_FORMATS: Final = ("rich", "markdown", "latex", "csv", "html")
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

# --------------------------------------------------------------------------- row grammar

#: Treatments of the Pre-SVD layer in canonical order (ECCV'22 §4–5); `treatments.TREATMENTS`
#: registers exactly these.
TREATMENT_ORDER: Final = ("NOG", "SN", "OL", "OW", "OLR")
ROW_SEPARATOR: Final = "+"


@dataclass(frozen=True)
class Row:
    """A table row: how the meta-layer is written (`method`) and the treatments, canonical order.

    `method` is the spelling of the row (`SVD`, `MPN-COV`, `iSQRT-COV`); what it means is the
    meta-layer registry's business (`metalayers.resolve_method`).
    """

    method: str
    treatments: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return format_row(self.method, self.treatments)


def split_row(text: str) -> Row:
    """`svd+olr+NOG` → Row('svd', ('NOG', 'OLR')): treatments upper-cased, in canonical order.

    Syntax only: an unknown treatment stays (after the known ones, sorted) for the registries to
    reject; an empty text or a duplicated treatment raises ValueError.
    """
    parts = [p.strip() for p in str(text).split(ROW_SEPARATOR)]
    if not parts or not parts[0] or any(not p for p in parts[1:]):
        raise ValueError(
            f"bad row {text!r}: write a method and '+'-joined treatments, e.g. SVD+NOG+OW+OLR"
        )
    treatments = [p.upper() for p in parts[1:]]
    twice = sorted({t for t in treatments if treatments.count(t) > 1})
    if twice:
        raise ValueError(f"treatment {twice[0]} appears twice in row {text!r}")
    known = [t for t in TREATMENT_ORDER if t in treatments]
    unknown = sorted(t for t in treatments if t not in TREATMENT_ORDER)
    return Row(parts[0], (*known, *unknown))


def format_row(method: str, treatments: tuple[str, ...] | list[str] = ()) -> str:
    """The row label: method, then the treatments in canonical order, `+`-joined."""
    ordered = [t for t in TREATMENT_ORDER if t in treatments]
    ordered += sorted(t for t in treatments if t not in TREATMENT_ORDER)
    return ROW_SEPARATOR.join([method, *ordered])


# --------------------------------------------------------------------------- the papers' names

PAPERS: Final = ("eccv22", "iccv21")
#: canonical method → the name each paper prints (published.csv uses these).
_PAPER_METHOD_NAMES: Final = {
    "svd": {"eccv22": "SVD", "iccv21": "MPN-COV"},
    "ns": {"eccv22": "NS", "iccv21": "iSQRT-COV"},
    "svd-pade": "SVD-Pade",
    "svd-taylor": "SVD-Taylor",
    "svd-newton": "SVD-Newton",
    "svd-trunc": "SVD-Trunc",
    "svd-topn": "SVD-TopN",
    "svd-pi": "SVD-PI",
    "mpa-lya": "MPA-Lya",
}


def paper_method_name(method: str, paper: str) -> str | None:
    """The name `paper` gives the canonical meta-layer `method` (None when it has none)."""
    names = _PAPER_METHOD_NAMES.get(method)
    if isinstance(names, dict):
        return names.get(paper)
    return names


def paper_row_name(method: str, treatments: tuple[str, ...], paper: str) -> str | None:
    """The row as `paper` names it, e.g. ('ns', ()) in iccv21 → 'iSQRT-COV'."""
    name = paper_method_name(method, paper)
    return None if name is None else format_row(name, treatments)


def metric_key(text: str) -> str:
    """A row label or any text as a valid MLflow metric-key part (`SVD+NOG` → `SVD-NOG`)."""
    return re.sub(r"[^0-9A-Za-z_\-. /]", "-", text.replace(ROW_SEPARATOR, "-"))


def row_metric_key(stat: str, row: str, error: str = Metric.BEST_VAL_ERR) -> str:
    """A parent run's summary metric of one row: `best_val_err_mean/SVD-NOG` (ROW_STATS)."""
    return f"{stat.format(error=error)}/{metric_key(row)}"
