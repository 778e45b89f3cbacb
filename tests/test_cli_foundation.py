import json

from typer.testing import CliRunner

from flows.cli import app

runner = CliRunner()


def test_flops_json_and_table():
    out = runner.invoke(
        app, ["flops", "--model", "tsn_r50", "--frames", "16", "--resolution", "224,112", "--json"]
    )
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)
    assert [r["resolution"] for r in rows] == [224, 112]
    assert {"model", "frames", "resolution", "gflops"} <= set(rows[0])
    assert 64 < rows[0]["gflops"] < 67  # 16 x ~4.1
    table = runner.invoke(app, ["flops", "--model", "tsn_r50", "--frames", "16"])
    assert table.exit_code == 0 and "56" in table.stdout


def test_flops_fvcore_convention_adds_the_norm_layers():
    base = ["flops", "--model", "tsn_r50", "--frames", "1", "--resolution", "224", "--num-classes", "1000"]
    rows = {}
    for convention in ("macs", "fvcore"):
        out = runner.invoke(app, [*base, "--convention", convention, "--json"])
        assert out.exit_code == 0, out.output
        rows[convention] = json.loads(out.stdout)[0]
    assert rows["macs"]["gflops"] == 4.089 and rows["fvcore"]["gflops"] == 4.111
    assert rows["fvcore"]["convention"] == "fvcore"
    out = runner.invoke(app, [*base, "--convention", "ptflops"])
    assert out.exit_code == 2 and "convention" in out.stdout


def test_models_lists_names():
    out = runner.invoke(app, ["models"])
    assert out.exit_code == 0 and "tsm_r50" in out.stdout and "swin3d_s" in out.stdout


def test_unknown_model_and_bad_resolution_exit_non_zero():
    out = runner.invoke(app, ["flops", "--model", "nope"])
    assert out.exit_code == 2 and "unknown model" in out.stdout
    out = runner.invoke(app, ["flops", "--resolution", "224,abc"])
    assert out.exit_code != 0


def test_throughput_json_rows():
    out = runner.invoke(
        app,
        [
            "benchmark",
            "throughput",
            "--model",
            "tsn_tiny",
            "--frames",
            "2",
            "--resolution",
            "112,56",
            "--iters",
            "1",
            "--rounds",
            "1",
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)
    assert [r["resolution"] for r in rows] == [112, 56]
    assert all(r["videos_per_s"] > 0 and r["device"].startswith("cpu") for r in rows)


def test_extract_options_come_from_the_config_fields():
    from reskd_core.config import ExtractConfig

    out = runner.invoke(app, ["extract", "--help"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    for name, field in ExtractConfig.model_fields.items():
        if name != "annotations":  # the command's argument
            assert f"--{name.replace('_', '-')}" in out.stdout, name
        if field.description and name != "annotations":
            assert field.description.split(";")[0][:40] in " ".join(out.stdout.split()), name
    assert "--timeout" in out.stdout and "--config" in out.stdout and "--set" in out.stdout


def test_bad_generated_option_names_the_config_field(tmp_path):
    out = runner.invoke(app, ["demo-data", str(tmp_path / "d"), "--classes", "40"], env={"COLUMNS": "200"})
    assert out.exit_code == 2 and "demo.classes" in out.stdout
    assert not (tmp_path / "d").exists()


def test_every_command_has_help():
    import typer.main

    group = typer.main.get_command(app)
    names = [[n] for n in group.commands if n not in ("benchmark", "stack")]
    names += [["benchmark", "throughput"], ["stack", "--help"]]
    for args in names:
        out = runner.invoke(app, [*args, "--help"] if args[-1] != "--help" else args)
        assert out.exit_code == 0, (args, out.output)
