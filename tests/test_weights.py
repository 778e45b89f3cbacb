import pytest
import torch
import torchvision

from reskd_core.models import build_model
from reskd_core.models.weights import load_pretrained


def test_torchvision_imagenet_resnet50_loads_into_tsn(tmp_path):
    ref = torchvision.models.resnet50(weights=None, num_classes=1000)
    path = tmp_path / "r50.pth"
    torch.save(ref.state_dict(), path)
    model = build_model("tsn_r50", num_classes=7)
    load_pretrained(model, path)
    assert torch.equal(model.backbone.layer3[2].conv2.weight, ref.layer3[2].conv2.weight)
    assert model.fc.out_features == 7  # the head stays the task's own


def test_slowonly_inflates_2d_weights(tmp_path):
    ref = torchvision.models.resnet50(weights=None)
    path = tmp_path / "r50.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}, path)
    model = build_model("slowonly_r50", num_classes=5)
    load_pretrained(model, path)
    w3 = model.backbone.layer4[0].conv1.weight  # 3x1x1 temporal kernel
    assert w3.shape[2] == 3
    assert torch.allclose(w3.sum(2), ref.layer4[0].conv1.weight, atol=1e-6)
    # inflation keeps the response to a static clip: every time step equals the 2D conv's output
    assert torch.equal(model.backbone.conv1.weight[:, :, 0], ref.conv1.weight)


def test_torchvision_swin3d_state_dict_loads(tmp_path):
    ref = torchvision.models.video.swin3d_t(weights=None)
    path = tmp_path / "swin.pth"
    torch.save(ref.state_dict(), path)
    model = build_model("swin3d_t", num_classes=3)
    load_pretrained(model, path)
    assert torch.equal(model.backbone.patch_embed.proj.weight, ref.patch_embed.proj.weight)


def test_weights_with_wrong_keys_name_the_problem(tmp_path):
    path = tmp_path / "wrong.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    model = build_model("tsn_r50", num_classes=3)
    with pytest.raises(ValueError, match=r"wrong.pth does not fit.*missing keys.*conv3"):
        load_pretrained(model, path)


def test_not_a_state_dict_and_missing_file(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(b"not a pickle")
    model = build_model("tsn_tiny", num_classes=3)
    with pytest.raises(ValueError, match="junk.pth could not be read"):
        load_pretrained(model, path)
    with pytest.raises(ValueError, match="does not exist"):
        load_pretrained(model, tmp_path / "none.pth")
