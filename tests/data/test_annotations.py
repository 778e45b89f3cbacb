"""The four annotation readers: round trips through extraction and the loader, and clear errors."""

from __future__ import annotations

import json

import pytest

from reskd_core.config import DataConfig, ExtractConfig
from reskd_core.data.annotations import AnnotationError, Sample, hold_out, read_annotations
from reskd_core.data.dataset import ClipDataset
from reskd_core.data.extract import extract
from reskd_core.data.storage import safe_relative
from tests.data.helpers import write_video

KINETICS_CSV = """label,youtube_id,time_start,time_end,split
abseiling,aaa,0,10,train
air drumming,bbb,12.0,22.0,train
abseiling,ccc,5,15,val
air drumming,ddd,1,11,val
"""
SSV2_LABELS = {"Pushing something from left to right": "0", "Holding something": "1"}
SSV2 = [
    {
        "id": "101",
        "label": "pushing a cup from left to right",
        "template": "Pushing [something] from left to right",
        "placeholders": ["a cup"],
    },
    {"id": "102", "label": "holding a pen", "template": "Holding [something]", "placeholders": ["a pen"]},
    {"id": "103", "template": "Holding [something]"},
]
ACTIVITYNET = {
    "version": "VERSION 1.3",
    "database": {
        "vid1": {
            "subset": "training",
            "duration": 30.0,
            "annotations": [
                {"segment": [2.0, 9.5], "label": "Surfing"},
                {"segment": [12.0, 20.0], "label": "Kayaking"},
            ],
        },
        "vid2": {
            "subset": "training",
            "duration": 20.0,
            "annotations": [{"segment": [1.0, 5.0], "label": "Kayaking"}],
        },
        "vid3": {
            "subset": "validation",
            "duration": 25.0,
            "annotations": [{"segment": [0.5, 24.0], "label": "Surfing"}],
        },
        "vid4": {"subset": "testing", "duration": 25.0, "annotations": []},
    },
}


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_mmaction_lists_single_and_multi_label(tmp_path):
    single = read_annotations(_write(tmp_path / "l.txt", "a/clip one.mp4 3\n\nb/two.mp4  0 \n"), "mmaction")
    assert [(s.video, s.labels, s.split) for s in single.samples] == [
        ("a/clip one.mp4", (3,), "train"),
        ("b/two.mp4", (0,), "train"),
    ]
    assert single.class_names == ["0", "1", "2", "3"] and not single.multi_label
    multi = read_annotations(_write(tmp_path / "m.txt", "x y.mp4 1 4\nz.mp4 2\n"), "mmaction", split="val")
    assert multi.multi_label and multi.samples[0].labels == (1, 4) and multi.samples[0].video == "x y.mp4"
    assert {s.split for s in multi.samples} == {"val"}


def test_kinetics_csv(tmp_path):
    ann = read_annotations(_write(tmp_path / "k.csv", KINETICS_CSV), "kinetics")
    assert ann.class_names == ["abseiling", "air drumming"]
    s = ann.samples[1]
    assert (s.id, s.video, s.labels, s.split, s.start, s.end) == (
        "bbb_000012_000022",
        "bbb_000012_000022.mp4",
        (1,),
        "train",
        12.0,
        22.0,
    )
    assert "air drumming/bbb_000012_000022.mp4" in s.alternatives
    assert "air_drumming/bbb_000012_000022.mp4" in s.alternatives
    assert [s.id for s in read_annotations(str(tmp_path / "k.csv"), "kinetics", split="val").samples] == [
        "ccc_000005_000015",
        "ddd_000001_000011",
    ]
    no_column = "\n".join(line.rsplit(",", 1)[0] for line in KINETICS_CSV.splitlines())
    val = read_annotations(_write(tmp_path / "val.csv", no_column), "kinetics", split="val")
    assert {s.split for s in val.samples} == {"val"} and len(val.samples) == 4


def test_ssv2_json(tmp_path):
    labels = _write(tmp_path / "labels.json", json.dumps(SSV2_LABELS))
    ann = read_annotations(_write(tmp_path / "t.json", json.dumps(SSV2)), "ssv2", labels_file=labels)
    assert ann.class_names == ["Pushing something from left to right", "Holding something"]
    assert [(s.id, s.video, s.labels) for s in ann.samples] == [
        ("101", "101.webm", (0,)),
        ("102", "102.webm", (1,)),
        ("103", "103.webm", (1,)),
    ]


def test_activitynet_json(tmp_path):
    ann = read_annotations(_write(tmp_path / "a.json", json.dumps(ACTIVITYNET)), "activitynet")
    assert ann.class_names == ["Kayaking", "Surfing"] and ann.multi_label
    by_id = {s.id: s for s in ann.samples}
    assert set(by_id) == {"vid1", "vid2", "vid3"}  # the testing video has no annotations
    assert by_id["vid1"].labels == (0, 1) and (by_id["vid1"].start, by_id["vid1"].end) == (2.0, 20.0)
    assert by_id["vid1"].video == "v_vid1.mp4" and by_id["vid3"].split == "validation"
    only = read_annotations(str(tmp_path / "a.json"), "activitynet", split="validation")
    assert [s.id for s in only.samples] == ["vid3"] and only.class_names == ann.class_names


@pytest.mark.parametrize(
    ("fmt", "name", "text", "where"),
    [
        ("mmaction", "l.txt", "ok.mp4 1\nno_label.mp4\n", "l.txt:2:"),
        ("mmaction", "l.txt", "ok.mp4 1\nok.mp4 2\n", "listed twice"),
        (
            "kinetics",
            "k.csv",
            "label,youtube_id,time_start\nx,y,1\n",
            "k.csv:1: header lacks column(s) time_end",
        ),
        ("kinetics", "k.csv", "label,youtube_id,time_start,time_end\nx,y,1,2\nx,z,one,2\n", "k.csv:3:"),
        (
            "activitynet",
            "a.json",
            '{"database": {"v": {"annotations": [{"label": "x"}]}}}',
            "'v' annotation 0",
        ),
        ("activitynet", "a.json", '{"database": [1, 2', "a.json:1: invalid JSON"),
    ],
)
def test_bad_annotations_name_the_file_and_line(tmp_path, fmt, name, text, where):
    with pytest.raises(AnnotationError, match="listed twice" if where == "listed twice" else None) as e:
        read_annotations(_write(tmp_path / name, text), fmt)
    assert where in str(e.value) and (name in str(e.value))


def test_ssv2_errors(tmp_path):
    data = _write(tmp_path / "t.json", json.dumps(SSV2))
    with pytest.raises(AnnotationError, match="needs its labels.json"):
        read_annotations(data, "ssv2")
    labels = _write(tmp_path / "labels.json", json.dumps({"Holding something": "0"}))
    with pytest.raises(AnnotationError, match=r"t.json: entry 0 \(id 101\).*not in labels.json"):
        read_annotations(data, "ssv2", labels_file=labels)
    with pytest.raises(AnnotationError, match="does not exist"):
        read_annotations(str(tmp_path / "missing.json"), "ssv2", labels_file=labels)


def test_hold_out_is_per_class_and_order_independent():
    samples = [Sample(f"v{i}", f"c{i % 2}/v{i}.mp4", (i % 2,), "train") for i in range(40)]
    held = hold_out(samples, 0.25)
    val = {s.id for s in held if s.split == "val"}
    assert len(val) == 10 and sum(int(v[1:]) % 2 for v in val) == 5
    assert {s.id for s in hold_out(list(reversed(samples)), 0.25) if s.split == "val"} == val


@pytest.mark.parametrize(
    ("path", "ok"),
    [
        ("a/b.mp4", True),
        ("a b/c d.mp4", True),
        ("./a.mp4", True),
        ("../x.mp4", False),
        ("a/../../x.mp4", False),
        ("/etc/passwd", False),
        ("s3://b/x.mp4", False),
        ("C:/x.mp4", False),
        ("~/x.mp4", False),
        ("", False),
    ],
)
def test_paths_must_stay_inside_the_root(path, ok):
    assert (safe_relative(path) is not None) == ok


def _layout(tmp_path, fmt):
    """Annotation file + videos laid out as each dataset's downloads name them."""
    root = tmp_path / "videos"
    if fmt == "mmaction":
        ann = _write(tmp_path / "list.txt", "cls a/clip 1.mp4 0\ncls b/clip 2.mp4 1\ncls a/clip 3.mp4 0\n")
        files, expect = (
            ["cls a/clip 1.mp4", "cls b/clip 2.mp4", "cls a/clip 3.mp4"],
            {"cls a/clip 1.mp4": 0, "cls b/clip 2.mp4": 1, "cls a/clip 3.mp4": 0},
        )
        return ann, None, files, expect, "train", root
    if fmt == "kinetics":
        ann = _write(tmp_path / "k.csv", KINETICS_CSV)
        files = ["abseiling/aaa_000000_000010.mp4", "air_drumming/bbb_000012_000022.mp4"]
        return ann, None, files, {"aaa_000000_000010": 0, "bbb_000012_000022": 1}, "train", root
    if fmt == "ssv2":
        ann = _write(tmp_path / "t.json", json.dumps(SSV2))
        labels = _write(tmp_path / "labels.json", json.dumps(SSV2_LABELS))
        return (
            ann,
            labels,
            ["101.webm", "102.webm", "103.webm"],
            {"101": 0, "102": 1, "103": 1},
            "train",
            root,
        )
    ann = _write(tmp_path / "a.json", json.dumps(ACTIVITYNET))
    return ann, None, ["v_vid1.mp4", "v_vid2.mp4"], {"vid1": [1, 1], "vid2": [1, 0]}, "training", root


@pytest.mark.parametrize("fmt", ["mmaction", "kinetics", "ssv2", "activitynet"])
def test_round_trip_through_shards_and_loader(tmp_path, fmt):
    ann, labels, files, expect, split, root = _layout(tmp_path, fmt)
    for i, f in enumerate(files):
        write_video(root / f, seed=i)
    cfg = ExtractConfig(
        annotations=ann,
        format=fmt,
        video_root=str(root),
        labels_file=labels,
        short_side=32,
        workers=1,
        max_error_rate=1.0,
        split=split if fmt == "kinetics" else None,
    )
    report = extract(cfg, str(tmp_path / "shards"))
    assert report.rows[split] == len(files)
    ds = ClipDataset(str(tmp_path / "shards"), split, DataConfig(num_segments=3), resolution=32, train=False)
    got = {item["id"]: item["label"].tolist() for item in ds}
    assert got == expect
    assert ds.multi_label == (fmt == "activitynet")
