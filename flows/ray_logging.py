"""Console logging of the Ray worker processes our jobs start (Ray's ``worker_process_setup_hook``).

Two Ray Train loggers drowned the epoch lines: the one that logs every ``ray.train.report`` at INFO is
named by its file path, outside the ``ray.train`` tree whose level ``RunConfig(logging_config=...)``
sets, and the placement-group cleaner warns every few seconds when the state API is off (a local Ray
runs without dashboard). Both are quietened by name; nothing else changes.
"""

from __future__ import annotations

import logging
import os

HOOK = f"{__name__}.quiet_ray_workers"
PG_CLEANER = "ray.train.v2._internal.execution.controller.placement_group_cleaner"


def report_logger_name() -> str:
    """The name of the logger of ``ray/train/v2/_internal/execution/context.py`` (its ``__file__``)."""
    import ray  # already imported in a Ray worker

    return os.path.join(os.path.dirname(ray.__file__), "train", "v2", "_internal", "execution", "context.py")


def quiet_ray_workers() -> None:
    """Set the two levels in a Ray worker process (runs once, before any task or actor code)."""
    logging.getLogger(report_logger_name()).setLevel(logging.WARNING)
    logging.getLogger(PG_CLEANER).setLevel(logging.ERROR)
