"""The model's economics as small pure functions.

Every rule that turns numbers into numbers lives here, without agents or model state, so that each can be
tested alone against values derived by hand or from its source. Agents call these functions to decide;
markets call them over numpy arrays to clear.
"""

from __future__ import annotations

import math

import numpy as np

HOURS_PER_MONTH = 730.0
SECONDS_PER_MONTH = 2.63e6
H100_DENSE_BF16_FLOPS = 989e12


# ---------------------------------------------------------------------------------------------------------
# S1 capability from compute
# ---------------------------------------------------------------------------------------------------------


def flop_per_h100e_month(mfu: float = 0.4) -> float:
    """Useful FLOP delivered by one H100-equivalent for one month at model FLOP utilisation ``mfu``.

    989e12 dense BF16 FLOP/s x 2.63e6 s x MFU (the model's unit of compute volume): about 1.04e21 at MFU 0.4.
    """
    return H100_DENSE_BF16_FLOPS * SECONDS_PER_MONTH * mfu


def scaling_exponent(alpha: float, beta: float) -> float:
    """Compute exponent gamma of the compute-optimal reducible loss, gamma = alpha*beta/(alpha+beta).

    Minimising L(N, D) = E + A N^-alpha + B D^-beta subject to C = 6ND gives R(C) = G C^-gamma
    (Hoffmann et al. 2022; Besiroglu et al. 2024 refit: alpha=0.3478, beta=0.3658, gamma=0.178).
    """
    return alpha * beta / (alpha + beta)


def scaling_coefficient(a_coef: float, b_coef: float, alpha: float, beta: float) -> float:
    """Coefficient G of R(C) = G C^-gamma on the compute-optimal frontier, derived from A, B, alpha, beta.

    With N* = K (C/6)^(beta/(alpha+beta)), D* = (C/6)/N*, K = (alpha A / (beta B))^(1/(alpha+beta)),
    R(C) = (A K^-alpha + B K^beta) (C/6)^-gamma, so G = (A K^-alpha + B K^beta) 6^gamma.
    """
    k = (alpha * a_coef / (beta * b_coef)) ** (1.0 / (alpha + beta))
    gamma = scaling_exponent(alpha, beta)
    return (a_coef * k ** (-alpha) + b_coef * k**beta) * 6.0**gamma


def reducible_loss(effective_flop, g_coef: float, gamma: float):
    """Reducible loss R = G C^-gamma of a compute-optimal model trained with ``effective_flop``."""
    return g_coef * np.power(effective_flop, -gamma)


def capability(effective_flop, g_coef: float, gamma: float):
    """Capability index q = -ln R(C): each factor x of effective compute adds gamma*ln(x).

    A monotone transform of the reducible loss; linear in ln C, so every doubling of capability costs
    exponentially more compute (diminishing returns per dollar).
    """
    return -np.log(reducible_loss(np.maximum(effective_flop, 1.0), g_coef, gamma))


def effective_flop_for_capability(q, g_coef: float, gamma: float):
    """Inverse of :func:`capability`: effective FLOP needed to reach capability ``q``."""
    return np.exp((np.asarray(q, dtype=float) + math.log(g_coef)) / gamma)


# ---------------------------------------------------------------------------------------------------------
# S2 algorithmic efficiency
# ---------------------------------------------------------------------------------------------------------


def efficiency_growth(rd_spend, rd_half: float, g_max: float):
    """Monthly growth of ln(efficiency) from own R&D: g_max * rd/(rd + rd_half) (saturating).

    Calibrated so that a frontier lab's R&D budget yields the frontier doubling time of about 8 months
    (Ho et al. 2024): ln 2 / 8 = 0.087 per month.
    """
    rd = np.maximum(np.asarray(rd_spend, dtype=float), 0.0)
    return g_max * rd / (rd + rd_half)


def efficiency_diffusion(log_eff, log_frontier: float, rate: float):
    """Catch-up of ln(efficiency) toward the frontier: rate * (ln e_front - ln e_i), never negative."""
    return rate * np.maximum(log_frontier - np.asarray(log_eff, dtype=float), 0.0)


def marginal_rd_return(rd_spend, rd_half: float, g_max: float, gamma: float, horizon: float):
    """Capability per extra dollar of R&D: gamma * d(growth)/d(rd) * months the gain is used."""
    rd = np.maximum(np.asarray(rd_spend, dtype=float), 0.0)
    return gamma * g_max * rd_half / (rd + rd_half) ** 2 * horizon


def marginal_compute_return(train_spend, gamma: float):
    """Capability per extra dollar of training compute: d(gamma ln C)/d$ = gamma / spend."""
    return gamma / np.maximum(np.asarray(train_spend, dtype=float), 1.0)


def adapt_share(share, mr_rd, mr_compute, speed: float, lo: float, hi: float):
    """Move the R&D share of budget toward the use with the higher observed marginal return.

    share' = share * (mr_rd / mr_compute)^speed, clipped to [lo, hi]: a multiplicative step of the
    log ratio (at most +-0.2 a month), so the split settles where marginal returns are equal. Works on
    scalars (returns a float) and elementwise on arrays.
    """
    share = np.asarray(share, dtype=float)
    mr_rd = np.asarray(mr_rd, dtype=float)
    mr_compute = np.asarray(mr_compute, dtype=float)
    ok = (mr_rd > 0) & (mr_compute > 0)
    ratio = np.where(ok, mr_rd, 1.0) / np.where(ok, mr_compute, 1.0)
    step = np.clip(speed * np.log(ratio), -0.2, 0.2)
    out = np.clip(np.where(ok, share * np.exp(step), share), lo, hi)
    return float(out) if out.ndim == 0 else out


# ---------------------------------------------------------------------------------------------------------
# S3 product market
# ---------------------------------------------------------------------------------------------------------


def nest_shares(q, log_price, theta: float, eta: float):
    """Shares within the nest of AI labs and the nest's inclusive value (a nested logit's lower level).

    v_i = theta q_i - eta ln p_i; s_i = exp(v_i) / sum_j exp(v_j); I = ln sum_j exp(v_j). Capability and price
    enter in absolute terms, so I rises when every lab gets better or cheaper while the shares do not move.
    Computed with a max shift for stability; an empty nest has I = -inf.
    """
    v = theta * np.asarray(q, dtype=float) - eta * np.asarray(log_price, dtype=float)
    if v.size == 0:
        return v, -math.inf
    top = float(v.max())
    ev = np.exp(v - top)
    tot = float(ev.sum())
    return ev / tot, top + math.log(tot)


def adoption(iv: float, iv_start: float, adoption_start: float, nest_scale: float) -> float:
    """Share of potential end-user demand spent on AI labs (the upper level of a nested logit).

    The log-odds of using AI rather than the outside option move with the nest's inclusive value:
    logit(A) = logit(adoption_start) + nest_scale (I - I_start). ``nest_scale`` (McFadden's dissimilarity
    parameter, in (0, 1]) is how much of an improvement in the best available choice reaches the decision to
    adopt at all; 0 makes adoption a constant. An empty nest (I = -inf) has no adoption.
    """
    if not math.isfinite(iv):
        return 0.0
    x = math.log(adoption_start / (1.0 - adoption_start)) + nest_scale * (iv - iv_start)
    return 1.0 / (1.0 + math.exp(-x)) if x > -700 else 0.0


# ---------------------------------------------------------------------------------------------------------
# S4 chips
# ---------------------------------------------------------------------------------------------------------


def unit_cost(base_cost: float, months_since_start: float, annual_decline: float) -> float:
    """Production cost per H100e falling at a constant yearly rate (Epoch: about 30%/yr)."""
    return base_cost * (1.0 - annual_decline) ** (months_since_start / 12.0)


def update_markup(markup: float, orders: float, capacity: float, speed: float, lo: float, hi: float) -> float:
    """Merchant markup responds to excess demand: m' = m * exp(speed * (orders/capacity - 1)), bounded.

    The log step is capped at +-0.5 a month, so an extreme order book moves the markup fast but finitely.
    """
    if capacity <= 0:
        return hi
    step = min(max(speed * (orders / capacity - 1.0), -0.5), 0.5)
    return float(min(max(markup * math.exp(step), lo), hi))


def lerner_index(price, cost):
    """Lerner index (p - c)/p."""
    price = np.asarray(price, dtype=float)
    return np.where(price > 0, (price - np.asarray(cost, dtype=float)) / np.where(price > 0, price, 1.0), 0.0)


def allocate_supply(capacity: float, orders, rule: str = "pro_rata", order_rank=None):
    """Allocate ``capacity`` across ``orders``; never more than capacity or than any order.

    rule 'pro_rata': every order gets the same fraction. rule 'priority': orders are served in full in
    descending size (ties by ``order_rank``) until capacity runs out.
    """
    orders = np.maximum(np.asarray(orders, dtype=float), 0.0)
    total = orders.sum()
    if total <= capacity or total == 0:
        return orders.copy()
    if rule == "pro_rata":
        return orders * (capacity / total)
    if rule == "priority":
        rank = np.zeros(len(orders)) if order_rank is None else np.asarray(order_rank)
        order = np.lexsort((rank, -orders))
        filled = np.zeros_like(orders)
        cum = np.cumsum(orders[order])
        prev = np.concatenate(([0.0], cum[:-1]))
        filled[order] = np.clip(capacity - prev, 0.0, orders[order])
        return filled
    raise ValueError(f"unknown allocation rule {rule!r}")


# ---------------------------------------------------------------------------------------------------------
# S5 clouds: cost
# ---------------------------------------------------------------------------------------------------------


def annuity_factor(rate_annual: float, life_months: int) -> float:
    """Monthly payment per dollar of capex repaid over ``life_months`` at annual rate ``rate_annual``."""
    r = (1.0 + rate_annual) ** (1.0 / 12.0) - 1.0
    if r <= 0:
        return 1.0 / life_months
    return r / (1.0 - (1.0 + r) ** (-life_months))


def levelized_cost(chip_cost: float, facility_cost: float, rate_annual: float, life_months: int,
                   kw: float, pue: float, energy_price_kwh: float, opex_month: float) -> float:
    """Levelized cost per H100e-month: capex annuity + energy + opex (the cloud's floor price).

    chip_cost and facility_cost are $ per H100e; kw is IT power per H100e.
    """
    capex = (chip_cost + facility_cost) * annuity_factor(rate_annual, life_months)
    energy = kw * pue * HOURS_PER_MONTH * energy_price_kwh
    return capex + energy + opex_month


# ---------------------------------------------------------------------------------------------------------
# S6 contracting
# ---------------------------------------------------------------------------------------------------------


def rubinstein_weight(r_lab, r_cloud):
    """Lab's bargaining weight from patience: beta_lab = r_cloud / (r_lab + r_cloud) (Rubinstein 1982)."""
    r_lab = np.asarray(r_lab, dtype=float)
    return np.asarray(r_cloud, dtype=float) / (r_lab + r_cloud)


def nash_price(lab_max, cloud_min, beta_lab):
    """Nash bargaining price between the cloud's reservation ``cloud_min`` and the lab's ``lab_max``.

    The surplus S = lab_max - cloud_min is split by weights: the lab keeps beta_lab * S, so the price is
    lab_max - beta_lab * S = cloud_min + (1 - beta_lab) S. Where S < 0 there is no deal: NaN.
    """
    lab_max = np.asarray(lab_max, dtype=float)
    cloud_min = np.asarray(cloud_min, dtype=float)
    surplus = lab_max - cloud_min
    price = np.clip(cloud_min + (1.0 - np.asarray(beta_lab, dtype=float)) * surplus, cloud_min, lab_max)
    return np.where(surplus >= 0, price, np.nan)


def default_probability(coverage, k: float = 2.0):
    """Probability that a buyer defaults over a contract, from its coverage ratio.

    coverage = (cash + expected 12-month revenue) / (committed plus new obligations). PD = 1/(1+cov^k):
    one year of cover gives 50%, three years 10%, ten years 1%.
    """
    cov = np.maximum(np.asarray(coverage, dtype=float), 0.0)
    return 1.0 / (1.0 + cov**k)


def lab_discount_rate(base_annual: float, runway_months, impatience: float):
    """A lab's monthly discount rate: its base rate plus impatience that grows as runway shrinks."""
    runway = np.maximum(np.asarray(runway_months, dtype=float), 0.5)
    return base_annual / 12.0 + impatience / runway


def expected_price_path(current: float, months: int, annual_decline: float) -> float:
    """Average of a price expected to fall at ``annual_decline`` a year over the next ``months`` months."""
    if months <= 0:
        return current
    t = np.arange(months)
    return float(current * np.mean((1.0 - annual_decline) ** (t / 12.0)))


# ---------------------------------------------------------------------------------------------------------
# S7 spot market
# ---------------------------------------------------------------------------------------------------------


def allocate_by_entitlement(total: float, shares, requests):
    """Split ``total`` capacity over requests: each claimant first gets up to its entitlement share x total;
    capacity left unused is re-offered to the claimants still short, in proportion to their shares
    (water-filling). Never more than a request; never more than ``total`` in all."""
    shares = np.maximum(np.asarray(shares, dtype=float), 0.0)
    req = np.maximum(np.asarray(requests, dtype=float), 0.0)
    out = np.minimum(req, shares * total)
    for _ in range(req.size):
        left = total - out.sum()
        short = (req - out > 1e-9) & (shares > 0)
        if left <= 1e-9 or not short.any():
            break
        w = np.where(short, shares, 0.0)
        out = np.minimum(req, out + left * w / w.sum())
    return out


def background_demand(price, volume: float, p_ref: float, elasticity: float, choke: float, lowest: float):
    """Background buyers' demand at ``price`` (H100e): their values per H100e are Pareto-distributed with shape
    ``elasticity`` and cut at the ``choke`` price, so Q(p) = V·((p/p_ref)^-e − c)/(1 − c) with c = (choke/p_ref)^-e:
    Q(p_ref) = V, Q(choke) = 0, and demand is saturated (the workload is finite) below the ``lowest`` value."""
    p = np.clip(np.asarray(price, dtype=float), lowest, choke)
    c = (choke / p_ref) ** (-elasticity)
    return volume * ((p / p_ref) ** (-elasticity) - c) / (1.0 - c)


def background_bids(volume: float, p_ref: float, elasticity: float, choke: float, lowest: float, steps: int = 32):
    """The background demand curve as ``steps`` bids at prices spaced evenly in log between the choke price and
    the lowest value; each bid holds the buyers whose value lies between its price and the next higher one.
    Returns (prices, quantities), prices descending; quantities sum to Q(lowest)."""
    prices = np.geomspace(choke, lowest, steps + 1)[1:]
    cum = background_demand(prices, volume, p_ref, elasticity, choke, lowest)
    return prices, np.diff(np.concatenate(([0.0], cum)))


def clear_spot_market(bid_price, bid_qty, ask_price, ask_qty):
    """Uniform-price double auction over bids and asks (sorted arrays; vectorised).

    Bids are ranked by price descending, asks ascending; the cleared volume is the largest Q at which the
    marginal bid is at least the marginal ask. The price is the midpoint of the marginal bid and ask
    at the last traded step; inputs need not be sorted. Returns (price, volume, bid_fill, ask_fill);
    price is NaN and fills are zero when nothing trades.
    """
    bp = np.asarray(bid_price, dtype=float)
    bq = np.maximum(np.asarray(bid_qty, dtype=float), 0.0)
    ap = np.asarray(ask_price, dtype=float)
    aq = np.maximum(np.asarray(ask_qty, dtype=float), 0.0)
    bid_fill = np.zeros_like(bq)
    ask_fill = np.zeros_like(aq)
    if bq.sum() <= 0 or aq.sum() <= 0:
        return float("nan"), 0.0, bid_fill, ask_fill
    bo = np.argsort(-bp, kind="stable")
    ao = np.argsort(ap, kind="stable")
    bcum = np.cumsum(bq[bo])
    acum = np.cumsum(aq[ao])
    # Breakpoints of both step curves; at each the marginal bid and ask prices.
    points = np.unique(np.concatenate(([0.0], bcum, acum)))
    mids = (points[:-1] + points[1:]) / 2.0
    mids = mids[mids < min(bcum[-1], acum[-1])]
    if mids.size == 0:
        return float("nan"), 0.0, bid_fill, ask_fill
    bi = np.searchsorted(bcum, mids, side="right")
    ai = np.searchsorted(acum, mids, side="right")
    ok = bp[bo][bi] >= ap[ao][ai]
    if not ok[0]:
        return float("nan"), 0.0, bid_fill, ask_fill
    last = int(np.argmin(ok)) - 1 if not ok.all() else len(ok) - 1
    volume = float(points[last + 1])
    price = 0.5 * (bp[bo][bi[last]] + ap[ao][ai[last]])
    bid_fill[bo] = np.clip(volume - np.concatenate(([0.0], bcum[:-1])), 0.0, bq[bo])
    ask_fill[ao] = np.clip(volume - np.concatenate(([0.0], acum[:-1])), 0.0, aq[ao])
    return float(price), volume, bid_fill, ask_fill


# ---------------------------------------------------------------------------------------------------------
# S8 capital market
# ---------------------------------------------------------------------------------------------------------


def allocate_capital(funds: float, weights, asks, kappa: float):
    """Spread investor ``funds`` over the dollars asked, each dollar weighted by its round's weight^kappa:
    a seeker gets funds in proportion to ask x weight^kappa, capped at its ask.

    With equal weights every round gets the same fraction of its ask; kappa > 1 is preferential attachment
    (the best-weighted get more than proportionally). Funds freed by caps are re-offered to the uncapped
    (water-filling); the total never exceeds ``funds`` or the asks.
    """
    weights = np.maximum(np.asarray(weights, dtype=float), 0.0)
    asks = np.maximum(np.asarray(asks, dtype=float), 0.0)
    out = np.zeros_like(asks)
    if funds <= 0 or asks.sum() <= 0:
        return out
    w = np.where(asks > 0, asks * weights**kappa, 0.0)
    remaining = float(funds)
    open_ = (asks > 0) & (w > 0)
    for _ in range(len(asks) + 1):
        if remaining <= 1e-9 or not open_.any():
            break
        share = np.where(open_, w, 0.0)
        share = share / share.sum()
        give = np.minimum(share * remaining, asks - out)
        out += give
        remaining -= give.sum()
        open_ = open_ & (asks - out > 1e-9)
    return out


def reachable_capability(budget, efficiency, g_coef: float, gamma: float, flop_per_unit: float,
                         price_per_unit: float, compute_share: float, final_run_share: float):
    """Capability of the final run a ``budget`` buys: the inverse of :func:`capital_to_reach` (divided by the
    final-run share). The compute share of the budget at ``price_per_unit`` buys H100e-months, the final
    run gets ``final_run_share`` of them, and the lab's efficiency turns physical into effective FLOP."""
    phys = np.maximum(np.asarray(budget, dtype=float), 0.0) * compute_share * final_run_share \
        / max(price_per_unit, 1e-12) * flop_per_unit
    return capability(np.maximum(phys * np.asarray(efficiency, dtype=float), 1.0), g_coef, gamma)


def firm_value(q_gap, z_others, theta: float, demand_ahead: float, revenue_multiple: float):
    """Value of a lab ``q_gap`` capability from the frontier (<= 0 behind it): its logit revenue share
    exp(theta q_gap) / (z_others + exp(theta q_gap)) of the end-user demand expected a year ahead, at
    ``revenue_multiple`` x annual revenue."""
    e = np.exp(theta * np.asarray(q_gap, dtype=float))
    return revenue_multiple * 12.0 * demand_ahead * e / (np.asarray(z_others, dtype=float) + e)


def expected_return(value_funded, value_unfunded, ask):
    """Investors' expected value per dollar of a round (S8). The round creates the surplus
    value_funded - value_unfunded - ask; founders (or existing shareholders) and investors split it
    equally (Nash bargaining, both outside options being to walk away), so a dollar returns
    (value_funded - value_unfunded + ask) / (2 ask). Above 1 exactly when the money creates more value
    than it costs."""
    ask = np.maximum(np.asarray(ask, dtype=float), 1.0)
    gain = np.asarray(value_funded, dtype=float) - np.asarray(value_unfunded, dtype=float)
    return (gain + ask) / (2.0 * ask)


# ---------------------------------------------------------------------------------------------------------
# S9 entry
# ---------------------------------------------------------------------------------------------------------


def capital_to_reach(q_target: float, efficiency, g_coef: float, gamma: float, flop_per_unit: float,
                     price_per_unit, compute_share: float):
    """Capital needed to train a model of capability ``q_target`` (S9 entry barrier).

    Effective FLOP for the target, divided by the entrant's efficiency, gives physical FLOP; at
    ``flop_per_unit`` FLOP per H100e-month and ``price_per_unit`` $ per H100e-month that is the compute
    bill; divided by the share of the budget that goes to compute it is the whole budget.
    """
    eff_flop = effective_flop_for_capability(q_target, g_coef, gamma)
    phys = eff_flop / np.maximum(efficiency, 1e-12)
    out = phys / flop_per_unit * np.asarray(price_per_unit, dtype=float) / max(compute_share, 1e-6)
    return float(out) if np.ndim(out) == 0 else out


# ---------------------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------------------


def hhi(values) -> float:
    """Herfindahl-Hirschman index in points (0-10,000) of non-negative sizes; 0 when all are zero."""
    v = np.maximum(np.asarray(values, dtype=float), 0.0)
    tot = v.sum()
    if tot <= 0:
        return 0.0
    s = v / tot
    return float(10_000.0 * np.sum(s * s))


def top_share(values, k: int = 3) -> float:
    """Share (0-1) of the ``k`` largest values in the total; 0 when the total is zero."""
    v = np.maximum(np.asarray(values, dtype=float), 0.0)
    tot = v.sum()
    if tot <= 0:
        return 0.0
    return float(np.sort(v)[::-1][:k].sum() / tot)


def gini(values) -> float:
    """Gini coefficient (0 equal, toward 1 concentrated) of non-negative values; 0 when all are zero."""
    v = np.sort(np.maximum(np.asarray(values, dtype=float), 0.0))
    n = v.size
    if n == 0 or v.sum() <= 0:
        return 0.0
    i = np.arange(1, n + 1)
    return float((2.0 * np.sum(i * v) / (n * v.sum())) - (n + 1.0) / n)


def ramped_months(term: int, ramp: int) -> float:
    """Full-volume months delivered by a contract of ``term`` months whose volume ramps linearly over its
    first ``ramp`` months (month k of the term delivers min(1, k / ramp) of the volume)."""
    if ramp <= 0:
        return float(term)
    return float(sum(min(1.0, k / ramp) for k in range(1, term + 1)))
