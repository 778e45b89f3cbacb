"""The study's numbers: the records read back from MLflow, mean +- std over seeds, and paired
differences between two arms (same seed, same batches)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

from reskd_core.config import Config

# The MLflow metric every table reports: the model of the best epoch on 'val', evaluated on 'test'.
ACCURACY = "test_top1"
TRAIN_ACCURACY = "train_top1"  # the last epoch's running training accuracy
KD_SHARE = "train_kd_share"  # the last epoch's mean share of lambda * KD in the training loss


def accuracy_metric(cfg: Config, split: str) -> str:
    """The metric the tables report when results are on ``split``: :data:`ACCURACY` on the test split,
    ``best_val_top1`` when the shards have none (see :func:`reskd_core.evaluate.report_prefix`)."""
    from reskd_core.evaluate import report_prefix

    return report_prefix(cfg, split) + "top1"


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation of some values (std is NaN for fewer than two)."""

    mean: float
    std: float
    n: int
    values: tuple[float, ...] = field(default_factory=tuple)

    def fmt(self, digits: int = 1, signed: bool = False) -> str:
        """``mean ± std`` (``mean`` alone without a std, ``-`` without values)."""
        if self.n == 0:
            return "-"
        sign = "+" if signed else ""
        mean = f"{self.mean:{sign}.{digits}f}"
        return mean if math.isnan(self.std) else f"{mean} ± {self.std:.{digits}f}"


def mean_std(values: Iterable[float]) -> Stat:
    """Mean and sample std of ``values``."""
    vals = tuple(float(v) for v in values)
    if not vals:
        return Stat(math.nan, math.nan, 0)
    std = statistics.stdev(vals) if len(vals) > 1 else math.nan
    return Stat(statistics.fmean(vals), std, len(vals), vals)


@dataclass(frozen=True)
class Record:
    """One finished arm at one seed, as read back from its MLflow run."""

    arm: str
    seed: int
    accuracy: float
    metrics: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)


def by_arm(records: list[Record]) -> dict[str, dict[int, Record]]:
    """``{arm key: {seed: record}}``."""
    out: dict[str, dict[int, Record]] = {}
    for r in records:
        out.setdefault(r.arm, {})[r.seed] = r
    return out


def arm_stat(records: dict[str, dict[int, Record]], arm: str, metric: str | None = None) -> Stat:
    """Mean +- std over seeds of an arm's accuracy (or of another metric)."""
    runs = records.get(arm, {})
    return mean_std(
        r.accuracy if metric is None else r.metrics[metric]
        for r in runs.values()
        if metric is None or metric in r.metrics
    )


def paired_delta(records: dict[str, dict[int, Record]], arm: str, baseline: str) -> tuple[Stat, int]:
    """``arm - baseline`` per seed both finished (they saw the same batches): mean +- std, and the
    number of seeds where ``arm`` was strictly better."""
    a, b = records.get(arm, {}), records.get(baseline, {})
    diffs = [a[s].accuracy - b[s].accuracy for s in sorted(set(a) & set(b))]
    return mean_std(diffs), sum(d > 0 for d in diffs)
