"""The study's plan: the arms to train and the comparisons (tables of docs/results.md) they answer.

Comparisons name arms, and one arm can serve several of them (the no-KD student at the low resolution
is the baseline of the sweep, the KD variants, the BN and the model-vs-resolution comparisons), so each
arm is planned, and trained per seed, once. Each group of ``study.groups`` is one small function in
:data:`GROUP_PLANS`, which asks :class:`PlannedArms` for the arms its rows need.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from reskd_core.config import Config
from reskd_core.losses import kd_weight
from reskd_core.study.arms import Arm, default_width

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
class Row:
    """One line of a comparison table: an arm, and the arm its paired difference is taken against."""

    label: str
    arm: str
    baseline: str | None = None


@dataclass(frozen=True)
class Comparison:
    """One table of the page: a question, and the rows (arms) that answer it."""

    group: str
    title: str
    question: str
    rows: tuple[Row, ...]


@dataclass
class PlannedArms:
    """The arms the comparisons asked for so far, each kept once by key, in the order first asked for;
    the recipe's teacher comes first."""

    cfg: Config
    arms: dict[str, Arm] = field(default_factory=dict)

    def __post_init__(self) -> None:
        t = self.cfg.teacher
        self.teacher = self.add(Arm(t.name, t.resolution, t.width, role="teacher"))

    def add(self, arm: Arm) -> str:
        """Plan ``arm`` (once); its key."""
        self.arms.setdefault(arm.key, arm)
        return arm.key

    def student(
        self,
        resolution: int,
        kd: str = "none",
        *,
        model: str | None = None,
        width: int | None = None,
        input: str = "direct",
        teacher: str | None = None,
        teacher_bn: str = "train",
        kd_weight: float | None = None,
    ) -> str:
        """Plan a student (the recipe's model and width unless given; with KD, distilled from the recipe's
        teacher unless ``teacher`` names another arm); its key."""
        s = self.cfg.student
        arm = Arm(
            model or s.name,
            resolution,
            width if width is not None else s.width,
            input=input,
            kd=kd,
            teacher=teacher or (self.teacher if kd != "none" else None),
            teacher_bn=teacher_bn,
            kd_weight=kd_weight,
        )
        return self.add(arm)

    def teacher_row(self) -> Row:
        """The recipe's teacher, as a reference row."""
        return Row(f"{self.cfg.teacher.resolution} px (the teacher)", self.teacher)

    def pairs(
        self, resolutions: list[int], labels: Callable[[int], tuple[str, str]], **variant: str
    ) -> list[Row]:
        """Per resolution, the recipe's student without KD, then a variant of it (``variant``: the
        arguments of :meth:`student`) against it; ``labels(r)`` names the two rows."""
        rows = []
        for r in resolutions:
            base = self.student(r)
            base_label, variant_label = labels(r)
            rows += [Row(base_label, base), Row(variant_label, self.student(r, **variant), base)]
        return rows


def diagnosis(cfg: Config, arms: PlannedArms) -> Comparison:
    """Down-up inputs (detail lost, scale kept) vs direct ones (scale changed) at each resolution."""
    rows = [arms.teacher_row()] + arms.pairs(
        cfg.study.diagnosis_resolutions,
        lambda r: (f"{r} px, direct (scale changed)", f"{r} px, down-up (detail lost, scale kept)"),
        input="down_up",
    )
    return Comparison(
        "diagnosis",
        "Diagnosis: lost detail or changed scale?",
        f"Frames down-sampled to r and up-sampled back to {cfg.teacher.resolution} px (detail lost, object "
        "scale kept) vs frames used at r directly (scale changed), each trained and tested that "
        "way (the paper's Figure 1). The difference is down-up minus direct.",
        tuple(rows),
    )


def strides(cfg: Config, arms: PlannedArms) -> Comparison:
    """The standard network vs the stride model, no KD, at each stride resolution."""
    st, s = cfg.study, cfg.student
    rows = arms.pairs(
        st.stride_resolutions,
        lambda r: (f"{s.name}, {r} px", f"{st.stride_model}, {r} px"),
        model=st.stride_model,
    )
    return Comparison(
        "strides",
        "Stage strides (1, 2, 2, 2) vs (1, 1, 2, 2)",
        f"The standard network ({s.name}) vs the same one without down-sampling from stage 1 "
        f"to 2 ({st.stride_model}), no KD. The difference is {st.stride_model} minus {s.name}.",
        tuple(rows),
    )


def sweep(cfg: Config, arms: PlannedArms) -> Comparison:
    """The student at each resolution, without KD and with ResKD (pixel_mse)."""
    rows = [arms.teacher_row()] + arms.pairs(
        cfg.study.resolutions, lambda r: (f"{r} px, no KD", f"{r} px, ResKD (pixel_mse)"), kd="pixel_mse"
    )
    return Comparison(
        "sweep",
        "Resolution sweep, with and without ResKD",
        f"{cfg.student.name} trained from scratch at each resolution, without KD and with ResKD (pixel_mse "
        f"from the {cfg.teacher.resolution} px teacher). The difference is ResKD minus no KD.",
        tuple(rows),
    )


def kd_variants(cfg: Config, arms: PlannedArms) -> Comparison:
    """Each KD loss at the low resolution; pixel_logit_kl into a narrower student."""
    low, narrow_width = cfg.study.low_resolution, cfg.study.narrow_width
    base = arms.student(low)
    rows = [Row(f"{low} px, no KD", base)]
    rows += [Row(f"{low} px, {m}", arms.student(low, m), base) for m in ("clip_kl", "frame_kl", "pixel_mse")]
    narrow = arms.student(low, width=narrow_width)
    rows += [
        Row(f"{low} px, width {narrow_width}, no KD", narrow),
        Row(
            f"{low} px, width {narrow_width}, pixel_logit_kl",
            arms.student(low, "pixel_logit_kl", width=narrow_width),
            narrow,
        ),
    ]
    return Comparison(
        "kd",
        f"KD variants at {low} px",
        f"The {cfg.teacher.resolution} px teacher distilled into {cfg.student.name} at {low} px by each KD "
        f"loss; pixel_logit_kl into a width-{narrow_width} student, whose channels differ from the "
        "teacher's (so pixel_mse cannot be used), against that student without KD.",
        tuple(rows),
    )


def kd_weight_sweep(cfg: Config, arms: PlannedArms) -> Comparison:
    """pixel_mse at the low resolution with each lambda of ``study.kd_weights``."""
    low = cfg.study.low_resolution
    in_use = kd_weight("pixel_mse", cfg.kd.weight)
    base = arms.student(low)
    rows = [Row(f"{low} px, no KD", base)]
    for w in cfg.study.kd_weights:
        # the lambda in use elsewhere is the plain pixel_mse arm, shared with the other tables
        arm = arms.student(low, "pixel_mse") if w == in_use else arms.student(low, "pixel_mse", kd_weight=w)
        rows.append(Row(f"{low} px, pixel_mse, lambda = {w:g}", arm, base))
    return Comparison(
        "kd_weight",
        f"ResKD weight lambda at {low} px",
        "The paper's lambda (100 for a plain mean MSE) was set for ResNet-50 features; the tiny "
        "networks' feature maps have another scale, so the KD term's share of the loss differs. "
        f"Every weight tried is reported; the other tables use lambda = {in_use:g}.",
        tuple(rows),
    )


def model_vs_resolution(cfg: Config, arms: PlannedArms) -> Comparison:
    """pixel_mse from a costlier teacher at the low resolution vs from the recipe's at its own."""
    st, t, s = cfg.study, cfg.teacher, cfg.student
    low = st.low_resolution
    big = arms.add(Arm(st.big_teacher, low, s.width or default_width(s.name), role="teacher"))
    base = arms.student(low)
    rows = [
        Row(f"teacher {st.big_teacher}, {low} px", big),
        Row(f"teacher {t.name}, {t.resolution} px", arms.teacher),
        Row(f"{low} px, no KD", base),
        Row(
            f"model distillation ({st.big_teacher} at {low} px)",
            arms.student(low, "pixel_mse", teacher=big),
            base,
        ),
        Row(
            f"resolution distillation ({t.name} at {t.resolution} px)",
            arms.student(low, "pixel_mse"),
            base,
        ),
    ]
    return Comparison(
        "model_vs_resolution",
        "Model distillation vs resolution distillation",
        f"pixel_mse into {s.name} at {low} px from a costlier teacher ({st.big_teacher}) at the "
        f"same {low} px vs from the same architecture at {t.resolution} px.",
        tuple(rows),
    )


def teacher_bn(cfg: Config, arms: PlannedArms) -> Comparison:
    """pixel_mse with the teacher's BatchNorm in train mode vs frozen."""
    low = cfg.study.low_resolution
    base = arms.student(low)
    rows = [
        Row(f"{low} px, no KD", base),
        Row(f"{low} px, pixel_mse, teacher BN train", arms.student(low, "pixel_mse"), base),
        Row(
            f"{low} px, pixel_mse, teacher BN frozen",
            arms.student(low, "pixel_mse", teacher_bn="frozen"),
            base,
        ),
    ]
    return Comparison(
        "teacher_bn",
        "Teacher BatchNorm: train mode vs frozen",
        "The teacher's BN in train mode (batch statistics, the paper's setting) vs frozen "
        "(running statistics) while distilling.",
        tuple(rows),
    )


def super_low(cfg: Config, arms: PlannedArms) -> Comparison:
    """The standard network and the stride model at the super-low resolution, with and without KD."""
    st, s = cfg.study, cfg.student
    sl = st.super_low_resolution
    base = arms.student(sl)
    rows = [
        Row(f"{s.name}, {sl} px, no KD", base),
        Row(f"{s.name}, {sl} px, pixel_mse", arms.student(sl, "pixel_mse"), base),
        Row(f"{st.stride_model}, {sl} px, no KD", arms.student(sl, model=st.stride_model), base),
        Row(
            f"{st.stride_model}, {sl} px, pixel_mse",
            arms.student(sl, "pixel_mse", model=st.stride_model),
            base,
        ),
    ]
    return Comparison(
        "super_low",
        f"Super-low resolution ({sl} px)",
        f"At {sl} px the standard network's last map is tiny; {st.stride_model} keeps it twice "
        "as large. Differences are against the standard network without KD.",
        tuple(rows),
    )


# group name (``study.groups``) -> its comparison, in the order of the page
GROUP_PLANS: dict[str, Callable[[Config, PlannedArms], Comparison]] = {
    "diagnosis": diagnosis,
    "strides": strides,
    "sweep": sweep,
    "kd": kd_variants,
    "kd_weight": kd_weight_sweep,
    "model_vs_resolution": model_vs_resolution,
    "teacher_bn": teacher_bn,
    "super_low": super_low,
}
GROUPS = tuple(GROUP_PLANS)


def study_plan(cfg: Config) -> tuple[list[Arm], list[Comparison]]:
    """The arms to train (teachers first, each once) and the comparisons (tables) they feed."""
    arms = PlannedArms(cfg)
    wanted = cfg.study.groups or list(GROUPS)
    comparisons = [plan(cfg, arms) for group, plan in GROUP_PLANS.items() if group in wanted]
    return sorted(arms.arms.values(), key=lambda a: a.role != "teacher"), comparisons
