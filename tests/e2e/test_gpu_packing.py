"""Fractional GPUs pack trials, proven without a GPU: a Ray cluster that declares 2 logical GPUs
runs 4 trials of --gpus-per-trial 0.5 at once, two on each, each sees the GPU Ray gave it
(CUDA_VISIBLE_DEVICES), and the trial falls back to the CPU here without error (4 trials, not 8
of a quarter GPU: the same packing, half the actors importing torch)."""

import json
from collections import Counter

from svdablate.training.faults import faults_env


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals that hold at one moment."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def test_half_a_gpu_per_trial_runs_four_trials_at_once_two_on_each_gpu(tmp_path, cli, ray_cluster):
    cluster_with_logical_gpus = ray_cluster(num_cpus=4, num_gpus=2)
    probe = tmp_path / "probe.jsonl"
    # Each trial holds its slot 20 s: four actors importing torch on 2 loaded cores start up to
    # ~10 s apart, and the test is that all four hold a slot at the same moment.
    hooks = [{"sleep_per_epoch": 20.0, "probe_log": str(probe)}]
    result = cli(
        "run", "--rows", "SVD,SVD+NOG", "--seeds", "2",
        "--epochs", "1", "--set", "max_steps_per_epoch=1", "--set", "kappa_every=1",
        "--gpus-per-trial", "0.5",
        "--cpus-per-trial", "1", "--address", cluster_with_logical_gpus.address,
        "--results-dir", str(tmp_path / "results"), "--no-progress", "--no-report",
        env=faults_env(hooks),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    records = [json.loads(line) for line in probe.read_text().splitlines()]
    starts = {r["trial_id"]: r for r in records if r["event"] == "start"}
    ends = {r["trial_id"]: r for r in records if r["event"] == "end"}
    assert len(starts) == len(ends) == 4
    intervals = [(starts[t]["time"], ends[t]["time"]) for t in starts]
    assert max_overlap(intervals) == 4, intervals
    visible = Counter(r["cuda_visible_devices"] for r in starts.values())
    assert visible == {"0": 2, "1": 2}, visible  # two halves on each logical GPU
    assert {r["device"] for r in starts.values()} == {"cpu"}  # no CUDA here: the CPU, no error
