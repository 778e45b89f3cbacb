"""The Findings of the results page: one bullet per comparison stated from the numbers (nothing is
hand-written per run), the caveats of the study's size, and which arms did not fit their training set."""

from __future__ import annotations

import math
from dataclasses import dataclass

from reskd_core.study.arms import Arm
from reskd_core.study.plan import Comparison
from reskd_core.study.stats import TRAIN_ACCURACY, Record, Stat, arm_stat, paired_delta

UNLEARNT_FACTOR = 3.0  # an arm whose final train top-1 stays under this many times chance "did not learn"


def unlearnt_arms(records: dict[str, dict[int, Record]], arms: list[str], num_classes: int) -> list[str]:
    """Arms (of ``arms``) whose mean final training accuracy stayed under ``UNLEARNT_FACTOR`` x chance:
    they did not fit their own training set, so their accuracy says more about optimisation than about
    the input they were given."""
    limit = UNLEARNT_FACTOR * 100.0 / num_classes
    out = []
    for arm in dict.fromkeys(arms):
        train = arm_stat(records, arm, TRAIN_ACCURACY)
        if train.n and train.mean < limit:
            out.append(arm)
    return out


def _verdict(d: Stat, wins: int) -> str:
    if d.n == 0:
        return "not measured"
    if d.n > 1 and wins == d.n:
        return f"better in all {d.n} seeds"
    if d.n > 1 and wins == 0:
        return f"worse or equal in all {d.n} seeds"
    return f"better in {wins} of {d.n} seeds"


def discussion(
    comparisons: list[Comparison],
    records: dict[str, dict[int, Record]],
    test_videos: int,
    num_classes: int | None = None,
    split: str = "test",
) -> list[str]:
    """Findings, one bullet per comparison, stated from the numbers (nothing here is hand-written per run).

    ``test_videos``: the size of ``split``, the one the accuracies are on. With ``num_classes``, a
    comparison holding arms that did not fit their training set (:func:`unlearnt_arms`) says so."""
    out = []
    video = 100.0 / test_videos if test_videos else math.nan
    for comp in comparisons:
        deltas = [
            (row, *paired_delta(records, row.arm, row.baseline))
            for row in comp.rows
            if row.baseline is not None
        ]
        deltas = [(row, d, w) for row, d, w in deltas if d.n]
        if not deltas:
            out.append(f"**{comp.title}**: no finished pair of arms.")
            continue
        parts = []
        for row, d, wins in deltas:
            base = next(r for r in comp.rows if r.arm == row.baseline)
            size = f"within one {split} video" if abs(d.mean) < video else f"{d.mean:+.1f} points"
            parts.append(f"{row.label} vs {base.label}: {size} ({_verdict(d, wins)})")
        text = f"**{comp.title}**: " + "; ".join(parts) + "."
        if comp.group == "diagnosis":
            worse = [row.label for row, d, w in deltas if d.mean < 0]
            better = [row.label for row, d, w in deltas if d.mean > 0]
            if better and not worse:
                text += " Keeping the scale helped: here the changed scale, not the lost detail, hurt more."
            elif worse and not better:
                text += (
                    " Keeping the scale did not help: here the lost detail hurt more than the changed scale."
                )
            else:
                text += " The two effects do not separate consistently here."
        if comp.group == "sweep":
            none_rows = [r for r in comp.rows if r.baseline is None]
            accs = [(r.label, arm_stat(records, r.arm)) for r in none_rows]
            accs = [(label, s) for label, s in accs if s.n]
            if len(accs) > 1:
                means = [s.mean for _, s in accs]
                falling = all(a >= b for a, b in zip(means, means[1:], strict=False))
                text += (
                    " Without KD, accuracy "
                    + ("falls monotonically" if falling else "does not fall monotonically")
                    + " with resolution ("
                    + ", ".join(f"{label.split(',')[0]}: {s.mean:.1f}" for label, s in accs)
                    + ")."
                )
        stuck = unlearnt_arms(records, [r.arm for r in comp.rows], num_classes) if num_classes else []
        if stuck:
            labels = {r.arm: r.label for r in comp.rows}
            names = "; ".join(labels[a] for a in stuck)
            one = len(stuck) == 1
            text += (
                f" Caution: {names} did not fit {'its training set' if one else 'their training sets'} "
                f"(final train top-1 under {UNLEARNT_FACTOR:g}x chance, see the table), so the differences "
                f"involving {'it' if one else 'them'} measure optimisation from scratch more than the "
                "question asked."
            )
        out.append(text)
    return out


def caveats(test_videos: int, train_videos: int, epochs: tuple[int, int], seeds: int, kd_helped: bool) -> str:
    """What the study's size allows to conclude (and, when ResKD did not help, the likely reasons)."""
    video = 100.0 / test_videos if test_videos else math.nan
    text = (
        f"These are tiny networks (a 4-block ResNet of width 16) trained from scratch for {epochs[1]} epochs "
        f"on {train_videos} generated videos and tested on {test_videos} (one video = {video:.1f} points), "
        f"{seeds} seed(s) per arm on a 2-core CPU. A difference smaller than a video or two, or one that "
        "does not hold in every seed, is noise at this size. The paper's networks are ResNet-50s and Swins "
        "trained on Kinetics-scale data with ImageNet initialisation; these numbers test whether the "
        "mechanisms show up on data built around the paper's premise, not the paper's figures."
    )
    if not kd_helped:
        text += (
            " **ResKD (pixel_mse) did not consistently beat the no-KD baseline at the low resolution here.** "
            "Likely reasons, none tested separately: the teacher is itself weak (see its accuracy above) and "
            "its feature maps carry little beyond the labels; networks trained from scratch learn these "
            "letters about as fast at low resolution as at high (the letter stays legible by design), so "
            "the baseline has little to gain from a teacher; and the schedule is short, where the paper "
            "distils for 100 epochs from a converged, ImageNet-initialised teacher."
        )
    return text


def reskd_helped(comparisons: list[Comparison], records: dict[str, dict[int, Record]]) -> bool:
    """Whether ResKD (pixel_mse from the high-resolution teacher) beat no KD at the low resolution in
    every seed (the KD-variants table's row; the sweep's rows when that table is not run)."""
    kd = [c for c in comparisons if c.group == "kd"] or [c for c in comparisons if c.group == "sweep"]
    rows = [r for c in kd for r in c.rows if r.baseline and r.label.endswith(("pixel_mse", "(pixel_mse)"))]
    for row in rows:
        d, wins = paired_delta(records, row.arm, row.baseline)
        if d.n and wins == d.n and d.mean > 0:
            return True
    return False


@dataclass(frozen=True)
class Targets:
    """What the demo data and recipe are meant to show, checked in every seed on the reported split:
    the teacher learns the data, and ResKD beats no KD by a margin at half and at a quarter of the
    teacher's resolution (the latter with the (1, 1, 2, 2)-stride student)."""

    teacher_min: float = 85.0
    half_gain: float = 5.0
    quarter_gain: float = 10.0


def _pair(arms: list[Arm], model: str, resolution: int, teacher: str) -> tuple[str, str] | None:
    """``(pixel_mse arm, its no-KD baseline)`` of ``model`` at ``resolution`` from ``teacher``."""
    keys = {a.key for a in arms}
    kd = Arm(model, resolution, kd="pixel_mse", teacher=teacher).key
    base = Arm(model, resolution).key
    return (kd, base) if {kd, base} <= keys else None


def target_lines(
    arms: list[Arm], records: dict[str, dict[int, Record]], stride_model: str, targets: Targets = Targets()
) -> list[str]:
    """One line a target: met or missed, with the per-seed numbers it was judged on."""
    teacher = next((a for a in arms if a.role == "teacher"), None)
    if teacher is None:
        return []

    def seeds(values: list[float], fmt: str) -> str:
        return ", ".join(format(v, fmt) for v in values) or "no finished seed"

    runs = records.get(teacher.key, {})
    accs = [runs[s].accuracy for s in sorted(runs)]  # in seed order, as the pairs below
    met = bool(accs) and min(accs) >= targets.teacher_min
    out = [
        f"teacher `{teacher.key}` at least {targets.teacher_min:g} % in every seed: "
        f"**{'met' if met else 'missed'}** ({seeds(accs, '.1f')})"
    ]
    half = teacher.resolution // 2
    quarter = sorted(a.resolution for a in arms if a.model == stride_model and a.kd == "pixel_mse")
    checks = [
        (
            f"at half the teacher's resolution ({half} px)",
            _pair(arms, teacher.model, half, teacher.key),
            targets.half_gain,
        ),
        (
            f"at about a quarter ({quarter[0]} px) with `{stride_model}`" if quarter else "at a quarter",
            _pair(arms, stride_model, quarter[0], teacher.key) if quarter else None,
            targets.quarter_gain,
        ),
    ]
    for where, pair, gain in checks:
        if pair is None:
            out.append(f"pixel_mse at least no KD + {gain:g} points {where}: not run")
            continue
        diffs = list(paired_delta(records, *pair)[0].values)
        met = bool(diffs) and min(diffs) >= gain
        out.append(
            f"pixel_mse at least no KD + {gain:g} points {where}, every seed: "
            f"**{'met' if met else 'missed'}** ({seeds(diffs, '+.1f')})"
        )
    return out
