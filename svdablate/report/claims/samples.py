"""Which runs a claim reads, and the sample of each of its rows (`Group`).

A claim applies to the runs of its scope (application, networks, datasets: `claim_model.Scope`),
split by every axis that varies there and that its terms do not pin (dataset, model, protocol,
precision): one test per part. A term's runs are its paper row's, under its pinned protocol and
precision (an NS row without hybrid runs stands in with its standalone ones, ICCV'21 §3.4).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from svdablate.report.claims.model import DIVERGED, ERROR, FAILURES, KAPPA, KAPPA_TREND, Claim, Term
from svdablate.report.reading.runs import VARIANT_AXES
from svdablate.report.tables.rows import paper_names, protocol_runs
from svdablate.schema import Metric, TrialStatus

_ERROR_KEYS = {"best": Metric.BEST_VAL_ERR, "final": Metric.FINAL_VAL_ERR}


@dataclass(frozen=True)
class Group:
    """One row of a claim: its weight, label, per-run values, and per-run exposure (epochs run,
    for failure rates; ones otherwise)."""

    weight: int
    label: str
    values: np.ndarray
    exposure: np.ndarray = field(default_factory=lambda: np.ones(0))

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.n else np.nan


def scope_runs(claim: Claim, runs: pd.DataFrame, methods: dict[str, str]) -> pd.DataFrame:
    """The runs in the claim's scope, with their row's paper name in 'paper_row' (runs of rows
    the paper has no name for dropped)."""
    scope = claim.scope
    mine = runs[runs["application"] == scope.application]
    if scope.models is not None:
        mine = mine[mine["model"].isin(scope.models)]
    if scope.datasets is not None:
        mine = mine[mine["dataset"].isin(scope.datasets)]
    names = paper_names(list(dict.fromkeys(mine["row"])), methods, claim.paper)
    return mine.assign(paper_row=mine["row"].map(names)).dropna(subset=["paper_row"])


def contexts(claim: Claim, runs: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The runs split by the axes that vary and that the claim does not pin: (label, runs)."""
    if runs.empty:
        return []
    pinned = {axis for t in claim.terms for axis, _ in t.pins}
    free = [a for a in VARIANT_AXES if a not in pinned and runs[a].nunique() > 1]
    if not free:
        return [("", runs)]
    return [
        (", ".join(str(v) for v in (key if isinstance(key, tuple) else (key,))), part)
        for key, part in runs.groupby(free, sort=True)
    ]


def term_runs(runs: pd.DataFrame, term: Term) -> pd.DataFrame:
    """The runs of a term: its paper row under its pinned protocol and precision."""
    mine = runs[runs["paper_row"] == term.row]
    if term.protocol is not None:
        mine, _ = protocol_runs(mine, term.protocol)
    if term.precision is not None:
        mine = mine[mine["precision"] == term.precision]
    return mine


def label(runs: pd.DataFrame, term: Term, pinned: bool) -> str:
    """The row as the study names it, with its pins when the claim's terms differ in them."""
    name = "/".join(dict.fromkeys(runs["row"])) or term.row
    pins = [v for _, v in term.pins]
    return f"{name} [{', '.join(pins)}]" if pinned and pins else name


def _finished(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"] == TrialStatus.FINISHED]


def _done(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"].isin(TrialStatus.DONE)]


def kappa_changes(runs: pd.DataFrame, history: pd.DataFrame) -> np.ndarray:
    """Per finished run: log10 κ of its last epoch minus its first (runs without both dropped)."""
    ids = set(_finished(runs)["run_id"])
    mine = history[history["run_id"].isin(ids) & (history["value"] > 0)]
    mine = mine[np.isfinite(mine["value"])].sort_values(["run_id", "step"], kind="stable")
    ends = mine.groupby("run_id", sort=True)["value"].agg(["first", "last", "size"])
    ends = ends[ends["size"] >= 2]
    return (np.log10(ends["last"]) - np.log10(ends["first"])).to_numpy(dtype=float)


def sample(
    claim: Claim, runs: pd.DataFrame, metric: str, history: pd.DataFrame | None
) -> tuple[np.ndarray, np.ndarray]:
    """(values, exposure) of the claim's quantity over the runs (see `claim_model`)."""
    if claim.quantity == ERROR:
        values = _finished(runs)[_ERROR_KEYS[claim.epoch or metric]].astype(float).to_numpy()
        values = values[np.isfinite(values)]
    elif claim.quantity == KAPPA:
        kappas = _finished(runs)[Metric.FINAL_KAPPA].astype(float).to_numpy()
        values = np.log10(kappas[np.isfinite(kappas) & (kappas > 0)])
    elif claim.quantity == KAPPA_TREND:
        values = kappa_changes(runs, history) if history is not None else np.zeros(0)
    elif claim.quantity == DIVERGED:
        values = (_done(runs)["status"] == TrialStatus.DIVERGED).to_numpy(dtype=float)
    elif claim.quantity == FAILURES:
        done = _done(runs)
        values = done[Metric.FAILURES_TOTAL].astype(float).fillna(0.0).to_numpy()
        epochs = done[Metric.EPOCHS_COMPLETED].astype(float).to_numpy()
        return values, np.where(np.isfinite(epochs) & (epochs > 0), epochs, 1.0)
    else:
        raise ValueError(f"unknown quantity {claim.quantity!r}")
    return values, np.ones(len(values))


def groups(
    claim: Claim, runs: pd.DataFrame, metric: str, history: pd.DataFrame | None
) -> list[Group]:
    """One Group per distinct set of runs of the claim's terms; [] when a term's row is absent.

    Terms that select the same runs are merged (NS's standalone runs standing in for hybrid
    ones cancel out of a difference of gaps)."""
    pinned = len({t.pins for t in claim.terms}) > 1
    merged: dict[tuple[str, ...], Group] = {}
    for term in claim.terms:
        mine = term_runs(runs, term)
        if mine.empty:
            return []
        key = tuple(mine["run_id"])
        if key in merged:
            old = merged[key]
            merged[key] = Group(old.weight + term.weight, old.label, old.values, old.exposure)
        else:
            values, exposure = sample(claim, mine, metric, history)
            merged[key] = Group(term.weight, label(mine, term, pinned), values, exposure)
    return [g for g in merged.values() if g.weight]


def lowest_groups(
    claim: Claim, runs: pd.DataFrame, metric: str, history: pd.DataFrame | None
) -> tuple[Group, list[Group]] | None:
    """(the claimed row, the other rows of its table present here), None when it is absent or
    alone."""
    best = term_runs(runs, claim.terms[0])
    if best.empty:
        return None
    first = Group(1, label(best, claim.terms[0], False), *sample(claim, best, metric, history))
    others = []
    for row in claim.among:
        term = Term(row, -1, claim.terms[0].protocol, claim.terms[0].precision)
        mine = term_runs(runs, term)
        if not mine.empty:
            values, exposure = sample(claim, mine, metric, history)
            others.append(Group(-1, label(mine, term, False), values, exposure))
    return (first, others) if others else None


def study_rows(claim: Claim, runs: pd.DataFrame) -> tuple[str, ...]:
    """The study's rows (labels) whose runs the claim compares in `runs` (one context)."""
    terms = [
        *claim.terms,
        *(Term(row, -1, claim.terms[0].protocol, claim.terms[0].precision) for row in claim.among),
    ]
    found = [r for t in terms for r in term_runs(runs, t)["row"]]
    return tuple(dict.fromkeys(found))


def scope_text(claim: Claim) -> str:
    """The claim's scope in a few words (docs and notes)."""
    parts = [claim.scope.application]
    if claim.scope.models:
        parts.append("/".join(claim.scope.models))
    if claim.scope.datasets:
        parts.append("/".join(claim.scope.datasets))
    return ", ".join(parts)
