"""Which split results are reported on, and the pipeline's summary table that says so."""

import logging

from reskd_core.config import load_config
from reskd_core.evaluate import report_prefix, report_split
from reskd_core.report import ResultRow, markdown_table, summarize
from reskd_core.study.stats import ACCURACY, accuracy_metric


def test_results_are_reported_on_the_test_split_when_the_shards_have_one(caplog):
    cfg = load_config(None, [])
    with caplog.at_level(logging.WARNING, logger="reskd_core.evaluate"):
        assert report_split(cfg, {"train": 16, "val": 8, "test": 8}) == "test"
    assert not caplog.records
    assert report_prefix(cfg, "test") == "test_" and accuracy_metric(cfg, "test") == ACCURACY == "test_top1"
    renamed = load_config(None, ["data.test_split=holdout", "data.val_split=dev"])
    assert report_split(renamed, ["train", "dev", "holdout", "test"]) == "holdout"


def test_without_a_test_split_results_fall_back_to_val_with_a_warning(caplog):
    cfg = load_config(None, [])
    with caplog.at_level(logging.WARNING, logger="reskd_core.evaluate"):
        assert report_split(cfg, ["train", "val"]) == "val"
    [record] = caplog.records
    assert "no split 'test'" in record.getMessage() and "train, val" in record.getMessage()
    # the best epoch's model on the split that chose it: what training logs as best_val_*
    assert report_prefix(cfg, "val") == "best_val_" and accuracy_metric(cfg, "val") == "best_val_top1"


def _rows(split: str) -> list[ResultRow]:
    return [
        ResultRow("teacher", "tsn_tiny", 64, "none", 80.0, 0.08, split=split),
        ResultRow("student", "tsn_tiny", 32, "pixel_mse", 60.0, 0.02, split=split),
    ]


def test_the_summary_table_names_the_split_its_accuracy_is_on():
    table = markdown_table(summarize(_rows("test")), "top-1", "val")
    assert "| test top-1 (%) |" in table.splitlines()[0]
    assert "| tsn_tiny | student | 32 | pixel_mse | 60.00 |" in table
    assert "epoch chosen on validation) on test" in table and "optimistic" not in table
    fallback = markdown_table(summarize(_rows("val")), "top-1", "val")
    assert "| val top-1 (%) |" in fallback.splitlines()[0]
    assert "no test split" in fallback and "optimistic" in fallback
    # rows that do not record their split (older results) keep the plain header
    assert "| top-1 (%) |" in markdown_table(summarize(_rows("")), "top-1", "val").splitlines()[0]
