"""Dataset stages of the flow: the demo dataset, extraction with its MLflow child run, the shard info."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path

from flows.run_config import updated
from reskd_core.config import Config, ExtractConfig
from reskd_core.data import layout, shards, storage
from reskd_core.data.demo import make_demo_dataset

log = logging.getLogger(__name__)


def named(cfg: Config, dataset_uri: str) -> Config:
    """``cfg`` with ``pipeline.dataset`` set: as configured, else the dataset folder's name (a landed
    ``s3://bucket/landing/my-data`` registers ``reskd-my-data``)."""
    if cfg.pipeline.dataset:
        return cfg
    name = dataset_uri.rstrip("/").rsplit("/", 1)[-1] or "dataset"
    if "://" not in dataset_uri and Path(dataset_uri).resolve() == Path(demo_root(cfg)).resolve():
        name = "demo"
    return cfg.model_copy(update={"pipeline": cfg.pipeline.model_copy(update={"dataset": name})})


def demo_root(cfg: Config) -> str:
    """The demo dataset folder as an absolute path (flow runs may start in another directory)."""
    return str(Path(cfg.demo.root).resolve())


STAMP = ".demo-generator"  # in the demo folder: which generator and settings made it


def generator_digest(cfg: Config) -> str:
    """Hash of the demo generator's source and the demo settings: a change regenerates the data."""
    from reskd_core.data import demo

    h = hashlib.sha256(Path(demo.__file__).read_bytes())
    h.update(cfg.demo.model_dump_json().encode())
    return h.hexdigest()[:16]


def ensure_demo_dataset(cfg: Config) -> str:
    """The demo dataset in ``demo.root``, (re)generated unless the current generator and settings made
    it; returns its folder. A folder holding other files is an error, not overwritten."""
    root = Path(demo_root(cfg))
    digest = generator_digest(cfg)
    stamp = root / STAMP
    if stamp.exists() and stamp.read_text().strip() == digest and (root / "annotations.txt").exists():
        log.info("demo dataset already at %s", root)
        return str(root)
    if root.exists() and any(root.iterdir()):
        if not stamp.exists():
            raise ValueError(
                f"demo.root {root} holds files this version's demo generator did not make (an older "
                "demo dataset?): remove them (make clean) or set another demo.root"
            )
        log.info("demo generator or settings changed: regenerating %s", root)
        shutil.rmtree(root)
    generate_demo(cfg, root)
    stamp.write_text(digest + "\n")
    return str(root)


def generate_demo(cfg: Config, root: str | Path) -> None:
    """The demo dataset of ``cfg.demo``'s settings, written into ``root``."""
    d = cfg.demo
    make_demo_dataset(root, d.classes, d.videos_per_class, d.size, d.frames, d.seed)


def prepare_shards(
    dataset_uri: str,
    fingerprint: str,
    extract_cfg: ExtractConfig,
    shards_uri: str,
    tracking_uri: str,
    experiment: str,
    parent_run_id: str | None,
) -> dict:
    """Shards for ``dataset_uri``: ready ones as they are, else extracted into ``shards_uri``.

    An extraction is an MLflow child run (settings as params, counts and speed as metrics, errors.json as
    an artifact). More skipped videos than ``max_error_rate`` fails the stage with the reason.
    """
    if not layout.is_shards(dataset_uri):
        from reskd_core.data.extract import extract

        report = extract(extract_cfg, shards_uri)
        _log_extract_run(report, extract_cfg, tracking_uri, experiment, parent_run_id)
        if not report.ok:
            raise ValueError(
                f"extraction of {dataset_uri} skipped {report.skipped} of {report.total} videos "
                f"({100 * report.error_rate:.1f}% > {100 * report.max_error_rate:.1f}%): "
                f"see {shards_uri}/errors.json"
            )
    manifest = shards.read_manifest(shards_uri)
    return {
        "shards_uri": shards_uri,
        "fingerprint": fingerprint,
        "content_hash": manifest["content_hash"],
        "num_classes": manifest["num_classes"],
        "class_names": manifest["class_names"],
        "multi_label": manifest["multi_label"],
        "videos": sum(s["videos"] for s in manifest["splits"].values()),
        "splits": {k: v["videos"] for k, v in manifest["splits"].items()},
        "skipped": manifest.get("skipped", 0),
    }


def with_shards(cfg: Config, info: dict) -> Config:
    """The config pointed at the prepared shards, with their class count and label kind."""
    return updated(
        cfg,
        {
            "data.shards": info["shards_uri"],
            "num_classes": info["num_classes"],
            "data.multi_label": bool(info["multi_label"]),
        },
    )


def _log_extract_run(
    report, extract_cfg: ExtractConfig, tracking_uri: str, experiment: str, parent_run_id: str | None
) -> None:
    from mlflow.entities import Metric, Param

    from flows.tracking import client_for, experiment_id

    client = client_for(tracking_uri)
    tags = {"reskd.stage": "extract"}
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    run = client.create_run(experiment_id(client, experiment), run_name="extract", tags=tags)
    rid = run.info.run_id
    params = [Param(f"extract.{k}", str(v)[:6000]) for k, v in extract_cfg.model_dump().items()]
    now = int(time.time() * 1000)
    metrics = [
        Metric(k, float(v), now, 0)
        for k, v in {
            "videos": report.total,
            "skipped": report.skipped,
            "error_rate": report.error_rate,
            "new_shards": report.new_shards,
            "resumed_shards": report.resumed_shards,
            "seconds": report.seconds,
            "frames_per_s": report.frames_written / report.seconds if report.seconds else 0.0,
        }.items()
    ]
    client.log_batch(rid, metrics=metrics, params=params)
    client.set_tag(rid, "reskd.shards_uri", report.uri)
    client.log_text(rid, json.dumps(report.as_dict(), indent=1, default=str), "extract_report.json")
    errors = storage.join(report.uri, shards.ERRORS)
    if storage.exists(errors):
        client.log_text(rid, storage.read_text(errors), shards.ERRORS)
    client.set_terminated(rid, "FINISHED" if report.ok else "FAILED")
