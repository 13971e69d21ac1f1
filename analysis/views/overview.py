"""Figures drawn from a run folder's tables, CSV or Parquet files (never from a live model).

``overview(run_dir)`` writes ``overview.png``: a 2x3 grid of lab concentration, cloud and vendor
concentration, prices, capability against effective compute, the entry barrier, and lab entry and exit.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from abm.metrics import COLUMNS

from .. import tables
from .common import timeseries_problem

# Drawn in this order, so that the few frontier runs sit on top of the many small ones.
TIER_COLORS = {"small": "tab:blue", "mid": "tab:orange", "frontier": "tab:red"}
TIER_MARKERS = {"small": "o", "mid": "s", "frontier": "D"}
HHI_MODERATE, HHI_HIGH = 1000, 1800


class FigureInputError(ValueError):
    """A run folder that cannot be drawn (missing file or column, no rows)."""


# ------------------------------------------------------------------------------------------------ inputs
def _read(d: Path, name: str, required: list[str] | None = None, **kw) -> pd.DataFrame:
    """Table ``name`` of run folder ``d`` (CSV or Parquet); FigureInputError naming the file if it cannot."""
    return tables.read_table(d, name, required or (), error=FigureInputError, **kw)


def _title(run_dir: Path, ts: pd.DataFrame) -> str:
    name, seed, start = None, None, None
    info = run_dir / "run_info.json"
    if info.is_file():
        try:
            d = json.loads(info.read_text(encoding="utf-8"))
            name, seed, start = d.get("scenario"), d.get("seed"), d.get("start")
        except (OSError, ValueError):
            pass
    if name is None and (run_dir / "scenario.toml").is_file():
        try:
            d = tomllib.loads((run_dir / "scenario.toml").read_text(encoding="utf-8"))
            name, seed, start = d.get("name"), d.get("run", {}).get("seed"), d.get("run", {}).get("start")
        except (OSError, ValueError):
            pass
    name = name or run_dir.resolve().name
    months = len(ts)
    first = start or (str(ts["month"].iloc[0]) if months else "?")
    seed_s = f", seed {seed}" if seed is not None else ""
    return f"Scenario '{name}'{seed_s}: {months} months from {first}"


# ------------------------------------------------------------------------------------------------ helpers
def _month_axis(ax, months: list[str]) -> None:
    n = len(months)
    step = 12 if n > 24 else (3 if n > 6 else 1)  # yearly ticks; finer for short runs
    ticks = list(range(0, n, step))
    ax.set_xticks(ticks)
    ax.set_xticklabels([months[i] for i in ticks], rotation=45, ha="right", fontsize=8)
    ax.set_xlim(-0.5, max(n - 0.5, 0.5))
    ax.set_xlabel("month")


def _legend(ax, *axes, **kw) -> None:
    handles, labels = [], []
    for a in (ax, *axes):
        h, lab = a.get_legend_handles_labels()
        handles += h
        labels += lab
    if len(handles) > 1:
        ax.legend(handles, labels, fontsize=8, framealpha=0.85, **kw)


def _col(df: pd.DataFrame, name: str) -> np.ndarray:
    if name not in df.columns:
        return np.full(len(df), np.nan)
    return pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=float)


def _positive(y: np.ndarray) -> np.ndarray:
    y = y.copy()
    y[~np.isfinite(y) | (y <= 0)] = np.nan
    return y


def _dollars(v: float, _pos=None) -> str:
    if not math.isfinite(v) or v <= 0:
        return ""
    for scale, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if v >= scale:
            return f"${v / scale:g}{unit}"
    return f"${v:g}"


def _no_data(ax, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.5")


# ------------------------------------------------------------------------------------------------ panels
def _panel_lab_hhi(ax, ts, x, months) -> None:
    series = [("lab_hhi_compute", "compute"), ("lab_hhi_revenue", "revenue"), ("lab_hhi_capital", "capital raised")]
    top = 2000.0
    for col, label in series:
        y = _col(ts, col)
        ax.plot(x, y, lw=1.6, label=label)
        if np.isfinite(y).any():
            top = max(top, float(np.nanmax(y)) * 1.1)
    top = min(top, 10500.0)
    ax.axhspan(HHI_MODERATE, HHI_HIGH, color="gold", alpha=0.13, lw=0, label="moderate (1,000-1,800)")
    ax.axhspan(HHI_HIGH, top, color="red", alpha=0.07, lw=0, label="high (> 1,800)")
    ax.set_ylim(0, top)
    ax.set_title("Lab concentration")
    ax.set_ylabel("HHI of lab shares (0-10,000)")
    _month_axis(ax, months)
    _legend(ax, loc="upper left")


def _panel_cloud_vendor(ax, ts, x, months) -> None:
    ax.plot(x, _col(ts, "cloud_hhi_capacity"), lw=1.6, color="tab:blue", label="cloud HHI (capacity online)")
    ax.plot(x, _col(ts, "vendor_hhi_shipments"), lw=1.6, color="tab:purple",
            label="vendor HHI (12-month shipments)")
    ax.set_ylim(0, 10500)
    ax.set_ylabel("HHI (0-10,000)")
    tw = ax.twinx()
    tw.plot(x, 100 * _col(ts, "captive_share_shipments"), lw=1.3, ls="--", color="tab:green",
            label="captive share of shipments (right)")
    tw.set_ylim(0, 100)
    tw.set_ylabel("captive chips, % of H100e shipped")
    ax.set_title("Cloud and chip-vendor concentration")
    _month_axis(ax, months)
    _legend(ax, tw, loc="lower left")


def _panel_prices(ax, ts, x, months) -> None:
    ax.plot(x, _col(ts, "spot_price_usd_per_h100e_hour"), lw=1.6, color="tab:blue", label="spot")
    ax.plot(x, _col(ts, "reserved_price_usd_per_h100e_hour"), ls="none", marker="o", ms=3, color="tab:orange",
            label="reserved (signed this month)")
    ax.set_ylim(bottom=0)
    ax.set_ylabel("$ per H100e-hour")
    tw = ax.twinx()
    tw.plot(x, _col(ts, "chip_price_usd_per_h100e"), lw=1.3, ls="--", color="tab:gray",
            label="chip price (right)")
    tw.set_ylim(bottom=0)
    tw.set_ylabel("chip price, $ per H100e")
    tw.yaxis.set_major_formatter(FuncFormatter(_dollars))
    ax.set_title("Compute and chip prices")
    _month_axis(ax, months)
    _legend(ax, tw, loc="upper right")


def _panel_capability(ax, ts, run_dir: Path) -> None:
    plotted = False
    if tables.has_table(run_dir, "runs"):
        runs = _read(run_dir, "runs", ["lab", "effective_flop", "capability"])
        tiers: dict[str, str] = {}
        if tables.has_table(run_dir, "agents"):
            ag = _read(run_dir, "agents", ["name", "type", "kind"], columns=["name", "type", "kind"])
            labs = ag[ag["type"] == "lab"].drop_duplicates("name")
            tiers = dict(zip(labs["name"].astype(str), labs["kind"].astype(str), strict=True))
        ex = pd.to_numeric(runs["effective_flop"], errors="coerce").to_numpy(dtype=float)
        cap = pd.to_numeric(runs["capability"], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(ex) & (ex > 0) & np.isfinite(cap)
        tier = runs["lab"].astype(str).map(tiers).fillna("").to_numpy()
        if tiers:
            for t, color in TIER_COLORS.items():
                m = ok & (tier == t)
                if m.any():
                    ax.scatter(ex[m], cap[m], s=12, alpha=0.6, color=color, marker=TIER_MARKERS[t], lw=0,
                               zorder=2, label=f"{t}-tier lab runs")
                    plotted = True
            m = ok & ~np.isin(tier, list(TIER_COLORS))
            if m.any():
                ax.scatter(ex[m], cap[m], s=10, alpha=0.55, color="0.5", lw=0, label="other runs")
                plotted = True
        elif ok.any():
            ax.scatter(ex[ok], cap[ok], s=10, alpha=0.55, color="tab:blue", lw=0, label="training runs")
            plotted = True
    fx = _positive(_col(ts, "frontier_effective_flop"))
    fy = _col(ts, "frontier_capability")
    m = np.isfinite(fx) & np.isfinite(fy)
    if m.any():
        ax.plot(fx[m], fy[m], color="black", lw=1.2, alpha=0.8, zorder=1, label="frontier path (monthly)")
        plotted = True
    if plotted:
        ax.set_xscale("log")
    else:
        _no_data(ax, "no completed runs")
    ax.set_title("Capability against effective compute")
    ax.set_xlabel("effective training compute, FLOP (log scale)")
    ax.set_ylabel("capability index")
    _legend(ax, loc="upper left")


def _panel_entry_barrier(ax, ts, x, months) -> None:
    eb = _positive(_col(ts, "entry_barrier_usd"))
    rc = _positive(_col(ts, "frontier_run_cost_usd"))
    if np.isfinite(eb).any() or np.isfinite(rc).any():
        ax.plot(x, eb, lw=1.8, color="tab:red", label="entry barrier (capital to reach viability)")
        ax.plot(x, rc, lw=1.1, ls="--", color="tab:gray", label="cost of largest run in last 12 months")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(_dollars))
    else:
        _no_data(ax, "no finite positive values")
    ax.set_title("Entry barrier")
    ax.set_ylabel("$ (log scale)")
    _month_axis(ax, months)
    _legend(ax, loc="upper left")


def _panel_entry_exit(ax, ts, x, months) -> None:
    alive = _col(ts, "labs_active")
    ax.plot(x, alive, lw=1.8, color="black", label="labs alive (left)")
    ax.set_ylim(0, max(float(np.nanmax(alive)) if np.isfinite(alive).any() else 1.0, 1.0) * 1.15)
    ax.set_ylabel("labs alive")
    tw = ax.twinx()
    ent = np.nan_to_num(_col(ts, "lab_entries"))
    exi = np.nan_to_num(_col(ts, "lab_exits"))
    tw.bar(x, ent, width=0.8, color="tab:green", alpha=0.7, label="entries (right)")
    tw.bar(x, -exi, width=0.8, color="tab:red", alpha=0.7, label="exits (right, downward)")
    lim = max(float(ent.max(initial=0)), float(exi.max(initial=0)), 1.0) * 1.15
    tw.set_ylim(-lim, lim)
    tw.axhline(0, color="0.6", lw=0.6)
    tw.set_ylabel("labs entering (+) / exiting (-) per month")
    tw.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{abs(v):g}"))
    ax.set_zorder(tw.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.set_title("Lab entry and exit")
    _month_axis(ax, months)
    _legend(ax, tw, loc="lower left")


# ------------------------------------------------------------------------------------------------ figure
def overview(run_dir: str | Path) -> Path:
    """Draw the 2x3 overview of a run folder into ``run_dir/overview.png`` and return its path."""
    d = Path(run_dir)
    ts = _read(d, "timeseries", ["month", "step"], dtype={"month": str})
    ts_file = tables.table_file(d, "timeseries")
    if ts.empty:
        raise FigureInputError(f"{ts_file}: no rows")
    bad = timeseries_problem(ts, [c for c in COLUMNS if c != "month"])
    if bad:
        raise FigureInputError(f"{ts_file}: {bad}")
    months = ts["month"].astype(str).tolist()
    x = np.arange(len(ts))

    fig = Figure(figsize=(15, 8.5), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 3)
    _panel_lab_hhi(axes[0, 0], ts, x, months)
    _panel_cloud_vendor(axes[0, 1], ts, x, months)
    _panel_prices(axes[0, 2], ts, x, months)
    _panel_capability(axes[1, 0], ts, d)
    _panel_entry_barrier(axes[1, 1], ts, x, months)
    _panel_entry_exit(axes[1, 2], ts, x, months)
    for ax in axes.flat:
        ax.grid(True, alpha=0.25, lw=0.5)
    fig.suptitle(_title(d, ts), fontsize=13)

    out = d / "overview.png"
    tmp = d / f".overview.png.tmp-{os.getpid()}"
    try:
        fig.savefig(tmp, format="png", dpi=110)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out
