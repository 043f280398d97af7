"""Paper figures Fig. 2 and Fig. 6 from the pipeline's metric files (ADE150 PQ and mIoU).

* **Fig. 2** (Introduction / "Motivation"): (a) the oracle analysis — the training-free baseline
  (frozen pretrained mask generator + frozen CLIP), the same with an oracle mask generator
  (ground-truth masks as proposals) and with an oracle mask classifier (each proposal labelled by
  its best-overlapping ground truth); the paper finds mask classification, not mask generation, to be
  the bottleneck. (b) SMART with the frozen pretrained mask generator next to SMART with a generator
  trained from scratch during the classifier's training: the frozen generator is as good.
* **Fig. 6** (experiments, "training length and data size"): ADE150 PQ against (a) the number of
  training iterations and (b) the fraction of the COCO training data, both on a log axis. The x value
  of each point is the *resolved* training config of its cell (``params.yaml`` ``cells:`` over
  ``train_defaults.<profile>``), never a hard-coded number.

Which cell fills which bar or point is ``params.yaml`` ``report.fig2`` / ``report.fig6``. A cell's
number is the mean over its seeds (``smart.report.collect``); error bars are the sample standard
deviation where a cell has several seeds. A cell without metric files is drawn as absent ("not run");
when no cell of a figure has any metric file the figure is not drawn and an
:class:`~smart.errors.InputError` names the missing files.

The paper's own numbers (``paper_numbers.yaml`` ``figures``) are quoted as text notes only; the
paper's curves are not redrawn. Outputs are byte-for-byte reproducible: fixed size, dpi, font
(DejaVu Sans, bundled with matplotlib, embedded as TrueType) and no timestamps in the files.
"""

from __future__ import annotations

import csv
import io
import logging
import sys
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from smart.config import cell_spec, train_config
from smart.errors import ConfigError, InputError
from smart.io import atomic_path
from smart.report.collect import Stat, cell_metric

__all__ = [
    "DATASET", "FIG2_LABELS", "FIG6_AXES", "Point", "collect_point", "fig2_points", "fig6_points",
    "make_fig2", "make_fig6", "write_plot_csv",
]

DATASET = "ade150"
METRICS = ("PQ", "mIoU")
DPI = 200
FIG_SIZE = (7.0, 3.0)  # inches: one paper text width

# Okabe-Ito colours (colour-blind safe): PQ blue, mIoU vermillion.
COLORS = {"PQ": "#0072B2", "mIoU": "#D55E00"}
MARKERS = {"PQ": "o", "mIoU": "s"}
NOTE_COLOR = "#555555"
NOTE_WIDTH = 150  # characters per line of the figure's footnote

STYLE: dict[str, object] = {
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.6,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "lines.linewidth": 1.2,
    "errorbar.capsize": 2,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "svg.hashsalt": "smart-figures",
    "savefig.dpi": DPI,
    "figure.dpi": DPI,
    "path.simplify": False,
}
PDF_METADATA = {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None}
PNG_METADATA = {"Software": None}

# report.fig2.<panel>.<key> -> bar label
FIG2_LABELS = {
    "baseline": "Baseline\n(frozen generator + CLIP)",
    "oracle_generator": "Oracle mask\ngenerator",
    "oracle_classifier": "Oracle mask\nclassifier",
    "pretrained_frozen": "Frozen pretrained\ngenerator (SMART)",
    "scratch": "Generator trained\nfrom scratch",
}
FIG2_PANELS = {
    "a": "(a) Oracle analysis",
    "b": "(b) Frozen vs. newly trained generator",
}
# report.fig6.<axis> -> (TrainConfig field, x-axis label, CSV file stem, panel title)
FIG6_AXES = {
    "iterations": ("iterations", "training iterations (log scale)", "fig6_iters", "(a) Training length"),
    "fraction": ("fraction", "fraction of COCO training data (log scale)", "fig6_data", "(b) Data size"),
}


@dataclass(frozen=True)
class Point:
    """One bar (Fig. 2) or one point (Fig. 6): a cell's metrics averaged over its seeds."""

    key: str  # the report key (Fig. 2 bar name) or the cell name (Fig. 6)
    cell: str
    seeds: tuple[int, ...]  # the cell's configured seeds
    stats: Mapping[str, Stat]  # metric -> mean/std over the seeds with a value
    x: float | None = None  # Fig. 6: the resolved iterations / data fraction

    @property
    def measured(self) -> bool:
        return any(st.mean is not None for st in self.stats.values())


def _metric_path(metrics_dir: Path, cell: str, seed: int) -> Path:
    return metrics_dir / cell / f"s{seed}" / f"{DATASET}.json"


def collect_point(params: dict, cell: str, metrics_dir: str | Path, *, key: str | None = None,
                  x: float | None = None, source: str | Path | None = None) -> Point:
    """Read ``cell``'s ADE150 metrics over its seeds (``<metrics_dir>/<cell>/s<seed>/ade150.json``)."""
    metrics_dir = Path(metrics_dir)
    seeds = cell_spec(params, cell, source=source).seeds
    stats = {m: cell_metric(metrics_dir, cell, DATASET, m, seeds) for m in METRICS}
    return Point(key or cell, cell, seeds, stats, x)


def expected_files(params: dict, cells: Sequence[str], metrics_dir: str | Path, *,
                   source: str | Path | None = None) -> list[Path]:
    """Every metric file the given cells' seeds should have written (the figure's inputs)."""
    return [_metric_path(Path(metrics_dir), c, s) for c in cells for s in cell_spec(params, c, source=source).seeds]


def _report_section(params: dict, name: str, source: str | Path | None) -> dict:
    report = params.get("report")
    if not isinstance(report, dict) or not isinstance(report.get(name), dict):
        raise ConfigError("missing or not a mapping", path=source, field=f"report.{name}")
    return report[name]


def _require_measured(points: Sequence[Point], params: dict, metrics_dir: str | Path, *, figure: str,
                      field: str, source: str | Path | None) -> None:
    """Raise :class:`InputError` naming the missing metric files when no point has any metric."""
    if any(p.measured for p in points):
        return
    missing = expected_files(params, list(dict.fromkeys(p.cell for p in points)), metrics_dir, source=source)
    shown = ", ".join(str(p) for p in missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
    raise InputError(f"no metrics for any cell of {figure}; missing {shown}", path=missing[0] if missing else None,
                     field=field)


# --------------------------------------------------------------------------------------------------
# data


def fig2_points(params: dict, metrics_dir: str | Path, *,
                source: str | Path | None = None) -> dict[str, list[Point]]:
    """``report.fig2`` panel -> its bars, in the order of params.yaml."""
    fig2 = _report_section(params, "fig2", source)
    panels: dict[str, list[Point]] = {}
    for panel, bars in fig2.items():
        if not isinstance(bars, dict) or not bars:
            raise ConfigError("expected a mapping of bar name -> cell", path=source, field=f"report.fig2.{panel}")
        panels[str(panel)] = [collect_point(params, cell, metrics_dir, key=str(k), source=source)
                              for k, cell in bars.items()]
    return panels


def fig6_points(params: dict, metrics_dir: str | Path, *, profile: str | None = None,
                source: str | Path | None = None) -> dict[str, list[Point]]:
    """``report.fig6`` axis (``iterations`` / ``fraction``) -> its points, sorted by x.

    A point's x is the cell's resolved training config in ``profile`` (default: params ``profile``).
    """
    fig6 = _report_section(params, "fig6", source)
    axes: dict[str, list[Point]] = {}
    for axis, cells in fig6.items():
        if axis not in FIG6_AXES:
            raise ConfigError(f"unknown axis (allowed: {', '.join(FIG6_AXES)})", path=source,
                              field=f"report.fig6.{axis}")
        if not isinstance(cells, list) or not cells:
            raise ConfigError("expected a non-empty list of cells", path=source, field=f"report.fig6.{axis}")
        attr = FIG6_AXES[axis][0]
        points = []
        for cell in cells:
            x = getattr(train_config(params, cell, profile=profile, source=source), attr)
            if not x > 0:
                raise ConfigError(f"cell {cell!r} has {attr} = {x}; a log axis needs a positive value",
                                  path=source, field=f"report.fig6.{axis}")
            points.append(collect_point(params, cell, metrics_dir, x=x, source=source))
        axes[axis] = sorted(points, key=lambda p: (p.x, p.cell))
    return axes


# --------------------------------------------------------------------------------------------------
# CSV plot data (dvc plots)


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _fmt_x(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) >= 1 else f"{x:g}"


def write_plot_csv(points: Sequence[Point], path: str | Path, x_name: str) -> Path:
    """Write ``x_name,cell,PQ,PQ_std,mIoU,mIoU_std,seeds`` rows (measured points only, sorted by x).

    ``seeds`` is the number of seeds averaged; a std is empty with a single seed. The write is atomic.
    """
    path = Path(path)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([x_name, "cell", "PQ", "PQ_std", "mIoU", "mIoU_std", "seeds"])
    for p in sorted(points, key=lambda p: (p.x, p.cell)):
        if not p.measured:
            continue
        pq, miou = p.stats["PQ"], p.stats["mIoU"]
        writer.writerow([_fmt_x(p.x), p.cell, _fmt(pq.mean), _fmt(pq.std), _fmt(miou.mean), _fmt(miou.std),
                         max(pq.n, miou.n)])
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------------
# drawing


def _matplotlib():
    """matplotlib with a headless backend (pyplot is never needed: figures are built directly)."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    return matplotlib


def _new_figure(ncols: int, width_ratios: Sequence[float] | None = None):
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIG_SIZE, dpi=DPI)
    axes = fig.subplots(1, ncols, gridspec_kw={"width_ratios": width_ratios} if width_ratios else None)
    return fig, list(axes) if ncols > 1 else [axes]


def _seed_note(p: Point) -> str:
    if not p.measured:
        return "not run"
    n = max(st.n for st in p.stats.values())
    return f"n = {n} seed" + ("s" if n != 1 else "")


def _top(points: Sequence[Point]) -> float:
    tops = [(st.mean or 0.0) + (st.std or 0.0) for p in points for st in p.stats.values()]
    return max([1.0, *tops])


def _legend(ax, handles: list) -> None:
    """A legend in the title row of ``ax``, right-aligned (clear of the data)."""
    ax.legend(handles=handles, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=len(handles),
              borderaxespad=0.2, handlelength=1.6, columnspacing=1.0)


def _draw_bars(ax, points: Sequence[Point], title: str) -> None:
    width = 0.38
    ymax = _top(points) * 1.15
    for i, p in enumerate(points):
        for j, metric in enumerate(METRICS):
            st = p.stats[metric]
            xpos = i + (j - 0.5) * width
            if st.mean is None:
                if p.measured:
                    ax.text(xpos, 0.02 * ymax, "n/a", ha="center", va="bottom", fontsize=6, color=NOTE_COLOR)
                continue
            ax.bar(xpos, st.mean, width, yerr=st.std, color=COLORS[metric],
                   error_kw={"elinewidth": 0.7, "ecolor": "black"})
            ax.text(xpos, st.mean + (st.std or 0.0) + 0.015 * ymax, f"{st.mean:.1f}", ha="center",
                    va="bottom", fontsize=6)
        if not p.measured:
            ax.text(i, 0.05 * ymax, "not run", ha="center", va="bottom", fontsize=7, color=NOTE_COLOR,
                    style="italic")
    ax.set_xticks(range(len(points)))
    ax.set_xticklabels([f"{FIG2_LABELS.get(p.key, p.key.replace('_', ' '))}\n({_seed_note(p)})" for p in points])
    ax.set_xlim(-0.6, len(points) - 0.4)
    ax.set_ylim(0, ymax)
    ax.set_ylabel(f"{DATASET.upper()} score (%)")
    ax.set_title(title, loc="left")


def _bar_handles() -> list:
    from matplotlib.patches import Patch

    return [Patch(color=COLORS[m], label=m) for m in METRICS]


def _curve_handles() -> list:
    from matplotlib.lines import Line2D

    return [Line2D([], [], color=COLORS[m], marker=MARKERS[m], markersize=3.5,
                   linestyle="-" if m == "PQ" else "--", label=m) for m in METRICS]


def _x_label(axis: str, x: float) -> str:
    if axis == "fraction":
        return f"{100 * x:g}%"
    return f"{int(x)}" if float(x).is_integer() else f"{x:g}"


def _draw_curve(ax, axis: str, points: Sequence[Point]) -> None:
    from matplotlib.ticker import FixedLocator, NullLocator

    _, xlabel, _, title = FIG6_AXES[axis]
    for metric in METRICS:
        pts = [p for p in points if p.stats[metric].mean is not None]
        if not pts:
            continue
        xs = [p.x for p in pts]
        ys = [p.stats[metric].mean for p in pts]
        errs = [p.stats[metric].std or 0.0 for p in pts]
        ax.errorbar(xs, ys, yerr=errs, color=COLORS[metric], marker=MARKERS[metric], markersize=3.5,
                    linestyle="-" if metric == "PQ" else "--", elinewidth=0.7)
        above = metric != "PQ"  # mIoU labels above its points, PQ labels below, clear of the error bars
        for x, y, e in zip(xs, ys, errs):
            ax.annotate(f"{y:.1f}", (x, y + e if above else y - e), textcoords="offset points",
                        xytext=(0, 4 if above else -5),
                        ha="center", va="bottom" if above else "top", fontsize=6, color=COLORS[metric])
    ax.set_xscale("log")
    ticks = sorted({p.x for p in points})
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([_x_label(axis, x) for x in ticks])
    lo, hi = ticks[0], ticks[-1]
    ax.set_xlim(lo / 1.35, hi * 1.35) if lo < hi else ax.set_xlim(lo / 2, hi * 2)
    ax.set_ylim(0, _top(points) * 1.15)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{DATASET.upper()} score (%)")
    ax.set_title(title, loc="left")
    missing = [p.cell for p in points if not p.measured]
    if missing:
        ax.text(0.99, 0.03, "not run: " + ", ".join(missing), transform=ax.transAxes, ha="right", va="bottom",
                fontsize=6, color=NOTE_COLOR, style="italic")


def _finish(fig, title: str, note: str, *, bottom: float) -> None:
    fig.suptitle(title, x=0.01, y=0.985, ha="left", fontsize=9, fontweight="bold")
    fig.text(0.01, 0.015, textwrap.fill(note, NOTE_WIDTH), ha="left", va="bottom", fontsize=6, color=NOTE_COLOR)
    fig.subplots_adjust(left=0.07, right=0.99, top=0.82, bottom=bottom, wspace=0.28)


def _outputs(out: str | Path) -> tuple[Path, Path]:
    out = Path(out)
    if out.suffix.lower() != ".pdf":
        raise ConfigError(f"expected a .pdf path (the .png is written next to it), got {out}", field="--out")
    return out, out.with_suffix(".png")


@contextmanager
def _quiet_font_subsetting() -> Iterator[None]:
    """Silence fontTools' per-glyph INFO records while the PDF embeds its fonts."""
    logger = logging.getLogger("fontTools")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _save(fig, pdf: Path, png: Path) -> None:
    with _quiet_font_subsetting(), atomic_path(pdf) as tmp:
        fig.savefig(tmp, format="pdf", metadata=PDF_METADATA)
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata=PNG_METADATA)


def _style() -> AbstractContextManager:
    return _matplotlib().rc_context(STYLE)


def _paper_note(name: str) -> str:
    from smart.report.tables import paper_numbers

    ref = paper_numbers()["figures"]
    if name == "fig2":
        a = ref["fig2a"]
        return (f"Paper (ADE150, full scale): oracle classifier {a['oracle_classifier_PQ']} PQ / "
                f"{a['oracle_classifier_mIoU']} mIoU, i.e. +{a['gain_over_oracle_generator_PQ']} PQ / "
                f"+{a['gain_over_oracle_generator_mIoU']} mIoU over the oracle generator. (b) {ref['fig2b']}")
    f6 = ref["fig6"]
    return (f"Paper (ADE150, full scale; its FC-CLIP curves are not redrawn): SMART leads FC-CLIP by "
            f"+{f6['lead_at_100_iterations_PQ']} PQ at "
            f"100 iterations and by up to +{f6['max_gain_over_fcclip_data_fraction_PQ']} PQ across data "
            "fractions. Error bars: std over seeds.")


def _profile_of(params: dict, profile: str | None) -> str:
    return profile or str(params.get("profile"))


# --------------------------------------------------------------------------------------------------
# entry points


def make_fig2(params: dict, metrics_dir: str | Path, out: str | Path, *, profile: str | None = None,
              source: str | Path | None = None) -> list[Path]:
    """Draw Fig. 2 to ``out`` (``.pdf``) and its ``.png`` sibling; returns the written paths."""
    pdf, png = _outputs(out)
    panels = fig2_points(params, metrics_dir, source=source)
    _require_measured([p for pts in panels.values() for p in pts], params, metrics_dir, figure="Fig. 2",
                      field="report.fig2", source=source)
    with _style():
        fig, axes = _new_figure(len(panels), [len(pts) + 0.5 for pts in panels.values()])
        for ax, (panel, pts) in zip(axes, panels.items()):
            _draw_bars(ax, pts, FIG2_PANELS.get(panel, f"({panel})"))
        _legend(axes[0], _bar_handles())
        _finish(fig, f"Fig. 2 (reproduced, {_profile_of(params, profile)} profile): oracle analysis and "
                     f"mask generator, {DATASET.upper()}", _paper_note("fig2"), bottom=0.3)
        _save(fig, pdf, png)
    return [pdf, png]


def make_fig6(params: dict, metrics_dir: str | Path, out: str | Path, plots_dir: str | Path, *,
              profile: str | None = None, source: str | Path | None = None) -> list[Path]:
    """Draw Fig. 6 to ``out`` (``.pdf``) and its ``.png`` sibling and write the DVC plot CSVs
    ``<plots_dir>/fig6_iters.csv`` and ``<plots_dir>/fig6_data.csv``; returns the written paths."""
    pdf, png = _outputs(out)
    profile = _profile_of(params, profile)
    axes_points = fig6_points(params, metrics_dir, profile=profile, source=source)
    _require_measured([p for pts in axes_points.values() for p in pts], params, metrics_dir, figure="Fig. 6",
                      field="report.fig6", source=source)
    written = [write_plot_csv(pts, Path(plots_dir) / f"{FIG6_AXES[axis][2]}.csv", FIG6_AXES[axis][0])
               for axis, pts in axes_points.items()]
    with _style():
        fig, axes = _new_figure(len(axes_points))
        for ax, (axis, pts) in zip(axes, axes_points.items()):
            _draw_curve(ax, axis, pts)
        _legend(axes[0], _curve_handles())
        _finish(fig, f"Fig. 6 (reproduced, {profile} profile): training length and data size, "
                     f"{DATASET.upper()}", _paper_note("fig6"), bottom=0.22)
        _save(fig, pdf, png)
    return [pdf, png, *written]
