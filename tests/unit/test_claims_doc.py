"""docs/claims.md is generated from the claims' data and committed current (`make docs`)."""

from __future__ import annotations

from pathlib import Path

from svdablate.report.claims.doc import claims_markdown
from svdablate.report.claims.registry import CLAIMS, UNTESTABLE

DOC = Path(__file__).resolve().parents[2] / "docs" / "claims.md"


def test_docs_claims_md_is_current():
    assert DOC.read_text(encoding="utf-8") == claims_markdown(), "regenerate with `make docs`"


def test_the_doc_lists_every_claim_with_its_context_rows_metric_direction_and_test():
    text = claims_markdown()
    assert "| # | paper | where | claim | context | rows | metric | direction | test |" in text
    for claim in CLAIMS:
        assert f"| {claim.where} | {claim.statement} |" in text
    for untestable in UNTESTABLE:
        assert f"| {untestable.statement} | {untestable.reason} |" in text
    assert "Holm" in text and "2·min" in text
