"""What the run, ensemble and comparison reports share: the columns' titles and units, the headline metrics
and the glossary; reading CSV files and a run folder's tables (CSV or Parquet); number formats; the figures' size, fonts, axes and legends; and the HTML
page (:class:`Doc`, its CSS and the headline table).

Every report raises :class:`ReportError` for a folder it cannot report on.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from .. import tables

HHI_MODERATE, HHI_HIGH = 1000, 1800
DPI = 100
FS_TICK, FS_LABEL, FS_TITLE, FS_LEGEND = 9, 9.5, 11, 8.5  # font sizes (points)


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
    "entry_barrier_usd": Col("Entry barrier (projected frontier)", "USD", True, "usd"),
    "entry_barrier_now_usd": Col("Entry barrier (today's frontier, no projection)", "USD", True, "usd"),
    "marginal_capability_per_usd": Col("Marginal capability per training dollar", "capability per USD", True,
                                       "index"),
    "efficiency_share_of_progress": Col("Efficiency's share of frontier progress (12 months)", "share, 0-1",
                                        kind="share"),
    "small_lab_survival_24m": Col("Labs born small alive at 24 months", "share, 0-1", kind="share"),
    "cloud_hhi_capacity": Col("Cloud concentration by installed capacity (HHI)", "HHI, 0-10,000", kind="hhi"),
    "cloud_utilization": Col("Cloud utilization", "share of capacity, 0-1", kind="share"),
    "cloud_utilization_labs": Col("Cloud utilization by labs", "share of capacity, 0-1", kind="share"),
    "cloud_utilization_background": Col("Cloud utilization by background buyers", "share of capacity, 0-1",
                                        kind="share"),
    "installed_h100e": Col("Installed compute", "H100e", True, "count"),
    "installed_gw": Col("Installed facility power", "GW", kind="index"),
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
    "end_user_demand_usd": Col("End-user spending on AI", "USD per month", True, "usd"),
    "ai_adoption": Col("AI adoption (share of potential demand)", "share, 0-1", kind="share"),
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


def col_info(name: str) -> Col:
    return COLUMN_INFO.get(name, Col(name.replace("_", " "), ""))


# ------------------------------------------------------------------------------------------------ inputs
def read_csv(path: Path, required: Sequence[str] = (), **kw) -> pd.DataFrame:
    """A CSV file as a DataFrame (``kw`` as pandas.read_csv's), read by :func:`analysis.tables.read_table`;
    ReportError, one line naming the file, when it is missing, unreadable or lacks a ``required`` column."""
    path = Path(path)
    return tables.read_table(path.parent, path.stem, required, error=ReportError, path=path, **kw)


def read_table(folder: Path, name: str, required: Sequence[str] = (), **kw) -> pd.DataFrame:
    """Table ``name`` of a run folder, ``NAME.parquet`` or ``NAME.csv``, as the same DataFrame either way (see
    :func:`analysis.tables.read_table`: ``columns``, ``dtype``); ReportError naming the file if it cannot."""
    return tables.read_table(folder, name, required, error=ReportError, **kw)


def table_name(folder: Path, name: str) -> str:
    """The file name of table ``name`` in ``folder``: ``NAME.parquet`` if there, else ``NAME.csv``."""
    return tables.table_file(folder, name).name


def timeseries_problem(ts: pd.DataFrame, columns: Sequence[str]) -> str | None:
    """What makes the rows of a run's ``timeseries.csv`` unreadable, or None: a month that is not YYYY-MM,
    a step that is not a whole number, a value of ``columns`` that is not a number."""
    months = ts["month"].astype(str)
    bad = np.flatnonzero(~months.str.fullmatch(r"\d{4}-(0[1-9]|1[0-2])").to_numpy())
    if bad.size:
        return f"column month: {months.iloc[bad[0]]!r} in row {bad[0] + 1} is not a month (YYYY-MM)"
    steps = pd.to_numeric(ts["step"], errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~(np.isfinite(steps) & (steps == np.round(steps))))
    if bad.size:
        return f"column step: {ts['step'].iloc[bad[0]]!r} in row {bad[0] + 1} is not a whole number"
    return not_a_number(ts, columns)


def not_a_number(df: pd.DataFrame, columns: Sequence[str]) -> str | None:
    """Where a column of ``columns`` (those ``df`` has) holds a value that is not a number (empty cells are
    allowed): "column C: 'x' in row N is not a number", or None."""
    for c in columns:
        if c in df.columns and not pd.api.types.is_numeric_dtype(df[c]):
            bad = np.flatnonzero((pd.to_numeric(df[c], errors="coerce").isna() & df[c].notna()).to_numpy())
            if bad.size:
                return f"column {c}: {df[c].iloc[bad[0]]!r} in row {bad[0] + 1} is not a number"
    return None


def _read_json(path: Path) -> dict:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}

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


# ------------------------------------------------------------------------------------------------ tables
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
