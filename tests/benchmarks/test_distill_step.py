"""``benchmarks/distill_step.py`` end to end on a tiny grid: generated shards, the real loader, the JSON."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # about 40 s on 2 cores: 16 generated videos, extraction, the grid


def test_writes_every_row_with_the_device_and_the_command(tmp_path):
    out = tmp_path / "distill_step.json"
    args = ["--model", "tsn_tiny", "--frames", "2", "--batch", "2", "--teacher-resolution", "64"]
    args += ["--resolutions", "32", "--precisions", "fp32", "--iters", "1", "--rounds", "1", "--videos", "16"]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "distill_step.py"), *args, "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["torch"] and result["device"] and "--model tsn_tiny" in result["command"]
    (row,) = result["rows"]
    assert (row["teacher_resolution"], row["student_resolution"], row["precision"]) == (64, 32, "fp32")
    assert row["compute_clips_per_s"] > 0 and row["loader_clips_per_s"] > 0
    assert "loader/compute" in proc.stdout and str(out) in proc.stdout
