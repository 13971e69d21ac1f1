"""Economic accounting over whole runs: debt equals what lenders are owed, agents' revenue in agents.csv adds
up to the market totals in timeseries.csv, and nothing is paid for capacity that was not delivered."""

from __future__ import annotations

from collections import defaultdict

import pytest

from abm.model import ComputeMarket


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["baseline", "mega_deal", "public_compute", "ai_winter"])
def test_debt_and_revenue_add_up_every_month(scenario):
    m = ComputeMarket(scenario, overrides={"run.months": 60}, rng=2)
    for _ in range(60):
        m.step()
        debt = sum(c.debt for c in m.clouds)
        # Lenders are paid interest into a sink, so their balance is minus the principal outstanding.
        assert -m.ledger.of("lenders") == pytest.approx(debt, rel=1e-9, abs=1.0)
    by_month = defaultdict(lambda: defaultdict(float))
    for r in m.agent_rows:
        by_month[r[1]][r[4]] += r[10]
    clouds_paid = sum(by_month[t]["cloud"] for t in by_month)
    assert clouds_paid > 0
    for row in m.rows:
        t = row["step"]
        assert by_month[t]["cloud"] == pytest.approx(row["cloud_revenue_usd"], rel=1e-9), t
        assert by_month[t]["lab"] == pytest.approx(row["lab_revenue_usd"], rel=1e-9), t
    # A vendor's revenue is the value of the chip orders it filled that month (from the contract book).
    filled = defaultdict(float)
    for c in m.contracts_table():
        if c["kind"] == "chip_order":
            filled[(c["signed"], c["seller"])] += c["volume_h100e"] * c["unit_price_usd"]
    vendor_rev = {(r[1], r[3]): r[10] for r in m.agent_rows if r[4] == "vendor"}
    assert sum(filled.values()) > 0
    for key, rev in vendor_rev.items():
        assert rev == pytest.approx(filled.get(key, 0.0), rel=1e-9), key
