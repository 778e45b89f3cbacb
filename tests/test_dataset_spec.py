"""A dataset's ``dataset.yaml``: recipe (under configs/ or beside the file), overrides in both forms, name,
version and test set, extraction settings; bad files are one-line errors naming the file and field."""

from __future__ import annotations

import pytest

from flows.run_config import build_config
from reskd_core.data.layout import extract_config_for
from reskd_core.dataset_spec import DatasetSpec, dataset_config, read_spec


def _dataset(tmp_path, text: str | None, **files: str):
    root = tmp_path / "ds"
    root.mkdir()
    if text is not None:
        (root / "dataset.yaml").write_text(text)
    for name, body in files.items():
        (root / name).write_text(body)
    return str(root)


def test_no_file_is_the_demo_recipe(tmp_path):
    uri = _dataset(tmp_path, None)
    assert read_spec(uri) == DatasetSpec()
    assert dataset_config(uri, read_spec(uri)).name == "demo_cpu"


def test_recipe_by_name_with_mapping_overrides(tmp_path):
    uri = _dataset(
        tmp_path,
        "name: clips\nversion: 3\nrecipe: study_cpu\n"
        "overrides: {optim.lr: 0.002, pipeline: {resolutions: [32]}}\n",
    )
    cfg = build_config(None, ["seed=7"], dataset_uri=uri)
    assert cfg.name == "study_cpu"
    assert cfg.optim.lr == 0.002 and cfg.pipeline.resolutions == [32] and cfg.seed == 7
    assert cfg.pipeline.dataset == "clips" and cfg.pipeline.dataset_version == "3"
    # a recipe given to the run wins over the file's; the file's overrides still apply
    assert build_config("demo_cpu", dataset_uri=uri).name == "demo_cpu"
    assert build_config("demo_cpu", dataset_uri=uri).optim.lr == 0.002


def test_recipe_beside_the_file_and_list_overrides(tmp_path):
    uri = _dataset(
        tmp_path,
        "recipe: mine.yaml\noverrides: ['schedule.teacher_epochs=2']\n"
        "test_set: ../pinned\nformat: kinetics\n",
        **{"mine.yaml": "name: mine\nteacher: {name: tsn_tiny, resolution: 48}\n"},
    )
    cfg = build_config(None, dataset_uri=uri)
    assert cfg.name == "mine" and cfg.teacher.resolution == 48 and cfg.schedule.teacher_epochs == 2
    assert cfg.pipeline.test_set == str(tmp_path / "pinned")
    assert extract_config_for(cfg, uri).format == "kinetics"  # a top-level extract field, the older form


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("recipe: demo_cpu\noverrides: {optim.lr: -1}\n", "optim.lr"),
        ("recipie: demo_cpu\n", "recipie"),
        ("overrides: {kd.method: magic}\n", "kd.method"),
        ("recipe: no_such_recipe\n", "unknown recipe 'no_such_recipe'"),
        ("recipe: missing.yaml\n", "recipe"),
        ("name: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_file_is_one_line_naming_file_and_field(tmp_path, text, field):
    uri = _dataset(tmp_path, text)
    with pytest.raises(ValueError) as e:
        dataset_config(uri, read_spec(uri))
    message = str(e.value)
    assert field in message and "\n" not in message, message
    if "unknown recipe" not in message:
        assert f"{uri}/dataset.yaml" in message, message


def test_bad_extract_field_is_one_line(tmp_path):
    uri = _dataset(tmp_path, "extract: {val_fraction: 2}\n")
    with pytest.raises(ValueError, match=r"extract settings for .*: val_fraction: ") as e:
        extract_config_for(dataset_config(uri, read_spec(uri)), uri)
    assert "\n" not in str(e.value)
