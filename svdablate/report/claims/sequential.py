"""Seeds until decided: the claims re-tested after every wave of seeds, valid under optional
stopping (docs/sequential.md has the argument and its references).

The design is fixed before the first trial: looks at n_0, 2·n_0, … seeds per row up to
`max_seeds` (`look_schedule`), and at look k the level a_k = α(t_k) − α(t_{k−1}) that the
Lan–DeMets Pocock-type spending function α(t) = α·ln(1 + (e − 1)·t) gives at the information
fraction t_k = n_k / max_seeds (Lan & DeMets 1983; `look_levels`). At each look Holm's
step-down runs at level a_k over the whole family, fixed at its size m on the first look, a
claim decided before counted as rejected (p 0) and a claim not tested now as p 1
(`sequential_step`). Verdicts are final once given. A claim that needs more seeds than the
budget allows is closed (a non-binding futility stop: it can only lose verdicts).

Why the chance of any wrong verdict stays ≤ α whenever and however the study stops: the rows of
a claim still open at look k got every wave, so its p at look k is the fixed-n p of the first
n_k seeds, valid at that n whatever happened before; Holm at a_k then gives a wrong verdict at
look k with probability ≤ a_k (as `verdicts.decide` does at α), and a union bound over the
looks gives ≤ Σ a_k ≤ α. Stopping early only drops looks. tests/unit/test_claims_sequential.py
checks it on 20,000 simulated studies, and that peeking at α every look would not hold it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from svdablate.report.claims.power import MAX_SEEDS
from svdablate.report.claims.procedures import decision_p
from svdablate.report.claims.verdicts import (
    ALPHA,
    CLAIM_COLUMNS,
    CONTRADICTED,
    INCONCLUSIVE,
    SUPPORTED,
    claim_evidence,
    holm,
)

SPENDING = "Lan-DeMets Pocock-type"
#: Why a study that runs until decided stopped (`UntilDecided.stopped`).
ALL_DECIDED = "every claim decided"
ALL_CLOSED = "every claim decided or beyond the budget"
LAST_LOOK = "max seeds reached"
OUT_OF_TIME = "budget hours: the next wave would not fit"
NO_CLAIMS = "the rows test no claim"
SEEDS_PER_ROW = " seeds per row)"
TRIALS_LEFT = "trials left unfinished: `svdablate resume` continues"


def spent(t: np.ndarray | float, alpha: float = ALPHA) -> np.ndarray:
    """α spent by information fraction t (Lan & DeMets 1983, Pocock type): α·ln(1 + (e−1)t)."""
    return alpha * np.log1p((math.e - 1.0) * np.clip(np.asarray(t, dtype=float), 0.0, 1.0))


def look_schedule(first: int, max_seeds: int) -> tuple[int, ...]:
    """Seeds per row at each look: first, 2·first, … and max_seeds last."""
    if first < 2 or max_seeds < first:
        raise ValueError(f"looks need 2 ≤ first seeds ({first}) ≤ max seeds ({max_seeds})")
    looks = list(range(first, max_seeds, first))
    return (*looks, max_seeds)


def look_levels(looks: Sequence[int], alpha: float = ALPHA) -> np.ndarray:
    """The level a_k each look's Holm runs at: the α spent between the previous look and this."""
    cumulative = spent(np.asarray(looks, dtype=float) / looks[-1], alpha)
    return np.diff(cumulative, prepend=0.0)


def sequential_step(
    p_claimed: np.ndarray,
    p_opposite: np.ndarray,
    verdict: np.ndarray,
    tested: np.ndarray,
    level: float,
) -> np.ndarray:
    """The verdicts after one look (claims on the last axis; +1 supported, −1 contradicted,
    0 undecided): Holm at `level` over every claim, those decided before as p 0, the untested
    (`tested` False, or a NaN p) as p 1; a verdict once given is kept."""
    p = decision_p(np.asarray(p_claimed, float), np.asarray(p_opposite, float))
    p = np.where(np.asarray(tested, bool) & np.isfinite(p), p, 1.0)
    p = np.where(verdict != 0, 0.0, p)
    new = (verdict == 0) & (holm(p) <= level) & (p < 1.0)
    sign = np.where(np.asarray(p_claimed) <= np.asarray(p_opposite), 1, -1)
    return np.where(new, sign, verdict)


@dataclass
class UntilDecided:
    """A study run until decided: its design and how far it got (the parent run's
    `Tag.UNTIL_DECIDED`, JSON). `closed`: claim key → the look it was closed at as beyond
    the budget; `claims`: one line per claim, its sequential verdict."""

    looks: list[int]
    max_seeds: int
    budget_hours: float | None = None
    alpha: float = ALPHA
    waves: int = 0  # waves of seeds added after the first look's trials
    trials: int = 0  # trials run by the study in all
    seconds: float = 0.0  # their wall time
    stopped: str = ""
    closed: dict[str, int] = field(default_factory=dict)
    claims: list[str] = field(default_factory=list)

    def to_tag(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_tag(cls, text: str) -> UntilDecided:
        return cls(**json.loads(text))

    @property
    def seconds_per_trial(self) -> float:
        return self.seconds / self.trials if self.trials else math.nan

    def summary(self) -> str:
        """One line for the report: waves, seeds, trials, why it stopped."""
        seeds = " → ".join(str(n) for n in self.looks[: self.waves + 1])
        return (
            f"seeds until decided ({SPENDING} α spending, α = {self.alpha}, looks at "
            f"{', '.join(map(str, self.looks))} seeds per row; docs/sequential.md): "
            f"{self.waves + 1} look(s), {self.waves} wave(s) added, seeds per row {seeds}, "
            f"{self.trials} trials in {self.seconds / 60:.1f} min; stopped: "
            f"{self.stopped or 'running'}"
        )


def claim_key(record: pd.Series) -> str:
    """A claim in one context, the same at every look."""
    return f"{record['where']} | {record['claim']} | {record['context']}"


def _aligned(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The look's claims in the first look's order (a claim absent there: a row of NaN)."""
    index = [claim_key(r) for _, r in frame.iterrows()]
    return frame.set_axis(index).reindex(keys)


def _testable(evidence: object) -> bool:
    return (
        evidence is not None
        and not isinstance(evidence, float)
        and not evidence.reason  # type: ignore[attr-defined]
        and bool(np.isfinite(evidence.p_claimed))  # type: ignore[attr-defined]
    )


def replay(frames: Sequence[pd.DataFrame], design: UntilDecided) -> tuple[pd.DataFrame, np.ndarray]:
    """The sequential verdicts from each look's claim evidence (`verdicts.claim_evidence` on
    the runs of the first n_k seeds, one frame per look reached): CLAIM_COLUMNS plus `look`,
    `open` and `_study_rows`, each claim shown at the look that decided or closed it, else the
    last. Also returns the verdicts (+1, −1, 0) in the first look's claim order."""
    levels = look_levels(design.looks, design.alpha)
    keys = [claim_key(r) for _, r in frames[0].iterrows()]
    m, last = len(keys), len(frames) - 1
    verdict, shown = np.zeros(m, int), np.zeros(m, int)
    adjusted, level_at = np.full(m, np.nan), np.full(m, np.nan)
    for k, frame in enumerate(frames):
        frame = _aligned(frame, keys)
        live = (verdict == 0) & np.array([design.closed.get(key, k) >= k for key in keys])
        tested = live & np.array([_testable(e) for e in frame["_evidence"]], dtype=bool)
        p_claimed, p_opposite = (frame[c].to_numpy(float) for c in ("p_claimed", "p_opposite"))
        ranked = np.where(
            verdict != 0, 0.0, np.where(tested, decision_p(p_claimed, p_opposite), 1.0)
        )
        before = verdict
        verdict = sequential_step(p_claimed, p_opposite, verdict, tested, levels[k])
        now = live | (verdict != before)
        shown = np.where(now, k, shown)
        adjusted = np.where(now, holm(ranked), adjusted)
        level_at = np.where(now, levels[k], level_at)
    out = pd.DataFrame(
        [_aligned(frames[int(k)], keys).iloc[i] for i, k in enumerate(shown)]
    ).reset_index(drop=True)
    out["p"] = decision_p(out["p_claimed"].to_numpy(float), out["p_opposite"].to_numpy(float))
    out["p_holm"], out["holm_level"], out["look"] = adjusted, level_at, shown
    out["open"] = [
        v == 0 and design.closed.get(key, last + 1) > last and s == last
        for v, key, s in zip(verdict, keys, shown, strict=True)
    ]
    out["verdict"] = [
        _verdict_text(v, key, s, design) for v, key, s in zip(verdict, keys, shown, strict=True)
    ]
    final = levels[-1] / max(1, m - int((verdict != 0).sum()))
    out["seeds_needed"] = [
        _seeds(e, final) if not v else np.nan
        for e, v in zip(out["_evidence"], verdict, strict=True)
    ]
    out["note"] = [
        _seeds_note(note, seeds, final) if not v else note
        for note, seeds, v in zip(out["note"].fillna(""), out["seeds_needed"], verdict, strict=True)
    ]
    return out[[*CLAIM_COLUMNS, "look", "open", "_evidence", "_study_rows"]], verdict


def _seeds_note(note: str, seeds: float, level: float) -> str:
    """What an undecided claim would need: seeds per row for 80% power at the last look."""
    if np.isfinite(seeds):
        need = f"would need about {seeds:.0f} seeds per row (80% power at level {level:.2g})"
    else:
        need = f"no effect that {MAX_SEEDS} seeds per row would decide"
    return "; ".join(n for n in (note, need) if n)


def _seeds(evidence: object, level: float) -> float:
    seeds = getattr(evidence, "seeds", None)
    count = seeds(level) if seeds is not None and _testable(evidence) else None
    return float(count) if count is not None else np.nan


def is_sequential(claims: pd.DataFrame) -> bool:
    """True for claims from `replay` (their verdicts name the look that gave them)."""
    return bool(len(claims)) and bool(
        claims["verdict"].str.contains(SEEDS_PER_ROW, regex=False).all()
    )


def _verdict_text(verdict: int, key: str, look: int, design: UntilDecided) -> str:
    seeds = design.looks[look]
    if verdict:
        word = SUPPORTED if verdict > 0 else CONTRADICTED
        return f"{word} (look {look + 1}, {seeds}{SEEDS_PER_ROW}"
    if key in design.closed:
        return f"{INCONCLUSIVE} (beyond the budget at look {look + 1}, {seeds}{SEEDS_PER_ROW}"
    return f"{INCONCLUSIVE} (after look {look + 1}, {seeds}{SEEDS_PER_ROW}"


def beyond_budget(seeds_needed: np.ndarray, affordable: int) -> np.ndarray:
    """Open claims the budget cannot decide: no estimate (no effect, or beyond power.MAX_SEEDS)
    or more seeds per row than `affordable`."""
    needed = np.asarray(seeds_needed, dtype=float)
    return ~np.isfinite(needed) | (needed > affordable)


def looks_reached(
    runs: pd.DataFrame,
    rows: list[str],
    looks: Sequence[int],
    metric: str,
    history: pd.DataFrame | None,
) -> list[pd.DataFrame]:
    """Each look's claim evidence: the claims tested on the first n_k seeds of every row."""
    first = runs["seed"].min()
    return [
        claim_evidence(runs[runs["seed"] < first + n], rows, metric=metric, kappa_history=history)
        for n in looks
    ]


def sequential_claims(
    runs: pd.DataFrame, history: pd.DataFrame | None, design: UntilDecided, metric: str
) -> pd.DataFrame:
    """The sequential verdicts of de-duplicated `runs` at the looks the design reached."""
    looks = design.looks[: design.waves + 1]
    frames = looks_reached(runs, list(runs.attrs["rows"]), looks, metric, history)
    if frames[0].empty:
        return frames[0]
    return replay(frames, design)[0]
