import onnx

from reskd_core.checkpoint import build_state, save_checkpoint
from reskd_core.config import load_config
from reskd_core.export import export_checkpoint
from reskd_core.models import build_model


def test_export_checkpoint_to_onnx_and_torchscript_matches_pytorch(tmp_path):
    cfg = load_config(None, ["student.name=tsn_tiny", "student.resolution=32", "data.num_segments=2"])
    model = build_model("tsn_tiny", num_classes=5, num_frames=2)
    path = save_checkpoint(
        build_state(role="student", model=model, config=cfg, epoch=1, num_classes=5), str(tmp_path / "ck")
    )
    report = export_checkpoint(path, tmp_path / "out", batch=3)
    assert report.ok and report.resolution == 32 and report.frames == 2
    assert report.onnx_max_abs_diff <= 1e-4 and report.torchscript_max_abs_diff <= 1e-4
    graph = onnx.load(report.onnx).graph
    assert graph.input[0].name == "clip" and graph.output[0].name == "logits"
    dims = graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [2, 3, 32, 32]  # dynamic batch
    assert (tmp_path / "out" / "student_32px.pt").exists()
