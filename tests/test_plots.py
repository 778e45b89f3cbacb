"""The PNG plots of runs and summaries: written, readable, sized as drawn."""

from PIL import Image

from reskd_core.plots import plot_confusion_matrix, plot_learning_curves
from reskd_core.report import ResultRow, plot_accuracy_vs_gflops


def _png(path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_run_plots(tmp_path):
    cm = plot_confusion_matrix([[5, 1], [2, 4]], ["left", "right"], tmp_path / "cm.png")
    assert min(_png(cm)) > 100
    history = [
        {"epoch": e, "train_loss": 2.0 / e, "train_top1": 10.0 * e, "val_top1": 9.0 * e} for e in (1, 2, 3)
    ]
    curves = plot_learning_curves(history, tmp_path / "curves.png")
    assert min(_png(curves)) > 100


def test_accuracy_vs_gflops(tmp_path):
    rows = [
        ResultRow("teacher", "tsn_tiny", 112, "none", 80.0, 0.081),
        ResultRow("student", "tsn_tiny", 56, "none", 58.0, 0.021),
        ResultRow("student", "tsn_tiny", 56, "pixel_mse", 64.0, 0.021),
    ]
    path = plot_accuracy_vs_gflops(rows, tmp_path / "acc.png")
    assert _png(path) == (768, 528)  # 6.4 x 4.4 inches at 120 dpi
