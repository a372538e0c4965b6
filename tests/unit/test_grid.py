"""Grid expansion: presets × changes → validated trial configs with stable ids and hashes."""

import pytest

from svdablate.errors import UserError
from svdablate.spec.presets import PRESETS, get_preset
from svdablate.spec.rows import parse_row
from svdablate.study.plan import StudyPlan


def test_demo_grid_has_five_rows_times_its_seeds():
    preset = get_preset("demo")
    configs = StudyPlan.create(preset="demo", check=False).configs
    assert len(configs) == 5 * preset.seeds
    rows = list(dict.fromkeys(c.row for c in configs))
    assert rows == ["SVD", "SVD+NOG", "SVD+OW", "SVD+NOG+OW+OLR", "NS"]
    assert {c.seed for c in configs} == set(range(preset.seeds))
    assert len({c.trial_id for c in configs}) == len(configs)


def test_row_parsing_is_canonical_case_insensitive_and_spelled_as_the_papers():
    row = parse_row("svd+olr+ow+nog")
    assert row.treatments == ("NOG", "OW", "OLR")
    assert row.label == "SVD+NOG+OW+OLR"
    assert parse_row("isqrt-cov").label == "iSQRT-COV"
    assert parse_row("ns").label == "NS"
    assert parse_row("MPN-COV").label == "MPN-COV"
    assert parse_row("SVD-Pade").label == "SVD-Pade"


@pytest.mark.parametrize("bad", ["SVD+XYZ", "QR-ITER", "SVD+NOG+NOG", "", "SVD+"])
def test_unknown_rows_are_rejected_with_the_valid_names(bad):
    with pytest.raises(UserError):
        parse_row(bad)


def test_unknown_preset_lists_valid_presets_and_the_closest():
    with pytest.raises(UserError, match="did you mean demo") as info:
        get_preset("dmeo")
    assert "eccv22-dbn-cifar10" in str(info.value)


def test_config_hash_ignores_seed_and_location_but_not_recipe():
    base = StudyPlan.create(preset="demo", seeds=1, check=False).configs[0]
    moved = base.model_copy(update={"seed": 7, "data_dir": "/x", "num_workers": 3})
    assert moved.config_hash == base.config_hash
    assert base.model_copy(update={"lr": 0.5}).config_hash != base.config_hash


def test_trial_ids_are_stable_and_more_seeds_add_only_new_trials():
    three = {c.trial_id for c in StudyPlan.create(preset="demo", seeds=3, check=False).configs}
    five = {c.trial_id for c in StudyPlan.create(preset="demo", seeds=5, check=False).configs}
    assert three < five and len(five - three) == 10


def test_smoke_runs_every_row_and_protocol_on_fake_data():
    for name, preset in PRESETS.items():
        configs = StudyPlan.create(preset=name, smoke=True, check=False).configs
        assert {c.dataset for c in configs} == {"fake"}
        assert {c.row for c in configs} >= {parse_row(r).label for r in preset.rows}
        assert {c.protocol for c in configs} == set(preset.protocols)
        assert all(c.max_steps_per_epoch == 2 for c in configs)


def test_hybrid_trials_switch_from_ns_three_epochs_before_the_last_decay():
    configs = StudyPlan.create(preset="iccv21-gcp-alexnet", check=False).configs
    hybrid = [c for c in configs if c.protocol == "hybrid"]
    assert hybrid and all(c.switch_epoch == 17 for c in hybrid)  # decays at 10, 20 of 30
    assert all(c.method != "ns" for c in hybrid)
    short = StudyPlan.create(preset="iccv21-gcp-alexnet", epochs=12, check=False).configs
    assert {c.switch_epoch for c in short if c.protocol == "hybrid"} == {5}  # decays at 4, 8


def test_milestones_are_fractions_of_the_run_so_epochs_move_them():
    (config,) = StudyPlan.create(
        preset="demo", rows=("SVD",), seeds=1, epochs=15, check=False
    ).configs
    assert config.milestone_epochs == [10]
    (config,) = StudyPlan.create(
        preset="demo", rows=("SVD",), seeds=1, epochs=6, check=False
    ).configs
    assert config.milestone_epochs == [4]
    cifar = StudyPlan.create(
        preset="eccv22-dbn-cifar10", rows=("SVD",), seeds=1, check=False
    ).configs[0]
    assert cifar.milestone_epochs == [100, 200, 300]  # the paper's schedule at 350 epochs


def test_the_released_solver_is_one_typed_set_for_every_row():
    """--set model_options.solver=MPA-Lya --set precision=float32: every ECCV'22 row runs the
    released code's solver; rows keep their names (and the paper's numbers); a bad name stops
    the study before Ray with the valid ones."""
    from svdablate.spec.overrides import parse_overrides

    sets = parse_overrides(["model_options.solver=MPA-Lya", "precision=float32"])
    configs = StudyPlan.create(
        preset="eccv22-dbn-cifar10", seeds=1, overrides=sets, check=False
    ).configs
    assert {c.model_options.solver for c in configs} == {"mpa-lya"}
    assert {c.precision for c in configs} == {"float32"}
    assert {c.method for c in configs} == {"svd", "ns"}  # the rows' own methods, recorded
    assert configs[0].as_params()["model_options.solver"] == "mpa-lya"
    default = StudyPlan.create(preset="eccv22-dbn-cifar10", seeds=1, check=False).configs[0]
    assert default.model_options.solver is None  # the paper's rows by default
    with pytest.raises(UserError, match="valid methods"):
        StudyPlan.create(
            preset="demo", overrides=parse_overrides(["model_options.solver=x"]), check=False
        )


def test_olr_with_only_one_orthogonal_factor_warns():
    lines = StudyPlan.create(preset="eccv22-dbn-cifar100", check=False).warnings
    rows = {line.split(":")[0] for line in lines}
    assert rows == {"SVD+NOG+OLR", "SVD+OW+OLR"}


def test_a_recorded_config_is_read_back_without_the_registries_that_import_torch():
    import json
    import subprocess
    import sys

    from pydantic import ValidationError

    from svdablate.spec.config import RECORDED, TrialConfig

    recorded = (
        StudyPlan.create(preset="demo", seeds=1, check=False).configs[0].model_dump(mode="json")
    )
    renamed = {**recorded, "model": "no-such-model"}  # a name a later version dropped
    assert TrialConfig.model_validate(renamed, context=RECORDED).model == "no-such-model"
    with pytest.raises(ValidationError, match="unknown model"):
        TrialConfig.model_validate(renamed)  # a new study's config is checked against them
    script = (
        "import json, sys\n"
        "from svdablate.spec.config import RECORDED, TrialConfig\n"
        "TrialConfig.model_validate(json.loads(sys.argv[1]), context=RECORDED)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    check = subprocess.run(
        [sys.executable, "-c", script, json.dumps(recorded)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr[-2000:]
