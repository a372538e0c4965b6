"""Record one training step of the official ICCV'21 `main.py` on a CPU, for the network tests.

    python scripts/record_official_networks.py /path/to/DifferentiableSVD \
        [--out tests/data/official_networks.pt]

The path is a checkout of KingJamesSong/DifferentiableSVD (commit 1676a64 was recorded); none of
its code is copied here or committed. For every run of `tests/unit/official_networks.py` this script
builds the official command from the run's script (its `python main.py …` line with the script's
variables), and calls the official `main.main()` on it, in this process, from a temporary copy
of the checkout in which only these lines differ:

- every `.cuda(…)` call is removed (a CPU; `DataParallel` without GPUs calls its module);
- each `Covpool.forward` builds its centring matrix `I_hat` in the input's dtype (float64) instead
  of float32 then cast: the float32 `I_hat` makes P indefinite at round-off, a departure of the
  official code that ours does not copy (DESIGN §3), and not what these recordings test;
- `src/network/mpncovresnet.py` imports `CustomPade` from `src.representation`, which no commit
  of the repository has (as published, `main.py` cannot be imported): that import becomes
  `Custom = None` (mpncovresnet, the only user, is not run);
- `MPNCOV.__init__` makes `self.feature_scaling = feature_scaling()`, a class of
  `feature_momentum.py`, whose import the last commit (1676a64) removed and which the repository
  never had; its forward never calls it (commented out): it becomes `nn.Identity()`.

and with these run-time substitutions (the official functions are otherwise untouched):

- `get_model` is wrapped: the official network is built under `torch.manual_seed(SEED)` (its
  initial tensors' statistics are recorded), then given the runs' synthetic weights;
- the dataset classes (`ImageFolder`, `Cub2011`) return the synthetic batch (two images, in
  order: `DataLoader` runs without workers or shuffling); `graphviz` (imported, never used) is a
  stub;
- `clip_grad_norm_` and `torch.optim.SGD` are wrapped to record the gradients before clipping,
  the clip threshold and norm, the optimizer's groups and the weights after the first step;
- `best_prec1` starts at −1 instead of 0, so that the one epoch's checkpoint is saved as the best
  one, which main.py's final evaluation reloads (after one step the accuracy may be 0).

Command-line changes from the scripts (the recipe's values are recorded from the unchanged ones):
`-b 2 --epochs 1` (one step of two images), `--representation` the run's, the data and model
directories temporary ones, and `--weight_decay` spelled `--weight-decay` (train_alexnet.sh and
train_resnet.sh pass `--weight_decay`, which main.py's argparse rejects: as published they do not
run). `finetune/finetune.sh` is a template: its run sets the variables `Run.variables` names and
drops `--pretrained` (which downloads iSQRT-COV's mpncovresnet50): the fine-tuned network is the
row's own `train_resnet.sh` network, given its weights.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit"))
import official_networks as on

CUDA_CALL = re.compile(r"\.cuda\((?:[^()]|\([^()]*\))*\)")
I_HAT_DEVICE = "device = x.device)"
MISSING_IMPORT = "from ..representation import CustomPade as Custom"
MISSING_CLASS = "self.feature_scaling = feature_scaling()"


def patched_copy(official: Path, into: Path) -> None:
    """The checkout's Python files with the two changes of the module docstring."""
    for source in official.rglob("*.py"):
        if ".git" in source.parts:
            continue
        target = into / source.relative_to(official)
        target.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        for line in CUDA_CALL.sub("", source.read_text()).splitlines(keepends=True):
            if line.lstrip().startswith("I_hat = (") and I_HAT_DEVICE in line:
                line = line.replace(I_HAT_DEVICE, "device = x.device, dtype = x.dtype)")
            if line.strip() == MISSING_IMPORT:
                line = "Custom = None  # CustomPade is not in the repository\n"
            if line.strip() == MISSING_CLASS:
                line = line.replace("feature_scaling()", "nn.Identity()")
            lines.append(line)
        target.write_text("".join(lines))


def script_command(script: Path, variables: dict[str, str]) -> list[str]:
    """The argv of the script's first `python main.py` command, its variables expanded."""
    values: dict[str, str] = {}
    for line in script.read_text().splitlines():
        match = re.match(r"^(\w+)=(.*)$", line.strip())
        if match:
            values[match[1]] = match[2].replace("\\ ", " ")
    values.update(variables)
    text = script.read_text()
    start = text.index("python main.py")
    end = start
    lines = text[start:].splitlines()
    command = []
    for line in lines:
        command.append(line.rstrip().rstrip("\\"))
        end += 1
        if not line.rstrip().endswith("\\"):
            break
    joined = " ".join(command)
    expanded = re.sub(r"\$(\w+)", lambda m: values.get(m[1], m[0]), joined)
    return shlex.split(expanded)[2:]  # after `python main.py`


def replace_option(argv: list[str], flag: str, value: str) -> list[str]:
    out = list(argv)
    out[out.index(flag) + 1] = value
    return out


class SyntheticImages(torch.utils.data.Dataset):
    """The run's batch, whatever path and transform main.py asks for."""

    def __init__(self, num_classes: int) -> None:
        self.images, self.labels = on.batch(num_classes)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.images[i], int(self.labels[i])


def record_run(run: on.Run, official: Path, copy: Path, work: Path) -> dict:
    """Run the official main.py for one step of `run`; what it computed."""
    argv = script_command(official / run.script, run.variables)
    argv = ["--weight-decay" if a == "--weight_decay" else a for a in argv if a != "--pretrained"]
    argv = replace_option(argv, "--representation", run.representation)
    recorded: dict = {"argv_script": list(argv)}
    argv[0] = str(work / "data")
    argv = replace_option(argv, "--modeldir", str(work / f"model-{run.name}"))
    argv = replace_option(replace_option(argv, "-b", str(on.BATCH)), "--epochs", "1")
    recorded["argv_run"] = list(argv)

    for name in [m for m in sys.modules if m == "main" or m.split(".")[0] in ("src", "model_init")]:
        del sys.modules[name]
    sys.modules.setdefault("graphviz", types.SimpleNamespace(Digraph=object))
    os.chdir(copy)
    import main as official_main  # the patched copy (sys.path[0])

    script_args = official_main.parser.parse_args(recorded["argv_script"])
    recorded["script"] = {
        k: getattr(script_args, k)
        for k in (
            "arch",
            "batch_size",
            "epochs",
            "lr",
            "lr_method",
            "lr_params",
            "momentum",
            "weight_decay",
            "classifier_factor",
            "num_classes",
            "freezed_layer",
            "pretrained",
        )
    }
    state: dict = {"first_step": True}
    real_get_model = official_main.get_model

    def get_model(*args, **kwargs):
        torch.manual_seed(on.SEED)
        model = real_get_model(*args, **kwargs)
        entries = list(model.state_dict().items())
        recorded["init"] = torch.stack([on.init_stats(v) for _, v in entries])
        weights = on.synthetic_state([(k, tuple(v.shape)) for k, v in entries])
        model.load_state_dict(dict(zip([k for k, _ in entries], weights, strict=True)))

        def keep_logits(module, inputs, output) -> None:  # the first (training) forward's
            if "logits" not in state:
                state["logits"] = output.detach().clone()

        model.register_forward_hook(keep_logits)
        state["model"] = model
        return model

    real_clip = torch.nn.utils.clip_grad_norm_

    def clip(parameters, max_norm, *args, **kwargs):
        parameters = list(parameters)
        if state["first_step"]:
            recorded["grads"] = torch.stack([on.summary(p.grad) for p in parameters])
            recorded["clip_max_norm"] = float(max_norm)
        total = real_clip(parameters, max_norm, *args, **kwargs)
        recorded.setdefault("grad_norm", float(total))
        return total

    class RecordingSGD(torch.optim.SGD):
        def step(self, closure=None):
            if state["first_step"]:
                settings = torch.tensor(
                    [
                        [g["lr"], g["weight_decay"], g["momentum"]]
                        for g in self.param_groups
                        for _ in g["params"]
                    ],
                    dtype=torch.float64,
                )
                # each parameter's (lr, weight decay, momentum): distinct rows and an index
                values, index = torch.unique(settings, dim=0, return_inverse=True)
                recorded["groups"] = {"values": values, "index": index.to(torch.int8)}
                before = [p.detach().clone() for g in self.param_groups for p in g["params"]]
            loss = super().step(closure)
            if state["first_step"]:
                after = [p.detach() for g in self.param_groups for p in g["params"]]
                recorded["deltas"] = torch.stack(
                    [on.summary(a - b) for a, b in zip(after, before, strict=True)]
                )
                state["first_step"] = False
            return loss

    def loader(dataset, *args, **kwargs):
        kwargs.update(num_workers=0, shuffle=False, sampler=None, pin_memory=False)
        return torch.utils.data.dataloader.DataLoader(dataset, *args, **kwargs)

    official_main.get_model = get_model
    official_main.best_prec1 = -1.0  # the one epoch is the best: main.py's last evaluation loads it
    official_main.datasets = types.SimpleNamespace(ImageFolder=lambda *a, **k: dataset)
    official_main.Cub2011 = lambda *a, **k: dataset
    dataset = SyntheticImages(run.num_classes)
    sys.argv = ["main.py", *argv]
    with (
        _patched(torch.nn.utils, "clip_grad_norm_", clip),
        _patched(torch.optim, "SGD", RecordingSGD),
        _patched(torch.utils.data, "DataLoader", loader),
    ):
        official_main.main()
    model = state["model"]
    recorded["logits"] = on.logit_summary(state["logits"])
    recorded["buffers"] = torch.stack(
        [on.summary(b) for n, b in model.state_dict().items() if "running" in n]
    )
    generator = official_main.Learning_rate_generater(
        script_args.lr_method, script_args.lr_params, script_args.epochs
    )
    recorded["lr_factor"] = torch.as_tensor(generator.lr_factor, dtype=torch.float64)
    print(
        f"{run.name:20s} logits |{recorded['logits'].norm():.6e}| grad norm "
        f"{recorded['grad_norm']:.6e} (clip {recorded['clip_max_norm']})"
    )
    return recorded


@contextlib.contextmanager
def _patched(owner, name, value):
    real = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, real)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("official", type=Path, help="checkout of KingJamesSong/DifferentiableSVD")
    parser.add_argument("--out", type=Path, default=Path("tests/data/official_networks.pt"))
    parser.add_argument("--runs", default=",".join(on.RUN_NAMES), help="comma-separated runs")
    args = parser.parse_args()
    official = args.official.resolve()
    out = args.out.resolve()
    commit = subprocess.run(
        ["git", "-C", str(official), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        copy, work = Path(tmp) / "official", Path(tmp) / "work"
        patched_copy(official, copy)
        (work / "data").mkdir(parents=True)
        sys.path.insert(0, str(copy))
        for run in on.RUNS:
            if run.name in args.runs.split(","):
                runs[run.name] = record_run(run, official, copy, work)
        shutil.rmtree(work, ignore_errors=True)
    meta = {
        "official_commit": commit or "unknown",
        "torch": str(torch.__version__),
        "threads": torch.get_num_threads(),  # the test computes ours with as many
    }
    torch.save({"meta": meta, "runs": runs}, out)
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
