import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from reskd_core.checkpoint import (
    CheckpointError,
    build_state,
    capture_rng,
    checkpoint_config,
    load_checkpoint,
    model_from_checkpoint,
    restore_rng,
    save_checkpoint,
)
from reskd_core.config import load_config
from reskd_core.models import build_model
from reskd_core.optim import build_optimizer, build_scheduler


def _state(cfg, role="teacher"):
    spec = cfg.teacher if role == "teacher" else cfg.student
    model = build_model(spec.name, num_classes=3, num_frames=2)
    opt = build_optimizer(model, cfg.optim, 8)
    sched = build_scheduler(opt, 2, 10)
    model(torch.randn(2, 2, 3, 32, 32))[0].sum().backward()
    opt.step()
    sched.step()
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    return (
        model,
        opt,
        sched,
        build_state(
            role=role,
            model=model,
            config=cfg,
            epoch=3,
            num_classes=3,
            optimizer=opt,
            scheduler=sched,
            scaler=scaler,
            class_names=["a", "b", "c"],
            history=[{"epoch": 1.0}],
            best={"score": 50.0, "epoch": 2},
        ),
    )


@pytest.fixture
def cfg():
    return load_config(None, ["teacher.name=tsn_tiny", "student.name=tsn_tiny", "data.num_segments=2"])


def test_round_trip_with_weights_only(tmp_path, cfg):
    model, opt, sched, state = _state(cfg)
    path = save_checkpoint(state, str(tmp_path / "run"))  # a directory gets checkpoint.pt
    assert path.endswith("run/checkpoint.pt")
    torch.load(path, weights_only=True)  # every stored object is weights_only-loadable
    back = load_checkpoint(str(tmp_path / "run"))
    assert back["epoch"] == 3 and back["class_names"] == ["a", "b", "c"] and back["best"]["epoch"] == 2
    assert checkpoint_config(back) == cfg
    net, res = model_from_checkpoint(back)
    assert res == cfg.teacher.resolution
    for (k, v), (k2, v2) in zip(model.state_dict().items(), net.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)
    opt2 = build_optimizer(net, cfg.optim, 8)
    sched2 = build_scheduler(opt2, 2, 10)  # the order fit uses: the loaded optimizer state sets the lr
    opt2.load_state_dict(back["optimizer"])
    sched2.load_state_dict(back["scheduler"])
    assert sched2.last_epoch == sched.last_epoch and opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_rng_states_restore_the_same_streams():
    state = capture_rng()
    a = (random.random(), np.random.rand(), torch.rand(3))
    restore_rng(state)
    b = (random.random(), np.random.rand(), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_corrupt_file_gives_a_clear_error_naming_it(tmp_path, cfg):
    _, _, _, state = _state(cfg)
    good = save_checkpoint(state, str(tmp_path / "good.pt"))
    data = Path(good).read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.pt is corrupt or not a PyTorch checkpoint"):
        load_checkpoint(str(bad))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"hello, not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pt is corrupt"):
        load_checkpoint(str(junk))


def test_foreign_and_unsafe_files_are_refused(tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, foreign)
    with pytest.raises(CheckpointError, match=r"foreign\.pt is not a reskd checkpoint"):
        load_checkpoint(str(foreign))
    unsafe = tmp_path / "unsafe.pt"
    with open(unsafe, "wb") as f:  # a pickle that would run code: weights_only refuses it
        pickle.dump({"format": "reskd-checkpoint", "x": print}, f, protocol=2)
    with pytest.raises(CheckpointError, match=r"unsafe\.pt"):
        load_checkpoint(str(unsafe))
    with pytest.raises(CheckpointError, match=r"missing\.pt does not exist"):
        load_checkpoint(str(tmp_path / "missing.pt"))


def test_round_trip_on_s3(s3_bucket, cfg):
    _, _, _, state = _state(cfg, role="student")
    uri = save_checkpoint(state, f"s3://{s3_bucket}/runs/job/checkpoint.pt")
    back = load_checkpoint(uri)
    assert back["role"] == "student" and back["epoch"] == 3
    with pytest.raises(CheckpointError, match=f"s3://{s3_bucket}/runs/none.pt does not exist"):
        load_checkpoint(f"s3://{s3_bucket}/runs/none.pt")


def test_config_from_another_version_is_read(tmp_path, cfg):
    _, _, _, state = _state(cfg)
    state["config"]["future_section"] = {"x": 1}
    state["config"]["kd"]["future_knob"] = 3
    assert checkpoint_config(state) == cfg  # unknown settings dropped
    state["config"]["kd"]["weight"] = -5  # a value this version refuses
    with pytest.raises(CheckpointError, match="kd.weight"):
        checkpoint_config(state)
