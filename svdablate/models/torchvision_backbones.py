"""torchvision backbones with a meta-layer: ResNet-18/50/101 and AlexNet (both papers' networks).

dbn: ZCA whitening replaces the stem's BN; gcp: covariance pooling replaces the average pool (the
1×1 reduction conv of the head is the Pre-SVD layer). Images up to ``SMALL_IMAGE_MAX`` pixels get
the CIFAR stem (3×3 stride-1 conv, no max-pool).

GCP AlexNet is the ICCV'21 official one (``model_init.py`` on ``src/network/alexnet.py``): BN after
each conv, the last max-pool dropped, and the classifier d(d+1)/2 → 4096 → ReLU → 4096 → ReLU →
classes with no dropout (the official AlexNet comments its two ``nn.Dropout()`` out): 158.2M
parameters at 1000 classes, of which the classifier is 155.6M. Every layer keeps torch's default
initialisation, as the official model does (its ``weight_init`` is never called).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from svdablate.models.svdnet import ModelRequest, SVDNet

__all__ = [
    "ALEXNET_HIDDEN",
    "SMALL_IMAGE_MAX",
    "build_alexnet",
    "gcp_alexnet_classifier",
    "resnet_builder",
]

SMALL_IMAGE_MAX = 64  # images up to this size get the CIFAR stem (3×3 stride-1 conv, no max-pool)
ALEXNET_HIDDEN = 4096  # the official GCP AlexNet's two hidden fully connected layers


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


def _torchvision_model(name: str, num_classes: int) -> nn.Module:
    """torchvision's ``name`` network, untrained (torchvision is imported on first use: a
    process that only validates configs or trains the convnet never pays for it)."""
    from torchvision import models

    return getattr(models, name)(weights=None, num_classes=num_classes)


def resnet_builder(arch: str) -> Callable[..., SVDNet]:
    """A builder for torchvision's ResNet ``arch`` (resnet18, resnet50, resnet101)."""

    def build(request: ModelRequest) -> SVDNet:
        """torchvision ResNet; dbn: ZCA replaces bn1; gcp: covariance pooling replaces avgpool."""
        net = _torchvision_model(arch, request.num_classes)
        stem = _stem_conv(request.in_channels, request.image_size)
        if stem is not None:
            net.conv1 = stem
        if request.image_size <= SMALL_IMAGE_MAX:
            net.maxpool = nn.Identity()
        if request.application == "dbn":
            net.bn1 = request.zca(64)
            return SVDNet(net, pre_svd_path="conv1", metalayer_path="bn1", classifier_path="fc")
        if request.options.layer4_stride1:
            for m in net.layer4[0].modules():
                if isinstance(m, nn.Conv2d) and m.stride != (1, 1):
                    m.stride = (1, 1)
        head = request.gcp(net.fc.in_features)
        net.avgpool = head
        net.fc = nn.Linear(head.output_dim, request.num_classes)
        return SVDNet(
            net, pre_svd_path="avgpool.conv", metalayer_path="avgpool", classifier_path="fc"
        )

    return build


def gcp_alexnet_classifier(in_features: int, num_classes: int) -> nn.Sequential:
    """The ICCV'21 GCP AlexNet's classifier (official ``model_init.py`` replaces the first and last
    Linear of its AlexNet's classifier, whose two dropouts are commented out): no dropout."""
    return nn.Sequential(
        nn.Linear(in_features, ALEXNET_HIDDEN),
        nn.ReLU(inplace=True),
        nn.Linear(ALEXNET_HIDDEN, ALEXNET_HIDDEN),
        nn.ReLU(inplace=True),
        nn.Linear(ALEXNET_HIDDEN, num_classes),
    )


def build_alexnet(request: ModelRequest) -> SVDNet:
    """torchvision AlexNet features (BN after each conv, as the ICCV'21 code); gcp: the ICCV'21
    GCP AlexNet (module docstring); dbn: ZCA after the stem conv, torchvision's classifier."""
    options, in_channels, image_size = request.options, request.in_channels, request.image_size
    net = _torchvision_model("alexnet", request.num_classes)
    layers = list(net.features.children())
    if image_size <= SMALL_IMAGE_MAX or in_channels != 3:
        k, s, p = (3, 1, 1) if image_size <= SMALL_IMAGE_MAX else (11, 4, 2)
        layers[0] = nn.Conv2d(in_channels, layers[0].out_channels, k, stride=s, padding=p)
    if options.alexnet_bn:
        with_bn: list[nn.Module] = []
        for m in layers:
            with_bn.append(m)
            if isinstance(m, nn.Conv2d):
                with_bn.append(nn.BatchNorm2d(m.out_channels))
        layers = with_bn
    if request.application == "dbn":
        zca = request.zca(layers[0].out_channels)
        if options.alexnet_bn:
            layers[1] = zca
        else:
            layers.insert(1, zca)
        net.features = nn.Sequential(*layers)
        return SVDNet(
            net,
            pre_svd_path="features.0",
            metalayer_path="features.1",
            classifier_path="classifier",
        )
    net.features = nn.Sequential(*layers[:-1])  # the last max-pool is dropped (as in MPN-COV)
    head = request.gcp(256)
    net.avgpool = head
    net.classifier = gcp_alexnet_classifier(head.output_dim, request.num_classes)
    return SVDNet(
        net, pre_svd_path="avgpool.conv", metalayer_path="avgpool", classifier_path="classifier"
    )
