import numpy as np
import pytest

from reskd_core.evaluate import average_precision, compute_metrics, confusion_matrix, mean_average_precision


def test_map_on_a_hand_checked_example():
    scores = np.array([[0.9, 0.2], [0.8, 0.7], [0.3, 0.6], [0.1, 0.4]])
    targets = np.array([[1, 1], [0, 0], [1, 0], [0, 1]])
    # class 0 ranking 0.9(+) 0.8(-) 0.3(+) 0.1(-): precision at the hits 1/1 and 2/3 -> AP = 5/6
    # class 1 ranking 0.7(-) 0.6(-) 0.4(+) 0.2(+): precision at the hits 1/3 and 2/4 -> AP = 5/12
    assert average_precision(scores[:, 0], targets[:, 0]) == pytest.approx(5 / 6)
    assert average_precision(scores[:, 1], targets[:, 1]) == pytest.approx(5 / 12)
    assert mean_average_precision(scores, targets) == pytest.approx((5 / 6 + 5 / 12) / 2)  # 0.625


def test_map_skips_classes_without_positives_and_handles_ties():
    scores = np.array([[0.5, 0.9, 0.1], [0.5, 0.1, 0.2], [0.5, 0.3, 0.3], [0.5, 0.2, 0.4]])
    targets = np.array([[1, 1, 0], [0, 0, 0], [1, 0, 0], [0, 0, 0]])
    # class 0: all scores tied -> one threshold, AP = its precision 2/4; class 1: AP 1; class 2: no positive
    assert average_precision(scores[:, 0], targets[:, 0]) == pytest.approx(0.5)
    assert np.isnan(average_precision(scores[:, 2], targets[:, 2]))
    assert mean_average_precision(scores, targets) == pytest.approx(0.75)
    perfect = mean_average_precision(np.eye(3), np.eye(3))
    assert perfect == pytest.approx(1.0)


def test_map_rejects_bad_shapes_and_empty_labels():
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        mean_average_precision(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="no class has a positive"):
        mean_average_precision(np.zeros((3, 2)), np.zeros((3, 2)))


def test_single_label_metrics():
    scores = np.array(
        [
            [0.7, 0.2, 0.1, 0.0, 0.0, 0.0],  # true 0: top-1 hit
            [0.6, 0.3, 0.1, 0.0, 0.0, 0.0],  # true 1: second -> top-5 hit only
            [0.1, 0.1, 0.0, 0.2, 0.3, 0.25],  # true 2: sixth -> miss for both
            [0.0, 0.1, 0.0, 0.9, 0.0, 0.0],  # true 3: hit
        ]
    )
    labels = np.array([0, 1, 2, 3])
    m = compute_metrics(scores, labels, multi_label=False)
    assert m["top1"] == pytest.approx(50.0) and m["top5"] == pytest.approx(75.0) and m["n"] == 4
    assert m["confusion"][1][0] == 1 and m["confusion"][2][4] == 1 and m["confusion"][3][3] == 1
    assert m["per_class_acc"][:4] == [100.0, 0.0, 0.0, 100.0]
    assert np.isnan(m["per_class_acc"][5])  # absent class
    assert m["mean_class_acc"] == pytest.approx(50.0)


def test_multi_label_metrics_in_percent():
    scores = np.array([[0.9, 0.2], [0.8, 0.7], [0.3, 0.6], [0.1, 0.4]])
    targets = np.array([[1, 1], [0, 0], [1, 0], [0, 1]], dtype=np.float32)
    m = compute_metrics(scores, targets, multi_label=True)
    assert m["mAP"] == pytest.approx(62.5)
    assert m["per_class_ap"] == pytest.approx([100 * 5 / 6, 100 * 5 / 12])
    assert m["top1"] == pytest.approx(50.0)  # rows 0 and 3 have their top class among their labels


def test_confusion_matrix_counts():
    cm = confusion_matrix(np.array([0, 1, 1, 2]), np.array([0, 0, 1, 2]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
