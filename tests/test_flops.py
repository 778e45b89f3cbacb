import pytest
import torch
from torch import nn

from reskd_core.flops import count_gflops, flops_table
from reskd_core.models import build_model


def test_resnet50_at_224_is_about_4_1_gflops_a_frame():
    (row,) = flops_table("tsn_r50", frames=1, resolutions=[224], num_classes=1000)
    assert abs(row.gflops - 4.1) / 4.1 < 0.02


def test_gflops_scale_with_frames():
    one, sixteen = flops_table("tsn_r50", 1, [112])[0], flops_table("tsn_r50", 16, [112])[0]
    # frames cost alike; the classifier runs once per video and rows are rounded to 1e-3
    assert sixteen.gflops == pytest.approx(16 * one.gflops, rel=2e-3)


def conv_arithmetic_gmacs(model: nn.Module, frames: int, res: int) -> float:
    """Independent count: multiply-adds from each conv/linear layer's real output shape."""
    total = 0

    def hook(m, _inp, out):
        nonlocal total
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
            total += out.numel() * k
        elif isinstance(m, nn.Linear):
            total += out.numel() * m.in_features

    handles = [
        m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    with torch.no_grad():
        model.eval()(torch.zeros(1, frames, 3, res, res))
    for h in handles:
        h.remove()
    return total / 1e9


@pytest.mark.parametrize("name", ["tsn_tiny", "tsn_tiny_s"])
def test_gflops_follow_the_conv_arithmetic_not_a_square_law(name):
    model = build_model(name, num_classes=10)
    counted = {r: count_gflops(model, 2, r) for r in (224, 112, 72, 56)}
    for r, g in counted.items():
        assert g == pytest.approx(conv_arithmetic_gmacs(model, 2, r), rel=1e-6)
    # feature maps round up (e.g. 72px -> 3x3 at stride 32, not 2.25x2.25), so the ratio is not (224/72)^2
    assert counted[224] / counted[72] < (224 / 72) ** 2 * 0.97
    assert counted[224] > counted[112] > counted[72] > counted[56]


def test_resnet50_gflops_fall_with_resolution():
    rows = flops_table("tsn_r50", 16, [224, 144, 112, 96, 72, 56])
    values = [r.gflops for r in rows]
    assert values == sorted(values, reverse=True)
    assert 3.5 < values[0] / values[2] < 4.0  # 112px keeps a 4x4 map (3.5 would round up)
