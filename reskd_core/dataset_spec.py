"""A dataset's ``dataset.yaml``: its name and version, the recipe it trains with, overrides, the test set
promotion compares on, and extraction settings.

```yaml
name: my-data                 # registered as reskd-my-data (default: from the landing layout or folder)
version: "2026-02"            # default: the folder of landing/<name>/<version>/
recipe: recipe.yaml           # a name under configs/, or a YAML file beside this one (default: demo_cpu)
overrides: {optim.lr: 0.002}  # dotted keys -> values, or a list of "key.path=value"
test_set: ../v1-shards        # shards promotion compares on (default: pinned from the first version)
extract: {format: kinetics}   # extraction settings; top-level extract fields are read as these too
```

Everything is validated before any work: the file by :class:`DatasetSpec`, the recipe with its overrides by
:class:`~reskd_core.config.Config`. Errors are one line naming the file and the field.
"""

from __future__ import annotations

import posixpath
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from reskd_core.config import Config, ExtractConfig, apply_overrides, recipe_path, set_path, yaml_mapping
from reskd_core.data import storage

DATASET_FILE = "dataset.yaml"
DEFAULT_RECIPE = "demo_cpu"


class DatasetSpec(BaseModel):
    """What a ``dataset.yaml`` says (every field optional)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    version: str | None = None
    recipe: str | None = None
    overrides: dict[str, Any] | list[str] = {}
    test_set: str | None = None
    extract: dict[str, Any] = {}

    @model_validator(mode="before")
    @classmethod
    def _extract_fields_at_top(cls, data: Any) -> Any:
        """Extract fields at the top level (the older form of the file) go into ``extract``."""
        if not isinstance(data, dict):
            return data
        top = {k: data[k] for k in data if k in ExtractConfig.model_fields and k not in cls.model_fields}
        rest = {k: v for k, v in data.items() if k not in top}
        if isinstance(data.get("version"), int | float):  # version: 2 is the string "2"
            rest["version"] = str(data["version"])
        return rest | ({"extract": {**top, **(data.get("extract") or {})}} if top else {})

    def values(self, dataset_uri: str) -> dict[str, Any]:
        """The overrides as dotted keys -> typed values, plus the name, version and test set this file
        gives (``pipeline.dataset``, ``pipeline.dataset_version``, ``pipeline.test_set``)."""
        out: dict[str, Any] = {}
        if isinstance(self.overrides, list):
            plain: dict[str, Any] = {}
            apply_overrides(plain, self.overrides)
            out |= _dotted(plain)
        else:
            out |= _dotted(self.overrides)
        named = {"pipeline.dataset": self.name, "pipeline.dataset_version": self.version}
        out |= {k: v for k, v in named.items() if v is not None}
        if self.test_set:
            out["pipeline.test_set"] = _beside(dataset_uri, self.test_set)
        return out


def _dotted(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, dict) and v:
            out |= _dotted(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def _beside(dataset_uri: str, path: str) -> str:
    """``path`` as written when absolute or a URI, else relative to the dataset folder."""
    if "://" in path or path.startswith("/"):
        return path
    joined = storage.join(dataset_uri, path)
    scheme, sep, rest = joined.partition("://")
    return f"{scheme}://{posixpath.normpath(rest)}" if sep else posixpath.normpath(joined)


def spec_uri(dataset_uri: str) -> str:
    return storage.join(dataset_uri, DATASET_FILE)


def one_line(source: str, e: ValidationError) -> str:
    """``'<source>: optim.lr: Input should be greater than 0; ...'``."""
    parts = [f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in e.errors()]
    return f"{source}: " + "; ".join(parts)


def read_spec(dataset_uri: str) -> DatasetSpec:
    """The dataset's ``dataset.yaml`` (an empty spec when it has none); ``ValueError`` naming the file."""
    uri = spec_uri(dataset_uri)
    if not storage.exists(uri):
        return DatasetSpec()
    try:
        raw = yaml.safe_load(storage.read_text(uri)) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{uri} is not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{uri} must hold a mapping (name, version, recipe, overrides, extract, ...)")
    try:
        return DatasetSpec.model_validate(raw)
    except ValidationError as e:
        raise ValueError(one_line(uri, e)) from None


def recipe_data(spec: DatasetSpec, dataset_uri: str, recipe: str | None = None) -> tuple[dict, str]:
    """The raw recipe mapping and where it came from: ``recipe`` if given, else the spec's (a name under
    configs/, or a file beside ``dataset.yaml``), else ``demo_cpu``."""
    name = recipe or spec.recipe or DEFAULT_RECIPE
    beside = spec.recipe == name and recipe is None and name.endswith((".yaml", ".yml"))
    where = _beside(dataset_uri, name) if beside else str(recipe_path(name))
    try:
        text = storage.read_text(where)
    except FileNotFoundError:
        raise ValueError(f"{spec_uri(dataset_uri)}: recipe: {where} does not exist") from None
    return yaml_mapping(text, f"recipe {where}"), where


def dataset_config(
    dataset_uri: str,
    spec: DatasetSpec,
    recipe: str | None = None,
    overrides: list[str] | None = None,
    values: dict[str, Any] | None = None,
) -> Config:
    """The config of a run on ``dataset_uri``: the recipe (:func:`recipe_data`), the spec's values, then
    ``overrides`` strings and typed ``values``, validated once; errors name ``dataset.yaml`` and the field."""
    data, where = recipe_data(spec, dataset_uri, recipe)
    for dotted, value in spec.values(dataset_uri).items():
        set_path(data, dotted, value)
    apply_overrides(data, overrides or [])
    for dotted, value in (values or {}).items():
        set_path(data, dotted, value)
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ValueError(one_line(f"{spec_uri(dataset_uri)} (recipe {where} + overrides)", e)) from None
