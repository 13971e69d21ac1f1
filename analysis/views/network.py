"""The contract network of a run, rebuilt from its CSV files: graphs at given months and a stable layout.

Pure functions of the run's tables (``contracts.csv``, ``agents.csv``); nothing here reads files or
depends on a live model.

* :func:`active_contracts` - the contracts in force during a month: ``start <= step < end`` and not closed
  before that month (``closed`` empty, or ``closed >= step``: a contract closed in month s still ran in s).
* :func:`contract_graph` - an undirected :class:`networkx.Graph` at one month. Nodes are the agents alive
  that month (from ``agents.csv``) and every party to an active contract, with ``type`` (lab, cloud,
  vendor), ``kind``, ``agent_id`` and ``size_usd`` (labs: capital raised; clouds and vendors: cash, floored
  at 0) and ``h100e``. An edge joins the parties of at least one active contract, with ``value_usd`` (the
  summed contract value: reserved, spot and equity-for-compute volume x monthly price x months; chip orders
  volume x price per H100e), ``volume_h100e``, ``n_contracts`` and ``kinds`` (sorted, comma-separated).
* :func:`stable_layout` - one position per node over a sequence of graphs, deterministic and the same
  for a node whatever graph it is drawn in: three columns by type (chip vendors, clouds, labs), each ordered
  by kind and agent id.
* :func:`draw_network` - draws one graph on a matplotlib Axes with given positions and scales.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import networkx as nx
import numpy as np
import pandas as pd

TYPES = ("vendor", "cloud", "lab")
TYPE_COLORS = {"lab": "#1f77b4", "cloud": "#ff7f0e", "vendor": "#2ca02c"}
TYPE_LABELS = {"lab": "AI lab", "cloud": "cloud provider", "vendor": "chip vendor"}
COLUMN_X = {"vendor": 0.0, "cloud": 1.0, "lab": 2.0}
COLUMN_TITLES = {"vendor": "chip vendors", "cloud": "clouds", "lab": "labs"}
KIND_ORDER = {"merchant": 0, "captive": 1, "hyperscaler": 0, "neocloud": 1, "frontier": 0, "mid": 1, "small": 2}
EDGE_COLORS = {"chips": "#1a9641", "compute": "#2b6cb0"}
# Contract kinds priced per H100e-month (value = volume x price x months); chip orders are per H100e.
MONTHLY_KINDS = ("reserved", "spot", "equity_for_compute")
# Roles by contract kind, used for parties that do not appear in agents.csv.
BUYER_TYPE = {"reserved": "lab", "spot": "lab", "equity_for_compute": "lab", "chip_order": "cloud"}
SELLER_TYPE = {"reserved": "cloud", "spot": "cloud", "equity_for_compute": "cloud", "chip_order": "vendor"}


def _num(s: pd.Series) -> np.ndarray:
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)


def active_mask(contracts: pd.DataFrame, step: int) -> np.ndarray:
    """Boolean mask of the contracts in force during month ``step``."""
    if contracts.empty:
        return np.zeros(0, dtype=bool)
    start, end = _num(contracts["start"]), _num(contracts["end"])
    closed = _num(contracts["closed"]) if "closed" in contracts.columns else np.full(len(contracts), np.nan)
    not_closed_before = np.isnan(closed) | (closed >= step)
    return (start <= step) & (step < end) & not_closed_before


def active_contracts(contracts: pd.DataFrame, step: int) -> pd.DataFrame:
    """The rows of ``contracts`` in force during month ``step``."""
    return contracts[active_mask(contracts, step)]


def contract_value(contracts: pd.DataFrame) -> np.ndarray:
    """Total value of each contract in USD (monthly kinds: volume x price x months; chips: volume x price)."""
    vol, price = _num(contracts["volume_h100e"]), _num(contracts["unit_price_usd"])
    months = np.maximum(_num(contracts["end"]) - _num(contracts["start"]), 1.0)
    monthly = contracts["kind"].astype(str).isin(MONTHLY_KINDS).to_numpy()
    val = vol * price * np.where(monthly, months, 1.0)
    return np.nan_to_num(val, nan=0.0, posinf=0.0, neginf=0.0)


def _size_usd(typ: str, cash: float, capital: float) -> float:
    v = capital if typ == "lab" else cash
    return float(v) if math.isfinite(v) and v > 0 else 0.0


def contract_graph(contracts_df: pd.DataFrame, agents_df: pd.DataFrame, step: int) -> nx.Graph:
    """The contract network during month ``step`` (see the module docstring for attributes)."""
    g = nx.Graph(step=int(step))
    if not agents_df.empty:
        rows = agents_df[pd.to_numeric(agents_df["step"], errors="coerce") == step]
        if "alive" in rows.columns:
            rows = rows[rows["alive"].astype(str).str.lower().isin(("true", "1"))]
        for r in rows.itertuples(index=False):
            typ = str(r.type)
            g.add_node(str(r.name), type=typ, kind=str(r.kind), agent_id=int(r.agent_id),
                       size_usd=_size_usd(typ, float(r.cash_usd), float(r.capital_raised_usd)),
                       h100e=float(r.h100e) if math.isfinite(float(r.h100e)) else 0.0)
    if contracts_df.empty:
        return g
    act = active_contracts(contracts_df, step)
    if act.empty:
        return g
    values = contract_value(act)
    vols = np.nan_to_num(_num(act["volume_h100e"]))
    for (buyer, seller, kind), val, vol in zip(
            act[["buyer", "seller", "kind"]].astype(str).itertuples(index=False, name=None), values, vols,
            strict=True):
        for name, typ in ((buyer, BUYER_TYPE.get(kind, "lab")), (seller, SELLER_TYPE.get(kind, "cloud"))):
            if name not in g:
                g.add_node(name, type=typ, kind="", agent_id=10**9, size_usd=0.0, h100e=0.0)
        if g.has_edge(buyer, seller):
            e = g.edges[buyer, seller]
            e["value_usd"] += float(val)
            e["volume_h100e"] += float(vol)
            e["n_contracts"] += 1
            e["kinds"] = ",".join(sorted(set(e["kinds"].split(",")) | {kind}))
        else:
            g.add_edge(buyer, seller, value_usd=float(val), volume_h100e=float(vol), n_contracts=1, kinds=kind)
    return g


def stable_layout(graphs: Iterable[nx.Graph]) -> dict[str, tuple[float, float]]:
    """Positions for every node of ``graphs``: the same node gets the same position in every graph.

    Three columns by type: chip vendors at x=0, clouds at x=1, labs at x=2, each spread evenly from top
    (y=1) to bottom (y=-1) in order of kind, then agent id, then name. Deterministic: it depends only on the
    union of the nodes and their attributes, not on the order of the graphs.
    """
    info: dict[str, tuple[str, str, int]] = {}
    for g in graphs:
        for n, d in g.nodes(data=True):
            typ = d.get("type", "lab")
            typ = typ if typ in COLUMN_X else "lab"
            aid = int(d.get("agent_id", 10**9))
            old = info.get(n)
            if old is None or aid < old[2]:  # a node seen in agents.csv wins over one known from contracts only
                info[n] = (typ, str(d.get("kind", "")), aid)
    pos: dict[str, tuple[float, float]] = {}
    for typ in TYPES:
        members = sorted((n for n, v in info.items() if v[0] == typ),
                         key=lambda n: (KIND_ORDER.get(info[n][1], 9), info[n][2], n))
        k = len(members)
        for i, n in enumerate(members):
            y = 0.0 if k == 1 else 1.0 - 2.0 * i / (k - 1)
            pos[n] = (COLUMN_X[typ], round(y, 12))
    return pos


def size_scale(graphs: Sequence[nx.Graph]) -> dict[str, tuple[float, float]]:
    """Per node type, the (min, max) positive ``size_usd`` over all graphs (for :func:`node_area`)."""
    out: dict[str, tuple[float, float]] = {}
    for typ in TYPES:
        vals = [d["size_usd"] for g in graphs for _, d in g.nodes(data=True)
                if d.get("type") == typ and d.get("size_usd", 0) > 0]
        if vals:
            out[typ] = (min(vals), max(vals))
    return out


def node_area(size_usd: float, typ: str, scale: dict[str, tuple[float, float]],
              lo: float = 14.0, hi: float = 520.0) -> float:
    """Marker area (points^2) on a log scale between the smallest and largest value of the node's type."""
    if typ not in scale or size_usd <= 0:
        return lo
    a, b = scale[typ]
    if b <= a:
        return 0.5 * (lo + hi)
    f = (math.log10(size_usd) - math.log10(a)) / (math.log10(b) - math.log10(a))
    return lo + (hi - lo) * min(max(f, 0.0), 1.0)


def edge_class(kinds: str) -> str:
    """``"chips"`` for cloud-vendor links (chip orders), ``"compute"`` for lab-cloud links."""
    return "chips" if "chip_order" in kinds.split(",") else "compute"


def max_edge_value(graphs: Sequence[nx.Graph]) -> dict[str, float]:
    """Per edge class (:func:`edge_class`), the largest ``value_usd`` over all graphs (for edge widths)."""
    out = {"chips": 0.0, "compute": 0.0}
    for g in graphs:
        for *_, d in g.edges(data=True):
            c = edge_class(d["kinds"])
            out[c] = max(out[c], d["value_usd"])
    return out


def draw_network(ax, g: nx.Graph, pos: dict, scale: dict, vmax: dict[str, float], title: str | None = None,
                 label_top: int = 40, fontsize: float = 6.5, legend: bool = False) -> None:
    """Draw graph ``g`` on ``ax`` with fixed positions ``pos`` (from :func:`stable_layout`).

    Node area: log of ``size_usd`` within its type (``scale`` from :func:`size_scale`); edge width: square
    root of ``value_usd`` relative to the largest edge of its class (``vmax`` from :func:`max_edge_value`).
    Clouds, vendors and the ``label_top`` largest labs are named.
    """
    from matplotlib.collections import LineCollection

    ax.set_xlim(-0.55, 2.75)
    ax.set_ylim(-1.07, 1.13)
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)
    for typ, x in COLUMN_X.items():
        ax.text(x, -0.005, COLUMN_TITLES[typ], transform=ax.get_xaxis_transform(), ha="center", va="top",
                fontsize=fontsize + 1.5, color="0.3", style="italic")
    segs, widths, colors = [], [], []
    for u, v, d in sorted(g.edges(data=True), key=lambda e: e[2]["value_usd"]):
        if u not in pos or v not in pos:
            continue
        c = edge_class(d["kinds"])
        top = vmax.get(c, 0.0)
        f = math.sqrt(d["value_usd"] / top) if top > 0 else 0.0
        segs.append([pos[u], pos[v]])
        widths.append(0.3 + 5.0 * f)
        colors.append((*_rgb(EDGE_COLORS[c]), 0.3 + 0.5 * f))
    if segs:
        ax.add_collection(LineCollection(segs, linewidths=widths, colors=colors, zorder=1))
    nodes = [n for n in g.nodes if n in pos]
    if nodes:
        xy = np.array([pos[n] for n in nodes])
        types = [g.nodes[n].get("type", "lab") for n in nodes]
        areas = [node_area(g.nodes[n].get("size_usd", 0.0), t, scale) for n, t in zip(nodes, types, strict=True)]
        ax.scatter(xy[:, 0], xy[:, 1], s=areas, c=[TYPE_COLORS.get(t, "0.5") for t in types],
                   edgecolors="white", linewidths=0.6, zorder=3)
        named = set(sorted((n for n, t in zip(nodes, types, strict=True) if t == "lab"),
                           key=lambda n: -g.nodes[n].get("size_usd", 0.0))[:label_top])
        for n, t, area in zip(nodes, types, areas, strict=True):
            if t == "lab" and n not in named:
                continue
            r = math.sqrt(area / math.pi) + 2.5  # marker radius in points, plus a gap
            if t == "lab":
                ax.annotate(n, pos[n], xytext=(r, 0), textcoords="offset points", fontsize=fontsize,
                            ha="left", va="center", zorder=4)
            elif t == "vendor":
                ax.annotate(n, pos[n], xytext=(-r, 0), textcoords="offset points", fontsize=fontsize + 0.5,
                            ha="right", va="center", zorder=4)
            else:
                ax.annotate(n, pos[n], xytext=(0, r), textcoords="offset points", fontsize=fontsize + 0.5,
                            ha="center", va="bottom", zorder=4,
                            bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.75})
    if title:
        ax.set_title(title, fontsize=10)
    if legend:
        ax.legend(handles=legend_handles(), loc="lower left", fontsize=6.5, framealpha=0.85, borderpad=0.4,
                  handletextpad=0.4)


def legend_handles() -> list:
    """Legend entries for node types and edge classes (for a figure-level legend)."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="none", marker="o", ms=7, color=TYPE_COLORS[t], label=TYPE_LABELS[t])
               for t in ("lab", "cloud", "vendor")]
    handles += [Line2D([], [], color=EDGE_COLORS["compute"], lw=2, alpha=0.7,
                       label="lab-cloud contracts (reserved, spot, equity-for-compute)"),
                Line2D([], [], color=EDGE_COLORS["chips"], lw=2, alpha=0.7, label="chip orders in delivery")]
    return handles


def _rgb(color: str) -> tuple[float, float, float]:
    from matplotlib.colors import to_rgb

    return to_rgb(color)
