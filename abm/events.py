"""Scheduled scenario events (S10), applied in phase 1 of the month they are dated."""

from __future__ import annotations

from . import economics as ec
from .scenario import ScenarioError, apply_overrides, validate


def apply_event(model, ev) -> None:
    """Apply one event to the model; each type has its own handler."""
    handler = HANDLERS.get(ev.type)
    if handler is None:  # guarded by the schema's Literal; kept for clarity
        raise ScenarioError(f"events: unknown type {ev.type!r}")
    handler(model, ev)


def mega_deal(model, ev) -> None:
    """Inject a committed-spend deal: a lab commits ``value_usd`` over ``term_months`` on a cloud.

    The volume follows from the power: gw x 1e6 kW / (kW per H100e of the chip kind x PUE), ramped
    linearly over ``ramp_months`` while the cloud builds; the unit price is the value over the H100e-months
    delivered. The cloud's capacity plan sees the backlog and orders chips of the named kind.
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
        vendor, _, _ = cloud.cheapest_source()
    kw = vendor.kw if vendor is not None else model.cfg.chips.kw_per_h100e
    volume = ev.gw * 1e6 / (kw * model.cfg.cloud_params.pue)
    ramp = min(ev.ramp_months, ev.term_months)
    months = ev.term_months
    # H100e-months delivered over the term under a linear ramp.
    delivered = sum(min(1.0, (k + 1) / ramp) if ramp > 0 else 1.0 for k in range(months)) * volume
    price = ev.value_usd / delivered
    eff = model.env.ecosystem_factor if ev.chip_kind == "captive" else 1.0
    exclusive = ev.exclusive and model.cfg.policy.exclusivity_allowed
    model.sign(lab, cloud, "reserved", volume, model.t, months, price, ramp=ramp, exclusive=exclusive,
               eff_factor=eff)

    model.log_event("mega_deal", lab.name, f"{cloud.name}: {ev.gw} GW, {months} months, {ev.chip_kind} chips, "
                    f"{volume:,.0f} H100e at ${price / ec.HOURS_PER_MONTH:.2f}/h", ev.value_usd)


def set_parameter(model, ev) -> None:
    """Change a scenario parameter from this month on (for example ``capital.inflow_usd_month``)."""
    data = model.cfg.model_dump(by_alias=True)
    data = apply_overrides(data, {ev.key: ev.value}, source=f"events ({ev.month})")
    model.cfg = validate(data, source=f"events ({ev.month})")
    model.env.cfg = model.cfg
    model.refresh_constants()
    model.log_event("set", "environment", f"{ev.key} = {ev.value}")


HANDLERS = {"mega_deal": mega_deal, "set": set_parameter}
