"""One training job of a config: which network a role trains, its model, its loaders, and the checks that
run before any work.

A job is a config plus a role (``teacher`` or ``student``). :func:`spec_for` is the one place that picks
the role's :class:`~reskd_core.config.ModelConfig`; :func:`model_for` and :func:`make_loaders` build what
the Ray worker, the benchmarks and the study's in-process trainer train with; :func:`check_job` is every
input check that can fail before a process starts or a run is tracked, each error one line naming the
field.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, cast

import torch
from torch.utils.data import DataLoader

from reskd_core.checkpoint import checkpoint_config, load_checkpoint
from reskd_core.config import Config, ModelConfig
from reskd_core.data.dataset import ClipDataset
from reskd_core.data.shards import read_manifest
from reskd_core.evaluate import load_resolution
from reskd_core.models import MODELS, VideoClassifier, build_model
from reskd_core.models.weights import load_pretrained

log = logging.getLogger(__name__)

Role = Literal["teacher", "student"]
ROLES: tuple[Role, ...] = ("teacher", "student")


def spec_for(cfg: Config, role: str) -> ModelConfig:
    """The config's section of the network ``role`` trains: ``cfg.teacher`` or ``cfg.student``."""
    if role == "teacher":
        return cfg.teacher
    if role == "student":
        return cfg.student
    raise ValueError(f"role must be 'teacher' or 'student', got {role!r}")


def model_for(
    cfg: Config, role: str, num_classes: int, *, pretrained: bool = True, seed: int | None = None
) -> VideoClassifier:
    """The network of ``role`` as its section says (architecture, width, dropout), for
    ``data.num_segments`` frames, with the section's ``pretrained`` weights loaded when ``pretrained``.

    ``seed`` fixes the initial weights (``torch.manual_seed`` before the build, as DDP ranks and study
    seeds need); None leaves the global generator as it is.
    """
    spec = spec_for(cfg, role)
    if seed is not None:
        torch.manual_seed(seed)
    model = build_model(
        spec.name,
        num_classes=num_classes,
        num_frames=cfg.data.num_segments,
        width=spec.width,
        dropout=spec.dropout,
    )
    if pretrained and spec.pretrained:
        load_pretrained(model, spec.pretrained)
    return model


def make_loaders(
    cfg: Config, rank: int = 0, world: int = 1, *, pin_memory: bool = False
) -> tuple[DataLoader, DataLoader]:
    """``(train, val)`` loaders of this DDP rank's part of the shards, clips at the load resolution.

    Loader workers are not persistent: a persistent worker keeps the dataset copy of its first epoch,
    so ``set_epoch`` would not reach it and every epoch would repeat the first one's order.
    """

    def loader(split: str, train: bool) -> DataLoader:
        ds = ClipDataset(cfg.data.shards, split, cfg.data, load_resolution(cfg), train, rank, world, cfg.seed)
        return DataLoader(
            ds, batch_size=cfg.data.batch_size, num_workers=cfg.data.loader_workers, pin_memory=pin_memory
        )

    return loader(cfg.data.train_split, True), loader(cfg.data.val_split, False)


# ---------------------------------------------------------------- checks before any work


@dataclass(frozen=True)
class Job:
    """A checked job: what training needs beyond the config.

    ``cfg`` is the config to train with: for a distilling student its teacher section is the one the
    teacher checkpoint was trained with, ``checkpoint`` set to that file.
    """

    cfg: Config
    role: Role
    num_classes: int
    class_names: tuple[str, ...]
    teacher_checkpoint: str | None = None  # the KD teacher of a student; None for a teacher or no KD
    teacher_run_id: str | None = None  # the MLflow run the teacher checkpoint records

    @property
    def spec(self) -> ModelConfig:
        return spec_for(self.cfg, self.role)


def check_job(cfg: Config, role: str) -> Job:
    """Every input check that needs no training, each failure a one-line ``ValueError`` naming the field.

    Checks the model names, that each network's input is at least its total stride, the shards'
    manifest and splits, ``num_classes``, and for a distilling student the teacher checkpoint
    (``teacher.checkpoint``): readable, the dataset's classes, the teacher's architecture and resolution
    (taken from the checkpoint: the teacher must see clips at the resolution it was trained at), and
    equal feature channels under ``kd.method=pixel_mse``. Reads the manifest and the checkpoint; builds
    networks on the meta device only (no weights are allocated).
    """
    spec = spec_for(cfg, role)  # raises for an unknown role
    if spec.name not in MODELS:
        raise ValueError(f"{role}.name: unknown model {spec.name!r}; known models: {', '.join(MODELS)}")
    names = _check_shards(cfg)
    teacher_checkpoint = teacher_run_id = None
    if role == "student" and cfg.kd.method != "none":
        cfg, teacher_run_id = _with_checkpoint_teacher(cfg, names)
        teacher_checkpoint = cfg.teacher.checkpoint
        _check_input_size(cfg, "teacher")
        _check_channels(cfg)
    _check_input_size(cfg, role)
    if role == "student" and cfg.student.resolution > cfg.teacher.resolution:
        theirs = "the teacher's" if teacher_checkpoint else "teacher.resolution"
        raise ValueError(
            f"student.resolution {cfg.student.resolution} is above {theirs} {cfg.teacher.resolution}: "
            "clips are read at the teacher's and down-sampled"
        )
    return Job(cfg, cast(Role, role), len(names), tuple(names), teacher_checkpoint, teacher_run_id)


def _check_shards(cfg: Config) -> list[str]:
    """The shards' class names, after checking the manifest, the splits and ``num_classes``."""
    try:
        manifest = read_manifest(cfg.data.shards)
    except FileNotFoundError:
        raise ValueError(f"data.shards: no shards at {cfg.data.shards} (run `reskd extract` first)") from None
    except ValueError as e:
        raise ValueError(f"data.shards: {e}") from None
    names = list(manifest["class_names"])
    splits = manifest.get("splits", {})
    for split in (cfg.data.train_split, cfg.data.val_split):
        if split not in splits:
            raise ValueError(
                f"data: split {split!r} is not in the shards at {cfg.data.shards} "
                f"(they hold {', '.join(splits) or 'none'})"
            )
    if cfg.num_classes is not None and cfg.num_classes != len(names):
        raise ValueError(
            f"num_classes is {cfg.num_classes} but the shards at {cfg.data.shards} have {len(names)} classes"
        )
    return names


def _with_checkpoint_teacher(cfg: Config, names: list[str]) -> tuple[Config, str | None]:
    """``cfg`` with the teacher section the checkpoint was trained with, and the checkpoint's run id."""
    ckpt = cfg.teacher.checkpoint
    if not ckpt:
        raise ValueError(f"kd.method={cfg.kd.method!r} needs a teacher: set teacher.checkpoint")
    state = load_checkpoint(ckpt)  # CheckpointError (a ValueError) names the file
    if state["num_classes"] != len(names):
        raise ValueError(
            f"teacher.checkpoint {ckpt} has {state['num_classes']} classes, the shards {len(names)}"
        )
    trained_names = list(state.get("class_names") or [])
    if trained_names and trained_names != names:
        raise ValueError(
            f"teacher.checkpoint {ckpt} was trained on other classes than the shards at {cfg.data.shards} "
            f"(first difference: {_first_difference(trained_names, names)})"
        )
    teacher = spec_for(checkpoint_config(state), state["role"])
    if (teacher.name, teacher.resolution) != (cfg.teacher.name, cfg.teacher.resolution):
        log.info(
            "teacher from %s: %s at %dpx (config said %s at %dpx)",
            ckpt,
            teacher.name,
            teacher.resolution,
            cfg.teacher.name,
            cfg.teacher.resolution,
        )
    cfg = cfg.model_copy(update={"teacher": teacher.model_copy(update={"checkpoint": ckpt})})
    return cfg, state.get("mlflow_run_id")


def _first_difference(ours: list[str], theirs: list[str]) -> str:
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        if a != b:
            return f"class {i} is {a!r} in the checkpoint, {b!r} in the shards"
    return "none"  # unreachable: the counts are equal and the lists differ


def _skeleton(cfg: Config, role: str) -> VideoClassifier:
    """The role's network on the meta device: its shape without memory or initialisation cost."""
    with torch.device("meta"):
        return model_for(cfg, role, num_classes=2, pretrained=False)


def _check_input_size(cfg: Config, role: str) -> None:
    """The network's input (its resolution, or the load size with ``input: down_up``) covers its stride."""
    spec = spec_for(cfg, role)
    size = spec.resolution if spec.input == "direct" else load_resolution(cfg)
    need = _skeleton(cfg, role).min_resolution
    if size < need:
        raise ValueError(
            f"{role}.resolution {size} is too small for {spec.name}: its total stride needs at least "
            f"{need}px (a last-stage map of 1x1)"
        )


def _check_channels(cfg: Config) -> None:
    """``pixel_mse`` compares the two last-stage maps channel by channel."""
    if cfg.kd.method != "pixel_mse":
        return
    student, teacher = _skeleton(cfg, "student").feature_channels, _skeleton(cfg, "teacher").feature_channels
    if student != teacher:
        raise ValueError(
            f"kd.method=pixel_mse needs equal feature channels: student {cfg.student.name} has {student}, "
            f"teacher {cfg.teacher.name} {teacher} (use kd.method=pixel_logit_kl)"
        )
