"""Configs and MLflow runs for the tests that train on the session's demo shards
(``tests/fixtures/demo_shards.py``: 64 px videos of 8 frames, 4 classes)."""

from __future__ import annotations

from pathlib import Path

from reskd_core.config import Config, load_config

LOAD = 64  # the shards' frame size: the teacher's resolution, at which clips are read


def demo_shards_config(shards: str, tmp: str | Path, *overrides: str) -> Config:
    """A tsn_tiny teacher at :data:`LOAD` px, 2 segments a video, MLflow in a SQLite file under ``tmp``;
    then ``overrides``."""
    return load_config(
        None,
        [
            f"data.shards={shards}",
            "data.num_segments=2",
            "teacher.name=tsn_tiny",
            f"teacher.resolution={LOAD}",
            f"tracking.uri=sqlite:///{Path(tmp) / 'mlflow.db'}",
            *overrides,
        ],
    )


def new_run(cfg: Config) -> str:
    """A fresh MLflow run in the config's experiment; its id."""
    from flows.tracking import client_for, experiment_id

    client = client_for(cfg.tracking.uri)
    return client.create_run(experiment_id(client, cfg.tracking.experiment)).info.run_id
