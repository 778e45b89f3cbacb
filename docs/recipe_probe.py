"""Probe a recipe on extracted shards the way the study trains (``fit`` on replayed batches, best epoch on
val, top-1 on test), without MLflow or Prefect: the quick check behind docs/data.md's design notes.

    .venv/bin/python docs/recipe_probe.py SHARDS --seeds 0 3 --set optim.lr=0.001 \
        --student tsn_tiny:56:none --student tsn_tiny:56:pixel_mse

Prints one JSON line an arm (test top-1, the val curve, seconds). Students distil from that seed's teacher.
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch

from reskd_core.config import Config, load_config, recipe_path
from reskd_core.data.dataset import ClipDataset
from reskd_core.evaluate import evaluate_model
from reskd_core.job import model_for, spec_for
from reskd_core.study.batches import EpochBatches, loader_batches
from reskd_core.train import fit


def train_and_test(cfg: Config, role: str, batches, val, test, num_classes: int, teacher=None) -> dict:
    """Train ``role`` of ``cfg``; the best-val epoch's test top-1, the val curve and the seconds taken."""
    model = model_for(cfg, role, num_classes, seed=cfg.seed)
    best: dict = {"score": -1.0, "state": None, "curve": []}

    def keep_best(_epoch: int, metrics: dict, _dir) -> None:
        best["curve"].append(round(metrics["val_top1"], 1))
        if metrics["val_score"] > best["score"]:
            best.update(score=metrics["val_score"], state=copy.deepcopy(model.state_dict()))

    start = time.perf_counter()
    fit(cfg, role, model, batches, val, num_classes=num_classes, teacher=teacher, on_epoch_end=keep_best)
    model.load_state_dict(best["state"])
    spec = spec_for(cfg, role)
    tested = evaluate_model(
        model,
        test,
        device=torch.device("cpu"),
        resolution=spec.resolution,
        multi_label=False,
        input_mode=spec.input,
    )
    return {
        "model": model,
        "test": round(tested["top1"], 1),
        "curve": best["curve"],
        "s": round(time.perf_counter() - start),
    }


def _report(seed: int, arm: str, result: dict) -> None:
    print(json.dumps({"seed": seed, "arm": arm, **{k: v for k, v in result.items() if k != "model"}}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shards")
    parser.add_argument("--config", default="study_cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--set", action="append", default=[], help="key.path=value override")
    parser.add_argument("--student", action="append", default=[], help="name:resolution:kd_method")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(recipe_path(args.config), [f"data.shards={args.shards}", *args.set])
    load = cfg.teacher.resolution  # clips are loaded at the teacher's size; students down-sample them
    val = loader_batches(ClipDataset(cfg.data.shards, "val", cfg.data, load, train=False), 16)(0)
    test = loader_batches(ClipDataset(cfg.data.shards, "test", cfg.data, load, train=False), 16)(0)
    for seed in args.seeds:
        seeded = cfg.model_copy(update={"seed": seed})
        train = ClipDataset(cfg.data.shards, "train", cfg.data, load, train=True, seed=seed)
        size = cfg.data.batch_size
        batches = EpochBatches(loader_batches(train, size), -(-len(train) // size))
        teacher = train_and_test(seeded, "teacher", batches, val, test, train.num_classes)
        _report(seed, "teacher", teacher)
        for arm in args.student:
            name, res, kd = arm.split(":")
            scfg = seeded.model_copy(
                update={
                    "student": seeded.student.model_copy(update={"name": name, "resolution": int(res)}),
                    "kd": seeded.kd.model_copy(update={"method": kd}),
                }
            )
            net = copy.deepcopy(teacher["model"]) if kd != "none" else None
            out = train_and_test(scfg, "student", batches, val, test, train.num_classes, teacher=net)
            _report(seed, arm, out)


if __name__ == "__main__":
    main()
