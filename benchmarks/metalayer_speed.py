"""Forward/backward time of every meta-layer method (ICCV'21 Table 5 layout), with two ratios.

Sizes: GCP (B=32, d=256, covariance of 196 features: rank-deficient, as after ResNet/AlexNet) and
decorrelated BN (B=1, d=64, covariance of 4096 features + 1e-2·I). Input dtypes float32 and
float64 (the svd family computes in float64 by default; ns and mpa-lya in the input dtype).

Ratios, measured in the same run: each sample times the floor, the eigh-autograd reference and
the method back to back (so load changes on a shared machine cancel), round-robin over methods;
the table shows medians over ``--reps`` rounds. Every timing is a ``torch.utils.benchmark.Timer``
``timeit`` of a fixed number of calls (its own warm-up calls first; on CUDA it synchronises before
reading the clock, so ``--device cuda`` times the kernels, not their launches):
  * ``/eigh-AG``: against ``torch.linalg.eigh`` + U f(Λ) Uᵀ with plain autograd;
  * ``/floor``:   forward against eigh alone, backward against three batched d×d matmuls,
    both in the method's compute dtype.
Targets: svd-family FP/floor ≤ 1.15; K-rule (svd, svd-topn, svd-trunc, svd-taylor, svd-pade)
BP/floor ≤ 2.

BP is the layer's own backward: ``torch.autograd.grad`` through the method's graph (built once
per sample, kept with ``retain_graph``) minus the engine's fixed cost per call (``engine``: the
least of three timings, in the same sample, of ``torch.autograd.grad`` through a one-node view;
a sample whose backward is not above it is timed again, three times, then the run stops in
one line that names the load), because a training step pays that cost once for the whole
network, not once per layer (at 1×64 it is of the order of the three matmuls); ``BP raw`` keeps
it in. Under each table a line gives, per size, what no forward can beat: eigh followed by the
one d×d matmul that forms U f(Λ) Uᵀ, timed in sequence, as a multiple of eigh alone. One torch
thread unless ``--threads`` says otherwise (0: torch's default).

    python benchmarks/metalayer_speed.py [--quick] [--device cuda] [--tracking-uri URI]
        [--methods a,b] [--sizes gcp,dbn] [--dtypes float64,float32]

``--tracking-uri`` logs one MLflow run per (method, size, dtype) in experiment
``schema.SPEED_EXPERIMENT``: params ``schema.SPEED_PARAMS`` and the device; metrics
``schema.SPEED_METRICS`` and the other columns (ratios, BP raw, engine).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.benchmark import Timer

from svdablate.metalayers import METHODS, covariance, resolve_method, sqrtm
from svdablate.schema import SPEED_EXPERIMENT, SPEED_METRICS, SPEED_PARAMS

SIZES = {"gcp": (32, 256, 196, 0.0), "dbn": (1, 64, 4096, 1e-2)}
PAPER_NAMES = {
    "ns": "iSQRT-COV",
    "svd-pade": "SVD-Padé",
    "svd-taylor": "SVD-Taylor",
    "svd-newton": "SVD-Newton",
    "svd-trunc": "SVD-Trunc",
    "svd-topn": "SVD-TopN",
    "svd": "MPN-COV",
    "svd-pi": "SVD-PI",
    "mpa-lya": "MPA-Lya",
}
K_RULES = ("svd", "svd-topn", "svd-trunc", "svd-taylor", "svd-pade")
FP_TARGET, BP_TARGET = 1.15, 2.0
ENGINE_TIMINGS = 3  # the engine's fixed cost: the least of this many timings
SAMPLE_TRIES = 3  # a sample whose backward is not above the engine's cost is timed again


@dataclass
class Row:
    method: str
    size: str
    batch: int
    dim: int
    dtype: str
    device: str
    fp_s: float
    bp_s: float
    bp_raw_s: float
    engine_s: float
    fp_vs_eigh: float
    bp_vs_eigh: float
    fp_vs_floor: float
    bp_vs_floor: float


def _input(
    batch: int, dim: int, n: int, shift: float, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, dim, n, generator=g, dtype=torch.float64)
    p = covariance(x) + shift * torch.eye(dim, dtype=torch.float64)
    return p.to(device=device, dtype=dtype)


def _compute_dtype(method: str, dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if METHODS[method].family == "svd" else dtype


def _seconds(fn: Callable[[], object], number: int) -> float:
    """Mean seconds of ``fn()`` over ``number`` calls: ``Timer.timeit`` (accelerator-synchronised).

    The Timer runs at the threads torch uses here (``--threads``), not its default of one.
    """
    timer = Timer("fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.timeit(number).mean


def _timed_pair(
    fwd: Callable[[torch.Tensor], torch.Tensor], p: torch.Tensor, g: torch.Tensor, number: int
) -> tuple[float, float]:
    """Mean forward and backward (``torch.autograd.grad``) seconds, over ``number`` calls each.

    The forward records its graph (the input requires grad); the backward runs through one graph
    built beforehand, kept between calls with ``retain_graph``.
    """
    x = p.detach().requires_grad_(True)
    fp = _seconds(lambda: fwd(x), number)
    out = fwd(x)
    bp = _seconds(lambda: torch.autograd.grad(out, x, g, retain_graph=True), number)
    return fp, bp


def _engine_cost(p: torch.Tensor, g: torch.Tensor, number: int) -> float:
    """Seconds of ``torch.autograd.grad`` through a one-node view, the engine's fixed cost: the
    least of ``ENGINE_TIMINGS`` means (load only adds to a fixed cost; one timing caught by a
    spike on a loaded machine had made it 5× the layer's whole backward, and BP negative)."""
    return min(_timed_pair(lambda x: x.view_as(x), p, g, number)[1] for _ in range(ENGINE_TIMINGS))


def _eigh_autograd(x: torch.Tensor, cdt: torch.dtype) -> torch.Tensor:
    """The reference: torch.linalg.eigh + U f(Λ) Uᵀ, differentiated by plain autograd."""
    lam, u = torch.linalg.eigh(x.to(cdt))
    f = lam.clamp_min(torch.finfo(cdt).eps).sqrt()
    return torch.matmul(u * f.unsqueeze(-2), u.mT).to(x.dtype)


def _floors(p: torch.Tensor, cdt: torch.dtype, number: int) -> tuple[float, float]:
    """Mean seconds of eigh alone and of three batched d×d matmuls, in ``cdt``."""
    a = p.detach().to(cdt)
    u = torch.linalg.eigh(a)[1]
    eigh = _seconds(lambda: torch.linalg.eigh(a), number)
    matmuls = _seconds(lambda: torch.matmul(torch.matmul(torch.matmul(u, a), u), a), number)
    return eigh, matmuls


class SwampedByLoad(RuntimeError):
    """Every sample of a backward was swamped by the machine's load (`main` says so in a line)."""


def measure(method: str, p: torch.Tensor, g: torch.Tensor, number: int) -> tuple[float, ...]:
    """(fp, bp, bp raw, engine, fp/eigh-AG, bp/eigh-AG, fp/floor, bp/floor), timed back to back.

    bp and the eigh-AG reference's bp are net of the engine's fixed cost measured in this sample;
    a sample where either is not above that cost was caught by the load, and is timed again.
    """
    cdt = _compute_dtype(method, p.dtype)
    for _ in range(SAMPLE_TRIES):
        f_fp, f_bp = _floors(p, cdt, number)
        engine = _engine_cost(p, g, number)
        e_fp, e_bp = _timed_pair(lambda x: _eigh_autograd(x, cdt), p, g, number)
        fp, bp_raw = _timed_pair(lambda x: sqrtm(x, method), p, g, number)
        if min(bp_raw, e_bp) > engine:
            bp, e_bp = bp_raw - engine, e_bp - engine
            return fp, bp, bp_raw, engine, fp / e_fp, bp / e_bp, fp / f_fp, bp / f_bp
    raise SwampedByLoad(
        f"{method}: a backward timed at most the engine's fixed cost in {SAMPLE_TRIES} samples "
        "(the machine's load swamps the timings): rerun on a quieter machine"
    )


def forward_floor(p: torch.Tensor, reps: int, number: int) -> float:
    """Median of (eigh, then the one matmul forming U f(Λ) Uᵀ, in sequence) / eigh alone, float64.

    No eigh-based forward can be faster: it must return U f(Λ) Uᵀ.
    """
    a = p.detach().to(torch.float64)

    def eigh_and_matmul() -> torch.Tensor:
        lam, u = torch.linalg.eigh(a)
        return torch.bmm(u * lam.unsqueeze(-2), u.mT)

    ratios = [
        _seconds(eigh_and_matmul, number) / _seconds(lambda: torch.linalg.eigh(a), number)
        for _ in range(reps)
    ]
    return statistics.median(ratios)


def run(
    methods: list[str],
    sizes: list[str],
    dtypes: list[str],
    reps: int,
    device: torch.device = torch.device("cpu"),
) -> tuple[list[Row], dict[str, float]]:
    """Round-robin over methods, ``reps`` timed rounds (each timing warms up first); medians.

    Also returns, per size, :func:`forward_floor` (eigh + one matmul over eigh alone).
    """
    rows: list[Row] = []
    floors: dict[str, float] = {}
    for size in sizes:
        batch, dim, n, shift = SIZES[size]
        number = max(1, int(2e7 // (batch * dim**3)))  # ~76 calls per timing at 1x64
        for dname in dtypes:
            dtype = getattr(torch, dname)
            p = _input(batch, dim, n, shift, dtype, device)
            g = torch.randn(p.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
            g = g.to(device)
            samples: dict[str, list[tuple[float, ...]]] = {m: [] for m in methods}
            for _ in range(reps):
                for m in methods:
                    samples[m].append(measure(m, p, g, number))
            for m in methods:
                cols = [statistics.median(s[i] for s in samples[m]) for i in range(8)]
                rows.append(Row(m, size, batch, dim, dname, str(device), *cols))
        p64 = _input(batch, dim, n, shift, torch.float64, device)
        floors[size] = forward_floor(p64, reps, number)
    return rows, floors


def _verdict(r: Row) -> str:
    bad = []
    if METHODS[r.method].family == "svd" and r.fp_vs_floor > FP_TARGET:
        bad.append("FP")
    if r.method in K_RULES and r.bp_vs_floor > BP_TARGET:
        bad.append("BP")
    if METHODS[r.method].family != "svd":
        return "-"
    return "ok" if not bad else "MISS " + "+".join(bad)


def print_table(rows: list[Row], floors: dict[str, float] | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    devices = ", ".join(sorted({r.device for r in rows}))
    title = f"Meta-layer time per batch on {devices} (cf. ICCV'21 Table 5)"
    table = Table(expand=False, title=title)
    for col in ("Method", "Size", "dtype", "FP (s)", "BP (s)", "Total (s)", "BP raw (s)",
                "engine (s)", "FP/eigh-AG", "BP/eigh-AG", "FP/floor", "BP/floor",
                "target"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("Method", "Size", "dtype") else "right")
    for r in rows:
        table.add_row(
            PAPER_NAMES.get(r.method, r.method), f"{r.size} {r.batch}x{r.dim}", r.dtype,
            f"{r.fp_s:.2e}", f"{r.bp_s:.2e}", f"{r.fp_s + r.bp_s:.2e}", f"{r.bp_raw_s:.2e}",
            f"{r.engine_s:.1e}", f"{r.fp_vs_eigh:.2f}", f"{r.bp_vs_eigh:.2f}",
            f"{r.fp_vs_floor:.2f}", f"{r.bp_vs_floor:.2f}", _verdict(r),
        )  # fmt: skip
    console = Console(width=220)
    console.print(table)
    for size, ratio in (floors or {}).items():
        batch, dim = SIZES[size][:2]
        console.print(
            f"{size} {batch}x{dim}: eigh + the one U f(Λ) Uᵀ matmul = {ratio:.2f}× eigh alone "
            f"(float64, in sequence): no eigh-based forward can be faster (FP target {FP_TARGET})"
        )


def log_mlflow(rows: list[Row], tracking_uri: str) -> None:
    """One run per row in ``SPEED_EXPERIMENT``: ``SPEED_PARAMS`` and the device as params, the
    timings (``SPEED_METRICS`` among them) and ratios as metrics."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    # A client of its own: mlflow.set_tracking_uri would export MLFLOW_TRACKING_URI to the rest
    # of the process (and every later study in it would write to this store).
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(SPEED_EXPERIMENT)
    experiment = found.experiment_id if found else client.create_experiment(SPEED_EXPERIMENT)
    for r in rows:
        values = dataclasses.asdict(r)
        params = {name: values.pop(name) for name in (*SPEED_PARAMS, "device")}
        metrics = {k: v for k, v in values.items() if isinstance(v, float)}
        missing = set(SPEED_METRICS) - set(metrics)
        if missing:
            raise KeyError(f"Row has no column for the speed metrics {sorted(missing)}")
        run = client.create_run(experiment, run_name=f"{r.method}-{r.size}-{r.dtype}-{r.device}")
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, v, int(time.time() * 1000), 0) for k, v in metrics.items()],
            params=[Param(k, str(v)) for k, v in params.items()],
        )
        client.set_terminated(run.info.run_id)


def main(argv: list[str] | None = None) -> list[Row]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one timed round (smoke)")
    ap.add_argument("--reps", type=int, default=7, help="timed rounds (median)")
    ap.add_argument("--methods", default=",".join(PAPER_NAMES), help="comma-separated")
    ap.add_argument("--sizes", default="gcp,dbn", help="comma-separated: gcp, dbn")
    ap.add_argument("--dtypes", default="float64,float32", help="comma-separated")
    ap.add_argument("--tracking-uri", default=None, help="log one MLflow run per row")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (Timer's default, 1; 0: torch's)"
    )
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to time")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is visible to this process")
    if args.reps < 1 or args.threads < 0:
        ap.error("--reps must be 1 or more and --threads 0 or more")
    try:
        methods = [resolve_method(m) for m in args.methods.split(",") if m]
    except ValueError as exc:
        ap.error(str(exc))
    sizes = [s for s in args.sizes.split(",") if s]
    for s in sizes:
        if s not in SIZES:
            ap.error(f"unknown size {s!r}; valid: {', '.join(SIZES)}")
    dtypes = [d for d in args.dtypes.split(",") if d]
    for d in dtypes:
        if d not in ("float32", "float64"):
            ap.error(f"unknown dtype {d!r}; valid: float32, float64")
    reps = 1 if args.quick else args.reps
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads or threads)
    try:
        rows, floors = run(methods, sizes, dtypes, reps, torch.device(args.device))
    except SwampedByLoad as exc:
        ap.exit(1, f"{ap.prog}: {exc}\n")
    finally:
        torch.set_num_threads(threads)
    print_table(rows, floors)
    if args.tracking_uri:
        log_mlflow(rows, args.tracking_uri)
    return rows


if __name__ == "__main__":
    main()
