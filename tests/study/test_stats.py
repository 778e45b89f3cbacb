"""Mean +- std over seeds and paired differences (reskd_core.study.stats)."""

import math
import random
import statistics

from reskd_core.study.stats import Record, arm_stat, by_arm, mean_std, paired_delta


def test_mean_std_is_the_sample_statistic():
    rng = random.Random(3)
    values = [rng.uniform(20, 90) for _ in range(5)]
    s = mean_std(values)
    assert s.n == 5
    assert math.isclose(s.mean, statistics.fmean(values))
    assert math.isclose(s.std, statistics.stdev(values))
    assert s.fmt(1) == f"{statistics.fmean(values):.1f} ± {statistics.stdev(values):.1f}"
    one = mean_std([values[0]])
    assert one.n == 1 and math.isnan(one.std) and one.fmt(2) == f"{values[0]:.2f}"
    assert mean_std([]).fmt() == "-"
    assert mean_std([-1.25, -0.75]).fmt(1, signed=True).startswith("-1.0 ±")


def test_paired_delta_uses_the_seeds_both_arms_finished():
    acc = {("a", 0): 50.0, ("a", 1): 60.0, ("a", 2): 55.0, ("b", 0): 45.0, ("b", 1): 62.0}
    recs = by_arm([Record(arm, seed, v) for (arm, seed), v in acc.items()])
    d, wins = paired_delta(recs, "a", "b")
    assert d.n == 2 and wins == 1
    assert math.isclose(d.mean, ((50 - 45) + (60 - 62)) / 2)
    assert math.isclose(d.std, statistics.stdev([5.0, -2.0]))
    assert arm_stat(recs, "a").n == 3 and arm_stat(recs, "missing").n == 0
