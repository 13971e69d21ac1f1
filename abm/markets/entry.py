"""Entry, exit and the entry barrier (ODD S9), in phase 10.

Insolvent labs, and idle labs whose cash fell below the wind-down level with nothing owed, exit: their
clouds recover take-or-pay claims pro rata, their contracts default and free capacity, and their know-how
diffuses (:func:`exit_many`). The entry barrier is the capital a representative entrant needs to reach a
viable capability within its planning horizon (:func:`entry_barrier`). Potential entrants arrive as a
Poisson stream, each asking for a seed round (:func:`candidates`); investors fund them in the capital
market beside incumbents' rounds, and those funded enter (:func:`admit`).
"""

from __future__ import annotations

import math

import numpy as np

from .. import economics as ec
from ..agents import Lab
from ..logs import Formatted
from .contracting import sell_chance

BARRIER_ITERATIONS = 60  # cap on the entrant-price fixed point iterations (converges in a few; ODD S9)
LGD_LEARNING = 0.3  # weight of a month's realized loss given default in the clouds' estimate (no source; ODD S9)


def _trend(series, window: int) -> float:
    """Least-squares slope per month of the last ``window`` values (0 with fewer than 2), never negative."""
    y = np.asarray(series[-window:], dtype=float)
    if y.size < 2:
        return 0.0
    x = np.arange(y.size, dtype=float)
    return max(float(np.polyfit(x, y, 1)[0]), 0.0)


def exit_and_enter(m) -> None:
    """Insolvent labs exit (contracts default, know-how diffuses); the entry barrier is measured (S9).
    Entrants are funded, and enter, in the capital market (phase 6: :func:`candidates`, :func:`admit`)."""
    tr = m.cfg.training
    C = m.lab_table.cols
    s = m.alive_slots()
    idle = (C["compute"][s] <= 0) & (C["revenue"][s] <= 0) & (C["other_funding"][s] <= 0)
    broke = idle & (m.lab_cash(s) < tr.wind_down_cash_usd) & (m.obligations_by_uid()[C["uid"][s]] <= 0)
    out = np.flatnonzero(C["insolvent"][s] | broke)
    exit_many(m, [(m.labs[i], "default" if C["insolvent"][i] else "wind_down") for i in s[out].tolist()])
    m.entry_barrier_parts = entry_barrier(m, parts=True)
    m.entry_barrier = m.entry_barrier_parts["total"]
    m.entry_barrier_now = entry_barrier(m, projected=False)


def exit_many(m, leaving: list[tuple[Lab, str]]) -> None:
    """Labs exit in the given order: take-or-pay claims on their contracts' remaining value are paid pro
    rata from the cash left, the contracts default and free the clouds' capacity, clouds write off their
    stakes, and each exit's know-how diffuses to the labs still alive that are behind it."""
    if not leaving:
        return
    before = m.alive_slots()
    uid = np.array([lab.unique_id for lab, _ in leaving], dtype=np.int64)
    rows = m.book.active_capacity_rows()
    theirs = np.zeros(m.uid_cap, dtype=bool)
    theirs[uid] = True
    rows = rows[theirs[m.book.cols["buyer"][rows]]]
    if rows.size:
        buyers = m.book.cols["buyer"][rows]
        claims = m.book.remaining_value(m.t + 1, rows) * m.book.cols["take_or_pay"][rows]
        total = np.bincount(buyers, weights=claims, minlength=m.uid_cap)
        cash = np.zeros(m.uid_cap)
        cash[uid] = m.ledger.balance[[lab.account for lab, _ in leaving]]
        share = np.where((total > 0) & (cash > 0), np.minimum(1.0, cash / np.where(total > 0, total, 1.0)), 0.0)
        pay = share[buyers] > 0
        acct = np.zeros(m.uid_cap, dtype=np.int64)
        acct[uid] = [lab.account for lab, _ in leaving]
        cloud_acct = np.array([c.account for c in m.clouds])
        recovered = claims[pay] * share[buyers[pay]]
        m.ledger.transfer_many(acct[buyers[pay]], cloud_acct[m.seller_idx(rows[pay])], recovered,
                               "default_recovery")
        m.release(rows, "defaulted")
        # Clouds learn the loss given default that defaults actually bring (review A7): the share of the
        # claims not recovered, folded into the estimate they price with (contracting.lgd is the prior).
        claimed = float(claims.sum())
        if claimed > 0:
            realized = 1.0 - float(recovered.sum()) / claimed
            m.lgd_estimate = (1 - LGD_LEARNING) * m.lgd_estimate + LGD_LEARNING * realized
    slots = np.array([lab.slot for lab, _ in leaving], dtype=np.int64)
    C = m.lab_table.cols
    C["alive"][slots] = False
    C["exit_t"][slots] = m.t
    for lab, _ in leaving:
        lab.exit_month = m.t
    m.exits += len(leaving)
    for c in m.clouds:
        if c.equity_stakes:
            for lab, _ in leaving:
                c.equity_stakes.pop(lab.unique_id, None)
    m.labs_version += 1
    # Know-how diffuses, exit by exit, to the labs still alive that are behind the one leaving. Efficiencies
    # only rise, and never to the leaving lab's, so the labs behind an exit are among those that were behind
    # it before the first exit of the month, and never among those at or above the most efficient lab
    # leaving. Those that can be reached are kept sorted by their efficiency before the first exit, so the
    # labs an exit can reach are the first ones, and each exit tests those alone.
    ed = m.cfg.efficiency.exit_diffusion
    log_eff = m.lab_table.cols["log_eff"]
    reach = float(log_eff[slots].max())
    sub = before[log_eff[before] < reach]  # in lab-table order
    order = np.argsort(log_eff[sub], kind="stable")
    sub = sub[order]  # sorted by efficiency before the first exit
    was = log_eff[sub]
    vals = was.copy()
    position = np.empty(order.size, dtype=np.int64)
    position[order] = np.arange(order.size)  # lab-table order -> sorted order
    ranked = sub[position]  # the same labs in lab-table order, to find a lab's place
    alive_now = np.ones(sub.size, dtype=bool)
    changed = np.zeros(sub.size, dtype=bool)
    n_alive = before.size
    for lab, _ in leaving:
        n_alive -= 1
        k = int(np.searchsorted(ranked, lab.slot))
        if k < ranked.size and ranked[k] == lab.slot:  # the leaving lab is among them: its value may have risen
            k = int(position[k])
            alive_now[k] = False
            top = vals[k]
        else:
            top = log_eff[lab.slot]
        p = int(np.searchsorted(was, top, side="left"))  # the labs that were behind it
        behind = alive_now[:p] & (vals[:p] < top)
        if behind.any():
            v = vals[:p]
            v[behind] += ed * (top - v[behind]) / max(n_alive, 1)
            changed[:p] |= behind
    log_eff[sub[changed]] = vals[changed]
    cash = m.ledger.balance[[lab.account for lab, _ in leaving]].tolist()
    m.log_events("exit", [lab.name for lab, _ in leaving], [why for _, why in leaving], cash)


def _blended_trend(series, prior: float, window: int = 36) -> float:
    """Slope per month of the last ``window`` values (:func:`_trend`), blended with a prior slope while the
    history is short: weight (points − 1)/(window − 1) on the data, so the projection does not switch on
    when the second month arrives."""
    n = min(len(series), window)
    w = max(n - 1, 0) / (window - 1)
    return (1 - w) * prior + w * _trend(series, window)


def frontier_slopes(m) -> tuple[float, float]:
    """Monthly trends of the frontier's capability and ln efficiency (last 36 months), each blended with its
    prior: ln efficiency grows at ln(efficiency_growth_prior)/12, capability at γ(ln compute prior +
    ln efficiency prior)/12 (capability is γ ln effective compute, S1)."""
    key = (len(m.q_front_hist), len(m.eff_front_hist), m.gamma, id(m.cfg))  # the histories only grow
    hit = m.__dict__.get("_frontier_slopes")
    if hit is not None and hit[0] == key:
        return hit[1]
    en = m.cfg.entry
    e_prior = math.log(en.efficiency_growth_prior) / 12
    q_prior = m.gamma * (math.log(en.frontier_compute_growth_prior) / 12 + e_prior)
    slopes = _blended_trend(m.q_front_hist, q_prior), _blended_trend(m.eff_front_hist, e_prior)
    m._frontier_slopes = (key, slopes, m.cfg)  # (the scenario kept alive so that its id is not reused)
    return slopes


def projected_frontier(m, horizon: int) -> float:
    """Frontier capability extrapolated ``horizon`` months along its trend (:func:`frontier_slopes`)."""
    alive = m.alive_slots()
    q_now = float(m.lab_table.cols["capability"][alive].max()) if alive.size else 0.0
    return q_now + frontier_slopes(m)[0] * horizon


def entry_terms(m) -> dict:
    """What an entrant faces this month, the same for every entrant (cached per month and lab set)."""
    key = (m.t, m.labs_version)
    if m.entry_cache is not None and m.entry_cache[0] == key:
        return m.entry_cache[1]
    ct, en = m.cfg.contracting, m.cfg.entry
    term = min(ct.terms_months)
    market = [c for c in m.clouds if not c.public and not c.restricted]
    r_lab = float(ec.lab_discount_rate(ct.lab_base_rate_annual, m.cfg.capital.target_runway_months,
                                       ct.lab_impatience))
    alive = m.alive_slots()
    log_front = float(m.lab_table.cols["log_eff"][alive].max()) if alive.size else 0.0
    ctx = {
        "floor": float(np.median([c.floor_price for c in market])) * (1 - m.price_decline_expected) ** (term / 24),
        "spot_path": ec.expected_price_path(m.spot_price_ewma, term, m.price_decline_expected),
        # The chance a cloud would sell the capacity spot instead, as in contracting: its utilization in [0.3, 1].
        "sell_prob": float(np.median(sell_chance(m, market))),
        "beta": float(ec.rubinstein_weight(r_lab, float(np.median([c.cost_of_capital for c in market])) / 12)),
        # A public provider with spare capacity rents to the entrants it would take at its floor.
        "public": [(c.floor_price, c.eligible_capital_max) for c in m.clouds
                   if c.public and m.available(c, m.t, term) > 0],
        "target": projected_frontier(m, en.planning_horizon_months) - en.viable_gap,
        "target_now": (float(m.lab_table.cols["capability"][alive].max()) if alive.size else 0.0) - en.viable_gap,
        "eff_front_now": math.exp(log_front),
        "eff_front_then": math.exp(log_front) * math.exp(frontier_slopes(m)[1] * en.planning_horizon_months),
    }
    m.entry_cache = (key, ctx)
    return ctx


def entrant_price(m, cash, obligation, risk_free: bool = False):
    """Price per H100e-month an entrant with ``cash`` would bargain for a deal worth ``obligation``.

    Median cloud terms; the entrant's default risk comes from its coverage cash / obligation and its
    patience from a full target runway; its outside option is the expected spot price. With ``risk_free``
    the same bargain for a buyer the cloud expects never to default. Works elementwise on arrays.
    """
    ct = m.cfg.contracting
    x = entry_terms(m)
    cash = np.asarray(cash, dtype=float)
    pdef = 0.0 if risk_free else ec.default_probability(cash / np.maximum(obligation, 1.0), ct.risk_k)
    cmin = (1 + pdef * m.lgd_estimate) * max(x["floor"], x["spot_path"] * x["sell_prob"])
    alt = x["spot_path"] * (1 + ct.spot_risk_premium)
    p = ec.nash_price(alt, cmin, x["beta"])
    p = np.where(np.isfinite(p), p, np.maximum(cmin, alt))
    for floor, max_capital in x["public"]:
        p = np.where(cash <= max_capital, np.minimum(p, floor), p)
    return float(p) if p.ndim == 0 else p


def entry_barrier(m, efficiency_fraction=None, cash=None, projected: bool = True, parts: bool = False):
    """Capital a representative entrant needs to reach a viable capability in its horizon (S9).

    With arrays of efficiency fractions and cash, the capital each such entrant needs. With ``projected``
    False: the capital to reach today's viable capability with today's frontier efficiency, no trend
    projection (``entry_barrier_now_usd``). With ``parts`` (scalar arguments only): the barrier split into
    ``compute`` (the final run's compute at the risk-free bargained price), ``runway`` (the rest of the
    budget at that price) and ``terms`` (what the entrant's own bargained price, with its default risk,
    adds), which sum to the barrier (``total``)."""
    en = m.cfg.entry
    frac = efficiency_fraction if efficiency_fraction is not None else \
        0.5 * (en.efficiency_fraction_lo + en.efficiency_fraction_hi)
    cash = seed_median(m) if cash is None else cash
    x = entry_terms(m)
    target = x["target"] if projected else x["target_now"]
    eff_then = (x["eff_front_then"] if projected else x["eff_front_now"]) * np.asarray(frac, dtype=float)
    compute_share = 1 - m.cfg.efficiency.rd_share_init
    frs = m.cfg.training.final_run_share
    # The price depends on the entrant's coverage of the compute bill it implies: iterate to the fixed point.
    # From need = 0 the map (need -> price -> need) is increasing and bounded (the price never exceeds the
    # larger of the cloud's reservation price at PD = 1 and the entrant's outside option), so it converges.
    need = np.zeros(np.broadcast(np.asarray(cash, dtype=float), eff_then).shape)
    for _ in range(BARRIER_ITERATIONS):
        price = entrant_price(m, cash, need * compute_share)
        new = np.asarray(ec.capital_to_reach(target, eff_then, m.g_coef, m.gamma, m.flop_per_unit, price,
                                             compute_share) / frs, dtype=float)
        done = np.all(np.abs(new - need) <= 1e-9 * np.maximum(new, 1.0))
        need = new
        if done:
            break
    if parts:
        # The bill is linear in the price: at the risk-free price it is the compute of the final run plus
        # the rest of the budget over the horizon (the runway); the excess at the entrant's price is the
        # premium its contract terms and default risk add.
        p = entrant_price(m, cash, need * compute_share)
        p0 = entrant_price(m, cash, need * compute_share, risk_free=True)
        base = need * p0 / p
        compute = base * compute_share * frs
        return {"total": float(need), "compute": float(compute), "runway": float(base - compute),
                "terms": max(float(need - base), 0.0)}  # p0 <= p: never negative but for rounding
    return float(need) if need.ndim == 0 else need


def seed_median(m) -> float:
    """Median seed round this month: ``entry.seed_capital_median_usd`` scaled by the investor inflow (with
    sentiment and shocks) against its 2024-01 level."""
    return m.cfg.entry.seed_capital_median_usd * m.env.inflow / max(m.cfg.capital.inflow_usd_month, 1e-9)


def no_candidates() -> dict:
    """An empty set of potential entrants (the arrays :func:`candidates` returns)."""
    return {"seed": np.zeros(0), "fraction": np.zeros(0), "efficiency": np.zeros(0), "q_start": np.zeros(0)}


def candidates(m) -> dict:
    """This month's potential entrants (phase 6): a Poisson number at rate ``entry.rate_per_month`` x
    sentiment, each with a seed round it asks investors for (lognormal around the median seed scaled by this
    month's inflow against the 2024-01 level, so seeds grow with the inflow and with sentiment), an
    efficiency drawn as a fraction of the frontier's, and the capability of the best open model it starts
    from: the frontier of ``open_model_lag_months`` ago. Arrays; the capital market decides who is funded."""
    en = m.cfg.entry
    n = int(m.rng.poisson(en.rate_per_month * m.sentiment))
    seeds = m.rng.lognormal(math.log(max(seed_median(m), 1e-9)), en.seed_capital_sigma, n) if n else np.zeros(0)
    fracs = m.rng.uniform(en.efficiency_fraction_lo, en.efficiency_fraction_hi, n) if n else np.zeros(0)
    alive = m.alive_slots()
    log_front = float(m.lab_table.cols["log_eff"][alive].max()) if alive.size else 0.0
    h = m.q_front_hist
    q_open = h[max(len(h) - 1 - en.open_model_lag_months, 0)] if h else 0.0
    return {"seed": seeds, "fraction": fracs, "efficiency": math.exp(log_front) * fracs,
            "q_start": np.full(n, q_open)}


def admit(m, funded: dict) -> None:
    """Entrants whose seed round closed enter as small labs with the seed from the investor pool (S9)."""
    first = len(m.labs)
    names = []
    for seed, eff, q0 in zip(funded["seed"].tolist(), funded["efficiency"].tolist(), funded["q_start"].tolist(),
                             strict=True):
        names.append(found(m, f"Entrant-{m.t:03d}-{len(m.labs):04d}", seed, eff, q0, "investor_pool",
                           start=False).name)
    Lab.start_spending_all(m, np.arange(first, len(m.labs)))
    m.entries += len(names)
    m.log_events("entry", names, Formatted("efficiency {:.2f} of frontier", funded["fraction"]), funded["seed"])


def found(m, name: str, seed: float, efficiency: float, q_start: float, payer: str,
          rd_share: float | None = None, start: bool = True) -> Lab:
    """A new small lab with ``seed`` of cash from ``payer`` (all equity to investors), ``efficiency``, and the
    capability ``q_start`` of the open model it starts from; it starts spending this month (``start``; False
    leaves that to the caller, which starts many at once)."""
    eff_flop = float(ec.effective_flop_for_capability(q_start, m.g_coef, m.gamma))
    lab = Lab(m, name, "small", efficiency=efficiency, last_run_flop=eff_flop / efficiency, rd_share=rd_share)
    m.ledger.transfer(payer, lab, seed, "seed_round")
    C = m.lab_table.cols
    C["capital_raised"][lab.slot] = seed
    C["investor_share"][lab.slot] = 1.0  # all of it (a new lab has no other holder)
    m.add_lab(lab)
    if start:
        lab.start_spending()
    return lab


def admit_probe(m, seed: float, efficiency_fraction: float, rd_share: float | None = None,
                name: str = "Probe", stream: int = 0) -> Lab:
    """A probe entrant, for studies of entry (``abm barriers``): an entrant as in :func:`admit`, founded now
    with a chosen ``seed`` (from investors outside the pool, so the other entrants' money is untouched) and
    efficiency (``efficiency_fraction`` of the frontier's), starting from the open model. With ``rd_share``
    its R&D share stays at that value (a fixed strategy) instead of adapting. It then acts as any lab; in
    the markets' random orders it takes a place drawn from its own stream (``stream``; World.random_order),
    so the world's own draws are those it would make without the probe."""
    if m.probe_rng is None:
        m.probe_rng = np.random.default_rng([int(m.cfg.run.seed), int(stream)])
    alive = m.alive_slots()
    log_front = float(m.lab_table.cols["log_eff"][alive].max()) if alive.size else 0.0
    h = m.q_front_hist
    q_open = h[max(len(h) - 1 - m.cfg.entry.open_model_lag_months, 0)] if h else 0.0
    lab = found(m, name, seed, math.exp(log_front) * efficiency_fraction, q_open, "investors", rd_share)
    lab.probe = True
    lab.rd_fixed = rd_share is not None
    m.log_event("probe_entry", lab.name, f"efficiency {efficiency_fraction:.2f} of frontier", seed)
    return lab
