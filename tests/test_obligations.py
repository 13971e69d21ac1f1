"""``obligations_usd`` in agents.csv reconciled with contracts.csv by an independent month-by-month sum.

For every lab and month t, what the lab is committed to pay after month t is the sum, over its reserved and
equity-for-compute contracts still in force at the end of month t, of volume x ramp factor x price x
take-or-pay share over each remaining month m in [t + 1, end). A contract is in force at the end of month t
when it was signed by then and not closed by then (a defaulted or cancelled contract is closed in the month
it ends early). Nothing here calls the model's contract arithmetic: only the written files are read.
"""

from __future__ import annotations

import csv
from collections import defaultdict

import numpy as np
import pytest

from abm.model import ComputeMarket
from abm.scenario import available_scenarios, load_scenario
from analysis.runio import run_scenario, write_run

CAPACITY_KINDS = {"reserved", "equity_for_compute"}


def _owed_after(c: dict, t: int) -> float:
    start, end, ramp = int(c["start"]), int(c["end"]), int(c["ramp_months"])
    vol, price, top = float(c["volume_h100e"]), float(c["unit_price_usd"]), float(c["take_or_pay_share"])
    total = 0.0
    for month in range(max(t + 1, start), end):
        frac = min(1.0, (month - start + 1) / ramp) if ramp > 0 else 1.0
        total += vol * frac * price * top
    return total


def _in_force(c: dict, t: int) -> bool:
    closed = c["closed"]
    return int(c["signed"]) <= t and (closed == "" or int(closed) > t)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", available_scenarios())
def test_obligations_reconcile_with_contracts_csv(scenario, tmp_path):
    scn = load_scenario(scenario, seed=3, months=48)
    write_run(run_scenario(scn), tmp_path / "run", 0.0)
    with open(tmp_path / "run" / "contracts.csv", newline="") as fh:
        contracts = [c for c in csv.DictReader(fh) if c["kind"] in CAPACITY_KINDS]
    by_buyer = defaultdict(list)
    for c in contracts:
        by_buyer[c["buyer"]].append(c)
    with open(tmp_path / "run" / "agents.csv", newline="") as fh:
        agents = list(csv.DictReader(fh))
    labs = [a for a in agents if a["type"] == "lab"]
    assert all(a["obligations_usd"] == "" for a in agents if a["type"] != "lab")
    checked = positive = 0
    for a in labs:
        t = int(a["step"])
        want = sum(_owed_after(c, t) for c in by_buyer[a["name"]] if _in_force(c, t))
        got = float(a["obligations_usd"])
        assert got == pytest.approx(want, rel=1e-9, abs=1e-3), (a["name"], t)
        checked += 1
        positive += want > 0
    # The check is not vacuous: many lab-months owe money, and flat contracts owe more than one month.
    assert positive > len(labs) // 4
    flat = [c for c in contracts if c["ramp_months"] == "0" and int(c["end"]) - int(c["start"]) >= 12]
    assert flat
    c = flat[0]
    t = int(c["signed"])
    assert _owed_after(c, t) > 2 * float(c["volume_h100e"]) * float(c["unit_price_usd"])


def test_kept_sums_are_the_fresh_sums_bit_for_bit(monkeypatch):
    """The per-lab sums kept through the month (obligations, dues, contracted volume, holdings) and the
    per-contract values behind them equal sums computed afresh over the book, to the last bit, at every
    point where the markets read them: before and after each phase that signs or closes contracts, in every
    month of a world of 2,000 labs where many labs default on their contracts."""
    from abm.markets import capital, contracting, entry, settlement, spot
    from abm.scale import scale_world
    from abm.scenario import load_scenario

    m = ComputeMarket(scale_world(load_scenario("baseline", seed=4, months=90), 2000), record_flows=False)

    def fresh(m) -> None:
        b, rows, t = m.book, m.book.active_capacity_rows(), m.t
        vol, top = b.volume_at(t, rows), b.cols["take_or_pay"][rows]
        expect = {
            "obligations": m.by_buyer(rows, b.remaining_value(t, rows) * top),
            "obligations_after": m.by_buyer(rows, b.remaining_value(t + 1, rows) * top),
            "contracted": m.by_buyer(rows, vol * b.cols["eff_factor"][rows]),
            "dues": m.by_buyer(rows, vol * b.cols["price"][rows] * top),
        }
        got = {"obligations": m.obligations_by_uid(), "obligations_after": m.obligations_by_uid(True),
               "contracted": m.contracted_by_uid(), "dues": m.dues_by_uid()}
        for k, v in expect.items():
            assert np.array_equal(got[k], v), (t, k)
        held = np.zeros((m.uid_cap, len(m.clouds)))
        np.add.at(held, (b.cols["buyer"][rows], m.seller_idx(rows)), vol)
        assert np.array_equal(m.held_by_uid(), held), t
        assert np.array_equal(m.row_values("volume"), vol) and np.array_equal(m.row_values("cloud"), m.seller_idx(rows))

    checked = []

    def checking(phase):
        def run(m):
            fresh(m)  # (also fills the caches before the phase, so the phase extends or cuts them)
            phase(m)
            fresh(m)
            checked.append(m.t)
        return run

    for mod, name in ((capital, "clear"), (contracting, "sign_requests"), (spot, "clear"),
                      (settlement, "settle"), (entry, "exit_and_enter")):
        monkeypatch.setattr(mod, name, checking(getattr(mod, name)))
    released = []
    release = m.release
    monkeypatch.setattr(m, "release", lambda rows, status: (released.append(len(rows)), release(rows, status)))
    for _ in range(90):
        m.step()
    assert len(checked) == 5 * 90
    assert len(released) > 10 and sum(released) > 500  # exits that default on contracts, mid-month
