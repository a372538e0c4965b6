"""The models by name (``MODELS``), their options with defaults, and ``build_model``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from svdablate.models.convnet import build_convnet
from svdablate.models.svdnet import APPLICATIONS, SVDNet
from svdablate.models.torchvision_backbones import build_alexnet, resnet_builder

__all__ = ["DEFAULT_OPTS", "MODELS", "MODEL_DEFAULTS", "build_model"]

MODELS: dict[str, Callable[..., SVDNet]] = {
    "convnet": build_convnet,
    "resnet18": resnet_builder("resnet18"),
    "resnet50": resnet_builder("resnet50"),
    "resnet101": resnet_builder("resnet101"),
    "alexnet": build_alexnet,
}

# Options every model accepts, with defaults; per-model overrides of the defaults below.
DEFAULT_OPTS: dict[str, Any] = {
    "groups": 1,  # dbn: channels whitened in this many independent groups
    "eps": 1e-2,  # dbn: P + eps·I
    "momentum": 0.1,  # dbn: running mean / running S
    "reduction_dim": 256,  # gcp: channels of the 1×1 reduction conv (the Pre-SVD layer)
    "layer4_stride1": False,  # gcp, resnets: keep layer4 at stride 1
    "alexnet_bn": True,  # alexnet: BN after each conv (the ICCV'21 official AlexNet)
    "width": 16,  # convnet: stem channels (blocks use 2× and 4×)
    "stem_kernel": 5,  # convnet: stem kernel size
    "metalayer_opts": None,  # extra options for metalayers.sqrtm / inv_sqrtm (keep, degree, …)
    "solver": None,  # a method run instead of every row's (e.g. mpa-lya: the released DBN code)
}
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {"convnet": {"reduction_dim": 32}}


def build_model(
    name: str,
    *,
    application: str,
    num_classes: int,
    in_channels: int,
    image_size: int,
    method: str,
    precision: str = "float64",
    **opts: Any,
) -> SVDNet:
    """Build ``name`` with the ``application`` meta-layer (dbn: ZCA whitening; gcp: GCP head)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(MODELS)}")
    if application not in APPLICATIONS:
        raise ValueError(f"unknown application {application!r}; valid: {', '.join(APPLICATIONS)}")
    unknown = sorted(set(opts) - set(DEFAULT_OPTS))
    if unknown:
        raise ValueError(
            f"unknown model option(s) {', '.join(unknown)}; valid: {', '.join(DEFAULT_OPTS)}"
        )
    o = {**DEFAULT_OPTS, **MODEL_DEFAULTS.get(name, {}), **opts}
    o["metalayer_opts"] = dict(o["metalayer_opts"] or {})
    return MODELS[name](
        application, int(num_classes), int(in_channels), int(image_size), method, precision, o
    )
