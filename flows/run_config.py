"""The config of one command or flow run, built once where it enters: a CLI command or a flow's parameters.

Below that boundary, tasks, subflows and the Ray driver take the :class:`~reskd_core.config.Config`
itself; nobody loads a recipe again. Imports neither Prefect nor MLflow, so the CLI stays quick to start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reskd_core.config import Config, load_config, pin_paths, recipe_path, set_path, with_overrides
from reskd_core.dataset_spec import dataset_config, read_spec


def build_config(
    source: Config | str | Path | None,
    overrides: list[str] | None = None,
    values: dict[str, Any] | None = None,
    dataset_uri: str | None = None,
) -> Config:
    """The run's config: ``source`` (a config as it is, a recipe name or YAML path, None for the
    defaults), then ``key.path=value`` ``overrides``, then typed ``values`` (``{'tracking.uri': uri}``),
    with local paths pinned (:func:`~reskd_core.config.pin_paths`). With ``dataset_uri`` (and no built
    config), its ``dataset.yaml`` comes in between: its recipe unless ``source`` names one (else
    ``demo_cpu``), its overrides, name, version and test set (:mod:`reskd_core.dataset_spec`). Raises
    ``ValueError`` naming the file or field (a pydantic ``ValidationError`` for a bad value)."""
    if isinstance(source, Config):
        cfg = with_overrides(source, overrides or [])
    elif dataset_uri is not None:
        recipe = None if source is None else str(source)
        cfg = dataset_config(dataset_uri, read_spec(dataset_uri), recipe, overrides)
    else:
        cfg = load_config(recipe_path(source) if source is not None else None, overrides)
    return pin_paths(updated(cfg, values or {}))


def updated(cfg: Config, values: dict[str, Any]) -> Config:
    """A validated copy of ``cfg`` with dotted fields set to typed values (``{'data.shards': uri,
    'num_classes': 4}``): no round trip through ``--set`` strings."""
    if not values:
        return cfg
    data = cfg.model_dump()
    for dotted, value in values.items():
        set_path(data, dotted, value)
    return Config.model_validate(data)
