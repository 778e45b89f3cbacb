"""The page's plots drawn from arm records (reskd_core.study.plots)."""

from reskd_core.study.plots import plot_study
from tests.study.plans import made_up_records


def test_plots_are_written(tmp_path):
    cfg, arms, comps, records = made_up_records(5.0)
    plots = plot_study(cfg, arms, records, tmp_path / "results")
    assert len(plots) == 2
    for path in plots.values():
        assert path.parent == tmp_path / "results"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
