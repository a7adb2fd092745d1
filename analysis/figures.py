"""The figures of the analysis and of fid.py, in one plotting style (matplotlib's Agg canvas, no pyplot state).

    figure = figures.plot_trends(best, fits, threshold=70)      # Figure 1
    figures.save_figure(figure, Path("reports/figures/figure1"))   # figure1.png and figure1.pdf

Figure 1 is drawn as the paper draws it: "Green is linear trend of all models, while blue is linear trend for
models above 70% ImageNet accuracy", each point with its 95% interval as an error bar. Points carry numbers, not
names: a key under the figure names each number's model (numbered by ImageNet top-1, the same in every figure),
and each number is placed where it covers no other number and no point, so a 19-model study stays readable.
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator
from matplotlib.transforms import Bbox

from analysis.reading import dataset_order
from analysis.selection import Best
from analysis.trends import drawn_apart, fit_points, logit, metric_scale, separate_points
from common import fileio

ALL_COLOUR, ABOVE_COLOUR, POINT_COLOUR = "tab:green", "tab:blue", "black"
# models drawn beside the trends, not fitted (trends.drawn_apart: CLIP)
SEPARATE_COLOUR, SEPARATE_LABEL = "tab:orange", "CLIP (LP-FT), not fitted"
RANDOM_LABEL = "random initialisation (hollow; x: the architecture's top-1)"
NEW_COLOUR, NEW_LABEL = "tab:red", "new (beside the reference's models)"
GROUP_COLOURS = {"web-scraped": "tab:blue", "real-world": "tab:orange"}  # fid.py's two kinds of dataset
TEXT_SIZE, SMALL_SIZE, MARKER_SIZE = 8, 6, 4
# Where a point's number may go, in points from the point: the closest positions first, then further out.
LABEL_OFFSETS = [(dx * r, dy * r) for r in (1, 2, 3.5) for dx, dy in
                 ((3, 2), (3, -8), (-9, 2), (-9, -8), (-3, 5), (-3, -11), (5, -3), (-12, -3))]


def new_figure(count: int, width: float = 4.2, height: float = 3.6) -> tuple[Figure, list[Axes]]:
    """A figure of `count` panels, three to a row, with constrained layout."""
    columns = min(3, max(count, 1))
    rows = math.ceil(max(count, 1) / columns)
    figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, [figure.add_subplot(rows, columns, i + 1) for i in range(count)]


def save_figure(figure: Figure, stem: Path, suffixes: Sequence[str] = (".png", ".pdf")) -> list[Path]:
    """Write `stem` with each suffix atomically (PNG at 150 dpi)."""
    if isinstance(figure.get_layout_engine(), ConstrainedLayoutEngine):  # not laid out by place_numbers yet
        figure.draw_without_rendering()  # lays the figure out once; every format reuses it (layout is slow)
        figure.set_layout_engine("none")
    written = []
    for suffix in suffixes:
        buffer = io.BytesIO()
        figure.savefig(buffer, format=suffix[1:], **({"dpi": 150} if suffix == ".png" else {}))
        target = stem.with_suffix(suffix)
        fileio.atomic_write_bytes(target, buffer.getvalue())
        written.append(target)
    return written


def model_numbers(best: list[Best]) -> dict[str, int]:
    """Each model's number in the figures: by ImageNet top-1 (unknown last), then by name."""
    top1 = {b.model: b.imagenet_top1 for b in best}
    order = sorted(top1, key=lambda m: (top1[m] is None, top1[m] or 0.0, m))
    return {model: i for i, model in enumerate(order, start=1)}


def add_key(figure: Figure, numbers: dict[str, int], best: list[Best]) -> None:
    """The key under the figure: each number and its model (with ImageNet top-1; "NEW" for a new model)."""
    top1 = {b.model: b.imagenet_top1 for b in best}
    new = {b.model for b in best if b.new}
    labels = [f"{n}  {m}" + (f" ({top1[m]:.1f}%)" if top1.get(m) is not None else "") + (" NEW" if m in new else "")
              for m, n in numbers.items()]
    handles = [Line2D([], [], linestyle="none") for _ in labels]
    columns = max(1, min(5, len(labels), int(figure.get_figwidth() // 1.6)))  # an entry takes about 1.5 inches
    figure.legend(handles, labels, loc="outside lower center", ncols=columns, fontsize=SMALL_SIZE,
                  handlelength=0, handletextpad=0, frameon=False, title="models", title_fontsize=SMALL_SIZE)


def place_numbers(figure: Figure, requests: list[tuple[Axes, np.ndarray, np.ndarray, list[str]]]) -> None:
    """Lay the figure out, then put each point's number where it overlaps no placed number and no point.

    Candidates are tried nearest first (LABEL_OFFSETS); when every one overlaps something, the one overlapping
    least is kept. Layout is frozen first, since numbers are placed in display coordinates; each distinct text is
    measured once, and a candidate's box is that extent moved to the candidate's position.
    """
    figure.draw_without_rendering()
    figure.set_layout_engine("none")
    renderer = figure.canvas.get_renderer()
    radius = MARKER_SIZE / 2 * figure.dpi / 72
    points_to_pixels = figure.dpi / 72
    for ax, x, y, texts in requests:
        centres = ax.transData.transform(np.column_stack([x, y]))
        taken = [Bbox.from_extents(cx - radius, cy - radius, cx + radius, cy + radius) for cx, cy in centres]
        inside = ax.get_window_extent(renderer)
        extents: dict[str, Bbox] = {}  # each text's box relative to the point it labels
        for i in np.argsort(-centres[:, 1], kind="stable"):  # from the top down
            if texts[i] not in extents:
                probe = _number(ax, texts[i], x[i], y[i], (0, 0))
                extents[texts[i]] = probe.get_window_extent(renderer).translated(*-centres[i])
                probe.remove()
            best = None
            for dx, dy in LABEL_OFFSETS:
                box = extents[texts[i]].translated(centres[i][0] + dx * points_to_pixels,
                                                   centres[i][1] + dy * points_to_pixels)
                cost = sum(_overlap(box, other) for other in taken) + (0 if _within(box, inside) else 1e-3)
                if best is None or cost < best[0]:
                    best = (cost, (dx, dy), box)
                if cost == 0:
                    break
            _number(ax, texts[i], x[i], y[i], best[1])
            taken.append(best[2])


def _number(ax: Axes, text: str, x: float, y: float, offset: tuple[float, float]):
    return ax.annotate(text, (x, y), xytext=offset, textcoords="offset points", fontsize=SMALL_SIZE)


def _overlap(a: Bbox, b: Bbox) -> float:
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return width * height if width > 0 and height > 0 else 0.0


def _within(box: Bbox, outer: Bbox) -> bool:
    return box.x0 >= outer.x0 and box.x1 <= outer.x1 and box.y0 >= outer.y0 and box.y1 <= outer.y1


def _metric_label(row: Best, scale: float, prefix: str = "") -> str:
    label = f"{row.metric} on {row.report_split}"
    if prefix:
        return f"{prefix}({label})"
    return label + (" (x100)" if scale == 100 else "")


def _error_bars(rows: list[Best], scale: float, transform=lambda v: v) -> tuple[np.ndarray, np.ndarray]:
    """Values and asymmetric error bars (2 x n) of the reported split; missing intervals draw no bar."""
    values = transform(np.array([b.report_value for b in rows]) * scale)
    low = transform(np.array([b.report_low for b in rows]) * scale)
    high = transform(np.array([b.report_high for b in rows]) * scale)
    bars = np.nan_to_num(np.vstack([values - low, high - values]), nan=0.0)
    return values, np.clip(bars, 0.0, None)


def _style(row: Best) -> dict[str, Any]:
    """How a point is drawn: a black circle; a star for the groups drawn apart (the CLIP towers, as the paper's
    Figure 8 draws them: beside the ImageNet models' trends, not fitted); a red diamond for a new model (analysed
    against a results file); hollow when the model was fine-tuned from random weights, since the x (its
    architecture's ImageNet top-1) then says nothing about its weights."""
    apart = drawn_apart(row)
    colour = NEW_COLOUR if row.new else SEPARATE_COLOUR if apart else POINT_COLOUR
    label = ", ".join(([NEW_LABEL] if row.new else []) + ([SEPARATE_LABEL] if apart else [])
                      + ([RANDOM_LABEL] if row.random_init else [])) or None
    style = {"fmt": "*" if apart else "D" if row.new else "o",
             "markersize": 9 if apart else MARKER_SIZE + (1 if row.new else 0), "color": colour, "ecolor": colour,
             "label": label}
    if row.random_init:
        style["markerfacecolor"] = "white"
    return style


def _draw_points(ax: Axes, rows: list[Best], x_of: Callable[[Best], float], scale: float,
                 numbers: dict[str, int], transform: Callable = lambda v: v) -> list[tuple]:
    """The points with their error bars, one errorbar call per style (_style) so that each style has one legend
    entry; place_numbers' requests for their numbers."""
    requests, groups = [], {}
    for row in rows:
        groups.setdefault(tuple(sorted(_style(row).items())), []).append(row)
    for style, group in groups.items():
        x = transform(np.array([x_of(b) for b in group], dtype=float))
        y, bars = _error_bars(group, scale, transform)
        ax.errorbar(x, y, yerr=bars, capsize=2, elinewidth=0.8, **dict(style))
        requests.append((ax, x, y, [str(numbers[b.model]) for b in group]))
    return requests


def _fit_line(ax: Axes, fit: dict[str, Any], x_from: float, x_to: float, label: str, log_x: bool = False) -> None:
    colour = ALL_COLOUR if fit["subset"] == "all" else ABOVE_COLOUR
    xs = np.linspace(x_from, x_to, 50)
    ax.plot(10 ** xs if log_x else xs, fit["intercept"] + fit["slope"] * xs, color=colour, label=label)


def _subset_name(fit: dict[str, Any], threshold: float) -> str:
    return "all models" if fit["subset"] == "all" else f"ImageNet top-1 > {threshold:g}%"


def plot_trends(best: list[Best], fits: list[dict[str, Any]], threshold: float = 70.0,
                axes_kind: str = "linear") -> Figure:
    """Figure 1: one panel per dataset, metric against ImageNet top-1, numbered points with interval error bars,
    and the fitted lines for all models (green) and for models above `threshold` (blue). A panel per dataset with a
    fit or with a point drawn apart (CLIP), which may be its only points."""
    datasets = sorted({f["dataset"] for f in fits if f["axes"] == axes_kind}
                      | {b.dataset for b in best if b.imagenet_top1 is not None and drawn_apart(b)}, key=dataset_order)
    figure, axes = new_figure(len(datasets))
    numbers = model_numbers(best)
    transform = logit if axes_kind == "logit" else (lambda v: v)
    requests = []
    for ax, dataset in zip(axes, datasets):
        points, apart = fit_points(best, dataset), separate_points(best, dataset)
        scale = metric_scale([b.report_value for b in points or apart])
        requests += _draw_points(ax, points + apart, lambda b: b.imagenet_top1, scale, numbers, transform)
        x = transform(np.array([b.imagenet_top1 for b in points]))
        for fit in fits:
            if fit["dataset"] != dataset or fit["axes"] != axes_kind or math.isnan(fit["slope"]):
                continue
            x_min = x.min() if fit["subset"] == "all" else transform(np.array([threshold]))[()]
            _fit_line(ax, fit, max(x_min, x.min()), x.max(),
                      f"{_subset_name(fit, threshold)}: slope {fit['slope']:.2f}, r {fit['r']:.2f}")
        ax.set_title(dataset, fontsize=TEXT_SIZE + 1)
        ax.set_xlabel("logit(ImageNet top-1)" if axes_kind == "logit" else "ImageNet top-1 (%)")
        ax.set_ylabel(_metric_label((points or apart)[0], scale, "logit" if axes_kind == "logit" else ""))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=SMALL_SIZE, loc="best")
    add_key(figure, numbers, best)
    place_numbers(figure, requests)
    return figure


def plot_spline(points: list[Best], xs: np.ndarray, curve: np.ndarray, numbers: dict[str, int]) -> Figure:
    """One dataset's metric against ImageNet top-1 with its smoothing spline (`curve` at `xs`)."""
    scale = metric_scale([b.report_value for b in points])
    figure, (ax,) = new_figure(1, width=6.0, height=4.5)
    requests = _draw_points(ax, points, lambda b: b.imagenet_top1, scale, numbers)
    ax.plot(xs, curve, color=ALL_COLOUR, label="smoothing spline")
    ax.set_title(f"{points[0].dataset}: {points[0].metric} vs ImageNet top-1", fontsize=TEXT_SIZE + 1)
    ax.set_xlabel("ImageNet top-1 (%)")
    ax.set_ylabel(_metric_label(points[0], scale))
    ax.legend(fontsize=SMALL_SIZE, loc="best")
    add_key(figure, {b.model: numbers[b.model] for b in points}, points)
    place_numbers(figure, requests)
    return figure


def plot_model_size(best: list[Best], fits: list[dict[str, Any]], threshold: float = 70.0) -> Figure:
    """One panel per dataset: metric against parameter count (log scale), numbered points with error bars, and
    the trend lines for all models (green) and for models above `threshold` (blue) with their slopes per tenfold
    parameters; the groups drawn apart (CLIP) are drawn as in Figure 1, beside the trends and not fitted. Models of
    unknown parameter count are left out; at least one must be known (analyze.make_figures checks)."""
    rows = [b for b in best if b.params is not None and b.params > 0]
    datasets = sorted({b.dataset for b in rows}, key=dataset_order)
    figure, axes = new_figure(len(datasets))
    numbers = model_numbers(best)
    requests = []
    for ax, dataset in zip(axes, datasets):
        points = [b for b in rows if b.dataset == dataset and not drawn_apart(b)]
        apart = [b for b in rows if b.dataset == dataset and drawn_apart(b)]
        scale = metric_scale([b.report_value for b in points or apart])
        requests += _draw_points(ax, points + apart, lambda b: b.params, scale, numbers)
        ax.set_xscale("log")
        size_ticks(ax, [b.params for b in points + apart])
        for fit in fits:
            if fit["dataset"] != dataset or math.isnan(fit["slope"]):
                continue
            models = set(fit["models"].split(","))
            xs = np.log10([b.params for b in points if b.model in models])
            _fit_line(ax, fit, xs.min(), xs.max(), f"{_subset_name(fit, threshold)}: "
                      f"{fit['slope']:+.2f} per 10x parameters", log_x=True)
        ax.set_title(dataset, fontsize=TEXT_SIZE + 1)
        ax.set_xlabel("parameters")
        ax.set_ylabel(_metric_label((points or apart)[0], scale))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=SMALL_SIZE, loc="best")
    add_key(figure, {m: n for m, n in numbers.items() if m in {b.model for b in rows}}, rows)
    place_numbers(figure, requests)
    return figure


def plot_benchmark(rows: list[dict[str, Any]], datasets: Sequence[str], level: float) -> Figure:
    """The leaderboard (analysis/benchmark.py's rows, best first) as a figure: each model's benchmark score with
    its interval, top down by rank, new models as red diamonds, random-init ones hollow, and between neighbours the
    share of resamples on which the upper one scores higher."""
    figure, (ax,) = new_figure(1, width=7.0, height=1.4 + 0.3 * len(rows))
    positions = np.arange(len(rows))[::-1].astype(float)  # rank 1 on top
    for row, y in zip(rows, positions):
        colour = NEW_COLOUR if row["new"] else POINT_COLOUR
        low, high = row["score_low"], row["score_high"]
        bars = None if math.isnan(low) else [[max(row["score"] - low, 0.0)], [max(high - row["score"], 0.0)]]
        ax.errorbar([row["score"]], [y], xerr=bars, fmt="D" if row["new"] else "o", color=colour, ecolor=colour,
                    markersize=MARKER_SIZE + 1, capsize=2, elinewidth=0.8,
                    markerfacecolor="white" if row["random_init"] else colour)
    ax.set_yticks(positions, labels=[f"{row['rank']}. {row['model']}" + (" (new)" if row["new"] else "")
                                     + (" (random init)" if row["random_init"] else "") for row in rows],
                  fontsize=SMALL_SIZE + 1)
    for label, row in zip(ax.get_yticklabels(), rows):
        if row["new"]:
            label.set_color(NEW_COLOUR)
    for row, y in zip(rows[:-1], positions[:-1]):
        if row["p_above_next"] is not None and not math.isnan(row["p_above_next"]):
            ax.annotate(f"{row['p_above_next']:.2f}", (1.0, y - 0.5), xycoords=("axes fraction", "data"),
                        xytext=(4, 0), textcoords="offset points", va="center", fontsize=SMALL_SIZE, color="dimgray")
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel(f"benchmark score: mean of {', '.join(datasets)} (0-100), {level:.0%} interval",
                  fontsize=TEXT_SIZE)
    ax.set_title("Benchmark score [§6]; right: share of resamples ranking each model above the next",
                 fontsize=TEXT_SIZE)
    return figure


def parameter_label(value: float) -> str:
    """A parameter count as plain text (no mathtext): 2.5M, 60M, 1.2B."""
    return f"{value / 1e9:.3g}B" if value >= 1e9 else f"{value / 1e6:.3g}M"


def size_ticks(ax: Axes, counts: Sequence[float], minimum: int = 3) -> None:
    """Readable ticks on a log parameter axis whatever its range (matplotlib's own shows one tick, or none, when
    the counts lie within a decade): powers of ten when the counts span decades, else 1-2-5, 1-2-3-5-7 or every
    digit, else (counts within a factor of about 1.3) evenly spaced ticks from the smallest to the largest count;
    always at least `minimum` ticks inside the counts' range."""
    low, high = min(counts), max(counts)
    for subs in ((1.0,), (1.0, 2.0, 5.0), (1.0, 2.0, 3.0, 5.0, 7.0), tuple(float(d) for d in range(1, 10))):
        ticks = [m * 10.0 ** e for e in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
                 for m in subs if low <= m * 10.0 ** e <= high]
        if len(ticks) >= minimum:
            break
    else:
        ticks = sorted({float(f"{v:.3g}") for v in np.geomspace(low, high, minimum)})
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: parameter_label(value)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    margin = max((high / low) ** 0.05, 1.03)  # beyond the outermost points, so that their markers show whole
    ax.set_xlim(low / margin, high * margin)


def bar_chart(names: list[str], values: list[float], groups: list[str], ylabel: str, title: str) -> Figure:
    """Bars of `values` per name, coloured by group (GROUP_COLOURS), ascending: fid.py's FID per dataset."""
    order = np.argsort(values, kind="stable")
    figure, (ax,) = new_figure(1, width=1.0 + 0.8 * len(names), height=3.5)
    ax.bar([names[i] for i in order], [values[i] for i in order], color=[GROUP_COLOURS[groups[i]] for i in order])
    for group, colour in GROUP_COLOURS.items():
        ax.bar([], [], color=colour, label=group)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=TEXT_SIZE + 1)
    ax.legend(frameon=False, fontsize=TEXT_SIZE)
    ax.tick_params(axis="x", labelrotation=30)
    return figure
