"""A grid specification (preset + overrides) expanded into flat, JSON-able trial configs."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from svdablate.metalayers import resolve_method
from svdablate.treatments import combination_warning, parse_treatments

from .presets import Preset, get_preset

# Config keys that say where or how a trial runs, not what it computes: left out of the hash.
_NON_IDENTITY_KEYS = frozenset(
    {"trial_id", "data_dir", "download", "device", "num_workers", "cpus", "gpu_fraction", "_test"}
)


@dataclass(frozen=True)
class Row:
    """A table row: the meta-layer method (the paper's label and canonical name) and treatments."""

    label: str
    method: str
    treatments: tuple[str, ...]


def parse_row(text: str) -> Row:
    """Parse `SVD+NOG+OW` into method and canonical treatments; ValueError on unknown names."""
    parts = [p.strip() for p in text.split("+") if p.strip()]
    if not parts:
        raise ValueError("empty row name; write e.g. SVD or SVD+NOG+OW+OLR")
    method = resolve_method(parts[0])
    treatments = parse_treatments(parts[1:]) if len(parts) > 1 else ()
    label = "+".join([parts[0], *treatments])
    return Row(label=label, method=method, treatments=treatments)


@dataclass
class GridSpec:
    """What to run: a preset and the user's overrides of its axes and recipe."""

    preset: str
    seeds: int | None = None
    rows: tuple[str, ...] | None = None
    epochs: int | None = None
    smoke: bool = False
    data_dir: str | None = None
    download: bool = False
    seed_offset: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)


def _smoke_preset(preset: Preset) -> Preset:
    """The same rows and code paths on FakeData: 1 seed, tiny images, 2 steps an epoch."""
    epochs = 2 if preset.switch_epoch is not None else 1
    smoke = preset.with_overrides(seeds=1, gpus_per_trial=0.0, cpus_per_trial=1.0)
    return smoke.with_recipe(epochs=epochs, batch_size=8, milestones=(1,))


def config_hash(config: dict[str, Any]) -> str:
    """Short, stable hash of everything in a trial config that affects its result except seed."""
    identity = {k: v for k, v in config.items() if k not in _NON_IDENTITY_KEYS and k != "seed"}
    blob = json.dumps(identity, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def trial_id(config: dict[str, Any]) -> str:
    """Deterministic trial name: the same trial keeps its name across resume and extend."""
    parts = [config["row"], config["dataset"], config["protocol"], config["precision"]]
    slug = "_".join(p.replace("+", "-").replace(" ", "") for p in parts)
    return f"{slug}_s{config['seed']}_{config['config_hash'][:6]}"


def resolve_preset(spec: GridSpec) -> Preset:
    """The preset with the spec's overrides applied (smoke shrinks it)."""
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


def expand(spec: GridSpec) -> list[dict[str, Any]]:
    """All trial configs of the grid: rows × datasets × protocols × precisions × seeds."""
    preset = resolve_preset(spec)
    rows = [parse_row(r) for r in preset.rows]
    recipe = preset.recipe
    configs = []
    for row in rows:
        for dataset in preset.datasets:
            for protocol in preset.protocols:
                if protocol == "hybrid" and row.method == "ns":
                    continue  # the hybrid protocol trains NS first: for NS it is the standalone run
                for precision in preset.precisions:
                    for seed in range(spec.seed_offset, spec.seed_offset + preset.seeds):
                        config: dict[str, Any] = {
                            "study": preset.name,
                            "row": row.label,
                            "method": row.method,
                            "treatments": list(row.treatments),
                            "seed": seed,
                            "application": preset.application,
                            "model": preset.model,
                            "dataset": "fake" if spec.smoke else dataset,
                            "fake_like": dataset if spec.smoke else None,
                            "smoke": spec.smoke,
                            "protocol": protocol,
                            "switch_epoch": preset.switch_epoch if protocol == "hybrid" else None,
                            "precision": precision,
                            "epochs": recipe.epochs,
                            "batch_size": recipe.batch_size,
                            "lr": recipe.lr,
                            "momentum": recipe.momentum,
                            "weight_decay": recipe.weight_decay,
                            "milestones": list(recipe.milestones),
                            "gamma": recipe.gamma,
                            "max_steps_per_epoch": 2 if spec.smoke else None,
                            "kappa_every": 1 if spec.smoke else 10,
                            "ol_weight": 1e-2,
                            "model_options": dict(preset.model_options),
                            "data_dir": spec.data_dir,
                            "download": spec.download,
                        }
                        if spec.smoke and preset.switch_epoch is not None and protocol == "hybrid":
                            config["switch_epoch"] = 1
                        config.update(spec.overrides)
                        config["config_hash"] = config_hash(config)
                        config["trial_id"] = trial_id(config)
                        configs.append(config)
    return configs


def warnings_for(spec: GridSpec) -> list[str]:
    """One line per row whose combination of treatments the papers advise against."""
    preset = resolve_preset(spec)
    out = []
    for text in preset.rows:
        row = parse_row(text)
        warning = combination_warning(row.treatments)
        if warning:
            out.append(warning if warning.startswith(row.label) else f"{row.label}: {warning}")
    return out
