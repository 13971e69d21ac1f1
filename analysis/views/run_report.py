"""The report on one run folder (``abm report`` on the output of ``abm run``): headline numbers and what
changed over the run, then the run's figures with their captions.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..tables import has_table
from .common import (
    HEADLINE,
    Doc,
    _col_label,
    _headline_table,
    esc,
    fmt_metric,
    glossary_html,
    hhi_class,
    horizon_indices,
    num,
    table_name,
    usd,
)
from .run_data import RunData, load_run
from .run_figures import (
    fig_capability,
    fig_concentration,
    fig_entry,
    fig_network,
    fig_prices,
    fig_progress,
    fig_shares,
)


# ------------------------------------------------------------------------------------------------ run report
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
               "contracts or sold spot, and installed facility power. <b>Bottom right</b>: the money flowing each "
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

    suffix = ".parquet" if table_name(d, "timeseries").endswith(".parquet") else ".csv"
    missing = [f"{f}{suffix}" for f in ("agents", "contracts", "runs") if not has_table(d, f)]
    files = ", ".join(f"{f}{suffix}" for f in ("timeseries", "agents", "contracts")) + f" and runs{suffix}"
    doc.footer_note = (f"Generated by <code>abm report</code> from the files in <code>{esc(d)}</code> "
                       f"({files}{'; missing: ' + esc(', '.join(missing)) if missing else ''}).")
    return doc
