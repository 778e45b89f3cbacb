import pytest
import torch
from torch import nn

from reskd_core.flops import count_gflops, flops_table
from reskd_core.models import build_model


def test_resnet50_at_224_is_about_4_1_gflops_a_frame():
    (row,) = flops_table("tsn_r50", frames=1, resolutions=[224], num_classes=1000)
    assert abs(row.gflops - 4.1) / 4.1 < 0.02


def _out(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


def resnet50_by_hand(res: int, num_classes: int = 1000) -> tuple[int, int]:
    """``(multiply-adds, BatchNorm elements)`` of torchvision's ResNet-50 (v1.5: the stride on the 3x3
    conv) on one ``res`` px frame, from the layer shapes alone: a conv costs ``h*w*c_out*k*k*c_in``, its
    BatchNorm normalises the conv's ``h*w*c_out`` outputs; the classifier ``2048*num_classes``."""
    macs = bn = 0

    def conv(h: int, c_in: int, c_out: int, k: int, s: int, p: int) -> int:
        nonlocal macs, bn
        o = _out(h, k, s, p)
        macs += o * o * c_out * k * k * c_in
        bn += o * o * c_out
        return o

    h = _out(conv(res, 3, 64, 7, 2, 3), 3, 2, 1)  # stem, then the 3x3/2 max pool
    c_in = 64
    for planes, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for b in range(blocks):
            s = stride if b == 0 else 1
            if b == 0:
                conv(h, c_in, planes * 4, 1, s, 0)  # the projection shortcut
            mid = conv(conv(h, c_in, planes, 1, 1, 0), planes, planes, 3, s, 1)
            conv(mid, planes, planes * 4, 1, 1, 0)
            h, c_in = mid, planes * 4
    return macs + 2048 * num_classes, bn


@pytest.mark.parametrize("res", [224, 112, 72])
def test_both_conventions_match_resnet50_layer_sums_by_hand(res):
    with torch.device("meta"):
        net = build_model("tsn_r50", num_classes=1000)
    macs, bn = resnet50_by_hand(res)
    assert count_gflops(net, 1, res) * 1e9 == pytest.approx(macs, rel=1e-12)
    # fvcore: BatchNorm at inference is x * a + b, 2 FLOPs per element of its input
    assert count_gflops(net, 1, res, "fvcore") * 1e9 == pytest.approx(macs + 2 * bn, rel=1e-12)


def test_resnet50_at_224_reads_4_089_as_macs_and_4_111_as_fvcore():
    macs, fvcore = (flops_table("tsn_r50", 1, [224], 1000, convention=c)[0] for c in ("macs", "fvcore"))
    assert (macs.gflops, fvcore.gflops) == (4.089, 4.111)
    assert (macs.convention, fvcore.convention) == ("macs", "fvcore")


def test_fvcore_counts_layer_norm_at_5_per_element():
    """Swin's LayerNorms (fvcore: 5 per element with an affine scale); the counted difference to the
    multiply-adds is checked against the LayerNorm inputs of a real forward pass."""
    model = build_model("swin3d_tiny", num_classes=10).eval()
    seen = 0

    def hook(_m, inp, _out):
        nonlocal seen
        seen += inp[0].numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.LayerNorm)]
    with torch.no_grad():
        model(torch.zeros(1, 4, 3, 64, 64))
    for h in handles:
        h.remove()
    assert seen > 0
    extra = (count_gflops(model, 4, 64, "fvcore") - count_gflops(model, 4, 64)) * 1e9
    assert extra == pytest.approx(5 * seen, rel=1e-9)


def test_unknown_convention_is_refused():
    with pytest.raises(ValueError, match="convention"):
        flops_table("tsn_tiny", 2, [64], convention="ptflops")


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
