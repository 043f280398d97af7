"""Fig. 2 and Fig. 6: PDF + PNG outputs, byte-for-byte reproducibility, DVC plot CSVs, absent cells."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest
import yaml

from smart.cli import main
from smart.config import cell_spec, load_params, train_config
from smart.errors import InputError
from smart.report.figures import fig2_points, fig6_points, make_fig2, make_fig6, write_plot_csv

REPO = Path(__file__).resolve().parents[2]
SMART_PQ = [20.0, 22.0, 27.0]  # the 3-seed `smart` cell


@pytest.fixture(scope="module")
def params() -> dict:
    return load_params(REPO / "params.yaml")


def fig2_cells(params: dict) -> list[str]:
    return [cell for bars in params["report"]["fig2"].values() for cell in bars.values()]


def fig6_cells(params: dict) -> list[str]:
    return list(dict.fromkeys(c for cells in params["report"]["fig6"].values() for c in cells))


def write_metrics(metrics_dir: Path, params: dict, cells: list[str], *, skip: tuple[str, ...] = ()) -> None:
    """Fake ``<cell>/s<seed>/ade150.json`` files: ``smart`` gets SMART_PQ over its seeds."""
    for i, cell in enumerate(cells):
        if cell in skip:
            continue
        for j, seed in enumerate(cell_spec(params, cell).seeds):
            pq = SMART_PQ[j] if cell == "smart" else 10.0 + i
            path = metrics_dir / cell / f"s{seed}" / "ade150.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"PQ": pq, "mIoU": pq + 5.0, "SQ": None}))


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_the_smart_cell_has_three_seeds(params):
    assert len(cell_spec(params, "smart").seeds) == len(SMART_PQ) == 3
    assert all(len(cell_spec(params, c).seeds) == 1 for c in fig2_cells(params) if c != "smart")


def test_fig2_pdf_and_png_are_byte_identical_across_runs(params, tmp_path):
    metrics = tmp_path / "metrics"
    write_metrics(metrics, params, fig2_cells(params))
    first = make_fig2(params, metrics, tmp_path / "a" / "fig2.pdf")
    second = make_fig2(params, metrics, tmp_path / "b" / "fig2.pdf")
    assert [p.name for p in first] == ["fig2.pdf", "fig2.png"]
    pdf, png = (p.read_bytes() for p in first)
    assert pdf.startswith(b"%PDF") and png.startswith(b"\x89PNG")
    assert b"CreationDate" not in pdf and b"Matplotlib" not in pdf
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    assert not list((tmp_path / "a").glob(".*partial"))


def test_fig2_mean_and_std_over_three_seeds(params, tmp_path):
    write_metrics(tmp_path, params, fig2_cells(params))
    bars = {p.key: p for p in fig2_points(params, tmp_path)["b"]}
    pq = bars["pretrained_frozen"].stats["PQ"]
    assert pq.n == 3 and pq.mean == pytest.approx(statistics.fmean(SMART_PQ))
    assert pq.std == pytest.approx(statistics.stdev(SMART_PQ))
    assert bars["scratch"].stats["PQ"].std is None  # one seed: no error bar


def test_fig2_missing_cell_is_drawn_as_not_run(params, tmp_path):
    from matplotlib.figure import Figure

    from smart.report.figures import _draw_bars

    write_metrics(tmp_path / "m", params, fig2_cells(params), skip=("fig2a_oracle_classifier",))
    panels = fig2_points(params, tmp_path / "m")
    absent = [p for p in panels["a"] if not p.measured]
    assert [p.cell for p in absent] == ["fig2a_oracle_classifier"]
    ax = Figure().subplots()
    _draw_bars(ax, panels["a"], "(a)")
    assert "not run" in [t.get_text() for t in ax.texts]
    assert len(ax.patches) == 4  # two bars for each of the two measured cells


def test_fig6_is_reproducible_and_its_csvs_use_the_resolved_train_configs(params, tmp_path):
    write_metrics(tmp_path / "m", params, fig6_cells(params))
    out = make_fig6(params, tmp_path / "m", tmp_path / "fig" / "fig6.pdf", tmp_path / "plots", profile="mini")
    again = make_fig6(params, tmp_path / "m", tmp_path / "again" / "fig6.pdf", tmp_path / "again", profile="mini")
    assert [p.name for p in out] == ["fig6.pdf", "fig6.png", "fig6_iters.csv", "fig6_data.csv"]
    assert [p.read_bytes() for p in out] == [p.read_bytes() for p in again]

    iters = read_csv(tmp_path / "plots" / "fig6_iters.csv")
    expected = sorted(train_config(params, c, profile="mini").iterations for c in params["report"]["fig6"]["iterations"])
    assert expected == [25, 50, 100, 200, 400]
    assert [int(r["iterations"]) for r in iters] == expected
    assert list(iters[0]) == ["iterations", "cell", "PQ", "PQ_std", "mIoU", "mIoU_std", "seeds"]
    smart = next(r for r in iters if r["cell"] == "smart")
    assert float(smart["PQ"]) == pytest.approx(statistics.fmean(SMART_PQ), abs=1e-4)
    assert float(smart["PQ_std"]) == pytest.approx(statistics.stdev(SMART_PQ), abs=1e-4)
    assert float(smart["mIoU"]) == pytest.approx(statistics.fmean(SMART_PQ) + 5.0, abs=1e-4)
    assert smart["seeds"] == "3" and iters[0]["PQ_std"] == "" and iters[0]["seeds"] == "1"

    data = read_csv(tmp_path / "plots" / "fig6_data.csv")
    fractions = sorted(train_config(params, c, profile="mini").fraction for c in params["report"]["fig6"]["fraction"])
    assert [float(r["fraction"]) for r in data] == fractions == [0.02, 0.1, 0.3, 1.0]
    assert data[-1]["cell"] == "smart"


def test_fig6_x_values_follow_the_profile(params, tmp_path):
    write_metrics(tmp_path / "m", params, fig6_cells(params))
    points = fig6_points(params, tmp_path / "m", profile="paper")["iterations"]
    write_plot_csv(points, tmp_path / "fig6_iters.csv", "iterations")
    iters = read_csv(tmp_path / "fig6_iters.csv")
    expected = sorted(train_config(params, c, profile="paper").iterations
                      for c in params["report"]["fig6"]["iterations"])
    assert [int(r["iterations"]) for r in iters] == expected


def test_fig6_leaves_unmeasured_cells_out_of_the_csv(params, tmp_path):
    write_metrics(tmp_path / "m", params, fig6_cells(params), skip=("fig6_iters_a",))
    points = fig6_points(params, tmp_path / "m", profile="mini")["iterations"]
    assert [p.cell for p in points if not p.measured] == ["fig6_iters_a"]
    write_plot_csv(points, tmp_path / "plots" / "fig6_iters.csv", "iterations")
    cells = [r["cell"] for r in read_csv(tmp_path / "plots" / "fig6_iters.csv")]
    assert "fig6_iters_a" not in cells and len(cells) == len(points) - 1


def test_no_inputs_is_an_error_naming_a_file(params, tmp_path):
    with pytest.raises(InputError) as exc:
        make_fig6(params, tmp_path / "none", tmp_path / "fig6.pdf", tmp_path / "plots")
    assert exc.value.path.endswith("ade150.json") and exc.value.field == "report.fig6"
    assert not (tmp_path / "fig6.pdf").exists() and not (tmp_path / "plots").exists()


def test_cli_writes_both_figures_and_exits_2_without_inputs(params, tmp_path, capsys):
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    metrics = tmp_path / "metrics"
    common = ["--params", str(params_file), "--metrics-dir", str(metrics)]

    assert main(["figure", "fig2", *common, "--out", str(tmp_path / "fig2.pdf")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "ade150.json" in err and "Traceback" not in err
    assert not (tmp_path / "fig2.pdf").exists()

    write_metrics(metrics, params, fig2_cells(params))
    assert main(["figure", "fig2", *common, "--out", str(tmp_path / "fig2.pdf"), "--profile", "mini"]) == 0
    assert (tmp_path / "fig2.pdf").is_file() and (tmp_path / "fig2.png").is_file()
    assert main(["figure", "fig2", *common, "--out", str(tmp_path / "fig2.png")]) == 2  # --out must be a .pdf
