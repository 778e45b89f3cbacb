"""The config as MLflow params, per role: each run carries the settings it was trained with.

A teacher's run has no ``student.*``/``kd.*`` params, so a filter on ``params.`kd.method``` finds only
students; ``kd.weight`` is the lambda in use (the config's ``null`` means the method's default).
"""

from __future__ import annotations

from reskd_core.config import Config, flatten
from reskd_core.losses import kd_weight

# what every training run reads; extract, pipeline, demo and study belong to the flows around it
SHARED = ("name", "seed", "num_classes", "data", "optim", "schedule", "resources", "tracking", "storage")
SECTIONS = {
    "teacher": (*SHARED, "teacher"),
    # a student reads clips at the teacher's resolution and, with KD, distils from the teacher
    "student": (*SHARED, "teacher", "student", "kd"),
}
SWEPT = ("student", "kd")  # set per child run by a pipeline or study: not params of the parent


def role_params(cfg: Config, role: str) -> dict[str, str]:
    """``cfg`` as flat string params for a run of ``role``: ``teacher`` and ``student`` get their sections
    (a student's ``kd.weight`` the lambda in use); a parent run (``pipeline``, ``study``) gets every section
    but the ones its child runs set one by one (``student``, ``kd``)."""
    data = cfg.model_dump(mode="json")
    if role in SECTIONS:
        data = {k: data[k] for k in SECTIONS[role]}
    else:
        data = {k: v for k, v in data.items() if k not in SWEPT}
    params = flatten(data)
    if "kd" in data:
        params["kd.weight"] = str(kd_weight(cfg.kd.method, cfg.kd.weight))
    return params
