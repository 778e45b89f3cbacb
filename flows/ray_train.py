"""Ray Train entry: one teacher or student training job as a ``TorchTrainer`` run, tracked in MLflow.

``train_on_ray(cfg, role, run_name)`` is what the CLI and the ``reskd/full`` flow call. The driver checks
the inputs before any work, opens the job's MLflow run, starts (or joins) Ray and runs the trainer, whose
workers (``flows/ray_worker.py``) train with DDP and report a checkpoint every epoch. A worker that dies
is replaced and the job continues from the latest checkpoint (``FailureConfig``); a rerun with the same
run name and storage resumes (Ray Train V2 restores the run's checkpoint list from
``storage_path/run_name``), and a finished job is not retrained. At the end the driver logs the best
checkpoint, the plots and the model to the run.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flows.ray_logging import HOOK
from reskd_core.config import Config

log = logging.getLogger(__name__)

SCORE = "val_score"  # top-1 or mAP of the epoch (-1 when not evaluated), ranks the checkpoints
ENV_PREFIXES = ("AWS_", "FSSPEC_", "MLFLOW_", "RESKD_")  # passed to the workers of a Ray we start


@dataclass
class TrainResult:
    """What a training job produced (also what the Prefect flow caches)."""

    mlflow_run_id: str
    best_checkpoint: str  # local path or s3:// URI of checkpoint.pt
    metrics: dict[str, float]  # validation metrics of the best checkpoint (top1/top5 or mAP, percent)
    gflops: float
    videos_per_s: float | None
    epochs_done: int
    resumed: bool
    run_name: str = ""
    role: str = ""
    resolution: int = 0
    model_uri: str | None = None
    latest_checkpoint: str | None = None
    teacher_run_id: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- checks before any work


@dataclass
class _Inputs:
    cfg: Config
    num_classes: int
    class_names: list[str]
    teacher_checkpoint: str | None
    teacher_run_id: str | None


def check_inputs(
    cfg: Config, role: str, teacher_checkpoint: str | None = None, tags: dict[str, str] | None = None
) -> _Inputs:
    """Everything that can be wrong before training starts, each error naming the field or file.

    For a student, the teacher's architecture and resolution are taken from its checkpoint (the teacher
    must see clips at the resolution it was trained at).
    """
    from reskd_core.checkpoint import checkpoint_config, load_checkpoint
    from reskd_core.data.shards import read_manifest
    from reskd_core.models import MODELS

    if role not in ("teacher", "student"):
        raise ValueError(f"role must be 'teacher' or 'student', got {role!r}")
    cfg = with_absolute_paths(cfg)
    teacher_checkpoint = _absolute(teacher_checkpoint)
    if cfg.resources.workers < 1:
        raise ValueError("resources.workers must be >= 1 to train on Ray")
    spec = cfg.teacher if role == "teacher" else cfg.student
    if spec.name not in MODELS:
        raise ValueError(f"{role}.name: unknown model {spec.name!r}; known models: {', '.join(MODELS)}")
    try:
        manifest = read_manifest(cfg.data.shards)
    except FileNotFoundError:
        raise ValueError(f"data.shards: no shards at {cfg.data.shards} (run `reskd extract` first)") from None
    except ValueError as e:
        raise ValueError(f"data.shards: {e}") from None
    names = list(manifest["class_names"])
    for split in (cfg.data.train_split, cfg.data.val_split):
        if split not in manifest.get("splits", {}):
            raise ValueError(
                f"data: split {split!r} is not in the shards at {cfg.data.shards} "
                f"(they hold {', '.join(manifest.get('splits', {})) or 'none'})"
            )
    if cfg.num_classes is not None and cfg.num_classes != len(names):
        raise ValueError(
            f"num_classes is {cfg.num_classes} but the shards at {cfg.data.shards} have {len(names)} classes"
        )
    teacher_run_id = (tags or {}).get("reskd.teacher_run_id")
    ckpt = teacher_checkpoint or (cfg.teacher.checkpoint if role == "student" else None)
    if role == "student" and cfg.kd.method != "none":
        if not ckpt:
            raise ValueError(f"kd.method={cfg.kd.method!r} needs a teacher: set teacher.checkpoint")
        state = load_checkpoint(ckpt)
        if state["num_classes"] != len(names):
            raise ValueError(
                f"teacher.checkpoint {ckpt} has {state['num_classes']} classes, the shards {len(names)}"
            )
        trained = checkpoint_config(state)
        teacher_spec = trained.teacher if state["role"] == "teacher" else trained.student
        if (teacher_spec.name, teacher_spec.resolution) != (cfg.teacher.name, cfg.teacher.resolution):
            log.info(
                "teacher from %s: %s at %dpx (config said %s at %dpx)",
                ckpt,
                teacher_spec.name,
                teacher_spec.resolution,
                cfg.teacher.name,
                cfg.teacher.resolution,
            )
        cfg = cfg.model_copy(update={"teacher": teacher_spec.model_copy(update={"checkpoint": ckpt})})
        teacher_run_id = teacher_run_id or state.get("mlflow_run_id")
        if cfg.student.resolution > cfg.teacher.resolution:
            raise ValueError(
                f"student.resolution {cfg.student.resolution} is above the teacher's "
                f"{cfg.teacher.resolution}: clips are read at the teacher's and down-sampled"
            )
    elif role == "student":
        ckpt = None
        if cfg.student.resolution > cfg.teacher.resolution:
            raise ValueError(
                f"student.resolution {cfg.student.resolution} is above teacher.resolution "
                f"{cfg.teacher.resolution}: clips are read at the teacher's and down-sampled"
            )
    return _Inputs(cfg, len(names), names, ckpt, teacher_run_id)


def _absolute(path: str | None) -> str | None:
    if path is None or "://" in path:
        return path
    return str(Path(path).resolve())


def with_absolute_paths(cfg: Config) -> Config:
    """Local paths made absolute: Ray workers run in another directory (the run's trial dir)."""
    data = cfg.data.model_copy(update={"shards": _absolute(cfg.data.shards)})
    models = {
        role: spec.model_copy(
            update={"pretrained": _absolute(spec.pretrained), "checkpoint": _absolute(spec.checkpoint)}
        )
        for role, spec in (("teacher", cfg.teacher), ("student", cfg.student))
    }
    return cfg.model_copy(update={"data": data, **models})


# ---------------------------------------------------------------- Ray plumbing


_ray_address: list[str | None] = []  # the address this process initialised Ray with


def ensure_ray(address: str | None) -> None:
    """Connect to ``address`` (host:port, 'auto', ray://...) or start a local Ray when None."""
    import ray

    want = address or "local"
    if ray.is_initialized():
        if _ray_address and _ray_address[0] == want:
            return
        if not _ray_address:  # someone else's Ray in this process: use it as it is
            return
        ray.shutdown()
        _ray_address.clear()
    if want == "local" and not any(
        k in os.environ for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
    ):
        # Ray would write ~/.ray/auth_token for a new local cluster, which turns token auth on for every
        # later `ray start` on this machine; a token in this process's environment does not leak
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    from flows.stack.procs import SERVICE_VAR, STACK_ID_VAR

    # The local stack's markers name the process that carries them: a Ray worker belongs to its Ray node,
    # not to this driver (passed on, stopping the driver's service would take the Ray workers along).
    markers = (STACK_ID_VAR, SERVICE_VAR)
    env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES) and k not in markers}
    ray.init(
        address=want,
        runtime_env={"env_vars": env, "worker_process_setup_hook": HOOK},
        log_to_driver=True,
        include_dashboard=False if want == "local" else None,
        configure_logging=False,
    )
    _ray_address[:] = [want]
    log.info("Ray: %s (%s CPUs)", "local" if want == "local" else want, ray.cluster_resources().get("CPU"))


def storage_location(root: str) -> tuple[str, Any]:
    """``(storage_path, pyarrow filesystem or None)`` for Ray's ``RunConfig``.

    Local roots become absolute. ``s3://`` roots get an explicit pyarrow S3 filesystem that honours
    ``AWS_ENDPOINT_URL`` (MinIO, moto) and the usual credential variables.
    """
    if root.startswith(("s3://", "s3a://")):
        import pyarrow.fs

        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        kwargs: dict[str, Any] = {"region": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
        if endpoint:
            scheme, _, host = endpoint.partition("://")
            kwargs.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
        fs = pyarrow.fs.S3FileSystem(**kwargs)
        return root.split("://", 1)[1].rstrip("/"), fs
    if "://" in root and not root.startswith("file://"):
        return root, None
    return str(Path(root.removeprefix("file://")).resolve()), None


def _uri(root: str, fs_path: str) -> str:
    """A Ray checkpoint's filesystem path as the URI our storage helpers read."""
    if root.startswith(("s3://", "s3a://")):
        return "s3://" + fs_path.lstrip("/")
    return fs_path


# ---------------------------------------------------------------- the driver


def train_on_ray(
    cfg: Config,
    role: str,
    run_name: str,
    teacher_checkpoint: str | None = None,
    parent_run_id: str | None = None,
    tags: dict[str, str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train the teacher or one student as the Ray Train run ``run_name``; see the module docstring.

    ``teacher_checkpoint`` (or ``cfg.teacher.checkpoint``) is needed by students with a KD method;
    ``parent_run_id`` nests the MLflow run; ``progress(epochs_done, total)`` is called from a polling
    thread as epochs finish. Raises ``ValueError`` before any work for bad inputs and ``RuntimeError``
    when training fails past ``resources.max_failures`` restarts.
    """
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from flows import tracking
    from flows.ray_worker import train_worker
    from reskd_core.losses import kd_weight
    from reskd_core.train import total_epochs

    inputs = check_inputs(cfg, role, teacher_checkpoint, tags)
    cfg = inputs.cfg
    spec = cfg.teacher if role == "teacher" else cfg.student
    tracking_uri = tracking.resolve_uri(cfg.tracking.uri)
    cfg = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"uri": tracking_uri})})
    run_tags = {
        "reskd.model": spec.name,
        "reskd.resolution": str(spec.resolution),
        "reskd.kd": cfg.kd.method if role == "student" else "none",
        **(tags or {}),
    }
    params = {"reskd.role": role}
    if role == "student":
        # kd.weight is null when the method's default is used: record the lambda actually trained with
        params["kd.weight_effective"] = str(kd_weight(cfg.kd.method, cfg.kd.weight))
        params["reskd.teacher_checkpoint"] = inputs.teacher_checkpoint or "none"
        if inputs.teacher_run_id:
            run_tags["reskd.teacher_run_id"] = inputs.teacher_run_id
            params["reskd.teacher_run_id"] = inputs.teacher_run_id
    run_id, _reopened = tracking.start_training_run(
        cfg, role, run_name, parent_run_id=parent_run_id, tags=run_tags, params=params
    )
    storage_path, storage_fs = storage_location(cfg.storage.root)
    epochs = total_epochs(cfg, role)
    try:
        ensure_ray(cfg.resources.ray_address)
        resources = {"CPU": cfg.resources.cpus_per_worker}
        if cfg.resources.use_gpu:
            resources["GPU"] = cfg.resources.gpus_per_worker or 1.0
        trainer = TorchTrainer(
            train_worker,
            train_loop_config={
                "cfg": cfg.model_dump(mode="json"),
                "role": role,
                "run_name": run_name,
                "mlflow_run_id": run_id,
                "tracking_uri": tracking_uri,
                "num_classes": inputs.num_classes,
                "class_names": inputs.class_names,
                "teacher_checkpoint": inputs.teacher_checkpoint,
                "teacher_run_id": inputs.teacher_run_id,
            },
            scaling_config=ScalingConfig(
                num_workers=cfg.resources.workers,
                use_gpu=cfg.resources.use_gpu,
                resources_per_worker=resources,
            ),
            run_config=RunConfig(
                name=run_name,
                storage_path=storage_path,
                storage_filesystem=storage_fs,
                failure_config=FailureConfig(max_failures=cfg.resources.max_failures),
                # Ray Train's own per-report INFO lines drown the epoch logs; warnings still show
                logging_config=LoggingConfig(log_level="WARNING"),
                checkpoint_config=CheckpointConfig(
                    num_to_keep=2, checkpoint_score_attribute=SCORE, checkpoint_score_order="max"
                ),
            ),
        )
        with _poll_progress(tracking_uri, run_id, epochs, progress):
            result = trainer.fit()
        if result.error is not None:
            raise result.error
    except Exception as e:
        tracking.end_run(tracking_uri, run_id, "FAILED", f"{type(e).__name__}: {e}")
        if isinstance(e, ValueError):
            raise
        raise RuntimeError(f"training job {run_name} ({role}) failed: {e}") from e

    drop_unregistered_checkpoints(result)
    try:
        best_uri, latest_uri, latest_state, metrics, model_uri = _record_results(cfg, role, run_id, result)
        tracking.end_run(tracking_uri, run_id, "FINISHED")
    except Exception as e:
        tracking.end_run(tracking_uri, run_id, "FAILED", f"{type(e).__name__}: {e}")
        raise
    summary = result.return_value or {}
    start_epoch = int(summary.get("start_epoch", 0))
    out = TrainResult(
        mlflow_run_id=run_id,
        best_checkpoint=best_uri,
        metrics=metrics,
        gflops=float(summary.get("gflops", 0.0)),
        videos_per_s=summary.get("videos_per_s"),
        epochs_done=int(summary.get("epochs_done", latest_state["epoch"])),
        resumed=start_epoch > 0,
        run_name=run_name,
        role=role,
        resolution=spec.resolution,
        model_uri=model_uri,
        latest_checkpoint=latest_uri,
        teacher_run_id=inputs.teacher_run_id,
        history=list(latest_state.get("history") or []),
    )
    log.info(
        "%s %s: %s (best %s, %d epochs, resumed=%s)",
        role,
        run_name,
        metrics,
        best_uri,
        out.epochs_done,
        out.resumed,
    )
    return out


def _record_results(
    cfg: Config, role: str, run_id: str, result: Any
) -> tuple[str, str | None, dict, dict[str, float], str]:
    """Best checkpoint, plots and model to the MLflow run (once: a resumed finished job logs nothing new).

    Returns ``(best_uri, latest_uri, latest_state, best_metrics, model_uri)``.
    """
    from flows import tracking
    from reskd_core.checkpoint import FILENAME, load_checkpoint
    from reskd_core.evaluate import scalar_metrics

    best = max(result.best_checkpoints or [], key=lambda cm: cm[1].get(SCORE, -1.0), default=None)
    best_ckpt = best[0] if best else result.checkpoint
    if best_ckpt is None:
        raise RuntimeError(f"training job {result.path} reported no checkpoint")
    best_uri = _uri(cfg.storage.root, f"{best_ckpt.path}/{FILENAME}")
    latest_uri = _uri(cfg.storage.root, f"{result.checkpoint.path}/{FILENAME}") if result.checkpoint else None
    best_state = load_checkpoint(best_uri)
    latest_state = load_checkpoint(latest_uri) if latest_uri and latest_uri != best_uri else best_state
    best_state["history"] = latest_state.get("history") or best_state.get("history")
    metrics = scalar_metrics(best_state.get("evaluation") or {})
    client = tracking.client_for(cfg.tracking.uri)
    tags = client.get_run(run_id).data.tags
    if tags.get("reskd.checkpoint") == best_uri and tags.get("reskd.model_uri"):
        return best_uri, latest_uri, latest_state, metrics, tags["reskd.model_uri"]
    with best_ckpt.as_directory() as d:
        model_uri = tracking.log_training_artifacts(cfg, run_id, best_state, os.path.join(d, FILENAME), role)
    client.set_tag(run_id, "reskd.checkpoint", best_uri)
    client.set_tag(run_id, "reskd.model_uri", model_uri)
    step = int(best_state["epoch"])
    best_val = {f"best_val_{k}": v for k, v in metrics.items()} | {"best_epoch": step}
    tracking.log_metrics(cfg.tracking.uri, run_id, best_val, step=step)
    return best_uri, latest_uri, latest_state, metrics, model_uri


def drop_unregistered_checkpoints(result: Any) -> list[str]:
    """Delete the checkpoint folders of a finished run that Ray Train does not track, and return them.

    A worker that dies after uploading a checkpoint but before its report reached the controller leaves
    a folder Ray never registered (ray-project/ray#41700); the restart goes on from the last registered
    one, so the stray folder is only clutter, and it would outlive ``num_to_keep``. Best effort: a failure
    here is logged, never raised.
    """
    import pyarrow.fs

    def name(path: str) -> str:
        return path.rstrip("/").rsplit("/", 1)[-1]

    tracked = {name(c.path) for c, _ in result.best_checkpoints or []}
    if result.checkpoint is not None:
        tracked.add(name(result.checkpoint.path))
    dropped: list[str] = []
    if not tracked:  # nothing registered: nothing to tell strays from
        return dropped
    try:
        fs = result.filesystem
        for info in fs.get_file_info(pyarrow.fs.FileSelector(result.path)):
            folder = name(info.path)
            if (
                info.type == pyarrow.fs.FileType.Directory
                and folder.startswith("checkpoint_")
                and folder not in tracked
            ):
                fs.delete_dir(info.path)
                dropped.append(info.path)
    except OSError as e:
        log.warning("could not clear unregistered checkpoints under %s: %s", result.path, e)
    if dropped:
        log.info("deleted %d checkpoint folder(s) Ray Train never registered: %s", len(dropped), dropped)
    return dropped


class _poll_progress:
    """Context manager: a daemon thread that reads the run's ``epoch`` metric and calls ``progress``."""

    def __init__(
        self,
        uri: str,
        run_id: str,
        total: int,
        progress: Callable[[int, int], None] | None,
        every_s: float = 2.0,
    ) -> None:
        self.uri, self.run_id, self.total, self.progress, self.every_s = uri, run_id, total, progress, every_s
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def _run(self) -> None:
        from flows import tracking

        client = tracking.client_for(self.uri)
        while not self.stop.wait(self.every_s):
            try:
                done = client.get_run(self.run_id).data.metrics.get("epoch")
            except Exception:  # a busy SQLite file or a blip of the server: try again later
                continue
            if done is not None and self.progress:
                self.progress(int(done), self.total)

    def __enter__(self) -> _poll_progress:
        if self.progress:
            self.thread = threading.Thread(target=self._run, name="reskd-progress", daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.thread:
            self.thread.join(timeout=5)
