"""Scheduled scenario events (S10), applied in phase 1 of the month they are dated."""

from __future__ import annotations

import math

import numpy as np

from . import economics as ec
from .scenario import ScenarioError, apply_overrides, validate


def apply_event(model, ev) -> None:
    """Apply one event to the model; each type has its own handler."""
    handler = HANDLERS.get(ev.type)
    if handler is None:  # guarded by the schema's Literal; kept for clarity
        raise ScenarioError(f"events: unknown type {ev.type!r}")
    handler(model, ev)


def update_config(model, ev, over: dict) -> None:
    """Apply ``key.path -> value`` changes to the model's scenario from this month on (validated)."""
    data = apply_overrides(model.cfg.model_dump(by_alias=True), over, source=f"events ({ev.month})")
    model.cfg = validate(data, source=f"events ({ev.month})")
    model.env.cfg = model.cfg
    model.refresh_constants()


def mega_deal(model, ev) -> None:
    """Inject a committed-spend deal: a lab commits ``value_usd`` over ``term_months`` on a cloud.

    The volume follows from the power: gw x 1e6 kW / (kW per H100e of the chip kind x PUE), ramped
    linearly over ``ramp_months`` while the cloud builds; the unit price is the value over the H100e-months
    delivered. The cloud's capacity plan sees the backlog; for captive chips it orders the deal's volume
    from its own line, whose foundry share grows by the deal's monthly volume over the ramp.
    """
    lab = next(lab for lab in model.labs if lab.name == ev.lab)
    cloud = next(c for c in model.clouds if c.name == ev.cloud)
    if not lab.alive:
        model.log_event("mega_deal_void", lab.name, "lab has exited")
        return
    vendor = cloud.captive_vendor if ev.chip_kind == "captive" else None
    if ev.chip_kind == "captive" and vendor is None:
        raise ScenarioError(f"events: mega_deal chip_kind 'captive' but cloud {cloud.name!r} has no captive vendor")
    if vendor is None:
        merchants = [v for v in model.vendors if v.kind == "merchant" and model.may_buy(cloud, v)]
        vendor = min(merchants, key=lambda v: v.terms_for(cloud)[0], default=None)
    kw = vendor.terms_for(cloud)[1] if vendor is not None else model.cfg.chips.kw_per_h100e
    volume = ev.gw * 1e6 / (kw * model.cfg.cloud_params.pue)
    ramp = min(ev.ramp_months, ev.term_months)
    months = ev.term_months
    # H100e-months delivered over the term under a linear ramp.
    delivered = ec.ramped_months(months, ramp) * volume
    price = ev.value_usd / delivered
    eff = model.env.ecosystem_factor if ev.chip_kind == "captive" else 1.0
    exclusive = ev.exclusive and model.cfg.policy.exclusivity_allowed
    model.sign(lab, cloud, "reserved", volume, model.t, months, price, ramp=ramp, exclusive=exclusive,
               eff_factor=eff)
    if ev.chip_kind == "captive":
        # The cloud orders the deal's chips from its own line, which books the foundry capacity to make
        # them over the ramp (on top of its share for the cloud's other needs), taken from the other vendors.
        cloud.captive_commitment += volume
        vendor.line_target += volume / max(ramp, 1)  # the deal enlarges the line by its monthly volume
        reallocate_foundry(model, {vendor: vendor.foundry_share + volume / max(ramp, 1) / model.env.foundry_base})

    model.log_event("mega_deal", lab.name, f"{cloud.name}: {ev.gw} GW, {months} months, {ev.chip_kind} chips, "
                    f"{volume:,.0f} H100e at ${price / ec.HOURS_PER_MONTH:.2f}/h", ev.value_usd)


def reallocate_foundry(model, wanted: dict) -> None:
    """Give the vendors in ``wanted`` the foundry shares asked for, taken from the other vendors in proportion
    to their shares, so that the shares' total stays what it was: foundry capacity is allocated between
    vendors, never created by an event. What the others cannot give up is not granted (the wanted shares
    are scaled down to fit the total)."""
    total = sum(v.foundry_share for v in model.vendors)
    want = sum(wanted.values())
    if want > total:
        wanted = {v: x * total / want for v, x in wanted.items()}
        want = total
    others = [v for v in model.vendors if v not in wanted]
    rest = sum(v.foundry_share for v in others)
    scale = (total - want) / rest if rest > 0 else 0.0
    for v in others:
        v.foundry_share *= scale
    for v, x in wanted.items():
        v.foundry_share = x


def set_parameter(model, ev) -> None:
    """Change a scenario parameter from this month on (for example ``capital.inflow_growth_annual``)."""
    update_config(model, ev, {ev.key: ev.value})
    model.log_event("set", "environment", f"{ev.key} = {ev.value}")


def export_controls(model, ev) -> None:
    """Named labs and clouds lose access to the newest chip generation from this month.

    A restricted cloud buys chips one generation behind (ChipVendor.terms_for); a restricted lab rents only
    from restricted clouds and stays out of the spot market.
    """
    for cloud in model.clouds:
        if cloud.name in ev.clouds:
            cloud.restricted = True
    for lab in model.labs:
        if lab.name in ev.labs:
            lab.restricted = True
    model.log_event("export_controls", "policy", f"clouds {', '.join(ev.clouds)}; labs {', '.join(ev.labs)}")


def foundry_shock(model, ev) -> None:
    """Foundry capacity falls by ``share`` for ``months`` months (vendors' capacity caps follow)."""
    model.env.foundry_cut = ev.share
    model.env.foundry_cut_until = model.t + ev.months
    model.log_event("foundry_shock", "environment", f"capacity -{ev.share:.0%} for {ev.months} months")


def demand_shock(model, ev) -> None:
    """End-user demand jumps by ``factor`` (a level shift) and, if given, grows at ``growth_annual`` after."""
    model.env.demand *= ev.factor
    _set_growth(model, ev, "demand.growth_annual")
    model.log_event("demand_shock", "environment", f"demand x{ev.factor}", model.env.demand)


def capital_shock(model, ev) -> None:
    """Investor inflow x ``factor`` (for ``months`` months, or for good when months is 0 or absent); a
    new ``growth_annual`` bends the inflow path from then on."""
    model.env.inflow_factor = ev.factor
    model.env.inflow_factor_until = model.t + ev.months if ev.months else -1
    _set_growth(model, ev, "capital.inflow_growth_annual")
    model.log_event("capital_shock", "environment", f"inflow x{ev.factor}")


def _set_growth(model, ev, key: str) -> None:
    if ev.growth_annual is not None:
        update_config(model, ev, {key: ev.growth_annual})


def algorithmic_breakthrough(model, ev) -> None:
    """A lab's algorithmic efficiency jumps by ``factor`` (when no lab is named, the most efficient alive lab's,
    which need not be the most capable)."""
    alive = model.alive_labs()
    if not alive:
        return
    lab = next((x for x in alive if x.name == ev.lab), None) if ev.lab else max(alive, key=lambda x: x.log_eff)
    if lab is None:
        model.log_event("breakthrough_void", str(ev.lab), "lab has exited")
        return
    lab.log_eff += math.log(ev.factor)
    model.log_event("algorithmic_breakthrough", lab.name, f"efficiency x{ev.factor}")


def open_weights(model, ev) -> None:
    """A strong open model is released: every lab closes ``share`` of its efficiency gap to the frontier at
    once, and diffusion runs at ``diffusion`` from then on when given."""
    alive = model.alive_labs()
    if alive:
        front = max(x.log_eff for x in alive)
        for lab in alive:
            lab.log_eff += ev.share * (front - lab.log_eff)
    if ev.diffusion is not None:
        update_config(model, ev, {"efficiency.diffusion": ev.diffusion})
    model.log_event("open_weights", "environment", f"gap closed by {ev.share:.0%}")


def ecosystem_shift(model, ev) -> None:
    """Captive silicon catches up faster: its ecosystem gap closes with half-life ``maturity_months`` from
    now, captive vendors' foundry share x ``capacity_multiplier`` (taken from the merchants' shares, see
    :func:`reallocate_foundry`), and their generation lag is reset."""
    update_config(model, ev, {"chips.ecosystem_maturity_months": ev.maturity_months})
    captive = [v for v in model.vendors if v.kind == "captive"]
    reallocate_foundry(model, {v: v.foundry_share * ev.capacity_multiplier for v in captive})
    for v in captive:
        if ev.gen_lag_months is not None:
            v.gen_lag = ev.gen_lag_months
    model.log_event("ecosystem_shift", "environment", f"captive gap half-life {ev.maturity_months} months")


def public_compute(model, ev) -> None:
    """A public provider appears: it builds capacity from a yearly budget and rents it at cost to labs that
    have raised at most ``max_capital_usd`` (no bargaining, no risk premium, no spot sales)."""
    from .agents import CloudProvider
    from .scenario import CloudSpec

    spec = CloudSpec(name=ev.name, kind="public", cash_usd=0.0, cost_of_capital=0.03, fleet_h100e=0.0,
                     power_mw=0.0)
    cloud = CloudProvider(model, spec)
    cloud.idx = len(model.clouds)
    cloud.eligible_capital_max = ev.max_capital_usd
    cloud.budget_month = ev.budget_usd_year / 12.0
    model.clouds.append(cloud)
    model.committed = np.vstack([model.committed, np.zeros((1, model.committed.shape[1]))])
    cloud.bring_online()
    cloud.set_prices()
    model.log_event("public_compute", cloud.name, f"budget ${ev.budget_usd_year:,.0f}/yr for labs under "
                    f"${ev.max_capital_usd:,.0f}", ev.budget_usd_year)


def antitrust(model, ev) -> None:
    """Competition policy from this month: ban exclusivity (existing exclusive terms lapse), ban
    equity-for-compute deals, and cap any one lab's share of a cloud's capacity."""
    over = {}
    if ev.ban_exclusivity:
        over["policy.exclusivity_allowed"] = False
        for lab in model.labs:
            lab.exclusive_with = None
            lab.exclusive_until = -1
    if ev.ban_equity_for_compute:
        over["policy.equity_for_compute_allowed"] = False
    if ev.max_lab_share_of_cloud is not None:
        over["policy.max_lab_share_of_cloud"] = ev.max_lab_share_of_cloud
    if over:
        update_config(model, ev, over)
    model.log_event("antitrust", "policy", ", ".join(f"{k}={v}" for k, v in over.items()))


def lab_entry(model, ev) -> None:
    """A named lab is founded this month with the cash and contracts of ``new_lab`` (money from outside the
    model's investor pool, like the initial endowments)."""
    from .agents import Lab

    lab = Lab.from_spec(model, ev.new_lab)
    lab.start_spending()
    model.entries += 1
    model.log_event("lab_entry", lab.name, f"founded with {ev.new_lab.cash_usd:,.0f} USD", ev.new_lab.cash_usd)


def funding(model, ev) -> None:
    """An announced round: ``value_usd`` of equity for a named lab at its pre-money valuation (S8), from
    investors outside the model's pool, or from ``cloud``'s cash (then counted as cloud equity). No compute
    contract comes with it: the lab buys compute in the market."""
    from .markets.capital import cloud_invests, pre_money

    lab = next((x for x in model.labs if x.name == ev.lab), None)
    if lab is None or not lab.alive:
        model.log_event("funding_void", ev.lab, "lab is not alive")
        return
    cloud = next((c for c in model.clouds if c.name == ev.cloud), None) if ev.cloud else None
    if cloud is not None:
        share = cloud_invests(model, cloud, lab, ev.value_usd, "equity_investment")
    else:
        pre = float(pre_money(model, np.array([lab.slot]))[0])
        share = ev.value_usd / (pre + ev.value_usd)
        model.ledger.transfer("investors", lab, ev.value_usd, "equity_raise")
        lab.dilute("investors", share)
        lab.capital_raised += ev.value_usd
    lab.start_spending()
    model.log_event("funding", lab.name, f"{cloud.name if cloud else 'investors'} take {share:.3f}", ev.value_usd)


HANDLERS = {"mega_deal": mega_deal, "set": set_parameter, "export_controls": export_controls,
            "foundry_shock": foundry_shock, "demand_shock": demand_shock, "capital_shock": capital_shock,
            "algorithmic_breakthrough": algorithmic_breakthrough, "open_weights": open_weights,
            "ecosystem_shift": ecosystem_shift, "public_compute": public_compute, "antitrust": antitrust,
            "lab_entry": lab_entry, "funding": funding}
