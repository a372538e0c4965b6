"""Each row's own starting checkpoint (`--checkpoints DIR`): iccv21-fgvc requires it, a row never
starts from another row's file or from scratch, and every check is made before Ray starts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from svdablate import cli
from svdablate.data.datasets import FAKE_SHAPES, SMOKE_IMAGE
from svdablate.errors import UserError
from svdablate.models import build_model
from svdablate.spec.config import TrialConfig
from svdablate.spec.overrides import parse_overrides
from svdablate.spec.presets import PRESETS
from svdablate.study.plan import StudyPlan
from svdablate.training.loop import load_pretrained

FGVC = "iccv21-fgvc"


def _files(folder: Path, names: list[str]) -> Path:
    folder.mkdir(exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")
    return folder


def _rows() -> list[str]:
    return list(PRESETS[FGVC].rows)


def test_fgvc_without_checkpoints_exits_2_with_one_line_before_anything_starts(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["svdablate", "run", "--preset", FGVC])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--checkpoints DIR" in " ".join(err.split())
    assert "SVD-Pade.pt" in err
    assert not (tmp_path / "results").exists(), "nothing may start"


def test_each_row_starts_from_its_own_file_in_any_spelling_of_the_row(tmp_path):
    names = {row: f"{row.lower()}.pth" for row in _rows()}
    names["SVD-Pade"] = "SVD-Padé.pt"  # the papers' spelling
    names["MPN-COV"] = "SVD.pth.tar"  # MPN-COV is the exact SVD meta-layer
    folder = _files(tmp_path / "models", [*names.values(), "README.md", "notes.pt"])
    configs = StudyPlan.create(preset=FGVC, checkpoints=str(folder), check=False).configs
    by_row = {c.row: c.init_checkpoint for c in configs}
    assert by_row == {row: str((folder / name).resolve()) for row, name in names.items()}
    assert len({c.dataset for c in configs}) == 3  # every dataset of a row from the row's model


def test_a_missing_a_doubled_or_a_shared_row_file_is_refused(tmp_path):
    rows = _rows()
    partial = _files(tmp_path / "partial", [f"{r}.pt" for r in rows[1:]])
    with pytest.raises(
        UserError, match=f"no checkpoint for row\\(s\\) {rows[0]}; add {rows[0]}.pt"
    ):
        StudyPlan.create(preset=FGVC, checkpoints=str(partial), check=False)
    doubled = _files(tmp_path / "doubled", [f"{r}.pt" for r in rows] + ["svd-taylor.pth"])
    with pytest.raises(UserError, match="two files for row SVD-Taylor"):
        StudyPlan.create(preset=FGVC, checkpoints=str(doubled), check=False)
    shared = _files(tmp_path / "shared", [f"{r}.pt" for r in rows if r != "SVD-Trunc"])
    (shared / "SVD-Trunc.pt").symlink_to(shared / "SVD-Taylor.pt")
    with pytest.raises(UserError, match="rows SVD-Taylor and SVD-Trunc both start from"):
        StudyPlan.create(preset=FGVC, checkpoints=str(shared), check=False)
    with pytest.raises(UserError, match="not a directory"):
        StudyPlan.create(preset=FGVC, checkpoints=str(tmp_path / "nowhere"), check=False)


def test_one_shared_init_checkpoint_cannot_be_set():
    with pytest.raises(UserError, match="set by the grid \\(--checkpoints DIR"):
        parse_overrides(["init_checkpoint=/models/one.pt"])


def test_a_smoke_run_without_checkpoints_says_its_rows_start_from_random_weights():
    lines = StudyPlan.create(preset=FGVC, smoke=True, check=False).warnings
    assert any("start from random weights" in line for line in lines)
    assert not any(
        "random weights" in line for line in StudyPlan.create(preset="demo", check=False).warnings
    )


def _smoke_network(config: TrialConfig) -> torch.nn.Module:
    """The network a smoke trial of `config` builds (FakeData shaped like its dataset)."""
    classes, channels, _, _, _ = FAKE_SHAPES[config.reported_dataset]
    return build_model(
        config.model,
        application=config.application,
        num_classes=classes,
        in_channels=channels,
        image_size=SMOKE_IMAGE,
        method=config.method,
        options=config.model_options,
    )


def test_checkpoints_are_loaded_and_fitted_to_the_network_before_ray_starts(tmp_path):
    spec = {"rows": "SVD-Pade", "smoke": True, "results_dir": tmp_path / "results"}
    config = StudyPlan.create(FGVC, check=False, **spec).configs[0]
    folder = tmp_path / "models"
    folder.mkdir()
    good = _smoke_network(config).state_dict()
    good.pop("body.fc.weight")  # another dataset's classifier may be absent or of another shape
    torch.save({"model": good}, folder / "SVD-Pade.pt")
    study = StudyPlan.create(FGVC, checkpoints=folder, **spec)
    assert {c.init_checkpoint for c in study.configs} == {str(folder.resolve() / "SVD-Pade.pt")}

    (folder / "SVD-Pade.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=r"SVD-Pade\.pt: not a readable PyTorch file"):
        StudyPlan.create(FGVC, checkpoints=folder, **spec)

    other = build_model(  # another network: an AlexNet's state
        "alexnet", application="gcp", num_classes=200, in_channels=3, image_size=16, method="ns"
    )
    torch.save(other.state_dict(), folder / "SVD-Pade.pt")
    with pytest.raises(UserError, match="does not fit the resnet50 gcp network"):
        StudyPlan.create(FGVC, checkpoints=folder, **spec)
    assert not (tmp_path / "results").exists()


def test_a_trial_never_trains_from_scratch_on_a_checkpoint_that_does_not_fit(tmp_path):
    net = build_model(
        "convnet", application="dbn", num_classes=7, in_channels=1, image_size=8, method="svd"
    )
    other = build_model(
        "convnet", application="gcp", num_classes=7, in_channels=1, image_size=8, method="svd"
    )
    torch.save(other.state_dict(), tmp_path / "other.pt")
    with pytest.raises(ValueError, match="does not fit this network"):
        load_pretrained(net, str(tmp_path / "other.pt"))
    torch.save({"model": net.state_dict()}, tmp_path / "own.pt")
    assert load_pretrained(net, str(tmp_path / "own.pt")) == []
