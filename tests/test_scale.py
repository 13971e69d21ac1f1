"""Scaling the world to N labs: proportions, identity at the scenario's own size, errors, a scaled run."""

from __future__ import annotations

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


def _totals(scn) -> dict[str, float]:
    return {
        "fleet": sum(c.fleet_h100e for c in scn.clouds),
        "power": sum(c.power_mw for c in scn.clouds),
        "cloud_cash": sum(c.cash_usd for c in scn.clouds),
        "vendor_capacity": sum(v.capacity_h100e_month for v in scn.vendors),
        "demand": scn.demand.initial_usd_month,
        "background": scn.background.volume_h100e,
        "foundry": scn.chips.foundry_capacity_h100e_month,
        "inflow": scn.capital.inflow_usd_month,
        "entry_rate": scn.entry.rate_per_month,
    }


@pytest.mark.parametrize("n", [9, 100, 1000, 10_000])
def test_aggregates_scale_in_proportion(base, n):
    """Supply (clouds, vendors) and market aggregates scale by s = N / N0; the firms stay the same."""
    scaled = scale_world(base, n)
    s = n / initial_labs(base)
    before, after = _totals(base), _totals(scaled)
    for key in before:
        assert after[key] == pytest.approx(before[key] * s, rel=1e-12), key
    assert initial_labs(scaled) == n
    assert scaled.generated_labs.n == n - len(base.labs)
    assert [c.name for c in scaled.clouds] == [c.name for c in base.clouds]
    assert [v.name for v in scaled.vendors] == [v.name for v in base.vendors]
    # shares and per-lab quantities are unchanged
    assert [v.foundry_share for v in scaled.vendors] == [v.foundry_share for v in base.vendors]
    assert [c.captive_share for c in scaled.clouds] == [c.captive_share for c in base.clouds]
    assert scaled.entry.seed_capital_median_usd == base.entry.seed_capital_median_usd
    assert scaled.generated_labs.cash_median_usd == base.generated_labs.cash_median_usd
    assert scaled.contracting.min_deal_h100e == base.contracting.min_deal_h100e
    assert scaled.events == base.events


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
