"""Calibration data, the model's moments, `abm validate`, `abm calibrate` and the historical scenario.

The moment functions are checked on hand-made runs; the new timeseries columns against the run's own records
(runs.csv, agents.csv) recomputed here; the commands end to end in tiny sizes.
"""

from __future__ import annotations

import csv
import math
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from abm.model import ComputeMarket
from abm.scenario import ScenarioError, load_scenario
from analysis.cli import main
from analysis.experiments import calibration as cal
from analysis.experiments.moments import (
    TARGETS_FILE,
    Target,
    TargetError,
    applicable,
    load_targets,
    moment_values,
)

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analysis.cli", *args], capture_output=True, text=True, cwd=ROOT)


def _target(metric: str, date: str = "2024-12", value: float = 1.0, unit: str = "x", **kw) -> Target:
    fields = dict(id=metric, target=metric, metric=metric, date=date, value=value, lo=math.nan, hi=math.nan,
                  unit=unit, fit=True, source="test")
    fields.update(kw)
    return Target(**fields)


# ------------------------------------------------------------------------------------------------ targets
def test_shipped_targets_load_and_only_old_figures_are_fitted():
    targets = load_targets()
    assert len(targets) >= 25
    assert all(int(t.date[:4]) <= 2024 for t in targets if t.fit)
    assert any(not t.fit for t in targets)  # out-of-sample checks exist
    for t in targets:
        if math.isfinite(t.lo):
            assert t.lo <= t.value <= t.hi, t.id


@pytest.mark.parametrize("row, message", [
    ("x,X,installed_h100e,2024-13,1,,,u,yes,s,1", "date"),
    ("x,X,installed_h100e,2025-06,1,,,u,yes,s,1", "2024 or earlier"),
    ("x,X,bogus:installed_h100e,2024-06,1,,,u,yes,s,1", "unknown form"),
    ("x,X,lab:OpenAI,2024-06,1,,,u,yes,s,1", "lab:NAME:FIELD"),
    ("x,X,installed_h100e,2024-06,abc,,,u,yes,s,1", "not a number"),
    ("x,X,installed_h100e,2024-06,1,,,u,maybe,s,1", "yes or no"),
])
def test_bad_targets_file_names_line_and_field(tmp_path, row, message):
    p = tmp_path / "t.csv"
    p.write_text("id,target,metric,date,value,lo,hi,unit,fit,source,row\n" + row + "\n")
    with pytest.raises(TargetError, match=message) as exc:
        load_targets(p)
    assert "t.csv line 2" in str(exc.value)


def test_moment_forms_on_a_hand_made_run():
    """Three months from 2024-10: each metric form read by hand."""
    rows = [{"installed_h100e": 10.0, "n": 0, "spot": 2.0}, {"installed_h100e": 20.0, "n": 1, "spot": ""},
            {"installed_h100e": 40.0, "n": 3, "spot": 4.0}]
    agents = {("A", 2): ("lab", "frontier", 7.0, 5.0), ("C1", 2): ("cloud", "hyperscaler", 30.0, 0.0),
              ("C2", 2): ("cloud", "neocloud", 10.0, 0.0), ("V1", 1): ("vendor", "merchant", 0.0, 3.0),
              ("V1", 2): ("vendor", "merchant", 0.0, 3.0), ("V2", 2): ("vendor", "merchant", 0.0, 2.0),
              ("T", 2): ("vendor", "captive", 0.0, 100.0)}
    ts = [_target("installed_h100e"), _target("mean12:spot"), _target("count12:n"), _target("lab:A:compute_h100e"),
          _target("lab:A:revenue_annual"), _target("lab:Gone:compute_h100e"), _target("cloud:C1:capacity_share"),
          _target("vendor:V1:merchant_revenue_share"), _target("vendor:V1:revenue_share"),
          _target("rank:1:compute_h100e"), _target("rank:2:compute_h100e")]
    got = moment_values(ts, "2024-10", rows, agents)
    assert got["installed_h100e"] == 40.0
    assert got["mean12:spot"] == 3.0  # the empty month is skipped
    assert got["count12:n"] == 3.0  # the month before the start counts as 0
    assert got["lab:A:compute_h100e"] == 7.0 and got["lab:A:revenue_annual"] == 60.0
    assert got["lab:Gone:compute_h100e"] == 0.0
    assert got["cloud:C1:capacity_share"] == 0.75
    assert got["vendor:V1:merchant_revenue_share"] == pytest.approx(6.0 / 8.0)
    assert got["vendor:V1:revenue_share"] == pytest.approx(6.0 / 108.0)  # captive lines' sales count here
    assert got["rank:1:compute_h100e"] == 7.0 and got["rank:2:compute_h100e"] == 0.0  # one lab only


def test_applicable_windows():
    """A 12-month window must lie inside the run (count12 may start the month before); agents must exist."""
    ts = [_target("installed_h100e", "2024-03"), _target("mean12:x", "2024-12"), _target("mean12:x", "2024-11"),
          _target("growth12:x", "2025-01"), _target("growth12:x", "2024-12"), _target("count12:x", "2024-12"),
          _target("lab:B:compute_h100e", "2024-06"), _target("installed_h100e", "2026-01")]
    ids = [(t.metric, t.date) for t in applicable(ts, "2024-01", 24, {"A"})]
    assert ids == [("installed_h100e", "2024-03"), ("mean12:x", "2024-12"), ("growth12:x", "2025-01"),
                   ("count12:x", "2024-12")]


# ------------------------------------------------------------------------------------------------ new columns
def test_new_columns_agree_with_the_runs_own_records(tmp_path):
    """models_above_1e25_cumulative counts runs.csv rows of at least 1e25 physical FLOP; largest_lab_h100e is
    the largest lab's h100e in agents.csv; the world stock never falls and is at least the installed base."""
    out = tmp_path / "r"
    assert main(["run", "historical_2023", "--months", "30", "--out", str(out), "--quiet"]) == 0
    ts = list(csv.DictReader((out / "timeseries.csv").open()))
    runs = list(csv.DictReader((out / "runs.csv").open()))
    agents = list(csv.DictReader((out / "agents.csv").open()))
    for r in ts:
        step = int(r["step"])
        big = sum(1 for x in runs if int(x["step"]) <= step and float(x["physical_flop"]) >= 1e25)
        assert int(r["models_above_1e25_cumulative"]) == big
        labs = [float(a["h100e"]) for a in agents if a["type"] == "lab" and int(a["step"]) == step]
        assert float(r["largest_lab_h100e"]) == pytest.approx(max(labs))
        assert float(r["world_compute_stock_h100e"]) >= float(r["installed_h100e"]) - 1e-6
    stock = [float(r["world_compute_stock_h100e"]) for r in ts]
    assert all(b >= a for a, b in zip(stock, stock[1:], strict=False))
    assert int(ts[-1]["models_above_1e25_cumulative"]) > 0


# ------------------------------------------------------------------------------------------------ historical
def test_historical_scenario_real_agents_and_announced_events():
    cfg = load_scenario("historical_2023")
    assert cfg.run.start == "2023-01" and cfg.run.months >= 48
    names = {lab.name for lab in cfg.labs}
    assert {"OpenAI", "Google DeepMind", "Anthropic", "Meta AI"} <= names
    assert {c.name for c in cfg.clouds} >= {"AWS", "Azure", "Google Cloud", "Oracle", "CoreWeave"}
    assert {(v.name, v.kind) for v in cfg.vendors} >= {("Nvidia", "merchant"), ("AMD", "merchant"),
                                                       ("TPU", "captive"), ("Trainium", "captive")}
    assert all(e.month <= "2024-12" for e in cfg.events)  # nothing announced from 2025 on
    m = ComputeMarket(cfg, overrides={"run.months": 20})
    for _ in range(20):
        m.step()
    founded = [(e["month"], e["agent"]) for e in m.events_log if e["event"] == "lab_entry"]
    assert founded == [("2023-05", "Mistral"), ("2023-07", "xAI"), ("2023-07", "DeepSeek")]
    rounds = [(e["month"], e["value_usd"]) for e in m.events_log if e["event"] == "funding" and e["agent"] == "Anthropic"]
    assert rounds == [("2023-09", 1.25e9), ("2023-10", 5.0e8), ("2024-03", 2.75e9)]
    anthropic = next(lab for lab in m.labs if lab.name == "Anthropic")
    assert anthropic.cloud_equity >= 1.25e9 + 5.0e8 + 2.75e9  # the clouds' rounds, and any deal of its own


def test_event_validation_for_entries_and_rounds():
    base = {"events": [{"month": "2024-03", "type": "funding", "lab": "Nobody", "value_usd": 1e9}]}
    with pytest.raises(ScenarioError, match="Nobody"):
        load_scenario("baseline", overrides=base)
    early = {"events": [{"month": "2024-03", "type": "funding", "lab": "NewCo", "value_usd": 1e9},
                        {"month": "2024-05", "type": "lab_entry",
                         "new_lab": {"name": "NewCo", "tier": "small", "cash_usd": 1e8}}]}
    with pytest.raises(ScenarioError, match="NewCo"):
        load_scenario("baseline", overrides=early)
    dup = {"events": [{"month": "2024-05", "type": "lab_entry",
                       "new_lab": {"name": "OpenAI", "tier": "small", "cash_usd": 1e8}}]}
    with pytest.raises(ScenarioError, match="already exists"):
        load_scenario("baseline", overrides=dup)


# ------------------------------------------------------------------------------------------------ calibrate
def test_set_toml_values_keeps_the_rest():
    text = ('name = "x"\n\n[demand]\n# a comment\ntheta = 10.0  # old\neta = 1.5\n\n[[events]]\nmonth = "2024-01"\n'
            'type = "set"\nkey = "demand.theta"\nvalue = 2.0\n')
    new = cal.set_toml_values(text, {"demand.theta": 7.25, "demand.growth_annual": 3.0, "chips.foundry_growth_annual": 2.5},
                              "fitted")
    data = tomllib.loads(new)
    assert data["demand"] == {"theta": 7.25, "eta": 1.5, "growth_annual": 3.0}
    assert data["chips"] == {"foundry_growth_annual": 2.5}
    assert data["events"][0]["value"] == 2.0  # an array table is never touched
    assert "# a comment" in new and new.count("fitted") == 3


def test_free_parameters_round_trip_and_lie_in_bounds():
    cfg = load_scenario("historical_2023")
    for p in cal.FREE_PARAMS:
        assert p.lo < p.hi and p.why
        for v in (p.lo, (p.lo + p.hi) / 2, p.hi):
            assert p.from_unit(p.to_unit(v)) == pytest.approx(v, rel=1e-9)
        section, name = p.key.split(".")
        assert p.lo <= getattr(getattr(cfg, section), name) <= p.hi, p.key


def test_calibrate_tiny_writes_report_and_scenario(tmp_path):
    """The tiny mode runs the whole pipeline: search, standard errors, the report and the fitted values written
    into a copy of the scenario, which stays a valid scenario with every value inside its bounds."""
    copy = tmp_path / "hist.toml"
    copy.write_text((ROOT / "scenarios" / "historical_2023.toml").read_text())
    report = tmp_path / "CAL.md"
    r = run_cli("calibrate", str(copy), "--tiny", "--report", str(report), "--apply-to", str(copy), "--quiet",
                "--out", str(tmp_path / "fit"))
    assert r.returncode == 0, r.stderr
    text = report.read_text()
    assert "## Free parameters" in text and "## Targets" in text
    for p in cal.FREE_PARAMS:
        assert f"`{p.key}`" in text
    cfg = load_scenario(copy)
    for p in cal.FREE_PARAMS:
        section, name = p.key.split(".")
        assert p.lo <= getattr(getattr(cfg, section), name) <= p.hi
    assert "fitted by abm calibrate" in copy.read_text()


def test_calibrate_and_validate_errors_are_one_line():
    for args in (("calibrate", "no_such_scenario", "--tiny"), ("validate", "no_such_scenario"),
                 ("validate", "baseline", "--targets", "missing.csv"), ("calibrate", "--budget", "-1")):
        r = run_cli(*args)
        assert r.returncode == 2, args
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr


def test_validate_writes_table_for_the_targets_in_range(tmp_path):
    out = tmp_path / "v"
    r = run_cli("validate", "baseline", "--seeds", "2", "--months", "12", "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader((out / "validation.csv").open()))
    assert rows and all(x["date"] <= "2024-12" and x["date"] >= "2024-01" for x in rows)
    assert {x["inside"] for x in rows} <= {"yes", "no"}
    for x in rows:
        lo, hi, v = float(x["model_p5"]), float(x["model_p95"]), float(x["data_value"])
        assert lo <= float(x["model_mean"]) <= hi
        assert (x["inside"] == "yes") == (lo <= v <= hi)
    md = (out / "validation.md").read_text()
    assert "Inside:" in md
    assert "## The model's 2025" not in md  # a 12-month baseline run ends in 2024


def test_validate_reports_the_models_own_2025(tmp_path):
    out = tmp_path / "v"
    r = run_cli("validate", "historical_2023", "--seeds", "2", "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    md = (out / "validation.md").read_text()
    assert "## The model's 2025" in md
    for label in ("Largest training run to date", "Compute of the 5th largest lab", "Cloud HHI",
                  "Nvidia's share of chip sales", "Spot price", "Models of at least 1e25 FLOP"):
        assert label in md.split("## The model's 2025")[1], label


def test_targets_file_is_shipped_with_the_package():
    assert TARGETS_FILE.is_file() and TARGETS_FILE.parent.name == "data"


def test_target_sigma_rules():
    """Its own 90% range when given (floored at 10%), else 0.25; counts never tighter than Poisson."""
    ranged = _target("x", value=1.0, lo=math.exp(-0.329), hi=math.exp(0.329))
    assert cal.target_sigma(ranged) == pytest.approx(0.2, rel=1e-3)
    tight = _target("x", value=1.0, lo=0.99, hi=1.01)
    assert cal.target_sigma(tight) == cal.MIN_LOG_SIGMA
    assert cal.target_sigma(_target("x")) == cal.DEFAULT_LOG_SIGMA
    count = _target("n", value=14.0, lo=13.0, hi=14.0, unit="models")
    assert cal.target_sigma(count) == pytest.approx(1 / math.sqrt(15))
    assert cal.log_moment(0.0, count) == 0.0 and cal.log_moment(3.0, count) == pytest.approx(math.log(4))
