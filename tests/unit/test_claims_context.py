"""Issue 25, item 1: only claims the papers make, each tested only in its own context and
against only the rows of its table."""

from __future__ import annotations

from claim_runs import ALEXNET, RESNET18, RESNET50, claim_row, runs_frame

from svdablate.report.claims.registry import CLAIMS
from svdablate.report.claims.verdicts import table_claims
from svdablate.report.tables import layout_specs

DIVERGED = "diverged"


def test_svd_pi_is_claimed_only_to_fail_to_converge():
    """ICCV'21 §3.3: power iteration "fails to converge in GCP"; PI is in neither Table 2 nor
    Fig. 4, so no claim compares its error with anything."""
    pi = [c for c in CLAIMS if any(t.row == "SVD-PI" for t in c.terms)]
    assert [(c.where, c.quantity) for c in pi] == [("§3.3", DIVERGED)]
    runs = runs_frame(
        {"SVD-PI": [48.0, 48.1, 48.2], "MPN-COV": [48.8, 48.9, 48.7], "iSQRT-COV": [48.0] * 3},
        **ALEXNET,
    )
    claims = table_claims(runs, ["SVD-PI", "MPN-COV", "iSQRT-COV"], metric="best")
    assert not claims["claim"].str.contains("SVD-PI (?:beats|trails)|narrows SVD-PI").any()
    assert claim_row(claims, "SVD-PI fails to converge in GCP")["verdict"] == "inconclusive"


def test_a_faithful_resnet50_study_is_not_judged_by_alexnets_table():
    """Table 3 (ResNet-50): SVD-Pade 22.67 vs iSQRT-COV 22.81 standalone, §5.3 "can still
    outperform … by about 0.2 %". The AlexNet claim "SVD-Pade trails iSQRT-COV" (Table 2) must
    not be tested on it; Table 3's own claim must, and be supported."""
    runs = runs_frame(
        {"SVD-Pade": [22.67, 22.64, 22.70, 22.66], "iSQRT-COV": [22.81, 22.84, 22.79, 22.82]},
        **RESNET50,
    )
    claims = table_claims(runs, ["iSQRT-COV", "SVD-Pade"], metric="best")
    assert "SVD-Pade trails iSQRT-COV" not in set(claims["claim"])
    beats = claim_row(claims, "SVD-Pade beats iSQRT-COV (about 0.2%)")
    assert beats["verdict"] == "supported" and beats["where"] == "§5.3, Table 3"
    # the same runs on AlexNet are judged by Table 2 and not by Table 3
    alexnet = table_claims(runs.assign(model="alexnet"), ["iSQRT-COV", "SVD-Pade"], metric="best")
    assert claim_row(alexnet, "SVD-Pade trails iSQRT-COV")["verdict"] == "contradicted"
    assert "SVD-Pade beats iSQRT-COV (about 0.2%)" not in set(alexnet["claim"])


def test_lowest_compares_only_with_the_rows_its_table_has():
    """The GCP preset runs NOG+SN, NOG+OL, NOG+OLR and OW+OLR, which Table 5 does not have:
    NOG+OW+OLR's "lowest of Table 5" ignores them, even when they are lower."""
    rows = {
        "SVD": [26.9, 27.0, 26.8, 26.95, 26.85],
        "SVD+NOG": [26.5, 26.6, 26.4, 26.55, 26.45],
        "SVD+NOG+OW+OLR": [26.0, 25.9, 26.05, 25.95, 26.02],
        "NS": [26.6, 26.7, 26.65, 26.62, 26.68],
        "SVD+NOG+SN": [25.0, 25.1, 24.9, 25.05, 24.95],  # not a Table 5 row
        "SVD+OW+OLR": [25.2, 25.1, 25.3, 25.25, 25.15],  # nor this
    }
    claims = table_claims(runs_frame(rows, **RESNET18), list(rows), metric="best")
    (lowest,) = [
        c for _, c in claims.iterrows() if c["claim"].startswith("NOG+OW+OLR has the lowest error")
    ]
    assert lowest["verdict"] == "supported" and "(runner-up: SVD+NOG)" in lowest["rows"]


def test_claims_rows_are_the_papers_rows_and_lowest_claims_stay_in_their_table():
    from svdablate.report.claims.eccv22 import TABLE4_ROWS, TABLE5_ROWS
    from svdablate.report.claims.iccv21 import TABLE2_ROWS

    assert TABLE4_ROWS == layout_specs.ECCV22_T4_ROWS and TABLE5_ROWS == TABLE4_ROWS
    assert TABLE2_ROWS == layout_specs.ICCV21_ROWS
    for claim in CLAIMS:
        assert claim.paper in ("eccv22", "iccv21") and claim.where and claim.statement
        if claim.paper == "iccv21":  # bound to the networks of its table
            assert claim.scope.models or claim.quantity == DIVERGED, claim
        if claim.lowest:
            assert claim.terms[0].row not in claim.among
            table_rows = TABLE2_ROWS if claim.paper == "iccv21" else TABLE4_ROWS
            assert set(claim.among) <= set(table_rows), claim


def test_iccv21_claims_need_imagenet_alexnet_runs_and_dbn_claims_dbn_runs():
    runs = runs_frame({"MPN-COV": [48.8, 48.9, 48.7], "iSQRT-COV": [48.0, 47.9, 48.1]}, **ALEXNET)
    on_cub = table_claims(runs.assign(dataset="cub200"), ["MPN-COV", "iSQRT-COV"], metric="best")
    assert set(on_cub["paper"]) <= {"ECCV'22"}  # Table 2 is ImageNet's, Table 4 ResNet-50's
    dbn = table_claims(runs.assign(application="dbn"), ["MPN-COV", "iSQRT-COV"], metric="best")
    assert set(dbn["paper"]) <= {"ECCV'22"}
