"""A study spec (preset + the user's changes) expanded into validated `TrialConfig`s."""

from __future__ import annotations

from typing import Any

from svdablate.errors import UserError
from svdablate.schema import Row, split_row
from svdablate.spec.config import StudySpec, TrialConfig
from svdablate.spec.overrides import make_config
from svdablate.spec.presets import Preset, get_preset, hybrid_switch_epoch


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


SMOKE_REDUCTION_DIM = 32  # the GCP head's d under --smoke: the same code, a 32×32 matrix function


def _smoke_preset(preset: Preset) -> Preset:
    """The same rows and code paths on FakeData: 1 seed, tiny images, 2 steps an epoch, and a
    32-channel GCP head (the 256×256 matrix functions of SVD-PI and SVD-Newton are the bulk of a
    full-size smoke trial's time)."""
    epochs = 2 if preset.hybrid else 1
    options = dict(preset.model_options)
    if preset.application == "gcp":
        options.setdefault("reduction_dim", SMOKE_REDUCTION_DIM)
    smoke = preset.with_overrides(
        seeds=1, gpus_per_trial=0.0, cpus_per_trial=1.0, model_options=options
    )
    return smoke.with_recipe(epochs=epochs, batch_size=4, milestones=(1.0,))


def resolve_preset(spec: StudySpec) -> Preset:
    """The preset with the spec's changes applied (smoke shrinks it)."""
    preset = get_preset(spec.preset)
    if spec.smoke:
        preset = _smoke_preset(preset)
    if spec.seeds is not None:
        preset = preset.with_overrides(seeds=spec.seeds)
    if spec.rows is not None:
        preset = preset.with_overrides(rows=tuple(spec.rows))
    if spec.epochs is not None:
        preset = preset.with_recipe(epochs=spec.epochs)
    return preset


def _base_fields(preset: Preset, spec: StudySpec) -> dict[str, Any]:
    recipe = preset.recipe
    return {
        "study": preset.name,
        "application": preset.application,
        "model": preset.model,
        "smoke": spec.smoke,
        "epochs": recipe.epochs,
        "batch_size": recipe.batch_size,
        "lr": recipe.lr,
        "momentum": recipe.momentum,
        "weight_decay": recipe.weight_decay,
        "milestones": recipe.milestones,
        "gamma": recipe.gamma,
        "grad_clip_norm": recipe.grad_clip_norm,
        "classifier_lr_factor": recipe.classifier_lr_factor,
        "max_steps_per_epoch": 2 if spec.smoke else None,
        "kappa_every": 1 if spec.smoke else 10,
        "model_options": dict(preset.model_options),
        "ow_map": preset.ow_map,
        "data_dir": spec.data_dir,
        "download": spec.download,
    }


def _switch_epoch(preset: Preset, spec: StudySpec, base: dict[str, Any]) -> int:
    """Hybrid protocol: from the effective schedule (after --epochs and --set)."""
    if spec.smoke:
        return 1
    probe = make_config({**base, "row": "NS", "method": "ns"}, spec.overrides)
    return hybrid_switch_epoch(probe.epochs, probe.milestone_epochs, preset.hybrid_warmup_epochs)


def expand(spec: StudySpec) -> list[TrialConfig]:
    """All trial configs of the grid: rows × datasets × protocols × precisions × seeds.

    Every config is validated here, so a bad --set value stops the study before Ray starts.
    """
    preset = resolve_preset(spec)
    rows = [parse_row(r) for r in preset.rows]
    base = _base_fields(preset, spec)
    switch = _switch_epoch(preset, spec, base) if preset.hybrid else None
    starts = starting_checkpoints(spec, [row.label for row in rows])
    configs: dict[str, TrialConfig] = {}
    for row in rows:
        method = canonical_method(row)
        for dataset in preset.datasets:
            for protocol in preset.protocols:
                if protocol == "hybrid" and method == "ns":
                    continue  # the hybrid protocol trains NS first: for NS it is the standalone run
                for precision in preset.precisions:
                    for seed in range(spec.seed_offset, spec.seed_offset + preset.seeds):
                        fields = {
                            **base,
                            "row": row.label,
                            "method": method,
                            "treatments": row.treatments,
                            "seed": seed,
                            "dataset": "fake" if spec.smoke else dataset,
                            "fake_like": dataset if spec.smoke else None,
                            "protocol": protocol,
                            "switch_epoch": switch if protocol == "hybrid" else None,
                            "precision": precision,
                            "init_checkpoint": starts.get(row.label),
                        }
                        config = make_config(fields, spec.overrides)
                        configs.setdefault(config.trial_id, config)
    return list(configs.values())


def starting_checkpoints(spec: StudySpec, rows: list[str]) -> dict[str, str]:
    """{row: its own checkpoint} from `--checkpoints DIR` (`checkpoints.row_checkpoints`)."""
    if spec.checkpoints is None:
        return {}
    from svdablate.spec.checkpoints import row_checkpoints

    return row_checkpoints(spec.checkpoints, rows)


def missing_checkpoints(spec: StudySpec) -> str | None:
    """Why a preset that fine-tunes cannot run without `--checkpoints` (None: it can)."""
    preset = resolve_preset(spec)
    if not preset.fine_tunes or spec.checkpoints is not None:
        return None
    rows = ", ".join(f"{parse_row(r).label}.pt" for r in preset.rows)
    return (
        f"{preset.name} fine-tunes each row from its own ImageNet model: give --checkpoints DIR "
        f"with one file per row ({rows}; docs/presets.md, Fine-grained)"
    )


def warnings_for(spec: StudySpec) -> list[str]:
    """One line per row whose combination of treatments the papers advise against, and one for
    a fine-tuning preset's smoke run without checkpoints (its rows start from random weights)."""
    from svdablate.treatments import combination_warning

    out = []
    if spec.smoke and missing_checkpoints(spec):
        out.append(
            f"--smoke without --checkpoints: {spec.preset}'s rows start from random weights "
            "(a real run refuses to)"
        )
    for text in resolve_preset(spec).rows:
        row = parse_row(text)
        warning = combination_warning(row.treatments)
        if warning:
            out.append(warning if warning.startswith(row.label) else f"{row.label}: {warning}")
    return out
