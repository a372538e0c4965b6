"""Backbones with an SVD meta-layer: a small CPU convnet, torchvision ResNets and AlexNet.

``build_model`` returns an ``SVDNet``: the backbone plus two handles, ``pre_svd_layer`` (the conv
whose output feeds the meta-layer; treatments attach to it) and ``metalayer`` (``ZCAWhitening`` for
``dbn``, ``CovariancePooling`` for ``gcp``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn
from torchvision import models as tvm

from svdablate.models.metalayer import CovariancePooling, ZCAWhitening

APPLICATIONS = ("dbn", "gcp")
SMALL_IMAGE_MAX = 64  # images up to this size get the CIFAR stem (3×3 stride-1 conv, no max-pool)


class SVDNet(nn.Module):
    """A backbone with one meta-layer; ``pre_svd_layer`` and ``metalayer`` resolve by path."""

    def __init__(
        self,
        body: nn.Module,
        *,
        pre_svd_path: str,
        metalayer_path: str,
        arch: str,
        application: str,
    ) -> None:
        super().__init__()
        self.body = body
        self.pre_svd_path = pre_svd_path
        self.metalayer_path = metalayer_path
        self.arch = arch
        self.application = application
        self.body.get_submodule(pre_svd_path)
        self.body.get_submodule(metalayer_path)

    @property
    def pre_svd_layer(self) -> nn.Module:
        """The Pre-SVD conv (its output is what the meta-layer's covariance is taken of)."""
        return self.body.get_submodule(self.pre_svd_path)

    @property
    def metalayer(self) -> ZCAWhitening | CovariancePooling:
        """The ZCA whitening (dbn) or covariance pooling (gcp) module."""
        return self.body.get_submodule(self.metalayer_path)  # type: ignore[return-value]

    def forward(self, x: Tensor) -> Tensor:
        """Logits of the backbone."""
        return self.body(x)


class ConvNet(nn.Module):
    """Small CPU convnet: stem conv (Pre-SVD) → norm → two conv blocks → pooling head → linear."""

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        width: int,
        stem_kernel: int,
        stem_norm: nn.Module,
        head: nn.Module | None,
        head_dim: int,
        pool_last: bool,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_channels, width, stem_kernel, padding=stem_kernel // 2, bias=False
        )
        self.bn1 = stem_norm
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.layer2 = nn.Sequential(
            nn.Conv2d(2 * width, 4 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(4 * width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2) if pool_last else nn.Identity(),
        )
        self.pool = (
            head if head is not None else nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        )
        self.fc = nn.Linear(head_dim, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        """Logits."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(self.pool(x))


def _zca(channels: int, method: str, precision: str, o: dict[str, Any]) -> ZCAWhitening:
    return ZCAWhitening(
        channels,
        method=method,
        precision=precision,
        groups=int(o["groups"]),
        eps=float(o["eps"]),
        momentum=float(o["momentum"]),
        opts=o["metalayer_opts"],
    )


def _gcp(channels: int, method: str, precision: str, o: dict[str, Any]) -> CovariancePooling:
    return CovariancePooling(
        channels,
        reduction_dim=int(o["reduction_dim"]),
        method=method,
        precision=precision,
        opts=o["metalayer_opts"],
    )


def _convnet(
    application: str,
    num_classes: int,
    in_channels: int,
    image_size: int,
    method: str,
    precision: str,
    o: dict[str, Any],
) -> SVDNet:
    """The CPU convnet (5×5 stem so its covariance can be full-rank; dbn or gcp)."""
    width = int(o["width"])
    if application == "dbn":
        stem_norm: nn.Module = _zca(width, method, precision, o)
        body = ConvNet(
            num_classes=num_classes,
            in_channels=in_channels,
            width=width,
            stem_kernel=int(o["stem_kernel"]),
            stem_norm=stem_norm,
            head=None,
            head_dim=4 * width,
            pool_last=True,
        )
        return SVDNet(
            body,
            pre_svd_path="conv1",
            metalayer_path="bn1",
            arch="convnet",
            application=application,
        )
    head = _gcp(4 * width, method, precision, o)
    body = ConvNet(
        num_classes=num_classes,
        in_channels=in_channels,
        width=width,
        stem_kernel=int(o["stem_kernel"]),
        stem_norm=nn.BatchNorm2d(width),
        head=head,
        head_dim=head.output_dim,
        pool_last=False,  # GCP keeps (H/2)·(W/2) positions for its covariance
    )
    return SVDNet(
        body,
        pre_svd_path="pool.conv",
        metalayer_path="pool",
        arch="convnet",
        application=application,
    )


def _stem_conv(in_channels: int, image_size: int) -> nn.Conv2d | None:
    """CIFAR stem for small images, or an ImageNet stem re-made for a non-RGB input."""
    if image_size <= SMALL_IMAGE_MAX:
        conv = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    elif in_channels != 3:
        conv = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    else:
        return None
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


def _resnet(factory: Callable[..., tvm.ResNet], arch: str) -> Callable[..., SVDNet]:
    def build(
        application: str,
        num_classes: int,
        in_channels: int,
        image_size: int,
        method: str,
        precision: str,
        o: dict[str, Any],
    ) -> SVDNet:
        """torchvision ResNet; dbn: ZCA replaces bn1; gcp: covariance pooling replaces avgpool."""
        net = factory(weights=None, num_classes=num_classes)
        stem = _stem_conv(in_channels, image_size)
        if stem is not None:
            net.conv1 = stem
        if image_size <= SMALL_IMAGE_MAX:
            net.maxpool = nn.Identity()
        if application == "dbn":
            net.bn1 = _zca(64, method, precision, o)
            return SVDNet(
                net, pre_svd_path="conv1", metalayer_path="bn1", arch=arch, application=application
            )
        if o["layer4_stride1"]:
            for m in net.layer4[0].modules():
                if isinstance(m, nn.Conv2d) and m.stride != (1, 1):
                    m.stride = (1, 1)
        head = _gcp(net.fc.in_features, method, precision, o)
        net.avgpool = head
        net.fc = nn.Linear(head.output_dim, num_classes)
        return SVDNet(
            net,
            pre_svd_path="avgpool.conv",
            metalayer_path="avgpool",
            arch=arch,
            application=application,
        )

    return build


def _alexnet(
    application: str,
    num_classes: int,
    in_channels: int,
    image_size: int,
    method: str,
    precision: str,
    o: dict[str, Any],
) -> SVDNet:
    """torchvision AlexNet features (BN after each conv, as the ICCV'21 code) as GCP backbone."""
    net = tvm.alexnet(weights=None, num_classes=num_classes)
    layers = list(net.features.children())
    if image_size <= SMALL_IMAGE_MAX or in_channels != 3:
        k, s, p = (3, 1, 1) if image_size <= SMALL_IMAGE_MAX else (11, 4, 2)
        layers[0] = nn.Conv2d(in_channels, layers[0].out_channels, k, stride=s, padding=p)
    if o["alexnet_bn"]:
        with_bn: list[nn.Module] = []
        for m in layers:
            with_bn.append(m)
            if isinstance(m, nn.Conv2d):
                with_bn.append(nn.BatchNorm2d(m.out_channels))
        layers = with_bn
    if application == "dbn":
        stem_out = layers[0].out_channels
        zca = _zca(stem_out, method, precision, o)
        if o["alexnet_bn"]:
            layers[1] = zca
        else:
            layers.insert(1, zca)
        net.features = nn.Sequential(*layers)
        return SVDNet(
            net,
            pre_svd_path="features.0",
            metalayer_path="features.1",
            arch="alexnet",
            application=application,
        )
    net.features = nn.Sequential(*layers[:-1])  # the last max-pool is dropped (as in MPN-COV)
    head = _gcp(256, method, precision, o)
    net.avgpool = head
    net.classifier = nn.Linear(head.output_dim, num_classes)
    return SVDNet(
        net,
        pre_svd_path="avgpool.conv",
        metalayer_path="avgpool",
        arch="alexnet",
        application=application,
    )


MODELS: dict[str, Callable[..., SVDNet]] = {
    "convnet": _convnet,
    "resnet18": _resnet(tvm.resnet18, "resnet18"),
    "resnet50": _resnet(tvm.resnet50, "resnet50"),
    "resnet101": _resnet(tvm.resnet101, "resnet101"),
    "alexnet": _alexnet,
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
