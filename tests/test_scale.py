"""Scaling the world to N labs: proportions, identity at the scenario's own size, errors, a scaled run."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_checked

from abm.model import ComputeMarket
from abm.scale import initial_labs, scale_world
from abm.scenario import ScenarioError, load_scenario, to_toml
from analysis.experiments.ensemble import timeseries_text
from analysis.runio import run_scenario


@pytest.fixture(scope="module")
def base():
    return load_scenario("baseline")


def _leaves(node, path: str = "") -> dict:
    """Every scalar of a scenario dump by its path; list items by their ``name`` when they have one."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            out.update(_leaves(v, f"{path}.{k}" if path else k))
        return out
    if isinstance(node, list):
        out = {}
        for i, v in enumerate(node):
            out.update(_leaves(v, f"{path}[{v.get('name', i) if isinstance(v, dict) else i}]"))
        return out
    return {path: node}


# The non-zero numbers that scale with the world, as baseline.toml gives them (and, for the market aggregates
# it does not set, the schema's defaults). Baseline starts with 9 named + 20 drawn = 29 labs.
BASELINE_N0 = 29
SCALED_NUMBERS = {
    "clouds[Azure].fleet_h100e": 450_000, "clouds[Azure].power_mw": 760, "clouds[Azure].cash_usd": 8.0e10,
    "clouds[Azure].other_cashflow_usd_month": 3.0e9,
    "clouds[AWS].fleet_h100e": 300_000, "clouds[AWS].power_mw": 510, "clouds[AWS].cash_usd": 7.0e10,
    "clouds[AWS].other_cashflow_usd_month": 3.0e9,
    "clouds[Google Cloud].fleet_h100e": 450_000, "clouds[Google Cloud].power_mw": 760,
    "clouds[Google Cloud].cash_usd": 1.0e11, "clouds[Google Cloud].other_cashflow_usd_month": 3.0e9,
    "clouds[CoreWeave].fleet_h100e": 60_000, "clouds[CoreWeave].power_mw": 100,
    "clouds[CoreWeave].cash_usd": 2.0e9, "clouds[CoreWeave].debt_usd": 2.0e9,
    "clouds[Lambda].fleet_h100e": 15_000, "clouds[Lambda].power_mw": 25, "clouds[Lambda].cash_usd": 5.0e8,
    "clouds[Alibaba Cloud].fleet_h100e": 60_000, "clouds[Alibaba Cloud].power_mw": 100,
    "clouds[Alibaba Cloud].cash_usd": 3.0e10, "clouds[Alibaba Cloud].other_cashflow_usd_month": 8.0e8,
    "vendors[Nvidia].capacity_h100e_month": 150_000, "vendors[AMD].capacity_h100e_month": 10_000,
    "vendors[TPU].capacity_h100e_month": 30_000, "vendors[Trainium].capacity_h100e_month": 10_000,
    "vendors[Maia].capacity_h100e_month": 2_000,
    "demand.initial_usd_month": 6.0e8,
    "background.volume_h100e": 6.0e5,
    "chips.foundry_capacity_h100e_month": 3.0e5,
    "capital.inflow_usd_month": 2.5e9,
    "entry.rate_per_month": 0.5,
    "policy.equity_deal_min_cash_usd": 2.0e10,
}


def test_doubled_world_hand_values(base):
    """58 labs is twice baseline's 29: Azure's fleet 900,000 H100e, Nvidia's capacity 300,000 a month, end-user
    demand 1.2e9 $ a month, entrants 1 a month, 49 drawn labs; totals 2,670,000 H100e and 4,510 MW."""
    assert initial_labs(base) == BASELINE_N0
    scaled = scale_world(base, 58)
    assert scaled.clouds[0].name == "Azure" and scaled.clouds[0].fleet_h100e == pytest.approx(900_000)
    assert scaled.vendors[0].name == "Nvidia" and scaled.vendors[0].capacity_h100e_month == pytest.approx(300_000)
    assert scaled.demand.initial_usd_month == pytest.approx(1.2e9)
    assert scaled.entry.rate_per_month == pytest.approx(1.0)
    assert scaled.generated_labs.n == 49
    assert sum(c.fleet_h100e for c in scaled.clouds) == pytest.approx(2_670_000)
    assert sum(c.power_mw for c in scaled.clouds) == pytest.approx(4_510)


@pytest.mark.parametrize("n", [9, 58, 100, 1000, 10_000])
def test_only_aggregates_scale(base, n):
    """Scaling to N labs multiplies exactly the numbers above by N/29 and leaves every other number of the
    scenario as it is (shares, prices, rates, per-lab quantities, the named labs and their contracts),
    except the drawn labs (N - 9) and the description. A field scaled by mistake or missed fails here."""
    scaled = scale_world(base, n)
    assert initial_labs(scaled) == n
    assert [c.name for c in scaled.clouds] == [c.name for c in base.clouds]
    assert [v.name for v in scaled.vendors] == [v.name for v in base.vendors]
    before = _leaves(base.model_dump(by_alias=True))
    after = _leaves(scaled.model_dump(by_alias=True))
    assert after.keys() == before.keys()
    for key, value in SCALED_NUMBERS.items():
        assert before[key] == value, key  # the expectation is the scenario as written
        assert after[key] == pytest.approx(value * n / BASELINE_N0, rel=1e-12), key
    assert after["generated_labs.n"] == n - 9
    unchanged = {k for k in before if k not in SCALED_NUMBERS and k not in ("generated_labs.n", "description")}
    assert {k: after[k] for k in unchanged} == {k: before[k] for k in unchanged}


@pytest.mark.parametrize("seed", [1, 2])
def test_scaled_world_keeps_per_lab_quantities(seed):
    """Four times the labs (116) for a year: per active lab, installed compute, lab revenue and investor inflow
    at month 12 stay within 1.4x of the 29-lab world's (they agree to about 15%). Had the scaling missed them,
    unscaled cloud fleets would leave about 0.6x the compute per lab, unscaled cloud power about 0.65x,
    unscaled end-user demand about 0.27x the revenue per lab and unscaled investor inflow about 0.27x the
    inflow per lab. The spot price is not compared: the named labs, the largest buyers, are not copied, so
    the larger world is less tight and its spot price lower (its first-year mean 0.5-0.75x here)."""
    def per_lab(n):
        m = ComputeMarket(scale_world(load_scenario("baseline", months=12), n), rng=seed)
        m.run_model()
        assert len(m.rows) == 12
        row = m.rows[-1]
        return np.array([row["installed_h100e"], row["lab_revenue_usd"], row["investor_inflow_usd"]]) / \
            row["labs_active"]
    ratio = per_lab(116) / per_lab(BASELINE_N0)
    assert np.all((ratio > 1 / 1.4) & (ratio < 1.4)), ratio


def test_named_labs_are_kept(base):
    scaled = scale_world(base, 500)
    assert scaled.labs == base.labs


def test_scaled_scenario_round_trips_through_toml(base, tmp_path):
    """The scaled scenario as written to a run folder loads back to the same scenario."""
    scaled = scale_world(base, 123)
    path = tmp_path / "scenario.toml"
    path.write_text(to_toml(scaled))
    assert load_scenario(path) == scaled


def test_own_size_is_identity(base):
    """N = N0 gives an equal scenario and the same model output, month by month."""
    short = load_scenario("baseline", months=12)
    same = scale_world(short, initial_labs(short))
    assert same == short
    # compared as the CSV text abm run writes (NaN cells compare equal there)
    assert timeseries_text(run_scenario(same).rows) == timeseries_text(run_scenario(short).rows)


@pytest.mark.parametrize("n", [0, 5, 8])
def test_fewer_labs_than_named_is_one_line_error(base, n):
    with pytest.raises(ScenarioError) as err:
        scale_world(base, n)
    msg = str(err.value)
    assert msg == f"--labs {n}: must be at least 9 (the scenario's named labs)"
    assert "\n" not in msg


def test_non_integer_is_an_error(base):
    with pytest.raises(ScenarioError):
        scale_world(base, 10.5)


def test_scaled_world_runs_and_keeps_invariants():
    """200 labs for 24 months: every invariant holds each month and the first month has ~200 labs."""
    scn = scale_world(load_scenario("baseline", months=24), 200)
    model = ComputeMarket(scn)
    found = run_checked(model)
    assert not found, {k: v[:3] for k, v in found.items()}
    assert len(model.rows) == 24
    first = model.rows[0]["labs_active"]
    assert 190 <= first <= 210, first
    assert len(model.clouds) == len(scn.clouds) and len(model.vendors) == len(scn.vendors)
