"""`run --until-decided`: add seeds, in waves, to the rows a study's claims compare, until every
claim is decided or needs more than the budget allows (the statistics: `claims.sequential`,
docs/sequential.md).

The driver uses only the study's public operations (`run`, `extend`, `resume`) and the MLflow
store: after each wave it reads the runs back, re-tests the claims on the first n_k seeds of
every look reached, and writes how far it got to the parent run (`Tag.UNTIL_DECIDED`), which
the report and `resume` read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from svdablate.errors import ExitCode, UserError
from svdablate.report.claims import sequential as seq
from svdablate.schema import Metric, Tag, TrialStatus
from svdablate.study.outcome import StudyOutcome

if TYPE_CHECKING:
    from svdablate.study.plan import StudyPlan
    from svdablate.study.study import Study

#: --max-seeds when not given: four looks of the study's seeds.
DEFAULT_LOOKS = 4


def design_for(
    plan: StudyPlan, max_seeds: int | None, budget_hours: float | None
) -> seq.UntilDecided:
    """The looks of a new study (its seeds per row, then waves of as many, up to max_seeds);
    bad input is one UserError line."""
    first = plan.preset.seeds
    max_seeds = DEFAULT_LOOKS * first if max_seeds is None else max_seeds
    if first < 2:
        raise UserError(f"--until-decided needs --seeds 2 or more to test a claim (got {first})")
    if max_seeds < first:
        raise UserError(f"--max-seeds {max_seeds} is below --seeds {first}: raise it")
    if budget_hours is not None and not budget_hours > 0:
        raise UserError(f"--budget-hours {budget_hours}: must be above 0")
    looks = list(seq.look_schedule(first, max_seeds))
    return seq.UntilDecided(looks=looks, max_seeds=max_seeds, budget_hours=budget_hours)


@dataclass
class Decided:
    """What `run_until_decided` did: the last wave's outcome (its exit code is the command's),
    the design and progress as written to the parent run, and the sequential claims."""

    outcome: StudyOutcome
    design: seq.UntilDecided
    claims: pd.DataFrame


def run_until_decided(
    study: Study, design: seq.UntilDecided, *, metric: str = "best", **options: Any
) -> Decided:
    """Run the study's first look, then add waves until decided (options: run's progress,
    console). The design is on the parent run before any trial starts, so a `resume` of a study
    killed during its first look goes on adding waves."""
    _save(study, design)
    outcome = study.run(**options)
    return _continue(study, design, outcome, metric, options)


def resume_until_decided(
    study: Study, design: seq.UntilDecided, *, metric: str = "best", **options: Any
) -> Decided:
    """Finish the interrupted wave's trials, then go on adding waves."""
    outcome = study.run(**options)
    design.stopped = ""
    return _continue(study, design, outcome, metric, options)


def saved_design(study: Study) -> seq.UntilDecided | None:
    """The study's `Tag.UNTIL_DECIDED` (None: it was not run until decided)."""
    from mlflow import MlflowClient

    tags = MlflowClient(study.tracking_uri).get_run(study.parent_run_id).data.tags
    text = tags.get(Tag.UNTIL_DECIDED)
    return seq.UntilDecided.from_tag(text) if text else None


def _continue(
    study: Study,
    design: seq.UntilDecided,
    outcome: StudyOutcome,
    metric: str,
    options: dict[str, Any],
) -> Decided:
    while True:
        design.trials += outcome.trials - outcome.skipped - outcome.unfinished  # ran now
        design.seconds += outcome.seconds
        if outcome.exit_code != ExitCode.OK:
            design.stopped = seq.TRIALS_LEFT
            _save(study, design)
            return Decided(outcome, design, pd.DataFrame())
        claims = _claims(study, design, metric)
        rows = _open_rows(claims)
        design.stopped = _stop_reason(study, design, claims, rows)
        design.claims = [_claim_line(c) for _, c in claims.iterrows()]
        _save(study, design)
        if design.stopped:
            return Decided(outcome, design, claims)
        design.waves += 1
        _save(study, design)
        wave = {k: v for k, v in options.items() if k in ("progress", "console")}
        outcome = study.extend(seeds=design.looks[design.waves], rows=rows, **wave)


def _claims(study: Study, design: seq.UntilDecided, metric: str) -> pd.DataFrame:
    """Read the runs back, close the open claims the budget cannot decide, and re-test."""
    from svdablate.report.reading.runs import deduplicate, load_runs, metric_histories

    runs = load_runs(study.tracking_uri, [study.parent_run_id])
    kept, _ = deduplicate(runs)
    kept.attrs = runs.attrs
    finished = kept.loc[kept["status"] == TrialStatus.FINISHED, "run_id"]
    history = metric_histories(study.tracking_uri, finished, Metric.KAPPA_MEDIAN)
    claims = seq.sequential_claims(kept, history, design, metric)
    if claims.empty:
        return claims
    affordable = _affordable_seeds(study, design, _open_rows(claims))
    shut = claims["open"] & seq.beyond_budget(claims["seeds_needed"].to_numpy(), affordable)
    for _, claim in claims[shut].iterrows():
        design.closed[seq.claim_key(claim)] = design.waves
    return seq.sequential_claims(kept, history, design, metric) if shut.any() else claims


def _open_rows(claims: pd.DataFrame) -> list[str]:
    if claims.empty:
        return []
    return list(
        dict.fromkeys(r for rows in claims.loc[claims["open"], "_study_rows"] for r in rows)
    )


def _trials_per_seed(study: Study, rows: list[str]) -> int:
    first = min(c.seed for c in study.configs)
    return sum(1 for c in study.configs if c.row in rows and c.seed == first)


def _affordable_seeds(study: Study, design: seq.UntilDecided, rows: list[str]) -> int:
    """The most seeds per row the open rows reach within --max-seeds and --budget-hours, at
    the wall time per trial measured so far."""
    reached = design.looks[design.waves]
    if design.budget_hours is None:
        return design.max_seeds
    left = design.budget_hours * 3600 - design.seconds
    per_seed = design.seconds_per_trial * _trials_per_seed(study, rows)
    for look in design.looks[design.waves + 1 :]:
        cost = (look - reached) * per_seed
        if not math.isfinite(cost) or cost > left:
            break
        left, reached = left - cost, look
    return reached


def _stop_reason(
    study: Study, design: seq.UntilDecided, claims: pd.DataFrame, rows: list[str]
) -> str:
    """Why the study stops now, '' to add a wave."""
    if claims.empty:
        return seq.NO_CLAIMS
    decided = claims["verdict"].str.startswith(("supported", "contradicted"))
    if decided.all():
        return seq.ALL_DECIDED
    if not rows:
        return seq.ALL_CLOSED
    if design.waves + 1 >= len(design.looks):
        return seq.LAST_LOOK
    if _affordable_seeds(study, design, rows) <= design.looks[design.waves]:
        return seq.OUT_OF_TIME
    return ""


def _claim_line(claim: pd.Series) -> str:
    context = f" [{claim['context']}]" if claim["context"] else ""
    p = claim["p"]
    shown = f"; p {p:.2g}" if np.isfinite(p) else ""
    return (
        f"{claim['paper']} {claim['where']}: {claim['claim']}{context}: {claim['verdict']}{shown}"
    )


def _save(study: Study, design: seq.UntilDecided) -> None:
    from mlflow import MlflowClient

    MlflowClient(study.tracking_uri).set_tag(
        study.parent_run_id, Tag.UNTIL_DECIDED, design.to_tag()
    )
