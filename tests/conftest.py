"""Shared helpers for the model tests: whole-model invariants and a cache of checked runs.

``check_invariants(model)`` returns the violations found in the state a model is in after ``step()``,
as ``(code, message)`` pairs where ``code`` is one of the letters below; ``assert_invariants`` fails on
any. ``checked_run`` runs a model to its end, checking the invariants after every month, and caches the
result so that several tests can look at one run (callers must not mutate the returned model).

(a) money is conserved: every transfer has a payer and a payee, and the sources and sinks of the outside
    world are ledger accounts, so the sum of all balances stays 0;
(b) no cloud delivers more H100e-months (reserved delivered plus spot sold) than it has online;
(c) no agent has negative cash unless it is a lab with a recorded 'default' event;
(d) no NaN or inf in the month's timeseries row (NaN allowed only in metrics.NULLABLE) nor in the
    numeric fields of that month's agent rows;
(e) no active reserved or equity-for-compute contract has a buyer that has exited;
(f) HHIs lie in [0, 10000] and shares in [0, 1];
(g) the committed-capacity matrix agrees with the active contracts: for every future month, a cloud's
    committed H100e equal the summed ramped volume of its active reserved/equity-for-compute contracts.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np

from abm.metrics import NULLABLE
from abm.model import ComputeMarket

CONSERVATION_RTOL = 1e-9
HHI_COLUMNS = ("lab_hhi_compute", "lab_hhi_revenue", "lab_hhi_capital", "cloud_hhi_capacity",
               "vendor_hhi_shipments")
SHARE_COLUMNS = ("lab_top3_share_compute", "lab_gini_capital", "efficiency_share_of_progress",
                 "small_lab_survival_24m", "cloud_utilization", "captive_share_shipments")
COMMIT_WINDOW = 60  # future months over which (g) compares committed capacity with the contract book


def _is_number(v) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool | np.bool_)


def check_invariants(model: ComputeMarket) -> list[tuple[str, str]]:
    """Violations of invariants (a)-(g) in the model's current state (call after ``model.step()``)."""
    out: list[tuple[str, str]] = []
    step = model.t - 1  # the month that just ended
    where = f"step {step}"

    # (a) conservation
    led = model.ledger
    total = led.total()
    if not abs(total) <= CONSERVATION_RTOL * max(led.gross, 1.0):
        out.append(("a", f"{where}: ledger sums to {total!r} (gross {led.gross!r})"))

    # (b) deliveries within capacity online
    for c in model.clouds:
        if not c.delivered <= c.online * (1 + 1e-9) + 1e-6:
            out.append(("b", f"{where}: {c.name} delivered {c.delivered!r} > online {c.online!r}"))

    # (c) negative cash only for labs with a recorded default
    defaulted = {e["agent"] for e in model.events_log if e["event"] == "default"}
    for a in (*model.labs, *model.clouds, *model.vendors):
        if a.cash < -1e-6 and not (a.type_name == "lab" and a.name in defaulted):
            out.append(("c", f"{where}: {a.type_name} {a.name} has cash {a.cash!r} without a default"))

    # (d) finite metrics
    row = model.rows[-1]
    if row["step"] != step:
        out.append(("d", f"{where}: latest row is for step {row['step']}"))
    for k, v in row.items():
        if not _is_number(v):
            continue
        if math.isinf(v) or (math.isnan(v) and k not in NULLABLE):
            out.append(("d", f"{where}: timeseries {k} = {v!r}"))
    month_rows = [r for r in model.agent_rows if r[1] == step]
    if not month_rows:
        out.append(("d", f"{where}: no agent rows"))
    for r in month_rows:
        for j, v in enumerate(r):
            if _is_number(v) and not math.isfinite(v):
                out.append(("d", f"{where}: agent row {r[3]} field {j} = {v!r}"))

    # (e) no active contract with an exited buyer; the book's cached index of active rows is up to date
    book = model.book
    kind, status = book.kind, book.status
    rows = np.flatnonzero((status == 0) & ((kind == 0) | (kind == 3)))
    if not np.array_equal(rows, book.active_capacity_rows()):
        out.append(("e", f"{where}: the cached index of active contracts is stale"))
    by_id = {lab.unique_id: lab for lab in model.labs}
    for r in rows:
        lab = by_id.get(int(book.cols["buyer"][r]))
        if lab is None or not lab.alive:
            who = lab.name if lab is not None else int(book.cols["buyer"][r])
            out.append(("e", f"{where}: active contract {int(r)} with exited or unknown buyer {who}"))

    # (f) bounds of concentration indices and shares
    for k in HHI_COLUMNS:
        if not -1e-9 <= row[k] <= 10_000 + 1e-6:
            out.append(("f", f"{where}: {k} = {row[k]!r} outside [0, 10000]"))
    for k in SHARE_COLUMNS:
        v = row[k]
        if k in NULLABLE and math.isnan(v):
            continue
        if not -1e-12 <= v <= 1 + 1e-9:
            out.append(("f", f"{where}: {k} = {v!r} outside [0, 1]"))
    lab_shares = [r[13] for r in month_rows if r[4] == "lab" and r[6]]
    if any(not -1e-12 <= s <= 1 + 1e-9 for s in lab_shares) or sum(lab_shares) > 1 + 1e-9:
        out.append(("f", f"{where}: lab market shares out of range (sum {sum(lab_shares)!r})"))

    # (g) committed capacity == active contracts, over the next COMMIT_WINDOW months
    horizon = model.committed.shape[1]
    months = range(model.t, min(model.t + COMMIT_WINDOW, horizon))
    idx = {c.unique_id: c.idx for c in model.clouds}
    sellers = np.array([idx[int(s)] for s in book.cols["seller"][rows]], dtype=int)
    expect = np.zeros((len(model.clouds), len(months)))
    for j, t in enumerate(months):
        if rows.size:
            np.add.at(expect[:, j], sellers, book.volume_at(t, rows))
    got = model.committed[:, months.start: months.stop]
    scale = max(float(np.abs(got).max(initial=0.0)), float(expect.max(initial=0.0)), 1.0)
    err = np.abs(got - expect)
    if err.max(initial=0.0) > 1e-9 * scale + 1e-6:
        ci, mj = np.unravel_index(int(np.argmax(err)), err.shape)
        out.append(("g", f"{where}: {model.clouds[ci].name} committed {got[ci, mj]!r} in month "
                         f"{months.start + mj} but active contracts sum to {expect[ci, mj]!r}"))
    return out


def assert_invariants(model: ComputeMarket) -> None:
    bad = check_invariants(model)
    assert not bad, "\n".join(f"({c}) {m}" for c, m in bad[:20])


def run_checked(model: ComputeMarket, max_steps: int | None = None) -> dict[str, list[str]]:
    """Step a model to its end (or ``max_steps``), checking invariants each month; violations by code."""
    found: dict[str, list[str]] = {}
    n = 0
    while model.running and (max_steps is None or n < max_steps):
        model.step()
        n += 1
        for code, msg in check_invariants(model):
            found.setdefault(code, []).append(msg)
    return found


@cache
def checked_run(scenario: str, seed: int, months: int | None = None):
    """A cached full run of ``scenario`` with ``seed``: (model, violations by invariant code)."""
    overrides = {"run.months": months} if months is not None else None
    model = ComputeMarket(scenario, overrides=overrides, rng=seed)
    return model, run_checked(model)
