"""Capital market and equity-for-compute (ODD S8, with the equity deals of S6).

Each month (phase 6) investors pay their inflow into a pool; hyperscalers with cash first take equity in
fundraising labs for committed spend on their own capacity (:func:`equity_for_compute`); the pool is then
allocated over the rounds of the labs still seeking and the seed rounds of potential entrants alike, by
expected return^kappa above a hurdle (:func:`expected_returns`, :func:`abm.economics.allocate_capital`);
entrants whose seed closed enter (:func:`abm.markets.entry.admit`), and a share of what is left flows out
as dry powder. Investor sentiment, which scales inflow and entry, is updated at the
end of the month from sector revenue growth (:func:`update_sentiment`).
"""

from __future__ import annotations

import numpy as np

from .. import economics as ec
from ..agents import Lab
from ..logs import Formatted
from . import entry
from .contracting import quote_prices

EQUITY_RAMP_MONTHS = 6  # months over which an equity-for-compute deal's volume ramps up (no source; ODD S8)


def clear(m) -> None:
    """Investor inflow; equity-for-compute offers; the pool allocated over incumbents' rounds and potential
    entrants' seed rounds alike, by expected return^kappa above the hurdle; dry powder flows out."""
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
    cand = entry.candidates(m)
    if seekers.size or cand["seed"].size:
        er_inc, er_ent = expected_returns(m, seekers, cand)
        asks = np.concatenate((C["ask"][seekers], cand["seed"]))
        er = np.concatenate((er_inc, er_ent))
        grant = _allocate(m, er, asks, seekers.size)
        _close_rounds(m, seekers, grant[:seekers.size])
        funded = np.flatnonzero(grant[seekers.size:] > 0)
        entry.admit(m, {k: v[funded] for k, v in cand.items()})
    out = led.of("investor_pool") * cap.dry_powder_outflow
    if out > 0:
        led.transfer("investor_pool", "investors", out, "dry_powder_outflow")


def expected_returns(m, seekers: np.ndarray, cand: dict) -> tuple[np.ndarray, np.ndarray]:
    """Expected value per dollar of each incumbent's round and each potential entrant's seed round
    (:func:`abm.economics.expected_return`). Investors value a lab by its logit revenue share of next year's
    end-user spending on AI (this month's, grown at its last 12 months' rate) against the labs alive now (:func:`abm.economics.firm_value`), with the frontier moved on
    by its trend over the year. Funded, the lab reaches the capability its money plus its cash buys in a
    final run at the reference reserved price (never less than it has); unfunded, an incumbent keeps what it
    has and an entrant, with no compute to train or serve, is worth nothing."""
    cfg, C = m.cfg, m.lab_table.cols
    alive = m.alive_slots()
    q = C["capability"][alive]
    q_front = float(q.max()) if alive.size else 0.0
    theta = cfg.demand.theta
    z = float(np.exp(theta * (q - q_front)).sum())
    progress = entry.projected_frontier(m, 12) - q_front
    value = dict(theta=theta, demand_ahead=m.env.spend * m.env.demand_growth_12m(),
                 revenue_multiple=cfg.capital.revenue_multiple)
    reach = dict(g_coef=m.g_coef, gamma=m.gamma, flop_per_unit=m.flop_per_unit, price_per_unit=m.reserved_ref,
                 compute_share=1 - cfg.efficiency.rd_share_init, final_run_share=cfg.training.final_run_share)
    q_now = C["capability"][seekers]
    ask = C["ask"][seekers]
    budget = np.maximum(m.lab_cash(seekers), 0.0) + ask
    q_hat = np.maximum(q_now, ec.reachable_capability(budget, np.exp(C["log_eff"][seekers]), **reach))
    z_inc = z - np.exp(theta * (q_now - q_front))
    er_inc = ec.expected_return(ec.firm_value(q_hat - q_front - progress, z_inc, **value),
                                ec.firm_value(q_now - q_front - progress, z_inc, **value), ask)
    q_ent = np.maximum(cand["q_start"], ec.reachable_capability(cand["seed"], cand["efficiency"], **reach))
    er_ent = ec.expected_return(ec.firm_value(q_ent - q_front - progress, z, **value), 0.0, cand["seed"])
    return er_inc, er_ent


def _allocate(m, er: np.ndarray, asks: np.ndarray, n_inc: int) -> np.ndarray:
    """Split the pool over the rounds above the hurdle by expected return^kappa (water-filling). An entrant's
    seed round closes only in full: a seed that fell short returns its money and the rest is re-split."""
    cap = m.cfg.capital
    funds = max(m.ledger.of("investor_pool"), 0.0)
    live = er >= cap.hurdle_multiple
    for _ in range(asks.size + 1):
        grant = ec.allocate_capital(funds, np.where(live, er, 0.0), np.where(live, asks, 0.0), cap.kappa)
        short = np.flatnonzero(grant[n_inc:] < asks[n_inc:] * (1 - 1e-9)) + n_inc
        short = short[live[short]]
        if short.size == 0:
            return grant
        live[short] = False
    return grant


def pre_money(m, rows: np.ndarray) -> np.ndarray:
    """Pre-money valuation at which a lab sells a stake: annualised revenue x ``revenue_multiple``, or what it
    has raised so far if that is more (at least $1)."""
    C = m.lab_table.cols
    return np.maximum(np.maximum(m.cfg.capital.revenue_multiple * 12 * C["revenue_ewma"][rows],
                                 C["capital_raised"][rows]), 1.0)


def _close_rounds(m, seekers: np.ndarray, grant: np.ndarray) -> None:
    """Incumbents' rounds: money from the pool, investors' stake at the pre-money valuation, spend plans."""
    led, C = m.ledger, m.lab_table.cols
    got = np.flatnonzero(grant > 0)
    if got.size == 0:
        return
    s, amount = seekers[got], grant[got]
    led.transfer_many(np.full(got.size, led.index["investor_pool"]), C["acct"][s], amount, "equity_raise")
    pre = pre_money(m, s)
    share = amount / (pre + amount)
    C["capital_raised"][s] += amount
    Lab.start_spending_all(m, s)
    C["seeking"][s] = False
    Lab.dilute_many(m, s, share)
    m.log_events("raise", [m.labs[i].name for i in s.tolist()], Formatted("{:.3f} of equity", share), amount)


def equity_for_compute(m, seekers: list[Lab]) -> None:
    """Clouds with cash invest in fundraising labs for committed spend on their capacity (S6)."""
    pol = m.cfg.policy
    if not pol.equity_for_compute_allowed:
        return
    clouds = [c for c in m.clouds if c.kind == "hyperscaler" and c.cash > pol.equity_deal_min_cash_usd
              and m.t - c.last_equity_deal >= pol.equity_deal_interval_months]
    order = m.rng.permutation(len(clouds))
    rows = m.lab_rows(seekers)
    seeking = m.lab_table.cols["seeking"]
    for i in order:
        cloud = clouds[int(i)]
        ok = np.flatnonzero(m.eligible(rows)[:, cloud.idx] & seeking[rows])
        cands = [lab for lab in (seekers[j] for j in ok.tolist()) if lab.unique_id not in cloud.equity_stakes]
        if not cands:
            continue
        lab, invest, price = _best_equity_deal(m, cloud, cands)
        if lab is None:
            continue
        term = max(m.cfg.contracting.terms_months)
        # The committed spend is the value of the whole schedule, its ramp included (review A8).
        ramp = EQUITY_RAMP_MONTHS
        volume = pol.equity_commit_multiple * invest / (price * ec.ramped_months(term, ramp))
        cap = m.cfg.policy.max_lab_share_of_cloud * max(cloud.online, 1.0)
        volume = min(volume, cap)
        share = cloud_invests(m, cloud, lab, invest, "equity_for_compute")
        cloud.last_equity_deal = m.t
        m.sign(lab, cloud, "equity_for_compute", volume, m.t, term, price, ramp=ramp,
               exclusive=pol.exclusivity_allowed, equity_share=share, investment=invest)
        m.log_event("equity_for_compute", lab.name, f"{cloud.name} takes {share:.3f}", invest)
        # The deal covers part of the compute this month's request was for (once its ramp is complete).
        rest = lab.req_volume - volume * cloud.effective_factor()
        lab.request = (rest, lab.req_term) if rest >= m.cfg.contracting.min_deal_h100e else None
        lab.ask = max(lab.ask - invest, 0.0)
        lab.start_spending()
        lab.seeking = lab.ask > 0


def cloud_invests(m, cloud, lab, amount: float, label: str) -> float:
    """A cloud pays ``amount`` from its cash for equity in ``lab`` at the investors' pre-money valuation: the
    lab's capital raised and cloud equity grow, the cloud's stake with it. Returns the share bought."""
    pre = float(pre_money(m, np.array([lab.slot]))[0])
    share = amount / (pre + amount)
    lab.dilute(cloud.name, share)
    cloud.equity_stakes[lab.unique_id] = cloud.equity_stakes.get(lab.unique_id, 0.0) + share
    m.ledger.transfer(cloud, lab, amount, label)
    lab.capital_raised += amount
    lab.cloud_equity += amount
    return share


def _best_equity_deal(m, cloud, cands: list[Lab]):
    """The deal a cloud offers (review B8): to the candidate where its money is worth most to the cloud, the
    expected margin of the committed spend over the cloud's floor (times the chance the lab does not
    default) plus the expected gain on the stake, (ER - 1) x investment with ER the investors' expected
    return on that lab's round (:func:`expected_returns`). Returns (lab, investment, price), or
    (None, 0, nan) when no candidate is worth a positive amount."""
    pol = m.cfg.policy
    term = max(m.cfg.contracting.terms_months)
    rows = m.lab_rows(cands)
    pd = ec.default_probability(m.lab_coverage(rows), m.cfg.contracting.risk_k)
    er, _ = expected_returns(m, rows, entry.no_candidates())
    invest = np.minimum(pol.equity_deal_share_of_cash * cloud.cash, m.lab_table.cols["ask"][rows])
    spend = pol.equity_commit_multiple * invest
    with np.errstate(divide="ignore", invalid="ignore"):
        price = quote_prices(m, rows, cloud, term, spend)
        margin = spend * np.maximum(1.0 - cloud.floor_price / price, 0.0) * (1.0 - pd)
    value = np.where((invest > 0) & np.isfinite(price), margin + (er - 1.0) * invest, -np.inf)
    k = int(np.argmax(value)) if value.size else 0
    if not value.size or value[k] <= 0.0:
        return None, 0.0, float("nan")
    return cands[k], float(invest[k]), float(price[k])


def update_sentiment(m, month: np.ndarray) -> None:
    """Investor sentiment (phase 11): sector revenue growth over 12 months against end-user demand growth,
    to the power ``capital.sentiment_elasticity``, within [0.25, 4]. ``month``: rows of this month's labs."""
    rev = float(m.lab_table.cols["revenue"][month].sum())
    m.sector_revenue_hist.append(rev)
    if len(m.sector_revenue_hist) > 12 and m.sector_revenue_hist[-13] > 0:
        g = rev / m.sector_revenue_hist[-13]
        expected = m.env.demand_growth_12m()
        m.sentiment = float(np.clip((g / expected) ** m.cfg.capital.sentiment_elasticity, 0.25, 4.0))
