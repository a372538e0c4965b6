"""Checkpoint files read without running code from them, and a trial's unreadable state set aside.

Every checkpoint is read with `torch.load(weights_only=True)`: tensors, numbers, strings and
containers only, so a file that would call code when unpickled (`__reduce__` → `os.system`) is
refused before it runs anything. A trial's own `state.pt` holds nothing else (the model's and the
SGD optimizer's state dicts, MultiStepLR's, counters, two RNG tensors).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

STATE_FILE = "state.pt"
STATE_KEYS = (
    "model",
    "optimizer",
    "scheduler",
    "epoch",
    "best",
    "failures_total",
    "rng",
    "loader_rng",
)
UNREADABLE_SUFFIX = ".unreadable"


class UnreadableCheckpoint(Exception):
    """A checkpoint file that cannot be read as plain tensors (truncated, damaged, or code)."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def first_line(exc: BaseException, limit: int = 160) -> str:
    """An exception's type and the first line of its message."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {line[:limit]}" if line else type(exc).__name__


def load_tensors(path: str | os.PathLike, map_location: Any = "cpu", *, mmap: bool = False) -> Any:
    """The file's contents as plain tensors and containers; UnreadableCheckpoint otherwise."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as exc:  # torch's zip reader, the safe unpickler, an I/O error: all one fault
        raise UnreadableCheckpoint(path, _reason(exc)) from None


def _reason(exc: Exception) -> str:
    text = str(exc)
    if "Weights only load failed" in text:
        unsupported = next((ln for ln in text.splitlines() if "Unsupported global" in ln), "")
        detail = unsupported.strip().removeprefix("WeightsUnpickler error: ")
        return f"not plain tensors ({detail or 'it holds objects that run code when loaded'})"
    return f"not a readable PyTorch file ({first_line(exc)})"


def read_trial_state(path: str | os.PathLike, device: Any = "cpu") -> dict[str, Any]:
    """A trial's `state.pt` (what `train_trial` continues from); UnreadableCheckpoint when the
    file cannot be read or is not a trial's state."""
    state = load_tensors(path, device)
    if not isinstance(state, dict):
        raise UnreadableCheckpoint(path, f"not a trial's state (a {type(state).__name__})")
    missing = [key for key in STATE_KEYS if key not in state]
    if missing:
        raise UnreadableCheckpoint(path, f"not a trial's state (no {missing[0]!r})")
    return state


def set_aside(filesystem: Any, checkpoint_path: str) -> str:
    """Move a checkpoint's unreadable `state.pt` beside its folder, out of Tune's hands (Tune
    deletes the folder when the trial's next checkpoint replaces it): returns where it went.

    `filesystem` is the checkpoint's pyarrow filesystem (local, or the --storage-path's).
    """
    source = f"{checkpoint_path.rstrip('/')}/{STATE_FILE}"
    folder = Path(checkpoint_path.rstrip("/"))
    target = f"{folder.parent}/{folder.name}-{STATE_FILE}{UNREADABLE_SUFFIX}"
    filesystem.move(source, target)
    return target
