"""The ICCV'21 presets' networks, initialisation and recipe against the official code: one training
step of the full-size GCP AlexNet and ResNet-50 (224 px, batch 2, a CPU) as each preset runs it,
compared with the same step of the official `main.py`.

How it was recorded: `scripts/record_official_networks.py` ran KingJamesSong/DifferentiableSVD
(commit in the file's meta) on a CPU: for each run of `official_networks.RUNS`, the `python
main.py` command of the run's script (train_alexnet.sh, train_resnet.sh, finetune/finetune.sh)
with `-b 2 --epochs 1`, through the official `main.main()`. Official lines changed to run it
(the script's docstring has the details): the `.cuda()` calls removed; `Covpool`'s centring
matrix built in float64 instead of float32 (EXCEPTIONS["centring"]); two names the published code
lacks (`CustomPade`, imported by the unused mpncovresnet; `feature_scaling`, made and never called
by `MPNCOV`) stubbed; `--weight_decay` spelled `--weight-decay` (as published, train_alexnet.sh and
train_resnet.sh do not parse). `tests/data/official_networks.pt` keeps, per run, the script's
recipe as main.py parsed it, its per-epoch lr factors, the statistics of the official network's
initial tensors (built under a seed), and, after the synthetic weights and images of
`official_networks.py` went in: the logits (norm, log-sum-exp, 32 of them per image), every
parameter's gradient before clipping and its change after the optimizer's step (norm and 4
entries each), the clip threshold and the gradient norm it saw, each parameter's lr, weight decay
and momentum, and the BN running statistics after the step.

What a departure fails: the network (layers, order, shapes, strides: the logits and every
gradient), the initialisation (each tensor's mean, std and max |x| within sampling error), the
meta-layer's forward and backward for iSQRT-COV and SVD-Newton, and the recipe: the parameter
groups (classifier lr factor), momentum, weight decay, the gradient clipping, the lr schedule,
batch size and epochs. Tolerance: 1e-5 of each tensor's norm (float32 networks), and for the
step's changes (`p_after - p_before`, which keeps only the float32 rounding of `p`) also one ulp
of each parameter entry (`_round_off_of_a_change`). Measured on the recording's CPU: iSQRT-COV's
three steps equal to the last bit; SVD-Newton's logits within 2.1e-8, gradients 3.4e-7 and
updates 1.1e-6 (`torch.svd` there, `eigh` here). On an AMD EPYC, ResNet-50's and the fine-grained
run's gradients agree within 1e-5 but a few changes land one ulp of their parameter apart (4e-5
and 6e-5 of a change's norm). The deliberate differences are the named `EXCEPTIONS`. Not
covered: the hybrid protocol (no official script runs it).
"""

from __future__ import annotations

import functools
import itertools
import math
from pathlib import Path

import official_networks as on
import pytest
import torch
import torch.nn.functional as F

from svdablate.models import build_model
from svdablate.spec.config import TrialConfig
from svdablate.spec.presets import PRESETS
from svdablate.study.plan import StudyPlan
from svdablate.training.update import apply_update, make_optimizer
from svdablate.treatments import attach_treatments

RECORDED = torch.load(
    Path(__file__).parents[1] / "data" / "official_networks.pt", weights_only=True
)
RUNS = {run.name: run for run in on.RUNS}
TOLERANCE = 1e-5  # of a tensor's norm: float32 round-off of the networks
#: torch's CPU threads when the official step was recorded (the 2-core dev VM's two: the
#: recording's meta says so since it records them). Our step runs with as many: float32 sums
#: taken in another order differ by up to 5.5e-3 of a gradient's norm at full size (measured
#: with one thread, as a pytest-xdist worker computes).
RECORDED_THREADS = int(RECORDED["meta"].get("threads", 2))

#: Where the presets depart from the official code on purpose, and why (docs/presets.md).
EXCEPTIONS = {
    "centring": "official Covpool builds its N×N centring matrix in float32 (then casts it to "
    "float64), which makes P indefinite at round-off; ours subtracts the mean in float64 (DESIGN "
    "§3): recorded with that one line building it in float64",
    "fgvc-network": "finetune/finetune.sh fine-tunes iSQRT-COV's released mpncovresnet50 "
    "(--pretrained downloads it); ICCV'21 §5.4 fine-tunes each method's own ImageNet model, "
    "train_resnet.sh's GCP resnet50: recorded with that network (-a resnet50, no --pretrained)",
    "fgvc-image-size": "fine-grained images are 448 px; the step is compared at 224 px (the "
    "network and recipe are the same at both sizes; 4x cheaper on a CPU)",
    "fgvc-weight-decay": "finetune.sh sets weight_decay=1e-3 but never passes it to main.py: "
    "main.py's default 1e-4 is what runs, and what the preset uses",
    "bias-before-bn": "a conv bias followed by a training-mode BN (AlexNet's) has a zero gradient "
    "in exact arithmetic (BN subtracts the batch mean): both codes' hold only float32 round-off, "
    "which an SVD forward's own rounding (torch.svd there, eigh here) changes; those tensors are "
    "checked to be round-off on both sides (under 1e-5 of their conv weight's gradient)",
}


def _config(run: on.Run) -> TrialConfig:
    """The preset's trial of the run's row (standalone), as `svdablate run` would make it."""
    configs = StudyPlan.create(preset=run.preset, rows=(run.row,), check=False).configs
    return next(c for c in configs if c.protocol == "standalone")


#: The runs' names, each run's tests on one pytest-xdist worker (`--dist loadgroup`): they share its
#: cached step of the full-size network.
ONE_WORKER_PER_RUN = [
    pytest.param(n, marks=pytest.mark.xdist_group(f"official-{n}")) for n in on.RUN_NAMES
]


@functools.cache
def _our_step(name: str) -> dict[str, torch.Tensor]:
    """Our side of the run: the same summaries as the recording, from our preset's network,
    optimizer and update (`svdablate.training.update`, what `train_trial` runs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(RECORDED_THREADS)
    try:
        return _step_with_the_recordings_threads(name)
    finally:
        torch.set_num_threads(threads)


def _step_with_the_recordings_threads(name: str) -> dict[str, torch.Tensor]:
    run = RUNS[name]
    config = _config(run)
    torch.manual_seed(on.SEED)
    model = build_model(
        config.model,
        application=config.application,
        num_classes=run.num_classes,
        in_channels=3,
        image_size=on.IMAGE,
        method=config.method,
        precision=config.precision,
        options=config.model_options,
    )
    entries = list(model.state_dict().items())
    out: dict[str, torch.Tensor] = {"init": torch.stack([on.init_stats(v) for _, v in entries])}
    out["numel"] = torch.tensor([v.numel() for _, v in entries])
    weights = on.synthetic_state([(k, tuple(v.shape)) for k, v in entries])
    model.load_state_dict(dict(zip([k for k, _ in entries], weights, strict=True)))
    treatments = attach_treatments(
        model.pre_svd_layer, config.treatments, ol_weight=config.ol_weight, ow_map=config.ow_map
    )
    model.body.set_submodule(model.pre_svd_path, treatments.layer)
    optimizer, _ = make_optimizer(model, treatments, config)
    images, labels = on.batch(run.num_classes)
    model.train()
    optimizer.zero_grad(set_to_none=True)
    logits = model(images)
    (F.cross_entropy(logits, labels) + treatments.regularizer()).backward()
    params = list(model.parameters())  # the official order: features, representation, classifier
    index = {id(p): i for i, p in enumerate(params)}
    out["pre_svd_index"] = torch.tensor(index[id(treatments.weight_parameter())])
    out["round_off_rows"] = torch.tensor(
        [index[id(conv.bias)] for conv in _convs_with_bias_before_bn(model)], dtype=torch.long
    )
    out["logits"] = on.logit_summary(logits)
    out["grads"] = torch.stack([on.summary(p.grad) for p in params])
    group = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    out["groups"] = torch.tensor(
        [[group[id(p)][k] for k in ("lr", "weight_decay", "momentum")] for p in params],
        dtype=torch.float64,
    )
    before = [p.detach().clone() for p in params]
    update = apply_update(model, treatments, optimizer, config)
    out["grad_norm"] = update.grad_norm.detach().clone()
    out["deltas"] = torch.stack(
        [on.summary(p.detach() - b) for p, b in zip(params, before, strict=True)]
    )
    out["delta_round_off"] = torch.stack([_round_off_of_a_change(b) for b in before])
    out["buffers"] = torch.stack(
        [on.summary(b) for n, b in model.state_dict().items() if "running" in n]
    )
    return out


def _round_off_of_a_change(parameter: torch.Tensor) -> torch.Tensor:
    """What float32 storage alone lets two equal steps' changes of `parameter` differ by, as a
    summary row: each side rounds `p + update` to a float32, and exact updates that differ at
    1e-7 (another CPU's kernels) round to neighbouring floats, one ulp of p apart. An entry: its
    ulp; the norm: the norm of every entry's ulp."""
    flat = parameter.detach().reshape(-1).float().abs()
    ulps = (torch.nextafter(flat, torch.tensor(math.inf)) - flat).double()
    return torch.cat([ulps.norm().reshape(1), ulps[on.sample_index(flat.numel())]])


def _convs_with_bias_before_bn(model: torch.nn.Module) -> list[torch.nn.Conv2d]:
    """EXCEPTIONS["bias-before-bn"]: the convs with a bias that a BatchNorm2d follows."""
    found = []
    for module in model.modules():
        children = list(module.children())
        for conv, after in itertools.pairwise(children):
            biased = isinstance(conv, torch.nn.Conv2d) and conv.bias is not None
            if biased and isinstance(after, torch.nn.BatchNorm2d):
                found.append(conv)
    return found


def _split_round_off(ours: dict[str, torch.Tensor], rows: torch.Tensor, what: str) -> torch.Tensor:
    """Rows to compare, having checked that EXCEPTIONS["bias-before-bn"]'s rows of `what` are
    round-off on both sides (each under 1e-5 of the norm of the row before: the conv's weight)."""
    keep = torch.ones(len(rows), dtype=torch.bool)
    for i in ours["round_off_rows"].tolist():
        for side, table in (("ours", ours[what]), ("official", rows)):
            assert table[i, 0] <= 1e-5 * table[i - 1, 0], f"{side} {what} {i} is not round-off"
        keep[i] = False
    return keep


def _assert_summaries_close(
    ours: torch.Tensor,
    theirs: torch.Tensor,
    what: str,
    round_off: torch.Tensor | None = None,
) -> None:
    """Rows of (norm, entries…): every number within TOLERANCE of its row's norm, past the
    round-off a row may carry (`round_off`: per row, that of its norm and of each entry)."""
    assert ours.shape == theirs.shape, f"{what}: {tuple(ours.shape)} vs {tuple(theirs.shape)}"
    scale = theirs[:, :1].double().abs().clamp_min(1e-30)
    difference = (ours.double() - theirs.double()).abs()
    if round_off is not None:
        difference = (difference - round_off).clamp_min(0)
    error = (difference / scale).max(dim=1).values
    worst = int(error.argmax())
    assert float(error[worst]) <= TOLERANCE, (
        f"{what}: tensor {worst} of {len(error)} differs by {float(error[worst]):.2e} of its norm "
        f"(norms {float(ours[worst, 0]):.6e} vs {float(theirs[worst, 0]):.6e})"
    )


@pytest.mark.parametrize("name", ONE_WORKER_PER_RUN)
def test_initialisation_follows_the_official_rules(name: str) -> None:
    """Each tensor's (mean, std, max |x|) at construction, within sampling error: a constant
    (BN's 1 and 0) exactly, a drawn tensor's std within 5/√n, its mean within 5 std/√n, and its
    max |x| within 25 % (which tells uniform, √3 std, from normal, ~4.5 std)."""
    ours, theirs = _our_step(name)["init"].double(), RECORDED["runs"][name]["init"].double()
    assert ours.shape == theirs.shape
    numel = _our_step(name)["numel"].tolist()
    for i, ((m, s, a), (mo, so, ao), n) in enumerate(zip(ours, theirs, numel, strict=True)):
        if so == 0:
            assert (m, s, a) == (mo, so, ao), f"tensor {i}: ({m}, {s}, {a}) vs ({mo}, {so}, {ao})"
            continue
        assert abs(s - so) <= 5 * so / math.sqrt(n), f"tensor {i} (n {n}): std {s} vs {so}"
        assert abs(m - mo) <= 5 * so / math.sqrt(n), f"tensor {i} (n {n}): mean {m} vs {mo}"
        assert abs(a - ao) <= 0.25 * ao, f"tensor {i} (n {n}): max |x| {a} vs {ao}"


@pytest.mark.parametrize("name", ONE_WORKER_PER_RUN)
def test_one_training_step_equals_the_official_one(name: str) -> None:
    ours, theirs = _our_step(name), RECORDED["runs"][name]
    _assert_summaries_close(ours["logits"], theirs["logits"], "logits (norm, lse, first 32)")
    i = int(ours["pre_svd_index"])  # the GCP head's 1×1 conv, official conv_dr_block[0]
    _assert_summaries_close(ours["grads"][i : i + 1], theirs["grads"][i : i + 1], "Pre-SVD grad")
    keep = _split_round_off(ours, theirs["grads"], "grads")
    _assert_summaries_close(ours["grads"][keep], theirs["grads"][keep], "gradients, not clipped")
    assert float(ours["grad_norm"]) == pytest.approx(theirs["grad_norm"], rel=TOLERANCE)
    _assert_summaries_close(
        ours["deltas"][keep],
        theirs["deltas"][keep],
        "changes of the step",
        ours["delta_round_off"][keep],
    )
    _assert_summaries_close(ours["buffers"], theirs["buffers"], "BN running statistics")


@pytest.mark.parametrize("name", ONE_WORKER_PER_RUN)
def test_the_recipe_is_the_official_scripts(name: str) -> None:
    """Per parameter lr, weight decay and momentum (the classifier factor), the gradient
    clipping, the per-epoch lr factors, batch size and epochs of the script."""
    run, theirs = RUNS[name], RECORDED["runs"][name]
    config, preset = _config(run), PRESETS[run.preset]
    groups = theirs["groups"]
    torch.testing.assert_close(
        _our_step(name)["groups"], groups["values"][groups["index"].long()], rtol=0, atol=0
    )
    assert config.grad_clip_norm == theirs["clip_max_norm"]
    script = theirs["script"]
    assert (preset.trial.batch_size, config.epochs) == (script["batch_size"], script["epochs"])
    assert script["freezed_layer"] == 0  # the scripts freeze no layer (ours never does)
    factors = [config.gamma if e in config.milestone_epochs else 1.0 for e in range(config.epochs)]
    assert factors == theirs["lr_factor"].tolist()
