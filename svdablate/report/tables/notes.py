"""The sentences under a table: what was dropped or excluded, which statistic, which κ."""

from __future__ import annotations

import pandas as pd

from svdablate.report.tables.rows import treatments
from svdablate.report.tables.table import RANK_COLOURS
from svdablate.report.tables.trend import MAX_WIDTH, log_range
from svdablate.schema import TrialStatus

EXCLUDED = (TrialStatus.DIVERGED, TrialStatus.FAILED, TrialStatus.RUNNING, TrialStatus.INTERRUPTED)
PAPER_LABELS = {"eccv22": "ECCV'22", "iccv21": "ICCV'21"}
ERROR_WORDS = {
    "best": "best-epoch (each run's lowest validation error, as the papers' scripts report)",
    "final": "final-epoch (each run's last validation error)",
}


def dedup_note(loaded: int, dropped: int) -> str:
    return (
        f"{loaded} runs loaded; {dropped} duplicate(s) of (row, seed, config hash) dropped, "
        "keeping the newest finished run."
    )


def status_counts(runs: pd.DataFrame) -> dict[str, int]:
    """How many runs are diverged, failed, running (only the non-zero ones)."""
    counts = {s: int((runs["status"] == s).sum()) for s in EXCLUDED}
    return {s: n for s, n in counts.items() if n}


def exclusion_note(where: str, runs: pd.DataFrame) -> str | None:
    counts = status_counts(runs)
    if not counts:
        return None
    listed = ", ".join(f"{n} {s}" for s, n in counts.items())
    return f"{where}: {listed} (excluded from the statistics)."


def error_note(metric: str) -> str:
    return f"Error: {ERROR_WORDS[metric]}; finished runs only."


def stats_note(baseline: str | None) -> str:
    return (
        f"p: Welch's t-test vs {baseline}; 95% CI Δ: bootstrap (percentile, 9999 resamples, "
        f"seed 0) of mean(row) - mean({baseline}); n: finished runs / runs."
    )


def kappa_note(trends: pd.Series | None) -> str:
    """What κ and its trend column show (the trend's shared log scale when there is one)."""
    note = (
        "κ: median over finished seeds of the last epoch's median κ = λmax/λmin of the batch "
        "covariance P (eq. 2), not of the ridged P + εI."
    )
    scale = log_range(trends) if trends is not None else None
    if scale is None:
        return note
    longest = max((len(t) for t in trends if len(t)), default=0)  # type: ignore[union-attr]
    per_bar = -(-longest // MAX_WIDTH)
    epochs = "one bar per epoch" if per_bar == 1 else f"one bar per {per_bar} epochs"
    return (
        f"{note} κ trend: median over seeds of each epoch's median κ, {epochs}, on a log scale "
        f"shared by the table from {10 ** scale[0]:.1e} (lowest bar) to {10 ** scale[1]:.1e} "
        "(highest); plain-text formats give the first and last epochs' values."
    )


def paper_note(paper: str) -> str:
    return f"paper: {PAPER_LABELS.get(paper, paper)}; Δ = this run - paper; blank = not printed."


def smoke_note() -> str:
    return "Smoke runs (FakeData): not compared with the paper's numbers."


def ow_caption(ow_map: str, rows: list[str]) -> str:
    """' (OW: soc)' for a table with an OW row whose study names its OW operator, else ''."""
    has_ow = any("OW" in treatments(row) for row in rows)
    return f" (OW: {ow_map})" if ow_map and has_ow else ""


def rank_note(top_k: int) -> str:
    colours = ", ".join(RANK_COLOURS[:top_k])
    return f"Best {top_k} of each measured column marked (rank 1-{top_k}: {colours})."
