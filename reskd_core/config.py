"""The one configuration model read by the CLI, the Prefect flows, the Ray workers and MLflow params.

Every setting is named exactly once here. A YAML recipe under ``configs/`` fills it; the CLI overrides
single fields with ``key.path=value``. Three defaults come from the environment, so one deployment moves
from embedded to distributed by configuration alone: ``MLFLOW_TRACKING_URI`` (tracking.uri),
``RAY_ADDRESS`` (resources.ray_address) and ``RESKD_STORAGE_ROOT`` (storage.root).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

KDMethod = Literal["none", "clip_kl", "frame_kl", "pixel_mse", "pixel_logit_kl"]
AnnotationFormat = Literal["mmaction", "kinetics", "ssv2", "activitynet"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ExtractConfig(_Strict):
    """Decoding videos into Parquet shards of JPEG frames."""

    annotations: str = "demo/data/annotations.txt"
    format: AnnotationFormat = "mmaction"
    video_root: str = "demo/data/videos"
    labels_file: str | None = Field(
        None, description="class names: SSv2 labels.json (name -> id), or one name a line / a JSON list"
    )
    split: str | None = Field(
        None,
        description="formats or files without a split column: the split of every video (None: 'train'); "
        "with one (kinetics, activitynet): keep only this split (None: all)",
    )
    val_fraction: float = Field(
        0.0, ge=0, lt=1, description="mmaction/ssv2: hold out this share of each class as split 'val'"
    )
    test_fraction: float = Field(
        0.0, ge=0, lt=1, description="mmaction/ssv2: hold out this share of each class as split 'test'"
    )
    sample: Literal["all", "every", "fps", "count"] = "all"
    every: int = Field(1, ge=1, description="keep every k-th frame when sample='every'")
    fps: float = Field(4.0, gt=0, description="frames per second kept when sample='fps'")
    count: int = Field(16, ge=1, description="frames kept uniformly when sample='count'")
    short_side: int = Field(256, ge=16, description="resize so the short side has this many pixels")
    jpeg_quality: int = Field(90, ge=10, le=100)
    videos_per_shard: int = Field(256, ge=1)
    row_group_size: int = Field(8, ge=1, description="rows per Parquet row group (random-access unit)")
    workers: int = Field(0, ge=0, description="decoder processes; 0 = one per core")
    timeout_s: float = Field(120.0, gt=0, description="per-video decode timeout")
    max_error_rate: float = Field(0.05, ge=0, le=1)

    @model_validator(mode="after")
    def _something_left_to_train(self) -> ExtractConfig:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("extract.val_fraction + extract.test_fraction must be below 1")
        return self


class DataConfig(_Strict):
    """Reading shards into clips."""

    shards: str = "demo/shards"
    train_split: str = "train"
    val_split: str = Field("val", description="the split that selects the best epoch")
    test_split: str = Field(
        "test", description="the split results are reported on (val when the shards have no such split)"
    )
    sampling: Literal["tsn", "dense"] = "tsn"
    num_segments: int = Field(
        8, ge=1, description="TSN segments (8 trimmed, 16 untrimmed); dense: clip length"
    )
    frame_interval: int = Field(1, ge=1, description="stride between frames for dense sampling")
    multi_label: bool = False
    multi_label_loss: Literal["random_ce", "bce"] = "random_ce"
    flip: bool = True
    scales: list[float] = Field(default_factory=lambda: [1.0, 0.875, 0.75, 0.66])
    batch_size: int = Field(8, ge=1)
    loader_workers: int = Field(0, ge=0)
    limit: int | None = Field(None, ge=1, description="use at most this many videos per split (smoke runs)")

    @field_validator("scales")
    @classmethod
    def _scales_in_range(cls, v: list[float]) -> list[float]:
        if not v or any(not 0 < s <= 1 for s in v):
            raise ValueError("scales must be a non-empty list of fractions in (0, 1]")
        return v


class ModelConfig(_Strict):
    """One network: an architecture from ``reskd models`` at an input resolution."""

    name: str = "tsn_r50"
    resolution: int = Field(224, ge=8)
    width: int | None = Field(None, ge=4, description="base channel width override (ResNets)")
    dropout: float = Field(0.5, ge=0, lt=1)
    pretrained: str | None = Field(None, description="ImageNet/Kinetics state dict file to start from")
    checkpoint: str | None = Field(None, description="trained reskd checkpoint (skips training the teacher)")
    input: Literal["direct", "down_up"] = Field(
        "direct",
        description="direct: frames resized to `resolution` (scale changes); down_up: resized to "
        "`resolution` and back to the loaded size (detail lost, scale kept; costs the full size's FLOPs)",
    )


class KDConfig(_Strict):
    """How the student learns from the teacher."""

    method: KDMethod = "pixel_mse"
    weight: float | None = Field(None, description="lambda; None takes the method's default")
    temperature: float = Field(2.0, gt=0)
    align: Literal["up", "down"] = Field(
        "up", description="up: student map up-sampled to the teacher's size (reference); down: the reverse"
    )
    teacher_bn: Literal["train", "frozen"] = "train"

    @field_validator("weight")
    @classmethod
    def _non_negative(cls, v: float | None) -> float | None:
        if v is not None and v < 0:
            raise ValueError("kd.weight (lambda) must be >= 0")
        return v


class OptimConfig(_Strict):
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.01, gt=0, description="learning rate per lr_batch clips (linear scaling)")
    lr_batch: int = Field(64, ge=1)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(1e-4, ge=0)
    no_decay_norm_bias: bool = True
    clip_grad: float | None = Field(20.0, gt=0)
    backbone_lr_mult: float = Field(1.0, gt=0)


class ScheduleConfig(_Strict):
    teacher_epochs: int = Field(50, ge=1)
    student_epochs: int = Field(100, ge=1)
    warmup_epochs: float = Field(0.0, ge=0)
    eval_every: int = Field(1, ge=1)


class ResourcesConfig(_Strict):
    workers: int = Field(1, ge=0, description="Ray Train workers (DDP ranks)")
    use_gpu: bool = False
    gpus_per_worker: float = Field(0.0, ge=0)
    cpus_per_worker: float = Field(1.0, gt=0)
    ray_address: str | None = Field(
        default_factory=lambda: os.environ.get("RAY_ADDRESS") or None,
        description="None: a local Ray; 'auto', host:port or ray://... (default: $RAY_ADDRESS)",
    )
    amp: bool = True
    channels_last: bool = True
    max_failures: int = Field(2, ge=-1, description="worker failures tolerated (-1: unlimited)")

    @model_validator(mode="after")
    def _gpus_need_workers(self) -> ResourcesConfig:
        if self.use_gpu and self.workers == 0:
            raise ValueError("resources.workers must be >= 1 when resources.use_gpu is true")
        if self.gpus_per_worker > 0 and not self.use_gpu:
            raise ValueError("resources.gpus_per_worker > 0 needs resources.use_gpu: true")
        return self


class TrackingConfig(_Strict):
    uri: str = Field(
        default_factory=lambda: os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"),
        description="sqlite:///mlflow.db (embedded) or http://host:5000 (default: $MLFLOW_TRACKING_URI)",
    )
    experiment: str = "reskd"


class StorageConfig(_Strict):
    root: str = Field(
        default_factory=lambda: os.environ.get("RESKD_STORAGE_ROOT", "runs"),
        description="checkpoints and Ray results: a local path or s3://bucket/prefix ($RESKD_STORAGE_ROOT)",
    )


class PipelineConfig(_Strict):
    """What the ``reskd/full`` flow runs."""

    dataset: str | None = Field(
        None,
        description="dataset name: the registered model is reskd-<dataset>; None: the dataset folder's name "
        "(demo for the generated demo data)",
    )
    dataset_version: str | None = Field(None, description="the version (dataset.yaml or landing/<name>/<v>/)")
    test_set: str | None = Field(
        None, description="shards promotion compares on (their report split); None: pinned from version 1"
    )
    resolutions: list[int] = Field(default_factory=lambda: [112, 96, 72, 56])
    kd_methods: list[KDMethod] = Field(default_factory=lambda: ["pixel_mse"])
    baseline: bool = Field(True, description="also train each resolution without KD")
    max_accuracy_drop: float | None = Field(None, ge=0, description="points vs the teacher for the search")


StudyGroup = Literal[
    "diagnosis", "strides", "sweep", "kd", "kd_weight", "model_vs_resolution", "teacher_bn", "super_low"
]


class StudyConfig(_Strict):
    """What the ``reskd/study`` flow (the ablation study behind docs/results.md) trains.

    The teacher section is the high-resolution teacher (its resolution is the clips' loaded size),
    the student section the low-resolution architecture; every arm is trained once per seed.
    """

    seeds: int = Field(3, ge=1, description="seeds per arm (seed, seed+1, ...): tables give mean +- std")
    groups: list[StudyGroup] | None = Field(None, description="comparisons to run (None: all of them)")
    resolutions: list[int] = Field(
        default_factory=lambda: [80, 56, 40, 32],
        description="student resolutions of the sweep, without KD and with pixel_mse (teacher's on top)",
    )
    low_resolution: int = Field(
        56, ge=8, description="resolution of the KD variants, model-distillation and teacher-BN comparisons"
    )
    kd_weights: list[float] = Field(
        default_factory=lambda: [1.0, 10.0, 100.0],
        description="pixel_mse lambdas compared at low_resolution (every one reported)",
    )
    diagnosis_resolutions: list[int] = Field(
        default_factory=lambda: [56, 32], description="direct vs down_up input (the paper's Figure 1)"
    )
    stride_resolutions: list[int] = Field(
        default_factory=lambda: [56, 40, 32], description="standard strides vs stride_model"
    )
    stride_model: str = Field("tsn_tiny_s", description="the student with stage strides (1, 1, 2, 2)")
    super_low_resolution: int = Field(32, ge=8, description="super-low point: both stride variants +- ResKD")
    big_teacher: str = Field(
        "tsn_tiny_s",
        description="model distillation: a costlier teacher with the student's channels at low_resolution",
    )
    narrow_width: int = Field(
        8, ge=4, description="pixel_logit_kl pair: a student this wide under the (wider) teacher"
    )


class DemoConfig(_Strict):
    """The generated demo dataset a pipeline run uses when it is given no dataset."""

    root: str = Field("demo/data", description="where videos/ and annotations.txt are generated")
    classes: int = Field(8, ge=2, le=16)
    videos_per_class: int = Field(200, ge=1)
    size: int = Field(128, ge=16, description="frame side in pixels")
    frames: int = Field(8, ge=1)
    seed: int = 0


class PredictConfig(_Strict):
    """Labelling videos with a trained model: ``reskd predict`` and the ``reskd/predict`` flow."""

    model: str = Field(
        "models:/reskd-demo@champion",
        description="a reskd checkpoint, an MLflow model URI (models:/NAME@ALIAS, runs:/ID/model), an .onnx",
    )
    top_k: int = Field(5, ge=1, description="labels listed per video")
    batch_size: int = Field(8, ge=1, description="clips per forward pass")
    exact: bool = Field(
        False,
        description="decode at the loaded (teacher's) size and down-sample, evaluation's chain; "
        "default: decode straight at the model's size",
    )
    resolution: int | None = Field(
        None, ge=8, description="input size the model must take, checked before any decoding"
    )
    max_error_rate: float = Field(
        0.05, ge=0, le=1, description="share of unreadable videos above which the command or run fails"
    )
    format: AnnotationFormat = Field("mmaction", description="format of annotation lists given as input")
    video_root: str | None = Field(None, description="videos of annotation lists (default: beside the list)")
    device: str = Field("cpu", description="torch device of a checkpoint's model")
    rows_per_shard: int = Field(256, ge=1, description="predictions per Parquet file of reskd/predict")


class Config(_Strict):
    """The whole configuration of a ResKD job."""

    name: str = "reskd"
    seed: int = 0
    num_classes: int | None = Field(None, ge=2, description="None: read from the shards' manifest")
    extract: ExtractConfig = Field(default_factory=ExtractConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    teacher: ModelConfig = Field(default_factory=ModelConfig)
    student: ModelConfig = Field(default_factory=lambda: ModelConfig(resolution=112))
    kd: KDConfig = Field(default_factory=KDConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    demo: DemoConfig = Field(default_factory=DemoConfig)
    study: StudyConfig = Field(default_factory=StudyConfig)
    predict: PredictConfig = Field(default_factory=PredictConfig)


RECIPES_DIR = Path(__file__).resolve().parents[1] / "configs"


def recipe_path(name: str | Path) -> Path:
    """A recipe by name (``demo_cpu`` -> ``configs/demo_cpu.yaml``) or by path."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    candidate = RECIPES_DIR / f"{name}.yaml"
    if not candidate.exists():
        known = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))
        raise ValueError(f"unknown recipe {str(name)!r}; known recipes: {known}")
    return candidate


def yaml_mapping(text: str, what: str) -> dict[str, Any]:
    """``text`` parsed as a YAML mapping; a one-line ``ValueError`` naming ``what`` otherwise."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{what} is not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{what} must hold a mapping at the top level")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML recipe (or the defaults when ``path`` is None) and apply ``a.b=value`` overrides.

    Values are parsed as YAML, so ``kd.weight=50``, ``pipeline.resolutions=[112,56]`` and
    ``teacher.pretrained=null`` all work. Raises ``ValueError`` naming the file or the field.
    """
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise ValueError(f"config file {path} does not exist") from None
        data = yaml_mapping(text, f"config file {path}")
    apply_overrides(data, overrides or [])
    return Config.model_validate(data)


def with_overrides(config: Config, overrides: list[str]) -> Config:
    """A copy of ``config`` with ``a.b=value`` overrides applied and validated."""
    if not overrides:
        return config
    data = config.model_dump(mode="json")
    apply_overrides(data, overrides)
    return Config.model_validate(data)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> None:
    """Apply ``a.b=value`` strings (values parsed as YAML) to a plain config mapping in place."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not of the form key.path=value")
        set_path(data, key.strip(), yaml.safe_load(raw) if raw.strip() else None)


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data['a']['b'] = value`` for ``dotted='a.b'``, creating mappings on the way."""
    *parents, leaf = dotted.split(".")
    node = data
    for p in parents:
        child = node.setdefault(p, {})
        if not isinstance(child, dict):
            raise ValueError(f"override {dotted!r}: {p!r} is not a section")
        node = child
    node[leaf] = value


def dump_config(config: Config, path: str | Path) -> None:
    """Write the config as YAML that :func:`load_config` reads back to an equal model."""
    Path(path).write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))


def flatten(config: BaseModel | dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{'kd.weight': '100.0', ...}``: the config as flat string params (MLflow's shape)."""
    data = config.model_dump(mode="json") if isinstance(config, BaseModel) else config
    out: dict[str, str] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = "null" if v is None else str(v)
    return out


def pin_uri(uri: str) -> str:
    """A relative ``sqlite:///file.db`` tracking URI made absolute; any other URI as it is."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


def pin_paths(config: Config) -> Config:
    """``config`` with its local paths made absolute against the current directory: the storage root, the
    shards, the models' weight files and a relative SQLite tracking URI.

    Called once where a config enters (a CLI command, a flow run): Prefect flow runs, Ray workers and
    later reruns start in other directories. URIs (``s3://``, ``http://``) stay as they are; pinning a
    pinned config changes nothing. (``demo.root`` stays as written: its settings digest names the demo
    data, see ``flows.datasets.demo_root``.)
    """

    def local(path: str | None) -> str | None:
        return path if path is None or "://" in path else str(Path(path).resolve())

    def weights(spec: ModelConfig) -> ModelConfig:
        return spec.model_copy(
            update={"pretrained": local(spec.pretrained), "checkpoint": local(spec.checkpoint)}
        )

    return config.model_copy(
        update={
            "storage": config.storage.model_copy(update={"root": local(config.storage.root)}),
            "tracking": config.tracking.model_copy(update={"uri": pin_uri(config.tracking.uri)}),
            "data": config.data.model_copy(update={"shards": local(config.data.shards)}),
            "teacher": weights(config.teacher),
            "student": weights(config.student),
        }
    )
