"""The GPU benchmark script's parts that need no GPU: its refusal without CUDA and its distillation run."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_benchmark.py"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_benchmark", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_refuses_without_cuda_and_writes_nothing(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(out)], capture_output=True, text=True
    )
    assert proc.returncode != 0 and "no CUDA device" in proc.stderr
    assert not out.exists()


def test_batch_sizes_fill_low_resolutions():
    sizes = _module().batch_sizes(32)
    assert sizes[224] == 32 and sizes[112] == 128 and sizes[56] == 512


def test_distillation_run_on_the_cpu(tmp_path):
    """The same teacher -> no-KD and pixel_mse students the GPU call trains, on a tiny demo, on the CPU."""
    result = _module().distillation(True, tmp_path, "cpu", epochs=2)
    assert result["epochs"] == 2 and result["student_resolution"] == 56
    for key in ("teacher", "student_none", "student_pixel_mse"):
        assert 0.0 <= result[f"{key}_val_top1"] <= 100.0
        assert result[f"{key}_seconds"] > 0
