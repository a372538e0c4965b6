"""Seeds per row an inconclusive claim would need: 80 % power, at the level its verdict is judged.

A claim is decided when the smaller of its two one-sided p-values is ≤ level/2, where level is
the Holm threshold it would have to pass (`verdicts.holm_levels`); so every estimate here is for
a one-sided test at `one_sided` = level/2 (level/(2k) for contradicting a lowest claim), if the
observed effect and spread were the truth.

- t-based claims (`seeds_for_t`): noncentral t with df = k(n−1) for k groups of n seeds
  (G*Power's t-test of a contrast), bisected over n.
- TOST (`seeds_for_tost`): the same noncentral t for both one-sided tests, P(both reject) ≥
  1 − P(miss low) − P(miss high).
- Diverged shares (`seeds_for_shares`): Cohen's h = 2·asin√p₁ − 2·asin√p₂ (Cohen 1988, §6.2),
  n = 2 (z₁₋ₐ + z₀.₈)² / h².
- Failure rates (`seeds_for_rates`): 2√X of a Poisson count has variance ≈ 1 (Anscombe 1948),
  n = (z₁₋ₐ + z₀.₈)² / (2 e (√r₁ − √r₂)²) for e epochs a run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats

POWER = 0.8
MAX_SEEDS = 10_000


def _fewest(enough: Callable[[int], bool]) -> int | None:
    """The fewest seeds in [2, MAX_SEEDS] for which `enough` holds (monotone), else None."""
    if not enough(MAX_SEEDS):
        return None
    low, high = 2, MAX_SEEDS
    while low < high:
        mid = (low + high) // 2
        if enough(mid):
            high = mid
        else:
            low = mid + 1
    return low


def _valid(effect: float, sd: float) -> bool:
    return bool(effect and np.isfinite(effect) and sd > 0 and np.isfinite(sd))


def t_power(
    effect: float, sd: float, seeds: int, weights: Sequence[int], one_sided: float
) -> float:
    """Power of the one-sided t-test at `one_sided` of a contrast whose true value is `effect`
    (distance from the claim's bound), `seeds` per group of equal sd: noncentral t."""
    df = len(weights) * (seeds - 1)
    noncentrality = abs(effect) / sd * math.sqrt(seeds / sum(w * w for w in weights))
    return float(stats.nct.sf(stats.t.ppf(1 - one_sided, df), df, noncentrality))


def seeds_for_t(
    effect: float, sd: float, weights: Sequence[int], one_sided: float, target: float = POWER
) -> int | None:
    """Fewest seeds per row for `target` power; None without an effect or beyond MAX_SEEDS."""
    if not _valid(effect, sd):
        return None
    return _fewest(lambda n: t_power(effect, sd, n, weights, one_sided) >= target)


def tost_power(
    estimate: float, margin: float, sd: float, seeds: int, weights: Sequence[int], one_sided: float
) -> float:
    """Lower bound of the power of TOST at `one_sided` each side if θ = `estimate`."""
    df = len(weights) * (seeds - 1)
    se = sd * math.sqrt(sum(w * w for w in weights) / seeds)
    critical = stats.t.ppf(1 - one_sided, df)
    miss_low = stats.nct.cdf(critical, df, (estimate + margin) / se)
    miss_high = stats.nct.sf(-critical, df, (estimate - margin) / se)
    return float(max(0.0, 1.0 - miss_low - miss_high))


def seeds_for_tost(
    estimate: float,
    margin: float,
    sd: float,
    weights: Sequence[int],
    one_sided: float,
    target: float = POWER,
) -> int | None:
    """Seeds per row to show |θ| < margin (estimate inside) or |θ| > margin (outside, one test
    at one_sided/2 against the nearer margin); None on the margin or beyond MAX_SEEDS."""
    if not (sd > 0 and np.isfinite(sd) and np.isfinite(estimate)):
        return None
    if abs(estimate) < margin:
        return _fewest(lambda n: tost_power(estimate, margin, sd, n, weights, one_sided) >= target)
    return seeds_for_t(abs(estimate) - margin, sd, weights, one_sided / 2, target)


def seeds_for_shares(
    share_a: float, share_b: float, one_sided: float, target: float = POWER
) -> int | None:
    """Runs per row to tell two shares of diverged runs apart (Cohen's h)."""
    h = 2 * math.asin(math.sqrt(share_a)) - 2 * math.asin(math.sqrt(share_b))
    if not h:
        return None
    z = stats.norm.ppf(1 - one_sided) + stats.norm.ppf(target)
    needed = max(2, math.ceil(2 * z * z / (h * h)))
    return needed if needed <= MAX_SEEDS else None


def seeds_for_rates(
    rate_a: float, rate_b: float, epochs: float, one_sided: float, target: float = POWER
) -> int | None:
    """Runs per row to tell two failure rates (per epoch) apart, `epochs` a run."""
    gap = math.sqrt(rate_a) - math.sqrt(rate_b)
    if not gap or not epochs > 0:
        return None
    z = stats.norm.ppf(1 - one_sided) + stats.norm.ppf(target)
    needed = max(1, math.ceil(z * z / (2 * epochs * gap * gap)))
    return needed if needed <= MAX_SEEDS else None
