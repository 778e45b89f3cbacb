"""SlowOnly: a 3D ResNet inflated from the 2D one (Feichtenhofer et al., SlowFast, 2019).

Temporal kernels (3x1x1, in the first conv of each bottleneck) only in res4 and res5, no temporal
stride anywhere, stem kernel 1x7x7. Parameter names match torchvision's 2D ResNet so an ImageNet
state dict inflates by name (see :func:`reskd_core.models.weights.inflate_state_dict`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn


class Bottleneck3d(nn.Module):
    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        temporal_kernel: int = 1,
    ) -> None:
        super().__init__()
        kt = temporal_kernel
        self.conv1 = nn.Conv3d(inplanes, planes, (kt, 1, 1), padding=(kt // 2, 0, 0), bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet3dSlowOnly(nn.Module):
    """``(N, T, 3, H, W)`` -> last-stage map ``(N, T, C, h, w)`` (time kept: no temporal stride)."""

    def __init__(
        self,
        layers: Sequence[int] = (3, 4, 6, 3),
        width: int = 64,
        strides: Sequence[int] = (1, 2, 2, 2),
        inflate: Sequence[bool] = (False, False, True, True),
    ) -> None:
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv3d(3, width, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))
        for i, (n, s, inf) in enumerate(zip(layers, strides, inflate, strict=True)):
            setattr(self, f"layer{i + 1}", self._make_layer(width * 2**i, n, s, 3 if inf else 1))
        self.out_channels = width * 8 * Bottleneck3d.expansion
        self.total_stride = 4 * math.prod(strides)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, planes: int, blocks: int, stride: int, kt: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(
                nn.Conv3d(self.inplanes, planes * 4, 1, (1, stride, stride), bias=False),
                nn.BatchNorm3d(planes * 4),
            )
        layers = [Bottleneck3d(self.inplanes, planes, stride, downsample, kt)]
        self.inplanes = planes * 4
        layers += [Bottleneck3d(self.inplanes, planes, temporal_kernel=kt) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = x.transpose(1, 2)  # N, 3, T, H, W
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.transpose(1, 2)
