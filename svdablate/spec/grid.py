"""A study spec (preset + the user's changes) resolved into one preset, then expanded into
validated `TrialConfig`s: each trial is the preset's template with its grid point applied."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from svdablate.errors import UserError
from svdablate.spec.config import StudySpec, TrialConfig
from svdablate.spec.overrides import describe_error, make_config
from svdablate.spec.presets import Preset, get_preset, hybrid_switch_epoch
from svdablate.spec.rows import canonical_method, parse_row

SMOKE_REDUCTION_DIM = 32  # the GCP head's d under --smoke: the same code, a 32×32 matrix function


def _smoke(preset: Preset) -> Preset:
    """The same rows and code paths on FakeData: 1 seed, tiny images, 2 steps an epoch, and a
    32-channel GCP head (the 256×256 matrix functions of SVD-PI and SVD-Newton are the bulk of a
    full-size smoke trial's time)."""
    options = preset.trial.model_options
    if preset.application == "gcp" and options.reduction_dim is None:
        options = options.model_copy(update={"reduction_dim": SMOKE_REDUCTION_DIM})
    trial = preset.trial.model_copy(
        update={
            "smoke": True,
            "epochs": 2 if preset.hybrid else 1,
            "batch_size": 4,
            "milestones": (1.0,),
            "max_steps_per_epoch": 2,
            "kappa_every": 1,
            "model_options": options,
        }
    )
    return preset.with_changes(trial=trial, seeds=1, gpus_per_trial=0.0, cpus_per_trial=1.0)


def resolve_preset(spec: StudySpec) -> Preset:
    """The preset with the spec's changes applied, once: --smoke shrinks it, --seeds and --rows
    replace its axes, the overrides (--set, --epochs) and the data options go into its template.

    A bad override raises UserError, one line: the key, what was given, what is allowed.
    """
    preset = get_preset(spec.preset)
    if spec.smoke:
        preset = _smoke(preset)
    changes: dict[str, Any] = {}
    if spec.seeds is not None:
        changes["seeds"] = spec.seeds
    if spec.rows is not None:
        changes["rows"] = tuple(spec.rows)
    data = {  # the first dataset stands for all: each grid point sets its own
        "dataset": "fake" if spec.smoke else preset.datasets[0],
        "fake_like": preset.datasets[0] if spec.smoke else None,
        "data_dir": spec.data_dir,
        "download": spec.download,
    }
    trial = make_config({**dict(preset.trial), **data}, spec.overrides)
    return preset.with_changes(trial=trial, **changes)


def _switch_epoch(preset: Preset) -> int:
    """Hybrid protocol: from the template's schedule (the overrides applied)."""
    trial = preset.trial
    if trial.smoke:
        return 1
    return hybrid_switch_epoch(trial.epochs, trial.milestone_epochs, preset.hybrid_warmup_epochs)


def grid_point(template: TrialConfig, point: dict[str, Any], spec: StudySpec) -> TrialConfig:
    """`template.model_copy(update=point)`, validated whole (a copy alone checks nothing: the
    point's data must fit the normalization, its switch epoch the schedule). A field the user
    set (`--set precision=float32`) keeps the user's value in every point."""
    copy = template.model_copy(update={k: v for k, v in point.items() if k not in spec.overrides})
    try:
        return TrialConfig.model_validate(copy.model_dump())
    except ValidationError as exc:
        raise UserError(describe_error(exc, spec.overrides)) from None


def expand(preset: Preset, spec: StudySpec) -> list[TrialConfig]:
    """All trial configs of the resolved `preset`: rows × datasets × protocols × precisions ×
    seeds, each validated, so a bad value stops the study before Ray starts."""
    rows = [parse_row(r) for r in preset.rows]
    smoke = preset.trial.smoke
    switch = _switch_epoch(preset) if preset.hybrid else None
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
                        point = {
                            "row": row.label,
                            "method": method,
                            "treatments": row.treatments,
                            "seed": seed,
                            "dataset": "fake" if smoke else dataset,
                            "fake_like": dataset if smoke else None,
                            "protocol": protocol,
                            "switch_epoch": switch if protocol == "hybrid" else None,
                            "precision": precision,
                            "init_checkpoint": starts.get(row.label),
                        }
                        config = grid_point(preset.trial, point, spec)
                        configs.setdefault(config.trial_id, config)
    return list(configs.values())


def starting_checkpoints(spec: StudySpec, rows: list[str]) -> dict[str, str]:
    """{row: its own checkpoint} from `--checkpoints DIR` (`checkpoints.row_checkpoints`)."""
    if spec.checkpoints is None:
        return {}
    from svdablate.spec.checkpoints import row_checkpoints

    return row_checkpoints(spec.checkpoints, rows)


def missing_checkpoints(preset: Preset, spec: StudySpec) -> str | None:
    """Why a preset that fine-tunes cannot run without `--checkpoints` (None: it can)."""
    if not preset.fine_tunes or spec.checkpoints is not None:
        return None
    rows = ", ".join(f"{parse_row(r).label}.pt" for r in preset.rows)
    return (
        f"{preset.name} fine-tunes each row from its own ImageNet model: give --checkpoints DIR "
        f"with one file per row ({rows}; docs/presets.md, Fine-grained)"
    )


def warnings_for(preset: Preset, spec: StudySpec) -> list[str]:
    """One line per row whose combination of treatments the papers advise against, and one for
    a fine-tuning preset's smoke run without checkpoints (its rows start from random weights)."""
    from svdablate.treatments import combination_warning

    out = []
    if spec.smoke and missing_checkpoints(preset, spec):
        out.append(
            f"--smoke without --checkpoints: {spec.preset}'s rows start from random weights "
            "(a real run refuses to)"
        )
    for text in preset.rows:
        row = parse_row(text)
        warning = combination_warning(row.treatments)
        if warning:
            out.append(warning if warning.startswith(row.label) else f"{row.label}: {warning}")
    return out
