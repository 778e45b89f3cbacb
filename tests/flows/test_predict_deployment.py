"""``reskd/predict`` as users run it: served by ``reskd serve`` against a real ``prefect server start``, run
with ``prefect deployment run``, over a local dataset folder (a broken video among them) and over shards
on a real S3 server; DuckDB reads the Parquet it wrote, MLflow holds its run."""

from __future__ import annotations

import json
import shutil

import pytest
from mlflow.tracking import MlflowClient

from flows.tracking import names
from tests.fixtures.trained_student import register_champion
from tests.flows.helpers import BIN, PrefectServer, spawn, wait_for
from tests.support.processes import stop

pytestmark = pytest.mark.slow
MODEL = "reskd-predictflow"


@pytest.fixture(scope="module")
def registered(trained_student, tmp_path_factory, restore_mlflow_uri) -> str:
    """The trained student registered as ``reskd-predictflow@champion`` in a SQLite store; its URI."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('predict-mlflow') / 'mlflow.db'}"
    register_champion(trained_student, uri, "predictflow")
    return uri


@pytest.fixture(scope="module")
def served(prefect_server: PrefectServer, s3_server, tmp_path_factory):
    """``reskd serve`` against the server, with the S3 server's credentials in its environment."""
    root = tmp_path_factory.mktemp("served-predict")
    env = prefect_server.env(
        AWS_ACCESS_KEY_ID=s3_server["key"],
        AWS_SECRET_ACCESS_KEY=s3_server["secret"],
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=s3_server["endpoint_url"],
    )
    cmd = [str(BIN / "reskd"), "serve", "--landing-uri", str(root / "landing"), "--watch-interval", "3600"]
    proc = spawn(cmd, root / "serve.log", env, root)
    try:

        def ready():
            if proc.poll() is not None:
                raise RuntimeError(f"reskd serve exited:\n{(root / 'serve.log').read_text()[-3000:]}")
            return prefect_server.deployment("reskd/predict")

        wait_for("reskd serve to register reskd/predict", ready, timeout=180)
        yield root
    finally:
        stop(proc, timeout=30)


def _run(prefect_server: PrefectServer, served, **params: str) -> dict:
    args = [a for k, v in params.items() for a in ("--param", f"{k}={v}")]
    done = prefect_server.cli(
        "deployment", "run", "reskd/predict", *args, "--watch", "--watch-timeout", "300", timeout=360
    )
    assert done.returncode == 0, done.stdout + done.stderr + (served / "serve.log").read_text()[-3000:]
    dep = prefect_server.deployment("reskd/predict")
    runs = [r for r in prefect_server.flow_runs(dep["id"]) if r["state"]["type"] == "COMPLETED"]
    return max(runs, key=lambda r: r["end_time"])


def test_predict_deployment_over_a_video_folder_writes_parquet_duckdb_reads(
    prefect_server, served, registered, trained_student, tmp_path
):
    import duckdb

    data = tmp_path / "dataset"
    shutil.copytree(trained_student.videos.parent, data)
    broken = data / "videos" / "letter-A_000.mp4"
    broken.write_bytes(broken.read_bytes()[:256])
    out = tmp_path / "predictions"
    flow_run = _run(
        prefect_server,
        served,
        dataset_uri=str(data),
        model=f"models:/{MODEL}@champion",
        tracking_uri=registered,
        out=str(out),
        overrides=json.dumps(["predict.rows_per_shard=16"]),
    )
    files = sorted(p.name for p in out.glob("*.parquet"))
    assert files == ["predictions-00000.parquet", "predictions-00001.parquet", "predictions-00002.parquet"]
    db = duckdb.connect()
    glob = f"{out}/*.parquet"
    n, errors, models = db.execute(
        f"SELECT count(*), count(error), list(DISTINCT model) FROM '{glob}'"
    ).fetchone()
    assert n == 40 and errors == 1 and models == [f"{MODEL}/1"]
    (reason,) = db.execute(f"SELECT error FROM '{glob}' WHERE video = 'letter-A_000.mp4'").fetchone()
    assert "not a readable video" in reason
    (top1,) = db.execute(
        f"SELECT 100 * avg(CAST(label = true_label AS DOUBLE)) FROM '{glob}' WHERE error IS NULL"
    ).fetchone()

    client = MlflowClient(registered)
    [run] = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        f"tags.`prefect.flow_run_id` = '{flow_run['id']}'",
    )
    assert run.info.status == "FINISHED" and run.data.tags[names.MODEL_VERSION_TAG] == f"{MODEL}/1"
    m = run.data.metrics
    assert m[names.PREDICTED] == 40 and m[names.PREDICT_ERRORS] == 1 and m[names.VIDEOS_PER_S] > 0
    assert m[names.PREDICT_ACCURACY] == pytest.approx(top1) and 0 < m[names.DECODE_SHARE] < 1


def test_predict_deployment_over_shards_on_s3(prefect_server, served, registered, trained_student, s3_server):
    import boto3
    import fsspec
    import pyarrow.parquet as pq

    env = dict(endpoint_url=s3_server["endpoint_url"], key=s3_server["key"], secret=s3_server["secret"])
    bucket = "predict-flow"
    boto3.client(
        "s3",
        endpoint_url=env["endpoint_url"],
        aws_access_key_id=env["key"],
        aws_secret_access_key=env["secret"],
        region_name="us-east-1",
    ).create_bucket(Bucket=bucket)
    fs = fsspec.filesystem("s3", **env)
    fs.put(trained_student.shards + "/", f"{bucket}/shards", recursive=True)
    _run(
        prefect_server,
        served,
        dataset_uri=f"s3://{bucket}/shards",
        model=trained_student.checkpoint,
        tracking_uri=registered,
        out=f"s3://{bucket}/predictions",
    )
    [name] = fs.ls(f"{bucket}/predictions")
    with fs.open(name, "rb") as fh:
        table = pq.read_table(fh).to_pylist()
    assert len(table) == 40 and not any(r["error"] for r in table)
    assert {r["model"] for r in table} == {trained_student.checkpoint}
    assert all(r["true_label"].startswith("letter-") for r in table)
