"""Fidelity notes: what a table's runs ran, and where it departs from the official code, and why.

Every table's caption gets `caption_notes(runs)`: one line naming the operator and precision each
row ran (`ran_note`), then every note of `NOTES` that some run of the table meets. Both come from
the runs' recorded tags and params (the columns of `runs.load_runs`), never from a preset, so a
table says what its runs did even when a `--set` changed the preset.

Adding a note is one line in `NOTES`: the sentence, then its conditions as keywords::

    Note("SVD-Padé: ...", method="svd-pade"),
    Note("Gradient norm clipped at 5 every step, as the ICCV'21 main.py.", grad_clip="5.0"),

A condition names a column of the runs (`method` (the row's), `solver` (the method every row
ran instead, "" when unset), `precision`, `application`, `dataset`, `model`, `protocol`,
`ow_map`, or any column `schema.CAPTION_PARAMS` adds from the params) or `treatment` (one of
the row's treatments); its value is a string or a tuple of alternatives, "" matching an unset
value. A note applies when one run meets all of its conditions. A new param a note keys on is
one more entry in `schema.CAPTION_PARAMS`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from svdablate.report.tables.rows import treatments

_OFFICIAL_SOLVER = (
    "--set model_options.solver=mpa-lya --set precision=float32 runs the released code's path"
)


class Note:
    """A caption sentence and the run values it applies to (column → value or alternatives)."""

    __slots__ = ("text", "when")

    def __init__(self, text: str, **when: str | tuple[str, ...]) -> None:
        self.text = text
        self.when: Mapping[str, str | tuple[str, ...]] = when

    def __repr__(self) -> str:
        return f"Note({self.text[:40]!r}…, {self.when})"


NOTES: tuple[Note, ...] = (
    # ECCV'22 decorrelated BN: which solver ran (ECCV'22 §6.1; the released ZCANorm.py)
    Note(
        "SVD and NS rows ran the paper's operators (eigh with the exact backward; coupled "
        "Newton-Schulz); the released ECCV'22 code runs MPA-Lya in float32 for every row "
        f"instead ({_OFFICIAL_SOLVER}).",
        application="dbn",
        solver="",
        method=("svd", "ns"),
    ),
    Note(
        "Every row ran MPA-Lya as the released ECCV'22 code (S = inverse of the [5/5] Padé "
        "square root, Lyapunov backward, through the inverse), not the SVD or NS its label "
        "names: the code behind the published numbers, not the paper's text.",
        application="dbn",
        solver="mpa-lya",
    ),
    Note(
        "MPA-Lya ran in float64; the released code runs it in float32.",
        solver="mpa-lya",
        precision="float64",
    ),
    Note(
        "CIFAR-100 inputs normalised with CIFAR-100's own mean/std; the official CIFAR-100 "
        "script uses CIFAR-10's (copied from its CIFAR-10 script), i.e. inputs scaled 1.29-1.37x "
        "per channel, which moves the stem covariance against the ZCA ridge.",
        application="dbn",
        dataset="cifar100",
        normalization=("", "dataset"),
    ),
    Note(
        "CIFAR-100 inputs normalised with CIFAR-10's mean/std, as the official CIFAR-100 script "
        "(a copy of its CIFAR-10 script).",
        dataset="cifar100",
        normalization="cifar10",
    ),
    # ICCV'21 recipes and networks (tests/unit/test_official_networks.py)
    Note(
        "Gradient norm of all parameters clipped at 5 after every backward, as the ICCV'21 "
        "main.py (before NOG/OLR and the step).",
        grad_clip_norm="5.0",
    ),
    Note(
        "Covariance centred by subtracting the mean in float64; the official ICCV'21 Covpool "
        "multiplies by an N×N centring matrix built in float32, which makes P indefinite.",
        application="gcp",
    ),
    Note(
        "GCP AlexNet as the official model_init.py: BN after every conv, classifier "
        "32896→4096→ReLU→4096→ReLU→classes without dropout (158.2M parameters at 1000 classes).",
        application="gcp",
        model="alexnet",
    ),
    Note(
        "GCP ResNet with layer4 at stride 2, as train_resnet.sh (-a resnet50); iSQRT-COV's "
        "mpncovresnet keeps it at stride 1.",
        application="gcp",
        model=("resnet50", "resnet101"),
        layer4_stride1=("", "False"),
    ),
    Note(
        "Fine-tuned as the official finetune/finetune.sh: lr 1.2e-3 constant, batch 10, "
        "classifier lr ×5, weight decay 1e-4 (main.py's default: the script's 1e-3 is never "
        "passed), clipped at 5; each row from its own ImageNet model (--checkpoints), not the "
        "script's mpncovresnet50.",
        dataset=("cub200", "dogs", "cars"),
        classifier_lr_factor="5.0",
    ),
    # ICCV'21 backward rules at tied eigenvalues (docs/methods.md "Ties";
    # tests/unit/test_official_rules.py)
    Note(
        "MPN-COV (svd): at tied eigenvalues the exact limit f'(λ); the official code puts the "
        "batch's largest finite K there, a value set by round-off (its output moves up to 9e-4 "
        "when P moves by 1e-15).",
        method="svd",
        application="gcp",
    ),
    Note(
        "SVD-Padé: at tied eigenvalues the exact limit f'(λ), the value its approximant tends "
        "to; the mpmath P(1)/Q(1) = -1.33e21 made a rank-deficient GCP gradient 1e14x the exact "
        "one, and the official code's ±inf becomes the batch's largest finite K.",
        method="svd-pade",
    ),
    Note(
        "SVD-TopN: at its tied (dropped) eigenvalues the batch's largest finite K, as the "
        "official code's overflow check.",
        method="svd-topn",
    ),
    Note(
        "SVD-PI: the paper's power iteration with deflation; the official code multiplies by "
        "I - VVᵀ with the full V (≈ 0) and passes no gradient.",
        method="svd-pi",
    ),
    # ECCV'22 treatments (§4-5)
    Note(
        "OLR sets the Pre-SVD layer's lr, found by parameter identity; the released script "
        "picks that optimizer group by name after DataParallel renamed the layer, so there the "
        "group is empty and OLR never changes an lr.",
        treatment="OLR",
    ),
    Note(
        "OW: Skew Orthogonal Convolution (ref. [43]), the official code's operator, not eq. "
        "13's exponential of the (C_out, C_in·k·k) weight matrix.",
        treatment="OW",
        ow_map="soc",
    ),
    Note(
        "OW: eq. 13 on the (C_out, C_in·k·k) weight matrix; the official code (and so the "
        "published numbers) runs Skew Orthogonal Convolution (ow_map=soc).",
        treatment="OW",
        ow_map=("matrix_exp", "cayley"),
    ),
)


def _column(runs: pd.DataFrame, key: str) -> pd.Series:
    """The runs' values of `key` as strings ("" where missing or unset)."""
    if key not in runs:
        return pd.Series("", index=runs.index)
    return runs[key].fillna("").astype(str).replace({"None": "", "nan": ""})


def _meets(runs: pd.DataFrame, when: Mapping[str, str | tuple[str, ...]]) -> pd.Series:
    """Which runs meet every condition of `when`."""
    mask = pd.Series(True, index=runs.index)
    for key, value in when.items():
        allowed = (value,) if isinstance(value, str) else tuple(value)
        if key == "treatment":
            has = [bool(set(treatments(str(r))) & set(allowed)) for r in runs["row"]]
            mask &= pd.Series(has, index=runs.index)
        else:
            mask &= _column(runs, key).isin(allowed)
    return mask


def applicable_notes(runs: pd.DataFrame, notes: tuple[Note, ...] = NOTES) -> list[str]:
    """The sentences of the notes some run of the table meets, in `notes` order."""
    if runs.empty:
        return []
    return [n.text for n in notes if bool(_meets(runs, n.when).any())]


def ran_note(runs: pd.DataFrame, rows: Sequence[str] = ()) -> str | None:
    """'Ran: svd in float64 (SVD, SVD+NOG); ns in float64 (NS).': the operator each row ran
    (the `solver` param when set, else the row's method) and its precision, in `rows` order."""
    if runs.empty or "row" not in runs:
        return None
    order = {r: i for i, r in enumerate(dict.fromkeys([*rows, *runs["row"]]))}
    runs = runs.iloc[runs["row"].map(order).argsort(kind="stable")]
    ran = _column(runs, "solver").where(_column(runs, "solver") != "", _column(runs, "method"))
    groups = runs.assign(_ran=ran, _precision=_column(runs, "precision"))
    parts = []
    all_rows = set(runs["row"])
    for (method, precision), sub in groups.groupby(["_ran", "_precision"], sort=False):
        ran_rows = list(dict.fromkeys(sub["row"]))
        where = "every row" if set(ran_rows) == all_rows else ", ".join(ran_rows)
        what = " in ".join(p for p in (method or "unrecorded method", precision) if p)
        parts.append(f"{what} ({where})")
    return "Ran: " + "; ".join(parts) + "."


def caption_notes(runs: pd.DataFrame, rows: Sequence[str] = ()) -> list[str]:
    """What the table's runs ran (rows in `rows` order), then where it departs from the
    official code and why."""
    ran = ran_note(runs, rows)
    return ([ran] if ran else []) + applicable_notes(runs)
