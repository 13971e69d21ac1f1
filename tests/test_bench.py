"""abm bench: the quick benchmark runs and writes every figure; agent-steps are counted right; targets are
judged only on the sizes they name. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from abm.model import ComputeMarket
from analysis.bench import TARGETS, agent_steps, evaluate, scale_once
from analysis.cli import main

ROOT = Path(__file__).resolve().parent.parent
SCALING_KEYS = {"labs", "months", "status", "build_s", "step_s", "total_s", "process_s", "agent_steps",
                "us_per_agent_step", "peak_rss_mib", "labs_active_first", "labs_active_final", "bare_mesa",
                "over_bare_mesa"}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analysis.cli", *args], capture_output=True, text=True,
                          cwd=ROOT)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One ``abm bench --quick`` run: (its folder, what it printed)."""
    out = tmp_path_factory.mktemp("bench") / "b"
    cap = subprocess.run([sys.executable, "-m", "analysis.cli", "bench", "--quick", "--out", str(out)],
                         capture_output=True, text=True, cwd=ROOT)
    assert cap.returncode == 0, cap.stderr
    return out, cap.stdout, cap.stderr


def test_quick_bench_writes_every_figure(quick):
    out, _, _ = quick
    data = json.loads((out / "bench.json").read_text())
    assert data["command"].startswith("abm bench --quick --labs 40,80 --months 12 --seeds 4 --workers 1,2")
    for key in ("cpu_count", "python", "numpy", "mesa", "platform"):
        assert data["machine"][key], key
    assert set(data["code"]) >= {"git_commit", "modified", "model_sha256"}
    model, process = data["baseline"]["model"], data["baseline"]["process"]
    assert model["months"] == 12 and len(model["runs_s"]) == 1 and model["median_s"] > 0
    assert process["command"].startswith("abm run baseline") and process["median_s"] > 0
    assert [r["labs"] for r in data["scaling"]] == [40, 80]
    for row in data["scaling"]:
        assert SCALING_KEYS <= set(row), SCALING_KEYS - set(row)
        assert row["status"] == "ok" and row["months"] == 12
        assert row["agent_steps"] >= 12 * row["labs"] // 2 and row["peak_rss_mib"] > 0
        assert abs(row["labs_active_first"] - row["labs"]) <= 3
        bare = row["bare_mesa"]
        assert bare["agents"] == row["labs"] and bare["steps"] == 100 and bare["us_per_agent_step"] > 0
        assert row["over_bare_mesa"] == pytest.approx(row["us_per_agent_step"] / bare["us_per_agent_step"])
    runs = data["process_labs"]
    assert [r["format"] for r in runs] == ["csv", "parquet"]
    for r in runs:
        assert r["labs"] == 80 and r["command"].startswith("abm run baseline --months 12 --labs 80")
        assert r["command"].endswith(f"--format {r['format']}") and r["wall_s"] > 0 and r["peak_rss_mib"] > 50
        names = {"timeseries", "agents", "contracts", "events", "runs", "flows"}
        assert {f"{n}.{r['format']}" for n in names} <= set(r["files"]), r["files"]
        assert r["folder_mib"] * 2**20 == pytest.approx(sum(r["files"].values()))
    ens = data["ensemble"]
    assert ens["seeds"] == 4 and [r["workers"] for r in ens["runs"]] == [1, 2]
    assert ens["identical"] is True
    bz = data["boltzmann"]
    assert bz["agents"] == 80 and bz["steps"] == 10 and bz["us_per_agent_step"] > 0
    assert data["ratio_to_boltzmann"]["labs"] == 80 and data["ratio_to_boltzmann"]["value"] > 0
    assert [t["key"] for t in data["targets"]] == [k for k, *_ in TARGETS]
    for t in data["targets"]:
        assert set(t) == {"key", "what", "value", "limit", "unit", "met", "note"}
        assert t["met"] is None, t  # quick sizes are never judged against the targets
    assert (out / "bench.md").is_file()


def test_quick_bench_prints_the_table(quick):
    out, stdout, stderr = quick
    assert "| figure | value | target | result |" in stdout
    for _, what, _, _ in TARGETS:
        assert what in stdout
    assert "| labs | months |" in stdout
    assert "byte-identical" in stdout
    assert (out / "bench.md").read_text() in stdout
    assert "40 labs: month 12/12" in stderr  # progress of the scaling runs


def test_agent_steps_counts_labs_alive_and_firms_each_month():
    model = ComputeMarket("baseline", overrides={"run.months": 4}, rng=3)
    expected = 0
    for _ in range(4):
        model.step()
        expected += sum(lab.alive for lab in model.labs) + len(model.clouds) + len(model.vendors)
    assert agent_steps(model) == expected


def test_scale_once_reports_a_scaled_run():
    row = scale_once(30, 2, progress=False)
    assert row["status"] == "ok" and row["labs"] == 30 and row["months"] == 2
    assert row["labs_active_first"] >= 28
    assert row["agent_steps"] >= 2 * (28 + row["clouds"] + row["vendors"])
    assert row["us_per_agent_step"] > 0 and row["peak_rss_mib"] > 0


def _results(months=120, big=None, mid=None, huge=None, workers=(1, 2), seeds=100, process_labs=10_000) -> dict:
    """Synthetic benchmark results for ``evaluate``."""
    scaling = [{"labs": 100, "status": "ok", "total_s": 1.0, "us_per_agent_step": 10.0, "peak_rss_mib": 200.0}]
    for n, row in ((1000, mid), (10_000, big), (100_000, huge)):
        if row is not None:
            scaling.append({"labs": n, **row})
    return {"settings": {"months": months},
            "baseline": {"model": {"median_s": 0.08}, "process": {"median_s": 3.5}},
            "process_labs": [{"format": "csv", "labs": process_labs, "wall_s": 12.0},
                             {"format": "parquet", "labs": process_labs, "wall_s": 8.0}],
            "scaling": scaling,
            "ensemble": {"seeds": seeds, "runs": [{"workers": w, "wall_s": 50.0} for w in workers]}}


def test_targets_met_and_missed_on_full_sizes():
    res = _results(big={"status": "ok", "total_s": 25.0, "over_bare_mesa": 4.0, "peak_rss_mib": 3000.0},
                   mid={"status": "ok", "total_s": 2.0},
                   huge={"status": "ok", "total_s": 250.0, "peak_rss_mib": 4000.0})
    met = {t["key"]: t["met"] for t in evaluate(res)}
    assert met == {"baseline_model_s": True, "baseline_process_s": False, "labs_10000_s": True,
                   "labs_10000_over_1000": False, "per_agent_step_over_bare_mesa": False,
                   "labs_10000_peak_rss_mib": False, "ensemble_100_seeds_2_workers_s": True,
                   "run_10000_csv_s": False, "run_10000_parquet_s": True, "labs_100000_s": False,
                   "labs_100000_peak_rss_mib": True, "labs_100000_over_10000": True}
    value = {t["key"]: t["value"] for t in evaluate(res)}
    assert value["per_agent_step_over_bare_mesa"] == pytest.approx(4.0)
    assert value["labs_100000_over_10000"] == pytest.approx(10.0)


def test_a_stopped_run_misses_and_other_sizes_are_not_judged():
    stopped = _results(big={"status": "timeout", "note": "stopped after 600 s"}, mid={"status": "ok", "total_s": 2.0},
                       huge={"status": "skipped", "note": "not run"})
    met = {t["key"]: t["met"] for t in evaluate(stopped)}
    assert met["labs_10000_s"] is False and met["labs_10000_over_1000"] is False
    assert met["per_agent_step_over_bare_mesa"] is False and met["labs_10000_peak_rss_mib"] is False
    assert met["labs_100000_over_10000"] is False  # the 10,000-lab run was stopped
    short = {t["key"]: t["met"] for t in evaluate(_results(months=12, workers=(1,), seeds=4, process_labs=80))}
    assert set(short.values()) == {None}
    other = {t["key"]: t["met"] for t in evaluate(_results(process_labs=5000))}
    assert other["run_10000_csv_s"] is None and other["run_10000_parquet_s"] is None


@pytest.mark.parametrize("args, words", [
    (["--labs", "5,100"], "--labs: 5 labs: must be at least 9"),
    (["--labs", "100,x"], "--labs"),
    (["--workers", "0"], "--workers"),
    (["--seeds", "0"], "--seeds"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, args, words):
    res = run_cli("bench", "--quick", "--out", str(tmp_path / "b"), *args)
    assert res.returncode == 2, res.stderr
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("abm: error:") and words in err[0], res.stderr
    assert not (tmp_path / "b").exists()


def test_out_folder_is_checked_before_measuring(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    assert main(["bench", "--quick", "--out", str(other)]) == 2
    done = tmp_path / "done"
    done.mkdir()
    (done / "bench.json").write_text("{}")
    assert main(["bench", "--quick", "--out", str(done)]) == 2
    assert (done / "bench.json").read_text() == "{}"


def test_a_scaling_run_over_the_timeout_is_stopped_and_larger_sizes_skipped():
    """The run is killed at the timeout; the row says how far it got; the next size is not run."""
    from analysis.bench import time_scaling

    # 20,000 labs for 120 months take far longer than 4 s (about 25 s on a 2-core machine).
    rows = time_scaling([20000, 30000], 120, timeout=4.0)
    first, second = rows
    assert first["status"] == "timeout" and first["note"].startswith("stopped after 4 s")
    if "months_done" in first:  # it got through at least one month before the timeout
        assert 1 <= first["months_done"] < 120 and first["agent_steps"] > 0
        assert first["labs_active_first"] >= 19000
    assert second["status"] == "skipped" and "20000 labs" in second["note"]
