"""The benchmarks run and report what they promise (their numbers are not asserted)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

from svdablate.report.reading.runs import load_speed_runs
from svdablate.schema import SPEED_METRICS, SPEED_PARAMS

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    yield _load("metalayer_speed")
    sys.modules.pop("metalayer_speed", None)


def test_metalayer_speed_quick_run_logs_what_the_report_reads(bench, capsys, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    argv = ["--quick", "--sizes", "dbn", "--dtypes", "float64", "--methods", "svd,pade"]
    threads = torch.get_num_threads()
    rows = bench.main([*argv, "--tracking-uri", uri])
    assert "MLFLOW_TRACKING_URI" not in os.environ  # later studies in this process write elsewhere
    assert torch.get_num_threads() == threads  # --threads holds for the timings only
    assert [r.method for r in rows] == ["svd", "svd-pade"]
    for r in rows:
        assert r.device == "cpu"
        assert r.fp_s > 0 and r.bp_raw_s > 0 and r.engine_s > 0
        assert r.bp_s == pytest.approx(r.bp_raw_s - r.engine_s)  # net of the engine's fixed cost
        assert r.fp_vs_floor > 0 and r.bp_vs_floor > 0
    out = capsys.readouterr().out
    assert "MPN-COV" in out and "SVD-Padé" in out and "on cpu" in out
    assert "eigh + the one U f(Λ) Uᵀ matmul" in out  # the forward's own floor, measured
    logged = load_speed_runs(uri)  # the reader of `report --layout iccv21-t5`
    assert len(logged) == len(rows)
    for r, (_, run) in zip(rows, logged.iterrows(), strict=True):
        assert [run[p] for p in SPEED_PARAMS] == [str(getattr(r, p)) for p in SPEED_PARAMS]
        timings = [getattr(r, m) for m in SPEED_METRICS]
        assert [run[m] for m in SPEED_METRICS] == pytest.approx(timings)


def test_metalayer_speed_rejects_unknown_size(bench):
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--sizes", "huge"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible")
def test_metalayer_speed_refuses_cuda_without_a_device(bench, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--device", "cuda"])
    assert "no CUDA device" in capsys.readouterr().err


def test_telemetry_overhead_arms_differ_only_in_kappa(capsys):
    telemetry = _load("telemetry_overhead")
    try:
        arms = telemetry.main(["--rounds", "1", "--epochs", "2", "--steps", "2"])
        preset_every = telemetry.demo_config("SVD", 1).kappa_every
    finally:
        sys.modules.pop("telemetry_overhead", None)
    # the benchmark itself refuses an off arm that reports κ and an on arm that does not
    assert [(a.name, a.kappa_every) for a in arms] == [
        ("off", None),
        ("default", preset_every),
        ("every", 1),
    ]
    assert all(len(a.trials) == 1 for a in arms)
    for arm in arms:
        trial = arm.trials[0]
        assert len(trial.seconds) == 2 and len(trial.cpu_seconds) == 1  # CPU: from epoch 1 on
        assert trial.cpu_seconds[0] > 0
        assert trial.losses == arms[0].trials[0].losses  # the same training in every arm
    out = capsys.readouterr().out
    assert "≤ 1.03" in out and "κ path inside a trial" in out and "2 steps an epoch" in out


def test_gpu_step_times_the_trial_against_its_floor_without_ray_or_mlflow(capsys):
    """The GPU benchmark's quick CPU run: both measurements, the eigh line, and an import chain
    free of Ray and MLflow (the GPU machine has neither)."""
    import subprocess

    code = (
        "import sys, runpy; sys.argv = ['gpu_step.py', '--batch', '2', '--steps', '1', "
        "'--trials', 'demo:SVD,demo:NS']; "
        f"runpy.run_path({str(BENCHMARKS / 'gpu_step.py')!r}, run_name='__main__'); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'mlflow'}))"
    )
    root = BENCHMARKS.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=root, check=True).stdout  # fmt: skip
    assert "trial step vs its network's floor on cpu" in out
    assert out.count("│ demo ") == 2 and "step/floor" in out  # both trials, against the floor
    assert "auto picks" in out and out.strip().endswith("[]")


def test_a_backward_swamped_by_the_load_is_timed_again_never_negative(bench, monkeypatch):
    """A sample whose backward is not above the engine's fixed cost (a load spike in a timing)
    is timed again; when every sample is, the benchmark says so instead of a negative BP."""
    p = torch.eye(4, dtype=torch.float64).unsqueeze(0)
    monkeypatch.setattr(bench, "_floors", lambda *a: (1.0, 1.0))
    engines = iter([5.0, 0.5])  # the first sample's engine caught by a spike
    monkeypatch.setattr(bench, "_engine_cost", lambda *a: next(engines))
    monkeypatch.setattr(bench, "_timed_pair", lambda *a: (1.0, 2.0))
    _, bp, bp_raw, engine, *_ = bench.measure("svd", p, p, 1)
    assert (bp, bp_raw, engine) == (1.5, 2.0, 0.5)
    monkeypatch.setattr(bench, "_engine_cost", lambda *a: 5.0)
    with pytest.raises(RuntimeError, match="load swamps the timings"):
        bench.measure("svd", p, p, 1)


def test_a_run_swamped_by_the_load_stops_in_one_line(bench, monkeypatch, capsys):
    monkeypatch.setattr(bench, "_engine_cost", lambda *a: 5.0)  # above any backward here
    with pytest.raises(SystemExit) as stopped:
        bench.main(["--quick", "--sizes", "dbn", "--dtypes", "float64", "--methods", "svd"])
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "load swamps the timings" in err, err


@pytest.mark.parametrize(
    ("script", "argv", "words"),
    [
        ("metalayer_speed", ["--methods", "foo"], "unknown meta-layer method 'foo'"),
        ("metalayer_speed", ["--reps", "-2"], "--reps must be 1 or more"),
        ("metalayer_speed", ["--threads", "-1"], "--threads 0 or more"),
        ("gpu_step", ["--device", "cpu", "--steps", "0"], "--steps and --batch must be 1"),
        ("gpu_step", ["--device", "cpu", "--batch", "-1"], "--steps and --batch must be 1"),
        ("gpu_step", ["--device", "cpu", "--trials", "demo,nope"], "unknown preset 'nope'"),
        ("gpu_step", ["--device", "cpu", "--trials", "demo:XYZ"], "row 'XYZ'"),
        ("telemetry_overhead", ["--rounds", "0"], "--rounds, --epochs and --steps must be 1"),
        ("telemetry_overhead", ["--steps", "-1"], "--rounds, --epochs and --steps must be 1"),
        ("telemetry_overhead", ["--row", "XYZ"], "row 'XYZ'"),
        ("study_scale", ["--seeds", "0"], "--seeds must be 1 or more"),
    ],
)
def test_a_benchmark_refuses_a_bad_value_before_it_times_anything(
    script, argv, words, monkeypatch, capsys
):
    """A typo or a value out of range: argparse's usage and one error line, exit 2 (they were
    tracebacks, a division by zero, or a silent clamp to 1)."""
    module = _load(script)
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *argv])  # study_scale reads sys.argv
    with pytest.raises(SystemExit) as stopped:
        module.main(*([] if script == "study_scale" else [argv]))
    sys.modules.pop(script, None)
    errors = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert stopped.value.code == 2 and len(errors) == 1 and words in errors[0], errors
