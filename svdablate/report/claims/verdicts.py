"""Verdicts on the papers' claims (`claims.CLAIMS`) from a study's runs, at one error rate.

The procedure (docs/claims.md, "How a verdict is reached"):

1. Each claim that applies to the study (its scope: application, networks, datasets) and whose
   rows it ran is tested once per context (the varying axes its terms do not pin). Its test
   (`claim_tests`: Welch t, TOST, intersection-union, Fisher's exact, Poisson rates) gives two
   one-sided p-values, p_claimed (small: the claim holds) and p_opposite (small: its opposite
   holds), and one p = 2·min(p_claimed, p_opposite): for a t-test, the two-sided p.
2. The family is every claim tested in the report. Holm's step-down procedure (Holm 1979) over
   the family's p at α = 0.05 decides which claims get a verdict; the verdict's direction is the
   smaller one-sided p's: supported or contradicted. A decided claim is wrong only if its
   direction is wrong, and P(p ≤ a and the direction is wrong) ≤ a for every claim whatever the
   truth, so Holm holds the probability of any wrong verdict, supported or contradicted, at α
   under the global null, for any dependence between claims; with true effects present too,
   Shaffer (1980) proves it for independent tests, and tests/unit/test_claims_error_rate.py checks
   it for the report's dependent claims (20,000 simulated studies each way).
3. No data, no verdict: a row with fewer than two finished runs, identical seeds (one
   observation, no variance), or a κ trend without its histories leave the claim inconclusive
   with the reason, outside the family.
4. For an inconclusive claim: the seeds per row that would give 80 % power at the Holm level it
   would have to pass (`holm_levels`: α/(m − R) with R claims decided), if the observed effect
   and spread were the truth.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from svdablate.report.claims import samples as cs
from svdablate.report.claims.evidence import (
    NO_HISTORY,
    Evidence,
    count_evidence,
    lowest_evidence,
    t_evidence,
)
from svdablate.report.claims.model import (
    DIVERGED,
    ERROR,
    FAILURES,
    HIGHER,
    KAPPA_TREND,
    LOWER,
    Claim,
)
from svdablate.report.claims.power import MAX_SEEDS
from svdablate.report.claims.procedures import decision_p
from svdablate.report.claims.registry import CLAIMS
from svdablate.report.tables.notes import PAPER_LABELS
from svdablate.report.tables.rows import row_methods

ALPHA = 0.05
#: The runs' per-epoch median κ (`runs.metric_histories`), for the claims on κ trends.
History = pd.DataFrame | None
SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
CLAIM_COLUMNS = (
    "paper", "where", "application", "claim", "context", "rows", "quantity", "test",
    "direction", "values", "n", "estimate", "p_claimed", "p_opposite", "p", "p_holm",
    "holm_level", "verdict", "seeds_needed", "note",
)  # fmt: skip
_SYMBOLS = {LOWER: "<", HIGHER: ">"}


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values over the last axis (Holm 1979): sorted
    p_(i)·(m − i + 1), running maximum, at most 1. NaN entries are not in the family (m counts
    the others) and stay NaN."""
    shape = np.shape(pvalues)
    p = np.atleast_1d(np.asarray(pvalues, dtype=float))
    order = np.argsort(p, axis=-1, kind="stable")  # NaN last
    ranked = np.take_along_axis(p, order, axis=-1)
    m = np.sum(np.isfinite(p), axis=-1, keepdims=True)
    factors = m - np.arange(p.shape[-1])
    adjusted = np.fmax.accumulate(ranked * factors, axis=-1)  # fmax: NaN tails stay NaN below
    adjusted = np.where(np.isfinite(ranked), np.minimum(1.0, adjusted), np.nan)
    out = np.empty_like(adjusted)
    np.put_along_axis(out, order, adjusted, axis=-1)
    return out.reshape(shape)


def decide(
    p_claimed: np.ndarray, p_opposite: np.ndarray, alpha: float = ALPHA
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p, Holm-adjusted p, verdict) per claim, claims on the last axis (NaN: not tested):
    verdict +1 supported, −1 contradicted, 0 undecided."""
    p = decision_p(np.asarray(p_claimed, float), np.asarray(p_opposite, float))
    adjusted = holm(p)
    decided = adjusted <= alpha  # NaN compares False
    sign = np.where(np.asarray(p_claimed) <= np.asarray(p_opposite), 1, -1)
    return p, adjusted, np.where(decided, sign, 0)


def holm_levels(p: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """The threshold each claim's p meets in Holm's step-down (1-D): α/(m − j + 1) at its step
    j for a decided claim, α/(m − R) for the others (R decided: the level an undecided claim
    would have to reach, the others unchanged). NaN where p is NaN."""
    p = np.asarray(p, dtype=float)
    tested = np.isfinite(p)
    m = int(tested.sum())
    levels = np.full(len(p), np.nan)
    if not m:
        return levels
    decided = holm(p) <= alpha
    order = np.argsort(np.where(tested, p, np.inf), kind="stable")
    for step, i in enumerate(order[: int(decided.sum())]):
        levels[i] = alpha / (m - step)
    rest = tested & ~decided
    if rest.any():  # all decided: no level left to reach
        levels[rest] = alpha / (m - int(decided.sum()))
    return levels


def evidence_for(
    claim: Claim, part: pd.DataFrame, metric: str, history: pd.DataFrame | None
) -> Evidence | None:
    """The claim's evidence in one context of the runs (None when its rows are not there)."""
    if claim.lowest:
        found = cs.lowest_groups(claim, part, metric, history)
        return lowest_evidence(claim, *found) if found else None
    groups = cs.groups(claim, part, metric, history)
    if not groups:
        return None
    if claim.quantity in (DIVERGED, FAILURES):
        return count_evidence(claim, *groups) if len(groups) == 2 else None
    if claim.quantity == KAPPA_TREND:
        evidence = t_evidence(claim, groups, "{:+.2f}")
        if history is None:
            evidence.reason, evidence.note = NO_HISTORY, "the κ histories were not read"
        return evidence
    return t_evidence(claim, groups) if len(groups) >= 2 else None


def quantity_text(claim: Claim, metric: str) -> str:
    """What the claim's numbers are, e.g. 'final-epoch error (%)', 'log10 κ'."""
    if claim.quantity == ERROR:
        return f"{claim.epoch or metric}-epoch error (%)"
    return {
        DIVERGED: "diverged runs",
        FAILURES: "solver failures per epoch",
        KAPPA_TREND: "Δ log10 κ, last epoch − first",
    }.get(claim.quantity, "log10 κ")


def direction_text(claim: Claim) -> str:
    """'<', '>', '> -0.2' or '|Δ| < 0.2'."""
    if claim.lowest:
        return "< each"
    if claim.direction not in _SYMBOLS:
        return f"|Δ| < {claim.margin:g}"
    bound = f" {claim.bound:g}" if claim.bound else ""
    return _SYMBOLS[claim.direction] + bound


def _record(claim: Claim, context: str, metric: str, evidence: Evidence) -> dict[str, object]:
    return {
        "paper": PAPER_LABELS[claim.paper],
        "where": claim.where,
        "application": claim.application,
        "claim": claim.statement,
        "context": context,
        "rows": evidence.rows,
        "quantity": quantity_text(claim, metric),
        "test": claim.test,
        "direction": direction_text(claim),
        "values": evidence.values,
        "n": evidence.n,
        "estimate": evidence.estimate,
        "p_claimed": evidence.p_claimed,
        "p_opposite": evidence.p_opposite,
        "note": evidence.note,
        "_evidence": evidence,
    }


def _seeds_note(evidence: Evidence, seeds: int | None, level: float) -> str:
    """Why an undecided claim is undecided, and what would decide it."""
    if evidence.zero:
        return "no observed effect (zero to rounding): no number of seeds decides it"
    effect = "the observed effect"
    if evidence.against:
        effect += " (opposite to the claim)"
    if seeds is None:
        return f"{effect} would need more than {MAX_SEEDS} seeds per row"
    return f"{effect} would need about {seeds} seeds per row (80% power at Holm level {level:.2g})"


def _verdicts(frame: pd.DataFrame) -> pd.DataFrame:
    """p, Holm, verdicts, levels and the seeds of the undecided, for the whole family."""
    evidences: list[Evidence] = list(frame.pop("_evidence"))
    tested = np.array([not e.reason and np.isfinite(e.p_claimed) for e in evidences], bool)
    p_claimed = np.where(tested, frame["p_claimed"].to_numpy(float), np.nan)
    p_opposite = np.where(tested, frame["p_opposite"].to_numpy(float), np.nan)
    p, adjusted, verdict = decide(p_claimed, p_opposite)
    levels = holm_levels(p)
    frame["p"], frame["p_holm"], frame["holm_level"] = p, adjusted, levels
    verdicts, seeds, notes = [], [], []
    for i, evidence in enumerate(evidences):
        note, needed = evidence.note, np.nan
        if evidence.reason:
            verdicts.append(f"{INCONCLUSIVE} ({evidence.reason})")
        elif verdict[i]:
            verdicts.append(SUPPORTED if verdict[i] > 0 else CONTRADICTED)
        else:
            verdicts.append(INCONCLUSIVE)
            count = evidence.seeds(levels[i]) if evidence.seeds is not None else None
            needed = float(count) if count is not None else np.nan
            note = "; ".join(n for n in (note, _seeds_note(evidence, count, levels[i])) if n)
        seeds.append(needed)
        notes.append(note)
    frame["verdict"], frame["seeds_needed"], frame["note"] = verdicts, seeds, notes
    return frame


def claim_evidence(
    runs: pd.DataFrame, rows: Sequence[str], *, metric: str, kappa_history: History = None
) -> pd.DataFrame:
    """Every claim the study's `rows` can test, with its evidence on `runs` and no verdict yet:
    CLAIM_COLUMNS less the verdict's, plus `_evidence` and `_study_rows` (the study's rows the
    claim compares there), one row per claim and context, in `claims.CLAIMS` order."""
    runs = runs[runs["row"].isin(list(rows))]
    methods = row_methods(runs)
    records = []
    for claim in CLAIMS:
        for context, part in cs.contexts(claim, cs.scope_runs(claim, runs, methods)):
            evidence = evidence_for(claim, part, metric, kappa_history)
            if evidence is not None:
                record = _record(claim, context, metric, evidence)
                records.append({**record, "_study_rows": cs.study_rows(claim, part)})
    columns = [c for c in CLAIM_COLUMNS if c not in ("p", "p_holm", "holm_level", "verdict")]
    frame = pd.DataFrame.from_records(records, columns=[*columns, "_evidence", "_study_rows"])
    frame["seeds_needed"] = np.nan
    return frame


def table_claims(
    runs: pd.DataFrame, rows: Sequence[str], *, metric: str, kappa_history: History = None
) -> pd.DataFrame:
    """Every claim the study's `rows` can test, tested on `runs` (de-duplicated, canonical
    order); columns CLAIM_COLUMNS, one row per claim and context, in `claims.CLAIMS` order.
    kappa_history: the runs' per-epoch median κ (`runs.metric_histories`), for κ trends."""
    frame = claim_evidence(runs, rows, metric=metric, kappa_history=kappa_history)
    return _verdicts(frame)[list(CLAIM_COLUMNS)].reset_index(drop=True)
