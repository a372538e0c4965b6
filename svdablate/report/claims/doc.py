"""docs/claims.md, generated from the claims' data (`registry.CLAIMS`, `registry.UNTESTABLE`):
`make docs` writes it, tests/unit/test_claims_doc.py checks the committed file is current."""

from __future__ import annotations

from pathlib import Path

from svdablate.report.claims.model import (
    DIVERGED,
    ERROR,
    ERROR_MARGIN,
    FAILURES,
    HIGHER,
    KAPPA,
    KAPPA_TREND,
    LOWER,
    Claim,
    Term,
)
from svdablate.report.claims.registry import CLAIMS, UNTESTABLE
from svdablate.report.claims.verdicts import ALPHA, direction_text
from svdablate.report.tables.notes import PAPER_LABELS

DOC_PATH = Path("docs") / "claims.md"
HEADER = ("#", "paper", "where", "claim", "context", "rows", "metric", "direction", "test")

PROCEDURE = f"""\
# The papers' claims the report tests

Generated from `svdablate/report/claims/eccv22.py` and `iccv21.py` by `make docs`
(`svdablate.report.claims.doc`); a test fails when this file is not current.

Under every table `svdablate report` lists the claims of the two papers that the study's runs
can test, each with a verdict computed from the runs alone: **supported**, **contradicted**, or
**inconclusive** (with the seeds per row that would decide it, or why no test was possible).

## How a verdict is reached

1. **Context.** A claim applies to the runs of its context: the application, and for ICCV'21
   the networks and data of its table (ICCV'21 reverses a finding across networks: SVD-Padé
   trails iSQRT-COV on AlexNet, Table 2, and beats it on ResNet-50/101, Table 3, §5.3). ECCV'22
   states its findings per application for any network (Abstract; §7): its claims apply to
   every study of the application. Rows pin the protocol and precision where the table does;
   the runs are split by any other axis that varies (e.g. one test per dataset). A "lowest"
   claim compares only with the rows of its own table or figure.
2. **One test per claim, two one-sided p-values.** Welch's t-test on the contrast (a
   difference of means, or of differences; one-sample t on per-run changes), TOST for
   "barely moves" (Schuirmann 1987), intersection-union for "lowest" (Berger 1982), Fisher's
   exact test on diverged runs, and a conditional binomial test on solver failures as Poisson
   counts per epoch run. Each gives p_claimed (small: the claim holds) and p_opposite (small: the
   opposite holds); the claim's p is 2·min of the two (for a t-test, its two-sided p).
3. **One error rate.** Holm's step-down procedure (Holm 1979) over the p's of every claim tested
   in the report, at α = {ALPHA}, decides which claims get a verdict; the smaller one-sided p
   gives its direction. Since P(p ≤ a and the direction is wrong) ≤ a for every claim whatever
   the truth, the probability of any wrong verdict, supported or contradicted, is at most α under
   the global null, for any dependence between claims (Holm 1979); with true effects present too,
   Shaffer (1980) proves it for independent tests, and `tests/unit/test_claims_error_rate.py` checks
   it for dependent claims of every kind on 20,000 simulated studies, with and without effects.
4. **No data, no verdict.** Fewer than two finished runs of a row (a count needs one), seeds
   that all give the same value (one observation: no variance to test), or a κ trend without its
   histories leave a claim inconclusive, with the reason; such claims are not in the family.
5. **Seeds.** An inconclusive claim shows the seeds per row that would give 80 % power at the
   Holm level it would have to pass (α/(m − R), m claims tested, R decided), if its observed
   effect and spread were the truth.

Quantities: error is the top-1 validation error of the finished runs (each run's best epoch,
or `--metric final`; ICCV'21 Table 2 prints final-epoch error, so its claims use it); κ claims
are tested on log10 of each run's last-epoch median κ; diverged counts the runs that stopped on
a non-finite loss among the finished and diverged ones; failures counts the solver failures of
those runs per epoch they ran. Margin of the equivalence and non-superiority claims:
{ERROR_MARGIN} percentage points of error, the smallest difference the papers report as a gain
(ICCV'21 §3.3 "maximally 0.2%", §5.3 "about 0.2 %"; ECCV'22 §6.2 "by 0.2%").
"""


def _pins(term: Term) -> str:
    return ", ".join(v for _, v in term.pins)


def rows_text(claim: Claim) -> str:
    """The rows a claim compares, with the protocol and precision its terms pin."""
    terms = claim.terms
    shared = len({t.pins for t in terms}) == 1
    suffix = f" ({_pins(terms[0])})" if shared and terms[0].pins else ""
    if claim.lowest:
        return f"{terms[0].row} vs each of {', '.join(claim.among)}{suffix}"
    if len(terms) == 1:
        return f"{terms[0].row}{suffix}"
    if [t.weight for t in terms] == [1, -1]:
        named = [t.row if shared else f"{t.row} [{_pins(t)}]" for t in terms]
        return f"{named[0]} vs {named[1]}{suffix}"
    signed = [f"{'+' if t.weight > 0 else '−'}{t.row} [{_pins(t)}]" for t in terms]
    return " ".join(signed)


def metric_text(claim: Claim) -> str:
    """What the claim's numbers are."""
    if claim.quantity == ERROR:
        return "final-epoch error" if claim.epoch == "final" else "error (the report's epoch)"
    return {
        KAPPA: "log10 κ",
        KAPPA_TREND: "log10 κ, last epoch − first, per run",
        DIVERGED: "diverged runs",
        FAILURES: "solver failures per epoch",
    }[claim.quantity]


def claim_direction(claim: Claim) -> str:
    """The claimed direction as a reader says it."""
    if claim.quantity in (DIVERGED, FAILURES):
        return {HIGHER: "more", LOWER: "fewer"}[claim.direction]
    return direction_text(claim)


def context_text(claim: Claim) -> str:
    """The paper's experiment and the runs the claim is tested on."""
    scope = claim.scope
    runs = [scope.application]
    if scope.models:
        runs.append("/".join(scope.models))
    if scope.datasets:
        runs.append("/".join(scope.datasets))
    return f"{scope.setting}; tested on {', '.join(runs)} runs"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def claims_table() -> list[str]:
    """The claims as markdown table lines."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for i, c in enumerate(CLAIMS, 1):
        cells = (
            str(i), PAPER_LABELS[c.paper], c.where, c.statement, context_text(c), rows_text(c),
            metric_text(c), claim_direction(c), c.test,
        )  # fmt: skip
        lines.append("| " + " | ".join(_cell(x) for x in cells) + " |")
    return lines


def untestable_table() -> list[str]:
    """The claims the runs cannot decide, and why, as markdown table lines."""
    lines = ["| paper | where | claim | not testable from the runs, because |", "|---|---|---|---|"]
    for u in UNTESTABLE:
        cells = (PAPER_LABELS[u.paper], u.where, u.statement, u.reason)
        lines.append("| " + " | ".join(_cell(x) for x in cells) + " |")
    return lines


def claims_markdown() -> str:
    """The whole of docs/claims.md."""
    return "\n".join(
        [
            PROCEDURE,
            f"## The {len(CLAIMS)} claims tested",
            "",
            *claims_table(),
            "",
            "## Claims the runs cannot decide",
            "",
            *untestable_table(),
            "",
        ]
    )


def write_claims_doc(path: Path | str = DOC_PATH) -> Path:
    """Write docs/claims.md (`make docs`)."""
    target = Path(path)
    target.write_text(claims_markdown(), encoding="utf-8")
    return target
