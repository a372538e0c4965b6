"""`run --until-decided` (svdablate/study/sequential.py): which rows each wave adds seeds to, when
it stops and why, what it writes to the parent run, and its refusals. The study is a stand-in
whose runs are drawn here (no Ray); the claims are the report's own on those runs."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from claim_runs import runs_frame

from svdablate import cli
from svdablate.report.claims import sequential as seq
from svdablate.study import sequential as driver
from svdablate.study.outcome import StudyOutcome

ROWS = ["SVD", "SVD+NOG", "SVD+OW", "SVD+NOG+OW+OLR", "NS"]


class FakeStudy:
    """Runs drawn per (row, seed) from `means` (sd 0.5): what run/extend add is recorded."""

    def __init__(self, means: dict[str, float], seeds: int = 4, seconds: float = 10.0) -> None:
        self.means, self.seconds = means, seconds
        self.rng = np.random.default_rng(3)
        self.values: dict[str, list[float]] = {r: [] for r in means}
        self.preset = SimpleNamespace(seeds=seeds)
        self.configs: list[SimpleNamespace] = []
        self.waves: list[tuple[int, list[str]]] = []

    def _add(self, seeds: int, rows: list[str]) -> StudyOutcome:
        added = 0
        for row in rows:
            while len(self.values[row]) < seeds:
                self.values[row].append(self.rng.normal(self.means[row], 0.5))
                seed = len(self.values[row]) - 1
                self.configs.append(SimpleNamespace(row=row, seed=seed))
                added += 1
        return StudyOutcome("demo", "parent", "results", trials=added, seconds=added * self.seconds)

    def run(self, **_: object) -> StudyOutcome:
        return self._add(self.preset.seeds, list(self.means))

    def extend(self, *, seeds: int, rows: list[str], **_: object) -> StudyOutcome:
        self.waves.append((seeds, list(rows)))
        return self._add(seeds, rows)

    def runs(self) -> pd.DataFrame:
        frame = runs_frame(self.values)
        frame.attrs["rows"] = list(self.means)
        return frame


@pytest.fixture
def saved(monkeypatch):
    """The driver's reads and writes of MLflow, replaced by the fake study's runs and a list."""
    tags: list[seq.UntilDecided] = []

    def claims(study, design, metric):
        runs = study.runs()
        found = seq.sequential_claims(runs, None, design, metric)
        affordable = driver._affordable_seeds(study, design, driver._open_rows(found))
        shut = found["open"] & seq.beyond_budget(found["seeds_needed"].to_numpy(), affordable)
        for _, claim in found[shut].iterrows():
            design.closed[seq.claim_key(claim)] = design.waves
        return seq.sequential_claims(runs, None, design, metric) if shut.any() else found

    monkeypatch.setattr(driver, "_claims", claims)
    monkeypatch.setattr(
        driver,
        "_save",
        lambda study, design: tags.append(seq.UntilDecided.from_tag(design.to_tag())),
    )
    return tags


def test_waves_go_to_the_open_claims_rows_until_decided(saved):
    """OW's κ far below SVD's: decided at once; NOG+OW+OLR lower than everything by 1 sd: the
    lowest claim needs waves; the rest is noise and gets closed or runs out of looks."""
    means = {"SVD": 2.0, "SVD+NOG": 2.0, "SVD+OW": -2.0, "SVD+NOG+OW+OLR": 1.2, "NS": 2.0}
    study = FakeStudy(means)
    design = seq.UntilDecided(looks=[4, 8, 12, 16], max_seeds=16)
    decided = driver.run_until_decided(study, design)
    assert decided.design.stopped in (seq.ALL_DECIDED, seq.ALL_CLOSED, seq.LAST_LOOK)
    assert decided.design.waves == len(study.waves)
    assert [seeds for seeds, _ in study.waves] == design.looks[1 : design.waves + 1]
    ow_kappa = decided.claims[decided.claims["claim"] == "OW lowers κ vs SVD"].iloc[0]
    assert ow_kappa["verdict"].startswith("supported (look 1, 4 seeds")
    closed_first = decided.claims["verdict"].str.contains("look 1")
    later = decided.claims.loc[~closed_first, "_study_rows"]  # open after look 1
    assert set(study.waves[0][1]) == {r for rows in later for r in rows}
    assert decided.design.trials == len(study.configs)
    assert decided.design.seconds == 10.0 * len(study.configs)
    assert saved[-1].claims == decided.design.claims and len(saved[-1].claims) == 6
    print(f"\nwaves {study.waves}, stopped: {decided.design.stopped}")


def test_the_budget_stops_a_wave_that_would_not_fit(saved):
    means = dict.fromkeys(ROWS, 2.0)  # nothing to find: every claim stays open on noise
    study = FakeStudy(means, seconds=60.0)  # 20 trials a look: 20 min each
    design = seq.UntilDecided(looks=[4, 8, 12], max_seeds=12, budget_hours=0.5)
    decided = driver.run_until_decided(study, design)
    assert decided.design.stopped in (seq.OUT_OF_TIME, seq.ALL_CLOSED)
    assert study.waves == [] and decided.design.waves == 0


def test_trials_left_stop_the_waves_and_resume_goes_on(saved):
    study = FakeStudy({"SVD": 2.0, "SVD+OW": -2.0})
    failed = StudyOutcome("demo", "parent", "results", trials=4, failed=1)
    study.run = lambda **_: failed
    design = seq.UntilDecided(looks=[4, 8], max_seeds=8)
    decided = driver.run_until_decided(study, design)
    assert decided.design.stopped == seq.TRIALS_LEFT and decided.outcome.exit_code == 1
    study.run = lambda **_: FakeStudy._add(study, 4, ["SVD", "SVD+OW"])
    resumed = driver.resume_until_decided(study, decided.design)
    assert resumed.design.stopped == seq.ALL_DECIDED and resumed.outcome.exit_code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-seeds", "10"], "--max-seeds and --budget-hours go with --until-decided"),
        (["--until-decided", "--preset", "demo,demo"], "--until-decided runs one new study"),
        (["--until-decided", "--seeds", "5", "--max-seeds", "3"], "--max-seeds 3 is below"),
        (["--until-decided", "--seeds", "1"], "needs --seeds 2 or more"),
        (["--until-decided", "--budget-hours", "0"], "--budget-hours 0.0: must be above 0"),
    ],
)
def test_bad_until_decided_options_are_one_line_before_anything_runs(
    monkeypatch, capsys, tmp_path, args, message
):
    monkeypatch.setattr(sys, "argv", ["svdablate", "run", *args, "--results-dir", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], err
    assert not (tmp_path / "mlflow.db").exists()
