"""``abm compare``'s figures: ``figures/<metric>.png`` for every headline metric, each scenario's mean over
seeds (line) and 2.5-97.5 percentile band (shaded), month by month, from the seeds' timeseries that
:mod:`analysis.experiments.compare` compared.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..experiments.compare import HEADLINE_METRICS, LOG_METRICS
from ..experiments.ensemble import SeedData, summary_stats

# (title, unit) of each headline metric's figure.
LABELS = {
    "lab_hhi_compute": ("Lab concentration by compute (HHI)", "0-10,000"),
    "lab_hhi_revenue": ("Lab concentration by revenue (HHI)", "0-10,000"),
    "lab_hhi_capital": ("Lab concentration by capital raised (HHI)", "0-10,000"),
    "lab_top3_share_compute": ("Top-3 labs' share of lab compute", "share 0-1"),
    "entry_barrier_usd": ("Entry barrier", "USD"),
    "frontier_capability": ("Frontier capability", "index, -ln reducible loss"),
    "efficiency_share_of_progress": ("Algorithmic efficiency's share of frontier progress", "share 0-1"),
    "marginal_capability_per_usd": ("Marginal capability per training dollar", "capability per USD"),
    "cloud_hhi_capacity": ("Cloud concentration by installed capacity (HHI)", "0-10,000"),
    "spot_price_usd_per_h100e_hour": ("Spot price", "USD per H100e-hour"),
    "labs_active": ("Labs active", "labs"),
    "small_lab_survival_24m": ("Small labs alive at 24 months", "share 0-1"),
    "frontier_training_flop": ("Largest training run", "FLOP"),
    "installed_h100e": ("Installed compute", "H100e"),
}


def draw_figures(folder: Path, names: Sequence[str], data: dict[str, SeedData],
                 metrics: Sequence[str] = HEADLINE_METRICS) -> list[Path]:
    """``folder/<metric>.png`` for every metric: each scenario's mean (line) and 2.5-97.5 percentile band
    (shaded) over months; log scale for :data:`LOG_METRICS`. Returns the paths written."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    folder.mkdir(parents=True, exist_ok=True)
    colors = [f"C{i}" for i in range(10)]
    paths = []
    first = data[names[0]]
    n_seeds = first.values.shape[0]
    for metric in metrics:
        if metric not in first.columns:
            continue
        fig = Figure(figsize=(8, 4.8), dpi=110, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        positive = True
        for k, name in enumerate(names):
            d = data[name]
            j = d.columns.index(metric)
            st = summary_stats(d.values[:, :, j])
            x = np.arange(len(d.months))
            c = colors[k % len(colors)]
            ax.fill_between(x, st["p2_5"], st["p97_5"], color=c, alpha=0.2, linewidth=0)
            ax.plot(x, st["mean"], color=c, lw=1.8, label=f"{name} (mean; band 2.5-97.5%)")
            vals = np.concatenate([st["p2_5"], st["mean"]])
            positive &= bool(np.all(vals[np.isfinite(vals)] > 0))
        if metric in LOG_METRICS and positive:
            ax.set_yscale("log")
        title, unit = LABELS.get(metric, (metric, ""))
        ax.set_title(f"{title} ({unit})" if unit else title, fontsize=11)
        fig.suptitle(f"{metric}: {n_seeds} seeds per scenario, common random numbers", fontsize=8)
        ax.set_ylabel(unit)
        months = first.months
        ticks = list(range(0, len(months), 12))
        ax.set_xticks(ticks)
        ax.set_xticklabels([months[i] for i in ticks], rotation=45, ha="right", fontsize=8)
        ax.set_xlim(-0.5, max(len(months) - 0.5, 0.5))
        ax.set_xlabel("month")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        path = folder / f"{metric}.png"
        tmp = folder / f".{metric}.png.tmp-{os.getpid()}"
        try:
            fig.savefig(tmp, format="png")
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
        paths.append(path)
    return paths
