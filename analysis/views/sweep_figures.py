"""``abm sweep``'s figures, drawn from the per-cell statistics that :mod:`analysis.experiments.sweep`
computed (mean, 95% CI of the mean and n over seeds at one month, as arrays over cells in cell order).

* One parameter: ``figures/sweep.png``, a grid of small panels, one per metric: the mean (line and markers)
  and its 95% CI (shaded) against the parameter's values; a log x axis for log-spaced values, the values as
  ticks for words (a switch's settings). Log y axis for the heavy-tailed metrics when every value is > 0.
* Two parameters: ``figures/<metric>.png``, a heatmap of the mean per metric, the first parameter across
  and the second up, the axes labelled with the values and each cell with its mean (grey: undefined in
  every seed); log colour scale for the heavy-tailed metrics when every mean is > 0.
* Three or more: nothing (the caller says so).

Cells are in the sweep's order, the first parameter varying slowest. Figures are written through a
temporary file, without a timestamp, so that redrawing the same statistics gives the same bytes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .common import (
    FS_LABEL,
    FS_TICK,
    col_info,
    fmt_metric,
    legend,
    new_figure,
    no_data,
    set_log_if_positive,
    style,
    usd_axis,
)

GRID_COLUMNS = 3
# (key, values, log spacing) of each swept parameter.
Param = tuple[str, Sequence[float | str], bool]


def _tick(v: float | str) -> str:
    return v if isinstance(v, str) else f"{v:.4g}"


def _save(fig: Figure, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fig.savefig(tmp, format="png", metadata={"Software": None})
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def draw_lines(path: Path, param: Param, metrics: Sequence[str], stats: dict[str, dict[str, np.ndarray]],
               title: str) -> Path:
    """One panel per metric: mean and 95% CI band over seeds against the parameter's values."""
    key, values, log = param
    words = any(isinstance(v, str) for v in values)
    x = np.arange(len(values), dtype=float) if words else np.array(values, dtype=float)
    ncols = min(GRID_COLUMNS, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig, axes = new_figure(4.2 * ncols, 3.2 * nrows + 0.4, nrows, ncols)
    legend_drawn = False
    for k, ax in enumerate(axes.flat):
        if k >= len(metrics):
            ax.set_visible(False)
            continue
        metric = metrics[k]
        st = stats[metric]
        info = col_info(metric)
        style(ax, info.title, info.unit)
        ax.set_title(info.title, fontsize=FS_LABEL)
        if np.all(np.isnan(st["mean"])):
            no_data(ax, "undefined in every seed")
            if not words and len(x) > 1:
                ax.set_xlim(x.min(), x.max())
        else:
            ax.fill_between(x, st["ci_lo"], st["ci_hi"], color="C0", alpha=0.2, linewidth=0, label="95% CI")
            ax.plot(x, st["mean"], color="C0", lw=1.8, marker="o", ms=4, label="mean")
            if info.log:
                set_log_if_positive(ax, st["mean"], st["ci_lo"], st["ci_hi"])
            if info.kind == "usd":
                usd_axis(ax)
            if not legend_drawn:
                legend(ax, loc="best")
                legend_drawn = True
        if words:
            ax.set_xticks(x)
            ax.set_xticklabels([str(v) for v in values], fontsize=FS_TICK)
            ax.set_xlim(-0.5, len(values) - 0.5)
        elif log and np.all(x > 0):
            ax.set_xscale("log")
        ax.set_xlabel(key, fontsize=FS_LABEL)
    fig.suptitle(f"{title}; mean and 95% CI of the mean", fontsize=FS_LABEL)
    return _save(fig, path)


def draw_heatmap(path: Path, params: tuple[Param, Param], metric: str, mean: np.ndarray, title: str) -> Path:
    """A heatmap of ``mean`` (over cells, first parameter slowest) with the values as axis labels."""
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm, Normalize

    (kx, vx, _), (ky, vy, _) = params
    grid = np.asarray(mean, dtype=float).reshape(len(vx), len(vy)).T  # rows: second parameter
    fig, axes = new_figure(max(5.0, 1.0 * len(vx) + 3.0), max(3.6, 0.6 * len(vy) + 2.2))
    ax = axes[0, 0]
    info = col_info(metric)
    finite = grid[np.isfinite(grid)]
    if info.log and finite.size and np.all(finite > 0):
        norm: Normalize = LogNorm(finite.min(), finite.max())
    else:
        norm = Normalize(finite.min(), finite.max()) if finite.size else Normalize(0.0, 1.0)
    cmap = colormaps["viridis"].with_extremes(bad="0.85")
    im = ax.imshow(np.ma.masked_invalid(grid), origin="lower", aspect="auto", cmap=cmap, norm=norm)
    for (j, i), v in np.ndenumerate(grid):
        dark = math.isfinite(v) and finite.min() != finite.max() and norm(v) < 0.5
        ax.text(i, j, fmt_metric(metric, v), ha="center", va="center", fontsize=FS_TICK,
                color="white" if dark else "black")
    ax.set_xticks(range(len(vx)))
    ax.set_xticklabels([_tick(v) for v in vx], fontsize=FS_TICK)
    ax.set_yticks(range(len(vy)))
    ax.set_yticklabels([_tick(v) for v in vy], fontsize=FS_TICK)
    ax.set_xlabel(kx, fontsize=FS_LABEL)
    ax.set_ylabel(ky, fontsize=FS_LABEL)
    ax.set_title(f"{info.title}: mean", fontsize=FS_LABEL + 1)
    bar = fig.colorbar(im, ax=ax)
    bar.set_label(info.unit, fontsize=FS_LABEL)
    bar.ax.tick_params(labelsize=FS_TICK)
    fig.suptitle(title, fontsize=FS_TICK)
    return _save(fig, path)


def draw_figures(folder: Path, params: Sequence[Param], metrics: Sequence[str],
                 stats: dict[str, dict[str, np.ndarray]], title: str) -> list[Path]:
    """``folder/sweep.png`` for one parameter, ``folder/<metric>.png`` for two, nothing for more; returns
    the paths written. ``stats[metric][stat]`` is an array over cells for stat mean, ci_lo and ci_hi."""
    if not 1 <= len(params) <= 2:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    if len(params) == 1:
        return [draw_lines(folder / "sweep.png", params[0], metrics, stats, title)]
    return [draw_heatmap(folder / f"{m}.png", (params[0], params[1]), m, stats[m]["mean"], title)
            for m in metrics]
