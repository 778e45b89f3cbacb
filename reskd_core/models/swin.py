"""Video Swin Transformer backbones from torchvision (``swin3d_t/s/b``) exposing the last-stage map."""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models.video import swin_transformer as tv_swin

# torchvision's published configurations, plus a tiny one for tests and the CPU demo.
SWIN_ARCHS: dict[str, dict] = {
    "t": dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], stochastic_depth_prob=0.1),
    "s": dict(embed_dim=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24], stochastic_depth_prob=0.1),
    "b": dict(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], stochastic_depth_prob=0.1),
    "tiny": dict(embed_dim=24, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8], stochastic_depth_prob=0.0),
}


class Swin3dBackbone(nn.Module):
    """torchvision's ``SwinTransformer3d`` without its pooling and head.

    ``(N, T, 3, H, W)`` -> ``(N, T/2, C, H/32, W/32)`` (patch 2x4x4, three patch merges).
    Attribute names follow torchvision, so its Kinetics state dicts load with the ``head.*`` keys dropped.
    """

    def __init__(self, arch: str) -> None:
        super().__init__()
        cfg = SWIN_ARCHS[arch]
        net = tv_swin.SwinTransformer3d(patch_size=[2, 4, 4], window_size=[8, 7, 7], **cfg)
        self.patch_embed, self.pos_drop, self.features, self.norm = (
            net.patch_embed,
            net.pos_drop,
            net.features,
            net.norm,
        )
        self.out_channels = net.num_features
        self.total_stride = 32

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x.transpose(1, 2))  # N, T', H', W', C
        x = self.norm(self.features(self.pos_drop(x)))
        return x.permute(0, 1, 4, 2, 3)
