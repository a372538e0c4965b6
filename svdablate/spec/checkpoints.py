"""Each row's own starting checkpoint (`--checkpoints DIR`), found and checked before Ray starts.

ICCV'21 §5.4 fine-tunes each method's own ImageNet model: `iccv21-fgvc` (a preset with
`fine_tunes`) needs one checkpoint per row, and never trains a row from scratch. The convention:
DIR holds one file per row, named as the row is written in `--rows` (any case, `é` or `e`:
`iSQRT-COV.pt`, `SVD-Pade.pt`, `svd-taylor.pth`; suffix .pt, .pth, .pth.tar or .tar), each a
trial's `state.pt` (e.g. of an `iccv21-gcp-resnet50` hybrid trial, symlinked) or a plain state
dict of the same network. A file is matched to a row by the row's meta-layer and treatments, so
`MPN-COV.pt` and `SVD.pt` are the same row's (one meta-layer, two names).

`row_checkpoints` maps rows to files (a row without one, or with two, is one line naming the
files it looked for); `check_checkpoints` loads each file and checks that every tensor of the
trial's network but its classifier is there with its shape (the classifier is the new dataset's,
started afresh as official `model_init.py` does), so a wrong file stops the study, not a trial.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from svdablate.errors import UserError
from svdablate.spec.config import TrialConfig

SUFFIXES = (".pth.tar", ".pt", ".pth", ".tar")


def _stem(path: Path) -> str | None:
    name = path.name
    for suffix in SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def _row_key(text: str) -> tuple[str, tuple[str, ...]] | None:
    """(canonical method, treatments) of a row's text; None when it is not a row."""
    from svdablate.spec.rows import canonical_method, parse_row

    try:
        row = parse_row(text)
    except UserError:
        return None
    return canonical_method(row), row.treatments


def row_checkpoints(directory: str | Path, rows: list[str]) -> dict[str, str]:
    """{row label: absolute path} of every row's file in `directory` (module docstring)."""
    folder = Path(directory).expanduser()
    if not folder.is_dir():
        raise UserError(
            f"--checkpoints {directory}: not a directory; give a folder with one checkpoint per "
            f"row, e.g. {_expected(rows[:2])}"
        )
    found: dict[tuple[str, tuple[str, ...]], list[Path]] = {}
    for path in sorted(folder.iterdir()):
        stem = _stem(path)
        key = _row_key(stem) if stem else None
        if key is not None and path.is_file():
            found.setdefault(key, []).append(path.resolve())
    chosen: dict[str, str] = {}
    missing = []
    for row in rows:
        files = found.get(_row_key(row) or ("", ()), [])
        if len(files) > 1:
            names = ", ".join(p.name for p in files)
            raise UserError(
                f"--checkpoints {directory}: two files for row {row} ({names}): keep one"
            )
        if not files:
            missing.append(row)
        else:
            chosen[row] = str(files[0])
    if missing:
        raise UserError(
            f"--checkpoints {directory}: no checkpoint for row(s) {', '.join(missing)}; "
            f"add {_expected(missing)} (each row's own model: docs/presets.md, Fine-grained)"
        )
    shared: dict[str, list[str]] = {}
    for row, path in chosen.items():
        shared.setdefault(path, []).append(row)
    for path, users in shared.items():
        if len(users) > 1:
            raise UserError(
                f"--checkpoints {directory}: rows {' and '.join(users)} both start from {path}; "
                "each row fine-tunes its own model"
            )
    return chosen


def _expected(rows: list[str]) -> str:
    return ", ".join(f"{row}.pt" for row in rows)


def _weights(path: str) -> dict[str, Any]:
    """The model tensors of a trial's `state.pt` or of a plain state dict; UserError otherwise."""
    import torch

    from svdablate.training.checkpoint_files import UnreadableCheckpoint, load_tensors

    try:
        state = load_tensors(path, mmap=True)  # weights_only: no code in the file runs
    except UnreadableCheckpoint as exc:  # the user's to replace
        raise UserError(
            f"checkpoint {path}: {exc.reason}: give a state dict of tensors "
            "(torch.save(model.state_dict(), path)) or a trial's state.pt"
        ) from None
    weights = state.get("model", state) if isinstance(state, dict) else None
    if not isinstance(weights, dict) or not all(torch.is_tensor(v) for v in weights.values()):
        raise UserError(
            f"checkpoint {path}: neither a trial's state.pt nor a state dict of tensors"
        )
    return weights


def check_checkpoints(configs: list[TrialConfig], data: dict[tuple[Any, ...], Any]) -> None:
    """Every trial's `init_checkpoint` loads and fits its network but the classifier.

    `data` is `preflight.check_data`'s record of each trial's data (its class count, channels
    and image size: the network the trial builds).
    """
    from svdablate.models import build_model

    networks: dict[tuple[Any, ...], dict[str, tuple[int, ...]]] = {}
    checked: set[tuple[str, tuple[Any, ...]]] = set()
    loaded: dict[str, dict[str, Any]] = {}
    for config in configs:
        path = config.init_checkpoint
        if path is None:
            continue
        profile = json.loads(data[config.data_key]["profile"])
        net_key = (
            config.model,
            config.application,
            profile["channels"],
            profile["image_size"],
            json.dumps(config.model_options.as_kwargs(), sort_keys=True),
        )
        if (path, net_key) in checked:
            continue
        if net_key not in networks:
            model = build_model(
                config.model,
                application=config.application,
                num_classes=profile["classes"],
                in_channels=profile["channels"],
                image_size=profile["image_size"],
                method=config.method,
                precision=config.precision,
                options=config.model_options,
            )
            prefix = model.classifier_prefix
            networks[net_key] = {
                k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith(prefix)
            }
        if path not in loaded:
            loaded[path] = _weights(path)
        _check_fit(path, loaded[path], networks[net_key], config)
        checked.add((path, net_key))


def _check_fit(
    path: str, weights: dict[str, Any], needed: dict[str, tuple[int, ...]], config: TrialConfig
) -> None:
    bad = [
        name
        for name, shape in needed.items()
        if name not in weights or tuple(weights[name].shape) != shape
    ]
    if bad:
        first = bad[0]
        got = tuple(weights[first].shape) if first in weights else "absent"
        raise UserError(
            f"checkpoint {path} (row {config.row}) does not fit the {config.model} "
            f"{config.application} network: {len(bad)} of its {len(needed)} tensors outside the "
            f"classifier are missing or of another shape, e.g. {first} {got} (needs "
            f"{needed[first]}); give that row's own model of this network"
        )
