"""The model contract: ``SVDNet`` (a backbone plus its two handles) and its meta-layer from options.

Every builder (``convnet.py``, ``torchvision_backbones.py``) returns an ``SVDNet``: the backbone
plus ``pre_svd_layer`` (the conv whose output feeds the meta-layer; treatments attach to it),
``metalayer`` (``ZCAWhitening`` for ``dbn``, ``CovariancePooling`` for ``gcp``) and ``classifier``
(the layers after the pooling: ICCV'21 main.py gives them lr × ``--classifier-factor``, and a
fine-tuned network starts them afresh), each resolved by module path (``get_submodule``) at each
access.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from svdablate.metalayers import CovariancePooling, ZCAWhitening
from svdablate.spec.model_options import ModelOptions

__all__ = ["APPLICATIONS", "ModelRequest", "SVDNet", "gcp_from_options", "zca_from_options"]

APPLICATIONS = ("dbn", "gcp")


@dataclass(frozen=True)
class ModelRequest:
    """What ``build_model`` asks a builder (``MODELS[name](request) -> SVDNet``) to build: the
    application's meta-layer (dbn or gcp) with ``method`` at ``precision``, for the data's classes,
    channels and image size, with ``options`` (every one set: ``ModelOptions.for_model``)."""

    application: str
    num_classes: int
    in_channels: int
    image_size: int
    method: str
    precision: str
    options: ModelOptions

    def zca(self, channels: int) -> ZCAWhitening:
        """The dbn meta-layer on ``channels``."""
        return zca_from_options(channels, self.method, self.precision, self.options)

    def gcp(self, channels: int) -> CovariancePooling:
        """The gcp head on ``channels``."""
        return gcp_from_options(channels, self.method, self.precision, self.options)


class SVDNet(nn.Module):
    """A backbone with one meta-layer; ``pre_svd_layer`` and ``metalayer`` resolve by path."""

    def __init__(
        self,
        body: nn.Module,
        *,
        pre_svd_path: str,
        metalayer_path: str,
        classifier_path: str,
    ) -> None:
        super().__init__()
        self.body = body
        self.pre_svd_path = pre_svd_path
        self.metalayer_path = metalayer_path
        self.classifier_path = classifier_path
        for path in (pre_svd_path, metalayer_path, classifier_path):
            self.body.get_submodule(path)

    @property
    def pre_svd_layer(self) -> nn.Module:
        """The Pre-SVD conv (its output is what the meta-layer's covariance is taken of)."""
        return self.body.get_submodule(self.pre_svd_path)

    @property
    def metalayer(self) -> ZCAWhitening | CovariancePooling:
        """The ZCA whitening (dbn) or covariance pooling (gcp) module."""
        return self.body.get_submodule(self.metalayer_path)  # type: ignore[return-value]

    @property
    def classifier(self) -> nn.Module:
        """The layers after the pooling (a Linear, or AlexNet's three-layer MLP)."""
        return self.body.get_submodule(self.classifier_path)

    @property
    def classifier_prefix(self) -> str:
        """The state-dict prefix of the classifier's tensors (``body.fc.``)."""
        return f"body.{self.classifier_path}."

    def forward(self, x: Tensor) -> Tensor:
        """Logits of the backbone."""
        return self.body(x)


def zca_from_options(
    channels: int, method: str, precision: str, options: ModelOptions
) -> ZCAWhitening:
    """The dbn meta-layer on ``channels`` with the model options ``options`` (every one set)."""
    return ZCAWhitening(
        channels,
        method=method,
        precision=precision,
        groups=options.groups,
        eps=options.eps,
        momentum=options.momentum,
        opts=options.metalayer_opts,
        solver=options.solver,
    )


def gcp_from_options(
    channels: int, method: str, precision: str, options: ModelOptions
) -> CovariancePooling:
    """The gcp head on ``channels`` with the model options ``options`` (every one set)."""
    return CovariancePooling(
        channels,
        reduction_dim=options.reduction_dim,
        method=method,
        precision=precision,
        opts=options.metalayer_opts,
        solver=options.solver,
    )
