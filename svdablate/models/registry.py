"""The models by name (``MODELS``) and ``build_model``; their options and defaults are
``ModelOptions``'s (``svdablate.spec.model_options``)."""

from __future__ import annotations

from collections.abc import Callable

from svdablate.models.convnet import build_convnet
from svdablate.models.svdnet import APPLICATIONS, ModelRequest, SVDNet
from svdablate.models.torchvision_backbones import build_alexnet, resnet_builder
from svdablate.spec.model_options import ModelOptions

__all__ = ["MODELS", "build_model"]

MODELS: dict[str, Callable[[ModelRequest], SVDNet]] = {
    "convnet": build_convnet,
    "resnet18": resnet_builder("resnet18"),
    "resnet50": resnet_builder("resnet50"),
    "resnet101": resnet_builder("resnet101"),
    "alexnet": build_alexnet,
}


def build_model(
    name: str,
    *,
    application: str,
    num_classes: int,
    in_channels: int,
    image_size: int,
    method: str,
    precision: str = "float64",
    options: ModelOptions | None = None,
) -> SVDNet:
    """Build ``name`` with the ``application`` meta-layer (dbn: ZCA whitening; gcp: GCP head);
    the options unset in ``options`` take the model's defaults (``ModelOptions.for_model``)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(MODELS)}")
    if application not in APPLICATIONS:
        raise ValueError(f"unknown application {application!r}; valid: {', '.join(APPLICATIONS)}")
    resolved = (options or ModelOptions()).for_model(name)
    data = (int(num_classes), int(in_channels), int(image_size))
    return MODELS[name](ModelRequest(application, *data, method, precision, resolved))
