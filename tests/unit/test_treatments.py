"""The ECCV'22 Pre-SVD treatments as a whole (svdablate.treatments): parsing, the registry,
combination warnings and attach errors, and a 3-step SGD run of every ECCV'22 row. The
treatments one at a time are in test_treatments_nog_olr.py (NOG, OLR),
test_treatments_sn_ow_ol.py (SN, OW, OL) and test_treatments_soc.py (OW as SOC).
"""

from __future__ import annotations

import pytest
import torch
from orthogonality import _assert_orthonormal
from torch import nn

from svdablate.schema import TREATMENT_ORDER
from svdablate.treatments import (
    TREATMENTS,
    SkewOrthogonalConv2d,
    Treatment,
    attach_treatments,
    combination_warning,
    parse_treatments,
    register_treatment,
)
from svdablate.treatments.registry import check_registry_order

ECCV22_ROWS = [
    "",
    "SN",
    "OL",
    "OW",
    "NOG",
    "OLR",
    "NOG+SN",
    "NOG+OL",
    "NOG+OW",
    "NOG+OLR",
    "OW+OLR",
    "NOG+OW+OLR",
]


# ---------------------------------------------------------------------------------------------
# parsing, registry, warnings, attach errors


def test_registry_follows_schema_treatment_order():
    assert tuple(TREATMENTS) == TREATMENT_ORDER == ("NOG", "SN", "OL", "OW", "OLR")
    check_registry_order(TREATMENTS, TREATMENT_ORDER)
    check_registry_order({**TREATMENTS, "HALF": Treatment}, TREATMENT_ORDER)  # after the five
    swapped = dict(reversed(list(TREATMENTS.items())))
    with pytest.raises(RuntimeError, match="TREATMENT_ORDER"):
        check_registry_order(swapped, TREATMENT_ORDER)
    with pytest.raises(RuntimeError, match="missing OLR"):
        check_registry_order({k: v for k, v in TREATMENTS.items() if k != "OLR"}, TREATMENT_ORDER)
    with pytest.raises(RuntimeError, match="TREATMENT_ORDER"):
        check_registry_order({"HALF": Treatment, **TREATMENTS}, TREATMENT_ORDER)


@pytest.mark.parametrize(
    "given,expected",
    [
        ("OLR+ow+Nog", ("NOG", "OW", "OLR")),
        ("sn+NOG", ("NOG", "SN")),
        (["olr", "OW"], ("OW", "OLR")),
        ((" nog ", "Sn"), ("NOG", "SN")),
        ("", ()),
        (None, ()),
        ([], ()),
        ("OL", ("OL",)),
    ],
)
def test_parse_treatments_canonical(given, expected):
    assert parse_treatments(given) == expected


@pytest.mark.parametrize("bad", ["NOG+XYZ", ["OW", "bn"], "SVD+NOG", "NOG++OW"])
def test_parse_treatments_rejects_unknown_with_valid_list(bad):
    with pytest.raises(ValueError, match="valid: NOG, SN, OL, OW, OLR"):
        parse_treatments(bad)


@pytest.mark.parametrize("bad", ["NOG+nog", ["OW", "ow"]])
def test_parse_treatments_rejects_duplicates(bad):
    with pytest.raises(ValueError, match="twice"):
        parse_treatments(bad)


@pytest.mark.parametrize(
    "names,warns",
    [
        ("OW+OLR", True),
        ("NOG+OLR", True),
        ("olr+ow", True),
        ("NOG+OW+OLR", False),
        ("OLR", False),
        ("NOG+OW", False),
        ("", False),
        ("SN+OLR", False),
    ],
)
def test_combination_warning(names, warns):
    msg = combination_warning(names)
    if warns:
        assert isinstance(msg, str) and "OLR" in msg and "\n" not in msg
    else:
        assert msg is None


class Halve(Treatment):
    """A throwaway treatment: the Pre-SVD gradient halved."""

    name = "HALF"

    def transform_grad(self, grad):
        return grad / 2


@pytest.fixture
def halve():
    """`Halve` registered for one test (the one place a treatment is added), then removed."""
    register_treatment(Halve)
    yield Halve
    TREATMENTS.pop("HALF")


def test_a_registered_treatment_is_parsed_after_the_papers_and_attached(halve):
    assert tuple(TREATMENTS) == (*TREATMENT_ORDER, "HALF")
    assert parse_treatments("half+NOG") == ("NOG", "HALF")
    assert parse_treatments(["HALF", "olr", "ow"]) == ("OW", "OLR", "HALF")
    lin = nn.Linear(3, 2)
    h = attach_treatments(lin, "HALF")
    lin.weight.grad = torch.ones(2, 3)
    h.after_backward()
    assert torch.equal(lin.weight.grad, torch.full((2, 3), 0.5))


def test_register_treatment_refuses_a_taken_or_malformed_name(halve):
    with pytest.raises(ValueError, match="registered already"):
        register_treatment(Halve)
    lower = type("Lower", (Treatment,), {"name": "half2"})
    with pytest.raises(ValueError, match="upper case"):
        register_treatment(lower)
    assert "half2" not in TREATMENTS and "HALF2" not in TREATMENTS


def test_attach_errors():
    with pytest.raises(TypeError, match=r"Conv2d or nn\.Linear"):
        attach_treatments(nn.Conv1d(2, 2, 3), "NOG")
    conv = nn.Conv2d(3, 4, 3)
    attach_treatments(conv, "OW")
    with pytest.raises(ValueError, match="already parametrized"):
        attach_treatments(conv, "SN")
    with pytest.raises(ValueError, match="ol_weight"):
        attach_treatments(nn.Linear(2, 2), "OL", ol_weight=-1.0)


def test_parametrized_state_dict_round_trip():
    torch.manual_seed(10)
    a, b = nn.Conv2d(3, 4, 3), nn.Conv2d(3, 4, 3)
    ha, hb = attach_treatments(a, "OW"), attach_treatments(b, "OW")
    b.load_state_dict(a.state_dict())
    assert torch.equal(ha.effective_weight(), hb.effective_weight())


# ---------------------------------------------------------------------------------------------
# 3-step SGD run per ECCV'22 row on a stand-in Pre-SVD network


class _StandIn(nn.Module):
    """conv stem (the Pre-SVD layer) → BN → ReLU → channel covariance → linear."""

    def __init__(self) -> None:
        super().__init__()
        self.pre_svd_layer = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = torch.relu(self.bn(self.pre_svd_layer(x))).flatten(2)
        f = f - f.mean(-1, keepdim=True)
        cov = f @ f.mT / f.shape[-1]
        return self.fc(cov.flatten(1))


#: every ECCV'22 row with the matrix form of OW, and the rows SOC can run (OW without SN or OL)
ROW_CASES = [(r, "matrix_exp") for r in ECCV22_ROWS] + [
    (r, "soc") for r in ECCV22_ROWS if "OW" in r and "SN" not in r and "OL+" not in r + "+"
]


def _assert_soc_norm_preserving(layer: nn.Module, in_channels: int) -> None:
    """Eval-mode SOC with C_out ≥ C_in: ‖y − b‖ = ‖x‖ to 1e-4."""
    assert isinstance(layer, SkewOrthogonalConv2d)
    was_training = layer.training
    layer.eval()
    x = torch.randn(4, in_channels, 8, 8)
    with torch.no_grad():
        y = layer(x)
        if layer.bias is not None:
            y = y - layer.bias.view(1, -1, 1, 1)
    layer.train(was_training)
    assert torch.allclose(y.flatten(1).norm(dim=1), x.flatten(1).norm(dim=1), rtol=1e-4)


@pytest.mark.parametrize("row,ow_map", ROW_CASES, ids=[f"{r or 'SVD'}-{m}" for r, m in ROW_CASES])
def test_three_step_sgd_each_row(row, ow_map):
    torch.manual_seed(11)
    model = _StandIn()
    h = attach_treatments(model.pre_svd_layer, row, ow_map=ow_map)
    model.set_submodule("pre_svd_layer", h.layer)  # a new module under SOC, else the same one
    ids = {id(p) for p in h.parameters()}
    rest = [p for p in model.parameters() if id(p) not in ids]
    assert len(rest) + len(ids) == len(list(model.parameters()))
    base_lr = 0.05
    opt = torch.optim.SGD(
        [{"params": rest}, {"params": h.parameters()}], lr=base_lr, momentum=0.9, weight_decay=5e-4
    )
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 5, (8,))
    free0 = h.weight_parameter().detach().clone()
    for _ in range(3):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y) + h.regularizer()
        assert torch.isfinite(loss)
        loss.backward()
        h.after_backward()
        lr = h.set_learning_rate(opt, base_lr)
        assert 0 < lr <= base_lr and opt.param_groups[0]["lr"] == base_lr
        opt.step()
    free = h.weight_parameter().detach()
    assert torch.isfinite(free).all() and not torch.allclose(free, free0)
    if ow_map == "soc":
        _assert_soc_norm_preserving(model.pre_svd_layer, 3)
    elif "OW" in row:
        _assert_orthonormal(h.effective_weight().detach(), 1e-5)
    assert (combination_warning(row) is not None) == (row in ("NOG+OLR", "OW+OLR"))


DEMO_ROWS = ["", "NOG", "OW", "NOG+OW+OLR"]
DEMO_CASES = [(r, "matrix_exp") for r in DEMO_ROWS] + [("OW", "soc"), ("NOG+OW+OLR", "soc")]


def _build_model(name: str, application: str, in_channels: int, image_size: int) -> nn.Module:
    try:
        from svdablate.models import build_model
    except ImportError as exc:  # models/ or metalayers/ not importable in this checkout
        pytest.skip(f"svdablate.models unavailable: {exc}")
    return build_model(
        name,
        application=application,
        num_classes=10,
        in_channels=in_channels,
        image_size=image_size,
        method="svd",
    )


def _train_steps(model: nn.Module, h, x: torch.Tensor, steps: int) -> None:
    ids = {id(p) for p in h.parameters()}
    rest = [p for p in model.parameters() if id(p) not in ids]
    opt = torch.optim.SGD([{"params": rest}, {"params": h.parameters()}], lr=0.05, momentum=0.9)
    y = torch.randint(0, 10, (x.shape[0],))
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y) + h.regularizer()
        assert torch.isfinite(loss)
        loss.backward()
        h.after_backward()
        assert 0 < h.set_learning_rate(opt, 0.05) <= 0.05
        opt.step()


@pytest.mark.parametrize("application", ["dbn", "gcp"])
@pytest.mark.parametrize("row,ow_map", DEMO_CASES, ids=[f"{r or 'SVD'}-{m}" for r, m in DEMO_CASES])
def test_three_step_sgd_demo_rows_on_convnet(application, row, ow_map):
    """The same run on the project's `convnet` (models/), Pre-SVD layer as the model declares it;
    under SOC the caller installs ``handle.layer`` at ``model.pre_svd_path``."""
    torch.manual_seed(12)
    model = _build_model("convnet", application, in_channels=1, image_size=8)
    layer = model.pre_svd_layer
    assert isinstance(layer, nn.Conv2d)
    h = attach_treatments(layer, row, ow_map=ow_map)
    model.body.set_submodule(model.pre_svd_path, h.layer)
    assert model.pre_svd_layer is h.layer
    free0 = h.weight_parameter().detach().clone()
    _train_steps(model, h, torch.randn(8, 1, 8, 8), steps=3)
    free = h.weight_parameter().detach()
    assert torch.isfinite(free).all() and not torch.allclose(free, free0)
    if "NOG" in row:
        G = h.weight_parameter().grad.reshape(free.shape[0], -1)
        sv = torch.linalg.svdvals(G)
        assert torch.allclose(sv, torch.ones_like(sv), atol=1e-4)
    if ow_map == "soc" and application == "dbn":  # 1 → 16 channels: norm-preserving
        _assert_soc_norm_preserving(model.pre_svd_layer, 1)


@pytest.mark.parametrize("application", ["dbn", "gcp"])
def test_soc_installs_in_resnet18(application):
    """ResNet-18's Pre-SVD layers: the CIFAR stem 3→64 3×3 (dbn) and the 512→256 1×1 reduction
    (gcp) run as SOC after ``set_submodule``; the state_dict carries the SOC kernel."""
    torch.manual_seed(19)
    model = _build_model("resnet18", application, in_channels=3, image_size=32)
    h = attach_treatments(model.pre_svd_layer, "NOG+OW+OLR", ow_map="soc")
    model.body.set_submodule(model.pre_svd_path, h.layer)
    expected = (3, 64, (3, 3)) if application == "dbn" else (512, 256, (1, 1))
    soc = model.pre_svd_layer
    assert (soc.in_channels, soc.out_channels, soc.kernel_size) == expected
    assert f"body.{model.pre_svd_path}.kernel" in model.state_dict()
    free0 = h.weight_parameter().detach().clone()
    _train_steps(model, h, torch.randn(4, 3, 32, 32), steps=1)
    assert not torch.allclose(h.weight_parameter().detach(), free0)
