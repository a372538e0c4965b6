"""`analyze approx` and `analyze bounds`: ICCV'21 Tables 6 and 7 beside the published numbers."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from svdablate.cli.app import _examples, analyze_app, console


def _published(table: int) -> dict[tuple[str, str], float]:
    """ICCV'21 published values of one analysis table, keyed by (method, metric)."""
    from svdablate.report import load_published

    rows = load_published()
    rows = rows[(rows.paper == "iccv21") & (rows.table == table)]
    return {(r.method, r.metric): float(r.value) for r in rows.itertuples()}


def _sci(value: Any) -> str:
    """Three significant figures (Table 6's 36.2 and 904, not 36 and 9e+02)."""
    if value is None:
        return "/"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


@analyze_app.command(
    "approx", epilog=_examples("svdablate analyze approx", "svdablate analyze approx --degree 50")
)
def analyze_approx(
    degree: Annotated[int, typer.Option(help="Taylor degree; Padé is [degree/2, degree/2].")] = 100,
) -> None:
    """ICCV'21 Table 6: Taylor and Padé error against 1/(1−x) (float64, mpmath) beside the paper."""
    from rich.table import Table

    from svdablate.metalayers.analysis import approximation_errors, pade_degeneracy

    paper = _published(6)
    table = Table(title=f"ICCV'21 Table 6: |approximation − 1/(1−x)|, degree {degree}")
    for column in ("method", "x", "float64", "mpmath", "paper"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for row in approximation_errors(degree=degree):
        table.add_row(
            row["method"],
            f"{row['x']:g}",
            _sci(row["float64"]),
            _sci(row["mpmath"]),
            _sci(paper.get((row["method"], row["metric"]))) if degree == 100 else "",
        )
    console.print(table)
    note = Table(
        title="Why SVD-Padé equals the exact gradient: the [M/N] Padé table of the rational "
        "1/(1−x) is degenerate",
        caption="mpmath's pade() returns one noise-selected member: P/Q ≡ 1/(1−x) up to "
        "round-off, with an arbitrary value at x = 1 (docs/methods.md, 'SVD-Padé').",
    )
    for column in ("quantity", "float64", "mpmath"):
        note.add_column(column, justify="left" if column == "quantity" else "right")
    for row in pade_degeneracy(degree):
        note.add_row(str(row["quantity"]), _sci(row["float64"]), _sci(row["mpmath"]))
    console.print(note)


@analyze_app.command(
    "bounds", epilog=_examples("svdablate analyze bounds", "svdablate analyze bounds --eps 1e-12")
)
def analyze_bounds(
    eps: Annotated[
        float | None, typer.Option(help="Eigenvalue floor (default: float64 machine epsilon).")
    ] = None,
) -> None:
    """ICCV'21 Table 7: the largest |K_ij| each backward rule can produce, measured and analytic."""
    from rich.table import Table

    from svdablate.metalayers.analysis import gradient_bounds

    paper = _published(7)
    rows = gradient_bounds() if eps is None else gradient_bounds(eps=eps)
    table = Table(title=f"ICCV'21 Table 7: upper bound of K_ij at eps = {rows[0]['eps']:.3g}")
    for column in ("method", "analytic form", "trigger", "measured", "analytic", "paper"):
        table.add_column(
            column, justify="right" if column in ("measured", "analytic", "paper") else "left"
        )
    for row in rows:
        table.add_row(
            row["method"],
            row["analytic_form"],
            row["trigger"],
            _sci(row["measured"]),
            _sci(row["analytic"]),
            _sci(paper.get((row["method"], row["metric"]))),
        )
    console.print(table)
