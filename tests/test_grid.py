"""Grid expansion: presets × overrides → trial configs with stable ids and hashes."""

import pytest

from svdablate.orchestrator.grid import GridSpec, config_hash, expand, parse_row, warnings_for
from svdablate.orchestrator.presets import PRESETS, get_preset


def test_demo_grid_has_five_rows_times_three_seeds():
    configs = expand(GridSpec(preset="demo"))
    assert len(configs) == 15
    assert [c["row"] for c in configs[::3]] == ["SVD", "SVD+NOG", "SVD+OW", "SVD+NOG+OW+OLR", "NS"]
    assert {c["seed"] for c in configs} == {0, 1, 2}
    assert len({c["trial_id"] for c in configs}) == 15


def test_row_parsing_is_canonical_and_case_insensitive():
    row = parse_row("svd+olr+ow+nog")
    assert row.method == "svd"
    assert row.treatments == ("NOG", "OW", "OLR")
    assert row.label == "svd+NOG+OW+OLR"
    assert parse_row("iSQRT-COV").method == "ns"
    assert parse_row("MPN-COV").method == "svd"


@pytest.mark.parametrize("bad", ["SVD+XYZ", "QR-ITER", "SVD+NOG+NOG", ""])
def test_unknown_rows_are_rejected_with_the_valid_names(bad):
    with pytest.raises(ValueError):
        parse_row(bad)


def test_unknown_preset_lists_valid_presets():
    with pytest.raises(ValueError, match="demo"):
        get_preset("nope")


def test_config_hash_ignores_seed_and_location_but_not_recipe():
    base = expand(GridSpec(preset="demo", seeds=1))[0]
    assert config_hash({**base, "seed": 7, "data_dir": "/x"}) == config_hash(base)
    assert config_hash({**base, "lr": 0.5}) != config_hash(base)


def test_trial_ids_are_stable_and_extend_adds_only_new_seeds():
    three = {c["trial_id"] for c in expand(GridSpec(preset="demo", seeds=3))}
    five = {c["trial_id"] for c in expand(GridSpec(preset="demo", seeds=5))}
    assert three < five and len(five - three) == 10


def test_smoke_runs_every_row_and_protocol_on_fake_data():
    for name, preset in PRESETS.items():
        configs = expand(GridSpec(preset=name, smoke=True))
        assert {c["dataset"] for c in configs} == {"fake"}
        assert {c["row"] for c in configs} >= {parse_row(r).label for r in preset.rows}
        assert {c["protocol"] for c in configs} == set(preset.protocols)
        assert all(c["max_steps_per_epoch"] == 2 for c in configs)


def test_hybrid_trials_switch_from_ns():
    configs = expand(GridSpec(preset="iccv21-gcp-alexnet"))
    hybrid = [c for c in configs if c["protocol"] == "hybrid"]
    assert hybrid and all(c["switch_epoch"] == 17 for c in hybrid)
    assert all(c["method"] != "ns" for c in hybrid)


def test_olr_with_only_one_orthogonal_factor_warns():
    lines = warnings_for(GridSpec(preset="eccv22-dbn-cifar100"))
    rows = {line.split(":")[0] for line in lines}
    assert rows == {"SVD+NOG+OLR", "SVD+OW+OLR"}
