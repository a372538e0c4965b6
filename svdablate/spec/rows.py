"""A row of a study as the user writes it (`svd+olr+nog`), parsed and checked against the
meta-layer and treatment registries."""

from __future__ import annotations

from svdablate.errors import UserError
from svdablate.schema import Row, split_row

Rows = str | list[str] | tuple[str, ...] | None


def as_rows(rows: Rows) -> tuple[str, ...] | None:
    """'SVD,SVD+NOG' or a list → a tuple of row texts (None: the preset's)."""
    if rows is None:
        return None
    return tuple(rows.split(",")) if isinstance(rows, str) else tuple(rows)


def parse_row(text: str) -> Row:
    """`svd+olr+nog` → Row('SVD', ('NOG', 'OLR')): the method spelled as the papers do.

    Unknown methods and treatments raise UserError naming the valid ones.
    """
    from svdablate.metalayers import METHODS, resolve_method
    from svdablate.treatments import parse_treatments

    try:
        row = split_row(text)
        canonical = resolve_method(row.method)
        treatments = parse_treatments(list(row.treatments))
    except ValueError as exc:
        raise UserError(f"row {text!r}: {exc}") from None
    spellings = METHODS[canonical].aliases
    if row.method not in spellings:  # any case: written as the papers write it
        norm = _norm(row.method)
        row = Row(next((a for a in spellings if _norm(a) == norm), row.method), row.treatments)
    return Row(row.method, treatments)


def canonical_method(row: Row) -> str:
    """The registry's name of the row's meta-layer."""
    from svdablate.metalayers import resolve_method

    return resolve_method(row.method)


def _norm(name: str) -> str:
    return name.strip().lower().replace("é", "e").replace("_", "-").replace(" ", "-")
