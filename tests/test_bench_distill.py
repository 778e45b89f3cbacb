"""The ResKD step benchmark: the step it times is training's, and ``reskd benchmark distill-step`` through
the real CLI on a tiny config, compute-only and fed by the real loader from demo shards."""

import json

import pytest
import torch
from typer.testing import CliRunner

from flows.cli import app
from reskd_core.bench_distill import DistillStep, StepOptions
from reskd_core.config import load_config
from reskd_core.flops import flops_table

runner = CliRunner()
TINY = ["--model", "tsn_tiny", "--frames", "2", "--batch", "4", "--teacher-resolution", "64"]


def _tiny_cfg():
    return load_config(
        None,
        [
            "teacher.name=tsn_tiny",
            "student.name=tsn_tiny",
            "data.num_segments=2",
            "data.batch_size=4",
            "teacher.resolution=64",
            "student.resolution=32",
        ],
    )


def test_the_step_trains_the_student_and_runs_the_teacher_in_batchnorm_train_mode():
    step = DistillStep(_tiny_cfg(), 4, torch.device("cpu"), "fp32", StepOptions(channels_last=False))
    teacher_weights = [p.detach().clone() for p in step.teacher.parameters()]
    student_weights = [p.detach().clone() for p in step.student.parameters()]
    running_mean = step.teacher.backbone.bn1.running_mean.clone()
    clip, target = torch.randn(4, 2, 3, 64, 64), torch.tensor([0, 1, 2, 3])
    step(clip, target)
    assert step.teacher.training and not any(p.requires_grad for p in step.teacher.parameters())
    # the teacher's BatchNorm used batch statistics (its running mean moved), its weights did not
    assert not torch.equal(step.teacher.backbone.bn1.running_mean, running_mean)
    assert all(torch.equal(a, b) for a, b in zip(teacher_weights, step.teacher.parameters(), strict=True))
    changed = [not torch.equal(a, b) for a, b in zip(student_weights, step.student.parameters(), strict=True)]
    assert all(changed), "every student parameter gets a gradient and a step"
    assert step.scheduler.last_epoch == 1


def test_cli_rows_side_by_side_compute_only_and_loader_fed(demo_shards):
    timing = ["--warmup", "1", "--iters", "2", "--rounds", "2", "--resolution", "32"]
    timing += ["--precision", "fp32,bf16"]
    out = runner.invoke(
        app, ["benchmark", "distill-step", *TINY, *timing, "--with-loader", demo_shards, "--json"]
    )
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)
    assert [(r["student_resolution"], r["precision"]) for r in rows] == [(32, "fp32"), (32, "bf16")]
    teacher, student = (flops_table("tsn_tiny", 2, [r], 4)[0].gflops for r in (64, 32))
    for r in rows:
        assert r["compute_clips_per_s"] > 0 and r["loader_clips_per_s"] > 0
        assert r["loader_vs_compute"] == pytest.approx(
            r["loader_clips_per_s"] / r["compute_clips_per_s"], 1e-2
        )
        assert r["bound"] == ("data" if r["loader_vs_compute"] < 0.9 else "compute")
        assert r["step_gflops"] == pytest.approx(teacher + 3 * student, abs=2e-3)
        assert (r["teacher_resolution"], r["frames"], r["batch_size"], r["kd"]) == (64, 2, 4, "pixel_mse")
        assert r["device"].startswith("cpu") and r["rounds"] == 2


def test_cli_table_without_loader():
    out = runner.invoke(
        app, ["benchmark", "distill-step", *TINY, "--resolution", "32", "--precision", "fp32", "--iters", "1"]
    )
    assert out.exit_code == 0, out.output
    assert "ResKD step: tsn_tiny -> tsn_tiny, 2 frames, batch 4" in out.stdout
    assert "loader" not in out.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--resolution", "16"], "below the 32px"),
        (["--resolution", "128"], "above the teacher's"),
        (["--precision", "fp16"], "needs CUDA"),
        (["--precision", "int8"], "precision must be one of"),
    ],
)
def test_cli_refuses_bad_inputs_before_any_work(args, message):
    out = runner.invoke(app, ["benchmark", "distill-step", *TINY, *args])
    assert out.exit_code == 2 and message in out.stdout, out.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cli_refuses_cuda_without_a_gpu():
    out = runner.invoke(app, ["benchmark", "distill-step", *TINY, "--device", "cuda"])
    assert out.exit_code == 2 and "no CUDA device" in out.stdout
