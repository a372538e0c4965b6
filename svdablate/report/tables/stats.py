"""Statistics beyond the papers: Welch's t-test and a bootstrap CI against the baseline row."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

BOOTSTRAP_SEED = 0
BOOTSTRAP_RESAMPLES = 9999
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Comparison:
    """A row against the baseline: Welch p-value and bootstrap CI of mean(row) - mean(baseline).

    `note` is 'baseline' for the baseline row itself, 'n<2' when either side has fewer than two
    values (then p and the CI are NaN), 'sd=0' when both sides are constant (no t-test; the CI
    is still given), '' otherwise.
    """

    p_value: float
    ci_low: float
    ci_high: float
    note: str = ""


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def welch_p(sample: np.ndarray, baseline: np.ndarray) -> float:
    """Two-sided p-value of Welch's t-test (scipy.stats.ttest_ind, equal_var=False).

    scipy's precision-loss warning for a constant side is silenced: that case is exact.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
        return float(stats.ttest_ind(sample, baseline, equal_var=False).pvalue)


def bootstrap_ci(sample: np.ndarray, baseline: np.ndarray) -> tuple[float, float]:
    """95% percentile-bootstrap CI of mean(sample) - mean(baseline), resampling each side.

    Fixed generator (seed BOOTSTRAP_SEED) so the report is reproducible.
    """
    result = stats.bootstrap(
        (sample, baseline),
        _mean_difference,
        n_resamples=BOOTSTRAP_RESAMPLES,
        vectorized=True,
        paired=False,
        confidence_level=CONFIDENCE,
        method="percentile",
        rng=np.random.default_rng(BOOTSTRAP_SEED),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def compare(sample: np.ndarray, baseline: np.ndarray, *, is_baseline: bool = False) -> Comparison:
    """Welch p and bootstrap CI of the mean difference; 'n<2' when a side is too small."""
    if is_baseline:
        return Comparison(np.nan, np.nan, np.nan, "baseline")
    sample = np.asarray(sample, dtype=float)
    baseline = np.asarray(baseline, dtype=float)
    if len(sample) < 2 or len(baseline) < 2:
        return Comparison(np.nan, np.nan, np.nan, "n<2")
    low, high = bootstrap_ci(sample, baseline)
    if np.ptp(sample) == 0 and np.ptp(baseline) == 0:  # the t statistic is undefined
        return Comparison(np.nan, low, high, "sd=0")
    return Comparison(welch_p(sample, baseline), low, high)
