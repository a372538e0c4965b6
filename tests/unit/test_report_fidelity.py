"""Captions say which operator and precision ran and where that departs from the official code,
computed from the runs' recorded tags and params (report.fidelity)."""

from __future__ import annotations

import json

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from svdablate.report import layout_table, load_runs, summary_report
from svdablate.report.tables.fidelity import Note, applicable_notes, caption_notes, ran_note
from svdablate.schema import CAPTION_PARAMS
from svdablate.spec.overrides import parse_overrides
from svdablate.study.plan import StudyPlan

METHOD = {"SVD": "svd", "SVD+NOG": "svd", "SVD+OW+OLR": "svd", "NS": "ns"}


def _runs(rows, **columns) -> pd.DataFrame:
    base = {"application": "dbn", "dataset": "cifar10", "precision": "float64"}
    return pd.DataFrame.from_records(
        [{**base, **columns, "row": r, "method": METHOD[r]} for r in rows]
    )


def _notes(runs: pd.DataFrame) -> str:
    return " | ".join(caption_notes(runs))


def test_paper_rows_say_they_ran_the_papers_operators_and_what_the_released_code_runs():
    runs = _runs(["SVD", "SVD+NOG", "NS"])
    assert ran_note(runs) == "Ran: svd in float64 (SVD, SVD+NOG); ns in float64 (NS)."
    text = _notes(runs)
    assert "SVD and NS rows ran the paper's operators" in text
    assert "--set model_options.solver=mpa-lya --set precision=float32" in text
    assert "Every row ran MPA-Lya" not in text
    assert "OLR" not in text and "OW:" not in text and "CIFAR-100" not in text


def test_the_released_solver_is_named_for_every_row_with_its_precision():
    runs = _runs(["SVD", "NS"], solver="mpa-lya", precision="float32")
    assert ran_note(runs) == "Ran: mpa-lya in float32 (every row)."
    text = _notes(runs)
    assert "Every row ran MPA-Lya as the released ECCV'22 code" in text
    assert "paper's operators" not in text and "ran in float64" not in text
    text64 = _notes(runs.assign(precision="float64"))
    assert "MPA-Lya ran in float64; the released code runs it in float32." in text64


def test_treatment_and_dataset_notes_follow_the_rows_and_params():
    runs = _runs(["SVD", "SVD+OW+OLR"], ow_map="soc", dataset="cifar100")
    text = _notes(runs)
    assert "OLR sets the Pre-SVD layer's lr, found by parameter identity" in text
    assert "OW: Skew Orthogonal Convolution" in text
    assert "CIFAR-100 inputs normalised with CIFAR-100's own mean/std" in text
    text = _notes(runs.assign(ow_map="matrix_exp"))
    assert "OW: eq. 13 on the (C_out, C_in·k·k) weight matrix" in text
    assert "Skew Orthogonal Convolution (ref. [43])" not in text
    gcp = _notes(runs.assign(application="gcp"))
    assert "CIFAR-100" not in gcp and "paper's operators" not in gcp


def test_adding_a_note_is_one_line_keyed_on_any_column():
    runs = _runs(["SVD", "NS"], protocol="hybrid")
    notes = (
        Note("pade note", method="svd-pade"),
        Note("hybrid ns note", method="ns", protocol=("hybrid", "x")),
        Note("unset grad clip", grad_clip=""),  # a column the runs lack reads as unset
        Note("set grad clip", grad_clip="5.0"),
        Note("nog row", treatment="NOG"),
    )
    assert applicable_notes(runs, notes) == ["hybrid ns note", "unset grad clip"]
    assert applicable_notes(runs.iloc[:0], notes) == []


def test_caption_params_are_trial_config_params():
    """The names the report reads are the ones the orchestrator writes."""
    sets = parse_overrides(
        ["model_options.solver=mpa-lya", "grad_clip_norm=5", "model_options.layer4_stride1=false"]
    )
    config = StudyPlan.create(
        preset="eccv22-dbn-cifar10", seeds=1, overrides=sets, check=False
    ).configs[0]
    assert set(CAPTION_PARAMS.values()) <= set(config.as_params())


def test_tables_read_the_params_from_mlflow(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("eccv22-dbn-cifar100", artifact_location=str(tmp_path / "a"))
    rows = ["SVD", "SVD+OW+OLR"]
    parent_tags = {
        "svdablate.role": "parent",
        "svdablate.rows": json.dumps(rows),
        "svdablate.application": "dbn",
        "svdablate.dataset": "cifar100",
        "svdablate.model": "resnet50",
    }
    parent = client.create_run(exp, tags=parent_tags).info.run_id
    for seed, row in enumerate(rows):
        tags = {
            "mlflow.parentRunId": parent,
            "svdablate.role": "trial",
            "svdablate.row": row,
            "svdablate.seed": "0",
            "svdablate.config_hash": row,
            "svdablate.status": "finished",
            "svdablate.method": "svd",
            "svdablate.protocol": "standalone",
            "svdablate.precision": "float32",
        }
        run = client.create_run(exp, tags=tags).info.run_id
        params = [Param("model_options.solver", "mpa-lya"), Param("ow_map", "soc")]
        metrics = [Metric("best_val_err", 20.0 + seed, 0, 0)]
        client.log_batch(run, metrics=metrics, params=params)
        client.set_terminated(run)
    runs = load_runs(uri, parent)
    assert list(runs["solver"]) == ["mpa-lya"] * 2 and list(runs["ow_map"]) == ["soc"] * 2
    for table in (layout_table(runs, rows, "eccv22-t4"), summary_report(runs, rows)):
        text = " | ".join(table.notes)
        assert "Ran: mpa-lya in float32 (every row)." in text
        assert "Every row ran MPA-Lya as the released ECCV'22 code" in text
        assert "OW: Skew Orthogonal Convolution" in text and "OLR sets" in text
