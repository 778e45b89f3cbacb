"""Finding ready datasets in a landing location, a local folder or a prefix of a real (moto) S3 server:
ready ones once, half-copied ones not until their marker appears."""

from __future__ import annotations

import json

import pytest

from reskd_core.landing import LEDGER, LandedDataset, checked, mark_picked, new_datasets, ready_datasets


def _drop_local(root, name: str, marker: str | None) -> None:
    (root / name / "videos").mkdir(parents=True)
    (root / name / "videos" / "a.mp4").write_bytes(b"\x00" * 10)
    (root / name / "annotations.txt").write_text("a.mp4 0\n")
    if marker == "manifest.json":
        (root / name / marker).write_text("{}")
    elif marker:
        (root / name / marker).write_text("")


def test_local_landing_ready_half_copied_and_picked_once(tmp_path):
    landing = tmp_path / "landing"
    assert new_datasets(str(landing)) == []  # a new landing folder is created, not an error
    assert landing.is_dir()
    _drop_local(landing, "b-videos", "_READY")
    _drop_local(landing, "a-shards", "manifest.json")
    _drop_local(landing, "c-half-copied", None)
    (landing / "notes.txt").write_text("a file, not a dataset")

    fresh = new_datasets(str(landing))
    assert fresh == [
        LandedDataset(str(landing / "a-shards"), "shards", "a-shards"),
        LandedDataset(str(landing / "b-videos"), "videos", "b-videos"),
    ]
    mark_picked(str(landing), fresh)
    assert new_datasets(str(landing)) == []
    ledger = json.loads((landing / LEDGER).read_text())
    assert sorted(ledger) == [str(landing / "a-shards"), str(landing / "b-videos")]
    assert ledger[str(landing / "a-shards")]["kind"] == "shards"

    (landing / "c-half-copied" / "_READY").write_text("")  # the upload finished
    assert new_datasets(str(landing)) == [
        LandedDataset(str(landing / "c-half-copied"), "videos", "c-half-copied")
    ]
    # the ledger's own folder is never a dataset
    assert str(landing / ".reskd") not in [d.uri for d in ready_datasets(str(landing))]


def test_versions_of_a_named_dataset(tmp_path):
    """``landing/<name>/<version>/``: each ready version is one dataset; dataset.yaml may rename both."""
    landing = tmp_path / "landing"
    _drop_local(landing / "clips", "v1", "_READY")
    _drop_local(landing / "clips", "v2", None)  # still uploading
    _drop_local(landing, "renamed", "_READY")
    (landing / "renamed" / "dataset.yaml").write_text("name: clips\nversion: 2026-02\n")
    fresh = new_datasets(str(landing))
    assert fresh == [
        LandedDataset(str(landing / "clips" / "v1"), "videos", "clips", "v1"),
        LandedDataset(str(landing / "renamed"), "videos", "renamed"),
    ]
    assert [checked(d) for d in fresh] == [
        fresh[0],
        LandedDataset(str(landing / "renamed"), "videos", "clips", "2026-02"),
    ]
    mark_picked(str(landing), fresh[:1])
    (landing / "clips" / "v2" / "_READY").write_text("")
    assert [d.uri for d in new_datasets(str(landing))] == [
        str(landing / "clips" / "v2"),
        str(landing / "renamed"),
    ]
    ledger = json.loads((landing / LEDGER).read_text())
    assert ledger[str(landing / "clips" / "v1")] | {"picked_at": ""} == {
        "picked_at": "",
        "kind": "videos",
        "name": "clips",
        "version": "v1",
    }


def test_bad_dataset_yaml_is_rejected_not_seen_reason_visible(tmp_path):
    """The watcher flow (in Prefect's test harness): a bad dataset.yaml is not announced and not marked
    seen; its reason is a ``reskd.dataset.rejected`` event and a markdown artifact; once fixed, it is."""
    from prefect.artifacts import Artifact
    from prefect.testing.utilities import prefect_test_harness

    from flows.landing import REJECTED_ARTIFACT, watch_landing

    landing = tmp_path / "landing"
    _drop_local(landing, "bad", "_READY")
    _drop_local(landing, "good", "_READY")
    (landing / "bad" / "dataset.yaml").write_text("recipe: demo_cpu\noverrides: {optim.lr: -1}\n")
    with prefect_test_harness(server_startup_timeout=180):
        assert watch_landing(str(landing)) == [str(landing / "good")]
        assert str(landing / "bad") not in json.loads((landing / LEDGER).read_text())
        artifact = Artifact.get(REJECTED_ARTIFACT)
        assert artifact is not None
        assert f"{landing / 'bad'}/dataset.yaml" in artifact.data and "optim.lr" in artifact.data
        assert watch_landing(str(landing)) == []  # rejected again, still not seen
        (landing / "bad" / "dataset.yaml").write_text("recipe: demo_cpu\noverrides: {optim.lr: 0.01}\n")
        assert watch_landing(str(landing)) == [str(landing / "bad")]


def test_corrupt_ledger_names_the_file(tmp_path):
    (tmp_path / ".reskd").mkdir()
    (tmp_path / LEDGER).write_text("{not json")
    with pytest.raises(ValueError, match=r"landing ledger .*\.reskd/seen\.json is corrupt"):
        new_datasets(str(tmp_path))


def test_s3_landing_prefix(s3_bucket):
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)  # the env names this test's S3 server
    landing = f"s3://{s3_bucket}/landing"
    assert new_datasets(landing) == []  # an empty prefix: nothing yet, not an error
    fs.pipe(f"{s3_bucket}/landing/ds-ready/annotations.txt", b"a.mp4 0\n")
    fs.pipe(f"{s3_bucket}/landing/ds-ready/videos/a.mp4", b"\x00" * 10)
    fs.pipe(f"{s3_bucket}/landing/ds-ready/_READY", b"")
    fs.pipe(f"{s3_bucket}/landing/ds-shards/manifest.json", b"{}")
    fs.pipe(f"{s3_bucket}/landing/ds-uploading/videos/a.mp4", b"\x00" * 10)

    fresh = new_datasets(landing)
    assert fresh == [
        LandedDataset(f"{landing}/ds-ready", "videos", "ds-ready"),
        LandedDataset(f"{landing}/ds-shards", "shards", "ds-shards"),
    ]
    mark_picked(landing, fresh)
    assert new_datasets(landing) == []
    assert json.loads(fs.cat(f"{s3_bucket}/landing/{LEDGER}")).keys() == {d.uri for d in fresh}
    fs.pipe(f"{s3_bucket}/landing/ds-uploading/_READY", b"")
    assert new_datasets(landing) == [LandedDataset(f"{landing}/ds-uploading", "videos", "ds-uploading")]


def test_s3_landing_in_a_missing_bucket_is_an_error(s3_env):
    with pytest.raises(ValueError, match="bucket no-such-bucket-reskd does not exist"):
        new_datasets("s3://no-such-bucket-reskd/landing")
