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


def test_pin_paths_makes_local_paths_absolute_and_keeps_uris(tmp_path, monkeypatch):
    from reskd_core.config import pin_paths

    monkeypatch.chdir(tmp_path)
    cfg = load_config(
        None,
        [
            "storage.root=runs",
            "tracking.uri=sqlite:///mlflow.db",
            "data.shards=shards",
            "teacher.pretrained=w/r50.pth",
            "student.checkpoint=s3://bucket/ck.pt",
        ],
    )
    pinned = pin_paths(cfg)
    assert pinned.storage.root == str(tmp_path.resolve() / "runs")
    assert pinned.tracking.uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert pinned.data.shards == str(tmp_path.resolve() / "shards")
    assert pinned.teacher.pretrained == str(tmp_path.resolve() / "w" / "r50.pth")
    assert pinned.student.checkpoint == "s3://bucket/ck.pt" and pinned.teacher.checkpoint is None
    assert pinned.demo.root == cfg.demo.root  # named by its settings digest: left as written
    assert pin_paths(pinned) == pinned
    remote = load_config(None, ["storage.root=s3://b/runs", "tracking.uri=http://mlflow:5000"])
    assert pin_paths(remote).storage.root == "s3://b/runs"
    assert pin_paths(remote).tracking.uri == "http://mlflow:5000"


def test_build_config_once_from_a_recipe_or_a_config(tmp_path, monkeypatch):
    from flows.run_config import build_config, updated

    monkeypatch.chdir(tmp_path)
    cfg = build_config("demo_cpu", ["kd.weight=5"], {"tracking.uri": "sqlite:///t.db"})
    assert cfg.kd.weight == 5 and cfg.tracking.uri == f"sqlite:///{tmp_path.resolve() / 't.db'}"
    assert build_config(cfg) == cfg  # a built config passes through as it is
    assert build_config(cfg, ["seed=3"]).seed == 3
    with pytest.raises(ValidationError, match="num_classes"):
        updated(cfg, {"num_classes": 1})  # typed updates are validated like overrides
    assert updated(cfg, {"data.shards": "s3://b/x: y"}).data.shards == "s3://b/x: y"  # no YAML parsing
    with pytest.raises(ValueError, match="unknown recipe"):
        build_config("no_such_recipe")
