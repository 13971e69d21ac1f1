"""Valid but extreme worlds: each runs to its end with the invariants intact, or is refused at validation with
a clear reason. Never a NaN outside the nullable columns (abm.metrics.NULLABLE), a negative stock or a
traceback.

Every world is the baseline changed in one respect (zero demand, zero investor inflow, every lab exiting, no
foundry capacity for years, one cloud, a mega-deal larger than any cloud can build, one lab, no entrants,
no lab at the start, gamma near 0 and near 1, 300 months, 100,000 labs). After every month the whole-model
invariants of conftest (money conserved, deliveries within capacity, no negative cash without a default,
finite metrics and agent rows, no contract with an exited buyer, bounded HHIs and shares, committed capacity
matching the contracts) and the stocks checked here (fleets, capacity, chips, prices, the labs' compute and
capital) must hold.
"""

from __future__ import annotations

import copy
import math
import resource
import sys
import time

import numpy as np
import pytest
from conftest import check_invariants

from abm.metrics import COLUMNS, NULLABLE
from abm.model import ComputeMarket
from abm.scale import scale_world
from abm.scenario import Scenario, ScenarioError, load_scenario, validate

TOL = 1e-6
# Timeseries columns that are quantities, prices, counts or shares: never negative.
NON_NEGATIVE = [c for c in COLUMNS if c not in ("month", "frontier_capability", "median_capability",
                                                "vendor_lerner")]


def negative_stocks(m: ComputeMarket) -> list[str]:
    """Stocks and prices of the model's current state that are negative or not finite."""
    out = []

    def check(what: str, values) -> None:
        v = np.asarray(values, dtype=float).ravel()
        if v.size and not (np.all(np.isfinite(v)) and v.min() >= -TOL * max(1.0, float(np.abs(v).max()))):
            bad = v[~np.isfinite(v) | (v < 0)]
            out.append(f"step {m.t - 1}: {what} = {bad[:3].tolist()}")

    for c in m.clouds:
        check(f"{c.name} online", c.online)
        check(f"{c.name} fleet", c.v_h100e)
        check(f"{c.name} power", c.power_online)
        check(f"{c.name} chips in transit", [p[1] for p in c.pending])
        check(f"{c.name} chips stored", [s[0] for s in c.stored])
        check(f"{c.name} debt", c.debt)
        check(f"{c.name} floor price", c.floor_price)
    for v in m.vendors:
        check(f"{v.name} capacity", v.capacity)
        check(f"{v.name} output", v.output)
        check(f"{v.name} orders", list(v.orders.values()))
        check(f"{v.name} price", v.price)
    alive = m.alive_slots()
    C = m.lab_table.cols
    for k in ("compute", "capital_raised", "spend_rate", "revenue", "rd_share", "capability"):
        check(f"labs' {k}", C[k][alive] if k != "capability" else np.exp(np.minimum(C[k][alive], 700)))
    check("committed capacity", m.committed)
    check("spot price", m.spot_price)
    check("end-user demand", m.env.demand)
    check("foundry capacity", m.env.foundry_base)
    check("investor inflow", m.env.inflow)
    row = m.rows[-1]
    for k in NON_NEGATIVE:
        v = row[k]
        if isinstance(v, float) and math.isnan(v) and k in NULLABLE:
            continue
        check(f"timeseries {k}", v)
    return out


def run_world(scn: Scenario) -> tuple[ComputeMarket, dict[str, list[str]]]:
    """Run ``scn`` to its end; the violations found after each month, by kind (first few of each)."""
    m = ComputeMarket(scn)
    found: dict[str, list[str]] = {}
    while m.running:
        m.step()
        for code, msg in check_invariants(m):
            found.setdefault(code, []).append(msg)
        for msg in negative_stocks(m):
            found.setdefault("stock", []).append(msg)
    return m, {k: v[:5] for k, v in found.items()}


# ------------------------------------------------------------------------------------------ the worlds
def baseline(**over) -> dict:
    """The baseline's data with ``over`` (dotted keys) applied."""
    return load_scenario("baseline", overrides=over or None).model_dump(by_alias=True)


def _one_cloud() -> dict:
    """Azure alone: its captive line and the merchant vendors, foundry shares rescaled to sum to 1, every
    named lab's contracts with Azure."""
    d = baseline()
    d["clouds"] = [c for c in d["clouds"] if c["name"] == "Azure"]
    d["vendors"] = [v for v in d["vendors"] if v["kind"] == "merchant" or v["owner"] == "Azure"]
    total = sum(v["foundry_share"] for v in d["vendors"])
    for v in d["vendors"]:
        v["foundry_share"] /= total
    for lab in d["labs"]:
        lab["contracts"] = [{**c, "cloud": "Azure"} for c in lab["contracts"]]
    return d


def _all_labs_exit() -> dict:
    """No money for labs: no revenue to speak of, no investors, no entrants, no parent funding, little cash."""
    d = baseline(**{"demand.initial_usd_month": 1.0, "capital.inflow_usd_month": 0.0, "entry.rate_per_month": 0.0,
                    "generated_labs.cash_median_usd": 1e6})
    for lab in d["labs"]:
        lab.update(cash_usd=1e6, revenue_usd_month=0.0, other_funding_usd_month=0.0, contracts=[])
    return d


def _mega_deal_beyond_any_cloud() -> dict:
    """Lambda (a 25 MW neocloud with $0.5B) signs 1,000 GW for $10T over ten years, on merchant chips."""
    d = baseline()
    d["events"] = [{"month": "2025-01", "type": "mega_deal", "lab": "Mistral", "cloud": "Lambda", "value_usd": 1e13,
                    "term_months": 120, "gw": 1000.0, "chip_kind": "merchant", "exclusive": True, "ramp_months": 24}]
    return d


def _one_lab() -> dict:
    d = baseline(**{"generated_labs.n": 0, "entry.rate_per_month": 0.0})
    d["labs"] = [lab for lab in d["labs"] if lab["name"] == "OpenAI"]
    return d


def _no_lab_at_start() -> dict:
    """No lab at all at the start: the market is built by entrants."""
    d = baseline(**{"generated_labs.n": 0})
    d["labs"] = []
    return d


def _foundry_zero() -> dict:
    """The foundry makes nothing for four years (2025-2028)."""
    d = baseline()
    d["events"] = [{"month": "2025-01", "type": "foundry_shock", "share": 1.0, "months": 48}]
    return d


WORLDS = {
    "zero_demand": lambda: baseline(**{"demand.initial_usd_month": 1e-6, "background.volume_h100e": 0.0}),
    "zero_inflow": lambda: baseline(**{"capital.inflow_usd_month": 0.0}),
    "all_labs_exit": _all_labs_exit,
    "foundry_zero_for_years": _foundry_zero,
    "one_cloud": _one_cloud,
    "mega_deal_beyond_any_cloud": _mega_deal_beyond_any_cloud,
    "one_lab": _one_lab,
    "no_entrants": lambda: baseline(**{"entry.rate_per_month": 0.0}),
    "no_lab_at_start": _no_lab_at_start,
    "gamma_near_0": lambda: baseline(**{"scaling.gamma": 1e-6}),
    "gamma_near_1": lambda: baseline(**{"scaling.gamma": 0.999}),
}


@pytest.mark.parametrize("world", sorted(WORLDS))
def test_extreme_world_runs_with_invariants(world):
    """The world runs its 120 months; every invariant holds after every month."""
    scn = validate(WORLDS[world](), world)
    m, bad = run_world(scn)
    assert m.t == scn.run.months and len(m.rows) == scn.run.months
    assert not bad, bad
    if world == "all_labs_exit":
        assert m.rows[-1]["labs_active"] == 0, "the world meant to lose every lab kept some"
    if world == "one_lab":
        assert m.rows[0]["labs_active"] == 1
    if world == "no_lab_at_start":
        assert m.rows[0]["labs_active"] == 0 and m.rows[-1]["labs_active"] > 0


@pytest.mark.parametrize("over,field", [
    ({"demand.initial_usd_month": 0.0}, "demand.initial_usd_month"),
    ({"scaling.gamma": 0.0}, "scaling.gamma"),
    ({"chips.foundry_capacity_h100e_month": 0.0}, "chips.foundry_capacity_h100e_month"),
    ({"run.months": 601}, "run.months"),
    ({"generated_labs.n": 100_001}, "generated_labs.n"),
], ids=["demand_exactly_zero", "gamma_exactly_zero", "foundry_exactly_zero", "months_601", "labs_100001"])
def test_meaningless_limits_are_refused(over, field):
    """The limits themselves are refused at validation in one line naming the field and the bound: zero
    demand (potential demand is the level that grows and that adoption scales), gamma 0 (capability would not
    depend on compute), a foundry that never made anything (zero also for good: the foundry_shock event
    takes capacity away for a while), more months or labs than the schema allows."""
    with pytest.raises(ScenarioError) as exc:
        load_scenario("baseline", overrides=over)
    msg = str(exc.value)
    assert field in msg and "\n" not in msg
    assert any(w in msg for w in ("greater than", "less than")), msg


@pytest.mark.slow
def test_300_months():
    """The baseline over 300 months (25 years)."""
    m, bad = run_world(load_scenario("baseline", months=300))
    assert m.t == 300 and not bad, bad


def light_invariants(m: ComputeMarket) -> list[str]:
    """conftest's invariants (a) to (d) and (f) on arrays, for a world too large for its row-by-row checks:
    money conserved, deliveries within capacity, no negative cash without a default, a finite month (the
    timeseries row and the month's agent columns), HHIs within [0, 10000]."""
    from conftest import CONSERVATION_RTOL, HHI_COLUMNS

    out, step, led = [], m.t - 1, m.ledger
    if not abs(led.total()) <= CONSERVATION_RTOL * max(led.gross, 1.0):
        out.append(f"step {step}: ledger sums to {led.total()!r}")
    out += [f"step {step}: {c.name} delivered {c.delivered!r} > online {c.online!r}" for c in m.clouds
            if not c.delivered <= c.online * (1 + 1e-9) + 1e-6]
    defaulted = {e["agent"] for e in m.events_log if e["event"] == "default"}
    slots = np.arange(m.lab_table.n)
    cash = m.lab_cash(slots)
    out += [f"step {step}: lab {m.labs[i].name} has cash {cash[i]!r} without a default"
            for i in np.flatnonzero(cash < -1e-6) if m.labs[i].name not in defaulted]
    out += [f"step {step}: {a.name} has cash {a.cash!r}" for a in (*m.clouds, *m.vendors) if a.cash < -1e-6]
    row = m.rows[-1]
    out += [f"step {step}: timeseries {k} = {v!r}" for k, v in row.items() if isinstance(v, float)
            and (math.isinf(v) or (math.isnan(v) and k not in NULLABLE))]
    frame = m.agent_frames[-1]
    for j, arr in enumerate(frame[2:], start=2):
        a = np.asarray(arr, dtype=float)
        if a.size and not np.all(np.isfinite(a)):
            out.append(f"step {step}: agent column {j} not finite")
    out += [f"step {step}: {k} = {row[k]!r}" for k in HHI_COLUMNS if not -1e-9 <= row[k] <= 10_000 + 1e-6]
    return out


@pytest.mark.slow
def test_100k_labs_for_12_months():
    """The baseline grown to 100,000 labs (``abm run baseline --labs 100000``), 12 months: the invariants of
    :func:`light_invariants` and the stocks each month; its wall time and peak memory printed (about 45 s and
    1.1 GB on 2 cores without the checks)."""
    t0 = time.perf_counter()
    m = ComputeMarket(scale_world(load_scenario("baseline", months=12), 100_000))
    bad: list[str] = []
    while m.running:
        m.step()
        bad += light_invariants(m) + negative_stocks(m)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
    print(f"\n100,000 labs x 12 months: {wall:.1f} s with the checks, peak RSS of the test process {peak:,.0f} MiB")
    assert m.rows[0]["labs_active"] >= 100_000
    assert not bad, bad[:10]


def test_worlds_are_distinct_from_the_baseline():
    """Each world differs from the baseline in what it is named for (a guard against a builder that silently
    leaves the baseline unchanged)."""
    base = baseline()
    for name, build in WORLDS.items():
        d = build()
        assert d != base, name
        validate(copy.deepcopy(d), name)
