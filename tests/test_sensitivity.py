"""Global sensitivity analysis: known answers on the Ishigami function through the same plumbing as the model,
a tiny Morris screening of the model itself (delta outputs included), resuming, byte-identical outputs for 1
or 2 workers, and one-line errors for bad bounds, outputs and arguments."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from abm.scenario import load_scenario, to_toml
from analysis.experiments.ensemble import EnsembleError, child_seeds, parse_timeseries, run_seed
from analysis.experiments.sensitivity import (
    BOUNDS_FILE,
    SensitivityError,
    figure_name,
    ishigami,
    load_bounds,
    model_point,
    parse_outputs,
    point_overrides,
    sample,
)
from analysis.experiments.sensitivity import run_sensitivity as _run_sensitivity
from analysis.views.sensitivity_figures import draw_figures


def run_sensitivity(*args, **kw):
    """The engine with the figures drawn, as ``abm sensitivity`` runs it."""
    return _run_sensitivity(*args, draw=draw_figures, **kw)

PI = math.pi
OUTPUT_FILES = ("samples.csv", "sensitivity.csv", "sensitivity.md", "study.json")
TINY_OUTPUTS = ["lab_hhi_compute", "entry_barrier_usd", "delta:mega_deal:lab_hhi_compute"]
TINY_BOUNDS = """
[[param]]
name = "demand.theta"
lo = 5.3
hi = 7.868
why = "calibrated ± 2 SE"

[[param]]
name = "capital.kappa"
lo = 0.75
hi = 3.0
log = true

[[param]]
name = "chips.allocation_rule"
choices = ["pro_rata", "priority"]
"""


def ishigami_bounds(folder: Path) -> Path:
    path = folder / "ishigami.toml"
    path.write_text("".join(f'[[param]]\nname = "x{i}"\nlo = {-PI!r}\nhi = {PI!r}\nwhy = "Ishigami"\n\n'
                            for i in (1, 2, 3)), encoding="utf-8")
    return path


def files(out: Path) -> dict[str, bytes]:
    """Every output file of a study (not results.jsonl, whose line order follows completion)."""
    names = [*OUTPUT_FILES, *(str(p.relative_to(out)) for p in sorted((out / "figures").glob("*.png")))]
    return {n: (out / n).read_bytes() for n in names}


def table(out: Path) -> list[dict]:
    with open(out / "sensitivity.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def by_param(rows: list[dict], output: str) -> dict[str, dict]:
    return {r["parameter"]: r for r in rows if r["output"] == output}


def drop_results(out: Path, keep: int) -> int:
    """Keep the first ``keep`` lines of results.jsonl (an interrupted study); returns how many were cut."""
    path = out / "results.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:keep]), encoding="utf-8")
    return len(lines) - keep


def nan_ishigami(row: list[float]) -> dict[str, float]:
    """Ishigami, undefined where x1 > 2.5 (a metric that some points cannot produce)."""
    return {"y": math.nan if row[0] > 2.5 else ishigami(row)["y"]}


# -------------------------------------------------------------------------------------------- known answers
@pytest.mark.slow
def test_ishigami_sobol_known_answer(tmp_path):
    res = run_sensitivity(None, ["y"], method="sobol", n=1024, bounds=ishigami_bounds(tmp_path),
                          out=tmp_path / "sobol", progress=False, evaluator=ishigami)
    rows = by_param(table(tmp_path / "sobol"), "y")
    # Analytical indices of Ishigami (a = 7, b = 0.1).
    for name, s1, st in (("x1", 0.314, 0.558), ("x2", 0.442, 0.442), ("x3", 0.0, 0.244)):
        assert float(rows[name]["S1"]) == pytest.approx(s1, abs=0.05), name
        assert float(rows[name]["ST"]) == pytest.approx(st, abs=0.05), name
        assert float(rows[name]["S1_conf"]) > 0 and float(rows[name]["ST_conf"]) > 0
    assert res.points == 1024 * 5
    assert res.top("y") == ["x1", "x2", "x3"]  # by ST
    assert [r["parameter"] for r in res.rows] == ["x1", "x2", "x3"]


@pytest.mark.slow
def test_ishigami_morris_known_answer_and_workers(tmp_path):
    bounds = ishigami_bounds(tmp_path)
    out = tmp_path / "morris"
    run_sensitivity(None, ["y"], method="morris", n=200, bounds=bounds, out=out, progress=False,
                    evaluator=ishigami)
    rows = by_param(table(out), "y")
    mu_star = {k: float(r["mu_star"]) for k, r in rows.items()}
    mu = {k: float(r["mu"]) for k, r in rows.items()}
    # On the 4-level grid a step moves x by 2/3 of [-pi, pi]: x2 between -pi and pi/3 or -pi/3 and pi, where
    # 7 sin^2 differs by 7 * 0.75, so every effect of x2 is +-5.25 / (2/3) = 7.875 exactly.
    assert mu_star["x2"] == pytest.approx(7.875, abs=1e-9)
    # x1's steps raise sin(x1) by 0.866 whichever way, times (1 + 0.1 x3^4) with x3 at +-pi or +-pi/3: all
    # effects are positive (mu = mu*) and average 1.299 * 5.93 = 7.70.
    assert mu["x1"] == pytest.approx(mu_star["x1"], rel=1e-12)
    assert mu_star["x1"] == pytest.approx(7.70, abs=1.0)
    # x3 acts only with sin(x1), whose sign varies: its signed effects cancel.
    assert abs(mu["x3"]) < 0.35 * mu_star["x3"]
    assert float(rows["x3"]["sigma"]) > mu_star["x3"]
    first = files(out)
    assert (out / "figures" / figure_name("y")).is_file()

    shutil.rmtree(out)  # the same study again, from scratch, on two processes
    res = run_sensitivity(None, ["y"], method="morris", n=200, bounds=bounds, out=out, progress=False,
                          executor_kwargs={"workers": 2}, evaluator=ishigami)
    assert res.computed == 800
    assert files(out) == first


def test_nan_points_leave_out_their_blocks(tmp_path):
    res = run_sensitivity(None, ["y"], method="morris", n=40, bounds=ishigami_bounds(tmp_path),
                          out=tmp_path / "o", progress=False, evaluator=nan_ishigami)
    nan_points, dropped = res.dropped["y"]
    samples = list(csv.DictReader(open(tmp_path / "o" / "samples.csv", encoding="utf-8")))
    assert nan_points == sum(1 for r in samples if r["y"] == "") > 0
    assert 0 < dropped < 40
    assert all(math.isfinite(r["mu_star"]) for r in res.rows)
    md = (tmp_path / "o" / "sensitivity.md").read_text(encoding="utf-8")
    assert f"Warning: {nan_points} of {res.points} points gave NaN" in md
    assert f"({40 - dropped} of 40 remain)" in md


# -------------------------------------------------------------------------------------------- the model
def test_a_model_point_is_the_seed_mean_at_month_h():
    """model_point agrees with ``abm ensemble``'s runs: month H is row H - 1, the mean is over the given
    seeds, and a delta output is the other scenario's value minus this one's, seed by seed."""
    over = ["demand.theta=7.5", "chips.allocation_rule=priority"]
    base = to_toml(load_scenario("baseline", overrides=over))
    other = to_toml(load_scenario("antitrust", overrides=over))  # differs from the baseline from month 1
    seeds = child_seeds(5, 2)
    got = model_point(to_toml(load_scenario("baseline")), {"antitrust": to_toml(load_scenario("antitrust"))},
                      over, seeds, 4, ["lab_hhi_compute", "delta:antitrust:lab_hhi_compute"], [2, 4])

    def value(text: str, seed: int, h: int) -> float:
        header, _, _, vals = parse_timeseries(run_seed(text, seed, 4))
        return float(vals[h - 1, header.index("lab_hhi_compute") - 2])

    for h in (2, 4):
        mean = sum(value(base, s, h) for s in seeds) / 2
        assert got[f"lab_hhi_compute@{h}"] == pytest.approx(mean, rel=1e-12)
        d = [value(other, s, h) - value(base, s, h) for s in seeds]
        assert got[f"delta:antitrust:lab_hhi_compute@{h}"] == pytest.approx(sum(d) / 2, rel=1e-12)
    assert got["delta:antitrust:lab_hhi_compute@4"] != 0
    assert len(got) == 4


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny Morris screening of the baseline: 3 parameters (one a switch), 2 trajectories, 1 seed, 6
    months."""
    d = tmp_path_factory.mktemp("sens")
    bounds = d / "bounds.toml"
    bounds.write_text(TINY_BOUNDS, encoding="utf-8")
    out = d / "tiny"
    res = run_sensitivity("baseline", TINY_OUTPUTS, method="morris", n=2, seeds=1, months=6, horizons=[3, 6],
                          bounds=bounds, out=out, progress=False)
    return res, out, bounds


def test_tiny_morris_on_the_model(tiny):
    res, out, _ = tiny
    outputs = [f"{m}@{h}" for m in TINY_OUTPUTS for h in (3, 6)]
    assert res.outputs == outputs
    assert res.points == 2 * 4 and res.model_runs == 8 * 1 * 2  # the baseline and mega_deal at every point
    for o in outputs:
        rows = [r for r in res.rows if r["output"] == o]
        assert [r["parameter"] for r in rows] != [] and len(rows) == 3
        assert all(math.isfinite(r["mu_star"]) and math.isfinite(r["sigma"]) for r in rows), o
        assert (out / "figures" / figure_name(o)).is_file()
    assert figure_name("delta:mega_deal:lab_hhi_compute@6") == (
        "sensitivity-delta_mega_deal_lab_hhi_compute_6.png")
    for name in OUTPUT_FILES:
        assert (out / name).is_file()
    samples = list(csv.DictReader(open(out / "samples.csv", encoding="utf-8")))
    assert len(samples) == 8
    assert {r["chips.allocation_rule"] for r in samples} <= {"pro_rata", "priority"}
    assert all(5.3 <= float(r["demand.theta"]) <= 7.868 for r in samples)
    assert all(math.isfinite(float(r["delta:mega_deal:lab_hhi_compute@6"])) for r in samples)
    info = json.loads((out / "study.json").read_text(encoding="utf-8"))
    for key in ("scenario", "scenario_sha256", "others", "outputs", "method", "n", "seeds", "master_seed",
                "months", "horizons", "overrides", "bounds"):
        assert key in info, key
    assert set(info["others"]) == {"mega_deal"}
    assert [b["name"] for b in info["bounds"]] == ["demand.theta", "capital.kappa", "chips.allocation_rule"]
    md = (out / "sensitivity.md").read_text(encoding="utf-8")
    assert "abm sensitivity baseline --outputs" in md and "16 model runs" in md
    assert md.count("Top ") == len(outputs)
    assert "lab_hhi_compute@6" in res.summary()


def test_resume_computes_only_the_missing_points(tiny):
    res, out, bounds = tiny
    first = files(out)
    cut = drop_results(out, keep=5)
    again = run_sensitivity("baseline", TINY_OUTPUTS, method="morris", n=2, seeds=1, months=6,
                            horizons=[3, 6], bounds=bounds, out=out, progress=False)
    assert again.computed == cut == 3
    assert files(out) == first
    with pytest.raises(EnsembleError, match="other arguments"):
        run_sensitivity("baseline", TINY_OUTPUTS, method="morris", n=2, seeds=2, months=6, horizons=[3, 6],
                        bounds=bounds, out=out, progress=False)


def test_other_arguments_are_refused_unless_forced(tmp_path):
    bounds = ishigami_bounds(tmp_path)
    out = tmp_path / "o"
    kw = {"bounds": bounds, "out": out, "progress": False, "evaluator": ishigami}
    run_sensitivity(None, ["y"], method="morris", n=4, **kw)
    assert drop_results(out, keep=10) == 6
    assert run_sensitivity(None, ["y"], method="morris", n=4, **kw).computed == 6
    with pytest.raises(EnsembleError, match=r"\(n: 4 there, 6 now\)"):
        run_sensitivity(None, ["y"], method="morris", n=6, **kw)
    with pytest.raises(EnsembleError, match="master_seed"):
        run_sensitivity(None, ["y"], method="morris", n=4, master_seed=7, **kw)
    assert run_sensitivity(None, ["y"], method="morris", n=6, force=True, **kw).computed == 6 * 4


# -------------------------------------------------------------------------------------------- design
def test_sample_maps_the_unit_cube_to_each_parameter(tmp_path):
    path = tmp_path / "b.toml"
    path.write_text('[[param]]\nname = "demand.theta"\nlo = 4.0\nhi = 8.0\n\n'
                    '[[param]]\nname = "capital.inflow_usd_month"\nlo = 1e9\nhi = 4e9\nlog = true\n\n'
                    '[[param]]\nname = "contracting.spot_exclusive"\nchoices = [false, true]\n\n'
                    '[[param]]\nname = "chips.captive_growth"\nchoices = ["saving", "need", "frozen"]\n',
                    encoding="utf-8")
    params = load_bounds(path, "baseline")
    rows = sample(params, "morris", 20, seed=3)
    assert rows.shape == (20 * 5, 4)
    assert np.array_equal(rows, sample(params, "morris", 20, seed=3))
    # Morris's 4 levels: linear in theta, geometric (uniform in log) in the inflow, every choice reached.
    assert set(np.round(rows[:, 0], 9)) == {4.0, 5.333333333, 6.666666667, 8.0}
    geometric = [1.0, round(4 ** (1 / 3), 6), round(4 ** (2 / 3), 6), 4.0]
    assert sorted(set(np.round(rows[:, 1] / 1e9, 6))) == geometric
    assert set(rows[:, 2]) == {0.0, 1.0} and set(rows[:, 3]) == {0.0, 1.0, 2.0}
    sob = sample(params, "sobol", 16, seed=3)
    assert sob.shape == (16 * 6, 4) and (sob[:, 1] >= 1e9).all() and (sob[:, 1] <= 4e9).all()
    over = point_overrides(params, [5.5, 2e9, 1.0, 1.0])
    assert over == ["demand.theta=5.5", "capital.inflow_usd_month=2000000000.0",
                    "contracting.spot_exclusive=true", "chips.captive_growth=need"]
    scn = load_scenario("baseline", overrides=over)
    assert scn.contracting.spot_exclusive is True and scn.chips.captive_growth == "need"
    with pytest.raises(SensitivityError, match="power of 2"):
        sample(params, "sobol", 100, seed=3)
    with pytest.raises(SensitivityError, match="--method"):
        sample(params, "fast", 8, seed=3)


def test_shipped_bounds_hold_for_the_baseline():
    params = load_bounds(BOUNDS_FILE, "baseline")
    continuous = [p for p in params if not p.is_switch]
    switches = {p.name: p.choices for p in params if p.is_switch}
    assert 10 <= len(continuous) <= 14
    assert switches == {"chips.allocation_rule": ("pro_rata", "priority"),
                        "chips.captive_growth": ("saving", "need", "frozen"),
                        "contracting.spot_exclusive": (False, True)}
    assert all(p.why for p in params)
    by = {p.name: p for p in params}
    # The calibrated parameters span their fitted value ± 2 standard errors of docs/CALIBRATION.md.
    table = (Path(__file__).resolve().parent.parent / "docs" / "CALIBRATION.md").read_text(encoding="utf-8")
    for key in ("demand.theta", "training.final_run_share"):
        cells = [c.strip() for c in next(ln for ln in table.splitlines() if ln.startswith(f"| `{key}`")).split("|")]
        fitted, se = float(cells[4]), float(cells[5])
        assert (by[key].lo, by[key].hi) == pytest.approx((fitted - 2 * se, fitted + 2 * se), rel=2e-3)
    base = load_scenario("baseline")
    for p in continuous:  # the baseline's value lies inside every range (gamma: its derived value)
        section, key = p.name.split(".")
        v = getattr(getattr(base, section), key)
        v = base.gamma if v is None else v
        assert p.lo <= v <= p.hi, p.name


# -------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("body,field", [
    ('name = "demand.theta"\nlo = 8.0\nhi = 5.0', r"lo \(8\) must be below hi \(5\)"),
    ('name = "demand.theta"\nlo = 0.0\nhi = 5.0\nlog = true', "log: a log range needs lo > 0"),
    ('name = "demand.thetta"\nlo = 5.0\nhi = 8.0',
     "'demand.thetta'.*unknown key.*did you mean 'demand.theta'"),
    ('name = "demand.theta"\nlo = -2.0\nhi = 5.0', "'demand.theta'.*demand.theta"),
    ('name = "demand.theta"\nlow = 5.0\nhi = 8.0', "unknown field 'low'"),
    ('name = "chips.allocation_rule"\nchoices = []', "choices: expected a non-empty list"),
    ('name = "chips.allocation_rule"\nchoices = ["pro_rata", "fifo"]', "'chips.allocation_rule'.*fifo"),
    ('name = "chips.delivery_lag_months"\nlo = 2.0\nhi = 6.0', "integer parameter; give it as choices"),
    ('lo = 2.0\nhi = 6.0', r"\[\[param\]\] 1: name"),
])
def test_bad_bounds_name_the_file_and_the_field(tmp_path, body, field):
    path = tmp_path / "bad.toml"
    path.write_text(f"[[param]]\n{body}\n", encoding="utf-8")
    with pytest.raises(SensitivityError, match=field) as exc:
        load_bounds(path, "baseline")
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_bounds_without_a_scenario_skip_the_key_check(tmp_path):
    assert [p.name for p in load_bounds(ishigami_bounds(tmp_path))] == ["x1", "x2", "x3"]
    with pytest.raises(SensitivityError, match="unknown key"):
        load_bounds(ishigami_bounds(tmp_path), "baseline")


def test_parse_outputs():
    assert parse_outputs("lab_hhi_compute, entry_barrier_usd,delta:mega_deal:lab_hhi_compute") == [
        "lab_hhi_compute", "entry_barrier_usd", "delta:mega_deal:lab_hhi_compute"]
    with pytest.raises(SensitivityError,
                       match="unknown metric 'lab_hhi_compte'.*did you mean 'lab_hhi_compute'"):
        parse_outputs("lab_hhi_compte")
    with pytest.raises(SensitivityError, match="unknown metric 'month'"):
        parse_outputs("month")
    with pytest.raises(SensitivityError, match="unknown scenario 'mega_dael'"):
        parse_outputs("delta:mega_dael:lab_hhi_compute")
    with pytest.raises(SensitivityError, match="unknown metric 'nope'"):
        parse_outputs("delta:mega_deal:nope")
    with pytest.raises(SensitivityError, match="listed twice"):
        parse_outputs("lab_hhi_compute,lab_hhi_compute")


def test_arguments_checked_before_anything_runs(tmp_path):
    out = tmp_path / "o"
    with pytest.raises(SensitivityError, match="beyond|not a month"):
        run_sensitivity("baseline", ["lab_hhi_compute"], months=6, horizons=[12], out=out, progress=False)
    with pytest.raises(SensitivityError, match="at least 2 trajectories"):
        run_sensitivity("baseline", ["lab_hhi_compute"], n=1, out=out, progress=False)
    with pytest.raises(SensitivityError, match="unknown metric"):
        run_sensitivity("baseline", ["lab_hhi"], out=out, progress=False)
    with pytest.raises(SensitivityError, match="is sampled"):
        run_sensitivity("baseline", ["lab_hhi_compute"], overrides=["demand.theta=7"], out=out,
                        progress=False)
    with pytest.raises(SensitivityError, match="--master-seed must be >= 0"):
        run_sensitivity("baseline", ["lab_hhi_compute"], master_seed=-1, out=out, progress=False)
    with pytest.raises(SensitivityError, match="give no scenario"):
        run_sensitivity("baseline", ["y"], evaluator=ishigami, out=out, progress=False)
    assert not out.exists()


def test_an_evaluator_without_an_output_is_named(tmp_path):
    with pytest.raises(SensitivityError, match="point p00000: no output 'z'"):
        run_sensitivity(None, ["y", "z"], n=2, bounds=ishigami_bounds(tmp_path), out=tmp_path / "o",
                        progress=False, evaluator=ishigami)


def test_sensitivity_command(tmp_path, capsys):
    """``abm sensitivity`` end to end on the shipped bounds (2 trajectories of 3 months): every parameter gets
    an index; a bad output is one line and exit status 2."""
    from analysis.cli import main

    out = tmp_path / "sa"
    assert main(["sensitivity", "baseline", "--outputs", "lab_hhi_compute", "--n", "2", "--seeds", "1",
                 "--months", "3", "--out", str(out), "--quiet"]) == 0
    with open(out / "sensitivity.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["parameter"] for r in rows} == {p.name for p in load_bounds(BOUNDS_FILE, "baseline")}
    assert all(math.isfinite(float(r["mu_star"])) for r in rows)
    with pytest.raises(SystemExit) as exc:
        main(["sensitivity", "baseline", "--outputs", "no_such_column", "--out", str(tmp_path / "x")])
    assert exc.value.code == 2
    assert "unknown metric 'no_such_column'" in capsys.readouterr().err
