"""Spot market (ODD S7): uniform-price clearing of residual lab demand and background buyers' bids (their
values) against idle capacity, in phase 8; who bought from whom (:func:`match_in_order`); the spot price
trend that contract pricing expects (:func:`update_expectations`).
"""

from __future__ import annotations

import numpy as np

from .. import economics as ec


def match_in_order(buy: np.ndarray, sell: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Match buyers to sellers in order (the north-west corner rule): buyer i takes the next ``buy[i]`` units
    of the sellers' concatenated volumes. Returns (buyer index, seller index, quantity) per matched stretch;
    at most len(buy) + len(sell) - 1 stretches. Quantities beyond the smaller total are dropped."""
    a = np.cumsum(buy)
    b = np.cumsum(sell)
    total = min(a[-1], b[-1]) if a.size and b.size else 0.0
    cuts = np.union1d(a[a < total], b[b < total])
    edges = np.concatenate(([0.0], cuts, [total]))
    q = np.diff(edges)
    keep = q > 0
    mid = (edges[:-1] + edges[1:])[keep] / 2
    return (np.searchsorted(a, mid).astype(np.int64), np.searchsorted(b, mid).astype(np.int64), q[keep])


def clear(m) -> None:
    """Uniform-price clearing of residual lab demand and background demand against idle capacity (S7).

    Who sold to whom: at the uniform price it does not matter to anyone's money, so lab purchases (in a
    random order, then the background demand) are matched to the clouds' sales in order, each buyer
    taking the next stretch of the clouds' filled volume. A lab gets the effective compute of the
    clouds that served it.
    """
    bg = m.cfg.background
    C = m.lab_table.cols
    labs = m.alive_slots()
    for k in ("spot_bought", "spot_paid", "spot_eff"):
        C[k][labs] = 0.0
    labs = labs[~C["restricted"][labs]]
    if m.cfg.contracting.spot_exclusive:  # a lab bound exclusively buys only from its partner, under contract
        labs = labs[~((C["excl_with"][labs] >= 0) & (C["excl_until"][labs] > m.t))]
    contracted_now = m.lab_compute_reserved(labs)
    need = np.maximum(C["desired"][labs] - contracted_now, 0.0)
    bid_p = np.full(labs.size, m.spot_price_ewma * (1 + m.cfg.contracting.spot_risk_premium))
    budget = np.maximum(m.lab_cash(labs), 0.0) * 0.5
    need = np.minimum(need, budget / np.maximum(bid_p, 1e-9))
    # Background buyers bid their values (a step curve of their demand from the choke price down).
    hm = ec.HOURS_PER_MONTH
    levels, steps = ec.background_bids(m.env.background, bg.reference_price_usd_hour * hm, bg.elasticity,
                                       bg.choke_price_usd_hour * hm, bg.lowest_value_usd_hour * hm)
    bid_price = np.concatenate((bid_p, levels))
    bid_qty = np.concatenate((need, steps))
    online = np.array([c.online for c in m.clouds])
    com = m.committed[:, m.t]
    public = np.array([c.public for c in m.clouds])
    idle = np.where(public, 0.0, np.maximum(online - com, 0.0))
    opc = np.array([c.operating_cost() for c in m.clouds])
    floor = np.array([c.floor_price for c in m.clouds])
    util = np.where(online > 0, np.minimum(com / np.where(online > 0, online, 1.0), 1.0), 1.0)
    ask = opc + (floor - opc).clip(min=0) * util
    price, volume, bfill, afill = ec.clear_spot_market(bid_price, bid_qty, ask, idle)
    for c, q in zip(m.clouds, afill, strict=True):
        c.spot_sold = float(q)
        c.spot_revenue = float(q) * price if volume > 0 else 0.0
        c.spot_ewma = 0.8 * c.spot_ewma + 0.2 * float(q)
    if volume > 0:
        m.spot_price = price
        n = labs.size
        buying = np.flatnonzero(bfill[:n] > 0)
        buying = m.random_order(buying, C["probe"][labs[buying]])
        bg_q = float(bfill[n:].sum())
        amounts = np.append(bfill[buying], bg_q)
        buyer, cloud, q = match_in_order(amounts, afill)
        accounts = np.append(C["acct"][labs[buying]], m.ledger.index["other_compute_buyers"])
        cloud_acct = np.array([c.account for c in m.clouds])
        eff = np.array([c.effective_factor() for c in m.clouds])
        is_lab = buyer < buying.size
        m.ledger.transfer_many(accounts[buyer[is_lab]], cloud_acct[cloud[is_lab]], q[is_lab] * price, "spot")
        m.ledger.transfer_many(accounts[buyer[~is_lab]], cloud_acct[cloud[~is_lab]], q[~is_lab] * price,
                                  "spot_background")
        got = np.bincount(buyer[is_lab], weights=q[is_lab], minlength=buying.size)
        got_eff = np.bincount(buyer[is_lab], weights=q[is_lab] * eff[cloud[is_lab]], minlength=buying.size)
        C["spot_bought"][labs[buying]] = got
        C["spot_paid"][labs[buying]] = got * price
        C["spot_eff"][labs[buying]] = got_eff
        n_rows = int(is_lab.sum())
        uids = C["uid"][labs[buying]]
        c_uid = np.array([c.unique_id for c in m.clouds])
        m.book.add_many(buyer=uids[buyer[is_lab]], seller=c_uid[cloud[is_lab]], kind=np.ones(n_rows, dtype=int),
                           volume=q[is_lab], start=np.full(n_rows, m.t), end=np.full(n_rows, m.t + 1),
                           price=np.full(n_rows, price), signed=np.full(n_rows, m.t), status=np.ones(n_rows, dtype=int),
                           closed=np.full(n_rows, m.t), eff_factor=eff[cloud[is_lab]])
        m.spot_volume_labs = float(q[is_lab].sum())
        m.spot_volume_background = float(q[~is_lab].sum())
    else:
        m.spot_volume_labs = m.spot_volume_background = 0.0
    m.spot_price_ewma = 0.8 * m.spot_price_ewma + 0.2 * m.spot_price
    update_expectations(m)


def update_expectations(m) -> None:
    """The yearly fall of spot prices that clouds and labs expect when they price contracts: the prior
    ``contracting.forward_price_decline`` blended, as months of data come in, with the fall of the smoothed
    spot price observed over (up to) the last 12 months; bounded to [-0.5, 0.6] a year."""
    h = m.spot_ewma_hist
    h.append(m.spot_price_ewma)
    n = min(len(h) - 1, 12)
    prior = m.cfg.contracting.forward_price_decline
    if n == 0:
        m.price_decline_expected = prior
        return
    observed = 1.0 - (h[-1] / h[-1 - n]) ** (12.0 / n)
    w = n / 12.0
    m.price_decline_expected = float(np.clip((1 - w) * prior + w * observed, -0.5, 0.6))
