"""The trial step at the speed of the device (issue 26): no host read per step outside the
meta-layer's own failure checks, divergence still caught, eigh placement and autocast."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from svdablate.metalayers import CovariancePooling, ZCAWhitening, inv_sqrtm, registry, sqrtm
from svdablate.metalayers import modules as metalayer_modules
from svdablate.metalayers.eigh_placement import choose_eigh_device, measure_eigh, spd_batch
from svdablate.metalayers.spectral import eigh
from svdablate.study.plan import StudyPlan
from svdablate.training.faults import FAULTS_ENV
from svdablate.training.loop import train_trial

PACKAGE = Path(sys.modules["svdablate"].__file__).parent
HOST_READS = ("__float__", "__bool__", "__int__", "__index__", "item", "tolist")
DEVICES = [torch.device("cpu")] + [torch.device("cuda")] * torch.cuda.is_available()


def _config(row: str = "SVD", **extra):
    plan = StudyPlan.create("demo", seeds=1, check=False)
    config = next(c for c in plan.configs if c.row == row)
    return config.model_validate({**config.model_dump(), "epochs": 1, **extra})


def _count_host_reads(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Count each read of a tensor's value by the host, by the svdablate folder that asked
    (training, treatments, metalayers...): on a GPU each one waits for the device's queue."""
    counts: Counter = Counter()

    def counting(name: str):
        original = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            frame = sys._getframe(1)
            while frame is not None and not frame.f_code.co_filename.startswith(str(PACKAGE)):
                frame = frame.f_back
            if frame is not None:
                counts[Path(frame.f_code.co_filename).relative_to(PACKAGE).parts[0]] += 1
            return original(self, *args, **kwargs)

        return read

    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    return counts


@pytest.mark.parametrize("row", ["SVD", "SVD+NOG"])
def test_the_loop_reads_nothing_per_step_outside_the_metalayers_checks(monkeypatch, row):
    """10 more steps add no host read in the loop, the update or the treatments; the meta-layer
    reads twice a step (its finite checks of forward and backward, which decide whether the
    update is skipped). κ sampled at step 0 only, so both runs sample alike."""
    counts = _count_host_reads(monkeypatch)
    reads = {}
    for steps in (10, 20):
        counts.clear()
        train_trial(_config(row, max_steps_per_epoch=steps, kappa_every=1000), lambda m, s: None)
        reads[steps] = dict(counts)
    more = {k: reads[20].get(k, 0) - reads[10].get(k, 0) for k in reads[20]}
    assert more.get("training", 0) == 0 and more.get("treatments", 0) == 0, reads
    assert more["metalayers"] == 2 * 10, reads


def test_a_non_finite_loss_that_fails_no_solver_still_stops_the_trial(monkeypatch):
    """With the meta-layer's checks off, a NaN loss is caught by the device flag (read at the
    next κ step or the epoch's end), reported as before: diverged, the finite steps' loss."""
    monkeypatch.setattr(registry, "check_finite", lambda x, what: None)
    import svdablate.metalayers.iterative as iterative

    monkeypatch.setattr(iterative, "check_finite", lambda x, what: None, raising=False)
    metrics = []
    config = _config("NS", max_steps_per_epoch=12, kappa_every=4, epochs=2)
    monkeypatch.setenv(FAULTS_ENV, json.dumps({"nan_at_epoch": 1}))
    result = train_trial(config, lambda m, s: metrics.append(m))
    assert result["status"] == "diverged"
    assert [m["diverged"] for m in metrics] == [0.0, 1.0]
    assert metrics[0]["train_loss"] > 0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_eigh_on_the_cpu_gives_the_factors_eigh_gives_where_p_is(device, dtype):
    p = spd_batch((3, 24, 24), dtype, device)
    lam, _ = eigh(p, "same")
    lam_cpu, u_cpu = eigh(p, "cpu")
    assert lam_cpu.device == p.device and u_cpu.device == p.device
    tol = {"rtol": 1e-10, "atol": 1e-12} if dtype == torch.float64 else {}
    torch.testing.assert_close(lam_cpu, lam, **tol)
    q = sqrtm(p, "svd", eigh_device="cpu")
    torch.testing.assert_close(q, sqrtm(p, "svd", eigh_device="same"), **tol)
    torch.testing.assert_close(q @ q, p, **({"rtol": 1e-8, "atol": 1e-10} if tol else {}))
    with pytest.raises(ValueError, match="eigh_device"):
        inv_sqrtm(p, "svd", eigh_device="gpu")


@pytest.mark.parametrize("where", ["auto", "same", "cpu"])
def test_every_placement_trains_the_meta_layer_to_the_same_numbers(where):
    torch.manual_seed(0)
    x = torch.randn(8, 16, 4, 4, requires_grad=True)
    layer = ZCAWhitening(16, groups=2)
    layer_start = {k: v.clone() for k, v in layer.state_dict().items()}
    layer.eigh_device = where
    layer.train()
    layer(x).square().sum().backward()
    reference = ZCAWhitening(16, groups=2)
    reference.load_state_dict(ZCAWhitening(16, groups=2).state_dict() | layer_start)
    x_ref = x.detach().clone().requires_grad_()
    reference(x_ref).square().sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-12, atol=1e-12)
    placement = layer.eigh_placement
    assert placement.shape == (2, 8, 8) and placement.dtype == "float64"
    assert placement.where == ("same" if where == "auto" else where)  # nothing to choose on a CPU
    assert placement.describe().startswith(placement.where)


def test_auto_measures_both_places_and_keeps_the_faster():
    measured = measure_eigh((4, 32, 32), torch.float64, torch.device("cpu"), repeats=1)
    assert measured.same_ms > 0 and measured.cpu_ms > 0
    assert measured.where == ("cpu" if measured.cpu_ms < measured.same_ms else "same")
    assert "measured: same" in measured.describe()
    chosen = choose_eigh_device("cpu", (4, 32, 32), torch.float64, torch.device("cpu"))
    assert chosen.where == "cpu" and chosen.same_ms is None


def test_the_meta_layer_runs_in_its_precision_under_autocast(monkeypatch):
    """bf16 autocast around a GCP network: the Pre-SVD conv runs in bf16, the covariance and
    the square root in float64 with autocast off."""
    seen = []

    def spy(p, method, **opts):
        seen.append((p.dtype, torch.is_autocast_enabled("cpu")))
        return sqrtm(p, method, **opts)

    monkeypatch.setattr(metalayer_modules, "sqrtm", spy)
    layer = CovariancePooling(8, reduction_dim=6)
    conv = torch.nn.Conv2d(3, 8, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = conv(torch.randn(4, 3, 10, 10))
        out = layer(features)
    assert features.dtype == torch.bfloat16
    assert seen == [(torch.float64, False)]
    assert out.dtype == torch.bfloat16  # back in the backbone's precision


@pytest.mark.parametrize("mode", ["bf16", "fp16"])
def test_a_trial_trains_under_autocast(mode):
    metrics = []
    config = _config(autocast=mode, max_steps_per_epoch=3)
    result = train_trial(config, lambda m, s: metrics.append(m))
    assert result["status"] == "finished"
    assert metrics[0]["train_loss"] > 0 and metrics[0]["failures"] == 0


def test_paper_presets_keep_autocast_off():
    from svdablate.spec.presets import PRESETS

    for name in PRESETS:
        configs = StudyPlan.create(name, seeds=1, smoke=True, check=False).configs
        assert {c.autocast for c in configs} == {"off"}, name
