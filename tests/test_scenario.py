"""Tests of abm.scenario: the shipped scenarios, overrides, one-line errors, TOML round trip, properties."""

from __future__ import annotations

import math
import string

import pytest
from conftest import check_invariants
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from abm.metrics import NULLABLE
from abm.model import ComputeMarket
from abm.scenario import (
    Scenario,
    ScenarioError,
    _valid_keys,
    available_scenarios,
    load_scenario,
    to_toml,
)

VALID_KEYS = set(_valid_keys(Scenario))


def _error(fn) -> str:
    """Run ``fn``; it must raise ScenarioError with a one-line message, which is returned."""
    with pytest.raises(ScenarioError) as exc:
        fn()
    msg = str(exc.value)
    assert msg and "\n" not in msg and "\r" not in msg, repr(msg)
    return msg


# ---------------------------------------------------------------------------------- shipped scenarios


def test_shipped_scenarios_listed():
    assert {"baseline", "mega_deal"} <= set(available_scenarios())


def test_baseline_validates():
    scn = load_scenario("baseline")
    assert isinstance(scn, Scenario)
    assert scn.name == "baseline"
    assert scn.run.start == "2024-01" and scn.run.months == 120 and scn.run.seed == 1
    assert [c.name for c in scn.clouds] == ["Azure", "AWS", "Google Cloud", "CoreWeave", "Lambda", "Alibaba Cloud"]
    assert {v.name for v in scn.vendors} == {"Nvidia", "AMD", "TPU", "Trainium", "Maia"}
    assert len(scn.labs) == 9 and scn.generated_labs.n == 20
    assert scn.events == []
    owners = {v.name: v.owner for v in scn.vendors if v.kind == "captive"}
    assert owners == {"TPU": "Google Cloud", "Trainium": "AWS", "Maia": "Azure"}


def test_mega_deal_extends_baseline():
    base = load_scenario("baseline")
    mega = load_scenario("mega_deal")
    assert mega.name == "mega_deal" and mega.description != base.description
    assert [c.model_dump() for c in mega.clouds] == [c.model_dump() for c in base.clouds]
    assert [v.model_dump() for v in mega.vendors] == [v.model_dump() for v in base.vendors]
    assert [lab.model_dump() for lab in mega.labs] == [lab.model_dump() for lab in base.labs]
    # Everything but name, description, extends and events is inherited unchanged.
    skip = {"name", "description", "extends", "events"}
    assert {k: v for k, v in mega.model_dump().items() if k not in skip} == \
        {k: v for k, v in base.model_dump().items() if k not in skip}
    assert len(mega.events) == 1
    ev = mega.events[0]
    assert (ev.type, ev.month, ev.lab, ev.cloud) == ("mega_deal", "2026-01", "Anthropic", "AWS")
    assert (ev.value_usd, ev.term_months, ev.gw, ev.chip_kind, ev.ramp_months, ev.exclusive) == \
        (1.1e11, 120, 5.0, "captive", 48, False)


@pytest.mark.parametrize("alpha,beta,gamma", [(0.5, 0.5, 0.25), (0.3, 0.6, 0.2), (0.6, 0.3, 0.2), (1.0, 1.0, 0.5)])
def test_gamma_follows_alpha_and_beta(alpha, beta, gamma):
    """Unset gamma is the compute exponent of the Chinchilla frontier, alpha*beta/(alpha+beta), by hand:
    0.25/1 = 0.25, 0.18/0.9 = 0.2 in either order, 1/2 = 0.5. It is symmetric in alpha and beta."""
    scn = load_scenario("baseline", overrides={"scaling.alpha": alpha, "scaling.beta": beta})
    assert scn.scaling.gamma is None
    assert scn.gamma == pytest.approx(gamma, abs=1e-12)


def test_gamma_defaults_and_override():
    """Baseline (Besiroglu et al. 2024): 0.3478 x 0.3658 = 0.12722524, / 0.7136 = 0.1782865. An explicit
    scaling.gamma wins over alpha and beta, also when they are moved in the same overrides."""
    scn = load_scenario("baseline")
    assert scn.scaling.gamma is None
    assert scn.gamma == pytest.approx(0.1782865, abs=1e-7)
    assert load_scenario("baseline", overrides=["scaling.gamma=0.3"]).gamma == 0.3
    both = load_scenario("baseline", overrides={"scaling.alpha": 0.5, "scaling.beta": 0.5, "scaling.gamma": 0.3})
    assert both.gamma == 0.3


def test_default_gamma_puts_the_model_on_the_frontier():
    """The model takes gamma from the scenario and G from the economics; unset, they must describe the same
    frontier. With A = B = 1 and alpha = beta = 0.5, N^-1/2 + D^-1/2 under ND = C/6 is least at N = D
    (AM-GM), so R(C) = 2 (C/6)^-1/4: 2e-6 at C = 6e24 and 2e-7 at C = 6e28."""
    m = ComputeMarket("baseline", overrides={"scaling.A": 1.0, "scaling.B": 1.0, "scaling.alpha": 0.5,
                                             "scaling.beta": 0.5})
    assert m.g_coef * 6e24 ** -m.gamma == pytest.approx(2e-6, rel=1e-9)
    assert m.g_coef * 6e28 ** -m.gamma == pytest.approx(2e-7, rel=1e-9)


def test_model_uses_scenario_gamma():
    assert ComputeMarket("baseline", overrides={"scaling.gamma": 0.3}).gamma == 0.3
    assert ComputeMarket("baseline").gamma == load_scenario("baseline").gamma


# ------------------------------------------------------------------------------------------ overrides


def test_override_list_and_dict():
    assert load_scenario("baseline", overrides=["capital.kappa=2.5"]).capital.kappa == 2.5
    assert load_scenario("baseline", overrides={"capital.kappa": 2.5}).capital.kappa == 2.5
    scn = load_scenario("baseline", overrides=["run.months = 36", "policy.exclusivity_allowed=false",
                                               "chips.allocation_rule=priority"])
    assert scn.run.months == 36 and scn.policy.exclusivity_allowed is False
    assert scn.chips.allocation_rule == "priority"
    # Overrides leave everything else alone.
    base = load_scenario("baseline").model_dump()
    over = load_scenario("baseline", overrides=["capital.kappa=2.5"]).model_dump()
    base["capital"].pop("kappa")
    over["capital"].pop("kappa")
    assert base == over


def test_override_applies_to_extended_scenario():
    scn = load_scenario("mega_deal", overrides=["capital.kappa=0.5"])
    assert scn.capital.kappa == 0.5 and len(scn.events) == 1


def test_override_typo_suggests_nearest_key():
    msg = _error(lambda: load_scenario("baseline", overrides=["capital.kapa=2"]))
    assert "capital.kapa" in msg
    assert "capital.kappa" in msg


def test_override_negative_value():
    msg = _error(lambda: load_scenario("baseline", overrides=["capital.kappa=-1"]))
    assert "capital.kappa" in msg


def test_override_above_bound():
    msg = _error(lambda: load_scenario("baseline", overrides=["capital.kappa=11"]))
    assert "capital.kappa" in msg


def test_override_without_equals():
    msg = _error(lambda: load_scenario("baseline", overrides=["capital.kappa"]))
    assert "capital.kappa" in msg


def test_override_wrong_type():
    msg = _error(lambda: load_scenario("baseline", overrides=["capital.kappa=lots"]))
    assert "capital.kappa" in msg
    msg = _error(lambda: load_scenario("baseline", overrides={"capital": 3}))
    assert "capital" in msg


def test_model_keyword_typo_is_scenario_error():
    msg = _error(lambda: ComputeMarket("baseline", capital__kapa=2.0))
    assert "capital.kappa" in msg


@pytest.mark.parametrize("key", ["capital.inflow_usd_month", "demand.theta", "demand.initial_usd_month",
                                 "entry.rate_per_month"])
@pytest.mark.parametrize("value", ["inf", "nan"])
def test_override_non_finite_rejected(key, value):
    """Every numeric field has bounds: inf and nan are user mistakes, not values the model can run with.

    The schema accepts ``inf`` (a TOML float) for fields bounded only below; the model then fails in month 0
    with a bare ValueError (capital.inflow_usd_month: "transfer of inf"; demand.initial_usd_month: "bad
    transfer amounts"; entry.rate_per_month: numpy "lam value too large") or, for demand.theta, runs with
    NaN in the non-nullable columns frontier_run_cost_usd and marginal_capability_per_usd.
    """
    msg = _error(lambda: load_scenario("baseline", overrides=[f"{key}={value}"]))
    assert key in msg


@pytest.mark.parametrize("overrides", [
    {"entry.efficiency_fraction_lo": 0.95},  # hi defaults to 0.9
    {"generated_labs.efficiency_lo": 0.95, "generated_labs.efficiency_hi": 0.5},
], ids=["entry_fraction", "generated_efficiency"])
def test_inverted_range_rejected(overrides):
    """A lower bound above its upper bound is a user mistake for load_scenario to report in one line.

    Both pass validation today; the model then fails with numpy's bare ValueError "high - low < 0" from
    rng.uniform(lo, hi): at construction for generated_labs, at the first entry attempt (step 0) for entry.
    """
    key = next(iter(overrides))
    msg = _error(lambda: load_scenario("baseline", overrides=overrides))
    assert key.split(".")[-1] in msg


# -------------------------------------------------------------------------------------- scenario files


def test_file_unknown_key(tmp_path):
    p = tmp_path / "typo.toml"
    p.write_text("[capital]\nkapa = 2\n")
    msg = _error(lambda: load_scenario(p))
    assert "capital.kapa" in msg
    assert "'kappa'" in msg


def test_file_unknown_key_in_extending_file(tmp_path):
    p = tmp_path / "ext.toml"
    p.write_text('extends = "baseline"\n[capital]\nkapa = 2\n')
    msg = _error(lambda: load_scenario(p))
    assert "capital.kapa" in msg and "kappa" in msg


def test_file_extends_baseline(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text('extends = "baseline"\n[capital]\nkappa = 3.0\n')
    scn = load_scenario(p)
    assert scn.name == "mine"
    assert scn.capital.kappa == 3.0
    assert [c.name for c in scn.clouds] == [c.name for c in load_scenario("baseline").clouds]


def test_file_broken_toml(tmp_path):
    p = tmp_path / "broken.toml"
    p.write_text("[capital\nkappa = 2\n")
    msg = _error(lambda: load_scenario(p))
    assert "broken.toml" in msg


def test_file_missing(tmp_path):
    p = tmp_path / "nope.toml"
    msg = _error(lambda: load_scenario(p))
    assert "nope.toml" in msg


def test_file_bad_cross_reference(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('extends = "baseline"\n[[events]]\nmonth = "2026-01"\ntype = "mega_deal"\nlab = "Anthropic"\n'
                 'cloud = "Oracle"\nvalue_usd = 1e9\nterm_months = 12\ngw = 1.0\nchip_kind = "merchant"\n')
    msg = _error(lambda: load_scenario(p))
    assert "Oracle" in msg


def test_extends_cycle(tmp_path):
    (tmp_path / "a.toml").write_text(f'extends = "{tmp_path / "b.toml"}"\n')
    (tmp_path / "b.toml").write_text(f'extends = "{tmp_path / "a.toml"}"\n')
    _error(lambda: load_scenario(tmp_path / "a.toml"))


def test_unknown_scenario_name_lists_available():
    msg = _error(lambda: load_scenario("no_such_scenario"))
    assert "no_such_scenario" in msg
    for name in available_scenarios():
        assert name in msg


def test_misspelt_scenario_name_suggests():
    msg = _error(lambda: load_scenario("basline"))
    assert "'baseline'" in msg


# ------------------------------------------------------------------------------------------ round trip


def _dump_resolved(scn: Scenario) -> dict:
    """model_dump without ``extends``: the name of the parent a scenario was built from, not a parameter."""
    d = scn.model_dump()
    d.pop("extends")
    return d


@pytest.mark.parametrize("name", ["baseline", "mega_deal"])
def test_to_toml_round_trip_parameters(tmp_path, name):
    """Every parameter, lab, cloud, vendor and event survives the round trip; events are not re-inherited."""
    scn = load_scenario(name)
    p = tmp_path / f"{name}_resolved.toml"
    p.write_text(to_toml(scn))
    back = load_scenario(p)
    assert _dump_resolved(back) == _dump_resolved(scn)
    assert len(back.events) == len(scn.events)
    assert back.gamma == scn.gamma


@pytest.mark.parametrize("name", ["baseline", "mega_deal"])
def test_to_toml_round_trip(tmp_path, name):
    """to_toml promises a file that load_scenario reads back "to the same object": model_dump equal.

    Fails for mega_deal: to_toml drops ``extends`` (it must, or the parent's events would be merged in
    twice), but the loaded mega_deal keeps ``extends='baseline'``, so the read-back object differs in it.
    """
    scn = load_scenario(name)
    p = tmp_path / f"{name}_resolved.toml"
    p.write_text(to_toml(scn))
    assert load_scenario(p).model_dump() == scn.model_dump()


def test_to_toml_round_trip_with_overrides(tmp_path):
    scn = load_scenario("mega_deal", overrides={"scaling.gamma": 0.2, "capital.inflow_usd_month": 1.234567e-7,
                                                "description": 'quotes " and \\ and \u00fc\ttab',
                                                "run.seed": 99})
    p = tmp_path / "x.toml"
    p.write_text(to_toml(scn), encoding="utf-8")
    back = load_scenario(p)
    assert _dump_resolved(back) == _dump_resolved(scn)
    assert back.description == scn.description and back.gamma == 0.2


# ------------------------------------------------------------------------------------ property-based

# Numeric parameters and the range over which a model must run cleanly.
VALID_RANGES = {
    "capital.kappa": (0.0, 5.0),
    "demand.theta": (0.0, 6.0),
    "scaling.gamma": (0.05, 0.5),
    "entry.rate_per_month": (0.0, 3.0),
    "capital.inflow_usd_month": (0.0, 1e10),
}
# Fields whose schema requires a value >= 0 (or > 0).
NON_NEGATIVE = ["capital.kappa", "demand.theta", "entry.rate_per_month", "capital.inflow_usd_month",
                "scaling.gamma", "contracting.lgd", "chips.delivery_lag_months", "background.volume_h100e",
                "efficiency.diffusion", "cloud_params.energy_price_usd_kwh", "training.wind_down_cash_usd"]
NUMERIC = NON_NEGATIVE + ["demand.adoption_initial", "run.months", "run.seed", "entry.seed_capital_median_usd"]


@st.composite
def valid_overrides(draw):
    keys = draw(st.lists(st.sampled_from(sorted(VALID_RANGES)), min_size=1, max_size=len(VALID_RANGES),
                         unique=True))
    return {k: draw(st.floats(*VALID_RANGES[k], allow_nan=False, allow_infinity=False)) for k in keys}


@settings(max_examples=25, deadline=None)
@given(over=valid_overrides(), seed=st.integers(0, 2**31 - 1))
def test_valid_overrides_run_cleanly(over, seed):
    model = ComputeMarket("baseline", overrides={**over, "run.months": 12}, rng=seed)
    for k, v in over.items():
        section, field = k.split(".")
        assert getattr(getattr(model.cfg, section), field) == v
    if "scaling.gamma" in over:
        assert model.gamma == over["scaling.gamma"]
    while model.running:
        model.step()
        bad = check_invariants(model)
        assert not bad, bad[:5]
    assert model.t == 12 and len(model.rows) == 12
    for row in model.rows:
        for k, v in row.items():
            if isinstance(v, float) and k not in NULLABLE:
                assert math.isfinite(v), (k, v)


@settings(max_examples=25, deadline=None)
@given(over=valid_overrides())
def test_valid_overrides_round_trip(over):
    import tempfile
    from pathlib import Path

    scn = load_scenario("baseline", overrides=over)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "scn.toml"
        p.write_text(to_toml(scn), encoding="utf-8")
        assert load_scenario(p).model_dump() == scn.model_dump()


def _assert_clean_scenario_error(overrides, key: str | None = None) -> None:
    try:
        load_scenario("baseline", overrides=overrides)
    except ScenarioError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg and "\r" not in msg, repr(msg)
        if key is not None:
            assert key in msg, (key, msg)
    except Exception as exc:  # any other exception type is the failure under test
        pytest.fail(f"{type(exc).__name__} instead of ScenarioError for {overrides!r}: {exc}")
    else:
        pytest.fail(f"no error for {overrides!r}")


@settings(max_examples=25, deadline=None)
@given(key=st.sampled_from(NON_NEGATIVE),
       value=st.floats(max_value=-1e-12, allow_nan=False, allow_infinity=False) | st.integers(max_value=-1),
       as_list=st.booleans())
def test_negative_values_rejected(key, value, as_list):
    overrides = [f"{key}={value!r}"] if as_list else {key: value}
    _assert_clean_scenario_error(overrides, key)


def _not_a_number(s: str) -> bool:
    try:
        float(s.strip())
    except ValueError:
        return True
    return False


@settings(max_examples=25, deadline=None)
@given(key=st.sampled_from(NUMERIC), value=st.text(min_size=1, max_size=12).filter(_not_a_number))
def test_strings_for_numbers_rejected(key, value):
    _assert_clean_scenario_error({key: value}, key)


@settings(max_examples=25, deadline=None)
@given(key=st.lists(st.text(string.ascii_letters + "_", min_size=1, max_size=10), min_size=1, max_size=3)
       .map(".".join),
       value=st.integers() | st.floats(allow_nan=False) | st.text(max_size=5) | st.booleans(),
       as_list=st.booleans())
def test_unknown_keys_rejected(key, value, as_list):
    assume(key not in VALID_KEYS)
    overrides = [f"{key}={value!r}"] if as_list and not isinstance(value, str) else {key: value}
    _assert_clean_scenario_error(overrides, key)


def test_extends_merges_named_lists(tmp_path):
    """A child scenario updates a named cloud/lab in place and appends new ones; events accumulate."""
    child = tmp_path / "child.toml"
    child.write_text('extends = "mega_deal"\n'
                     '[[clouds]]\nname = "Lambda"\ncash_usd = 1.0e9\n'
                     '[[clouds]]\nname = "Nebius"\nkind = "neocloud"\ncash_usd = 1.0e9\nfleet_h100e = 1000\n'
                     'power_mw = 2\n'
                     '[[events]]\nmonth = "2027-01"\ntype = "foundry_shock"\nshare = 0.2\nmonths = 3\n')
    scn = load_scenario(child)
    base = load_scenario("baseline")
    names = [c.name for c in scn.clouds]
    assert names == [c.name for c in base.clouds] + ["Nebius"]
    lam = next(c for c in scn.clouds if c.name == "Lambda")
    assert lam.cash_usd == 1.0e9 and lam.fleet_h100e == next(c for c in base.clouds if c.name == "Lambda").fleet_h100e
    assert [e.type for e in scn.events] == ["mega_deal", "foundry_shock"]
    assert scn.name == "child"
