"""``abm sensitivity``'s figures: ``figures/sensitivity-<output>.png``, one per output, from the table rows
that :mod:`analysis.experiments.sensitivity` computed.

* morris: left, horizontal bars of mu* (mean absolute elementary effect) with the bootstrap 95% half-width
  as whiskers, largest on top; right, mu* against sigma with each parameter labelled (far from the diagonal
  and near the x axis: a steady, additive effect; high sigma: interactions or non-linearity).
* sobol: horizontal bars of the first-order index S1 and the total index ST side by side, with their 95%
  half-widths, largest ST on top.

Each figure is drawn with the Agg canvas and written through a temporary file, so that a folder never holds
half a PNG; the same rows give the same bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..experiments.ensemble import atomic_write

FS_TICK, FS_LABEL, FS_TITLE = 8, 9, 10


def _finite(v: float) -> float:
    return v if math.isfinite(v) else 0.0


def _morris(fig, rows: list[dict]) -> None:
    names = [r["parameter"] for r in rows][::-1]
    mu_star = np.array([_finite(r["mu_star"]) for r in rows][::-1])
    conf = np.array([_finite(r["mu_star_conf"]) for r in rows][::-1])
    y = np.arange(len(names))
    ax = fig.add_subplot(1, 2, 1)
    ax.barh(y, mu_star, xerr=conf, color="C0", alpha=0.8, error_kw={"elinewidth": 1, "capsize": 2})
    ax.set_yticks(y)
    ax.set_yticklabels(names, fontsize=FS_TICK)
    ax.set_xlabel("mu* (mean |elementary effect|, 95% CI)", fontsize=FS_LABEL)
    ax.tick_params(axis="x", labelsize=FS_TICK)
    ax.grid(axis="x", alpha=0.3)
    ax2 = fig.add_subplot(1, 2, 2)
    pts = [(r["parameter"], r["mu_star"], r["sigma"]) for r in rows
           if math.isfinite(r["mu_star"]) and math.isfinite(r["sigma"])]
    if pts:
        xs = np.array([p[1] for p in pts])
        ys = np.array([p[2] for p in pts])
        ax2.scatter(xs, ys, color="C1", s=18, zorder=3)
        for name, x, s in pts:
            ax2.annotate(name, (x, s), fontsize=FS_TICK - 1, xytext=(3, 3), textcoords="offset points")
        top = float(max(xs.max(), ys.max(), 0.0))
        if top > 0:
            ax2.plot([0, top], [0, top], color="0.6", lw=0.8, ls="--", label="sigma = mu*")
            ax2.legend(fontsize=FS_TICK, loc="upper left")
    ax2.set_xlabel("mu*", fontsize=FS_LABEL)
    ax2.set_ylabel("sigma (spread of the effects)", fontsize=FS_LABEL)
    ax2.tick_params(labelsize=FS_TICK)
    ax2.grid(alpha=0.3)


def _sobol(fig, rows: list[dict]) -> None:
    names = [r["parameter"] for r in rows][::-1]
    y = np.arange(len(names))
    h = 0.38
    ax = fig.add_subplot()
    for off, key, color, label in ((h / 2, "S1", "C0", "S1 (alone)"), (-h / 2, "ST", "C3", "ST (total)")):
        vals = np.array([_finite(r[key]) for r in rows][::-1])
        conf = np.array([_finite(r[f"{key}_conf"]) for r in rows][::-1])
        ax.barh(y + off, vals, height=h, xerr=conf, color=color, alpha=0.8, label=label,
                error_kw={"elinewidth": 1, "capsize": 2})
    ax.set_yticks(y)
    ax.set_yticklabels(names, fontsize=FS_TICK)
    ax.set_xlabel("share of the output's variance (95% CI)", fontsize=FS_LABEL)
    ax.tick_params(axis="x", labelsize=FS_TICK)
    ax.axvline(0, color="0.4", lw=0.8)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=FS_TICK, loc="lower right")


def draw_figures(folder: Path, method: str, outputs: Sequence[str], rows: Sequence[dict],
                 names: Mapping[str, str], title: str = "") -> list[Path]:
    """``folder/names[output]`` for every output: the morris or sobol figure of its rows (ranked, largest
    first, as in sensitivity.csv). Returns the paths written."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for output in outputs:
        mine = [r for r in rows if r["output"] == output]
        height = max(3.2, 0.32 * len(mine) + 1.6)
        fig = Figure(figsize=(11 if method == "morris" else 8, height), dpi=100, layout="constrained")
        FigureCanvasAgg(fig)
        if method == "morris":
            _morris(fig, mine)
            what = "Morris screening"
        else:
            _sobol(fig, mine)
            what = "Sobol' indices"
        key = "mu_star" if method == "morris" else "ST"
        if not any(math.isfinite(r[key]) for r in mine):
            fig.text(0.5, 0.5, "no index defined: the output is constant or NaN at every point", ha="center",
                     va="center", fontsize=FS_TITLE)
        fig.suptitle(f"{title}: {what} of {output}" if title else f"{what} of {output}", fontsize=FS_TITLE)
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        path = folder / names[output]
        atomic_write(path, buf.getvalue())
        paths.append(path)
    return paths
