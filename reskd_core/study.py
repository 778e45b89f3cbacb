"""The ablation study's pure parts: its arms (one training job each), the comparisons they answer,
training one arm on batches shared by every arm of a seed, and mean +- std over seeds.

An arm is one model trained one way (architecture, width, resolution, input mode, KD method and teacher).
Comparisons name arms, and one arm can serve several of them (the no-KD student at the low resolution
is the baseline of the sweep, the KD variants, the BN and the model-vs-resolution comparisons), so each
arm is trained once per seed. Every arm of a seed sees exactly the same clips in the same order: the
loader is deterministic in ``(seed, epoch)``, so its batches are made once per epoch and replayed
(:class:`EpochBatches`), which makes the comparisons paired and saves decoding them again per arm.
"""

from __future__ import annotations

import inspect
import logging
import math
import statistics
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from reskd_core.config import Config, ModelConfig
from reskd_core.losses import kd_weight

log = logging.getLogger(__name__)

GROUPS = (
    "diagnosis",
    "strides",
    "sweep",
    "kd",
    "kd_weight",
    "model_vs_resolution",
    "teacher_bn",
    "super_low",
)
# The MLflow metric every table reports: the model of the best epoch on 'val', evaluated on 'test'.
ACCURACY = "test_top1"

# `--quick` (the test suite's smoke run): a tiny dataset of its own, one epoch, two seeds (so there is a
# std), fewer resolutions; every comparison still runs. User overrides are applied after these.
QUICK_OVERRIDES = [
    "name=study_quick",
    "demo.root=demo/study-quick/data",
    "demo.videos_per_class=3",
    "demo.frames=8",
    "extract.workers=1",
    "resources.cpus_per_worker=1",  # the suite shares 2 cores: one torch thread spins less
    "data.num_segments=2",
    "data.batch_size=8",
    "schedule.teacher_epochs=1",
    "schedule.student_epochs=1",
    "schedule.warmup_epochs=0",
    "study.seeds=2",
    "study.resolutions=[56,32]",
    "study.diagnosis_resolutions=[32]",
    "study.stride_resolutions=[32]",
    "study.kd_weights=[10,100]",
]


@dataclass(frozen=True)
class Arm:
    """One training job of the study (trained once per seed)."""

    model: str
    resolution: int
    width: int | None = None
    input: str = "direct"
    kd: str = "none"
    teacher: str | None = None  # key of the arm it distils from
    teacher_bn: str = "train"
    kd_weight: float | None = None  # lambda; None: the method's default
    role: str = "student"  # "teacher": trained with schedule.teacher_epochs, distilled from by others

    @property
    def key(self) -> str:
        """A readable unique name, e.g. ``tsn_tiny@56+pixel_mse<tsn_tiny@112``."""
        key = f"{self.model}{f'-w{self.width}' if self.width else ''}@{self.resolution}"
        if self.input != "direct":
            key += f"-{self.input}"
        if self.kd != "none":
            key += f"+{self.kd}<{self.teacher}"
            if self.teacher_bn != "train":
                key += f"[bn={self.teacher_bn}]"
            if self.kd_weight is not None:
                key += f"[lambda={self.kd_weight:g}]"
        return key

    def spec(self, dropout: float) -> ModelConfig:
        return ModelConfig(
            name=self.model, resolution=self.resolution, width=self.width, dropout=dropout, input=self.input
        )


@dataclass(frozen=True)
class Row:
    """One line of a comparison table: an arm, and the arm its paired difference is taken against."""

    label: str
    arm: str
    baseline: str | None = None


@dataclass(frozen=True)
class Comparison:
    group: str
    title: str
    question: str
    rows: tuple[Row, ...]


def study_plan(cfg: Config) -> tuple[list[Arm], list[Comparison]]:
    """The arms to train (teachers first, each once) and the comparisons (tables) they feed."""
    st, t, s = cfg.study, cfg.teacher, cfg.student
    teacher = Arm(t.name, t.resolution, t.width, role="teacher")
    groups = st.groups or list(GROUPS)
    arms: dict[str, Arm] = {}

    def add(arm: Arm) -> str:
        arms.setdefault(arm.key, arm)
        return arm.key

    def student(res: int, kd: str = "none", model: str | None = None, width: int | None = None, **kw) -> str:
        kw.setdefault("teacher", teacher.key if kd != "none" else None)
        if kw["teacher"] == teacher.key:
            add(teacher)
        return add(Arm(model or s.name, res, width if width is not None else s.width, kd=kd, **kw))

    T = add(teacher)
    low, sl = st.low_resolution, st.super_low_resolution
    full = f"{t.resolution} px (the teacher)"
    comparisons = []
    for group in GROUPS:
        if group not in groups:
            continue
        if group == "diagnosis":
            rows = [Row(full, T)]
            for r in st.diagnosis_resolutions:
                direct = student(r)
                rows += [
                    Row(f"{r} px, direct (scale changed)", direct),
                    Row(f"{r} px, down-up (detail lost, scale kept)", student(r, input="down_up"), direct),
                ]
            comparisons.append(
                Comparison(
                    group,
                    "Diagnosis: lost detail or changed scale?",
                    f"Frames down-sampled to r and up-sampled back to {t.resolution} px (detail lost, object "
                    "scale kept) vs frames used at r directly (scale changed), each trained and tested that "
                    "way (the paper's Figure 1). The difference is down-up minus direct.",
                    tuple(rows),
                )
            )
        elif group == "strides":
            rows = []
            for r in st.stride_resolutions:
                base = student(r)
                rows += [
                    Row(f"{s.name}, {r} px", base),
                    Row(f"{st.stride_model}, {r} px", student(r, model=st.stride_model), base),
                ]
            comparisons.append(
                Comparison(
                    group,
                    "Stage strides (1, 2, 2, 2) vs (1, 1, 2, 2)",
                    f"The standard network ({s.name}) vs the same one without down-sampling from stage 1 "
                    f"to 2 ({st.stride_model}), no KD. The difference is {st.stride_model} minus {s.name}.",
                    tuple(rows),
                )
            )
        elif group == "sweep":
            rows = [Row(full, T)]
            for r in st.resolutions:
                base = student(r)
                rows += [
                    Row(f"{r} px, no KD", base),
                    Row(f"{r} px, ResKD (pixel_mse)", student(r, "pixel_mse"), base),
                ]
            comparisons.append(
                Comparison(
                    group,
                    "Resolution sweep, with and without ResKD",
                    f"{s.name} trained from scratch at each resolution, without KD and with ResKD (pixel_mse "
                    f"from the {t.resolution} px teacher). The difference is ResKD minus no KD.",
                    tuple(rows),
                )
            )
        elif group == "kd":
            base = student(low)
            rows = [Row(f"{low} px, no KD", base)]
            rows += [
                Row(f"{low} px, {m}", student(low, m), base) for m in ("clip_kl", "frame_kl", "pixel_mse")
            ]
            narrow = student(low, width=st.narrow_width)
            rows += [
                Row(f"{low} px, width {st.narrow_width}, no KD", narrow),
                Row(
                    f"{low} px, width {st.narrow_width}, pixel_logit_kl",
                    student(low, "pixel_logit_kl", width=st.narrow_width),
                    narrow,
                ),
            ]
            comparisons.append(
                Comparison(
                    group,
                    f"KD variants at {low} px",
                    f"The {t.resolution} px teacher distilled into {s.name} at {low} px by each KD loss; "
                    f"pixel_logit_kl into a width-{st.narrow_width} student, whose channels differ from the "
                    "teacher's (so pixel_mse cannot be used), against that student without KD.",
                    tuple(rows),
                )
            )
        elif group == "kd_weight":
            base = student(low)
            rows = [Row(f"{low} px, no KD", base)]
            for w in st.kd_weights:
                # the lambda in use elsewhere is the plain pixel_mse arm, shared with the other tables
                default = w == kd_weight("pixel_mse", cfg.kd.weight)
                arm = student(low, "pixel_mse") if default else student(low, "pixel_mse", kd_weight=w)
                rows.append(Row(f"{low} px, pixel_mse, lambda = {w:g}", arm, base))
            comparisons.append(
                Comparison(
                    group,
                    f"ResKD weight lambda at {low} px",
                    "The paper's lambda (100 for a plain mean MSE) was set for ResNet-50 features; the tiny "
                    "networks' feature maps have another scale, so the KD term's share of the loss differs. "
                    f"Every weight tried is reported; the other tables use "
                    f"lambda = {kd_weight('pixel_mse', cfg.kd.weight):g}.",
                    tuple(rows),
                )
            )
        elif group == "model_vs_resolution":
            big = add(Arm(st.big_teacher, low, s.width or default_width(s.name), role="teacher"))
            base = student(low)
            rows = [
                Row(f"teacher {st.big_teacher}, {low} px", big),
                Row(f"teacher {t.name}, {t.resolution} px", T),
                Row(f"{low} px, no KD", base),
                Row(
                    f"model distillation ({st.big_teacher} at {low} px)",
                    student(low, "pixel_mse", teacher=big),
                    base,
                ),
                Row(
                    f"resolution distillation ({t.name} at {t.resolution} px)",
                    student(low, "pixel_mse"),
                    base,
                ),
            ]
            comparisons.append(
                Comparison(
                    group,
                    "Model distillation vs resolution distillation",
                    f"pixel_mse into {s.name} at {low} px from a costlier teacher ({st.big_teacher}) at the "
                    f"same {low} px vs from the same architecture at {t.resolution} px.",
                    tuple(rows),
                )
            )
        elif group == "teacher_bn":
            base = student(low)
            rows = [
                Row(f"{low} px, no KD", base),
                Row(f"{low} px, pixel_mse, teacher BN train", student(low, "pixel_mse"), base),
                Row(
                    f"{low} px, pixel_mse, teacher BN frozen",
                    student(low, "pixel_mse", teacher_bn="frozen"),
                    base,
                ),
            ]
            comparisons.append(
                Comparison(
                    group,
                    "Teacher BatchNorm: train mode vs frozen",
                    "The teacher's BN in train mode (batch statistics, the paper's setting) vs frozen "
                    "(running statistics) while distilling.",
                    tuple(rows),
                )
            )
        elif group == "super_low":
            base = student(sl)
            rows = [
                Row(f"{s.name}, {sl} px, no KD", base),
                Row(f"{s.name}, {sl} px, pixel_mse", student(sl, "pixel_mse"), base),
                Row(f"{st.stride_model}, {sl} px, no KD", student(sl, model=st.stride_model), base),
                Row(
                    f"{st.stride_model}, {sl} px, pixel_mse",
                    student(sl, "pixel_mse", model=st.stride_model),
                    base,
                ),
            ]
            comparisons.append(
                Comparison(
                    group,
                    f"Super-low resolution ({sl} px)",
                    f"At {sl} px the standard network's last map is tiny; {st.stride_model} keeps it twice "
                    "as large. Differences are against the standard network without KD.",
                    tuple(rows),
                )
            )
    ordered = sorted(arms.values(), key=lambda a: a.role != "teacher")
    return ordered, comparisons


def default_width(model: str) -> int | None:
    """The builder's default base width (the big teacher gets the student's, so channels match)."""
    from reskd_core.models import MODELS

    param = inspect.signature(MODELS[model]).parameters.get("width") if model in MODELS else None
    return None if param is None else param.default


@dataclass(frozen=True)
class ArmShape:
    """What a meta-device forward pass tells about an arm before training it."""

    channels: int
    feature_hw: tuple[int, int]
    gflops: float  # per video at the arm's input size (a down-up arm pays the loaded size)
    params_m: float


def check_arms(arms: list[Arm], frames: int, num_classes: int, load_resolution: int) -> dict[str, ArmShape]:
    """Shapes of every arm's last map; ``ValueError`` naming the arm when one cannot run as planned
    (input below the network's minimum, pixel_mse between different channel counts, unknown teacher)."""
    import torch

    from reskd_core.flops import count_gflops
    from reskd_core.models import build_model

    shapes: dict[str, ArmShape] = {}
    keys = {a.key for a in arms}
    for arm in arms:
        size = load_resolution if arm.input == "down_up" else arm.resolution
        try:
            with torch.device("meta"):
                net = build_model(arm.model, num_classes=num_classes, num_frames=frames, width=arm.width)
                _, feats = net(torch.zeros(1, frames, 3, size, size))
        except ValueError as e:
            raise ValueError(f"study arm {arm.key}: {e}") from None
        shapes[arm.key] = ArmShape(
            int(feats.shape[2]),
            (int(feats.shape[3]), int(feats.shape[4])),
            round(count_gflops(net, frames, size), 3),
            round(sum(p.numel() for p in net.parameters()) / 1e6, 2),
        )
    for arm in arms:
        if arm.kd == "none":
            continue
        if arm.teacher not in keys:
            raise ValueError(f"study arm {arm.key}: its teacher {arm.teacher} is not an arm of the study")
        if arm.kd == "pixel_mse" and shapes[arm.key].channels != shapes[arm.teacher].channels:
            raise ValueError(
                f"study arm {arm.key}: pixel_mse needs equal channels, student {shapes[arm.key].channels} "
                f"vs teacher {shapes[arm.teacher].channels}"
            )
    return shapes


def accuracy_metric(cfg: Config, split: str) -> str:
    """The metric the tables report when results are on ``split``: :data:`ACCURACY` on the test split,
    ``best_val_top1`` when the shards have none (see :func:`reskd_core.evaluate.report_prefix`)."""
    from reskd_core.evaluate import report_prefix

    return report_prefix(cfg, split) + "top1"


def arm_config(cfg: Config, arm: Arm, seed: int, teacher: Arm | None) -> Config:
    """The whole config of one arm at one seed (what its MLflow run records as params)."""
    update: dict = {
        "seed": seed,
        "kd": cfg.kd.model_copy(
            update={"method": arm.kd, "teacher_bn": arm.teacher_bn, "weight": arm.kd_weight or cfg.kd.weight}
        ),
    }
    if arm.role == "teacher":
        update["teacher"] = arm.spec(cfg.teacher.dropout)
    else:
        update["student"] = arm.spec(cfg.student.dropout)
        if teacher is not None:
            update["teacher"] = teacher.spec(cfg.teacher.dropout)
    return cfg.model_copy(update=update)


class EpochBatches:
    """Training batches made once per epoch by ``make(epoch)`` and replayed to every arm of a seed.

    :func:`reskd_core.train.fit` calls :meth:`set_epoch` before each epoch, as it does on a loader.
    """

    def __init__(self, make: Callable[[int], list[dict]], steps: int) -> None:
        self.make, self.steps, self.epoch = make, steps, 0
        self.cache: dict[int, list[dict]] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[dict]:
        if self.epoch not in self.cache:
            self.cache[self.epoch] = self.make(self.epoch)
        return iter(self.cache[self.epoch])


def loader_batches(dataset, batch_size: int) -> Callable[[int], list[dict]]:
    """``make(epoch)`` for :class:`EpochBatches`: one epoch of a ``ClipDataset`` as a list of batches."""

    import torch

    def make(epoch: int) -> list[dict]:
        dataset.set_epoch(epoch)
        return list(torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=0))

    return make


def build_arm_model(spec: ModelConfig, num_classes: int, frames: int, seed: int | None = None):
    """The arm's network; ``seed`` fixes its initial weights."""
    import torch

    from reskd_core.models import build_model

    if seed is not None:
        torch.manual_seed(seed)
    return build_model(
        spec.name, num_classes=num_classes, num_frames=frames, width=spec.width, dropout=spec.dropout
    )


# ---------------------------------------------------------------- mean +- std over seeds


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation of some values (std is NaN for fewer than two)."""

    mean: float
    std: float
    n: int
    values: tuple[float, ...] = field(default_factory=tuple)

    def fmt(self, digits: int = 1, signed: bool = False) -> str:
        if self.n == 0:
            return "-"
        sign = "+" if signed else ""
        mean = f"{self.mean:{sign}.{digits}f}"
        return mean if math.isnan(self.std) else f"{mean} ± {self.std:.{digits}f}"


def mean_std(values: Iterable[float]) -> Stat:
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
