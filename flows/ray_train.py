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
from typing import TYPE_CHECKING, Any

from flows.ray_logging import HOOK
from reskd_core.config import Config

if TYPE_CHECKING:
    from reskd_core.job import Job

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
    from reskd_stack.procs import SERVICE_VAR, STACK_ID_VAR

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
    from flows import tracking
    from reskd_core.config import pin_paths
    from reskd_core.job import check_job

    if cfg.resources.workers < 1:
        raise ValueError("resources.workers must be >= 1 to train on Ray")
    if teacher_checkpoint:
        cfg = cfg.model_copy(
            update={"teacher": cfg.teacher.model_copy(update={"checkpoint": teacher_checkpoint})}
        )
    # the CLI and the flows hand over pinned configs; this makes a direct call (a notebook, a test) the
    # same boundary. Pinning twice changes nothing.
    cfg = pin_paths(cfg)
    job = check_job(cfg, role)
    cfg, spec = job.cfg, job.spec
    teacher_run_id = (tags or {}).get("reskd.teacher_run_id") or job.teacher_run_id
    run_tags, params = _run_metadata(job, teacher_run_id, tags or {})
    with tracking.training_run(
        cfg, role, run_name, parent_run_id=parent_run_id, tags=run_tags, params=params
    ) as run:
        run_id = run.run_id
        result = _fit(cfg, role, run_name, run_id, progress)
        drop_unregistered_checkpoints(result)
        best_uri, latest_uri, latest_state, metrics, model_uri = _record_results(cfg, role, run_id, result)
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
        teacher_run_id=teacher_run_id,
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


def _fit(
    cfg: Config, role: str, run_name: str, run_id: str, progress: Callable[[int, int], None] | None
) -> Any:
    """Run the Ray Train job (the workers log into MLflow run ``run_id``); a failure past
    ``resources.max_failures`` restarts is a ``RuntimeError`` naming the job."""
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from flows.ray_worker import train_worker
    from reskd_core.train import total_epochs

    storage_path, storage_fs = storage_location(cfg.storage.root)
    try:
        ensure_ray(cfg.resources.ray_address)
        resources = {"CPU": cfg.resources.cpus_per_worker}
        if cfg.resources.use_gpu:
            resources["GPU"] = cfg.resources.gpus_per_worker or 1.0
        trainer = TorchTrainer(
            train_worker,
            # the config and the run's identity only: the workers derive everything else (check_job)
            train_loop_config={
                "cfg": cfg.model_dump(mode="json"),
                "role": role,
                "run_name": run_name,
                "mlflow_run_id": run_id,
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
        with _poll_progress(cfg.tracking.uri, run_id, total_epochs(cfg, role), progress):
            result = trainer.fit()
        if result.error is not None:
            raise result.error
    except ValueError:
        raise
    except Exception as e:
        raise RuntimeError(f"training job {run_name} ({role}) failed: {e}") from e
    return result


def _run_metadata(job: Job, teacher_run_id: str | None, tags: dict[str, str]) -> tuple[dict, dict]:
    """``(tags, params)`` the job's MLflow run gets besides the config's params."""

    cfg, role = job.cfg, job.role
    run_tags = {
        "reskd.model": job.spec.name,
        "reskd.resolution": str(job.spec.resolution),
        "reskd.kd": cfg.kd.method if role == "student" else "none",
        **tags,
    }
    params = {"reskd.role": role}
    if role == "student":
        params["reskd.teacher_checkpoint"] = job.teacher_checkpoint or "none"
        if teacher_run_id:
            run_tags["reskd.teacher_run_id"] = teacher_run_id
            params["reskd.teacher_run_id"] = teacher_run_id
    return run_tags, params


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
