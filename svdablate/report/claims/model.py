"""The papers' claims as data (the lists are in `registry.py`): one `Claim` each, bound to the
experiment the paper makes it on.

A claim names the paper, where it is made (section, table, figure), the context it applies to
(`Scope`: application, networks, datasets, and in its terms the protocol and precision), the
rows it compares, the quantity, the claimed direction and hence its test (`Claim.test`).
Verdicts are computed from a study's runs (`verdicts.py`), never written here; `docs/claims.md`
is generated from these lists (`doc.py`).

Binding. ICCV'21 reverses a finding across networks (SVD-Padé trails iSQRT-COV on AlexNet,
Table 2, and beats it on ResNet-50/101, Table 3, §5.3), so each ICCV'21 claim is bound to the
networks and data of its table. ECCV'22 states its findings per application, for any network
(Abstract; §7), so its claims apply to every study of the application, the paper's own setting
recorded beside. A `lowest` claim compares only with the rows its table or figure has (`among`).

Quantities: error (top-1 validation error of finished runs; the report's epoch, or the epoch
the cited table prints), kappa (log10 of the last epoch's median κ), kappa_trend (per run,
log10 κ of the last epoch minus the first: needs the κ histories), diverged (runs that stopped on
a non-finite loss, out of the finished and diverged runs) and failures (solver failures per
epoch run, ECCV'22 Table 5's "failure times").
"""

from __future__ import annotations

from dataclasses import dataclass

ERROR, KAPPA, KAPPA_TREND, DIVERGED, FAILURES = (
    "error", "kappa", "kappa_trend", "diverged", "failures",
)  # fmt: skip
QUANTITIES = (ERROR, KAPPA, KAPPA_TREND, DIVERGED, FAILURES)
LOWER, HIGHER, WITHIN = "lower", "higher", "within"
#: The tests (`Claim.test`), each a pair of one-sided p-values (`procedures.py`).
WELCH, LOWEST, TOST, PAIRED, FISHER, RATE = (
    "Welch t", "intersection-union Welch t", "TOST (Welch t)", "one-sample t on the change",
    "Fisher exact", "conditional binomial (Poisson rates)",
)  # fmt: skip

#: Equivalence / non-superiority margin, percentage points of top-1 error: the smallest
#: difference the papers report as a gain (ICCV'21 §3.3, the remedies "improve the performances
#: by maximally 0.2%"; §5.3, "outperform … by about 0.2 %"; ECCV'22 §6.2, "SN improves that of
#: SVD by 0.2%"). A difference below it is what ICCV'21 calls "slight" (§3.2, "about 0.1%") or
#: "no obvious improvement" (§3.4).
ERROR_MARGIN = 0.2


@dataclass(frozen=True)
class Term:
    """One row of a contrast: the paper's row name, its weight, and pinned axes (None: any)."""

    row: str
    weight: int = 1
    protocol: str | None = None
    precision: str | None = None

    @property
    def pins(self) -> tuple[tuple[str, str], ...]:
        """(axis, value) pairs the term fixes."""
        pinned = (("protocol", self.protocol), ("precision", self.precision))
        return tuple((axis, value) for axis, value in pinned if value is not None)


@dataclass(frozen=True)
class Scope:
    """Where a claim applies: application, networks and datasets (None: any), and the
    experiment the paper ran (`setting`, for the reader)."""

    application: str  # dbn | gcp
    setting: str
    models: tuple[str, ...] | None = None
    datasets: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Claim:
    """A claim of a paper that a study's rows can test.

    The contrast Σ weight · mean(quantity of the term's runs) is claimed below `bound`
    (`direction` lower) or above it (higher), or within ±`margin` (within). With `among`, the
    first term's row is claimed below each of those rows (a `lowest` claim). For diverged and
    failures the terms are two rows, the first claimed to have more (higher) or fewer (lower).
    `epoch`: the error of the epoch the cited table prints ('final'); None: the report's.
    """

    paper: str  # eccv22 | iccv21 (schema.PAPERS)
    where: str  # section / table / figure of the paper
    scope: Scope
    statement: str
    quantity: str
    direction: str
    terms: tuple[Term, ...]
    among: tuple[str, ...] = ()
    epoch: str | None = None
    bound: float = 0.0
    margin: float = 0.0

    @property
    def application(self) -> str:
        return self.scope.application

    @property
    def lowest(self) -> bool:
        return bool(self.among)

    @property
    def test(self) -> str:
        """The test that decides the claim (one of WELCH … RATE)."""
        if self.quantity == DIVERGED:
            return FISHER
        if self.quantity == FAILURES:
            return RATE
        if self.quantity == KAPPA_TREND:
            return PAIRED
        if self.direction == WITHIN:
            return TOST
        return LOWEST if self.lowest else WELCH

    @property
    def rows(self) -> tuple[str, ...]:
        """Every paper row the claim reads, once each, in order."""
        return tuple(dict.fromkeys([t.row for t in self.terms] + list(self.among)))


@dataclass(frozen=True)
class Untestable:
    """A claim of a paper that a study's runs cannot decide, and why."""

    paper: str
    where: str
    statement: str
    reason: str


def vs(a: str, b: str, **pins: str | None) -> tuple[Term, Term]:
    """a − b, both terms with the same pins."""
    return Term(a, 1, **pins), Term(b, -1, **pins)


def check_claims(claims: tuple[Claim, ...]) -> tuple[Claim, ...]:
    """The claims, after checking each is well formed (ValueError naming the first that is not)."""
    for claim in claims:
        problems = []
        if claim.quantity not in QUANTITIES:
            problems.append(f"quantity {claim.quantity!r}")
        if claim.direction not in (LOWER, HIGHER, WITHIN):
            problems.append(f"direction {claim.direction!r}")
        if claim.direction == WITHIN and claim.margin <= 0:
            problems.append("an equivalence claim without a margin")
        if claim.quantity in (DIVERGED, FAILURES) and [t.weight for t in claim.terms] != [1, -1]:
            problems.append("a count claim is row 1 against row 2")
        if claim.lowest and claim.terms[0].row in claim.among:
            problems.append("a lowest claim compared with itself")
        if problems:
            raise ValueError(f"claim {claim.statement!r} ({claim.where}): {', '.join(problems)}")
    return claims
