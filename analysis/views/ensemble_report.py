"""The report on an ensemble folder (``abm report`` on the output of ``abm ensemble``): :class:`Ens` read
from ``ensemble.csv``, the headline numbers with their percentile ranges, and every timeseries column as its
mean over seeds with a 2.5-97.5 percentile band, grouped by theme. The band panels and legend are shared
with the comparison report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .common import (
    FS_LEGEND,
    HEADLINE,
    Doc,
    ReportError,
    _col_label,
    _headline_table,
    _read_json,
    col_info,
    esc,
    fmt_metric,
    glossary_html,
    hhi_bands,
    horizon_indices,
    new_figure,
    num,
    read_csv,
    set_log_if_positive,
    si_axis,
    style,
    usd_axis,
    year_axis,
)

ENSEMBLE_GROUPS = [
    ("Concentration and market power",
     ["lab_hhi_compute", "lab_hhi_revenue", "lab_hhi_capital", "lab_top3_share_compute", "lab_gini_capital",
      "cloud_hhi_capacity", "vendor_hhi_shipments", "captive_share_shipments", "vendor_lerner"]),
    ("Capability and returns to compute",
     ["frontier_capability", "median_capability", "frontier_training_flop", "frontier_effective_flop",
      "efficiency_share_of_progress", "marginal_capability_per_usd"]),
    ("Entry, exit and barriers",
     ["labs_active", "lab_entries", "lab_exits", "entry_barrier_usd", "frontier_run_cost_usd",
      "small_lab_survival_24m"]),
    ("Capacity, prices and utilization",
     ["installed_h100e", "installed_gw", "cloud_utilization", "spot_price_usd_per_h100e_hour",
      "reserved_price_usd_per_h100e_hour", "chip_price_usd_per_h100e", "capex_usd"]),
    ("Money flows",
     ["end_user_demand_usd", "lab_revenue_usd", "cloud_revenue_usd", "cloud_backlog_usd",
      "investor_inflow_usd"]),
]



@dataclass
class Ens:
    name: str
    df: pd.DataFrame
    months: list[str]
    columns: list[str]
    n_seeds: int | None
    info: dict


def load_ensemble(d: Path, name: str | None = None) -> Ens:
    df = read_csv(d / "ensemble.csv", ["month", "step"], dtype={"month": str})
    if df.empty:
        raise ReportError(f"{d / 'ensemble.csv'}: no rows")
    cols = []
    for c in df.columns:
        if c.endswith("_mean"):
            base = c[: -len("_mean")]
            if f"{base}_p2_5" in df.columns and f"{base}_p97_5" in df.columns:
                cols.append(base)
    if not cols:
        raise ReportError(f"{d / 'ensemble.csv'}: no <column>_mean/_p2_5/_p97_5 columns")
    info = _read_json(d / "ensemble.json")
    n = info.get("n_seeds")
    return Ens(name or info.get("scenario") or d.resolve().name, df, df["month"].astype(str).tolist(), cols,
               int(n) if isinstance(n, int) else None, info)


def band_panel(ax, e: Ens, col: str, color: str, label: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    x = np.arange(len(e.months))
    mean, lo, hi = num(e.df, f"{col}_mean"), num(e.df, f"{col}_p2_5"), num(e.df, f"{col}_p97_5")
    ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0,
                    label=None if label else "2.5-97.5 percentile band over seeds")
    ax.plot(x, mean, color=color, lw=1.7, label=label or "mean over seeds")
    return mean, lo


def _finish_band(ax, col: str, arrays: list[np.ndarray], months: Sequence[str]) -> None:
    info = col_info(col)
    logged = False
    if info.log:
        logged = set_log_if_positive(ax, *[a[np.isfinite(a)] for a in arrays])
    if info.kind == "hhi":
        top = max([10.0] + [float(np.nanmax(a)) * 1.08 for a in arrays if np.isfinite(a).any()])
        top = min(max(top, 2000.0), 10_300)
        hhi_bands(ax, top)
        ax.set_ylim(0, top)
    if info.kind == "usd":
        usd_axis(ax)
    elif info.kind == "count" and logged:
        si_axis(ax)
    unit = info.unit + (" (log scale)" if logged else "")
    style(ax, info.title, unit)
    year_axis(ax, months)


def grid_shape(k: int, ncols: int = 3) -> tuple[int, int]:
    ncols = min(ncols, max(k, 1))
    return math.ceil(k / ncols), ncols


def band_legend(fig: Figure, series: Sequence[tuple[str, str]], hhi: bool) -> None:
    """One legend below the panels: each (label, colour) as a mean line over its band, and the HHI bands."""
    from matplotlib.legend_handler import HandlerTuple
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles, labels = [], []
    for label, color in series:
        handles.append((Patch(color=color, alpha=0.2, lw=0), Line2D([], [], color=color, lw=1.8)))
        labels.append(label)
    if hhi:
        handles += [Patch(color="gold", alpha=0.3, lw=0), Patch(color="red", alpha=0.12, lw=0)]
        labels += ["HHI moderately concentrated (1,000-1,800)", "HHI highly concentrated (> 1,800)"]
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(handles), 4), fontsize=FS_LEGEND + 1,
               frameon=False, handler_map={tuple: HandlerTuple(ndivide=1)}, handlelength=2.6)


def fig_ensemble_group(e: Ens, cols: Sequence[str]) -> Figure:
    nrows, ncols = grid_shape(len(cols))
    fig, axes = new_figure(5.0 * ncols, 3.5 * nrows + 0.5, nrows, ncols)
    for j, col in enumerate(cols):
        ax = axes[j // ncols, j % ncols]
        mean, lo = band_panel(ax, e, col, "tab:blue")
        hi = num(e.df, f"{col}_p97_5")
        _finish_band(ax, col, [mean, lo, hi], e.months)
    for j in range(len(cols), nrows * ncols):
        axes[j // ncols, j % ncols].set_visible(False)
    seeds = f"{e.n_seeds} seeds" if e.n_seeds else "seeds"
    band_legend(fig, [(f"mean over {seeds} (line) and 2.5-97.5 percentile band (shaded)", "tab:blue")],
                any(col_info(c).kind == "hhi" for c in cols))
    return fig


def ensemble_groups(columns: Sequence[str]) -> list[tuple[str, list[str]]]:
    seen: set[str] = set()
    out = []
    for title, cols in ENSEMBLE_GROUPS:
        present = [c for c in cols if c in columns]
        seen.update(present)
        if present:
            out.append((title, present))
    rest = [c for c in columns if c not in seen]
    if rest:
        out.append(("Other columns", rest))
    return out


def _ens_cell(e: Ens, metric: str, i: int) -> str:
    if f"{metric}_mean" not in e.df.columns:
        return "n/a"
    m = num(e.df, f"{metric}_mean")[i]
    lo, hi = num(e.df, f"{metric}_p2_5")[i], num(e.df, f"{metric}_p97_5")[i]
    s = esc(fmt_metric(metric, m))
    if math.isfinite(lo) and math.isfinite(hi) and lo != hi:
        s += f'<br><small>{esc(fmt_metric(metric, lo))} to {esc(fmt_metric(metric, hi))}</small>'
    return s


def report_ensemble(d: Path) -> Doc:
    e = load_ensemble(d)
    seeds = f"{e.n_seeds} seeds" if e.n_seeds else "several seeds"
    title = f"Ensemble report: scenario '{e.name}', {seeds}"
    desc = e.info.get("description") or ""
    sub = f"{len(e.months)} months from {esc(e.months[0])} to {esc(e.months[-1])}. {esc(desc)}"
    doc = Doc(title, sub)
    doc.section("about", "About this report")
    doc.p(f"This page summarises an <b>ensemble</b>: the same scenario simulated with {seeds} (different random "
          "draws) of an agent-based model of the AI compute market, in which AI labs rent compute from cloud "
          "providers, clouds buy chips from merchant and captive vendors, investors fund labs and labs enter "
          "and exit. For every month it shows the mean over seeds and the range within which 95% of the seeds "
          "fall (2.5th to 97.5th percentile), so that one can tell a robust pattern from the luck of one draw.")
    doc.p("Only the monthly summary (<code>ensemble.csv</code>) is kept for ensembles, not the agents, contracts "
          "and training runs of each seed: the market-share, capability-scatter and network panels of a run "
          "report are not available here. Run one seed with <code>abm run</code> and report on it for those.",
          "note")
    doc.html(glossary_html())
    doc.end()

    idx = horizon_indices(len(e.months))
    doc.section("headline", "Headline numbers",
                "Mean over seeds, and below it the 2.5th to 97.5th percentile range, at the end of the first "
                "month, after five years and after ten years (or the last month).")
    doc.html(_headline_table(HEADLINE, [_col_label(e.months, i) for i in idx],
                             lambda m, j: _ens_cell(e, m, idx[j])))
    doc.end()

    for k, (gtitle, cols) in enumerate(ensemble_groups(e.columns)):
        doc.section(f"group-{k}", gtitle)
        doc.figure(fig_ensemble_group(e, cols),
                   f"{gtitle}: for each month, the mean over {seeds} (line) and the band within which 95% of "
                   "the seeds lie (2.5th to 97.5th percentile, shaded). "
                   + ("HHI panels shade the moderately (1,000-1,800) and highly (above 1,800) concentrated "
                      "ranges. " if any(col_info(c).kind == "hhi" for c in cols) else "")
                   + "Heavy-tailed quantities use a log scale.",
                   f"ensemble bands: {gtitle}")
        doc.end()
    doc.footer_note = (f"Generated by <code>abm report</code> from <code>{esc(d / 'ensemble.csv')}</code>"
                       + (f" (master seed {esc(e.info.get('master_seed'))})" if "master_seed" in e.info else "")
                       + ".")
    return doc
