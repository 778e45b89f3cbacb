"""Deployable files of a trained model: ONNX (checked against PyTorch with onnxruntime) and TorchScript.

Both take a clip batch ``(N, T, 3, H, W)`` at the model's resolution (normalised as the loader does) and
return the logits ``(N, K)``; the batch dimension is dynamic.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)


class LogitsOnly(nn.Module):
    """A :class:`~reskd_core.models.VideoClassifier` that returns the logits alone (what serving needs)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[0]


@dataclass
class ExportReport:
    onnx: str | None
    torchscript: str | None
    frames: int
    resolution: int
    batch: int
    onnx_max_abs_diff: float | None
    torchscript_max_abs_diff: float | None
    atol: float

    @property
    def ok(self) -> bool:
        diffs = [d for d in (self.onnx_max_abs_diff, self.torchscript_max_abs_diff) if d is not None]
        return all(d <= self.atol for d in diffs)

    def as_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def example_input(frames: int, resolution: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """A deterministic normalised-looking clip batch."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, frames, 3, resolution, resolution, generator=g)


def export_onnx(
    model: nn.Module,
    path: str | Path,
    example: torch.Tensor,
    opset: int = 18,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write ``model`` (logits only) as ONNX with a dynamic batch dimension; ``metadata`` goes to the
    model's ``metadata_props`` (``reskd predict`` reads the input spec and class names from there)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = LogitsOnly(model).eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            net,
            (example,),
            dynamo=True,
            opset_version=opset,
            input_names=["clip"],
            output_names=["logits"],
            dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=1024)}},
            verbose=False,
        )
    program.save(str(path))
    if metadata:
        import onnx

        proto = onnx.load(str(path))
        onnx.helper.set_model_props(proto, metadata)
        onnx.save(proto, str(path))
    return path


def export_torchscript(model: nn.Module, path: str | Path, example: torch.Tensor) -> Path:
    """Write ``model`` (logits only) as a traced TorchScript module."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(LogitsOnly(model).eval(), example, check_trace=False)
    traced.save(str(path))
    return path


def onnx_max_abs_diff(path: str | Path, model: nn.Module, batch: torch.Tensor) -> float:
    """Largest |onnxruntime - PyTorch| logit difference on ``batch``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    (got,) = session.run(None, {name: batch.numpy()})
    with torch.no_grad():
        want = LogitsOnly(model).eval()(batch).numpy()
    return float(np.max(np.abs(got - want)))


def torchscript_max_abs_diff(path: str | Path, model: nn.Module, batch: torch.Tensor) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", FutureWarning
        )  # torch.jit is deprecated, still the TorchScript reader
        loaded = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return float((loaded(batch) - LogitsOnly(model).eval()(batch)).abs().max())


def export_model(
    model: nn.Module,
    out_dir: str | Path,
    frames: int,
    resolution: int,
    *,
    name: str = "model",
    batch: int = 2,
    atol: float = 1e-4,
    onnx: bool = True,
    torchscript: bool = True,
    metadata: dict[str, str] | None = None,
) -> ExportReport:
    """Export ``model`` (CPU, eval mode) to ``out_dir/{name}.onnx`` and ``{name}.pt`` and check both.

    The check runs a batch of a different size than the export example, so a batch dimension frozen
    by mistake shows up as an error, not as a silent match.
    """
    model = model.cpu().eval()
    out = Path(out_dir)
    example = example_input(frames, resolution, batch=1)
    check = example_input(frames, resolution, batch=batch, seed=1)
    report = ExportReport(None, None, frames, resolution, batch, None, None, atol)
    if onnx:
        report.onnx = str(export_onnx(model, out / f"{name}.onnx", example, metadata=metadata))
        report.onnx_max_abs_diff = onnx_max_abs_diff(report.onnx, model, check)
    if torchscript:
        report.torchscript = str(export_torchscript(model, out / f"{name}.pt", example))
        report.torchscript_max_abs_diff = torchscript_max_abs_diff(report.torchscript, model, check)
    log.info("exported %s: %s", name, report.as_dict())
    return report


def export_checkpoint(checkpoint: str, out_dir: str | Path, **kwargs) -> ExportReport:
    """Load a reskd checkpoint and :func:`export_model` the network it holds at its resolution, with its
    input spec and class names in the ONNX metadata."""
    import json

    from reskd_core.checkpoint import checkpoint_config, load_checkpoint, model_from_checkpoint
    from reskd_core.data.preprocess import InputSpec
    from reskd_core.predict import ONNX_CLASSES_KEY, ONNX_SPEC_KEY

    state = load_checkpoint(checkpoint)
    model, resolution = model_from_checkpoint(state)
    trained = checkpoint_config(state)
    frames = trained.data.num_segments
    kwargs.setdefault("name", f"{state['role']}_{resolution}px")
    kwargs.setdefault(
        "metadata",
        {
            ONNX_SPEC_KEY: InputSpec.from_config(trained, state["role"]).to_json(),
            ONNX_CLASSES_KEY: json.dumps(list(state.get("class_names") or [])),
        },
    )
    return export_model(model, out_dir, frames, resolution, **kwargs)
