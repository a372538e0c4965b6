"""Fault injection for the orchestrator's own tests, selected outside the trial config.

`SVDABLATE_TEST_FAULTS` holds a JSON object or list of objects, each applying to the rows it
names in `rows` (all rows without it): `sleep_per_epoch`, `nan_at_epoch`, `bad_value_at_epoch`,
`crash_at_epoch`, `raise_once_at_epoch` ([epoch, marker folder]), and the logs the tests read
(`start_log`, `completion_log`, `probe_log`). The driver forwards the variable to the trials'
workers (`runtime.tune_runner`); `train_trial` reads it. Unset: no fault, no log.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

FAULTS_ENV = "SVDABLATE_TEST_FAULTS"


def faults_for(row: str) -> dict[str, Any]:
    """The faults `SVDABLATE_TEST_FAULTS` sets for `row` (an empty dict when unset)."""
    raw = os.environ.get(FAULTS_ENV, "").strip()
    if not raw:
        return {}
    given = json.loads(raw)
    merged: dict[str, Any] = {}
    for hooks in [given] if isinstance(given, dict) else given:
        rows = hooks.get("rows")
        if rows is None or row in rows:
            merged.update({k: v for k, v in hooks.items() if k != "rows"})
    return merged


def inject(hooks: dict[str, Any], epoch: int, trial_id: str) -> None:
    """Sleep per epoch; crash each trial once at an epoch (a marker file remembers); crash at an
    epoch every time (`crash_at_epoch`); raise a deterministic ValueError (`bad_value_at_epoch`)."""
    if hooks.get("sleep_per_epoch"):
        time.sleep(float(hooks["sleep_per_epoch"]))
    if hooks.get("bad_value_at_epoch") == epoch:
        raise ValueError(f"injected bad value at epoch {epoch}")
    if hooks.get("crash_at_epoch") == epoch:
        raise RuntimeError(f"injected crash at epoch {epoch}")
    crash = hooks.get("raise_once_at_epoch")
    if crash is not None and epoch == int(crash[0]):
        marker = Path(crash[1]) / f"crashed-{trial_id}"
        if not marker.exists():
            marker.write_text("crashed once")
            raise RuntimeError(f"injected fault at epoch {epoch}")


def log_event(hooks: dict[str, Any], log: str, trial_id: str, event: str) -> None:
    """Append `trial_id event` to one of the hooks' logs: tests count starts and completions."""
    if hooks.get(log):
        with open(hooks[log], "a") as handle:
            handle.write(f"{trial_id} {event}\n")


def probe(hooks: dict[str, Any], trial_id: str, event: str, device: str) -> None:
    """Append a JSON line (time, the GPUs Ray made visible, the device chosen) to `probe_log`:
    the GPU-packing test reads the trials' concurrency and shares from it."""
    if hooks.get("probe_log"):
        record = {
            "trial_id": trial_id,
            "event": event,
            "time": time.time(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "device": device,
        }
        with open(hooks["probe_log"], "a") as handle:
            handle.write(json.dumps(record) + "\n")


def faults_env(faults: list[dict[str, Any]] | dict[str, Any]) -> dict[str, str]:
    """This process's environment with `faults` selected: the `env` of a CLI run under test."""
    return {**os.environ, FAULTS_ENV: json.dumps(faults)}
