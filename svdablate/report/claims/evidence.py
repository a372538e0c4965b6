"""From a claim's samples (`claim_samples.Group`) to its evidence: what was compared, the
estimate, the two one-sided p-values of its test (`claim_tests`), or why there is no test, and
how many seeds an undecided claim would need at a given level (`power`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from svdablate.report.claims import power
from svdablate.report.claims import procedures as ct
from svdablate.report.claims.model import DIVERGED, FAILURES, HIGHER, LOWER, WITHIN, Claim
from svdablate.report.claims.samples import Group

NO_DATA, IDENTICAL, NO_HISTORY = "n<2", "identical seeds", "no κ history"


@dataclass
class Evidence:
    """What a claim's test saw. `reason` (NO_DATA, IDENTICAL, NO_HISTORY, '') says why there is
    no test, `note` says it in words; `seeds(level)` estimates the seeds per row that would
    decide it at a two-sided level; `zero`: the estimate is zero to rounding; `against`: it
    lies on the opposite side of the claim."""

    rows: str
    values: str
    n: str
    estimate: float = np.nan
    p_claimed: float = np.nan
    p_opposite: float = np.nan
    reason: str = ""
    note: str = ""
    zero: bool = False
    against: bool = False
    seeds: Callable[[float], int | None] | None = None


def _pooled_sd(samples: list[np.ndarray]) -> float:
    dof = sum(len(x) - 1 for x in samples)
    return float(np.sqrt(sum((len(x) - 1) * np.var(x, ddof=1) for x in samples) / dof))


def _describe(groups: list[Group], fmt: str = "{:.2f}") -> tuple[str, str, str]:
    """rows, values (means), n as text."""
    if len(groups) == 2 and groups[0].weight == 1 and groups[1].weight == -1:
        joiner, rows = " vs ", f"{groups[0].label} vs {groups[1].label}"
    else:
        joiner = ", "
        rows = " ".join(
            f"{'+' if g.weight > 0 else '−'}{abs(g.weight) if abs(g.weight) != 1 else ''}{g.label}"
            for g in groups
        )
    values = joiner.join(fmt.format(g.mean) if g.n else "–" for g in groups)
    return rows, values, joiner.join(str(g.n) for g in groups)


def untestable(groups: list[Group]) -> tuple[str, str]:
    """(reason, note) when a group cannot enter a t-test, else ('', '')."""
    for g in groups:
        if g.n < 2:
            return NO_DATA, f"{g.label}: {g.n} finished run(s), a t-test needs two"
    for g in groups:
        if ct.identical(g.values):
            return IDENTICAL, (
                f"every run of {g.label} gives {g.values[0]:.4g}: identical seeds are one "
                "observation, with no variance to test"
            )
    return "", ""


def _against(claim: Claim, estimate: float) -> bool:
    if claim.direction == WITHIN:
        return abs(estimate) > claim.margin
    side = estimate - claim.bound
    return side > 0 if claim.direction == LOWER else side < 0


def t_evidence(claim: Claim, groups: list[Group], fmt: str = "{:.2f}") -> Evidence:
    """A Welch contrast (TOST for an equivalence claim; one group: the one-sample t-test)."""
    evidence = Evidence(*_describe(groups, fmt))
    reason, note = untestable(groups)
    weights = np.array([g.weight for g in groups], dtype=float)
    if all(g.n for g in groups):
        evidence.estimate = float(sum(g.weight * g.mean for g in groups))
    if reason:
        evidence.reason, evidence.note = reason, note
        return evidence
    means = np.array([g.mean for g in groups])
    variances = np.array([np.var(g.values, ddof=1) for g in groups])
    estimate, se, df = ct.contrast_t(weights, means, variances, np.array([g.n for g in groups]))
    if claim.direction == WITHIN:
        p_claimed, p_opposite = ct.tost_p(estimate, se, df, claim.margin)
    else:
        p_claimed, p_opposite = ct.directional_p(estimate, se, df, claim.direction, claim.bound)
    evidence.p_claimed, evidence.p_opposite = float(p_claimed), float(p_opposite)
    evidence.zero = ct.numerically_zero(evidence.estimate - claim.bound, weights * means)
    evidence.against = not evidence.zero and _against(claim, evidence.estimate)
    sd = _pooled_sd([g.values for g in groups])
    w = [g.weight for g in groups]
    if claim.direction == WITHIN:
        evidence.seeds = lambda level: power.seeds_for_tost(
            evidence.estimate, claim.margin, sd, w, level / 2
        )
    elif not evidence.zero:
        effect = evidence.estimate - claim.bound
        evidence.seeds = lambda level: power.seeds_for_t(effect, sd, w, level / 2)
    return evidence


def lowest_evidence(claim: Claim, best: Group, others: list[Group]) -> Evidence:
    """The claimed row against each other row of its table: intersection-union; the numbers
    shown are against the runner-up (the other row lowest on average)."""
    with_runs = [i for i, g in enumerate(others) if g.n]
    runner = min(with_runs, key=lambda i: others[i].mean) if with_runs else 0
    rows = f"{best.label} vs each other row of its table (runner-up: {others[runner].label})"
    shown = t_evidence(claim, [best, others[runner]])
    evidence = Evidence(rows, shown.values, shown.n, shown.estimate)
    testable = [i for i, g in enumerate(others) if not untestable([g])[0]]
    reason, note = untestable([best])
    if not reason and not testable:
        reason, note = untestable(others)
    if reason:
        evidence.reason, evidence.note = reason, note
        return evidence
    pair_claimed, pair_opposite = np.ones(len(others)), np.ones(len(others))
    for i in testable:
        pair = t_evidence(claim, [best, others[i]])
        pair_claimed[i], pair_opposite[i] = pair.p_claimed, pair.p_opposite
    p_claimed, p_opposite = ct.lowest_p(pair_claimed, pair_opposite)
    evidence.p_claimed, evidence.p_opposite = float(p_claimed), float(p_opposite)
    skipped = [g.label for i, g in enumerate(others) if i not in testable]
    if skipped:
        evidence.note = f"not comparable (n<2 or identical seeds): {', '.join(skipped)}"
    evidence.zero, evidence.against = shown.zero, shown.against
    pair_seeds = shown.seeds
    if runner in testable and pair_seeds is not None:
        # contradicting needs the runner-up's p below level/(2k): Bonferroni over the k rows
        divisor = len(others) if shown.against else 1
        evidence.seeds = lambda level: pair_seeds(level / divisor)
    return evidence


def count_evidence(claim: Claim, a: Group, b: Group) -> Evidence:
    """Diverged runs (Fisher's exact test) or solver failures per epoch (Poisson rates)."""
    rows = f"{a.label} vs {b.label}"
    if not (a.n and b.n):
        empty = a if not a.n else b
        return Evidence(rows, "–", f"{a.n} vs {b.n}", reason=NO_DATA,
                        note=f"{empty.label}: no finished or diverged run")  # fmt: skip
    events_a, events_b = float(a.values.sum()), float(b.values.sum())
    if claim.quantity == DIVERGED:
        values = f"{events_a:.0f}/{a.n} vs {events_b:.0f}/{b.n} diverged"
        share_a, share_b = events_a / a.n, events_b / b.n
        p = ct.fisher_p(int(events_a), a.n, int(events_b), b.n, claim.direction)
        evidence = Evidence(rows, values, f"{a.n} vs {b.n}", share_a - share_b, *p)
        evidence.seeds = lambda level: power.seeds_for_shares(share_a, share_b, level / 2)
    elif claim.quantity == FAILURES:
        exposure_a, exposure_b = float(a.exposure.sum()), float(b.exposure.sum())
        values = (
            f"{events_a:.0f} in {exposure_a:.0f} epochs vs {events_b:.0f} in {exposure_b:.0f} "
            "epochs"
        )
        rate_a, rate_b = events_a / exposure_a, events_b / exposure_b
        p = ct.rate_p(int(events_a), exposure_a, int(events_b), exposure_b, claim.direction)
        evidence = Evidence(rows, values, f"{a.n} vs {b.n}", rate_a - rate_b, *p)
        epochs = (exposure_a + exposure_b) / (a.n + b.n)
        evidence.seeds = lambda level: power.seeds_for_rates(rate_a, rate_b, epochs, level / 2)
        if not events_a + events_b:
            evidence.note = "no solver failure in either row"
    else:
        raise ValueError(f"not a count claim: {claim.quantity!r}")
    evidence.zero = evidence.estimate == 0
    sign = evidence.estimate > 0 if claim.direction == HIGHER else evidence.estimate < 0
    evidence.against = not evidence.zero and not sign
    return evidence
