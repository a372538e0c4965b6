"""The tests behind the verdicts: each gives a claim's estimate and two one-sided p-values.

`p_claimed` is a valid p-value for "the claim is false" (a small one supports the claim) and
`p_opposite` for "the opposite is false" (a small one contradicts it); `verdicts.decide` turns
the pair into one p, 2·min(p_claimed, p_opposite), and one family-wise procedure. Each test is
a pure function of arrays (leading axes broadcast), so the same code serves the report and the
simulation that checks the error rate (tests/unit/test_claims_error_rate.py).

- Welch (`contrast_t`, `directional_p`): Σ w·mean over groups with their own variances, t on
  Welch–Satterthwaite degrees of freedom; two groups weighted +1, −1 is
  scipy.stats.ttest_ind(equal_var=False), one group is the one-sample t-test.
- TOST (`tost_p`, Schuirmann 1987): |θ| < margin is supported when both one-sided tests against
  the margins reject (p = the larger); contradicted when |θ| > margin (p = twice the smaller of
  the two tests beyond a margin, Bonferroni).
- Lowest (`lowest_p`): intersection-union (Berger 1982): supported when the row is below every
  other row (p = the largest pairwise p); contradicted when some row is below it (p = k times the
  smallest pairwise p of the opposite, Bonferroni over the k rows).
- Fisher (`fisher_p`): diverged runs of two rows, Fisher's exact test (scipy.stats.fisher_exact).
- Rate (`rate_p`): solver failures of two rows as Poisson counts over their epochs run; given
  the total, the first row's count is binomial with its share of the exposure under equal rates
  (the conditional test of Przyborowski & Wilenski 1940; scipy.stats.binomtest).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

LOWER, HIGHER = "lower", "higher"


def contrast_t(
    weights: np.ndarray, means: np.ndarray, variances: np.ndarray, ns: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(estimate, standard error, Welch–Satterthwaite df) of Σ w·mean; groups on the last axis.

    Every group needs n ≥ 2 and the variances must not all be zero (callers check)."""
    w = np.asarray(weights, dtype=float)
    parts = w * w * np.asarray(variances, dtype=float) / ns
    se2 = parts.sum(axis=-1)
    df = se2**2 / (parts**2 / (np.asarray(ns, dtype=float) - 1)).sum(axis=-1)
    estimate = (w * np.asarray(means, dtype=float)).sum(axis=-1)
    return estimate, np.sqrt(se2), df


def directional_p(
    estimate: np.ndarray, se: np.ndarray, df: np.ndarray, direction: str, bound: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """(p_claimed, p_opposite) of "θ < bound" (direction lower) or "θ > bound" (higher)."""
    t = (np.asarray(estimate) - bound) / se
    below, above = stats.t.cdf(t, df), stats.t.sf(t, df)
    return (below, above) if direction == LOWER else (above, below)


def tost_p(
    estimate: np.ndarray, se: np.ndarray, df: np.ndarray, margin: float
) -> tuple[np.ndarray, np.ndarray]:
    """(p_claimed, p_opposite) of "|θ| < margin" by two one-sided tests."""
    t_low = (np.asarray(estimate) + margin) / se  # against θ ≤ −margin
    t_high = (np.asarray(estimate) - margin) / se  # against θ ≥ +margin
    claimed = np.maximum(stats.t.sf(t_low, df), stats.t.cdf(t_high, df))
    beyond = np.minimum(stats.t.sf(t_high, df), stats.t.cdf(t_low, df))
    return claimed, np.minimum(1.0, 2.0 * beyond)


def lowest_p(pair_claimed: np.ndarray, pair_opposite: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(p_claimed, p_opposite) of "below every other row" from the pairwise p's (last axis)."""
    k = np.shape(pair_claimed)[-1]
    claimed = np.max(pair_claimed, axis=-1)
    return claimed, np.minimum(1.0, k * np.min(pair_opposite, axis=-1))


def fisher_p(
    events_a: int, runs_a: int, events_b: int, runs_b: int, direction: str
) -> tuple[float, float]:
    """(p_claimed, p_opposite) of "row a has a higher (lower) share of events than row b"."""
    table = [[events_a, runs_a - events_a], [events_b, runs_b - events_b]]
    greater = float(stats.fisher_exact(table, alternative="greater").pvalue)
    less = float(stats.fisher_exact(table, alternative="less").pvalue)
    return (greater, less) if direction == HIGHER else (less, greater)


def rate_p(
    events_a: int, exposure_a: float, events_b: int, exposure_b: float, direction: str
) -> tuple[float, float]:
    """(p_claimed, p_opposite) of "row a has a higher (lower) event rate than row b"; 1, 1
    when neither row had an event (nothing to compare)."""
    total = int(events_a + events_b)
    if total == 0:
        return 1.0, 1.0
    share = exposure_a / (exposure_a + exposure_b)
    greater = float(stats.binomtest(int(events_a), total, share, alternative="greater").pvalue)
    less = float(stats.binomtest(int(events_a), total, share, alternative="less").pvalue)
    return (greater, less) if direction == HIGHER else (less, greater)


def decision_p(p_claimed: np.ndarray, p_opposite: np.ndarray) -> np.ndarray:
    """One p per claim: 2·min(p_claimed, p_opposite), at most 1 (the two-sided p of a t-test).

    A verdict at level a needs the smaller one-sided p ≤ a/2, so P(wrong verdict) ≤ a/2 + a/2
    whatever the truth (at most one of the two verdicts is right, both are wrong on the
    boundary)."""
    return np.minimum(1.0, 2.0 * np.minimum(p_claimed, p_opposite))


def identical(values: np.ndarray) -> bool:
    """True when every value equals the first to rounding (8 ulps of the largest |value|):
    such seeds are one observation, with no variance to test."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return False
    scale = float(np.max(np.abs(values)))
    return float(np.ptp(values)) <= 8 * np.finfo(float).eps * scale


def numerically_zero(estimate: float, terms: np.ndarray) -> bool:
    """True when a contrast's estimate is zero to rounding: |estimate| ≤ 64 ulps of Σ|w·mean|
    (the terms it was summed from), e.g. 5.6e-17 from means of 20.0."""
    scale = float(np.sum(np.abs(terms)))
    return abs(estimate) <= 64 * np.finfo(float).eps * max(scale, np.finfo(float).tiny)
