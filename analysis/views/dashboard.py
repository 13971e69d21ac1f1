"""Interactive dashboard: Mesa's SolaraViz on the compute-market model.

Serve it with ``abm dashboard`` (see :mod:`analysis.views.dashboard_server`), or directly with
``solara run analysis/views/dashboard.py`` (or ``solara run analysis.views.dashboard:Page``). It needs no
network: Solara's front-end files come from the ``solara-assets`` package.

The sidebar holds Mesa's controls (Reset, play/pause, Step), a scenario dropdown, a seed, sliders for the
main parameters and the two antitrust switches. **Parameter changes take effect on Reset.** A slider left
at its default keeps the chosen scenario's own value; a slider moved away from it overrides that value for
the run (the "Status" card lists what is in effect). The main area shows, updated each month, lab and
cloud concentration, the spot price, the entry barrier (log scale), frontier capability, the contract
network and a status card.

Each browser session gets its own model: :func:`Page` builds it with ``solara.use_memo``; nothing
model-related lives at module level.
"""

from __future__ import annotations

import html
import math

import matplotlib.colors as mcolors
import networkx as nx
import solara
from matplotlib.figure import Figure
from mesa.visualization import SolaraViz, make_plot_component
from mesa.visualization.utils import update_counter

from abm.model import ComputeMarket
from abm.scenario import available_scenarios, load_scenario
from abm.timeline import month_label

FIG_SIZE = (4.6, 3.3)  # inches at 100 dpi: fits a half-width grid cell of SolaraViz's default layout
PLAY_INTERVAL_MS = 150

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


def overrides_for(params: dict) -> dict:
    """Scenario overrides (``{"capital.kappa": 2.0}``) for the dashboard parameters moved off their default."""
    out = {}
    for name, (key, factor, default) in PARAM_KEYS.items():
        value = params.get(name, default)
        if isinstance(default, bool):
            if bool(value) != default:
                out[key] = bool(value)
        elif not math.isclose(float(value), float(default), rel_tol=1e-9, abs_tol=1e-12):
            out[key] = float(value) * factor
    return out


class DashboardMarket(ComputeMarket):
    """:class:`ComputeMarket` with flat keyword parameters in the dashboard's units.

    SolaraViz re-creates the model on Reset as ``type(model)(**params)``; these names avoid Mesa's own
    ``scenario`` argument (a ``mesa.experimental.scenarios.Scenario`` that SolaraViz would otherwise pass)
    and have no ``**kwargs``.
    """

    def __init__(self, scenario_name: str = "baseline", seed: int = DEFAULTS["seed"],
                 kappa: float = DEFAULTS["kappa"], gamma: float = DEFAULTS["gamma"],
                 diffusion: float = DEFAULTS["diffusion"],
                 inflow_busd_month: float = DEFAULTS["inflow_busd_month"],
                 seed_capital_musd: float = DEFAULTS["seed_capital_musd"],
                 exclusivity_allowed: bool = DEFAULTS["exclusivity_allowed"],
                 equity_for_compute_allowed: bool = DEFAULTS["equity_for_compute_allowed"]):
        params = {"kappa": kappa, "gamma": gamma, "diffusion": diffusion,
                  "inflow_busd_month": inflow_busd_month, "seed_capital_musd": seed_capital_musd,
                  "exclusivity_allowed": exclusivity_allowed,
                  "equity_for_compute_allowed": equity_for_compute_allowed}
        self.scenario_name = scenario_name
        self.dashboard_overrides = overrides_for(params)
        super().__init__(scenario_name, overrides=self.dashboard_overrides or None, rng=int(seed))
        self.node_pos: dict[str, tuple[float, float]] = {}  # fixed drawing positions, see node_positions


# Labels are short so that Solara's sliders keep their width; the keys they set are in PARAM_KEYS.
MODEL_PARAMS = {
    "scenario_name": {"type": "Select", "value": "baseline", "values": available_scenarios(),
                      "label": "Scenario"},
    "seed": {"type": "SliderInt", "value": DEFAULTS["seed"], "min": 0, "max": 100, "step": 1,
             "label": "Seed"},
    "kappa": {"type": "SliderFloat", "value": DEFAULTS["kappa"], "min": 0.0, "max": 4.0, "step": 0.1,
              "label": "κ investors"},
    "gamma": {"type": "SliderFloat", "value": DEFAULTS["gamma"], "min": 0.1, "max": 0.3, "step": 0.002,
              "label": "γ scaling"},
    "diffusion": {"type": "SliderFloat", "value": DEFAULTS["diffusion"], "min": 0.0, "max": 0.3,
                  "step": 0.01, "label": "Diffusion /month"},
    "inflow_busd_month": {"type": "SliderFloat", "value": DEFAULTS["inflow_busd_month"], "min": 0.0,
                          "max": 10.0, "step": 0.25, "label": "Inflow $B/month"},
    "seed_capital_musd": {"type": "SliderFloat", "value": DEFAULTS["seed_capital_musd"], "min": 50.0,
                          "max": 5000.0, "step": 50.0,
                          "label": "Entrant seed $M (at 2024 inflow)"},
    "exclusivity_allowed": {"type": "Checkbox", "value": DEFAULTS["exclusivity_allowed"],
                            "label": "Exclusive deals allowed"},
    "equity_for_compute_allowed": {"type": "Checkbox", "value": DEFAULTS["equity_for_compute_allowed"],
                                   "label": "Equity-for-compute allowed"},
}


# ------------------------------------------------------------------------------------------- time series
def _style(title: str, ylabel: str, labels: list[str] | None = None, log: bool = False):
    """A post_process for make_plot_component: size, title, axis label, legend names, optional log scale."""

    def post(ax) -> None:
        ax.figure.set_size_inches(*FIG_SIZE)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if labels:
            for line, label in zip(ax.get_lines(), labels, strict=False):
                line.set_label(label)
            ax.legend(loc="best", fontsize=8)
        if log and any(v > 0 and math.isfinite(v) for line in ax.get_lines() for v in line.get_ydata()):
            ax.set_yscale("log")

    return post


CONCENTRATION = make_plot_component(
    {"lab_hhi_compute": "tab:red", "cloud_hhi_capacity": "tab:blue"},
    post_process=_style("Concentration (HHI, 0-10000)", "HHI", ["labs, by compute", "clouds, by capacity"]))
SPOT_PRICE = make_plot_component(
    {"spot_price_usd_per_h100e_hour": "tab:orange"},
    post_process=_style("Spot price", "$ per H100e-hour", ["spot"]))
ENTRY_BARRIER = make_plot_component(
    {"entry_barrier_usd": "tab:purple"},
    post_process=_style("Entry barrier (log scale)", "$ for a viable entrant", ["entry barrier"],
                        log=True))
FRONTIER = make_plot_component(
    {"frontier_capability": "tab:green"},
    post_process=_style("Frontier capability", "capability index", ["frontier"]))


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
    fig = fig or Figure(figsize=FIG_SIZE)
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
    ax.set_title(f"Contract network: {n_alive} labs alive, {g.number_of_edges()} links", fontsize=10)
    handles = [ax.scatter([], [], s=30, color=c, label=t + "s") for t, c in TYPE_COLOR.items()]
    handles += [ax.plot([], [], color=c, label=k.replace("_", " "))[0] for k, c in EDGE_COLOR.items()]
    ax.legend(handles=handles, loc="lower left", fontsize=6, frameon=False, ncol=2,
              bbox_to_anchor=(-0.02, -0.1))
    ax.set_xlim(-1.45, 1.45)
    ax.set_ylim(-1.45, 1.45)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig


@solara.component
def NetworkView(model: DashboardMarket):
    """The contract network, redrawn each step."""
    update_counter.get()
    solara.FigureMatplotlib(draw_network(model), format="png", bbox_inches="tight", dpi=100)


# ------------------------------------------------------------------------------------------------- status
def _money(x: float) -> str:
    return f"${x / 1e9:.3g}B" if abs(x) >= 1e9 else f"${x / 1e6:.3g}M"


@solara.component
def StatusView(model: DashboardMarket):
    """Scenario, month, labs alive, the parameters in effect and the latest events (plain HTML: no Markdown,
    whose math support would ask a CDN for KaTeX)."""
    update_counter.get()
    cfg = model.cfg
    esc = html.escape
    month = month_label(cfg.run.start, model.t)
    row = model.rows[-1] if model.rows else {}
    over = ", ".join(f"{k}={str(v).lower() if isinstance(v, bool) else f'{v:g}'}"
                     for k, v in model.dashboard_overrides.items()) or "none"
    events = [e for e in model.events_log if e["event"] != "raise"][-5:]  # funding rounds are routine
    alive = sum(lab.alive for lab in model.labs)
    flows = f" ({row.get('lab_entries', 0)} entries, {row.get('lab_exits', 0)} exits this month)" if row else ""
    parts = [
        f"<b>{esc(model.scenario_name)}</b>, seed {cfg.run.seed}: month <b>{month}</b> "
        f"(step {model.t} of {cfg.run.months}){'' if model.running else ' &mdash; finished'}",
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
    solara.HTML(tag="div", unsafe_innerHTML=body, style="font-size: 13px; padding: 8px; line-height: 1.35")


COMPONENTS = [CONCENTRATION, (NetworkView, 0), ENTRY_BARRIER, SPOT_PRICE, FRONTIER, (StatusView, 0)]


@solara.component
def Page():
    """The dashboard page; one model per browser session."""
    model = solara.use_memo(lambda: DashboardMarket(**DEFAULTS), [])
    SolaraViz(model, components=COMPONENTS, model_params=MODEL_PARAMS, name="AI compute market",
              play_interval=PLAY_INTERVAL_MS)
