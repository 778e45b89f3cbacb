"""The one model shape every architecture shares: a backbone giving the last-stage map, then a linear head."""

from __future__ import annotations

from torch import Tensor, nn


class VideoClassifier(nn.Module):
    """``forward(x)`` returns ``(logits, features)``.

    ``x`` is ``(N, T, 3, H, W)``; ``features`` is the backbone's last-stage map before pooling,
    ``(N, T', C, h, w)`` with time kept. Pooling is the average over time and space, which for
    TSN is the average consensus over segments (the head is linear, so the two orders agree).
    """

    def __init__(
        self, backbone: nn.Module, num_classes: int, dropout: float = 0.5, min_resolution: int = 32
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(backbone.out_channels, num_classes)
        self.min_resolution = min_resolution
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    @property
    def feature_channels(self) -> int:
        return self.fc.in_features

    def head(self, features: Tensor) -> Tensor:
        """Clip logits from a feature map ``(N, T, C, h, w)``."""
        return self.fc(self.dropout(features.mean(dim=(1, 3, 4))))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.dim() != 5 or x.shape[2] != 3:
            raise ValueError(f"expected a clip batch of shape (N, T, 3, H, W), got {tuple(x.shape)}")
        if min(x.shape[-2:]) < self.min_resolution:
            raise ValueError(
                f"input {x.shape[-2]}x{x.shape[-1]} is too small for this network: "
                f"at least {self.min_resolution}px is needed for a last-stage map of 1x1"
            )
        features = self.backbone(x)
        return self.head(features), features
