"""Interactive dashboard: a Solara page on the compute-market model (a Mesa model).

Serve it with ``abm dashboard`` (see :mod:`analysis.views.dashboard_server`), or directly with
``solara run analysis/views/dashboard.py`` (or ``solara run analysis.views.dashboard:Page``). It needs no
network: Solara's front-end files come from the ``solara-assets`` package.

The page is named "AI compute market" (the browser tab and the heading). The sidebar holds the controls
(Reset, play/pause, Step, the play interval and the month the model has reached), the report card (write the
current run's folder and its HTML report, then open it) and the model parameters: a scenario dropdown, a
seed, sliders for the main parameters and the two antitrust switches. Every slider shows its value and unit.
**Parameter changes take effect on Reset.** Choosing a scenario sets the sliders to that scenario's values; a
slider moved away from them overrides the scenario's value for the run (the "Status" card lists what is in
effect). The main area shows, updated each month, lab and cloud concentration, the spot price, the entry
barrier (log scale), frontier capability, the contract network and a status card. Every time axis is in the
model's months (``YYYY-MM`` from the scenario's ``run.start``).

A click on Step only adds a month to the session's queue (:class:`Runner`); a worker thread runs the queued
months and then redraws once. So a click that arrives while the page is being redrawn is counted, N clicks
give N months, and a burst of clicks is drawn once rather than once per click.

The page is built from Solara components rather than Mesa's ``SolaraViz``, whose Step button runs the model
and redraws every plot inside the click handler (a few seconds a click on a busy machine, so the page lags
behind the clicks), whose single tab is labelled "Page 0", whose status shows a step count ("Time: 12.0")
and whose plots count steps on their x axes.

Each browser session gets its own :class:`Runner` (model, queue and worker): :func:`Page` builds it with
``solara.use_memo``; nothing model-related lives at module level. Run folders written from the page go under
the folder named by the ``ABM_DASHBOARD_RUNS`` environment variable (``abm dashboard`` sets it to
``runs/dashboard`` in the folder it was started from; default: ``runs/dashboard`` in the current folder), and
the server serves them at ``/runs/``.
"""

from __future__ import annotations

import hashlib
import html
import io
import math
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib.colors as mcolors
import networkx as nx
import reacton.ipywidgets as rw
import solara
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from abm.model import ComputeMarket
from abm.scenario import Scenario, available_scenarios, load_scenario
from abm.timeline import month_label

APP_NAME = "AI compute market"
FIG_SIZE = (4.0, 2.9)  # inches at 100 dpi: fits a half-width column of the main area beside the sidebar
FIG_DPI = 100
PLAY_INTERVAL_MS = 150
DRAW_WAIT_S = 10.0  # how long the worker waits for the page to draw new months before it goes on
RUNS_ENV = "ABM_DASHBOARD_RUNS"  # where the page writes run folders (set by dashboard_server.serve)
RUNS_URL = "/runs"  # where the server serves them

_BASE = load_scenario("baseline")

# Dashboard parameter -> (scenario key, factor from the slider's unit to the scenario's unit, default in
# the slider's unit). Defaults are the baseline scenario's values.
PARAM_KEYS: dict[str, tuple[str, float, float | bool]] = {
    "kappa": ("capital.kappa", 1.0, _BASE.capital.kappa),
    "gamma": ("scaling.gamma", 1.0, round(_BASE.gamma, 3)),
    "diffusion": ("efficiency.diffusion", 1.0, _BASE.efficiency.diffusion),
    "inflow_busd_month": ("capital.inflow_usd_month", 1e9, _BASE.capital.inflow_usd_month / 1e9),
    "seed_capital_musd": ("entry.seed_capital_median_usd", 1e6, _BASE.entry.seed_capital_median_usd / 1e6),
    "exclusivity_allowed": ("policy.exclusivity_allowed", 1.0, _BASE.policy.exclusivity_allowed),
    "equity_for_compute_allowed": ("policy.equity_for_compute_allowed", 1.0,
                                   _BASE.policy.equity_for_compute_allowed),
}
DEFAULTS: dict = {"scenario_name": "baseline", "seed": _BASE.run.seed,
                  **{name: spec[2] for name, spec in PARAM_KEYS.items()}}
GAMMA_DECIMALS = 3  # the gamma slider's precision: a scenario's derived gamma is shown (and compared) rounded


def _cfg_value(cfg: Scenario, key: str):
    if key == "scaling.gamma":
        return cfg.gamma  # given, or derived from alpha and beta
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def scenario_values(scenario: str | Scenario) -> dict:
    """The dashboard parameters of a scenario in the sliders' units (gamma rounded as its slider shows it),
    with its seed: what the sidebar shows when that scenario is chosen."""
    cfg = load_scenario(scenario) if isinstance(scenario, str) else scenario
    out: dict = {"seed": cfg.run.seed}
    for name, (key, factor, default) in PARAM_KEYS.items():
        value = _cfg_value(cfg, key)
        if isinstance(default, bool):
            out[name] = bool(value)
        elif name == "gamma":
            out[name] = round(float(value), GAMMA_DECIMALS)
        else:
            out[name] = float(value) / factor
    return out


def overrides_for(params: dict, scenario: str | Scenario = "baseline") -> dict:
    """Scenario overrides (``{"capital.kappa": 2.0}``) for the dashboard parameters that differ from the
    scenario's own values; a parameter that is absent or None keeps the scenario's value."""
    own = scenario_values(scenario)
    out = {}
    for name, (key, factor, default) in PARAM_KEYS.items():
        value = params.get(name)
        if value is None:
            continue
        if isinstance(default, bool):
            if bool(value) != own[name]:
                out[key] = bool(value)
        elif not math.isclose(float(value), float(own[name]), rel_tol=1e-9, abs_tol=1e-12):
            out[key] = float(value) * factor
    return out


class DashboardMarket(ComputeMarket):
    """:class:`ComputeMarket` with flat keyword parameters in the dashboard's units.

    A parameter left at None keeps the scenario's own value, as does one equal to it; the others override
    it (``dashboard_overrides``). The names avoid Mesa's own ``scenario`` argument and there is no
    ``**kwargs``, so that Mesa's visualization could re-create the model as ``type(model)(**params)``.
    """

    def __init__(self, scenario_name: str = "baseline", seed: int = DEFAULTS["seed"],
                 kappa: float | None = None, gamma: float | None = None, diffusion: float | None = None,
                 inflow_busd_month: float | None = None, seed_capital_musd: float | None = None,
                 exclusivity_allowed: bool | None = None, equity_for_compute_allowed: bool | None = None):
        params = {"kappa": kappa, "gamma": gamma, "diffusion": diffusion,
                  "inflow_busd_month": inflow_busd_month, "seed_capital_musd": seed_capital_musd,
                  "exclusivity_allowed": exclusivity_allowed,
                  "equity_for_compute_allowed": equity_for_compute_allowed}
        self.scenario_name = scenario_name
        self.dashboard_overrides = overrides_for(params, scenario_name)
        super().__init__(scenario_name, overrides=self.dashboard_overrides or None, rng=int(seed))
        self.node_pos: dict[str, tuple[float, float]] = {}  # fixed drawing positions, see node_positions


# The model's inputs in Mesa's user-parameter format (type, value, min, max, step, label), plus the unit each
# slider shows after its value. Labels are short so that the sidebar keeps its width; the keys they set are
# in PARAM_KEYS.
MODEL_PARAMS = {
    "scenario_name": {"type": "Select", "value": "baseline", "values": available_scenarios(),
                      "label": "Scenario"},
    "seed": {"type": "SliderInt", "value": DEFAULTS["seed"], "min": 0, "max": 100, "step": 1,
             "label": "Seed", "unit": "(random stream)"},
    "kappa": {"type": "SliderFloat", "value": DEFAULTS["kappa"], "min": 0.0, "max": 4.0, "step": 0.1,
              "label": "κ investors", "unit": "(preference exponent)"},
    "gamma": {"type": "SliderFloat", "value": DEFAULTS["gamma"], "min": 0.1, "max": 0.3, "step": 0.002,
              "label": "γ scaling", "unit": "(compute exponent)"},
    "diffusion": {"type": "SliderFloat", "value": DEFAULTS["diffusion"], "min": 0.0, "max": 0.3,
                  "step": 0.01, "label": "Diffusion", "unit": "/month"},
    "inflow_busd_month": {"type": "SliderFloat", "value": DEFAULTS["inflow_busd_month"], "min": 0.0,
                          "max": 10.0, "step": 0.25, "label": "Inflow", "unit": "$B/month"},
    "seed_capital_musd": {"type": "SliderFloat", "value": DEFAULTS["seed_capital_musd"], "min": 50.0,
                          "max": 5000.0, "step": 50.0, "label": "Entrant seed",
                          "unit": "$M (at 2024 inflow)"},
    "exclusivity_allowed": {"type": "Checkbox", "value": DEFAULTS["exclusivity_allowed"],
                            "label": "Exclusive deals allowed"},
    "equity_for_compute_allowed": {"type": "Checkbox", "value": DEFAULTS["equity_for_compute_allowed"],
                                   "label": "Equity-for-compute allowed"},
}
PLAY_SLIDER = {"type": "SliderInt", "value": PLAY_INTERVAL_MS, "min": 0, "max": 1000, "step": 50,
               "label": "Play interval", "unit": "ms between months"}


def _decimals(step: float) -> int:
    text = f"{step:.6f}".rstrip("0")
    return len(text.split(".")[1]) if "." in text else 0


def slider_text(spec: dict, value) -> str:
    """What a slider's caption says: label, value at the slider's precision, unit ("Inflow: 2.50 $B/month")."""
    shown = str(int(value)) if spec["type"] == "SliderInt" else f"{float(value):.{_decimals(spec['step'])}f}"
    return f"{spec['label']}: {shown} {spec.get('unit', '')}".rstrip()


# ------------------------------------------------------------------------------------------------- months
MONTH_STEPS = (1, 2, 3, 6, 12, 24, 60, 120)


def month_ticks(start: str, n: int, max_ticks: int = 5) -> list[int]:
    """Month indices (0 = ``start``) of the ticks on a time axis of ``n`` months: every 1, 2, 3, 6, 12, ...
    months, on calendar boundaries (January, April, ...), at most ``max_ticks`` of them."""
    if n <= 1:
        return [0]
    y, m = (int(x) for x in start.split("-"))
    a0 = y * 12 + m - 1
    for step in MONTH_STEPS:
        ticks = [k for k in range(n) if (a0 + k) % step == 0]
        if ticks and len(ticks) <= max_ticks:
            return ticks
    return [0]


def month_status(model: ComputeMarket) -> str:
    """The sidebar's line on the model's month: the last month run and the step count,
    e.g. "Month: 2024-12 (step 12 of 120)" after twelve steps from 2024-01."""
    cfg = model.cfg
    if model.t == 0:
        return f"Month: — (step 0 of {cfg.run.months}; the run starts in {cfg.run.start})"
    done = "" if model.running else "; finished"
    return f"Month: {month_label(cfg.run.start, model.t - 1)} (step {model.t} of {cfg.run.months}{done})"


# ------------------------------------------------------------------------------------------- time series
def _money(x: float) -> str:
    return f"${x / 1e9:.3g}B" if abs(x) >= 1e9 else f"${x / 1e6:.3g}M"


@dataclass(frozen=True)
class Series:
    """One time-series plot: timeseries columns -> (legend label, colour), title, y label, log scale."""

    title: str
    ylabel: str
    columns: dict
    log: bool = False  # log scale, ticks at 1, 2 and 5 times powers of ten, labelled in $ (_money)


CONCENTRATION = Series("Concentration (HHI, 0-10000)", "HHI",
                       {"lab_hhi_compute": ("labs, by compute", "tab:red"),
                        "cloud_hhi_capacity": ("clouds, by capacity", "tab:blue")})
SPOT_PRICE = Series("Spot price", "$ per H100e-hour", {"spot_price_usd_per_h100e_hour": ("spot", "tab:orange")})
ENTRY_BARRIER = Series("Entry barrier (log scale)", "cost of a viable entrant",
                       {"entry_barrier_usd": ("entry barrier", "tab:purple")}, log=True)
FRONTIER = Series("Frontier capability", "capability index", {"frontier_capability": ("frontier", "tab:green")})
SERIES = (CONCENTRATION, SPOT_PRICE, ENTRY_BARRIER, FRONTIER)


def draw_series(rows: list[dict], start: str, series: Series) -> Figure:
    """A time-series plot of the model's rows (one a month) against the months, labelled ``YYYY-MM``."""
    fig = Figure(figsize=FIG_SIZE, dpi=FIG_DPI)
    fig.subplots_adjust(left=0.16, right=0.97, top=0.91, bottom=0.15)  # fixed: no second layout pass
    ax = fig.subplots()
    n = len(rows)
    x = list(range(n))
    for col, (label, color) in series.columns.items():
        ax.plot(x, [float(r[col]) for r in rows], color=color, label=label, marker="." if n < 12 else None)
    ax.set_title(series.title, fontsize=10)
    ax.set_ylabel(series.ylabel, fontsize=9)
    ax.set_xlabel("month", fontsize=9)
    ticks = month_ticks(start, n)
    ax.set_xticks(ticks, [month_label(start, k) for k in ticks])
    ax.set_xlim(-0.5, max(n - 1, 0) + 0.5)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    if n:
        ax.legend(loc="best", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no month run yet: press Step", ha="center", va="center", transform=ax.transAxes,
                fontsize=9, color="0.4")
        ax.set_yticks([])
    if series.log and any(v > 0 and math.isfinite(v) for line in ax.get_lines() for v in line.get_ydata()):
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _money(v)))
        ax.yaxis.set_minor_formatter(NullFormatter())
    return fig


def series_caption(fig: Figure, rows: list[dict], start: str, series: Series) -> str:
    """The plot's tooltip, read back from its axes: months covered, the x ticks as drawn, latest values."""
    ax = fig.axes[0]
    ticks = ", ".join(t.get_text() for t in ax.get_xticklabels())
    if not rows:
        return f"{series.title}: no month run yet; x axis: month (ticks {ticks})"
    latest = "; ".join(f"{label} {float(rows[-1][col]):.4g}" for col, (label, _) in series.columns.items())
    return (f"{series.title}: {month_label(start, 0)} to {month_label(start, len(rows) - 1)}; "
            f"x axis: month (ticks {ticks}); {month_label(start, len(rows) - 1)}: {latest}")


def _png(fig: Figure, **kw) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=FIG_DPI, **kw)
    return buf.getvalue()


def series_image(rows: list[dict], start: str, series: Series) -> tuple[bytes, str]:
    """(PNG, tooltip) of one time-series plot."""
    fig = draw_series(rows, start, series)
    return _png(fig), series_caption(fig, rows, start, series)


# ------------------------------------------------------------------------------------------------ network
TYPE_COLOR = {"vendor": "#2ca02c", "cloud": "#1f77b4", "lab": "#d62728"}
EDGE_COLOR = {"chip_order": "#7f7f7f", "reserved": "#9ecae1", "equity_for_compute": "#ff7f0e"}
RING = {"vendor": 0.35, "cloud": 0.75}
GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))


def node_positions(model: DashboardMarket) -> dict[str, tuple[float, float]]:
    """Fixed positions: vendors on an inner ring, clouds on a middle ring, labs on an outer band.

    A node keeps the position it got when first drawn, so the picture does not jump as labs enter: the
    k-th lab seen sits at angle k times the golden angle, so later entrants fill the gaps.
    """
    pos = model.node_pos
    types = nx.get_node_attributes(model.network, "type")
    for kind, radius in RING.items():
        names = [n for n, t in types.items() if t == kind]
        new = [n for n in names if n not in pos]
        if new:  # rings are laid out once for all their (few, fixed) members; late additions are spaced in
            for i, n in enumerate(names):
                if n not in pos:
                    a = 2 * math.pi * i / max(len(names), 1) + (0.3 if kind == "cloud" else 0.0)
                    pos[n] = (radius * math.cos(a), radius * math.sin(a))
    labs_seen = sum(1 for n in pos if types.get(n) == "lab")
    for n, t in types.items():
        if t == "lab" and n not in pos:
            a = labs_seen * GOLDEN_ANGLE
            r = 1.15 + 0.12 * ((labs_seen * 0.381966) % 1.0)
            pos[n] = (r * math.cos(a), r * math.sin(a))
            labs_seen += 1
    return pos


def draw_network(model: DashboardMarket, fig: Figure | None = None) -> Figure:
    """The contract network collapsed to a simple graph, on fixed positions, as a matplotlib figure."""
    fig = fig or Figure(figsize=FIG_SIZE, dpi=FIG_DPI)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.92, bottom=0.1)  # fixed: no second layout pass
    ax = fig.subplots()
    g = nx.Graph()
    types = nx.get_node_attributes(model.network, "type")
    g.add_nodes_from(types)
    for u, v, d in model.network.edges(data=True):
        kind = d.get("kind", "reserved")
        if g.has_edge(u, v):
            e = g.edges[u, v]
            e["n"] += 1
            e["value"] += float(d.get("value", 0.0))
            if kind == "equity_for_compute" or (kind == "reserved" and e["kind"] == "chip_order"):
                e["kind"] = kind
        else:
            g.add_edge(u, v, n=1, value=float(d.get("value", 0.0)), kind=kind)
    pos = node_positions(model)
    alive = {lab.name: lab.alive for lab in model.labs}
    size = {}
    lab_h = {lab.name: lab.h100e for lab in model.labs}
    cloud_h = {c.name: c.online for c in model.clouds}
    top_lab = max(lab_h.values(), default=1.0) or 1.0
    top_cloud = max(cloud_h.values(), default=1.0) or 1.0
    for n, t in types.items():
        if t == "lab":
            size[n] = 12 + 180 * math.sqrt(max(lab_h.get(n, 0.0), 0.0) / top_lab)
        elif t == "cloud":
            size[n] = 40 + 260 * math.sqrt(max(cloud_h.get(n, 0.0), 0.0) / top_cloud)
        else:
            size[n] = 120
    for kind, color in EDGE_COLOR.items():
        edges = [(u, v) for u, v, d in g.edges(data=True) if d["kind"] == kind]
        if not edges:
            continue
        widths = [0.4 + 0.5 * math.log10(1.0 + g.edges[e]["n"]) * (2.5 if kind == "equity_for_compute" else 1.0)
                  for e in edges]
        nx.draw_networkx_edges(g, pos, edgelist=edges, ax=ax, edge_color=color, width=widths, alpha=0.7)
    nodes = list(g.nodes)
    colors = []
    for n in nodes:
        rgba = list(mcolors.to_rgba(TYPE_COLOR.get(types[n], "#999999")))
        if types[n] == "lab" and not alive.get(n, True):
            rgba = [0.8, 0.8, 0.8, 0.6]
        colors.append(rgba)
    nx.draw_networkx_nodes(g, pos, nodelist=nodes, ax=ax, node_color=colors,
                           node_size=[size[n] for n in nodes], linewidths=0.3, edgecolors="white")
    top_labs = sorted((lab for lab in model.labs if lab.alive), key=lambda lab: -lab.h100e)[:5]
    labels = {n: n for n, t in types.items() if t in ("cloud", "vendor")}
    labels.update({lab.name: lab.name for lab in top_labs})
    nx.draw_networkx_labels(g, {n: (x, y + 0.09) for n, (x, y) in pos.items()}, labels=labels, ax=ax,
                            font_size=6)
    n_alive = sum(alive.values())
    month = month_label(model.cfg.run.start, model.t - 1) if model.t else model.cfg.run.start
    ax.set_title(f"Contract network, {month}: {n_alive} labs alive, {g.number_of_edges()} links", fontsize=10)
    handles = [ax.scatter([], [], s=30, color=c, label=t + "s") for t, c in TYPE_COLOR.items()]
    handles += [ax.plot([], [], color=c, label=k.replace("_", " "))[0] for k, c in EDGE_COLOR.items()]
    ax.legend(handles=handles, loc="lower left", fontsize=6, frameon=False, ncol=2,
              bbox_to_anchor=(-0.02, -0.1))
    ax.set_xlim(-1.45, 1.45)
    ax.set_ylim(-1.45, 1.45)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig



# ------------------------------------------------------------------------------------------------- status
def status_html(model: DashboardMarket) -> str:
    """The status card: scenario, month, labs alive, the parameters in effect and the latest events (plain
    HTML: no Markdown, whose math support would ask a CDN for KaTeX)."""
    cfg = model.cfg
    esc = html.escape
    row = model.rows[-1] if model.rows else {}
    over = ", ".join(f"{k}={str(v).lower() if isinstance(v, bool) else f'{v:g}'}"
                     for k, v in model.dashboard_overrides.items()) or "none"
    events = [e for e in model.events_log if e["event"] != "raise"][-5:]  # funding rounds are routine
    alive = sum(lab.alive for lab in model.labs)
    flows = f" ({row.get('lab_entries', 0)} entries, {row.get('lab_exits', 0)} exits this month)" if row else ""
    parts = [
        f"<b>{esc(model.scenario_name)}</b>, seed {cfg.run.seed}. {esc(month_status(model))}",
        f"Labs alive: {alive}{flows}",
        f"In effect: &kappa; {cfg.capital.kappa:g}, &gamma; {cfg.gamma:.3f}, diffusion "
        f"{cfg.efficiency.diffusion:g}/month, inflow {_money(cfg.capital.inflow_usd_month)}/month, entrant seed "
        f"{_money(cfg.entry.seed_capital_median_usd)}, exclusivity {'on' if cfg.policy.exclusivity_allowed else 'off'}, "
        f"equity-for-compute {'on' if cfg.policy.equity_for_compute_allowed else 'off'}",
        f"Overrides of the scenario: {esc(over)}. <i>Parameter changes take effect on Reset.</i>",
    ]
    body = "".join(f"<p style='margin:0 0 6px 0'>{p}</p>" for p in parts)
    if events:
        items = "".join(f"<li>{esc(e['month'])} {esc(e['event'])}: {esc(e['agent'])} {esc(str(e['detail']))}</li>"
                        for e in events)
        body += f"<p style='margin:0'>Latest events:</p><ul style='margin:0'>{items}</ul>"
    return body


# -------------------------------------------------------------------------------------- runs and reports
def runs_root() -> Path:
    """Where the page writes run folders: ``$ABM_DASHBOARD_RUNS``, else ``runs/dashboard`` here."""
    return Path(os.environ.get(RUNS_ENV) or Path.cwd() / "runs" / "dashboard").resolve()


def serve_runs(root: Path) -> bool:
    """Serve ``root`` at ``/runs/`` from the Solara server this module runs in; False outside a server.

    Solara has no hook for extra routes, so a static-files mount goes in front of its routes (once).
    """
    server = sys.modules.get("solara.server.starlette")
    app = getattr(server, "app", None)
    if app is None:
        return False
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    routes = app.router.routes
    if not any(getattr(r, "name", None) == "abm-dashboard-runs" for r in routes):
        routes.insert(0, Mount(RUNS_URL, app=StaticFiles(directory=root, check_dir=False),
                               name="abm-dashboard-runs"))
    return True


# In a Solara server this module is imported at startup, so /runs/ answers from then on.
RUNS_SERVED = serve_runs(runs_root())


def run_folder_name(model: DashboardMarket) -> str:
    """``baseline-seed1-2024-12``: scenario, seed, a short hash of the overrides if any, last month run."""
    cfg = model.cfg
    over = model.dashboard_overrides
    tag = f"-set{hashlib.sha1(repr(sorted(over.items())).encode()).hexdigest()[:6]}" if over else ""
    return f"{model.scenario_name}-seed{cfg.run.seed}{tag}-{month_label(cfg.run.start, model.t - 1)}"


def shown_path(path: Path) -> str:
    """``path`` relative to the current folder when it is inside it, else in full."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@dataclass
class Report:
    """The report card's state: ``state`` is "writing", "done" or "error"."""

    state: str
    folder: Path
    month: str
    months: int
    href: str | None = None  # the report's address on this server, when it serves the runs folder
    message: str = ""


# ------------------------------------------------------------------------------------ the session's runner
class Runner:
    """One browser session's model, its queue of months to run and the report being written.

    A click on Step only adds a month to the queue (:meth:`request_step`, no drawing) and returns at once.
    :meth:`work`, on a worker thread, runs the queued months (or, while playing, one month per play
    interval) and then calls ``on_change`` once, which redraws the page. Clicks that arrive while the page is
    being redrawn are therefore counted, not lost, and months clicked in a burst are drawn together.
    ``lock`` guards the model: the worker holds it while stepping, the drawing code while reading.
    """

    def __init__(self, params: dict | None = None):
        self.lock = threading.RLock()
        self.params = dict(params or DEFAULTS)
        self.model = DashboardMarket(**self.params)
        self.generation = 0  # counts Resets: the drawing code's cache key with model.t
        self.pending = 0  # months clicked and not yet run
        self.playing = False
        self.play_interval_s = PLAY_INTERVAL_MS / 1000
        self.step_seconds = 0.0  # time spent in model.step() since the last Reset (run_info.json's wall time)
        self.version = 0  # bumped by every change the page shows
        self.error: str | None = None
        self.report: Report | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._drawn = threading.Event()  # the page has drawn the version the worker waits for (_awaited)
        self._awaited = 0

    # -- state changes (any thread); each returns the new version for on_change / the page's tick
    def bump(self) -> int:
        with self.lock:
            self.version += 1
            return self.version

    def request_step(self, n: int = 1) -> int:
        """Queue ``n`` more months (a Step click); the worker runs them."""
        with self.lock:
            if self.model.running:
                self.pending += n
            self._wake.set()
            return self.bump()

    def set_playing(self, playing: bool) -> int:
        with self.lock:
            self.playing = bool(playing) and self.model.running
            self._wake.set()
            return self.bump()

    def reset(self, params: dict) -> int:
        """A new model from ``params``; the queue is emptied and play stops."""
        model = DashboardMarket(**params)  # built outside the lock: the worker may be stepping
        with self.lock:
            self.params = dict(params)
            self.model = model
            self.generation += 1
            self.pending = 0
            self.playing = False
            self.step_seconds = 0.0
            self.error = None
            self.report = None
            return self.bump()

    def advance(self) -> int:
        """Run the queued months (at least one while playing); the number run."""
        with self.lock:
            model = self.model
            n = self.pending or (1 if self.playing else 0)
            done = 0
            try:
                while done < n and model.running:
                    t0 = time.perf_counter()
                    model.step()
                    self.step_seconds += time.perf_counter() - t0
                    done += 1
            finally:
                self.pending = 0 if not model.running else max(self.pending - done, 0)
                if not model.running:
                    self.playing = False
            return done

    def work(self, on_change: Callable[[int], None]) -> None:
        """The worker loop: wait for a click (or the play interval), run the queued months, redraw once,
        and wait until the page has drawn them (:meth:`drawn`) before the next months.

        Waiting matters: Solara leaves a redraw asked for while another thread is drawing to that thread,
        which keeps drawing as long as the state keeps changing; a worker that stepped on regardless would keep
        the thread that handled the ▶ click drawing for ever, and the ❚❚ click would never be handled.
        """
        while not self._stop.is_set():
            self._wake.wait(timeout=self.play_interval_s if self.playing else None)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                ran = self.advance()
            except Exception as exc:  # shown on the page; the worker keeps serving the session
                traceback.print_exc()
                with self.lock:
                    self.error = f"error in step: {exc}"
                    self.pending = 0
                    self.playing = False
                ran = True
            if ran:
                with self.lock:
                    version = self._awaited = self.bump()
                    self._drawn.clear()
                on_change(version)
                self._drawn.wait(timeout=DRAW_WAIT_S)

    def drawn(self, version: int) -> None:
        """The page has drawn ``version`` (called from the main view's effect)."""
        with self.lock:
            if version >= self._awaited:
                self._drawn.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._drawn.set()

    def idle(self) -> bool:
        with self.lock:
            return self.pending == 0 and not self.playing

    # -- the report
    def start_report(self, root: Path, on_change: Callable[[int], None],
                     href_base: str | None = RUNS_URL) -> Report:
        """Write the model as it is now into ``root/<run_folder_name>`` (``analysis.runio.write_run``, as
        ``abm run`` does), then its ``report.html`` (as ``abm report`` does) on a thread; on_change after."""
        from analysis.runio import write_run  # absolute: ``solara run`` loads this file as a script
        from analysis.views.report import write_report

        with self.lock:
            model = self.model
            if model.t == 0:  # the button is disabled then; a click from a stale page lands here
                self.report = Report("error", root, "", 0, message="no month run yet: press Step first")
                return self.report
            folder = root / run_folder_name(model)
            report = Report("writing", folder, month_label(model.cfg.run.start, model.t - 1), model.t,
                            href=f"{href_base}/{folder.name}/report.html" if href_base else None)
            try:
                root.mkdir(parents=True, exist_ok=True)
                write_run(model, folder, self.step_seconds, force=True)  # quick: the slow part is the report
            except Exception as exc:
                report.state, report.message = "error", f"could not write {shown_path(folder)}: {exc}"
                self.report = report
                return report
            self.report = report

        def job() -> None:
            try:
                write_report(folder)
                report.state = "done"
            except Exception as exc:
                traceback.print_exc()
                report.state, report.message = "error", f"could not write the report: {exc}"
            on_change(self.bump())

        threading.Thread(target=job, daemon=True, name="dashboard-report").start()
        return report


# ------------------------------------------------------------------------------------------------- page
@solara.component
def ParamSlider(name: str, value, on_value: Callable):
    """A slider with a caption that shows its value and unit ("Inflow: 2.50 $B/month")."""
    spec = MODEL_PARAMS.get(name, PLAY_SLIDER)
    with solara.Column(gap="0px", style={"margin-top": "4px"}):
        solara.Text(slider_text(spec, value), classes=["abm-slider-value"], style={"font-size": "13px"})
        cls = solara.SliderInt if spec["type"] == "SliderInt" else solara.SliderFloat
        cls("", value=value, on_value=on_value, min=spec["min"], max=spec["max"], step=spec["step"])


@solara.component
def QueueNote(runner: Runner, tick: solara.Reactive, queued: solara.Reactive):
    """How many clicked months are still to run: redrawn on a click without redrawing the plots."""
    tick.value  # noqa: B018 - redraw when the worker has run months ...
    queued.value  # noqa: B018 - ... and on every click
    if runner.pending:
        solara.Text(f"{runner.pending} more month{'s' if runner.pending > 1 else ''} queued",
                    classes=["abm-queued"], style={"font-size": "12px"})


@solara.component
def Controls(runner: Runner, tick: solara.Reactive, params: solara.Reactive):
    """Reset, play/pause, Step, the play interval and the month the model has reached.

    Step only queues a month and updates the small queue note (``queued``), not ``tick``: the plots are
    redrawn by the worker thread once it has run the queued months, so the next clicks are handled at once.
    """
    tick.value  # noqa: B018 - redraw on every change of the runner
    queued = solara.use_reactive(0)
    model = runner.model

    def reset():
        tick.set(runner.reset(params.value))

    def play_pause():
        tick.set(runner.set_playing(not runner.playing))

    def step():
        queued.set(runner.request_step())

    def set_interval(ms):
        runner.play_interval_s = ms / 1000
        tick.set(runner.bump())

    with solara.Row(justify="space-between"):
        solara.Button(label="Reset", color="primary", on_click=reset)
        solara.Button(label="❚❚" if runner.playing else "▶", color="primary", on_click=play_pause,
                      disabled=not model.running)
        solara.Button(label="Step", color="primary", on_click=step, disabled=not model.running)
    solara.Text(month_status(model), classes=["abm-month"], style={"font-size": "14px", "font-weight": "500"})
    QueueNote(runner, tick, queued)
    ParamSlider("play_interval", round(runner.play_interval_s * 1000), set_interval)
    if runner.error:
        solara.Error(label=runner.error)


@solara.component
def ReportCard(runner: Runner, tick: solara.Reactive, served: bool):
    """Write the current run's folder and report; then a link that opens the report."""
    tick.value  # noqa: B018
    report = runner.report
    writing = report is not None and report.state == "writing"

    def write():
        runner.start_report(runs_root(), tick.set, href_base=RUNS_URL if served else None)
        tick.set(runner.bump())

    solara.Button(label="Write run and report", color="primary", outlined=True, on_click=write,
                  disabled=writing or runner.model.t == 0)
    if report is None:
        solara.Text("Saves the months run so far as a run folder with its HTML report.",
                    style={"font-size": "12px"})
        return
    if report.state == "writing":
        solara.Text(f"Writing the report of {report.month} ({report.months} months)…",
                    classes=["abm-report-status"], style={"font-size": "12px"})
        solara.ProgressLinear(True)
    elif report.state == "error":
        solara.Error(label=report.message)
    else:
        if report.href:
            solara.Button(label=f"Open the report ({report.month})", href=report.href, target="_blank",
                          text=True, color="primary", classes=["abm-report-link"])
        solara.Text(f"Run folder: {shown_path(report.folder)}", classes=["abm-report-folder"],
                    style={"font-size": "12px", "word-break": "break-all"})


@solara.component
def ParamsCard(params: solara.Reactive):
    """Scenario, seed, the parameter sliders (with values and units) and the antitrust switches."""
    values = params.value

    def setter(name):
        def set_value(value):
            params.set({**params.value, name: value})
        return set_value

    def choose_scenario(name):
        params.set({**params.value, "scenario_name": name, **scenario_values(name)})

    spec = MODEL_PARAMS["scenario_name"]
    solara.Select(spec["label"], value=values["scenario_name"], values=spec["values"], on_value=choose_scenario)
    for name, spec in MODEL_PARAMS.items():
        if spec["type"].startswith("Slider"):
            ParamSlider(name, values[name], setter(name))
    for name, spec in MODEL_PARAMS.items():
        if spec["type"] == "Checkbox":
            solara.Checkbox(label=spec["label"], value=values[name], on_value=setter(name))
    solara.Text("Parameter changes take effect on Reset; choosing a scenario sets the sliders to its values.",
                style={"font-size": "12px", "font-style": "italic"})


@solara.component
def PlotImage(png: bytes, caption: str, kind: str):
    """A PNG with its caption as the tooltip (``title``) of the box around it."""
    with solara.v.Html(tag="div", class_=f"abm-plot {kind}", attributes={"title": caption}):
        rw.Image(value=png, format="png")


@solara.component
def SeriesView(runner: Runner, series: Series, version: int):
    """One time-series plot, redrawn when the model has a new month."""
    with runner.lock:
        key = (runner.generation, runner.model.t)

    def make():
        with runner.lock:
            model = runner.model
            rows, start = list(model.rows), model.cfg.run.start
        return series_image(rows, start, series)

    png, caption = solara.use_memo(make, [key])
    PlotImage(png, caption, "abm-series")


@solara.component
def NetworkView(runner: Runner, version: int):
    """The contract network, redrawn when the model has a new month."""
    with runner.lock:
        key = (runner.generation, runner.model.t)

    def make():
        with runner.lock:
            model = runner.model
            fig = draw_network(model)
            caption = f"{fig.axes[0].get_title()} (vendors inner ring, clouds middle ring, labs outside)"
        return _png(fig), caption

    png, caption = solara.use_memo(make, [key])
    PlotImage(png, caption, "abm-network")


@solara.component
def StatusView(runner: Runner, version: int):
    """The status card (:func:`status_html`)."""
    with runner.lock:
        body = status_html(runner.model)
    solara.HTML(tag="div", unsafe_innerHTML=body, style="font-size: 13px; padding: 8px; line-height: 1.35",
                classes=["abm-status"])


@solara.component
def MainView(runner: Runner, tick: solara.Reactive):
    """The plots, the network and the status, two to a row."""
    version = tick.value
    solara.use_effect(lambda: runner.drawn(version), [version])  # after the drawing: the worker goes on
    cards = [lambda: SeriesView(runner, CONCENTRATION, version), lambda: NetworkView(runner, version),
             lambda: SeriesView(runner, ENTRY_BARRIER, version), lambda: SeriesView(runner, SPOT_PRICE, version),
             lambda: SeriesView(runner, FRONTIER, version), lambda: StatusView(runner, version)]
    with solara.GridFixed(columns=2, align_items="start"):
        for card in cards:
            with solara.Card(margin=0, style={"padding": "4px"}):
                card()


@solara.component
def Page():
    """The dashboard page; one :class:`Runner` (model, queue, worker thread) per browser session."""
    runner = solara.use_memo(Runner, [])
    tick = solara.use_reactive(0)
    params = solara.use_reactive(dict(DEFAULTS))

    def start_worker():
        threading.Thread(target=runner.work, args=(tick.set,), daemon=True, name="dashboard-steps").start()
        return runner.stop

    solara.use_effect(start_worker, [])

    solara.Title(APP_NAME)
    with solara.AppBar():
        solara.AppBarTitle(APP_NAME)
    with solara.Sidebar(), solara.Column():
        with solara.Card("Run"):
            Controls(runner, tick, params)
        with solara.Card("Report"):
            ReportCard(runner, tick, RUNS_SERVED)
        with solara.Card("Model parameters"):
            ParamsCard(params)
    MainView(runner, tick)
