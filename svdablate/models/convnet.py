"""The small CPU convnet: stem conv (Pre-SVD) → norm → two conv blocks → pooling head → linear."""

from __future__ import annotations

from torch import Tensor, nn

from svdablate.models.svdnet import ModelRequest, SVDNet

__all__ = ["ConvNet", "build_convnet"]


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


def build_convnet(request: ModelRequest) -> SVDNet:
    """The CPU convnet (5×5 stem so its covariance can be full-rank; dbn or gcp)."""
    options, num_classes, in_channels = request.options, request.num_classes, request.in_channels
    width = options.width
    if request.application == "dbn":
        stem_norm: nn.Module = request.zca(width)
        body = ConvNet(
            num_classes=num_classes,
            in_channels=in_channels,
            width=width,
            stem_kernel=options.stem_kernel,
            stem_norm=stem_norm,
            head=None,
            head_dim=4 * width,
            pool_last=True,
        )
        return SVDNet(
            body,
            pre_svd_path="conv1",
            metalayer_path="bn1",
            classifier_path="fc",
        )
    head = request.gcp(4 * width)
    body = ConvNet(
        num_classes=num_classes,
        in_channels=in_channels,
        width=width,
        stem_kernel=options.stem_kernel,
        stem_norm=nn.BatchNorm2d(width),
        head=head,
        head_dim=head.output_dim,
        pool_last=False,  # GCP keeps (H/2)·(W/2) positions for its covariance
    )
    return SVDNet(
        body,
        pre_svd_path="pool.conv",
        metalayer_path="pool",
        classifier_path="fc",
    )
