"""What a run records besides the timeseries (ODD 3.5): agent rows, contract rows, flow rows and the contract
network.

The model keeps each month's agent-level values as arrays (:func:`record_agents`, called in phase 11);
rows of ``agents.csv`` and ``contracts.csv`` are produced from them and from the contract book only when
asked for, so a run that writes nothing pays nothing for them. The rows of ``flows.csv`` come from the
ledger's flow log (:class:`abm.ledger.FlowLog`, :func:`iter_flow_rows`).
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from .ledger import KINDS
from .timeline import month_label

# Columns of contracts.csv (see iter_contract_rows).
CONTRACT_FIELDS = (
    "contract_id", "buyer", "seller", "kind", "volume_h100e", "start", "end", "unit_price_usd", "unit",
    "take_or_pay_share", "prepayment_usd", "equity_share", "investment_usd", "effective_factor", "ramp_months",
    "exclusive", "signed", "status", "closed",
)
STATUS_NAMES = ("active", "completed", "defaulted", "cancelled")
# Columns of flows.csv (see iter_flow_rows).
FLOW_FIELDS = ("month", "step", "payer", "payee", "kind", "amount_usd")


def record_agents(m, month: np.ndarray) -> None:
    """Keep this month's agent-level values as arrays (names and kinds are read when rows are written).

    ``month``: lab-table rows of the labs active this month."""
    C = m.lab_table.cols
    others = [*m.clouds, *m.vendors]
    labs = [m.labs[i] for i in month.tolist()]
    led = m.ledger.balance
    owed = m.obligations_by_uid(after_this_month=True)[C["uid"][month]]
    m.agent_frames.append((
        m.t, labs + others,
        np.concatenate([C["alive"][month], [a.alive for a in others]]).astype(bool),
        np.concatenate([led[C["acct"][month]], led[[a.account for a in others]]]),
        np.concatenate([C["capital_raised"][month], [a.capital_raised for a in others]]),
        np.concatenate([C["compute"][month], [c.online for c in m.clouds], np.zeros(len(m.vendors))]),
        np.concatenate([C["revenue"][month], [a.revenue for a in others]]),
        C["capability"][month].copy(),
        np.exp(C["log_eff"][month]),
        np.concatenate([C["market_share"][month], [a.market_share for a in others]]),
        owed,
        C["cloud_equity"][month].copy(),
    ))


def iter_agent_rows(m):
    """Rows of agents.csv, month by month: every agent active that month (labs that exited earlier are
    left out)."""
    start = m.cfg.run.start
    for t, agents, alive, cash, raised, h100e, revenue, capability, efficiency, share, owed, cloud_eq in m.agent_frames:
        month = month_label(start, t)
        n_labs = capability.size
        for i, a in enumerate(agents):
            lab = i < n_labs
            yield (month, t, a.unique_id, a.name, a.type_name, a.kind, bool(alive[i]), float(cash[i]),
                   float(raised[i]), float(h100e[i]), float(revenue[i]), float(capability[i]) if lab else "",
                   float(efficiency[i]) if lab else "", float(share[i]), float(owed[i]) if lab else "",
                   float(cloud_eq[i]) if lab else "")


def _names(m) -> dict[int, str]:
    return {a.unique_id: a.name for a in (*m.labs, *m.clouds, *m.vendors)}


def iter_contract_rows(m):
    """Every contract as a tuple of the CONTRACT_FIELDS (names instead of ids), in contract-id order."""
    names = _names(m)
    b = m.book
    cols = zip(b.kind.tolist(), b.buyer.tolist(), b.seller.tolist(), b.volume.tolist(), b.start.tolist(),
               b.end.tolist(), b.price.tolist(), b.take_or_pay.tolist(), b.prepayment.tolist(),
               b.equity_share.tolist(), b.investment.tolist(), b.eff_factor.tolist(), b.ramp.tolist(),
               b.exclusive.tolist(), b.signed.tolist(), b.status.tolist(), b.closed.tolist(), strict=True)
    for i, (kind, buyer, seller, vol, start, end, price, top, pre, eq, inv, eff, ramp, excl, signed, status,
            closed) in enumerate(cols):
        k = KINDS[kind]
        yield (i, names[buyer], names[seller], k, vol, start, end, price,
               "usd_per_h100e" if k == "chip_order" else "usd_per_h100e_month",
               top if k in ("reserved", "equity_for_compute") else 0.0, pre, eq, inv, eff, ramp, excl, signed,
               STATUS_NAMES[status], closed if closed >= 0 else "")


def flow_months(m):
    """Each month's transfers summed per (payer, payee, kind), as columns: ``(month, step, payers, payees,
    kinds, amounts)`` with the month's label and index, arrays of account and kind names, and the amounts.

    An agent's account is named by the agent's ``name`` (as in agents.csv), an outside account by its ledger
    name (``investors``, ``end_users``, ``lenders``, ...). Months in order; within a month, rows are ordered by
    payer and payee account (outside accounts first, then agents in the order they were created) and kind
    name. Transfers made before the first month (endowments, initial debt) count in month 0; a month's
    transfers are those of its phases 1-10 (phase 11, where the cash in agents.csv is read, moves no money).
    Nothing when the ledger kept no log."""
    log = m.ledger.log
    if log is None:
        return
    names = list(m.ledger.names)
    for a in (*m.labs, *m.clouds, *m.vendors):
        names[a.account] = a.name
    names = np.array(names, dtype=object)
    kinds = np.array(log.kinds, dtype=object)
    start = m.cfg.run.start
    for step, payer, payee, kind, amount in log.summed(len(names)):
        yield month_label(start, step), step, names[payer], names[payee], kinds[kind], amount


def iter_flow_rows(m):
    """Rows of flows.csv as tuples of the FLOW_FIELDS (see :func:`flow_months`)."""
    for month, step, payers, payees, kinds, amounts in flow_months(m):
        for p, q, k, a in zip(payers.tolist(), payees.tolist(), kinds.tolist(), amounts.tolist(), strict=True):
            yield (month, step, p, q, k, a)


def contract_network(m) -> nx.MultiDiGraph:
    """The contract network now: every agent a node; an edge per active reserved or equity-for-compute
    contract (lab -> cloud, key = contract id) and one per cloud-vendor pair that has traded chips
    (cloud -> vendor, value = chip spend so far)."""
    g = nx.MultiDiGraph()
    for a in (*m.clouds, *m.vendors, *m.labs):
        g.add_node(a.name, type=a.type_name)
    names = _names(m)
    b = m.book
    rows = b.active_capacity_rows()
    for r in rows.tolist():
        g.add_edge(names[int(b.cols["buyer"][r])], names[int(b.cols["seller"][r])], key=r,
                   kind=KINDS[int(b.cols["kind"][r])],
                   value=float(b.cols["volume"][r] * b.cols["price"][r] * (b.cols["end"][r] - b.cols["start"][r])))
    chips = np.flatnonzero(b.kind == 2)
    if chips.size:
        base = int(max(b.buyer[chips].max(), b.seller[chips].max())) + 1
        pair = b.buyer[chips] * base + b.seller[chips]
        uniq, inv = np.unique(pair, return_inverse=True)
        spend = np.bincount(inv, weights=b.volume[chips] * b.price[chips])
        for p, v in zip(uniq.tolist(), spend.tolist(), strict=True):
            cloud, vendor = names[p // base], names[p % base]
            g.add_edge(cloud, vendor, key=f"chips-{vendor}", kind="chip_order", value=v)
    return g
