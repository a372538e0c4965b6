"""Metric keys a trial logs per epoch and once at the end (`Metric`), and which of them the writer
logs and the report reads."""

from __future__ import annotations

from typing import Final


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


#: The phases of a step a rehearsal times (training.rehearse writes them, its table reads them).
PHASES: Final = ("data", "forward", "metalayer", "backward", "optimizer")

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
