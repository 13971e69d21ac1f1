"""The figures of a run's report, each drawn from a :class:`~analysis.views.run_data.RunData`: market
shares, concentration and market power, capability against compute, the sources of frontier progress,
prices and money flows, entry and survival, and the contract network at several dates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from .common import (
    FS_LABEL,
    FS_LEGEND,
    FS_TICK,
    hhi_bands,
    legend,
    new_figure,
    no_data,
    num,
    positive,
    set_log_if_positive,
    style,
    usd,
    usd_axis,
    year_axis,
)
from .run_data import (
    REST_COLOR,
    RunData,
    lab_colors,
    lab_compute_shares,
    lab_lifetimes,
    survival_curve,
    top_labs,
    vendor_shipments,
)

VENDOR_COLORS = {"merchant": ["#2c7fb8", "#7fcdbb", "#41b6c4", "#253494"],
                 "captive": ["#e6550d", "#fd8d3c", "#a63603", "#fdae6b", "#d94801"]}


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
    tw.plot(x, num(r.ts, "installed_gw"), lw=1.4, ls="--", color="tab:red", label="installed facility power (right)")
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

