"""Contracting (ODD S6): quotes, Nash bargaining over reserved contracts in priority rounds, and signing.

A lab's request (from its plan in phase 5) is priced by each eligible cloud: the cloud's reservation price
(levelized floor or expected spot, raised by the lab's default risk) and the lab's outside option (the
next-best cloud or the spot market) are combined by a Rubinstein-Nash weight from the two sides' discount
rates (:func:`bargain_terms`, :func:`quote_price`). In phase 7 all requests are served at once over arrays
(:func:`sign_requests`); signed contracts are written to the world's contract book (``World.sign_reserved``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import economics as ec

if TYPE_CHECKING:
    from ..agents import CloudProvider, Lab


def sell_chance(m, clouds) -> np.ndarray:
    """The chance each cloud would sell the capacity spot instead of under contract: its utilization this
    month (committed over online; 1 with nothing online), within [0.3, 1]."""
    util = np.array([m.committed[c.idx, m.t] / c.online if c.online > 0 else 1.0 for c in clouds])
    return np.clip(util, 0.3, 1.0)


def bargain_terms(m, rows: np.ndarray, clouds, terms, values):
    """Reservation prices and outside options for labs (lab-table ``rows``) asking ``clouds`` for deals of
    ``terms`` months worth ``values``, over arrays: (cloud_min (labs, clouds), lab_alt (labs,),
    beta (labs, clouds)). The cloud asks at least its levelized floor, or the expected spot price times its
    chance of selling spot, raised by the lab's default risk at its coverage with the deal; the lab's
    outside option is the expected spot price with its risk premium; the Rubinstein weight comes from the
    two sides' discount rates (the lab's from its runway)."""
    ct = m.cfg.contracting
    decline = m.price_decline_expected
    terms = np.asarray(terms)
    floors = np.array([c.floor_price for c in clouds])
    u, t_idx = np.unique(terms, return_inverse=True)
    spot_path = np.array([ec.expected_price_path(m.spot_price_ewma, int(k), decline) for k in u])[t_idx]
    pdef = ec.default_probability(m.lab_coverage(rows, values), ct.risk_k)
    cloud_min = (1 + pdef * m.lgd_estimate)[:, None] * np.maximum(
        floors[None, :] * ((1 - decline) ** (terms / 24))[:, None],
        spot_path[:, None] * sell_chance(m, clouds)[None, :])
    lab_alt = spot_path * (1 + ct.spot_risk_premium)
    r_lab = ec.lab_discount_rate(ct.lab_base_rate_annual, m.lab_runway(rows), ct.lab_impatience)
    r_cloud = np.array([c.cost_of_capital / 12 for c in clouds])
    beta = ec.rubinstein_weight(r_lab[:, None], r_cloud[None, :])
    return cloud_min, lab_alt, beta


def cloud_terms(m, lab: Lab, clouds, term: int, extra_value: float):
    """:func:`bargain_terms` for one lab's request to several clouds: (cloud_min, lab_alt, beta) per cloud."""
    cmin, alt, beta = bargain_terms(m, np.array([lab.slot]), clouds, np.array([term]), np.array([extra_value]))
    return cmin[0], float(alt[0]), beta[0]


def quote_price(m, lab: Lab, cloud: CloudProvider, term: int, value: float = 0.0) -> float:
    """The bargained price a lab would get from one cloud for a deal worth ``value``; outside option spot."""
    cmin, alt, beta = cloud_terms(m, lab, [cloud], term, value)
    return float(ec.nash_price(alt, cmin, beta)[0])


def quote_prices(m, rows: np.ndarray, cloud: CloudProvider, term: int, values: np.ndarray) -> np.ndarray:
    """:func:`quote_price` for many labs (lab-table rows) with one cloud, deals worth ``values``."""
    cmin, alt, beta = bargain_terms(m, rows, [cloud], np.full(len(rows), term), values)
    return np.asarray(ec.nash_price(alt, cmin[:, 0], beta[:, 0]), dtype=float)


def available_by_term(m, terms: np.ndarray, paths: np.ndarray | None = None) -> np.ndarray:
    """Capacity each cloud can still commit in every month of [t, t + term) for each term: the least free
    capacity over the term (World.free_capacity, or ``paths`` less the commitments, with ``paths`` the clouds'
    capacity paths over the longest term); array (terms, clouds)."""
    months = int(terms.max())
    free = m.free_capacity(m.t, months) if paths is None else paths - m.committed[:, m.t: m.t + months]
    least = np.minimum.accumulate(free, axis=1)[:, terms - 1].T
    return np.maximum(least, 0.0)


def top_k(x: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest values of ``x``, largest first, earlier first among equals: the first
    ``k`` of a stable sort by -x, sorting only the values at or above the k-th largest."""
    if x.size <= k:
        return np.argsort(-x, kind="stable")
    kth = np.partition(-x, k - 1)[k - 1]
    cand = np.flatnonzero(-x <= kth)
    return cand[np.argsort(-x[cand], kind="stable")[:k]]


def sign_requests(m) -> None:
    """Requests for quotes, Nash bargaining with outside options, signed reserved contracts (S6).

    Requests are served in a random priority order, all at once over arrays: in each round every
    unserved request goes to the eligible cloud with the lowest reservation price per effective H100e
    that can still fill a minimum deal, and a cloud's capacity goes to its requests in priority order
    (the last one served in part). The price is the Nash bargain between the cloud's reservation price
    and the lab's outside option (the next-best cloud or the spot market). Requests that found a cloud
    full try the next one in the following round; what no cloud can serve is recorded as unmet demand.
    """
    C = m.lab_table.cols
    reqs = m.alive_slots()
    reqs = reqs[C["req_volume"][reqs] > 0]
    if reqs.size == 0:
        return
    ct, pol = m.cfg.contracting, m.cfg.policy
    reqs = m.random_order(reqs, C["probe"][reqs])
    alive = m.alive_slots()  # the frontier labs: the three with the most compute last month
    top = alive[top_k(C["compute"][alive], 3)]
    clouds = m.clouds
    vol = C["req_volume"][reqs]
    term = C["req_term"][reqs]
    uid = C["uid"][reqs]
    ok = m.eligible(reqs)
    n_ok = ok.sum(axis=1)
    has = n_ok > 0
    eff = np.array([c.effective_factor() for c in clouds])
    online = np.array([c.online for c in clouds])
    public = np.array([c.public for c in clouds])
    floors = np.array([c.floor_price for c in clouds])
    cap = pol.max_lab_share_of_cloud * online[None, :] - m.held_by_uid()[uid]
    want = vol[:, None] / eff[None, :]
    # Reservation prices (the cloud's) and outside options (the lab's).
    cloud_min, lab_alt, beta = bargain_terms(m, reqs, clouds, term, vol * m.reserved_ref * term)
    terms, t_idx = np.unique(term, return_inverse=True)
    per_eff = cloud_min / eff[None, :]
    done = ~has
    unmet = np.zeros(len(clouds))
    rows_r = np.arange(len(reqs))
    paths = m.capacity_paths(m.t, int(terms.max()))  # (signing below changes the commitments only)
    for _ in range(len(clouds) + 1):
        avail = available_by_term(m, terms, paths)[t_idx]
        qty = np.minimum(np.minimum(avail, cap), want)
        cand = ok & (qty >= ct.min_deal_h100e) & ~done[:, None]
        live = np.flatnonzero(cand.any(axis=1))
        if live.size == 0:
            break
        pe = np.where(cand[live], per_eff[live], np.inf)
        b = np.argmin(pe, axis=1)
        pe[np.arange(live.size), b] = np.inf
        second = pe.min(axis=1)
        # Each cloud's capacity goes to its requests in priority order: what earlier requests took first.
        q_want = qty[live, b]
        ob = np.lexsort((live, b))
        qs = q_want[ob]
        cs = np.cumsum(qs)
        first = np.r_[True, b[ob][1:] != b[ob][:-1]]
        before = np.empty_like(cs)
        before[ob] = cs - qs - np.maximum.accumulate(np.where(first, cs - qs, 0.0))
        room = np.maximum(avail[live, b] - before, 0.0)
        q = np.minimum(q_want, room)
        served = q >= ct.min_deal_h100e
        lab_max = np.where(np.isfinite(second), np.minimum(lab_alt[live], second * eff[b]), lab_alt[live])
        price = np.where(public[b], floors[b], ec.nash_price(lab_max, cloud_min[live, b], beta[live, b]))
        bad = served & ~np.isfinite(price)
        good = served & np.isfinite(price)
        i_bad = live[bad]
        unmet += (ok[i_bad] / n_ok[i_bad, None] * vol[i_bad, None]).sum(axis=0)
        i, bi, qi, pi = live[good], b[good], q[good], price[good]
        m.sign_reserved(uid[i], bi, qi, term[i], pi, eff[bi])
        m.reserved_volume += float(qi.sum())
        # (sums of products, not BLAS dot products: a dot product of more than 10,000 terms is split over
        # threads, and its last bits would depend on the machine's number of cores)
        m.reserved_value += float((qi * pi).sum())
        for group, mask in (("small", C["small"][reqs[i]]), ("frontier", np.isin(reqs[i], top))):
            m.reserved_by_group[group] += np.array([(qi[mask] * eff[bi][mask]).sum(), (qi[mask] * pi[mask]).sum()])
        short = vol[i] - qi * eff[bi]
        s_ = short > ct.min_deal_h100e
        unmet += (ok[i[s_]] / n_ok[i[s_], None] * short[s_, None]).sum(axis=0)
        done[live[served]] = True
    left = rows_r[~done]
    unmet += (ok[left] / np.maximum(n_ok[left], 1)[:, None] * vol[left, None]).sum(axis=0)
    for c, u in zip(clouds, unmet, strict=True):
        c.unmet_month += float(u)
    if m.reserved_volume > 0:
        p = m.reserved_value / m.reserved_volume
        m.reserved_price_month = p
        m.reserved_ref = 0.7 * m.reserved_ref + 0.3 * p
