"""Issue 25, seeds until decided: the sequential procedure (`claims.sequential`) keeps the chance
of any wrong verdict at or below α although it looks after every wave, and it has power.

Simulated studies of the demo's shape: five rows, five claims sharing the SVD row (four
contrasts against it on one quantity, one on another), looks at 5, 10, 15, 20 seeds per row,
each claim re-tested on the first n_k seeds by the report's Welch test while it is undecided,
verdicts final once given. Every look is run (a study that stops early only drops looks), so
these are the most verdicts the procedure can give.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from claim_runs import runs_frame

from svdablate.report.claims.procedures import contrast_t, directional_p
from svdablate.report.claims.sequential import (
    UntilDecided,
    beyond_budget,
    look_levels,
    look_schedule,
    replay,
    sequential_step,
    spent,
)
from svdablate.report.claims.verdicts import ALPHA, claim_evidence

STUDIES = 20_000
LOOKS = look_schedule(5, 20)
MC = 3 * np.sqrt(ALPHA * (1 - ALPHA) / STUDIES)
ROWS = 5


def _welch(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    means = np.stack([a.mean(-1), b.mean(-1)], -1)
    variances = np.stack([a.var(-1, ddof=1), b.var(-1, ddof=1)], -1)
    return contrast_t(np.array([1, -1]), means, variances, np.full(2, a.shape[-1]))


def simulate(
    rng: np.random.Generator, effects: np.ndarray, levels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(verdicts, the look at which every claim was decided: len(LOOKS) if never), studies on
    axis 0; `effects`: the true value of each claim's contrast (claimed lower)."""
    first = rng.normal(0.0, 1.0, (STUDIES, ROWS, LOOKS[-1]))
    second = rng.normal(0.0, 1.0, (STUDIES, 2, LOOKS[-1]))
    first[:, 1:] += effects[:4, None]
    second[:, 1] += effects[4]
    verdict = np.zeros((STUDIES, 5), int)
    done_at = np.full(STUDIES, len(LOOKS))
    for k, n in enumerate(LOOKS):
        pairs = [(first[:, r, :n], first[:, 0, :n]) for r in range(1, ROWS)]
        pairs.append((second[:, 1, :n], second[:, 0, :n]))
        p = [directional_p(*_welch(a, b), "lower") for a, b in pairs]
        p_claimed, p_opposite = (np.stack([q[i] for q in p], -1) for i in (0, 1))
        verdict = sequential_step(p_claimed, p_opposite, verdict, verdict == 0, levels[k])
        done_at = np.where((done_at == len(LOOKS)) & (verdict != 0).all(-1), k, done_at)
    return verdict, done_at


def _wrong(verdict: np.ndarray, effects: np.ndarray) -> np.ndarray:
    truth = -np.sign(effects)  # claimed lower: a negative contrast supports it
    return ((verdict != 0) & (verdict != truth)).any(-1)


def test_the_spending_function_spends_alpha_once_over_the_looks():
    levels = look_levels(LOOKS)
    assert LOOKS == (5, 10, 15, 20) and levels.sum() == pytest.approx(ALPHA)
    assert (levels > 0).all() and spent(0.0) == 0.0 and spent(1.0) == pytest.approx(ALPHA)
    assert look_schedule(4, 10) == (4, 8, 10)
    with pytest.raises(ValueError):
        look_schedule(5, 3)


def test_under_the_null_peeking_every_wave_keeps_any_wrong_verdict_at_most_alpha():
    effects = np.zeros(5)
    verdict, _ = simulate(np.random.default_rng(2501), effects, look_levels(LOOKS))
    rate = float(_wrong(verdict, effects).mean())
    print(f"\nnull, {STUDIES} studies, looks {LOOKS}: any wrong verdict {rate:.4f}")
    assert ALPHA / 4 <= rate <= ALPHA + MC
    # the same looks each at the full α (the fixed-n report after every wave) exceed α
    naive, _ = simulate(np.random.default_rng(2501), effects, np.full(len(LOOKS), ALPHA))
    naive_rate = float(_wrong(naive, effects).mean())
    print(f"peeking at α = {ALPHA} every look: any wrong verdict {naive_rate:.4f}")
    assert naive_rate > ALPHA + MC


def test_with_effects_it_decides_early_and_wrong_verdicts_stay_at_most_alpha():
    """Three claims true (1.5 sd), one false (the row is 1 sd higher), one on the null."""
    effects = np.array([-1.5, -1.5, 1.0, 0.0, -1.5])
    verdict, done_at = simulate(np.random.default_rng(2502), effects, look_levels(LOOKS))
    right = (verdict == -np.sign(effects)) & (effects != 0)
    power = right.mean(0)
    wrong = float(_wrong(verdict, effects).mean())
    print(f"\neffects {effects}: P(right verdict) per claim {np.round(power, 3)}, wrong {wrong}")
    assert wrong <= ALPHA + MC
    assert (power[effects < 0] > 0.8).all() and power[2] > 0.4
    strong = np.full(5, -2.0)
    verdict, done_at = simulate(np.random.default_rng(2503), strong, look_levels(LOOKS))
    seeds = np.array([*LOOKS, LOOKS[-1]])[done_at]
    print(
        f"all five true at 2 sd: all decided {float((verdict == 1).all(-1).mean()):.3f}, "
        f"mean seeds per row at the stop {seeds.mean():.1f} of {LOOKS[-1]}"
    )
    assert (verdict == 1).all(-1).mean() > 0.9 and seeds.mean() < 12


def test_a_closed_claim_gets_no_verdict_and_the_budget_rule():
    verdict = sequential_step(
        np.array([1e-6, 1e-6]),
        np.array([1.0, 1.0]),
        np.zeros(2, int),
        np.array([True, False]),
        0.01,
    )
    assert list(verdict) == [1, 0]
    assert list(beyond_budget(np.array([8.0, 30.0, np.nan]), 20)) == [False, True, True]


def _looks(samples: dict[str, list[float]], looks: tuple[int, ...]) -> list[pd.DataFrame]:
    runs = runs_frame(samples)
    rows = list(samples)
    return [claim_evidence(runs[runs["seed"] < n], rows, metric="best") for n in looks]


def test_replay_decides_each_claim_at_its_look_and_shows_that_looks_numbers():
    """Demo rows, 8 seeds: OW's κ far below SVD's from the first look; the rest noise."""
    rng = np.random.default_rng(9)
    rows = ["SVD", "SVD+NOG", "SVD+OW", "SVD+NOG+OW+OLR", "NS"]
    samples = {r: list(rng.normal(2.0, 0.5, 8)) for r in rows}
    samples["SVD+OW"] = list(rng.normal(-3.0, 0.1, 8))
    design = UntilDecided(looks=[4, 8], max_seeds=8)
    frame, verdict = replay(_looks(samples, (4, 8)), design)
    assert len(frame) == 6 and (verdict != 0).sum() >= 1
    decided = frame[frame["verdict"].str.startswith("supported")]
    assert decided["verdict"].str.contains("look 1, 4 seeds").any()
    assert (decided["n"].str.contains("4 vs 4")).any()
    assert set(frame.loc[frame["open"], "look"]) <= {1}
    closed = UntilDecided(looks=[4, 8], max_seeds=8, closed={k: 0 for k in _keys(frame)})
    frame2, verdict2 = replay(_looks(samples, (4, 8)), closed)
    assert (np.abs(verdict2) <= np.abs(verdict)).all() and not frame2["open"].any()
    assert frame2["verdict"].str.contains("beyond the budget").sum() == (verdict2 == 0).sum()
    undecided = frame2.loc[verdict2 == 0]  # each says what it would need
    assert undecided["note"].str.contains("seeds per row").all()
    assert undecided["verdict"].str.endswith("4 seeds per row)").all()


def _keys(frame: pd.DataFrame) -> list[str]:
    from svdablate.report.claims.sequential import claim_key

    return [claim_key(r) for _, r in frame.iterrows()]


def test_the_tag_round_trips():
    design = UntilDecided(
        looks=[5, 10],
        max_seeds=10,
        budget_hours=0.5,
        waves=1,
        trials=50,
        seconds=600.0,
        stopped="every claim decided",
        closed={"a": 0},
    )
    assert UntilDecided.from_tag(design.to_tag()) == design
    assert "2 look(s), 1 wave(s) added, seeds per row 5 → 10, 50 trials" in design.summary()
    assert design.seconds_per_trial == 12.0
