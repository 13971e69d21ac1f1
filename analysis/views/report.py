"""``abm report DIR``: one self-contained HTML page about a run, an ensemble or a comparison folder.

The kind of folder is recognised by its files: ``timeseries.csv`` (a run, from ``abm run``),
``ensemble.csv`` (an ensemble, from ``abm ensemble``) or ``comparison.csv`` (a comparison, from
``abm compare``). :func:`write_report` writes ``DIR/report.html`` atomically (a temporary file renamed into
place) and returns its path and the number of figures. Every figure is a PNG embedded as base64, the CSS is
inline and there is no external reference, so the file can be mailed or archived on its own.

A run's report: headline numbers at the start, after 5 and after 10 years; market shares of labs, clouds
and chip vendors; concentration (HHI) and the vendors' Lerner index; capability against effective compute
and the split of frontier progress into physical compute and algorithmic efficiency; prices, costs,
utilization and money flows; the entry barrier, entries, exits and survival; the contract network at
several dates. An ensemble's report: every timeseries column with its 2.5-97.5 percentile band over seeds.
A comparison's report: the scenarios overlaid for the headline metrics, and the tables of comparison.md.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

REPORT_NAME = "report.html"
HHI_MODERATE, HHI_HIGH = 1000, 1800
DPI = 100
TOP_LABS = 8
FS_TICK, FS_LABEL, FS_TITLE, FS_LEGEND = 9, 9.5, 11, 8.5  # font sizes (points)
# tab10 without its grey (kept for "rest").
LAB_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22",
               "#17becf"]
REST_COLOR = "#b0b0b0"
VENDOR_COLORS = {"merchant": ["#2c7fb8", "#7fcdbb", "#41b6c4", "#253494"],
                 "captive": ["#e6550d", "#fd8d3c", "#a63603", "#fdae6b", "#d94801"]}


class ReportError(ValueError):
    """A folder that cannot be reported on (missing, unknown kind, unreadable or empty files)."""


# ------------------------------------------------------------------------------------------------ metadata
@dataclass(frozen=True)
class Col:
    title: str
    unit: str
    log: bool = False
    kind: str = ""  # "hhi", "share", "usd", "price", "flop", "count", "index"


COLUMN_INFO: dict[str, Col] = {
    "labs_active": Col("Labs active", "labs", kind="count"),
    "lab_entries": Col("Lab entries", "labs per month", kind="count"),
    "lab_exits": Col("Lab exits", "labs per month", kind="count"),
    "lab_hhi_compute": Col("Lab concentration by compute (HHI)", "HHI, 0-10,000", kind="hhi"),
    "lab_hhi_revenue": Col("Lab concentration by revenue (HHI)", "HHI, 0-10,000", kind="hhi"),
    "lab_hhi_capital": Col("Lab concentration by capital raised (HHI)", "HHI, 0-10,000", kind="hhi"),
    "lab_top3_share_compute": Col("Top-3 labs' share of lab compute", "share, 0-1", kind="share"),
    "lab_gini_capital": Col("Gini of labs' capital raised", "Gini, 0-1", kind="share"),
    "frontier_capability": Col("Frontier capability", "index, -ln reducible loss", kind="index"),
    "median_capability": Col("Median lab capability", "index, -ln reducible loss", kind="index"),
    "frontier_training_flop": Col("Largest training run (physical)", "FLOP", True, "flop"),
    "frontier_effective_flop": Col("Best training run (effective)", "effective FLOP", True, "flop"),
    "frontier_run_cost_usd": Col("Cost of the largest run in the last 12 months", "USD", True, "usd"),
    "entry_barrier_usd": Col("Entry barrier", "USD", True, "usd"),
    "marginal_capability_per_usd": Col("Marginal capability per training dollar", "capability per USD", True,
                                       "index"),
    "efficiency_share_of_progress": Col("Efficiency's share of frontier progress (12 months)", "share, 0-1",
                                        kind="share"),
    "small_lab_survival_24m": Col("Labs born small alive at 24 months", "share, 0-1", kind="share"),
    "cloud_hhi_capacity": Col("Cloud concentration by installed capacity (HHI)", "HHI, 0-10,000", kind="hhi"),
    "cloud_utilization": Col("Cloud utilization", "share of capacity, 0-1", kind="share"),
    "installed_h100e": Col("Installed compute", "H100e", True, "count"),
    "installed_gw": Col("Installed IT power", "GW", kind="index"),
    "capex_usd": Col("Cloud capex", "USD per month", True, "usd"),
    "spot_price_usd_per_h100e_hour": Col("Spot price", "USD per H100e-hour", kind="price"),
    "reserved_price_usd_per_h100e_hour": Col("Reserved price (contracts signed that month)",
                                             "USD per H100e-hour", kind="price"),
    "cloud_backlog_usd": Col("Clouds' contract backlog", "USD", True, "usd"),
    "cloud_revenue_usd": Col("Cloud revenue from compute", "USD per month", True, "usd"),
    "vendor_hhi_shipments": Col("Chip-vendor concentration by shipments (HHI)", "HHI, 0-10,000", kind="hhi"),
    "captive_share_shipments": Col("Captive chips' share of shipments (12 months)", "share, 0-1",
                                   kind="share"),
    "vendor_lerner": Col("Chip vendors' Lerner index (p-c)/p", "index, 0-1", kind="share"),
    "chip_price_usd_per_h100e": Col("Chip price paid", "USD per H100e", kind="usd"),
    "end_user_demand_usd": Col("End-user demand for AI", "USD per month", True, "usd"),
    "lab_revenue_usd": Col("Lab revenue", "USD per month", True, "usd"),
    "investor_inflow_usd": Col("Investor inflow", "USD per month", True, "usd"),
}

# (metric, short name, what it means) for the headline table.
HEADLINE = [
    ("lab_hhi_compute", "Lab concentration by compute (HHI)",
     "Herfindahl-Hirschman index of the labs' shares of compute held, 0-10,000: the sum of squared percentage "
     "shares. Below 1,000 the market is unconcentrated, 1,000-1,800 moderately and above 1,800 highly "
     "concentrated; 10,000 is one lab with everything."),
    ("lab_top3_share_compute", "Top-3 labs' share of compute",
     "Share of all lab compute held by the three largest labs."),
    ("entry_barrier_usd", "Entry barrier",
     "Capital a representative new lab needs to reach a viable capability within its planning horizon, "
     "given that month's prices and frontier."),
    ("frontier_capability", "Frontier capability",
     "Capability index of the best lab: minus the log of its model's reducible loss. +1 means the reducible "
     "loss is divided by e (about 2.7)."),
    ("efficiency_share_of_progress", "Efficiency share of progress",
     "Share of the frontier's growth in effective training compute over the last 12 months that came from "
     "better algorithms rather than more chips (0 = all chips, 1 = all algorithms)."),
    ("marginal_capability_per_usd", "Marginal capability per $",
     "Capability the frontier lab would gain from one more dollar of training compute, shown per $1B. A "
     "falling value means diminishing returns to spending."),
    ("spot_price_usd_per_h100e_hour", "Spot price of compute",
     "Price clearing the monthly spot market, in dollars per hour of one H100-equivalent GPU (H100e)."),
    ("labs_active", "Labs active", "Number of AI labs in business at the end of the month."),
    ("cloud_hhi_capacity", "Cloud concentration by capacity (HHI)",
     "HHI of the cloud providers' shares of installed compute (same scale and bands as for labs)."),
]

GLOSSARY = [
    ("H100e", "compute measured in Nvidia H100-equivalent GPUs; other chips count by their performance."),
    ("HHI", "Herfindahl-Hirschman index, the sum of squared market shares in percent (0-10,000). Bands: "
            "below 1,000 unconcentrated, 1,000-1,800 moderately, above 1,800 highly concentrated."),
    ("Effective compute", "physical training FLOP multiplied by the lab's algorithmic efficiency, the "
                          "compute a lab would need with the reference algorithms to train as good a model."),
    ("Capability", "minus the log of the model's reducible loss under a Chinchilla-type scaling law; it grows "
                   "with the log of effective compute, so each tenfold increase adds about the same amount."),
    ("Lerner index", "(price - marginal cost) / price: a vendor's margin, 0 under perfect competition."),
    ("Captive vendor", "a cloud's own chip line (TPU, Trainium, Maia), as opposed to merchant vendors that "
                       "sell to every cloud (Nvidia, AMD)."),
    ("Reserved / spot", "reserved contracts fix a volume and price for months or years; the spot market "
                        "clears each month's leftover capacity."),
]

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


def col_info(name: str) -> Col:
    return COLUMN_INFO.get(name, Col(name.replace("_", " "), ""))


# ------------------------------------------------------------------------------------------------ inputs
def detect_kind(d: Path) -> str:
    """``"run"``, ``"ensemble"`` or ``"comparison"`` from the files in ``d``; ReportError otherwise."""
    if not d.exists():
        raise ReportError(f"{d}: folder not found")
    if not d.is_dir():
        raise ReportError(f"{d}: not a directory")
    if (d / "timeseries.csv").is_file():
        return "run"
    if (d / "ensemble.csv").is_file():
        return "ensemble"
    if (d / "comparison.csv").is_file():
        return "comparison"
    raise ReportError(f"{d}: no timeseries.csv, ensemble.csv or comparison.csv; give a folder written by "
                      "'abm run', 'abm ensemble' or 'abm compare'")


def read_csv(path: Path, required: Sequence[str] = (), **kw) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, **kw)
    except FileNotFoundError:
        raise ReportError(f"{path}: file not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise ReportError(f"{path}: cannot parse CSV: {' '.join(str(exc).split())}") from None
    except OSError as exc:
        raise ReportError(f"{path}: cannot read: {exc.strerror or exc}") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ReportError(f"{path}: missing columns {', '.join(missing)}")
    return df


def _read_json(path: Path) -> dict:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def _optional(path: Path, required: Sequence[str], **kw) -> pd.DataFrame | None:
    return read_csv(path, required, **kw) if path.is_file() else None


def num(df: pd.DataFrame, name: str) -> np.ndarray:
    if name not in df.columns:
        return np.full(len(df), np.nan)
    return pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=float)


def positive(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=float).copy()
    y[~np.isfinite(y) | (y <= 0)] = np.nan
    return y


# ------------------------------------------------------------------------------------------------ formatting
def usd(v: float, _pos=None) -> str:
    if v is None or not math.isfinite(v):
        return ""
    sign = "-" if v < 0 else ""
    v = abs(v)
    for scale, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if v >= scale:
            return f"{sign}${v / scale:.3g}{unit}"
    return f"{sign}${v:.3g}" if v >= 1 else f"{sign}${v:.2g}"


def fmt_metric(metric: str, v) -> str:
    """A value of a headline metric, with its unit, for a table cell."""
    if v is None or not math.isfinite(float(v)):
        return "n/a"
    v = float(v)
    kind = col_info(metric).kind
    if metric == "marginal_capability_per_usd":
        return f"{v * 1e9:.3g} per $1B"
    if metric == "spot_price_usd_per_h100e_hour" or metric == "reserved_price_usd_per_h100e_hour":
        return f"${v:.2f}/h"
    if kind == "hhi":
        return f"{v:,.0f}"
    if kind == "share":
        return f"{100 * v:.1f}%"
    if kind == "usd":
        return usd(v)
    if kind == "flop":
        return f"{v:.2e}"
    if kind == "count":
        return f"{v:,.1f}" if v != round(v) else f"{v:,.0f}"
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.3e}"


def hhi_class(v: float) -> str:
    if not math.isfinite(v):
        return "undefined"
    return "unconcentrated" if v < HHI_MODERATE else ("moderately concentrated" if v < HHI_HIGH
                                                      else "highly concentrated")


def horizon_indices(n: int) -> list[int]:
    """Row indices of the headline columns: months 1, 60 and 120 (or the last month), without repeats."""
    out: list[int] = []
    for m in (1, 60, 120):
        i = min(m, n) - 1
        if i >= 0 and i not in out:
            out.append(i)
    return out


def esc(s) -> str:
    return html.escape(str(s), quote=True)


# ------------------------------------------------------------------------------------------------ figures
def new_figure(w: float, h: float, nrows: int = 1, ncols: int = 1, **kw):
    fig = Figure(figsize=(w, h), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def png_base64(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def year_axis(ax, months: Sequence[str], label: bool = True) -> None:
    """Ticks every 12 months, at each January, labelled YYYY (the first month if no January is shown)."""
    n = len(months)
    ticks = [i for i, m in enumerate(months) if str(m).endswith("-01")]
    labels = [str(months[i])[:4] for i in ticks]
    xlabel = "year (ticks at January)"
    if len(ticks) < 2:  # a run shorter than two years: quarterly ticks, labelled YYYY-MM
        ticks = list(range(0, n, 3))
        labels = [str(months[i]) for i in ticks]
        xlabel = "month (YYYY-MM)"
    ax.set_xticks(ticks)
    ax.set_xticklabels(labels, fontsize=FS_TICK)
    if n <= 36:
        ax.set_xticks(range(n), minor=True)
    ax.set_xlim(-0.5, max(n - 0.5, 0.5))
    if label:
        ax.set_xlabel(xlabel, fontsize=FS_LABEL)


def hhi_bands(ax, top: float) -> None:
    ax.axhspan(HHI_MODERATE, HHI_HIGH, color="gold", alpha=0.15, lw=0, label="moderate (1,000-1,800)")
    ax.axhspan(HHI_HIGH, max(top, HHI_HIGH), color="red", alpha=0.06, lw=0, label="high (> 1,800)")


def _minor_log(ax, fmt: Callable[[float], str]) -> FuncFormatter:
    """Minor-tick labels of a log axis: at 2x and 5x, and only when the axis spans less than ~1.5 decades."""

    def f(v, _pos=None):
        lo, hi = ax.get_ylim()
        if not (v > 0 and lo > 0 and hi > lo) or math.log10(hi / lo) > 1.5:
            return ""
        mant = round(v / 10 ** math.floor(math.log10(v)), 6)
        return fmt(v) if mant in (2.0, 5.0) else ""

    return FuncFormatter(f)


def usd_axis(ax) -> None:
    ax.yaxis.set_major_formatter(FuncFormatter(usd))
    if ax.get_yscale() == "log":
        ax.yaxis.set_minor_formatter(_minor_log(ax, usd))


def si(v: float, _pos=None) -> str:
    """1.5e6 -> '1.5M' (plain counts on a log axis)."""
    if not math.isfinite(v) or v <= 0:
        return ""
    for scale, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if v >= scale:
            return f"{v / scale:g}{unit}"
    return f"{v:g}"


def si_axis(ax) -> None:
    ax.yaxis.set_major_formatter(FuncFormatter(si))
    ax.yaxis.set_minor_formatter(_minor_log(ax, si))


def no_data(ax, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.45", fontsize=10)


def style(ax, title: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=FS_TITLE)
    ax.set_ylabel(ylabel, fontsize=FS_LABEL)
    ax.tick_params(which="both", labelsize=FS_TICK)
    ax.grid(True, alpha=0.25, lw=0.5)


def legend(ax, *others, **kw) -> None:
    handles, labels = [], []
    for a in (ax, *others):
        h, lab = a.get_legend_handles_labels()
        handles += h
        labels += lab
    if handles:
        kw.setdefault("fontsize", FS_LEGEND)
        kw.setdefault("framealpha", 0.85)
        ax.legend(handles, labels, **kw)


def set_log_if_positive(ax, *arrays) -> bool:
    vals = np.concatenate([np.asarray(a, dtype=float).ravel() for a in arrays]) if arrays else np.array([])
    vals = vals[np.isfinite(vals)]
    if vals.size and np.all(vals > 0):
        ax.set_yscale("log")
        return True
    return False


# ------------------------------------------------------------------------------------------------ document
@dataclass
class Doc:
    """The HTML page being built: sections of HTML, figures numbered in order."""

    title: str
    subtitle: str = ""
    footer_note: str = ""
    parts: list[str] = field(default_factory=list)
    toc: list[tuple[str, str]] = field(default_factory=list)
    n_figures: int = 0

    def section(self, anchor: str, title: str, intro: str = "") -> None:
        self.toc.append((anchor, title))
        self.parts.append(f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>')
        if intro:
            self.parts.append(f"<p>{intro}</p>")

    def end(self) -> None:
        self.parts.append("</section>")

    def html(self, text: str) -> None:
        self.parts.append(text)

    def p(self, text: str, cls: str = "") -> None:
        c = f' class="{cls}"' if cls else ""
        self.parts.append(f"<p{c}>{text}</p>")

    def figure(self, fig: Figure, caption: str, alt: str) -> None:
        self.n_figures += 1
        data = png_base64(fig)
        self.parts.append(
            f'<figure><img alt="{esc(alt)}" src="data:image/png;base64,{data}">'
            f"<figcaption><b>Figure {self.n_figures}.</b> {caption}</figcaption></figure>")

    def render(self, footer: str) -> str:
        toc = "".join(f'<li><a href="#{esc(a)}">{esc(t)}</a></li>' for a, t in self.toc)
        count = (f"This report contains {self.n_figures} figure{'s' if self.n_figures != 1 else ''}, "
                 "embedded in this file.")
        return (
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<meta name=\"abm-figure-count\" content=\"{self.n_figures}\">\n"
            f"<title>{esc(self.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
            f"<h1>{esc(self.title)}</h1>\n<p class=\"subtitle\">{self.subtitle}</p>\n"
            f"<nav><b>Contents</b><ol>{toc}</ol><p class=\"count\">{count}</p></nav>\n"
            + "\n".join(self.parts)
            + f"\n<footer><p>{footer}</p><p>{count}</p></footer>\n</main>\n</body>\n</html>\n")


CSS = """
body{font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Helvetica,Arial,sans-serif;color:#1d2328;
background:#f4f5f7;margin:0;line-height:1.5}
main{max-width:1240px;margin:0 auto;padding:24px 32px 48px;background:#fff}
h1{font-size:1.7em;margin:0.2em 0 0.1em}h2{font-size:1.3em;border-bottom:2px solid #dfe3e8;
padding-bottom:4px;margin-top:2em}h3{font-size:1.08em;margin-top:1.4em}
.subtitle{color:#4a5560;margin-top:0}nav{background:#f7f8fa;border:1px solid #e3e6ea;border-radius:6px;
padding:10px 18px;margin:16px 0}nav ol{margin:6px 0;columns:2}nav .count{margin:4px 0 0;color:#4a5560;
font-size:0.9em}
figure{margin:18px 0 26px}figure img{max-width:100%;height:auto;border:1px solid #eceef1}
figcaption{font-size:0.92em;color:#333;margin-top:6px}
table{border-collapse:collapse;margin:10px 0 18px;font-size:0.9em}
th,td{border:1px solid #dde1e6;padding:4px 9px;vertical-align:top}th{background:#f1f3f5;text-align:left}
td.num,th.num{text-align:right;white-space:nowrap}td.meaning{color:#3d4750;font-size:0.93em;max-width:560px}
.note{background:#fff8e1;border-left:4px solid #f0c000;padding:8px 12px}
ul.findings li{margin:3px 0}dl.glossary dt{font-weight:600;float:left;clear:left;width:150px}
dl.glossary dd{margin:0 0 6px 160px}code,pre{background:#f1f3f5;border-radius:3px;font-size:0.9em}
code{padding:1px 4px}pre{padding:8px 12px;overflow-x:auto;white-space:pre-wrap}
.sig{color:#1a7f37;font-weight:700}
footer{margin-top:36px;color:#5a6570;font-size:0.88em;border-top:1px solid #e3e6ea}
"""


def glossary_html() -> str:
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in GLOSSARY)
    return f'<dl class="glossary">{items}</dl>'


# ------------------------------------------------------------------------------------------------ run data
@dataclass
class RunData:
    d: Path
    ts: pd.DataFrame
    months: list[str]
    agents: pd.DataFrame | None
    contracts: pd.DataFrame | None
    runs: pd.DataFrame | None
    events: pd.DataFrame | None
    info: dict

    @property
    def n(self) -> int:
        return len(self.months)


AGENT_REQUIRED = ["step", "name", "type", "kind", "alive", "cash_usd", "capital_raised_usd", "h100e",
                  "agent_id"]
CONTRACT_REQUIRED = ["buyer", "seller", "kind", "volume_h100e", "start", "end", "unit_price_usd", "closed"]


def load_run(d: Path) -> RunData:
    ts = read_csv(d / "timeseries.csv", ["month", "step"], dtype={"month": str})
    if ts.empty:
        raise ReportError(f"{d / 'timeseries.csv'}: no rows")
    agents = _optional(d / "agents.csv", AGENT_REQUIRED, dtype={"month": str, "name": str})
    contracts = _optional(d / "contracts.csv", CONTRACT_REQUIRED, dtype={"buyer": str, "seller": str})
    runs = _optional(d / "runs.csv", ["step", "lab", "effective_flop", "capability"], dtype={"lab": str})
    events = _optional(d / "events.csv", ["step", "event", "agent"])
    info = _read_json(d / "run_info.json")
    if not info and (d / "scenario.toml").is_file():
        try:
            t = tomllib.loads((d / "scenario.toml").read_text(encoding="utf-8"))
            info = {"scenario": t.get("name"), "description": t.get("description"),
                    "seed": t.get("run", {}).get("seed"), "start": t.get("run", {}).get("start")}
        except (OSError, ValueError):
            info = {}
    return RunData(d, ts, ts["month"].astype(str).tolist(), agents, contracts, runs, events, info)


def lab_compute_shares(agents: pd.DataFrame, n: int) -> pd.DataFrame:
    """Months x labs: each alive lab's share of all labs' compute held (h100e) in that month."""
    labs = agents[(agents["type"] == "lab") & agents["alive"].astype(str).str.lower().isin(("true", "1"))]
    wide = labs.pivot_table(index="step", columns="name", values="h100e", aggfunc="sum")
    wide = wide.reindex(range(n)).fillna(0.0).clip(lower=0)
    tot = wide.sum(axis=1).replace(0, np.nan)
    return wide.div(tot, axis=0).fillna(0.0)


def top_labs(shares: pd.DataFrame, k: int = TOP_LABS) -> list[str]:
    """The ``k`` labs with the largest peak share (the peak is at least the final share)."""
    if shares.empty:
        return []
    peak = shares.max(axis=0)
    final = shares.iloc[-1]
    score = np.maximum(peak, final)
    return [str(c) for c in score.sort_values(ascending=False, kind="stable").index[:k] if score[c] > 0]


def lab_colors(names: Sequence[str]) -> dict[str, str]:
    return {n: LAB_PALETTE[i % len(LAB_PALETTE)] for i, n in enumerate(names)}


def vendor_shipments(contracts: pd.DataFrame, n: int) -> pd.DataFrame:
    """Months x vendors: H100e shipped (chip orders allocated) in each month."""
    co = contracts[contracts["kind"].astype(str) == "chip_order"]
    if co.empty:
        return pd.DataFrame(index=range(n))
    wide = co.pivot_table(index="start", columns="seller", values="volume_h100e", aggfunc="sum")
    return wide.reindex(range(n)).fillna(0.0)


def survival_curve(durations: np.ndarray, events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier estimate: ages (0 and every exit age) and the share surviving past each."""
    ages, surv = [0.0], [1.0]
    s = 1.0
    for t in np.unique(durations[events]):
        at_risk = np.sum(durations >= t)
        d = np.sum((durations == t) & events)
        if at_risk > 0:
            s *= 1 - d / at_risk
        ages.append(float(t))
        surv.append(s)
    return np.array(ages), np.array(surv)


def lab_lifetimes(agents: pd.DataFrame, n: int) -> pd.DataFrame:
    """Per lab: tier (kind), first month seen, age at exit or at the end of the run, and whether it exited."""
    labs = agents[agents["type"] == "lab"]
    if labs.empty:
        return pd.DataFrame(columns=["name", "kind", "birth", "duration", "exited"])
    alive = labs["alive"].astype(str).str.lower().isin(("true", "1"))
    g = labs.assign(_alive=alive.to_numpy()).groupby("name", sort=False)
    birth = g["step"].min()
    dead = labs[~alive].groupby("name")["step"].min()
    out = pd.DataFrame({"kind": g["kind"].first(), "birth": birth})
    out["exited"] = out.index.isin(dead.index)
    end = pd.Series(n - 1, index=out.index, dtype=float)
    end[dead.index] = dead.astype(float)
    out["duration"] = end - out["birth"]
    return out.reset_index(names="name")


# ------------------------------------------------------------------------------------------------ run figures
def fig_shares(r: RunData) -> tuple[Figure, list[str]]:
    months, n, x = r.months, r.n, np.arange(r.n)
    fig, axes = new_figure(15, 5.8, 1, 3)
    below = {"loc": "upper center", "bbox_to_anchor": (0.5, -0.12), "fontsize": FS_LEGEND, "ncol": 3}
    ax = axes[0, 0]
    shares = lab_compute_shares(r.agents, n)
    top = top_labs(shares)
    colors = lab_colors(top)
    if top:
        rest = shares.drop(columns=top).sum(axis=1) if len(shares.columns) > len(top) else None
        ys = [100 * shares[c].to_numpy() for c in top]
        cs = [colors[c] for c in top]
        labels = list(top)
        if rest is not None:
            ys.append(100 * rest.to_numpy())
            cs.append(REST_COLOR)
            labels.append(f"rest ({len(shares.columns) - len(top)} labs)")
        ax.stackplot(x, *ys, colors=cs, labels=labels, lw=0)
        ax.set_ylim(0, 100)
    else:
        no_data(ax, "no lab compute")
    style(ax, "Labs' shares of compute held", "% of all lab compute (H100e)")
    year_axis(ax, months)
    legend(ax, **below)

    ax = axes[0, 1]
    clouds = r.agents[r.agents["type"] == "cloud"]
    wide = clouds.pivot_table(index="step", columns="name", values="h100e", aggfunc="sum").reindex(range(n))
    wide = wide.fillna(0.0).clip(lower=0)
    if not wide.empty and wide.to_numpy().sum() > 0:
        order = wide.iloc[-1].sort_values(ascending=False, kind="stable").index.tolist()
        tot = wide.sum(axis=1).replace(0, np.nan)
        ys = [100 * (wide[c] / tot).fillna(0).to_numpy() for c in order]
        ax.stackplot(x, *ys, labels=order, colors=[f"C{i}" for i in range(len(order))], lw=0)
        ax.set_ylim(0, 100)
    else:
        no_data(ax, "no cloud capacity")
    style(ax, "Clouds' shares of installed compute", "% of installed H100e")
    year_axis(ax, months)
    legend(ax, **below)

    ax = axes[0, 2]
    ship = vendor_shipments(r.contracts, n) if r.contracts is not None else pd.DataFrame()
    if not ship.empty and ship.to_numpy().sum() > 0:
        kinds = {}
        if r.agents is not None:
            v = r.agents[r.agents["type"] == "vendor"].drop_duplicates("name")
            kinds = dict(zip(v["name"].astype(str), v["kind"].astype(str), strict=True))
        roll = ship.rolling(12, min_periods=1).sum()
        tot = roll.sum(axis=1).replace(0, np.nan)
        merchant = sorted((c for c in roll.columns if kinds.get(c) != "captive"), key=lambda c: -roll[c].sum())
        captive = sorted((c for c in roll.columns if kinds.get(c) == "captive"), key=lambda c: -roll[c].sum())
        ys, labels, cs = [], [], []
        for group, names in (("merchant", merchant), ("captive", captive)):
            for i, c in enumerate(names):
                ys.append(100 * (roll[c] / tot).fillna(0).to_numpy())
                labels.append(f"{c} ({group})")
                pal = VENDOR_COLORS[group]
                cs.append(pal[i % len(pal)])
        ax.stackplot(x, *ys, labels=labels, colors=cs, lw=0)
        cap = num(r.ts, "captive_share_shipments")
        if np.isfinite(cap).any():
            ax.plot(x, 100 * (1 - cap), color="black", lw=1.0, ls="--",
                    label="merchant | captive boundary (timeseries)")
        ax.set_ylim(0, 100)
    else:
        no_data(ax, "no chip orders in contracts.csv")
    style(ax, "Chip vendors' shares of shipments (12-month window)", "% of H100e shipped")
    year_axis(ax, months)
    legend(ax, **{**below, "ncol": 2})
    return fig, top


def fig_concentration(r: RunData) -> Figure:
    months, x = r.months, np.arange(r.n)
    fig, axes = new_figure(15, 4.6, 1, 2, width_ratios=[1.6, 1])
    ax = axes[0, 0]
    top = 2000.0
    for col, label, c in (("lab_hhi_compute", "labs, by compute held", "tab:blue"),
                          ("lab_hhi_capital", "labs, by capital raised", "tab:cyan"),
                          ("cloud_hhi_capacity", "clouds, by installed capacity", "tab:orange"),
                          ("vendor_hhi_shipments", "chip vendors, by 12-month shipments", "tab:green")):
        y = num(r.ts, col)
        ls = ":" if col == "lab_hhi_capital" else "-"
        ax.plot(x, y, lw=1.8 if ls == "-" else 1.3, ls=ls, color=c, label=label)
        if np.isfinite(y).any():
            top = max(top, float(np.nanmax(y)) * 1.08)
    top = min(top, 10_300)
    hhi_bands(ax, top)
    ax.set_ylim(0, top)
    style(ax, "Market concentration (Herfindahl-Hirschman index)", "HHI, 0-10,000")
    year_axis(ax, months)
    legend(ax, loc="upper left", ncol=2)

    ax = axes[0, 1]
    ler = num(r.ts, "vendor_lerner")
    ax.plot(x, ler, lw=1.8, color="tab:purple", label="Lerner index (p-c)/p, shipment-weighted")
    ax.set_ylim(0, 1)
    tw = ax.twinx()
    tw.plot(x, 100 * num(r.ts, "captive_share_shipments"), lw=1.2, ls="--", color="tab:red",
            label="captive chips' share of shipments (right)")
    tw.set_ylim(0, 100)
    tw.set_ylabel("% of H100e shipped (12 months)", fontsize=FS_LABEL)
    tw.tick_params(labelsize=FS_TICK)
    style(ax, "Chip vendors' market power", "Lerner index, 0-1")
    year_axis(ax, months)
    legend(ax, tw, loc="upper right")
    return fig


def fig_capability(r: RunData, top: list[str]) -> tuple[Figure, float | None]:
    fig, axes = new_figure(15, 5.0, 1, 2, width_ratios=[1.35, 1])
    ax = axes[0, 0]
    slope = None
    colors = lab_colors(top)
    plotted = False
    if r.runs is not None and not r.runs.empty:
        ex = positive(num(r.runs, "effective_flop"))
        cap = num(r.runs, "capability")
        lab = r.runs["lab"].astype(str).to_numpy()
        ok = np.isfinite(ex) & np.isfinite(cap)
        others = ok & ~np.isin(lab, top)
        if others.any():
            ax.scatter(ex[others], cap[others], s=9, color=REST_COLOR, alpha=0.7, lw=0, label="other labs' runs")
        for name in top:
            m = ok & (lab == name)
            if m.any():
                ax.scatter(ex[m], cap[m], s=14, color=colors[name], alpha=0.8, lw=0, label=name)
        if ok.sum() >= 3 and np.ptp(np.log10(ex[ok])) > 0:
            slope = float(np.polyfit(np.log10(ex[ok]), cap[ok], 1)[0])
        plotted = bool(ok.any())
    fx, fy = positive(num(r.ts, "frontier_effective_flop")), num(r.ts, "frontier_capability")
    m = np.isfinite(fx) & np.isfinite(fy)
    if m.any():
        ax.plot(fx[m], fy[m], color="black", lw=1.4, zorder=3, label="frontier (best lab, monthly)")
        plotted = True
    if plotted:
        ax.set_xscale("log")
        if slope is not None:
            ax.text(0.98, 0.04, f"fit over all runs: +{slope:.2f} capability per 10x effective compute",
                    transform=ax.transAxes, ha="right", va="bottom", fontsize=FS_LEGEND + 0.5,
                    bbox={"fc": "white", "ec": "0.8", "alpha": 0.9})
    else:
        no_data(ax, "no completed training runs")
    style(ax, "Capability against effective training compute (every completed run)",
          "capability index (-ln reducible loss)")
    ax.set_xlabel("effective training compute, FLOP (log scale)", fontsize=FS_LABEL)
    legend(ax, loc="upper left", fontsize=FS_LEGEND - 0.5, ncol=2)

    ax = axes[0, 1]
    x = np.arange(r.n)
    mc = positive(num(r.ts, "marginal_capability_per_usd")) * 1e9
    ax.plot(x, mc, lw=1.8, color="tab:red", label="marginal capability per $1B of training compute")
    set_log_if_positive(ax, mc[np.isfinite(mc)])
    style(ax, "Diminishing returns: capability per extra dollar", "capability per $1B (log scale)")
    year_axis(ax, r.months)
    legend(ax, loc="upper right")
    return fig, slope


def fig_progress(r: RunData) -> Figure:
    months, x = r.months, np.arange(r.n)
    fig, axes = new_figure(15, 4.6, 1, 3)
    phys = positive(num(r.ts, "frontier_training_flop"))
    eff = positive(num(r.ts, "frontier_effective_flop"))
    ax = axes[0, 0]
    ax.plot(x, eff, lw=1.8, color="tab:purple", label="effective FLOP, best run")
    ax.plot(x, phys, lw=1.8, color="tab:blue", label="physical FLOP, largest run")
    ax.fill_between(x, phys, eff, where=np.isfinite(phys) & np.isfinite(eff) & (eff >= phys),
                    color="tab:purple", alpha=0.15, lw=0, label="gap = algorithmic efficiency")
    set_log_if_positive(ax, phys[np.isfinite(phys)], eff[np.isfinite(eff)])
    style(ax, "Frontier training compute", "FLOP (log scale)")
    year_axis(ax, months)
    legend(ax, loc="upper left")

    ax = axes[0, 1]
    ok = np.isfinite(phys) & np.isfinite(eff)
    if ok.any():
        i0 = int(np.argmax(ok))
        lp = np.log10(phys) - math.log10(phys[i0])
        le = (np.log10(eff) - np.log10(phys)) - (math.log10(eff[i0]) - math.log10(phys[i0]))
        lp, le = np.where(ok, lp, np.nan), np.where(ok, le, np.nan)
        ax.fill_between(x, 0, lp, color="tab:blue", alpha=0.55, lw=0, label="from physical compute (more chips)")
        ax.fill_between(x, lp, lp + le, color="tab:purple", alpha=0.45, lw=0,
                        label="from algorithmic efficiency")
        ax.plot(x, lp + le, color="black", lw=1.0, label="total growth of effective compute")
    else:
        no_data(ax)
    style(ax, "Where frontier progress came from", f"orders of magnitude since {months[0]} (log10)")
    year_axis(ax, months)
    legend(ax, loc="upper left")

    ax = axes[0, 2]
    es = num(r.ts, "efficiency_share_of_progress")
    ax.plot(x, 100 * es, lw=1.8, color="tab:purple", label="efficiency's share, trailing 12 months")
    ax.set_ylim(0, 105)
    style(ax, "Algorithmic efficiency's share of progress", "% of effective-compute growth")
    year_axis(ax, months)
    legend(ax, loc="upper right")
    return fig


def fig_prices(r: RunData) -> Figure:
    months, x = r.months, np.arange(r.n)
    fig, axes = new_figure(15, 8.4, 2, 2)
    ax = axes[0, 0]
    ax.plot(x, num(r.ts, "spot_price_usd_per_h100e_hour"), lw=1.8, color="tab:blue", label="spot price")
    ax.plot(x, num(r.ts, "reserved_price_usd_per_h100e_hour"), ls="none", marker="o", ms=3, color="tab:orange",
            label="reserved price, contracts signed that month")
    ax.set_ylim(bottom=0)
    style(ax, "Price of compute", "USD per H100e-hour")
    year_axis(ax, months)
    legend(ax, loc="upper right")

    ax = axes[0, 1]
    cp = num(r.ts, "chip_price_usd_per_h100e")
    ler = num(r.ts, "vendor_lerner")
    ax.plot(x, cp, lw=1.8, color="tab:gray", label="chip price paid (average)")
    ax.plot(x, cp * (1 - ler), lw=1.4, ls="--", color="tab:green",
            label="implied vendor unit cost, price x (1 - Lerner)")
    ax.set_ylim(bottom=0)
    usd_axis(ax)
    style(ax, "Chip price and cost", "USD per H100e")
    year_axis(ax, months)
    legend(ax, loc="upper right")

    ax = axes[1, 0]
    ax.plot(x, 100 * num(r.ts, "cloud_utilization"), lw=1.8, color="tab:blue",
            label="utilization: capacity delivered or sold spot")
    ax.set_ylim(0, 105)
    tw = ax.twinx()
    tw.plot(x, num(r.ts, "installed_gw"), lw=1.4, ls="--", color="tab:red", label="installed IT power (right)")
    tw.set_ylim(bottom=0)
    tw.set_ylabel("GW", fontsize=FS_LABEL)
    tw.tick_params(labelsize=FS_TICK)
    style(ax, "Cloud utilization and installed power", "% of installed capacity")
    year_axis(ax, months)
    legend(tw, ax, loc="lower right")  # on the twin axes, drawn above both lines

    ax = axes[1, 1]
    series = [("end_user_demand_usd", "end-user demand", "black"), ("lab_revenue_usd", "lab revenue", "tab:blue"),
              ("cloud_revenue_usd", "cloud revenue from compute", "tab:orange"),
              ("capex_usd", "cloud capex (chips and facilities)", "tab:red"),
              ("investor_inflow_usd", "investor inflow", "tab:green")]
    ys = []
    for col, label, c in series:
        y = positive(num(r.ts, col))
        ys.append(y[np.isfinite(y)])
        ax.plot(x, y, lw=1.5, color=c, label=label)
    set_log_if_positive(ax, *ys)
    usd_axis(ax)
    style(ax, "Money flows and costs", "USD per month (log scale)")
    year_axis(ax, months)
    legend(ax, loc="lower right", ncol=2)
    return fig


def fig_entry(r: RunData) -> Figure:
    months, n, x = r.months, r.n, np.arange(r.n)
    fig, axes = new_figure(15, 8.4, 2, 2)
    ax = axes[0, 0]
    eb, rc = positive(num(r.ts, "entry_barrier_usd")), positive(num(r.ts, "frontier_run_cost_usd"))
    ax.plot(x, eb, lw=1.8, color="tab:red", label="entry barrier: capital to reach viability")
    ax.plot(x, rc, lw=1.2, ls="--", color="tab:gray", label="cost of the largest run in the last 12 months")
    if set_log_if_positive(ax, eb[np.isfinite(eb)], rc[np.isfinite(rc)]):
        usd_axis(ax)
    style(ax, "Entry barrier", "USD (log scale)")
    year_axis(ax, months)
    legend(ax, loc="upper left")

    ax = axes[0, 1]
    alive = num(r.ts, "labs_active")
    ax.plot(x, alive, lw=1.8, color="black", label="labs active (left)")
    ax.set_ylim(0, max(float(np.nanmax(alive)) if np.isfinite(alive).any() else 1.0, 1.0) * 1.15)
    tw = ax.twinx()
    ent, exi = np.nan_to_num(num(r.ts, "lab_entries")), np.nan_to_num(num(r.ts, "lab_exits"))
    tw.bar(x, ent, width=0.8, color="tab:green", alpha=0.75, label="entries (right, up)")
    tw.bar(x, -exi, width=0.8, color="tab:red", alpha=0.75, label="exits (right, down)")
    lim = max(float(ent.max(initial=0)), float(exi.max(initial=0)), 1.0) * 1.2
    tw.set_ylim(-lim, lim)
    tw.axhline(0, color="0.6", lw=0.6)
    tw.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{abs(v):g}"))
    tw.set_ylabel("labs entering (up) / exiting (down) per month", fontsize=FS_LABEL)
    tw.tick_params(labelsize=FS_TICK)
    ax.set_zorder(tw.get_zorder() + 1)
    ax.patch.set_visible(False)
    style(ax, "Labs active, entries and exits", "labs")
    year_axis(ax, months)
    legend(ax, tw, loc="lower left")

    ax = axes[1, 0]
    sv = num(r.ts, "small_lab_survival_24m")
    if np.isfinite(sv).any():
        ax.plot(x, 100 * sv, lw=1.8, color="tab:blue", label="labs born small alive at age 24 months")
    else:
        no_data(ax, "no lab born small is 24 months old yet")
    ax.set_ylim(0, 105)
    style(ax, "Survival of labs born small (as the model reports it)", "% of labs born small, >= 24 months old")
    year_axis(ax, months)
    legend(ax, loc="lower left")

    ax = axes[1, 1]
    life = lab_lifetimes(r.agents, n) if r.agents is not None else pd.DataFrame()
    drawn = False
    if not life.empty:
        for label, mask, c in (("labs of the small tier", life["kind"] == "small", "tab:blue"),
                               ("mid and frontier tiers", life["kind"] != "small", "tab:orange")):
            sub = life[mask]
            if sub.empty:
                continue
            ages, s = survival_curve(sub["duration"].to_numpy(float), sub["exited"].to_numpy(bool))
            ages = np.append(ages, float(sub["duration"].max()))
            s = np.append(s, s[-1])
            ax.step(ages, 100 * s, where="post", lw=1.8, color=c,
                    label=f"{label} ({len(sub)} labs, {int(sub['exited'].sum())} exited)")
            drawn = True
    if not drawn:
        no_data(ax, "agents.csv not available")
    ax.set_ylim(0, 105)
    ax.set_xlim(left=0)
    style(ax, "Survival by age (Kaplan-Meier)", "% still in business")
    ax.set_xlabel("months since first seen in the run (entry, or the start for incumbents)", fontsize=FS_LABEL)
    legend(ax, loc="lower left")
    return fig


def network_dates(months: Sequence[str]) -> list[int]:
    """Row indices for the network snapshots: Decembers two years apart (at most three), and the last month."""
    n = len(months)
    decs = [i for i, m in enumerate(months) if str(m).endswith("-12")]
    picks = decs[::2][:3]
    out = [i for i in picks if i != n - 1] + [n - 1]
    if len(out) == 1 and n > 1:
        out = [0, n - 1]
    return out


def fig_network(r: RunData) -> tuple[Figure, list[str]]:
    from . import network as nw

    steps = network_dates(r.months)
    graphs = [nw.contract_graph(r.contracts, r.agents, int(r.ts["step"].iloc[i])) for i in steps]
    pos = nw.stable_layout(graphs)
    scale = nw.size_scale(graphs)
    vmax = nw.max_edge_value(graphs)
    k = len(graphs)
    ncols = 2 if k > 1 else 1
    nrows = math.ceil(k / ncols)
    fig, axes = new_figure(7.5 * ncols, 6.6 * nrows, nrows, ncols)
    titles = []
    for j, (i, g) in enumerate(zip(steps, graphs, strict=True)):
        ax = axes[j // ncols, j % ncols]
        value = sum(d["value_usd"] for *_, d in g.edges(data=True))
        n_c = sum(d["n_contracts"] for *_, d in g.edges(data=True))
        title = (f"{r.months[i]}: {n_c:,} active contracts, {g.number_of_edges()} links, "
                 f"{usd(value)} total value")
        titles.append(title)
        nw.draw_network(ax, g, pos, scale, vmax, title=title)
    for j in range(k, nrows * ncols):
        axes[j // ncols, j % ncols].set_visible(False)
    fig.legend(handles=nw.legend_handles(), loc="outside lower center", ncol=5, fontsize=FS_LEGEND + 1, frameon=False)
    return fig, [r.months[i] for i in steps]


# ------------------------------------------------------------------------------------------------ run report
def _headline_table(metrics: Sequence[tuple[str, str, str]], columns: list[str],
                    cell: Callable[[str, int], str]) -> str:
    head = "".join(f'<th class="num">{esc(c)}</th>' for c in columns)
    rows = []
    for metric, name, meaning in metrics:
        cells = "".join(f'<td class="num">{cell(metric, j)}</td>' for j in range(len(columns)))
        rows.append(f"<tr><td><b>{esc(name)}</b><br><code>{esc(metric)}</code></td>{cells}"
                    f'<td class="meaning">{esc(meaning)}</td></tr>')
    return (f"<table><thead><tr><th>metric</th>{head}<th>what it means</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _col_label(months: Sequence[str], i: int) -> str:
    years = (i + 1) / 12
    when = "start" if i == 0 else (f"after {years:g} years" if (i + 1) % 12 == 0 else f"after {i + 1} months")
    return f"{months[i]} ({when}, month {i + 1})"


def _findings(r: RunData, idx: list[int]) -> list[str]:
    ts, first, last = r.ts, idx[0], idx[-1]
    out = []
    h0, h1 = num(ts, "lab_hhi_compute")[[first, last]]
    if math.isfinite(h0) and math.isfinite(h1):
        out.append(f"Lab concentration by compute went from {h0:,.0f} ({hhi_class(h0)}) in {r.months[first]} to "
                   f"{h1:,.0f} ({hhi_class(h1)}) in {r.months[last]}; the top three labs held "
                   f"{100 * num(ts, 'lab_top3_share_compute')[last]:.0f}% of lab compute at the end.")
    e0, e1 = num(ts, "entry_barrier_usd")[[first, last]]
    if math.isfinite(e0) and math.isfinite(e1) and e0 > 0:
        out.append(f"The entry barrier moved from {usd(e0)} to {usd(e1)} (x{e1 / e0:,.3g}).")
    p0, p1 = num(ts, "frontier_training_flop")[[first, last]]
    f0, f1 = num(ts, "frontier_effective_flop")[[first, last]]
    if all(math.isfinite(v) and v > 0 for v in (p0, p1, f0, f1)):
        tot = math.log10(f1 / f0)
        phys = math.log10(p1 / p0)
        if tot > 0:
            out.append(f"Frontier effective training compute grew {tot:.1f} orders of magnitude: "
                       f"{phys:.1f} from physical compute and {tot - phys:.1f} from algorithmic efficiency "
                       f"({100 * (tot - phys) / tot:.0f}% of the growth).")
    m0, m1 = num(ts, "marginal_capability_per_usd")[[first, last]]
    if math.isfinite(m0) and math.isfinite(m1) and m1 > 0:
        out.append(f"One more dollar of training compute bought {m0 / m1:,.3g} times less capability at the end "
                   "than at the start (diminishing returns).")
    a0, a1 = num(ts, "labs_active")[[first, last]]
    ent, exi = np.nansum(num(ts, "lab_entries")), np.nansum(num(ts, "lab_exits"))
    if math.isfinite(a0) and math.isfinite(a1):
        out.append(f"{a0:.0f} labs were active at the start and {a1:.0f} at the end, after {ent:.0f} entries and "
                   f"{exi:.0f} exits.")
    s0, s1 = num(ts, "spot_price_usd_per_h100e_hour")[[first, last]]
    if math.isfinite(s0) and math.isfinite(s1):
        out.append(f"The spot price of compute went from ${s0:.2f} to ${s1:.2f} per H100e-hour.")
    return out


def _run_header(r: RunData) -> tuple[str, str]:
    name = r.info.get("scenario") or r.d.resolve().name
    seed = r.info.get("seed")
    title = f"Run report: scenario '{name}'" + (f", seed {seed}" if seed is not None else "")
    desc = r.info.get("description") or ""
    sub = (f"{r.n} months from {esc(r.months[0])} to {esc(r.months[-1])}. {esc(desc)}").strip()
    return title, sub


def report_run(d: Path) -> Doc:
    r = load_run(d)
    title, sub = _run_header(r)
    doc = Doc(title, sub)
    idx = horizon_indices(r.n)
    cols = [_col_label(r.months, i) for i in idx]

    doc.section("about", "About this report")
    doc.p("This page summarises one simulated history of the AI compute market from an agent-based model. AI "
          "labs rent compute from cloud providers (reserved contracts and a monthly spot market); clouds buy "
          "chips from merchant vendors (Nvidia, AMD) or make their own (captive lines); investors fund labs; "
          "labs train models, sell them, and enter or exit the market. Nothing in the model says that large "
          "labs win: prices come from bargaining, concentration from where investors put money and from "
          "revenue. The question is whether capital or algorithms decide the race, measured by "
          "<b>concentration</b>, <b>entry barriers</b> and <b>returns to compute</b>.")
    doc.p("One run is one random draw; an ensemble of seeds (<code>abm ensemble</code>) shows how typical it "
          "is. Terms used below:")
    doc.html(glossary_html())
    doc.end()

    doc.section("headline", "Headline numbers",
                "Values at the end of the first month, after five years and after ten years (or at the last "
                "month of a shorter run).")
    vals = {m: num(r.ts, m) for m, *_ in HEADLINE}
    doc.html(_headline_table(HEADLINE, cols, lambda m, j: esc(fmt_metric(m, vals[m][idx[j]]))))
    findings = _findings(r, idx)
    if findings:
        doc.html("<h3>In this run</h3><ul class=\"findings\">" + "".join(f"<li>{esc(f)}</li>" for f in findings)
                 + "</ul>")
    doc.end()

    top: list[str] = []
    doc.section("shares", "Market shares")
    if r.agents is not None:
        fig, top = fig_shares(r)
        doc.figure(fig, f"Market shares over time. <b>Left</b>: each lab's share of the compute held by all "
                        f"labs (H100e under contract or bought spot); the {len(top)} labs with the largest peak "
                        "share are named, the others are summed as <i>rest</i>. <b>Middle</b>: each cloud's "
                        "share of installed compute. <b>Right</b>: each chip vendor's share of the H100e "
                        "shipped over the trailing 12 months, merchant vendors in blue-green, captive lines "
                        "(a cloud's own chips) in orange; the dashed line is the model's own captive share.",
                   "stacked area charts of market shares of labs, clouds and chip vendors")
    else:
        doc.p("agents.csv is not in the folder: the market-share panels need it.", "note")
    doc.end()

    doc.section("concentration", "Concentration and market power")
    doc.figure(fig_concentration(r),
               "<b>Left</b>: concentration of labs (by compute held, and dotted by capital raised), clouds and "
               "chip vendors as HHI. Shaded: moderately (1,000-1,800) and highly (above 1,800) concentrated. "
               "<b>Right</b>: the vendors' Lerner index, their average margin over marginal cost (0 = "
               "competitive pricing), with the captive chips' share of shipments.",
               "line charts of HHI and the Lerner index")
    doc.end()

    doc.section("returns", "Returns to compute and algorithmic progress")
    fig, slope = fig_capability(r, top)
    slope_txt = (f" A straight line fitted to all runs gives +{slope:.2f} capability for each tenfold increase "
                 "of effective compute." if slope is not None else "")
    doc.figure(fig, "<b>Left</b>: every completed training run, its capability against its effective training "
                    "compute (physical FLOP x algorithmic efficiency), coloured by lab as in the market-share "
                    "chart; the black line is the frontier month by month. On a logarithmic axis the points lie "
                    "on a line: each tenfold increase of compute adds the same capability, so each additional "
                    f"FLOP buys less than the one before.{slope_txt} <b>Right</b>: the capability the frontier "
                    "lab gains per extra $1B of training compute (log scale).",
               "scatter of capability against effective compute, and marginal capability per dollar")
    doc.figure(fig_progress(r),
               "Frontier progress split into physical compute and algorithmic efficiency. <b>Left</b>: physical "
               "FLOP of the largest run and effective FLOP of the best run; the shaded gap is what better "
               "algorithms add. <b>Middle</b>: growth since the first month in orders of magnitude (log10): "
               "log10 effective = log10 physical + log10 efficiency. <b>Right</b>: efficiency's share of the "
               "growth over the trailing 12 months, as the model reports it.",
               "frontier compute decomposed into physical compute and algorithmic efficiency")
    doc.end()

    doc.section("prices", "Prices, costs and utilization")
    doc.figure(fig_prices(r),
               "<b>Top left</b>: the monthly spot price of compute and the average price of reserved contracts "
               "signed each month (dots; none in months without new contracts). <b>Top right</b>: the average "
               "price clouds paid per H100e of chips delivered, and the vendors' unit cost implied by their "
               "Lerner index. <b>Bottom left</b>: the share of installed capacity that was delivered on "
               "contracts or sold spot, and installed IT power. <b>Bottom right</b>: the money flowing each "
               "month (log scale).",
               "prices, chip costs, utilization and money flows")
    doc.end()

    doc.section("entry", "Entry barrier, entries, exits and survival")
    doc.figure(fig_entry(r),
               "<b>Top left</b>: the entry barrier, the capital a representative new lab would need to reach a "
               "viable capability (log scale), with the cost of the largest recent training run for comparison. "
               "<b>Top right</b>: labs active (line) and labs entering or exiting each month (bars). <b>Bottom "
               "left</b>: of the labs born small that are at least 24 months old, the share still alive at 24 "
               "months. <b>Bottom right</b>: Kaplan-Meier survival by age for small-tier labs and the others "
               "(labs present at the start count their age from the first month).",
               "entry barrier, entries and exits, survival of small labs")
    doc.end()

    doc.section("network", "The contract network")
    if r.contracts is not None and r.agents is not None:
        fig, dates = fig_network(r)
        doc.figure(fig, f"Who contracts with whom, at {', '.join(dates)}. Nodes: chip vendors (green, left "
                        "column), cloud providers (orange, middle) and AI labs (blue, right), at the same position "
                        "in every panel; labs that have exited disappear. Node area grows with the log of capital raised "
                        "(labs) or cash (clouds and vendors), relative to the largest of its kind. A line joins "
                        "two agents with at least one contract in force that month (lab-cloud: reserved, spot "
                        "and equity-for-compute contracts, blue; cloud-vendor: chip orders in delivery, green); "
                        "its width grows with the square root of the contracts' total value, relative to the "
                        "largest link of its colour over all panels.",
                   "the contract network at several dates")
    else:
        doc.p("contracts.csv or agents.csv is not in the folder: the network needs both.", "note")
    doc.end()

    missing = [f for f in ("agents.csv", "contracts.csv", "runs.csv") if not (d / f).is_file()]
    files = "timeseries.csv, agents.csv, contracts.csv and runs.csv"
    doc.footer_note = (f"Generated by <code>abm report</code> from the files in <code>{esc(d)}</code> "
                       f"({files}{'; missing: ' + esc(', '.join(missing)) if missing else ''}).")
    return doc


# ------------------------------------------------------------------------------------------------ ensembles
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


# ------------------------------------------------------------------------------------------------ comparisons
def _inline_md(text: str) -> str:
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for p in parts:
        if len(p) >= 2 and p.startswith("`") and p.endswith("`"):
            out.append(f"<code>{esc(p[1:-1])}</code>")
        else:
            t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", esc(p))
            out.append(t.replace("✓", '<span class="sig" title="the 95% CI excludes zero">✓</span>'))
    return "".join(out)


def markdown_to_html(md: str, skip_title: bool = True) -> str:
    """The subset of Markdown that comparison.md uses: headings, paragraphs, fenced code and tables."""
    lines = md.splitlines()
    out: list[str] = []
    i = 0
    para: list[str] = []

    def flush():
        if para:
            out.append(f"<p>{_inline_md(' '.join(para))}</p>")
            para.clear()

    while i < len(lines):
        line = lines[i]
        s = line.strip()
        if s.startswith("```"):
            flush()
            j = i + 1
            body = []
            while j < len(lines) and not lines[j].strip().startswith("```"):
                body.append(lines[j])
                j += 1
            out.append(f"<pre>{esc(chr(10).join(body))}</pre>")
            i = j + 1
            continue
        if s.startswith("#"):
            flush()
            level = len(s) - len(s.lstrip("#"))
            text = s[level:].strip()
            if not (skip_title and level == 1):
                out.append(f"<h{min(level + 1, 4)}>{_inline_md(text)}</h{min(level + 1, 4)}>")
            i += 1
            continue
        if s.startswith("|"):
            flush()
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            aligns = []
            if len(rows) >= 2 and all(re.fullmatch(r":?-{3,}:?", c) for c in rows[1]):
                aligns = ["num" if c.endswith(":") else "" for c in rows[1]]
                rows = [rows[0]] + rows[2:]
            head = "".join(f'<th class="{aligns[k] if k < len(aligns) else ""}">{_inline_md(c)}</th>'
                           for k, c in enumerate(rows[0]))
            body = "".join("<tr>" + "".join(f'<td class="{aligns[k] if k < len(aligns) else ""}">'
                                            f"{_inline_md(c)}</td>" for k, c in enumerate(r)) + "</tr>"
                           for r in rows[1:])
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            continue
        if not s:
            flush()
        else:
            para.append(s)
        i += 1
    flush()
    return "\n".join(out)


def load_comparison(d: Path) -> tuple[list[Ens], dict, pd.DataFrame]:
    table = read_csv(d / "comparison.csv", ["scenario", "metric", "horizon"], dtype={"scenario": str})
    info = _read_json(d / "compare.json")
    names = [str(s) for s in info.get("scenarios", [])]
    folders = [str(f) for f in info.get("folders", [])]
    if not names or len(folders) != len(names):
        names = list(dict.fromkeys(table["scenario"].astype(str)))
        folders = [re.sub(r"[^A-Za-z0-9._-]", "_", nm).lstrip(".") or "scenario" for nm in names]
    ens = []
    for name, folder in zip(names, folders, strict=True):
        sub = d / folder
        if not (sub / "ensemble.csv").is_file():
            raise ReportError(f"{d}: scenario '{name}' has no {folder}/ensemble.csv; rerun 'abm compare' to "
                              "finish the comparison")
        ens.append(load_ensemble(sub, name))
    if not ens:
        raise ReportError(f"{d / 'comparison.csv'}: no scenarios")
    return ens, info, table


def fig_compare_group(ens: Sequence[Ens], cols: Sequence[str]) -> Figure:
    nrows, ncols = grid_shape(len(cols))
    fig, axes = new_figure(5.0 * ncols, 3.6 * nrows + 0.5, nrows, ncols)
    months = max((e.months for e in ens), key=len)
    for j, col in enumerate(cols):
        ax = axes[j // ncols, j % ncols]
        arrays = []
        for k, e in enumerate(ens):
            if f"{col}_mean" not in e.df.columns:
                continue
            mean, lo = band_panel(ax, e, col, f"C{k % 10}", label=f"{e.name} (mean)")
            arrays += [mean, lo, num(e.df, f"{col}_p97_5")]
        _finish_band(ax, col, arrays or [np.array([np.nan])], months)
    for j in range(len(cols), nrows * ncols):
        axes[j // ncols, j % ncols].set_visible(False)
    band_legend(fig, [(f"{e.name}: mean and 2.5-97.5 percentile band", f"C{k % 10}") for k, e in enumerate(ens)],
                any(col_info(c).kind == "hhi" for c in cols))
    return fig


def report_comparison(d: Path) -> Doc:
    from ..experiments.compare import HEADLINE_METRICS

    ens, info, _table = load_comparison(d)
    names = [e.name for e in ens]
    n = ens[0].n_seeds or info.get("n_seeds")
    title = f"Comparison report: {' vs '.join(names)}"
    months = ens[0].months
    sub = (f"{n} seeds per scenario, {len(months)} months from {esc(months[0])} to {esc(months[-1])}; reference "
           f"scenario: {esc(names[0])}.")
    doc = Doc(title, sub)
    doc.section("about", "About this report")
    descs = "".join(f"<li><b>{esc(e.name)}</b>: {esc(e.info.get('description') or '')}</li>" for e in ens)
    doc.p("This page compares scenarios of an agent-based model of the AI compute market (AI labs, cloud "
          "providers, chip vendors and investors contracting month by month). Every scenario was simulated "
          f"with the same {n} random seeds (common random numbers), so that differences come from the "
          "scenarios' rules rather than from luck, and are measured seed by seed.")
    doc.html(f"<ul>{descs}</ul>")
    doc.html(glossary_html())
    doc.end()

    idx = horizon_indices(len(months))
    doc.section("headline", "Headline numbers",
                "Mean over seeds (and below it the 2.5th to 97.5th percentile range) for each scenario at the end "
                "of the first month, after five years and after ten years (or the last month).")
    rows = []
    for metric, label, meaning in HEADLINE:
        for j, i in enumerate(idx):
            cells = "".join(f'<td class="num">{_ens_cell(e, metric, i) if i < len(e.months) else "n/a"}</td>'
                            for e in ens)
            first = (f'<td rowspan="{len(idx)}"><b>{esc(label)}</b><br><code>{esc(metric)}</code></td>'
                     if j == 0 else "")
            mean_cell = f'<td class="meaning" rowspan="{len(idx)}">{esc(meaning)}</td>' if j == 0 else ""
            rows.append(f"<tr>{first}<td>{esc(_col_label(months, i))}</td>{cells}{mean_cell}</tr>")
    head = "".join(f'<th class="num">{esc(nm)}</th>' for nm in names)
    doc.html(f"<table><thead><tr><th>metric</th><th>month</th>{head}<th>what it means</th></tr></thead>"
             f"<tbody>{''.join(rows)}</tbody></table>")
    doc.end()

    metrics = [m for m in HEADLINE_METRICS if any(f"{m}_mean" in e.df.columns for e in ens)]
    for k in range(0, len(metrics), 6):
        chunk = metrics[k:k + 6]
        doc.section(f"overlay-{k // 6}", "Scenarios over time" + (f" ({k // 6 + 1})" if len(metrics) > 6 else ""))
        doc.figure(fig_compare_group(ens, chunk),
                   "Each scenario's mean over seeds (line) and the band within which 95% of its seeds lie (2.5th "
                   "to 97.5th percentile, shaded), month by month. Where bands overlap, a single seed may not "
                   "show the difference, but the paired tests below can still find it.",
                   "scenario overlays: " + ", ".join(chunk))
        doc.end()

    md_path = d / "comparison.md"
    doc.section("tests", "Paired differences")
    if md_path.is_file():
        try:
            md = md_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ReportError(f"{md_path}: cannot read: {exc}") from None
        doc.html(markdown_to_html(md))
    else:
        doc.p("comparison.md is not in the folder.", "note")
    doc.end()
    doc.footer_note = (f"Generated by <code>abm report</code> from <code>{esc(d)}</code> (comparison.csv, "
                       "comparison.md and each scenario's ensemble.csv).")
    return doc


# ------------------------------------------------------------------------------------------------ entry point
def build_report(d: str | Path) -> tuple[str, str, int]:
    """(kind, HTML text, number of figures) of the report on folder ``d``; writes nothing."""
    d = Path(d)
    kind = detect_kind(d)
    doc = {"run": report_run, "ensemble": report_ensemble, "comparison": report_comparison}[kind](d)
    return kind, doc.render(doc.footer_note), doc.n_figures


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_report(d: str | Path) -> tuple[Path, str, int]:
    """Write ``d/report.html`` atomically; return (path, kind, number of figures)."""
    d = Path(d)
    kind, text, n = build_report(d)
    out = d / REPORT_NAME
    atomic_write_text(out, text)
    return out, kind, n
