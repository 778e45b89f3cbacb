"""Frame-wise 2D ResNets (TSN, TSM, R50-S) with torchvision's parameter names.

Keeping torchvision's names (``conv1``, ``layer1.0.conv2`` ...) means an ImageNet state dict from
torchvision loads without renaming; the changes the paper needs are arguments, not new modules:
``width`` (base channels), ``strides`` (R50-S uses (1, 1, 2, 2)) and ``shift_segments`` (TSM).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn


def temporal_shift(x: Tensor, segments: int, fold_div: int = 8) -> Tensor:
    """Shift 1/``fold_div`` of the channels one frame back and 1/``fold_div`` one frame forward (TSM).

    ``x`` is ``(N*T, C, H, W)``; frames shifted past either end are zero.
    """
    nt, c, h, w = x.shape
    if nt % segments:
        raise ValueError(f"temporal shift expects a multiple of {segments} frames, got a batch of {nt}")
    x = x.view(nt // segments, segments, c, h, w)
    fold = c // fold_div
    out = torch.zeros_like(x)
    out[:, :-1, :fold] = x[:, 1:, :fold]
    out[:, 1:, fold : 2 * fold] = x[:, :-1, fold : 2 * fold]
    out[:, :, 2 * fold :] = x[:, :, 2 * fold :]
    return out.view(nt, c, h, w)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        shift_segments: int = 0,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.shift_segments = shift_segments

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = temporal_shift(x, self.shift_segments) if self.shift_segments else x
        out = self.relu(self.bn1(self.conv1(out)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        shift_segments: int = 0,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.shift_segments = shift_segments

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        # TSM's residual shift: only the residual branch sees shifted frames.
        out = temporal_shift(x, self.shift_segments) if self.shift_segments else x
        out = self.relu(self.bn1(self.conv1(out)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet2d(nn.Module):
    """A 2D ResNet applied to every frame: ``(N, T, 3, H, W)`` -> last-stage map ``(N, T, C, h, w)``."""

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: Sequence[int],
        width: int = 64,
        strides: Sequence[int] = (1, 2, 2, 2),
        shift_segments: int = 0,
    ) -> None:
        super().__init__()
        if len(layers) != 4 or len(strides) != 4:
            raise ValueError("a ResNet has four stages: give four layer counts and four strides")
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        for i, (n, s) in enumerate(zip(layers, strides, strict=True)):
            stage = self._make_layer(block, width * 2**i, n, s, shift_segments)
            setattr(self, f"layer{i + 1}", stage)
        self.out_channels = width * 8 * block.expansion
        self.total_stride = 4 * math.prod(strides)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(
        self, block: type[BasicBlock | Bottleneck], planes: int, blocks: int, stride: int, shift_segments: int
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample, shift_segments)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, shift_segments=shift_segments) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        n, t = x.shape[:2]
        x = x.flatten(0, 1)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.view(n, t, *x.shape[1:])
