"""Parameter sweeps: parsing --param, the grid of cells with common random numbers, the per-cell statistics
against the seed files, figures, resuming, byte-identical summaries whatever the workers, and refusals
(other arguments on a folder, bad values) that name the flag and write nothing."""

from __future__ import annotations

import concurrent.futures as cf
import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from abm.scenario import load_scenario, to_toml
from analysis.experiments.ensemble import child_seeds, execute, run_seed, seed_dirname
from analysis.experiments.executors import make_executor
from analysis.experiments.sweep import (
    DEFAULT_METRICS,
    SweepError,
    SweepParam,
    parse_param,
    prepare_sweep,
    run_sweep,
)
from analysis.views.sweep_figures import draw_figures

MONTHS, SEEDS = 6, 2
GRID = ("demand.theta=5,15", "entry.rate_per_month=0.2,1")
PNG = b"\x89PNG\r\n\x1a\n"


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def num(text: str) -> float:
    return float(text) if text != "" else math.nan


def sweep(out: Path, params=GRID, workers: int = 1, **kw):
    """Prepare and run a sweep of the baseline; returns the plan (``plan.computed``: seeds computed)."""
    kw = {"seeds": SEEDS, "months": MONTHS, **kw}
    plan = prepare_sweep("baseline", [parse_param(p) for p in params], out=out, **kw)
    with make_executor(workers=workers) as ex:
        assert run_sweep(plan, ex, progress=False, draw=draw_figures) == out
    return plan


def files(d: Path, pattern: str) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.glob(pattern)) if p.is_file()}


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    """A 2x2 sweep of the baseline (demand.theta x entry.rate_per_month), 2 seeds x 6 months, serial."""
    out = tmp_path_factory.mktemp("sweep") / "grid"
    plan = sweep(out)
    assert plan.computed == 4 * SEEDS and plan.state == "resume" and plan.created_here
    return out


# ------------------------------------------------------------------------------------------------ --param
def test_parse_param_forms():
    p = parse_param("capital.kappa=0.5:2:4")
    assert p == SweepParam("capital.kappa", (0.5, 1.0, 1.5, 2.0), False)
    assert parse_param("capital.kappa=0.5:2:1").values == (0.5,)
    p = parse_param("entry.seed_capital_median_usd=log:1e7:1e10:4")
    assert p.values == (1e7, 1e8, 1e9, 1e10) and p.log  # exact: values pass through format(v, ".10g")
    assert parse_param("capital.kappa=0:1:3").values == (0.0, 0.5, 1.0)
    assert parse_param("demand.eta=0.1:0.3:3").values == (0.1, 0.2, 0.3)  # not 0.30000000000000004
    p = parse_param("chips.allocation_rule=pro_rata,priority")
    assert p == SweepParam("chips.allocation_rule", ("pro_rata", "priority"), False)
    assert parse_param(" capital.kappa = 1, 2.5 ").values == (1.0, 2.5)
    assert parse_param("capital.kappa=2").values == (2.0,)
    assert parse_param("contracting.spot_exclusive=false,true").values == ("false", "true")
    # the canonical text gives the same parameter back, and is the override text of each value
    for text in ("capital.kappa=0.5:2:4", "entry.seed_capital_median_usd=log:10000000:1e+10:4",
                 "demand.eta=1,3", "chips.allocation_rule=pro_rata,priority", "capital.kappa=0.1,0.7,0.8",
                 "demand.eta=2"):
        p = parse_param(text)
        assert p.text == text and parse_param(p.text) == p
    override = parse_param("entry.seed_capital_median_usd=log:1e7:1e10:4").override(3)
    assert override == "entry.seed_capital_median_usd=1e+10"
    assert load_scenario("baseline", overrides=[override]).entry.seed_capital_median_usd == 1e10


@pytest.mark.parametrize("text", [
    "capital.kappa", "capital.kappa=", "=1:2:3", "kappa=1:2:3", "capital kappa=1:2:3", "capital.kappa=1:2",
    "capital.kappa=1:2:3:4", "capital.kappa=1:2:0", "capital.kappa=1:2:-2", "capital.kappa=1:2:2.5",
    "capital.kappa=1:2:x", "capital.kappa=a:2:3", "capital.kappa=1:inf:3", "capital.kappa=nan,1",
    "capital.kappa=log:0:10:3", "capital.kappa=log:-1:10:3", "capital.kappa=log:1:0:3", "capital.kappa=1:1:3",
    "capital.kappa=1,,2", "capital.kappa=1,1.0", "chips.allocation_rule=priority,priority",
])
def test_parse_param_errors(text):
    with pytest.raises(SweepError) as err:
        parse_param(text)
    msg = str(err.value)
    assert msg.startswith(f"--param {text.strip()}: ") and "\n" not in msg, msg
    assert isinstance(err.value, ValueError)


# ------------------------------------------------------------------------------------------------ the grid
def test_cells_and_common_random_numbers(grid):
    """4 cells, each an ensemble with the same child seeds; a cell's seed is run_seed of the scenario with
    that cell's overrides, and the cells differ where their parameters do."""
    info = json.loads((grid / "sweep.json").read_text())
    master = load_scenario("baseline").run.seed
    want = [["demand.theta=5", "entry.rate_per_month=0.2"], ["demand.theta=5", "entry.rate_per_month=1"],
            ["demand.theta=15", "entry.rate_per_month=0.2"], ["demand.theta=15", "entry.rate_per_month=1"]]
    assert [c["overrides"] for c in info["cells"]] == want
    assert (info["n_seeds"], info["master_seed"], info["months"], info["at"]) == \
        (SEEDS, master, MONTHS, MONTHS)
    seeds = child_seeds(master, SEEDS)
    cells = sorted((grid / "cells").iterdir())
    assert [c.name for c in cells] == [f"cell-{i:04d}" for i in range(4)]
    for cell, overrides in zip(cells, want, strict=True):
        assert json.loads((cell / "ensemble.json").read_text())["overrides"] == overrides
        names = sorted(p.name for p in (cell / "seeds").iterdir())
        assert names == [seed_dirname(i, s) for i, s in enumerate(seeds)]
        assert (cell / "ensemble.csv").is_file()
    for c in (1, 2):
        scn = load_scenario("baseline", overrides=want[c], months=MONTHS, seed=master)
        got = (cells[c] / "seeds" / seed_dirname(1, seeds[1]) / "timeseries.csv").read_text()
        assert got == run_seed(to_toml(scn), seeds[1], MONTHS)
    series = [(c / "seeds" / seed_dirname(0, seeds[0]) / "timeseries.csv").read_text() for c in cells]
    assert len(set(series)) == 4, "cells with other parameters gave the same run"


def test_sweep_csv_statistics_by_hand(grid):
    """One row per cell in cell order; per metric mean, CI and n at the last month equal numpy and scipy's
    over the cell's seed files (n = 0 and empty cells for a metric undefined in every seed)."""
    rows = read_csv(grid / "sweep.csv")
    header = ["cell", "demand.theta", "entry.rate_per_month"]
    for m in DEFAULT_METRICS:
        header += [f"{m}_mean", f"{m}_ci_lo", f"{m}_ci_hi", f"{m}_n"]
    assert list(rows[0].keys()) == header
    assert [(r["cell"], r["demand.theta"], r["entry.rate_per_month"]) for r in rows] == \
        [("0", "5.0", "0.2"), ("1", "5.0", "1.0"), ("2", "15.0", "0.2"), ("3", "15.0", "1.0")]
    for i, row in enumerate(rows):
        cell = grid / "cells" / f"cell-{i:04d}"
        last = [read_csv(p)[MONTHS - 1] for p in sorted(cell.glob("seeds/*/timeseries.csv"))]
        assert len(last) == SEEDS
        for m in DEFAULT_METRICS:
            x = np.array([num(r[m]) for r in last])
            x = x[~np.isnan(x)]
            assert int(row[f"{m}_n"]) == x.size
            if x.size == 0:
                assert row[f"{m}_mean"] == row[f"{m}_ci_lo"] == ""
                continue
            half = stats.t.ppf(0.975, x.size - 1) * np.std(x, ddof=1) / np.sqrt(x.size)
            for stat, v in (("mean", x.mean()), ("ci_lo", x.mean() - half), ("ci_hi", x.mean() + half)):
                assert num(row[f"{m}_{stat}"]) == pytest.approx(v, rel=1e-12, abs=1e-12), (i, m, stat)
    assert int(rows[0]["small_lab_survival_24m_n"]) == 0  # no small lab is 24 months old at month 6


def test_heatmaps_and_markdown(grid):
    """Two parameters: a heatmap per metric; sweep.md has the command that reproduces the sweep and a row
    per cell."""
    assert sorted(p.name for p in (grid / "figures").iterdir()) == sorted(f"{m}.png" for m in DEFAULT_METRICS)
    for p in (grid / "figures").iterdir():
        assert p.read_bytes()[:8] == PNG
    md = (grid / "sweep.md").read_text()
    master = load_scenario("baseline").run.seed
    assert (f"abm sweep baseline --param demand.theta=5,15 --param entry.rate_per_month=0.2,1 --seeds 2 "
            f"--master-seed {master} --months 6\n") in md
    assert "4 cells x 2 seeds = 8 runs of 6 months" in md
    assert sum(1 for line in md.splitlines() if line.startswith("| ")) == 1 + 4
    assert not [p for p in grid.rglob(".*")], "temporary files left behind"


def test_resume_recomputes_only_missing_seed(grid, tmp_path):
    """Delete one cell's seed and another's ensemble.csv: a rerun computes that seed only, rewrites nothing
    else, and every summary file is byte-identical."""
    out = tmp_path / "grid"
    shutil.copytree(grid, out)
    seeds = child_seeds(load_scenario("baseline").run.seed, SEEDS)
    shutil.rmtree(out / "cells" / "cell-0002" / "seeds" / seed_dirname(1, seeds[1]))
    (out / "cells" / "cell-0001" / "ensemble.csv").unlink()
    kept = {p: p.stat().st_mtime_ns for p in out.glob("cells/*/seeds/*/timeseries.csv")}
    assert len(kept) == 4 * SEEDS - 1
    plan = sweep(out)
    assert plan.state == "resume" and not plan.created_here and plan.computed == 1
    with make_executor() as ex:
        assert execute(plan.cells, ex, progress=False) == 0
    assert {p: p.stat().st_mtime_ns for p in kept} == kept, "a finished seed was rewritten"
    for pattern in ("sweep.*", "cells/*/ensemble.csv", "cells/*/seeds/*/timeseries.csv", "figures/*.png"):
        assert files(out, pattern) == files(grid, pattern), pattern


def test_two_workers_byte_identical(grid, tmp_path):
    out = tmp_path / "two"
    plan = sweep(out, workers=2)
    assert plan.computed == 4 * SEEDS
    for pattern in ("sweep.csv", "sweep.md", "sweep.json", "cells/*/ensemble.csv", "cells/*/seeds/*/*.csv"):
        assert files(out, pattern) == files(grid, pattern), pattern


# ------------------------------------------------------------------------------------------------ folders
def test_other_arguments_need_force(tmp_path):
    """Other run arguments on a sweep folder: SweepError naming the difference, folder untouched; force
    replaces it. Other metrics or month only redo the summary. A folder that is not a sweep is never used."""
    out = tmp_path / "s"
    small = {"seeds": 1, "months": 3, "metrics": ["labs_active", "lab_hhi_compute"]}
    sweep(out, ("demand.theta=5,15",), **small)
    before = files(out, "**/*")
    changes = [(("demand.theta=5,20",), {}, "--param"), (("demand.theta=5,15",), {"seeds": 2}, "--seeds"),
               (("demand.theta=5,15",), {"months": 4}, "months"),
               (("demand.theta=5,15",), {"master_seed": 7}, "master seed"),
               (("demand.theta=5,15",), {"overrides": ["capital.kappa=2"]}, "--set"),
               (("demand.theta=5,15", "demand.eta=1"), {}, "--param")]
    for params, kw, label in changes:
        with pytest.raises(SweepError, match=f"other arguments \\({label} .*--force"):
            prepare_sweep("baseline", [parse_param(p) for p in params], out=out, **{**small, **kw})
    assert files(out, "**/*") == before
    # only the summary's arguments differ: nothing is computed, the summary follows the new ones
    plan = sweep(out, ("demand.theta=5,15",), **{**small, "metrics": ["frontier_capability"], "at": 2})
    assert plan.state == "resume" and plan.computed == 0
    rows = read_csv(out / "sweep.csv")
    assert list(rows[0]) == ["cell", "demand.theta", "frontier_capability_mean", "frontier_capability_ci_lo",
                             "frontier_capability_ci_hi", "frontier_capability_n"]
    month2 = read_csv(next((out / "cells" / "cell-0001").glob("seeds/*/timeseries.csv")))[1]
    assert float(rows[1]["frontier_capability_mean"]) == float(month2["frontier_capability"])
    assert "--at 2 --metrics frontier_capability" in (out / "sweep.md").read_text()
    assert files(out, "cells/**/*") == {k: v for k, v in before.items() if k.startswith("cells/")}
    # force replaces the folder
    plan = sweep(out, ("demand.theta=5,15",), **{**small, "seeds": 2}, force=True)
    assert plan.computed == 2 * 2 and len(read_csv(out / "cells" / "cell-0000" / "seeds.csv")) == 2
    assert json.loads((out / "sweep.json").read_text())["n_seeds"] == 2
    # not a sweep folder: refused even with force, and left alone
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(SweepError, match="not a sweep folder"):
        prepare_sweep("baseline", [parse_param("demand.theta=5,15")], out=other, force=True, **small)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("params,kw,expect", [
    (["capital.kappa=-1:1:3"], {}, "--param capital.kappa=-1:1:3: capital.kappa=-1: "),
    (["demand.theta=5,15", "capital.kappa=0,20"], {}, "--param capital.kappa=0,20: capital.kappa=20: "),
    (["capital.kapa=1:2:3"], {}, "--param capital.kapa=1:2:3: capital.kapa=1: unknown key; did you mean "
                                 "'capital.kappa'?"),
    (["efficiency.rd_share_min=0.2,0.6", "efficiency.rd_share_max=0.5,0.9"], {},
     "--param efficiency.rd_share_min=0.2,0.6 --param efficiency.rd_share_max=0.5,0.9: the cell "
     "efficiency.rd_share_min=0.6, efficiency.rd_share_max=0.5 is invalid: "),
    (["training.run_months=3:4:4"], {}, "--param training.run_months=3:4:4: training.run_months is a whole "
                                        "number and the values round to 3,3,4,4"),
    (["chips.allocation_rule=pro_rata,first_come"], {}, "--param chips.allocation_rule=pro_rata,first_come: "
                                                        "chips.allocation_rule=first_come: "),
    (["run.months=3,6"], {}, "--param run.months=3,6: run.* is not swept"),
    (["capital.kappa=1,2"], {"overrides": ["capital.kappa=3"]}, "--param capital.kappa=1,2: capital.kappa is "
                                                                 "also given with --set"),
    (["capital.kappa=1,2", "capital.kappa=3"], {}, "--param capital.kappa: the key is swept twice"),
    ([], {}, "--param: give at least one"),
    (["capital.kappa=1,2"], {"seeds": 0}, "--seeds must be >= 1"),
    (["capital.kappa=1,2"], {"master_seed": -1}, "--master-seed must be >= 0"),
    (["capital.kappa=1,2"], {"at": 7}, "--at 7: expected a month 1-6"),
    (["capital.kappa=1,2"], {"at": 0}, "--at 0: expected a month 1-6"),
    (["capital.kappa=1,2"], {"metrics": ["lab_hhi_compte"]},
     "--metrics: 'lab_hhi_compte' is not a numeric timeseries column; did you mean 'lab_hhi_compute'?"),
    (["capital.kappa=1,2"], {"metrics": ["month"]}, "--metrics: 'month' is not a numeric"),
])
def test_bad_arguments_name_the_flag_and_write_nothing(tmp_path, params, kw, expect):
    out = tmp_path / "out"
    with pytest.raises(SweepError) as err:
        prepare_sweep("baseline", [parse_param(p) for p in params], **{"seeds": 2, "months": 6, "out": out,
                                                                        **kw})
    msg = str(err.value)
    assert msg.startswith(expect) and "\n" not in msg, msg
    assert list(tmp_path.iterdir()) == []


def test_integer_keys_are_rounded():
    plan = prepare_sweep("baseline", [parse_param("training.run_months=2:7:3")], seeds=1, months=3)
    assert plan.params[0].values == (2, 4, 7) and plan.params[0].text == "training.run_months=2,4,7"
    assert [c[0] for c in plan.cell_overrides] == ["training.run_months=2", "training.run_months=4",
                                                   "training.run_months=7"]
    assert plan.out == Path("runs") / "sweep-baseline-run_months-1"


def test_one_and_three_parameters(tmp_path):
    """One parameter: a panel per metric in figures/sweep.png, log spacing kept; three: no figures."""
    one = tmp_path / "one"
    plan = sweep(one, ("entry.seed_capital_median_usd=log:1e8:1e10:3",), seeds=1, months=3,
                 metrics=["labs_active", "entry_barrier_usd"])
    assert plan.computed == 3
    assert [p.name for p in (one / "figures").iterdir()] == ["sweep.png"]
    assert (one / "figures" / "sweep.png").read_bytes()[:8] == PNG
    assert "--param entry.seed_capital_median_usd=log:100000000:1e+10:3" in (one / "sweep.md").read_text()
    assert [r["entry.seed_capital_median_usd"] for r in read_csv(one / "sweep.csv")] == \
        ["100000000.0", "1000000000.0", "10000000000.0"]
    three = tmp_path / "three"
    sweep(three, ("chips.allocation_rule=pro_rata,priority", "demand.theta=10", "training.run_months=3,6"),
          seeds=1, months=3, metrics=["labs_active"])
    assert len(read_csv(three / "sweep.csv")) == 4 and not (three / "figures").exists()
    assert "No figures" in (three / "sweep.md").read_text()


class _Broken(cf.Executor):
    def submit(self, fn, /, *args, **kwargs):
        raise RuntimeError("cluster gone")


def test_failed_start_removes_the_new_folder(tmp_path):
    out = tmp_path / "s"
    plan = prepare_sweep("baseline", [parse_param("demand.theta=5,15")], seeds=1, months=3, out=out)
    with pytest.raises(RuntimeError, match="cluster gone"):
        run_sweep(plan, _Broken(), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_sweep_command(tmp_path, capsys):
    """``abm sweep`` end to end: the files and figure, a one-line error for a bad cell, nothing written."""
    from analysis.cli import main

    out = tmp_path / "sw"
    assert main(["sweep", "baseline", "--param", "demand.theta=5:8:2", "--seeds", "2", "--months", "3",
                 "--out", str(out), "--quiet"]) == 0
    assert len(read_csv(out / "sweep.csv")) == 2
    assert (out / "sweep.md").is_file() and (out / "figures" / "sweep.png").is_file()
    bad = tmp_path / "bad"
    assert main(["sweep", "baseline", "--param", "demand.theta=-1:2:2", "--seeds", "2", "--out", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("abm: error: --param demand.theta") and err.count("\n") == 1
    assert not bad.exists()
