"""Monthly model-level metrics, computed from arrays of the current state (one row of timeseries.csv)."""

from __future__ import annotations

import math

import numpy as np

from . import economics as ec
from .timeline import month_label

COLUMNS = [
    "month", "step", "labs_active", "lab_entries", "lab_exits", "lab_hhi_compute", "lab_hhi_revenue",
    "lab_hhi_capital", "lab_top3_share_compute", "lab_gini_capital", "frontier_capability",
    "median_capability", "frontier_training_flop", "frontier_effective_flop", "frontier_run_cost_usd",
    "models_above_1e25_cumulative", "largest_lab_h100e", "entry_barrier_usd", "entry_barrier_now_usd",
    "entry_barrier_compute_usd", "entry_barrier_runway_usd", "entry_barrier_terms_usd", "marginal_capability_per_usd", "efficiency_share_of_progress",
    "small_lab_survival_24m", "cloud_hhi_capacity", "cloud_utilization", "cloud_utilization_labs",
    "cloud_utilization_background", "installed_h100e", "world_compute_stock_h100e", "installed_gw",
    "capex_usd", "spot_price_usd_per_h100e_hour", "reserved_price_usd_per_h100e_hour",
    "reserved_price_small_usd_per_h100e_hour", "reserved_price_frontier_usd_per_h100e_hour", "cloud_backlog_usd",
    "cloud_revenue_usd", "vendor_hhi_shipments", "captive_share_shipments", "vendor_lerner",
    "chip_price_usd_per_h100e", "merchant_price_usd_per_h100e", "end_user_demand_usd", "ai_adoption", "lab_revenue_usd", "investor_inflow_usd",
]
# Columns that are empty (NaN in memory) when undefined, as documented in the README.
NULLABLE = {"reserved_price_usd_per_h100e_hour", "reserved_price_small_usd_per_h100e_hour",
            "reserved_price_frontier_usd_per_h100e_hour", "small_lab_survival_24m"}


def efficiency_share(hist: list[tuple[float, float]], window: int = 12) -> float:
    """Share of the frontier's effective-compute growth over ``window`` months due to efficiency.

    ``hist`` holds, per month, (ln physical FLOP, ln efficiency) of one series: the record run (the highest
    effective FLOP so far), so that both terms describe the same run. The share is
    d ln e / (d ln e + max(d ln C_phys, 0)) over the window; 0 when there was no growth at all.
    """
    if len(hist) < 2:
        return 0.0
    k = min(window, len(hist) - 1)
    d_phys = max(hist[-1][0] - hist[-1 - k][0], 0.0)
    d_eff = max(hist[-1][1] - hist[-1 - k][1], 0.0)
    tot = d_phys + d_eff
    return d_eff / tot if tot > 0 else 0.0


def survival_rate_24m(small: np.ndarray, birth: np.ndarray, exit_t: np.ndarray, t: int) -> float:
    """Of labs born small that are at least 24 months old, the share alive at age 24 (NaN if none).

    Arrays over all labs ever created: born small, month of birth, month of exit (-1 while alive)."""
    born = small & (t - birth >= 24)
    if not born.any():
        return float("nan")
    ok = (exit_t[born] < 0) | (exit_t[born] - birth[born] >= 24)
    return float(ok.sum() / born.sum())


def group_price(m, group: str) -> float:
    """Price per effective H100e-hour (a captive chip counts at the ecosystem factor) of the reserved contracts
    a group of labs signed this month, weighted by effective volume (``small``: small labs; ``frontier``: the
    three labs with the most compute); NaN if it signed none."""
    volume, value = m.reserved_by_group[group]
    return float(value / volume / ec.HOURS_PER_MONTH) if volume > 0 else float("nan")


def collect_row(m, month=None) -> dict:
    """All timeseries columns for the month that just ended (``month``: the model's month_slots())."""
    C = m.lab_table.cols
    alive = m.alive_slots()
    t = m.t
    # Labs that exited this month still bought compute and earned revenue in it.
    month = m.month_slots() if month is None else month
    compute = C["compute"][month]
    revenue = C["revenue"][month]
    capital = C["capital_raised"][alive]
    caps = C["capability"][alive]
    online = np.array([c.online for c in m.clouds])
    delivered = np.array([c.delivered for c in m.clouds])
    # Frontier run cost: cost of the largest run completed in the last 12 months.
    run_cost = m.frontier_run_cost()
    front = m.labs[int(alive[int(np.argmax(caps))])] if alive.size else None
    if front is not None:
        # d capability / d total training spend of the run behind the frontier lab's capability: gamma over
        # that spend (all of the run's training compute, not only the final run); if the frontier lab has not
        # run one in the model (its capability is from the start), the record run's, and before any run a
        # run's worth of its current training compute.
        spend = front.cap_train_spend or m.record_train_spend or \
            (front.compute_train * front.unit_price * m.cfg.training.run_months)
        mcpu = float(ec.marginal_compute_return(max(spend, 1.0), m.gamma))
    else:
        mcpu = 0.0
    ship = np.sum(m.shipments_hist[-12:], axis=0) if m.shipments_hist else np.zeros(len(m.vendors))
    captive = np.array([v.kind == "captive" for v in m.vendors])
    ship_now = m.shipments_hist[-1] if m.shipments_hist else np.zeros(len(m.vendors))
    prices = np.array([v.price for v in m.vendors])
    costs = np.array([v.unit_cost for v in m.vendors])
    w = ship_now if ship_now.sum() > 0 else np.array([v.capacity for v in m.vendors])
    lerner = float(np.dot(w, ec.lerner_index(prices, costs)) / w.sum()) if w.sum() > 0 else 0.0
    chip_price = m.chip_spend_month / m.chip_units_month if m.chip_units_month > 0 else \
        (float(np.dot(w, prices) / w.sum()) if w.sum() > 0 else 0.0)
    merch = ~captive
    wm = ship_now[merch] if ship_now[merch].sum() > 0 else np.array([v.capacity for v in m.vendors])[merch]
    merchant_price = float(np.dot(wm, prices[merch]) / wm.sum()) if wm.sum() > 0 else 0.0
    rows = m.book.active_capacity_rows()
    backlog = float(m.row_values("owed_next").sum()) if rows.size else 0.0
    return {
        "month": month_label(m.cfg.run.start, t),
        "step": t,
        "labs_active": int(alive.size),
        "lab_entries": m.entries,
        "lab_exits": m.exits,
        "lab_hhi_compute": ec.hhi(compute),
        "lab_hhi_revenue": ec.hhi(revenue),
        "lab_hhi_capital": ec.hhi(capital),
        "lab_top3_share_compute": ec.top_share(compute, 3),
        "lab_gini_capital": ec.gini(capital),
        "frontier_capability": float(caps.max()) if caps.size else 0.0,
        "median_capability": float(np.median(caps)) if caps.size else 0.0,
        "frontier_training_flop": m.best_run_flop,
        "frontier_effective_flop": m.best_run_eff_flop,
        "frontier_run_cost_usd": float(run_cost),
        "models_above_1e25_cumulative": m.large_runs,
        "largest_lab_h100e": float(compute.max()) if compute.size else 0.0,
        "entry_barrier_usd": float(m.entry_barrier),
        "entry_barrier_now_usd": float(m.entry_barrier_now),
        "entry_barrier_compute_usd": m.entry_barrier_parts["compute"],
        "entry_barrier_runway_usd": m.entry_barrier_parts["runway"],
        "entry_barrier_terms_usd": m.entry_barrier_parts["terms"],
        "marginal_capability_per_usd": mcpu,
        "efficiency_share_of_progress": efficiency_share(m.record_hist),
        "small_lab_survival_24m": survival_rate_24m(C["small"][: m.lab_table.n], C["birth"][: m.lab_table.n],
                                                    C["exit_t"][: m.lab_table.n], t),
        "cloud_hhi_capacity": ec.hhi(online),
        "cloud_utilization": float(delivered.sum() / online.sum()) if online.sum() > 0 else 0.0,
        "cloud_utilization_labs": float((delivered.sum() - m.spot_volume_background) / online.sum())
        if online.sum() > 0 else 0.0,
        "cloud_utilization_background": float(m.spot_volume_background / online.sum()) if online.sum() > 0 else 0.0,
        "installed_h100e": float(online.sum()),
        "world_compute_stock_h100e": float(sum(c.received for c in m.clouds)),
        "installed_gw": float(sum(c.power_used for c in m.clouds) * m.cfg.cloud_params.pue / 1000.0),
        "capex_usd": float(m.capex_month),
        "spot_price_usd_per_h100e_hour": m.spot_price / ec.HOURS_PER_MONTH,
        "reserved_price_usd_per_h100e_hour": m.reserved_price_month / ec.HOURS_PER_MONTH
        if math.isfinite(m.reserved_price_month) else float("nan"),
        "reserved_price_small_usd_per_h100e_hour": group_price(m, "small"),
        "reserved_price_frontier_usd_per_h100e_hour": group_price(m, "frontier"),
        "cloud_backlog_usd": backlog,
        "cloud_revenue_usd": float(m.cloud_revenue_month),
        "vendor_hhi_shipments": ec.hhi(ship),
        "captive_share_shipments": float(ship[captive].sum() / ship.sum()) if ship.sum() > 0 else 0.0,
        "vendor_lerner": lerner,
        "chip_price_usd_per_h100e": float(chip_price),
        "merchant_price_usd_per_h100e": merchant_price,
        "end_user_demand_usd": float(m.env.spend),
        "ai_adoption": float(m.env.adoption),
        "lab_revenue_usd": float(revenue.sum()),
        "investor_inflow_usd": float(m.inflow_month),
    }
