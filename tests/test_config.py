import pytest
from pydantic import ValidationError

from reskd_core.config import Config, dump_config, flatten, load_config


def test_round_trip_through_yaml(tmp_path):
    cfg = load_config(None, ["kd.weight=50", "pipeline.resolutions=[112,56]", "teacher.name=tsn_tiny"])
    path = tmp_path / "c.yaml"
    dump_config(cfg, path)
    again = load_config(path)
    assert again == cfg
    assert again.kd.weight == 50 and again.pipeline.resolutions == [112, 56]


def test_flatten_gives_string_params():
    params = flatten(Config())
    assert params["kd.method"] == "pixel_mse" and params["kd.weight"] == "null"
    assert all(isinstance(v, str) for v in params.values())


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["kd.weight=-1"], "kd.weight"),
        (["kd.method=fancy"], "kd.method"),
        (["optim.lr=0"], "optim.lr"),
        (["kd.tempreature=3"], "kd.tempreature"),
    ],
)
def test_bad_values_name_the_field(overrides, needle):
    with pytest.raises(ValidationError) as e:
        load_config(None, overrides)
    assert needle in str(e.value)


def test_zero_workers_with_gpus_is_refused():
    with pytest.raises(ValidationError, match="workers must be >= 1"):
        load_config(None, ["resources.workers=0", "resources.use_gpu=true"])


def test_bad_files_and_overrides_are_clear(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("kd: [unclosed")
    with pytest.raises(ValueError, match="bad.yaml is not valid YAML"):
        load_config(bad)
    with pytest.raises(ValueError, match="key.path=value"):
        load_config(None, ["novalue"])


def test_every_recipe_in_configs_loads():
    from pathlib import Path

    recipes = sorted(Path(__file__).parents[1].joinpath("configs").glob("*.yaml"))
    assert len(recipes) >= 7
    for path in recipes:
        load_config(path)
