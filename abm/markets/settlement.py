"""Production, revenue and settlement (ODD S1-S3, S5 costs, S9 defaults), in phase 9.

Clouds deliver contracted capacity (rationed when short); labs serve end users in the product market
(a logit over capability and price with an outside option, S3) and train with the rest; they pay their
contracts (paying pro rata and defaulting when they cannot), spend on R&D, grow their algorithmic efficiency
(S2) and finish training runs (S1); clouds pay their running costs.
"""

from __future__ import annotations

import math

import numpy as np

from .. import economics as ec
from ..agents import CloudProvider, Lab
from . import entry


def run_length(m) -> int:
    """Months a lab gives the run it starts now (S1): no longer than 1/g, where g is the monthly log growth
    of the effective compute a run started later could use (Epoch AI 2022, "The longest training run": a
    run longer than that is overtaken by a later, larger one). g adds the expected fall of compute prices,
    the frontier's efficiency trend and the growth labs plan for their spend; runs lengthen as these slow.
    Rounded, within [1, 36] months."""
    slope_e = entry.frontier_slopes(m)[1]
    g = (-math.log(max(1.0 - m.price_decline_expected, 1e-6)) / 12 + slope_e
         + math.log(m.cfg.capital.spend_growth_annual) / 12)
    return int(np.clip(round(1.0 / g), 1, 36)) if g > 0 else 36


def settle(m) -> None:
    """Serve and train, product-market revenue, contract payments, R&D, cloud costs, defaults."""
    cfg = m.cfg
    led = m.ledger
    t = m.t
    rows = m.book.active_capacity_rows()
    # Contracts that have run their course complete.
    done = rows[m.book.cols["end"][rows] <= t]
    m.book.close(done, "completed", t)
    rows = m.book.active_capacity_rows()  # those whose end is after this month
    ratio = m.delivery_ratio()
    if rows.size:
        cloud = m.row_values("cloud")
        vol = m.row_values("volume") * ratio[cloud]
    else:
        vol = np.zeros(0)
    m.delivered_by_cloud = np.zeros(len(m.clouds))
    if rows.size:
        np.add.at(m.delivered_by_cloud, cloud, vol)
    for c, d in zip(m.clouds, m.delivered_by_cloud, strict=True):
        c.delivered = float(d) + c.spot_sold
    pay = vol * m.book.cols["price"][rows] * m.book.cols["take_or_pay"][rows]
    C = m.lab_table.cols
    slots = m.alive_slots()
    uid = C["uid"][slots]
    n = slots.size
    k_res = m.by_buyer(rows, vol * m.book.cols["eff_factor"][rows])[uid]
    # Nominal H100e (physical hardware) behind the effective compute k, for physical FLOP (review A10).
    k_nominal = m.by_buyer(rows, vol)[uid] + np.where(C["spot_bought"][slots] > 0, C["spot_bought"][slots], 0.0)
    owed = m.by_buyer(rows, pay)[uid]
    k_spot = np.where(C["spot_bought"][slots] > 0, C["spot_eff"][slots], 0.0)
    spot_paid = C["spot_paid"][slots]
    k = k_res + k_spot
    unit = np.where(k > 0, (owed + spot_paid) / np.maximum(k, 1e-12), m.reserved_ref)
    # Product market (S3): logit over capability and price with an outside option.
    d = cfg.demand
    q = C["capability"][slots]
    e = np.exp(C["log_eff"][slots]) if d.markup and cfg.efficiency.inference_gain else np.ones(n)
    p0 = m.p0
    price = d.markup * unit / (p0 * d.markup) / e
    shares, iv = ec.nest_shares(q, np.log(np.maximum(price, 1e-12)), d.theta, d.eta)
    m.env.set_adoption(iv)
    potential = m.env.spend * shares
    need = potential / (d.markup * np.maximum(unit, 1e-9))
    inf = np.minimum(k, need)
    rev = np.where(need > 0, potential * inf / np.maximum(need, 1e-12), 0.0)
    train = k - inf
    tot_k = k.sum()
    if tot_k > 0:
        m.train_fraction_est = 0.9 * m.train_fraction_est + 0.1 * float(train.sum() / tot_k)
    accounts = C["acct"][slots]
    led.transfer_many(np.full(n, led.index["end_users"]), accounts, rev, "lab_revenue")
    led.transfer_many(np.full(n, led.index["parent_companies"]), accounts, C["other_funding"][slots],
                      "parent_funding")
    # Payments: contract obligations first, R&D with what is left.
    frs = cfg.training.final_run_share
    paid = owed + spot_paid
    C["revenue"][slots] = rev
    C["revenue_ewma"][slots] = 0.7 * C["revenue_ewma"][slots] + 0.3 * rev
    C["compute"][slots] = k
    C["compute_paid"][slots] = paid
    C["compute_train"][slots] = train
    C["unit_price"][slots] = unit
    C["market_share"][slots] = shares
    C["run_hw_flop"][slots] += frs * train * m.flop_per_unit
    C["run_flop"][slots] += frs * train * np.where(k > 0, k_nominal / np.maximum(k, 1e-12), 1.0) * m.flop_per_unit
    C["run_cost"][slots] += frs * train * unit
    m.lab_table.push_revenue(slots, rev)
    reserved_by_cloud = _pay_contracts(m, slots, rows, pay)
    cash = np.maximum(led.balance[accounts], 0.0)
    solvent = C["alive"][slots] & ~C["insolvent"][slots]
    rd = np.where(solvent, np.minimum(C["rd_share"][slots] * C["spend_rate"][slots], cash), 0.0)
    led.transfer_many(accounts, np.full(n, led.index["rd_staff"]), rd, "rd_spend")
    C["rd_spend"][slots] = rd
    C["spent_last"][slots] = np.where(solvent, rd + paid, C["spent_last"][slots])
    # Efficiency and training runs.
    grow = slots[~C["insolvent"][slots]]
    if grow.size:
        ef = cfg.efficiency
        log_eff = C["log_eff"][grow]
        log_front = log_eff.max()
        log_eff = log_eff + ec.efficiency_growth(C["rd_spend"][grow], m.env.rd_half, ef.g_max)
        C["log_eff"][grow] = log_eff + ec.efficiency_diffusion(log_eff, log_front, ef.diffusion)
        due = grow[(t - C["run_start"][grow] + 1 >= C["run_len"][grow]) & (C["run_flop"][grow] > 0)]
        Lab.finish_runs(m, due)
        C["run_len"][due] = run_length(m)
    # Cloud revenue (contract payments and spot sales this month) and costs.
    for c, r in zip(m.clouds, reserved_by_cloud, strict=True):
        c.revenue = float(r) + c.spot_revenue
    m.cloud_revenue_month = led.flows.get("reserved_payment", 0.0) + led.flows.get("spot", 0.0) + \
        led.flows.get("spot_background", 0.0)
    m.agents_by_type[CloudProvider].do("settle_costs")


def _pay_contracts(m, slots, rows, pay) -> np.ndarray:
    """Labs pay this month's contract obligations; one that cannot pays pro rata and defaults. Returns what
    each cloud received."""
    if rows.size == 0:
        return np.zeros(len(m.clouds))
    led = m.ledger
    buyers = m.book.cols["buyer"][rows]
    total = np.bincount(buyers, weights=pay, minlength=m.uid_cap)
    cash = np.zeros(m.uid_cap)
    uid = m.lab_table.cols["uid"][slots]
    cash[uid] = m.lab_cash(slots)
    frac = np.where(cash >= total, 1.0, np.maximum(cash, 0.0) / np.where(total > 0, total, 1.0))
    mine = np.zeros(m.uid_cap, dtype=bool)
    mine[uid] = True
    sel = mine[buyers] & (pay > 0)
    amounts = pay[sel] * frac[buyers[sel]]
    acct = np.zeros(m.uid_cap, dtype=np.int64)
    acct[uid] = m.lab_table.cols["acct"][slots]
    cloud_acct = np.array([c.account for c in m.clouds])
    sellers = m.row_values("cloud")[sel] if rows is m.book.active_capacity_rows() else m.seller_idx(rows[sel])
    led.transfer_many(acct[buyers[sel]], cloud_acct[sellers], amounts, "reserved_payment")
    short = uid[(frac[uid] < 1.0) & (total[uid] > 0)]
    if short.size:
        slot_of = np.zeros(m.uid_cap, dtype=np.int64)
        slot_of[uid] = slots
        got = np.bincount(buyers[sel], weights=amounts, minlength=m.uid_cap)
        m.lab_table.cols["insolvent"][slot_of[short]] = True
        m.log_events("default", [m.labs[i].name for i in slot_of[short].tolist()],
                     ["could not pay reserved contracts"] * short.size, (total[short] - got[short]).tolist())
    return np.bincount(sellers, weights=amounts, minlength=len(m.clouds))
