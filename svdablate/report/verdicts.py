"""Test the papers' claims (`claims.CLAIMS`) on a study's runs: one-sided Welch tests, Holm.

For each claim whose rows the study ran (per value of the axes that vary and the claim does
not pin, e.g. per dataset): the contrast's estimate from the finished runs in canonical order,
a one-sided p-value for the paper's direction and one for the opposite, each family Holm-
corrected over the claims of the table, and a verdict at α = 0.05:
supported (claimed direction significant), contradicted (opposite direction significant),
inconclusive (neither; then the seeds per row the observed effect would need for 80 % power),
or inconclusive (n<2) when a side has fewer than two finished runs.
κ claims are tested on log10 κ (the last epoch's median κ of each run).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from svdablate.schema import Metric, TrialStatus

from .claims import CLAIMS, ERROR, HIGHER, LOWER, Claim, Term
from .notes import PAPER_LABELS
from .rows import paper_names, protocol_runs, row_methods
from .runs import VARIANT_AXES

ALPHA = 0.05
POWER = 0.8
MAX_SEEDS = 10_000
SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
CLAIM_COLUMNS = (
    "paper", "where", "application", "claim", "context", "rows", "quantity", "direction",
    "values", "n", "estimate", "p", "p_holm", "p_opposite", "p_opposite_holm", "verdict",
    "seeds_needed", "note",
)  # fmt: skip
_ERROR_KEYS = {"best": Metric.BEST_VAL_ERR, "final": Metric.FINAL_VAL_ERR}
_ALTERNATIVE = {LOWER: "less", HIGHER: "greater"}
_OPPOSITE = {LOWER: HIGHER, HIGHER: LOWER}


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979): sorted p_(i)·(m-i+1), running max, ≤ 1."""
    p = np.asarray(pvalues, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out = np.empty(m)
    out[order] = adjusted
    return out


def welch_contrast(groups: Sequence[tuple[int, np.ndarray]], direction: str) -> float:
    """One-sided p of Σ w·mean < 0 ('lower') or > 0 ('higher'), each group its own variance.

    Two groups weighted +1, -1: scipy's Welch test (ttest_ind, equal_var=False). Otherwise
    t = Σ w·mean / √(Σ w²s²/n) on Welch–Satterthwaite degrees of freedom (the same test).
    NaN when every group is constant.
    """
    alternative = _ALTERNATIVE[direction]
    if len(groups) == 2 and groups[0][0] == 1 and groups[1][0] == -1:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=RuntimeWarning)
            a, b = groups[0][1], groups[1][1]
            return float(stats.ttest_ind(a, b, equal_var=False, alternative=alternative).pvalue)
    parts = np.array([w * w * np.var(x, ddof=1) / len(x) for w, x in groups])
    se2 = parts.sum()
    if se2 == 0:
        return np.nan
    t = sum(w * np.mean(x) for w, x in groups) / math.sqrt(se2)
    df = se2**2 / sum(p**2 / (len(x) - 1) for p, (_, x) in zip(parts, groups, strict=True))
    return float(stats.t.cdf(t, df) if alternative == "less" else stats.t.sf(t, df))


def power(effect: float, sd: float, seeds: int, weights: Sequence[int], alpha: float) -> float:
    """Power of the one-sided t-test of a contrast with `seeds` per group whose true value is
    `effect` (groups of equal sd): noncentral t with df = k(seeds-1)."""
    df = len(weights) * (seeds - 1)
    noncentrality = abs(effect) / sd * math.sqrt(seeds / sum(w * w for w in weights))
    return float(stats.nct.sf(stats.t.ppf(1 - alpha, df), df, noncentrality))


def seeds_needed(
    effect: float, sd: float, weights: Sequence[int], alpha: float = ALPHA, target: float = POWER
) -> int | None:
    """Fewest seeds per row for `target` power at one-sided `alpha` if the observed effect and
    sd were the truth; None when there is no effect or it needs more than MAX_SEEDS."""
    if not (effect and np.isfinite(effect) and sd > 0 and np.isfinite(sd)):
        return None
    if power(effect, sd, MAX_SEEDS, weights, alpha) < target:
        return None
    low, high = 2, MAX_SEEDS  # power grows with the seeds: bisect for the first that is enough
    while low < high:
        mid = (low + high) // 2
        if power(effect, sd, mid, weights, alpha) >= target:
            high = mid
        else:
            low = mid + 1
    return low


def _pooled_sd(samples: Sequence[np.ndarray]) -> float:
    dof = sum(len(x) - 1 for x in samples)
    return math.sqrt(sum((len(x) - 1) * np.var(x, ddof=1) for x in samples) / dof)


def _sample(runs: pd.DataFrame, claim: Claim, metric: str) -> np.ndarray:
    done = runs[runs["status"] == TrialStatus.FINISHED]
    if claim.quantity == ERROR:
        values = done[_ERROR_KEYS[metric]].astype(float).to_numpy()
        return values[np.isfinite(values)]
    kappas = done[Metric.FINAL_KAPPA].astype(float).to_numpy()
    return np.log10(kappas[np.isfinite(kappas) & (kappas > 0)])


def _term_runs(runs: pd.DataFrame, term: Term) -> pd.DataFrame:
    mine = runs[runs["paper_row"] == term.row]
    if term.protocol is not None:
        mine, _ = protocol_runs(mine, term.protocol)
    if term.precision is not None:
        mine = mine[mine["precision"] == term.precision]
    return mine


def _label(runs: pd.DataFrame, term: Term, pinned: bool) -> str:
    name = "/".join(dict.fromkeys(runs["row"])) or term.row
    pins = [v for _, v in term.pins]
    return f"{name} [{', '.join(pins)}]" if pinned and pins else name


def _groups(claim: Claim, runs: pd.DataFrame, metric: str) -> list[tuple[int, str, np.ndarray]]:
    """(weight, label, sample) per distinct set of runs; [] when a term's rows are absent.

    Terms that select the same runs are merged (NS's standalone runs standing in for hybrid
    ones cancel out of a difference of gaps)."""
    pinned = len({t.pins for t in claim.terms}) > 1
    merged: dict[tuple[str, ...], list] = {}
    for term in claim.terms:
        mine = _term_runs(runs, term)
        if mine.empty:
            return []
        key = tuple(mine["run_id"])
        if key in merged:
            merged[key][0] += term.weight
        else:
            merged[key] = [term.weight, _label(mine, term, pinned), _sample(mine, claim, metric)]
    return [(w, label, x) for w, label, x in merged.values() if w]


def _lowest_groups(
    claim: Claim, runs: pd.DataFrame, metric: str
) -> list[list[tuple[int, str, np.ndarray]]]:
    """One pair (claimed row, other row) per other row of the paper in the runs."""
    best = _term_runs(runs, claim.terms[0])
    if best.empty:
        return []
    first = (1, _label(best, claim.terms[0], False), _sample(best, claim, metric))
    others = [r for r in dict.fromkeys(runs["paper_row"]) if r != claim.terms[0].row]
    pairs = []
    for other in others:
        mine = runs[runs["paper_row"] == other]
        pairs.append([first, (-1, _label(mine, Term(other), False), _sample(mine, claim, metric))])
    return pairs


def _describe(groups: list[tuple[int, str, np.ndarray]]) -> tuple[str, str, str]:
    """rows, values, n as text."""
    if len(groups) == 2 and groups[0][0] == 1 and groups[1][0] == -1:
        joiner, rows = " vs ", f"{groups[0][1]} vs {groups[1][1]}"
    else:
        joiner = ", "
        rows = " ".join(f"{'+' if w > 0 else '−'}{abs(w) if abs(w) != 1 else ''}{label}"
                        for w, label, _ in groups)  # fmt: skip
    values = joiner.join(f"{np.mean(x):.2f}" if len(x) else "–" for _, _, x in groups)
    return rows, values, joiner.join(str(len(x)) for _, _, x in groups)


def _test(claim: Claim, groups: list[tuple[int, str, np.ndarray]]) -> dict[str, object]:
    """estimate, p for the claim and for the opposite direction, sd=0/n<2 notes, seeds needed."""
    weighted = [(w, x) for w, _, x in groups]
    estimate = (
        float(sum(w * np.mean(x) for w, x in weighted))
        if all(len(x) for _, x in weighted)
        else np.nan
    )
    record: dict[str, object] = {"estimate": estimate, "p": np.nan, "p_opposite": np.nan}
    if any(len(x) < 2 for _, x in weighted):
        return {**record, "note": "n<2"}
    p = welch_contrast(weighted, claim.direction)
    if not np.isfinite(p):
        return {**record, "note": "sd=0"}
    sd = _pooled_sd([x for _, x in weighted])
    needed = seeds_needed(estimate, sd, [w for w, _ in weighted])
    return {
        **record,
        "p": p,
        "p_opposite": welch_contrast(weighted, _OPPOSITE[claim.direction]),
        "seeds_needed": np.nan if needed is None else float(needed),
        "note": "",
    }


def _test_lowest(claim: Claim, pairs: list[list[tuple[int, str, np.ndarray]]]) -> dict[str, object]:
    """Intersection-union: supported when below every other row (p = the largest pairwise p),
    contradicted when some row is significantly below (Bonferroni over the rows). The numbers
    shown (and the seeds needed) are those against the runner-up: the other row lowest on
    average."""
    tests = [(_test(claim, pair), pair) for pair in pairs]
    if any(t["note"] for t, _ in tests):
        short, pair = next((t, pair) for t, pair in tests if t["note"])
        return {**short, "groups": pair}
    runner_up, pair = min(tests, key=lambda tp: float(np.mean(tp[1][1][2])))
    p = max(float(t["p"]) for t, _ in tests)
    opposite = min(1.0, len(tests) * min(float(t["p_opposite"]) for t, _ in tests))
    return {**runner_up, "p": p, "p_opposite": opposite, "groups": pair}


def _record(claim: Claim, context: str, metric: str, tested: dict[str, object]) -> dict:
    groups = tested.pop("groups")
    rows, values, n = _describe(groups)  # type: ignore[arg-type]
    if claim.lowest:
        rows = f"{groups[0][1]} vs every other row (runner-up: {groups[1][1]})"  # type: ignore[index]
    quantity = f"{metric}-epoch error (%)" if claim.quantity == ERROR else "log10 κ"
    return {
        "paper": PAPER_LABELS[claim.paper],
        "where": claim.where,
        "application": claim.application,
        "claim": claim.statement,
        "context": context,
        "rows": rows,
        "quantity": quantity,
        "direction": "<" if claim.direction == LOWER else ">",
        "values": values,
        "n": n,
        "seeds_needed": np.nan,
        **tested,
    }


def _contexts(claim: Claim, runs: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The runs split by the axes that vary and that the claim does not pin."""
    pinned = {axis for t in claim.terms for axis, _ in t.pins}
    free = [a for a in VARIANT_AXES if a not in pinned and runs[a].nunique() > 1]
    if not free:
        return [("", runs)]
    return [
        (", ".join(str(v) for v in (key if isinstance(key, tuple) else (key,))), part)
        for key, part in runs.groupby(free, sort=True)
    ]


def _verdicts(frame: pd.DataFrame) -> pd.DataFrame:
    testable = frame["p"].notna()
    frame["p_holm"] = np.nan
    frame["p_opposite_holm"] = np.nan
    frame.loc[testable, "p_holm"] = holm(frame.loc[testable, "p"])
    frame.loc[testable, "p_opposite_holm"] = holm(frame.loc[testable, "p_opposite"])
    verdict = np.where(
        frame["p_holm"] < ALPHA,
        SUPPORTED,
        np.where(frame["p_opposite_holm"] < ALPHA, CONTRADICTED, INCONCLUSIVE),
    )
    frame["verdict"] = [
        f"{INCONCLUSIVE} ({note})" if note else v
        for v, note in zip(verdict, frame["note"], strict=True)
    ]
    concluded = frame["verdict"].isin([SUPPORTED, CONTRADICTED])
    frame.loc[concluded, "seeds_needed"] = np.nan
    frame["note"] = [
        _seeds_note(v, seeds, est, claim_dir)
        for v, seeds, est, claim_dir in zip(
            frame["verdict"],
            frame["seeds_needed"],
            frame["estimate"],
            frame["direction"],
            strict=True,
        )
    ]
    return frame


def _seeds_note(verdict: str, seeds: float, estimate: float, direction: str) -> str:
    if verdict != INCONCLUSIVE:
        return ""
    against = (estimate > 0) == (direction == "<")
    effect = "the observed effect (opposite to the claim)" if against else "the observed effect"
    if not np.isfinite(seeds):
        return f"{effect} would need more than {MAX_SEEDS} seeds per row"
    return f"{effect} would need about {int(seeds)} seeds per row"


def table_claims(runs: pd.DataFrame, rows: Sequence[str], *, metric: str) -> pd.DataFrame:
    """Every claim the study's `rows` can test, tested on `runs` (de-duplicated, canonical
    order); columns CLAIM_COLUMNS, one row per claim and context, in `claims.CLAIMS` order."""
    runs = runs[runs["row"].isin(list(rows))]
    methods = row_methods(runs)
    records = []
    for claim in CLAIMS:
        mine = runs[runs["application"] == claim.application]
        names = paper_names(list(dict.fromkeys(mine["row"])), methods, claim.paper)
        mine = mine.assign(paper_row=mine["row"].map(names)).dropna(subset=["paper_row"])
        for context, part in _contexts(claim, mine) if not mine.empty else []:
            if claim.lowest:
                pairs = _lowest_groups(claim, part, metric)
                if pairs:
                    records.append(_record(claim, context, metric, _test_lowest(claim, pairs)))
                continue
            groups = _groups(claim, part, metric)
            if len(groups) >= 2:
                records.append(
                    _record(claim, context, metric, {**_test(claim, groups), "groups": groups})
                )
    frame = pd.DataFrame.from_records(
        records,
        columns=[c for c in CLAIM_COLUMNS if c not in ("p_holm", "p_opposite_holm", "verdict")],
    )
    return _verdicts(frame)[list(CLAIM_COLUMNS)].reset_index(drop=True)
