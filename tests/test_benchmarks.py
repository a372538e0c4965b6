"""The meta-layer benchmark runs and reports what it promises (its numbers are not asserted)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "metalayer_speed.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("metalayer_speed", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_metalayer_speed_quick_run(bench, capsys):
    rows = bench.main(["--quick", "--sizes", "dbn", "--dtypes", "float64", "--methods", "svd,pade"])
    assert [r.method for r in rows] == ["svd", "svd-pade"]
    for r in rows:
        assert r.fp_s > 0 and r.bp_raw_s > 0 and r.engine_s > 0
        assert r.bp_s == pytest.approx(r.bp_raw_s - r.engine_s)  # net of the engine's fixed cost
        assert r.fp_vs_floor > 0 and r.bp_vs_floor > 0
    out = capsys.readouterr().out
    assert "MPN-COV" in out and "SVD-Padé" in out
    assert "eigh + the one U f(Λ) Uᵀ matmul" in out  # the forward's own floor, measured


def test_metalayer_speed_rejects_unknown_size(bench):
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--sizes", "huge"])
