"""The name a pipeline run registers its model under (``reskd-<pipeline.dataset>``)."""

from flows.datasets import named
from reskd_core.config import load_config, recipe_path, with_overrides


def test_a_configured_name_is_kept():
    cfg = with_overrides(load_config(recipe_path("demo_cpu")), ["pipeline.dataset=k400"])
    assert named(cfg, "s3://bucket/landing/other").pipeline.dataset == "k400"


def test_without_a_name_the_dataset_folder_names_it(tmp_path):
    cfg = load_config(recipe_path("demo_cpu"), [f"demo.root={tmp_path / 'demo'}"])
    assert cfg.pipeline.dataset is None
    assert named(cfg, "s3://bucket/landing/my-data/").pipeline.dataset == "my-data"
    assert named(cfg, str(tmp_path / "landing" / "2024")).pipeline.dataset == "2024"
    assert named(cfg, str(tmp_path / "demo")).pipeline.dataset == "demo"
