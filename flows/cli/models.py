"""``reskd models`` and ``reskd flops``: the model names and what each costs per video."""

from __future__ import annotations

import json

import typer

from flows.cli.common import JsonOption, fail, parse_ints, print_table


def models() -> None:
    """List the model names every command accepts."""
    from reskd_core.models import MODELS, model_summary

    print_table([{"name": n, "description": model_summary(n)} for n in MODELS], ["name", "description"])


def flops(
    model: str = typer.Option("tsn_r50", help="model name (see `reskd models`)"),
    frames: int = typer.Option(16, min=1, help="frames per video"),
    resolution: str = typer.Option("224,144,112,96,72,56", help="one resolution or a comma list"),
    num_classes: int = typer.Option(400, min=2),
    width: int | None = typer.Option(None, help="base width override (ResNets)"),
    convention: str = typer.Option(
        "macs",
        help="macs: multiply-adds of convolutions, linear layers and matmuls (ResNet-50 at 224 px: 4.09 "
        "a frame); fvcore: what fvcore and mmaction2's get_flops count, the same plus the norm layers "
        "(BatchNorm 2 per element at inference, LayerNorm/GroupNorm 5; ResNet-50: 4.11)",
    ),
    as_json: JsonOption = False,
) -> None:
    """GFLOPs per video of a model at one or more resolutions (multiply-adds, or fvcore's count)."""
    from reskd_core.flops import flops_table

    try:
        table = flops_table(model, frames, parse_ints(resolution), num_classes, width, convention)
    except ValueError as e:
        fail(str(e))
    rows = [r.as_dict() for r in table]
    if as_json:
        print(json.dumps(rows))
    else:
        print_table(
            rows,
            ["model", "frames", "resolution", "gflops", "params_m"],
            title=f"GFLOPs per video ({convention})",
        )


COMMANDS = {"models": models, "flops": flops}
