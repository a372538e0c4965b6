"""MLflow tag keys of a study's parent run and of each trial's child run (`Tag`), the tag and
param names the report reads (`CONTEXT_TAGS`, `CAPTION_PARAMS`, `PARENT_TAGS`) and `Role`."""

from __future__ import annotations

from typing import Final

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
