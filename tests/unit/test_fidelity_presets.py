"""Each preset's caption names what its trials ran and where they depart from the official code,
from the params its trials record (the same strings MLflow stores) — not from the preset."""

from __future__ import annotations

import pandas as pd
import pytest

from svdablate.errors import UserError
from svdablate.report.tables.fidelity import caption_notes
from svdablate.schema import CAPTION_PARAMS
from svdablate.study.plan import StudyPlan


def _caption(preset: str, *sets: str) -> str:
    records = []
    for config in StudyPlan.create(preset, seeds=1, overrides=list(sets), check=False).configs:
        params = config.as_params()
        record = {
            "row": config.row,
            "method": config.method,
            "precision": config.precision,
            "application": config.application,
            "dataset": config.dataset,
            "model": config.model,
            "protocol": config.protocol,
        }
        record.update({col: params.get(key, "") for col, key in CAPTION_PARAMS.items()})
        records.append(record)
    return " | ".join(caption_notes(pd.DataFrame.from_records(records)))


def test_iccv21_alexnet_caption_names_clipping_classifier_centring_and_tie_rules():
    text = _caption("iccv21-gcp-alexnet")
    assert "clipped at 5 after every backward" in text
    assert "32896→4096→ReLU→4096→ReLU→classes" in text
    assert "centring matrix built in float32" in text
    assert "SVD-Padé: at tied eigenvalues the exact limit" in text
    assert "SVD-TopN: at its tied (dropped) eigenvalues the batch's largest finite K" in text
    assert "MPN-COV (svd): at tied eigenvalues the exact limit" in text
    assert "Fine-tuned" not in text and "layer4 at stride 2" not in text


def test_clipping_note_follows_the_recorded_value_not_the_preset():
    assert "clipped at 5" not in _caption("iccv21-gcp-alexnet", "grad_clip_norm=null")


def test_resnet_and_fgvc_captions_name_their_official_scripts():
    assert "layer4 at stride 2, as train_resnet.sh" in _caption("iccv21-gcp-resnet50")
    assert "layer4 at stride 2" not in _caption(
        "iccv21-gcp-resnet50", "model_options.layer4_stride1=true"
    )
    text = _caption("iccv21-fgvc")
    assert "finetune/finetune.sh" in text and "own ImageNet model" in text


def test_cifar100_caption_says_which_constants_normalised_the_inputs():
    own = _caption("eccv22-dbn-cifar100")
    assert "CIFAR-100's own mean/std" in own and "CIFAR-10's mean/std, as the official" not in own
    official = _caption("eccv22-dbn-cifar100", "normalization=cifar10")
    assert "CIFAR-10's mean/std, as the official CIFAR-100 script" in official
    assert "CIFAR-100's own mean/std" not in official


def test_normalization_of_another_dataset_is_one_line_before_any_trial():
    with pytest.raises(UserError, match="normalization 'cifar10' applies to CIFAR only"):
        StudyPlan.create(preset="demo", overrides={"normalization": "cifar10"}, check=False)
