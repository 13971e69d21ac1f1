"""Ensembles and comparisons: byte-identical summaries whatever the workers, the summary statistics, the
seed rule, resuming after a kill, paired statistics, common random numbers and one-line user errors."""

from __future__ import annotations

import csv
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from abm.metrics import COLUMNS, NULLABLE
from abm.scenario import load_scenario
from analysis.cli import main
from analysis.experiments.compare import (
    HEADLINE_METRICS,
    LOG_METRICS,
    log10_paired_stats,
    paired_stats,
    parse_horizons,
)
from analysis.experiments.ensemble import STATS, child_seeds, seed_dirname

ROOT = Path(__file__).resolve().parent.parent
SEEDS, MONTHS = 4, 12


def run_cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analysis.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, **kw)


def seed_files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted((d / "seeds").glob("*/timeseries.csv"))}


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def num(text: str) -> float:
    return float(text) if text != "" else math.nan


@pytest.fixture(scope="module")
def serial(tmp_path_factory) -> Path:
    """A small ensemble run in this process: baseline, 4 seeds x 12 months."""
    out = tmp_path_factory.mktemp("ens") / "serial"
    assert main(["ensemble", "baseline", "--seeds", str(SEEDS), "--months", str(MONTHS), "--out", str(out),
                 "--quiet"]) == 0
    return out


def test_workers_1_and_2_byte_identical(serial, tmp_path):
    """ensemble.csv and every seed file are identical bytes with --workers 1 and --workers 2."""
    two = tmp_path / "two"
    assert main(["ensemble", "baseline", "--seeds", str(SEEDS), "--months", str(MONTHS), "--workers", "2",
                 "--out", str(two), "--quiet"]) == 0
    assert (serial / "ensemble.csv").read_bytes() == (two / "ensemble.csv").read_bytes()
    one_seeds = seed_files(serial)
    assert len(one_seeds) == SEEDS and one_seeds == seed_files(two)
    for name in ("seeds.csv", "scenario.toml"):
        assert (serial / name).read_bytes() == (two / name).read_bytes()
    assert not [p for p in two.rglob(".*")], "temporary files left behind"


def test_summary_statistics_by_hand(serial):
    """Mean, std, percentiles and the t-based CI of a column agree with numpy on the seed files; the
    wide layout has one row per month and C_<stat> columns in the timeseries order (C_n if nullable)."""
    rows = read_csv(serial / "ensemble.csv")
    header = list(rows[0].keys())
    expect = ["month", "step"]
    for c in COLUMNS[2:]:
        expect += [f"{c}_{s}" for s in STATS] + ([f"{c}_n"] if c in NULLABLE else [])
    assert header == expect
    assert [r["step"] for r in rows] == [str(k) for k in range(MONTHS)]
    per_seed = [read_csv(p) for p in sorted((serial / "seeds").glob("*/timeseries.csv"))]
    assert len(per_seed) == SEEDS
    for col in ("lab_hhi_compute", "spot_price_usd_per_h100e_hour", "reserved_price_usd_per_h100e_hour"):
        for m in range(MONTHS):
            x = np.array([num(s[m][col]) for s in per_seed])
            x = x[~np.isnan(x)]
            got = {s: num(rows[m][f"{col}_{s}"]) for s in STATS}
            if col in NULLABLE:
                assert int(rows[m][f"{col}_n"]) == x.size
            if x.size == 0:
                assert all(math.isnan(v) for v in got.values())
                continue
            mean = np.mean(x)
            want = {"mean": mean, "p2_5": np.percentile(x, 2.5), "p50": np.percentile(x, 50),
                    "p97_5": np.percentile(x, 97.5)}
            if x.size >= 2:
                sd = np.std(x, ddof=1)
                half = stats.t.ppf(0.975, x.size - 1) * sd / np.sqrt(x.size)
                want.update(std=sd, ci_lo=mean - half, ci_hi=mean + half)
            else:
                assert math.isnan(got["std"]) and math.isnan(got["ci_lo"])
            for k, v in want.items():
                assert got[k] == pytest.approx(v, rel=1e-12, abs=1e-12), (col, m, k)


def test_seeds_follow_seedsequence_and_rerun_with_abm_run(serial, tmp_path):
    """seeds.csv and ensemble.json hold SeedSequence(master).spawn(N)'s seeds; each seed folder is named
    seed-<index>-<seed>; abm run DIR/scenario.toml --seed <seed> reproduces that seed's timeseries."""
    master = load_scenario("baseline").run.seed
    want = [int(c.generate_state(1)[0]) for c in np.random.SeedSequence(master).spawn(SEEDS)]
    got = [(int(r["index"]), int(r["seed"])) for r in read_csv(serial / "seeds.csv")]
    assert got == list(enumerate(want))
    assert child_seeds(master, SEEDS) == want and child_seeds(master, SEEDS + 3)[:SEEDS] == want
    info = json.loads((serial / "ensemble.json").read_text())
    assert (info["master_seed"], info["n_seeds"], info["months"], info["overrides"]) == (master, SEEDS, MONTHS, [])
    assert info["scenario"] == "baseline" and info["versions"]["numpy"] == np.__version__
    names = sorted(p.name for p in (serial / "seeds").iterdir())
    assert names == [seed_dirname(i, s) for i, s in enumerate(want)]
    out = tmp_path / "one"
    assert main(["run", str(serial / "scenario.toml"), "--seed", str(want[2]), "--out", str(out), "--quiet"]) == 0
    assert (out / "timeseries.csv").read_bytes() == \
        (serial / "seeds" / seed_dirname(2, want[2]) / "timeseries.csv").read_bytes()


def test_resume_after_sigkill(tmp_path):
    """A killed ensemble leaves complete seed files only; rerunning completes it without rewriting them,
    and ensemble.csv equals an uninterrupted run's byte for byte."""
    n, months = 6, 24
    killed, clean = tmp_path / "killed", tmp_path / "clean"

    def finished():  # seed folders renamed into place (a hidden one is still being written)
        return sorted(p for p in killed.glob("seeds/*/timeseries.csv") if not p.parent.name.startswith("."))

    args = ["ensemble", "baseline", "--seeds", str(n), "--months", str(months), "--workers", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "analysis.cli", *args, "--out", str(killed), "--quiet"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if finished():
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
        proc.stderr.close()
    done = finished()
    assert 1 <= len(done) < n, f"{len(done)} seeds done when killed"
    assert not (killed / "ensemble.csv").exists()
    for p in done:  # complete files only
        assert len(p.read_text().splitlines()) == 1 + months
    mtimes = {p: p.stat().st_mtime_ns for p in done}

    assert main([*args, "--out", str(killed), "--quiet"]) == 0
    assert main([*args, "--out", str(clean), "--quiet"]) == 0
    assert (killed / "ensemble.csv").read_bytes() == (clean / "ensemble.csv").read_bytes()
    assert seed_files(killed) == seed_files(clean) and len(seed_files(clean)) == n
    assert {p: p.stat().st_mtime_ns for p in done} == mtimes, "a completed seed file was rewritten"
    assert not [p for p in killed.rglob(".*")], "temporary files left behind"


def test_changed_arguments_need_force(tmp_path):
    """Rerunning into a folder with other arguments stops with one line (folder untouched) unless --force."""
    out = tmp_path / "e"
    assert main(["ensemble", "baseline", "--seeds", "2", "--months", "3", "--out", str(out), "--quiet"]) == 0
    before = (out / "ensemble.csv").read_bytes()
    for extra in (["--seeds", "3", "--months", "3"], ["--seeds", "2", "--months", "4"],
                  ["--seeds", "2", "--months", "3", "--master-seed", "9"],
                  ["--seeds", "2", "--months", "3", "--set", "capital.kappa=2"]):
        res = run_cli("ensemble", "baseline", *extra, "--out", str(out))
        assert res.returncode == 2 and "--force" in res.stderr, (extra, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1
        assert (out / "ensemble.csv").read_bytes() == before
    assert main(["ensemble", "baseline", "--seeds", "3", "--months", "3", "--out", str(out), "--force",
                 "--quiet"]) == 0
    assert len(read_csv(out / "seeds.csv")) == 3 and len(seed_files(out)) == 3
    # a folder computed by another version of the model is refused: resuming would mix two models ...
    info = json.loads((out / "ensemble.json").read_text())
    info["model_sha256"] = "0" * 64
    (out / "ensemble.json").write_text(json.dumps(info))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    res = run_cli("ensemble", "baseline", "--seeds", "3", "--months", "3", "--out", str(out), "--quiet")
    assert res.returncode == 2 and "another version of the model" in res.stderr, res.stderr
    assert "--allow-model-change" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # ... unless explicitly allowed: then it resumes and says so
    res = run_cli("ensemble", "baseline", "--seeds", "3", "--months", "3", "--out", str(out), "--quiet",
                  "--allow-model-change")
    assert res.returncode == 0 and res.stderr.startswith("abm: warning: the model code"), res.stderr
    # ... and --force starts over, as the warning says: every seed is computed again with this model
    info = json.loads((out / "ensemble.json").read_text())
    info["model_sha256"] = "0" * 64
    (out / "ensemble.json").write_text(json.dumps(info))
    stale = {p: p.stat().st_mtime_ns for p in out.glob("seeds/*/timeseries.csv")}
    res = run_cli("ensemble", "baseline", "--seeds", "3", "--months", "3", "--out", str(out), "--force", "--quiet")
    assert res.returncode == 0 and "warning" not in res.stderr, res.stderr
    assert json.loads((out / "ensemble.json").read_text())["model_sha256"] != "0" * 64
    fresh = {p: p.stat().st_mtime_ns for p in out.glob("seeds/*/timeseries.csv")}
    assert len(fresh) == 3 and all(fresh[p] != stale.get(p) for p in fresh)


# ------------------------------------------------------------------------------------------------ comparisons
def test_paired_stats_known_difference():
    """b = a + 1.5 + small noise: mean difference about 1.5, its CI holds 1.5 and excludes 0."""
    rng = np.random.default_rng(3)
    a = rng.normal(10.0, 3.0, 40)
    b = a + 1.5 + rng.normal(0.0, 0.01, 40)
    s = paired_stats(a, b)
    assert s.n == 40 and s.mean == pytest.approx(1.5, abs=0.01)
    assert s.lo < 1.5 < s.hi and s.lo > 0 and s.significant
    d = b - a
    half = stats.t.ppf(0.975, 39) * np.std(d, ddof=1) / np.sqrt(40)
    assert (s.lo, s.hi) == pytest.approx((np.mean(d) - half, np.mean(d) + half), rel=1e-12)


def test_paired_stats_identical_and_degenerate():
    """Identical samples: difference 0, not significant; missing pairs dropped; n < 2 has no CI."""
    a = np.array([1.0, 2.0, 5.0, 7.0])
    s = paired_stats(a, a.copy())
    assert (s.mean, s.std, s.lo, s.hi, s.n) == (0.0, 0.0, 0.0, 0.0, 4) and not s.significant
    s = paired_stats([1.0, math.nan, 3.0], [2.0, 5.0, math.nan])
    assert s.n == 1 and s.mean == 1.0 and math.isnan(s.lo) and not s.significant
    assert paired_stats([], []).n == 0
    s = log10_paired_stats([1.0, 10.0, 100.0, 0.0], [10.0, 100.0, 1000.0, 5.0])
    assert s.n == 3 and s.mean == pytest.approx(1.0) and s.std == pytest.approx(0.0, abs=1e-12)


def test_parse_horizons():
    assert parse_horizons("36,12, 12,120") == [12, 36, 120]
    for bad in ("", "12,", "x", "0", "-3", "1.5"):
        with pytest.raises(ValueError):
            parse_horizons(bad)


def test_compare_common_random_numbers(tmp_path):
    """baseline vs mega_deal (the deal fires at month 24): identical at horizon 12, different at 30."""
    out = tmp_path / "cmp"
    assert main(["compare", "baseline", "mega_deal", "--seeds", "3", "--months", "36", "--horizons", "12,30",
                 "--out", str(out), "--quiet"]) == 0
    rows = read_csv(out / "comparison.csv")
    assert len(rows) == 2 * len(HEADLINE_METRICS) * 2
    assert {r["metric"] for r in rows} == set(HEADLINE_METRICS)
    at12 = [r for r in rows if r["horizon"] == "12"]
    for r in at12:
        if r["n"] == "0":  # undefined in every seed (no small lab is 24 months old yet)
            assert r["diff_mean"] == "" and r["metric"] in NULLABLE
            continue
        assert float(r["diff_mean"]) == 0.0 and r["significant"] == "False", r
        if r["metric"] in LOG_METRICS:
            assert float(r["log10_diff_mean"]) == 0.0
    at30 = [r for r in rows if r["horizon"] == "30" and r["scenario"] == "mega_deal"]
    assert any(r["diff_mean"] not in ("", "0.0") for r in at30)
    # common random numbers: each seed's first 24 months are identical in the two scenarios
    for b, m in zip(sorted((out / "baseline" / "seeds").iterdir()), sorted((out / "mega_deal" / "seeds").iterdir()),
                    strict=True):
        assert b.name == m.name
        assert (b / "timeseries.csv").read_text().splitlines()[:25] == \
            (m / "timeseries.csv").read_text().splitlines()[:25]
    md = (out / "comparison.md").read_text()
    assert "## Horizon 12 months" in md and "## Horizon 30 months" in md
    assert "abm compare baseline mega_deal --seeds 3" in md
    for metric in HEADLINE_METRICS:
        png = out / "figures" / f"{metric}.png"
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("baseline", "mega_deal"):
        assert (out / name / "ensemble.csv").is_file() and (out / name / "ensemble.json").is_file()


@pytest.mark.parametrize("case", ["unknown_scenario", "zero_seeds", "bad_horizons", "horizons_beyond_run",
                                  "one_scenario", "not_an_ensemble_folder"])
def test_bad_input_exits_2_with_one_line_and_no_folder(tmp_path, case):
    """Each mistake: exit 2, one line on stderr, no traceback, no output folder (or the folder untouched)."""
    out = tmp_path / "out"
    args = {
        "unknown_scenario": ["ensemble", "basline", "--seeds", "2"],
        "zero_seeds": ["ensemble", "baseline", "--seeds", "0"],
        "bad_horizons": ["compare", "baseline", "mega_deal", "--seeds", "2", "--horizons", "12,x"],
        "horizons_beyond_run": ["compare", "baseline", "mega_deal", "--seeds", "2", "--horizons", "50"],
        "one_scenario": ["compare", "baseline", "--seeds", "2"],
        "not_an_ensemble_folder": ["ensemble", "baseline", "--seeds", "2"],
    }[case]
    if case == "not_an_ensemble_folder":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    res = run_cli(*args, "--months", "3", "--out", str(out))
    assert res.returncode == 2, res.stderr
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("abm: error:"), res.stderr
    assert "Traceback" not in res.stderr
    if case == "not_an_ensemble_folder":
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    else:
        assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
