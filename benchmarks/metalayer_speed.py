"""Forward/backward time of every meta-layer method (ICCV'21 Table 5 layout), with two ratios.

Sizes: GCP (B=32, d=256, covariance of 196 features: rank-deficient, as after ResNet/AlexNet) and
decorrelated BN (B=1, d=64, covariance of 4096 features + 1e-2·I). Input dtypes float32 and
float64 (the svd family computes in float64 by default; ns and mpa-lya in the input dtype).

Ratios, measured in the same run: each sample times the floor, the eigh-autograd reference and
the method back to back (so load changes on a shared machine cancel), round-robin over methods;
the table shows medians over ``--reps`` rounds:
  * ``/eigh-AG``: against ``torch.linalg.eigh`` + U f(Λ) Uᵀ with plain autograd;
  * ``/floor``:   forward against eigh alone, backward against three batched d×d matmuls,
    both in the method's compute dtype.
Targets: svd-family FP/floor ≤ 1.15; K-rule (svd, svd-topn, svd-trunc, svd-taylor, svd-pade)
BP/floor ≤ 2.

BP is the layer's own backward: ``torch.autograd.grad`` through the method minus the engine's
fixed cost per call (``engine``), timed in the same sample as ``torch.autograd.grad`` through a
one-node view, because a training step pays that cost once for the whole network, not once per
layer (at 1×64 it is of the order of the three matmuls); ``BP raw`` keeps it in. Under each
table a line gives, per size, what no forward can beat: eigh followed by the one d×d matmul
that forms U f(Λ) Uᵀ, timed in sequence, as a multiple of eigh alone.

    python benchmarks/metalayer_speed.py [--quick] [--tracking-uri URI] [--methods a,b]

``--tracking-uri`` logs one MLflow run per (method, size, dtype) in experiment
``metalayer-speed``: params method, batch, dim, dtype; metrics fp_s, bp_s (and the ratios).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from svdablate.metalayers import METHODS, covariance, resolve_method, sqrtm

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


@dataclass
class Row:
    method: str
    size: str
    batch: int
    dim: int
    dtype: str
    fp_s: float
    bp_s: float
    bp_raw_s: float
    engine_s: float
    fp_vs_eigh: float
    bp_vs_eigh: float
    fp_vs_floor: float
    bp_vs_floor: float


def _input(batch: int, dim: int, n: int, shift: float, dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, dim, n, generator=g, dtype=torch.float64)
    p = covariance(x) + shift * torch.eye(dim, dtype=torch.float64)
    return p.to(dtype)


def _compute_dtype(method: str, dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if METHODS[method].family == "svd" else dtype


def _timed_pair(
    fwd: Callable[[torch.Tensor], torch.Tensor], p: torch.Tensor, g: torch.Tensor, inner: int
) -> tuple[float, float]:
    """Mean forward and backward (``torch.autograd.grad``) seconds over ``inner`` calls."""
    fp = bp = 0.0
    for _ in range(inner):
        x = p.detach().requires_grad_(True)
        t0 = time.perf_counter()
        out = fwd(x)
        t1 = time.perf_counter()
        torch.autograd.grad(out, x, g)
        t2 = time.perf_counter()
        fp += t1 - t0
        bp += t2 - t1
    return fp / inner, bp / inner


def _engine_cost(p: torch.Tensor, g: torch.Tensor, inner: int) -> float:
    """Mean seconds of ``torch.autograd.grad`` through a one-node view: the engine's fixed cost."""
    return _timed_pair(lambda x: x.view_as(x), p, g, inner)[1]


def _eigh_autograd(x: torch.Tensor, cdt: torch.dtype) -> torch.Tensor:
    """The reference: torch.linalg.eigh + U f(Λ) Uᵀ, differentiated by plain autograd."""
    lam, u = torch.linalg.eigh(x.to(cdt))
    f = lam.clamp_min(torch.finfo(cdt).eps).sqrt()
    return torch.matmul(u * f.unsqueeze(-2), u.mT).to(x.dtype)


def _mean_seconds(fn: Callable[[], object], inner: int) -> float:
    """Mean seconds of ``fn()`` over ``inner`` calls in a loop."""
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner


def _floors(p: torch.Tensor, cdt: torch.dtype, inner: int) -> tuple[float, float]:
    """Mean seconds of eigh alone and of three batched d×d matmuls, in ``cdt``."""
    a = p.detach().to(cdt)
    u = torch.linalg.eigh(a)[1]
    eigh = _mean_seconds(lambda: torch.linalg.eigh(a), inner)
    matmuls = _mean_seconds(lambda: torch.matmul(torch.matmul(torch.matmul(u, a), u), a), inner)
    return eigh, matmuls


def measure(method: str, p: torch.Tensor, g: torch.Tensor, inner: int) -> tuple[float, ...]:
    """(fp, bp, bp raw, engine, fp/eigh-AG, bp/eigh-AG, fp/floor, bp/floor), timed back to back.

    bp and the eigh-AG reference's bp are net of the engine's fixed cost measured in this sample.
    """
    cdt = _compute_dtype(method, p.dtype)
    f_fp, f_bp = _floors(p, cdt, inner)
    engine = _engine_cost(p, g, inner)
    e_fp, e_bp = _timed_pair(lambda x: _eigh_autograd(x, cdt), p, g, inner)
    fp, bp_raw = _timed_pair(lambda x: sqrtm(x, method), p, g, inner)
    bp, e_bp = bp_raw - engine, e_bp - engine
    return fp, bp, bp_raw, engine, fp / e_fp, bp / e_bp, fp / f_fp, bp / f_bp


def forward_floor(p: torch.Tensor, reps: int, inner: int) -> float:
    """Median of (eigh, then the one matmul forming U f(Λ) Uᵀ, in sequence) / eigh alone, float64.

    No eigh-based forward can be faster: it must return U f(Λ) Uᵀ.
    """
    a = p.detach().to(torch.float64)

    def eigh_and_matmul() -> torch.Tensor:
        lam, u = torch.linalg.eigh(a)
        return torch.bmm(u * lam.unsqueeze(-2), u.mT)

    ratios = [
        _mean_seconds(eigh_and_matmul, inner) / _mean_seconds(lambda: torch.linalg.eigh(a), inner)
        for _ in range(reps + 1)
    ]
    return statistics.median(ratios[1:])  # the first round is warm-up


def run(
    methods: list[str], sizes: list[str], dtypes: list[str], reps: int
) -> tuple[list[Row], dict[str, float]]:
    """Round-robin over methods, ``reps`` timed rounds after one warm-up; medians per method.

    Also returns, per size, :func:`forward_floor` (eigh + one matmul over eigh alone).
    """
    rows: list[Row] = []
    floors: dict[str, float] = {}
    for size in sizes:
        batch, dim, n, shift = SIZES[size]
        inner = max(1, int(2e7 // (batch * dim**3)))  # ~76 calls per sample at 1x64
        for dname in dtypes:
            dtype = getattr(torch, dname)
            p = _input(batch, dim, n, shift, dtype)
            g = torch.randn(p.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
            samples: dict[str, list[tuple[float, ...]]] = {m: [] for m in methods}
            for rep in range(reps + 1):  # round 0 is warm-up
                for m in methods:
                    res = measure(m, p, g, inner)
                    if rep:
                        samples[m].append(res)
            for m in methods:
                cols = [statistics.median(s[i] for s in samples[m]) for i in range(8)]
                rows.append(Row(m, size, batch, dim, dname, *cols))
        floors[size] = forward_floor(_input(batch, dim, n, shift, torch.float64), reps, inner)
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

    table = Table(expand=False, title="Meta-layer time per batch (cf. ICCV'21 Table 5)")
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
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("metalayer-speed")
    for r in rows:
        with mlflow.start_run(run_name=f"{r.method}-{r.size}-{r.dtype}"):
            mlflow.log_params({"method": r.method, "batch": r.batch, "dim": r.dim,
                               "dtype": r.dtype})  # fmt: skip
            mlflow.log_metrics({
                "fp_s": r.fp_s, "bp_s": r.bp_s, "fp_vs_eigh": r.fp_vs_eigh,
                "bp_vs_eigh": r.bp_vs_eigh, "fp_vs_floor": r.fp_vs_floor,
                "bp_raw_s": r.bp_raw_s, "engine_s": r.engine_s,
                "bp_vs_floor": r.bp_vs_floor,
            })  # fmt: skip


def main(argv: list[str] | None = None) -> list[Row]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one timed round (smoke)")
    ap.add_argument("--reps", type=int, default=7, help="timed rounds (median)")
    ap.add_argument("--methods", default=",".join(PAPER_NAMES), help="comma-separated")
    ap.add_argument("--sizes", default="gcp,dbn", help="comma-separated: gcp, dbn")
    ap.add_argument("--dtypes", default="float64,float32", help="comma-separated")
    ap.add_argument("--tracking-uri", default=None, help="log one MLflow run per row")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    methods = [resolve_method(m) for m in args.methods.split(",") if m]
    sizes = [s for s in args.sizes.split(",") if s]
    for s in sizes:
        if s not in SIZES:
            ap.error(f"unknown size {s!r}; valid: {', '.join(SIZES)}")
    dtypes = [d for d in args.dtypes.split(",") if d]
    for d in dtypes:
        if d not in ("float32", "float64"):
            ap.error(f"unknown dtype {d!r}; valid: float32, float64")
    rows, floors = run(methods, sizes, dtypes, 1 if args.quick else max(1, args.reps))
    print_table(rows, floors)
    if args.tracking_uri:
        log_mlflow(rows, args.tracking_uri)
    return rows


if __name__ == "__main__":
    main()
