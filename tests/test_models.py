import pytest
import torch

from reskd_core.models import MODELS, build_model

FULL = [n for n in MODELS if "tiny" not in n]
TINY = [n for n in MODELS if "tiny" in n]


def expected_map(name: str, res: int) -> int:
    stride = 16 if name in ("tsn_r50s", "tsn_tiny_s") else 32
    return -(-res // stride)  # ceil: every stage pads


@pytest.mark.parametrize("res", [224, 112, 56])
@pytest.mark.parametrize("name", FULL)
def test_full_size_shapes_on_meta(name, res):
    # meta tensors run the real forward code, propagating shapes without arithmetic
    with torch.device("meta"):
        model = build_model(name, num_classes=7, num_frames=8)
        logits, feats = model(torch.zeros(2, 8, 3, res, res))
    t = 4 if name.startswith("swin") else 8
    assert logits.shape == (2, 7)
    assert feats.shape == (2, t, model.feature_channels, expected_map(name, res), expected_map(name, res))


@pytest.mark.parametrize("res", [224, 112, 56])
@pytest.mark.parametrize("name", TINY)
def test_tiny_shapes_and_values(name, res):
    model = build_model(name, num_classes=5, num_frames=4).eval()
    with torch.no_grad():
        logits, feats = model(torch.randn(2, 4, 3, res, res))
    t = 2 if name.startswith("swin") else 4
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    assert feats.shape[:3] == (2, t, model.feature_channels)
    assert feats.shape[-1] == expected_map(name, res)
    # the head is the average over the map followed by the classifier (TSN average consensus)
    assert torch.allclose(model.head(feats), logits, atol=1e-5)


def test_unknown_model_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown model 'resnet9000'.*tsn_r50"):
        build_model("resnet9000", num_classes=3)


def test_resolution_too_small_is_a_clear_error():
    model = build_model("tsn_tiny", num_classes=3)
    with pytest.raises(ValueError, match="too small.*at least 32px"):
        model(torch.randn(1, 2, 3, 24, 24))


def test_wrong_clip_layout_is_a_clear_error():
    model = build_model("tsn_tiny", num_classes=3)
    with pytest.raises(ValueError, match=r"\(N, T, 3, H, W\)"):
        model(torch.randn(1, 3, 2, 64, 64))


def test_width_option_only_for_resnets():
    assert build_model("tsn_tiny", num_classes=3, width=32).feature_channels == 256
    with pytest.raises(ValueError, match="no width option"):
        build_model("swin3d_tiny", num_classes=3, width=32)


def test_tsm_shifts_information_across_frames():
    torch.manual_seed(0)
    tsn = build_model("tsn_tiny", num_classes=3, num_frames=4).eval()
    tsm = build_model("tsm_tiny", num_classes=3, num_frames=4).eval()
    tsm.load_state_dict(tsn.state_dict())  # same weights, only the shift differs
    x = torch.randn(1, 4, 3, 64, 64)
    y = x.clone()
    y[:, 3] += 1.0  # change the last frame only
    with torch.no_grad():
        f_tsn = tsn(y)[1] - tsn(x)[1]
        f_tsm = tsm(y)[1] - tsm(x)[1]
    assert f_tsn[:, :3].abs().max() == 0  # TSN frames are independent
    assert f_tsm[:, 2].abs().max() > 0  # TSM: frame 2 sees frame 3 through the shift
