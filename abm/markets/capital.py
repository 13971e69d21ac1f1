"""Capital market and equity-for-compute (ODD S8, with the equity deals of S6).

Each month (phase 6) investors pay their inflow into a pool; hyperscalers with cash first take equity in
fundraising labs for committed spend on their own capacity (:func:`equity_for_compute`); the pool is then
allocated to the labs still seeking by score^kappa (:func:`abm.economics.allocate_capital`), and a share of
what is left flows out as dry powder. Investor sentiment, which scales inflow and entry, is updated at the
end of the month from sector revenue growth (:func:`update_sentiment`).
"""

from __future__ import annotations

import numpy as np

from .. import economics as ec
from ..agents import Lab
from .contracting import quote_price

EQUITY_RAMP_MONTHS = 6  # months over which an equity-for-compute deal's volume ramps up (no source; ODD S8)


def clear(m) -> None:
    """Investor inflow, allocation to fundraising labs by score^kappa, and equity-for-compute offers."""
    cap = m.cfg.capital
    led = m.ledger
    led.transfer("investors", "investor_pool", m.env.inflow, "investor_inflow")
    m.inflow_month = m.env.inflow
    C = m.lab_table.cols
    alive = m.alive_slots()
    seekers = alive[C["seeking"][alive]]
    if seekers.size:
        equity_for_compute(m, [m.labs[i] for i in seekers.tolist()])
        seekers = seekers[C["seeking"][seekers]]
    if seekers.size:
        labs = [m.labs[i] for i in seekers.tolist()]
        gap = C["capability"][alive].max() - C["capability"][seekers]
        growth = m.lab_table.revenue_growth(seekers)
        asks = C["ask"][seekers]
        scores = ec.investor_score(gap, growth, cap.score_scale)
        funds = max(led.of("investor_pool"), 0.0)
        grant = ec.allocate_capital(funds, scores, asks, cap.kappa, weight_by_ask=True)
        got = np.flatnonzero(grant > 0)
        s, amount = seekers[got], grant[got]
        led.transfer_many(np.full(got.size, led.index["investor_pool"]), C["acct"][s], amount, "equity_raise")
        pre = np.maximum(np.maximum(cap.revenue_multiple * 12 * C["revenue_ewma"][s], C["capital_raised"][s]), 1.0)
        share = amount / (pre + amount)
        C["capital_raised"][s] += amount
        Lab.start_spending_all(m, s)
        C["seeking"][s] = False
        for i, sh, a in zip(got.tolist(), share.tolist(), amount.tolist(), strict=True):
            lab = labs[i]
            lab.dilute("investors", sh)
            m.log_event("raise", lab.name, f"{sh:.3f} of equity", a)
    out = led.of("investor_pool") * cap.dry_powder_outflow
    if out > 0:
        led.transfer("investor_pool", "investors", out, "dry_powder_outflow")


def equity_for_compute(m, seekers: list[Lab]) -> None:
    """Clouds with cash invest in fundraising labs for committed spend on their capacity (S6)."""
    pol = m.cfg.policy
    if not pol.equity_for_compute_allowed:
        return
    clouds = [c for c in m.clouds if c.kind == "hyperscaler" and c.cash > pol.equity_deal_min_cash_usd
              and m.t - c.last_equity_deal >= pol.equity_deal_interval_months]
    order = m.rng.permutation(len(clouds))
    for i in order:
        cloud = clouds[int(i)]
        ok = m.eligible(seekers)[:, cloud.idx]
        cands = [lab for lab, k in zip(seekers, ok.tolist(), strict=True)
                 if k and lab.seeking and lab.unique_id not in cloud.equity_stakes]
        if not cands:
            continue
        pd = ec.default_probability(m.lab_coverage(cands), m.cfg.contracting.risk_k)
        value = m.lab_table.cols["desired"][m.lab_rows(cands)] * (1 - pd)
        lab = cands[int(np.argmax(value))]
        invest = min(pol.equity_deal_share_of_cash * cloud.cash, lab.ask)
        if invest <= 0:
            continue
        term = max(m.cfg.contracting.terms_months)
        price = quote_price(m, lab, cloud, term, pol.equity_commit_multiple * invest)
        if not np.isfinite(price):
            continue
        # The committed spend is the value of the whole schedule, its ramp included (review A8).
        ramp = EQUITY_RAMP_MONTHS
        volume = pol.equity_commit_multiple * invest / (price * ec.ramped_months(term, ramp))
        cap = m.cfg.policy.max_lab_share_of_cloud * max(cloud.online, 1.0)
        volume = min(volume, cap)
        pre = max(m.cfg.capital.revenue_multiple * 12 * lab.revenue_ewma, lab.capital_raised, 1.0)
        share = invest / (pre + invest)
        lab.dilute(cloud.name, share)
        cloud.equity_stakes[lab.unique_id] = share
        cloud.equity_invested += invest
        cloud.last_equity_deal = m.t
        m.ledger.transfer(cloud, lab, invest, "equity_for_compute")
        lab.capital_raised += invest
        m.sign(lab, cloud, "equity_for_compute", volume, m.t, term, price, ramp=ramp,
               exclusive=pol.exclusivity_allowed, equity_share=share, investment=invest)
        m.log_event("equity_for_compute", lab.name, f"{cloud.name} takes {share:.3f}", invest)
        # The deal covers part of the compute this month's request was for (once its ramp is complete).
        rest = lab.req_volume - volume * cloud.effective_factor()
        lab.request = (rest, lab.req_term) if rest >= m.cfg.contracting.min_deal_h100e else None
        lab.ask = max(lab.ask - invest, 0.0)
        lab.start_spending()
        lab.seeking = lab.ask > 0


def update_sentiment(m, month: np.ndarray) -> None:
    """Investor sentiment (phase 11): sector revenue growth over 12 months against end-user demand growth,
    to the power ``capital.sentiment_elasticity``, within [0.25, 4]. ``month``: rows of this month's labs."""
    rev = float(m.lab_table.cols["revenue"][month].sum())
    m.sector_revenue_hist.append(rev)
    if len(m.sector_revenue_hist) > 12 and m.sector_revenue_hist[-13] > 0:
        g = rev / m.sector_revenue_hist[-13]
        expected = m.env.demand_growth_12m()
        m.sentiment = float(np.clip((g / expected) ** m.cfg.capital.sentiment_elasticity, 0.25, 4.0))
