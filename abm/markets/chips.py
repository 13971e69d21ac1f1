"""Chip market (ODD S4): the foundry allocates capacity over the vendors, and each vendor allocates its
constrained output over the clouds' outstanding orders.

Vendors ask for foundry capacity in phase 2 (:meth:`abm.agents.ChipVendor.update`), the foundry books it by
entitlement (:func:`book_foundry`) and vendors set output and price; clouds place orders in
phase 3 (:meth:`abm.agents.CloudProvider.plan_capacity`). Here, in phase 4, each vendor fills orders with
this month's output by the scenario's allocation rule (:func:`abm.economics.allocate_supply`); a cloud pays
at allocation (borrowing if short) and the chips arrive after the delivery lag. Every allocation is a
``chip_order`` row in the contract book; it completes on delivery.
"""

from __future__ import annotations

import numpy as np

from .. import economics as ec


def book_foundry(m) -> None:
    """The foundry's capacity this month (phase 2) over the vendors' requests: each vendor is entitled to
    its ``foundry_share``; what a vendor leaves unused goes to those still short, in proportion to their
    shares (:func:`abm.economics.allocate_by_entitlement`). Never more than the foundry has."""
    vs = m.vendors
    booked = ec.allocate_by_entitlement(m.env.foundry_base, [v.foundry_share for v in vs], [v.request for v in vs])
    for v, b in zip(vs, booked.tolist(), strict=True):
        v.finish(b)


def allocate(m) -> None:
    """Vendors allocate constrained supply to outstanding orders; clouds pay at allocation."""
    cfg = m.cfg.chips
    lag = cfg.delivery_lag_months
    cl = {c.unique_id: c for c in m.clouds}
    shipped = np.zeros(len(m.vendors))
    spend = 0.0
    for j, v in enumerate(m.vendors):
        v.revenue = 0.0
        ids = [k for k, q in v.orders.items() if q > 1e-9]
        if not ids:
            continue
        qty = np.array([v.orders[k] for k in ids])
        fill = ec.allocate_supply(v.output, qty, cfg.allocation_rule, order_rank=np.array(ids))
        rows = {k: []for k in ("buyer", "seller", "kind", "volume", "start", "end", "price", "signed", "status")}
        for k, q in zip(ids, fill, strict=True):
            if q <= 0:
                continue
            cloud = cl[k]
            v.orders[k] -= q
            price, kw = v.terms_for(cloud)
            cost = price * q
            cloud.pay_or_borrow(v, cost, "chip_purchase")
            m.ledger.transfer(v, "chip_production", v.unit_cost * q, "chip_production")
            cloud.pending.append((m.t + lag, q, v.kind == "captive", kw, price))
            cloud.capex += cost
            spend += cost
            shipped[j] += q
            for key, val in (("buyer", cloud.unique_id), ("seller", v.unique_id), ("kind", 2), ("volume", q),
                             ("start", m.t), ("end", m.t + lag), ("price", price),
                             ("signed", m.t), ("status", 0)):
                rows[key].append(val)
        m.book.add_many(**{k: np.asarray(x) for k, x in rows.items()})
        v.revenue = float(np.dot(rows["price"], rows["volume"])) if rows["price"] else 0.0
    m.shipments_hist.append(shipped)
    m.chip_spend_month = spend
    m.chip_units_month = float(shipped.sum())
    m.capex_month = sum(c.capex for c in m.clouds)
    # Chip orders complete on delivery.
    kinds = m.book.kind
    due = np.flatnonzero((kinds == 2) & (m.book.status == 0) & (m.book.end <= m.t))
    m.book.close(due, "completed", m.t)
