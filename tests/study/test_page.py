"""The results page rendered from arm records (what the flow reads back from MLflow):
reskd_core.study.page with its findings and efficiency sections."""

import statistics

from reskd_core.study.page import PageInfo, render_page
from reskd_core.study.stats import Record
from tests.study.plans import made_up_records

NOT_BEATEN = "did not consistently beat the no-KD baseline"


def _info(**kw):
    base = dict(
        command="reskd study --out docs/results.md",
        date="2026-01-01 00:00 UTC",
        machine="test cpu, 2 cores, no GPU",
        wall_s=90.0,
        tracking_uri="http://127.0.0.1:5000",
        experiment="reskd-study",
        parent_run_id="abc123",
        recipe="study_cpu",
        epochs=(10, 10),
        seeds=[0, 1, 2],
        frames=8,
        load_resolution=112,
        dataset={"num_classes": 8, "splits": {"train": 120, "val": 48, "test": 72}, "fingerprint": "f" * 64},
    )
    return PageInfo(**(base | kw))


FLOPS = {"TSN-R50 (16 frames)": {r: 65.4 * (r / 224) ** 2 for r in (224, 144, 112, 96, 72, 56)}}


def test_tables_hold_mean_and_std_of_the_records():
    cfg, arms, comps, records = made_up_records(kd_gain=-5.0)
    page = render_page(_info(), arms, comps, records, FLOPS, None)
    vals = [r.accuracy for r in records if r.arm == "tsn_tiny@56"]
    expected = f"{statistics.fmean(vals):.1f} ± {statistics.stdev(vals):.1f}"
    row = next(line for line in page.splitlines() if line.startswith("| 56 px, no KD |"))
    assert f"| {expected} | 3 | (baseline) |" in row
    kd = [r.accuracy for r in records if r.arm == "tsn_tiny@56+pixel_mse<tsn_tiny@112"]
    diffs = [a - b for a, b in zip(kd, vals, strict=True)]
    row = next(line for line in page.splitlines() if line.startswith("| 56 px, pixel_mse |"))
    assert f"{statistics.fmean(diffs):+.1f} ± {statistics.stdev(diffs):.1f}" in row
    assert f"| {sum(d > 0 for d in diffs)}/3 |" in row
    for comp in comps:
        assert f"## {comp.title}" in page
    assert "`reskd study --out docs/results.md`" in page and "abc123" in page
    assert "Not measured yet" in page  # no throughput JSON given


def test_the_page_says_when_reskd_did_not_help_and_when_it_did():
    page = render_page(_info(), *made_up_records(kd_gain=-40.0)[1:], FLOPS, None)
    assert NOT_BEATEN in page
    page = render_page(_info(), *made_up_records(kd_gain=+40.0)[1:], FLOPS, None)
    assert NOT_BEATEN not in page
    assert "better in all 3 seeds" in page


def test_failed_arms_and_benchmarks_are_reported():
    bench = {
        "rows": [
            {"resolution": r, "videos_per_s": v, "device": "cpu (2 threads)", "batch_size": 1, "rounds": 3}
            for r, v in ((224, 1.0), (112, 3.5), (56, 9.0))
        ],
        "ratio_224_vs_112": 3.5,
        "command": ".venv/bin/python benchmarks/throughput.py",
        "date": "2026-01-01",
    }
    gpu = {
        "device": "Some GPU",
        "throughput": [
            {"resolution": 224, "batch_size": 32, "amp": True, "videos_per_s": 99.0, "gflops": 64.0},
            {"resolution": 112, "batch_size": 128, "amp": True, "videos_per_s": 396.0, "gflops": 16.0},
        ],
        "distillation": {
            "epochs": 30,
            "teacher": "tsn_tiny",
            "teacher_val_top1": 67.19,
            "teacher_seconds": 37.0,
            "student_resolution": 56,
            "student_none_val_top1": 18.75,
            "student_none_seconds": 29.0,
            "student_pixel_mse_val_top1": 34.38,
            "student_pixel_mse_seconds": 28.0,
        },
    }
    cfg, arms, comps, records = made_up_records(0.0)
    info = _info(failed={"tsn_tiny@32 seed 1": "FloatingPointError: nan"})
    page = render_page(info, arms, comps, records, FLOPS, bench, gpu)
    assert "tsn_tiny@32 seed 1: FloatingPointError: nan" in page
    assert "| 112 | 3.50 | 286 | 3.50x | 4.00x |" in page
    assert "**3.50x**" in page
    assert "Some GPU" in page and "| 224 | 32 | - | 99 | - | 1.00x | 1.00x |" in page
    assert "| 112 | 128 | - | 396 | - | 4.00x | 4.00x |" in page
    assert "students at 56 px: none 18.8 (29 s), pixel_mse 34.4 (28 s)" in page


def test_arms_that_did_not_fit_their_training_set_are_flagged():
    cfg, arms, comps, records = made_up_records(kd_gain=0.0)
    stuck = "tsn_tiny@32-down_up"
    records = [
        Record(r.arm, r.seed, r.accuracy, {**r.metrics, "train_top1": 20.0 if r.arm == stuck else 90.0})
        for r in records
    ]
    page = render_page(_info(), arms, comps, records, FLOPS, None)
    diagnosis = next(line for line in page.splitlines() if line.startswith("- **Diagnosis"))
    assert "32 px, down-up (detail lost, scale kept) did not fit its training set" in diagnosis
    sweep = next(line for line in page.splitlines() if line.startswith("- **Resolution sweep"))
    assert "did not fit" not in sweep
    row = next(line for line in page.splitlines() if line.startswith("| 32 px, down-up"))
    assert row.endswith("| 20.0 ± 0.0 | - |")  # train top-1, then the KD share (no KD: none)


def test_the_page_says_the_epoch_is_chosen_on_val_and_reported_on_test():
    cfg, arms, comps, records = made_up_records(kd_gain=0.0)
    page = render_page(_info(), arms, comps, records, FLOPS, None)
    assert "top-1 on the test split (72 videos)" in page
    assert "best epoch, selected on the val split (48 videos" in page
    assert "120 train / 48 val / 72 test videos" in page
    assert "tested on 72 (one video = 1.4 points)" in page
    assert "| arm | GFLOPs/video | last map | test top-1 (%) | n |" in page
    # KD arms show lambda * KD's share of the loss (mean ± std over seeds, percent), others "-"
    row = next(line for line in page.splitlines() if line.startswith("| 56 px, pixel_mse |"))
    assert row.endswith("| 30.0 ± 10.0 |")
    row = next(line for line in page.splitlines() if line.startswith("| 56 px, no KD |"))
    assert row.endswith("| - |")


def test_without_a_test_split_the_page_says_val_chose_and_reports():
    cfg, arms, comps, records = made_up_records(kd_gain=0.0)
    dataset = {"num_classes": 8, "splits": {"train": 180, "val": 60}, "fingerprint": "f" * 64}
    page = render_page(_info(dataset=dataset, report_split="val"), arms, comps, records, FLOPS, None)
    assert "best epoch on the val split (60 videos)" in page and "no test split" in page
    assert "180 train / 60 val videos" in page and "tested on 60" in page


def test_targets_are_judged_on_every_seed():
    from reskd_core.study.arms import Arm
    from reskd_core.study.findings import target_lines
    from reskd_core.study.stats import by_arm

    t = "tsn_tiny@112"
    arms = [
        Arm("tsn_tiny", 112, role="teacher"),
        Arm("tsn_tiny", 56),
        Arm("tsn_tiny", 56, kd="pixel_mse", teacher=t),
        Arm("tsn_tiny_s", 32),
        Arm("tsn_tiny_s", 32, kd="pixel_mse", teacher=t),
    ]
    accs = {
        t: [90.0, 86.0],
        "tsn_tiny@56": [80.0, 80.0],
        f"tsn_tiny@56+pixel_mse<{t}": [86.0, 85.0],  # +6, +5: met
        "tsn_tiny_s@32": [70.0, 70.0],
        f"tsn_tiny_s@32+pixel_mse<{t}": [90.0, 75.0],  # +20, +5: the mean passes, one seed does not
    }
    records = by_arm([Record(k, s, a) for k, v in accs.items() for s, a in enumerate(v)])
    teacher, half, quarter = target_lines(arms, records, "tsn_tiny_s")
    assert "**met** (90.0, 86.0)" in teacher
    assert "(56 px)" in half and "**met** (+6.0, +5.0)" in half
    assert "(32 px) with `tsn_tiny_s`" in quarter and "**missed** (+20.0, +5.0)" in quarter
    records[t][1] = Record(t, 1, 84.0)
    assert "**missed**" in target_lines(arms, records, "tsn_tiny_s")[0]
