"""Headline-metric equivalence with the reference sample of the model before a change of algorithm.

The slow tests run the current model on the reference's seeds and require every Welch CI of the difference
of means to contain 0 (Bonferroni family level 0.05), and show that the check has power: a world with slower
demand growth is detected. The fast tests cover the t quantile, the Welch CI, compare_samples, the CSV
round trip and the command line's errors.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

from analysis.experiments.ensemble import child_seeds
from analysis.experiments.equivalence import (
    METRICS,
    EquivalenceError,
    Sample,
    compare_samples,
    equivalent,
    format_table,
    headline_sample,
    main,
    paired_ci,
    read_sample,
    t_quantile,
    welch_ci,
    write_sample,
)

REFERENCE = Path(__file__).resolve().parent / "data" / "reference_baseline.csv"
MASTER_SEED, N_SEEDS = 1, 200
CONTROL_SEEDS = 40
CONTROL_OVERRIDES = {"demand.growth_annual": 1.45}  # baseline 1.9x a year (potential demand)
WORKERS = min(2, os.cpu_count() or 1)


# ------------------------------------------------------------------------------------------------ the model
@pytest.fixture(scope="module")
def reference() -> Sample:
    return read_sample(REFERENCE)


def _horizons(sample: Sample) -> list[int]:
    return sorted({month for _, month in sample.keys()})


@pytest.fixture(scope="module")
def current(reference: Sample) -> Sample:
    seeds = child_seeds(MASTER_SEED, N_SEEDS)
    return headline_sample("baseline", seeds=seeds, horizons=_horizons(reference), workers=WORKERS)


def test_reference_file_matches_its_description(reference: Sample):
    assert list(reference.seeds) == child_seeds(MASTER_SEED, N_SEEDS)
    assert set(reference.keys()) == {(m, h) for m in METRICS for h in (36, 60, 120)}


@pytest.mark.slow
def test_current_model_is_equivalent_to_reference(reference: Sample, current: Sample):
    rows = compare_samples(reference, current)
    assert len(rows) == len(METRICS) * 3
    assert equivalent(rows), "headline means differ from the reference:\n" + format_table(
        [r for r in rows if not r.ok])


@pytest.mark.slow
def test_check_detects_a_perturbed_world(reference: Sample):
    seeds = child_seeds(MASTER_SEED, CONTROL_SEEDS)
    perturbed = headline_sample("baseline", seeds=seeds, horizons=_horizons(reference),
                                overrides=CONTROL_OVERRIDES, workers=WORKERS)
    rows = compare_samples(reference, perturbed)
    bad = [r for r in rows if not r.ok]
    assert not equivalent(rows)
    # Not one borderline comparison: several metrics, at several horizons.
    assert len(bad) >= 8, format_table(rows)
    assert len({r.metric for r in bad}) >= 4, format_table(rows)


# ------------------------------------------------------------------------------------------------ t quantile
@pytest.mark.parametrize(("p", "df", "expected"), [
    (0.975, 1, 12.706204736174694),
    (0.975, 10, 2.228138851986274),
    (0.975, 30, 2.0422724563012378),
    (0.95, 5, 2.0150483733330233),
    (0.995, 10, 3.16927267261695),
    (0.9995, 10, 4.586893858702708),
    (0.999, 20, 3.5518083432033323),
    (0.9995, 60, 3.460200469196392),
    (0.975, math.inf, 1.959963984540054),
    (0.9995, math.inf, 3.2905267314919255),
])
def test_t_quantile_matches_tables(p, df, expected):
    assert t_quantile(p, df) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("p", [0.55, 0.9, 0.975, 0.999, 0.99999])
def test_t_quantile_closed_forms(p):
    # df = 1 is the Cauchy distribution; for df = 2 the CDF is 1/2 + t / (2 sqrt(2 + t^2)).
    assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-9)
    assert t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-9)


def test_t_quantile_symmetry_monotonicity_and_bad_input():
    assert t_quantile(0.5, 7) == 0.0
    assert t_quantile(0.025, 7.5) == pytest.approx(-t_quantile(0.975, 7.5), rel=1e-12)
    qs = [t_quantile(0.999, df) for df in (3, 3.5, 4, 10, 10.25, 100, 1e4, math.inf)]
    assert all(a > b for a, b in zip(qs, qs[1:], strict=False))
    for p, df in [(0.0, 5), (1.0, 5), (0.9, 0), (0.9, -1), (0.9, math.nan)]:
        assert math.isnan(t_quantile(p, df))


# ------------------------------------------------------------------------------------------------ Welch CI
def test_welch_ci_by_hand():
    # Equal sizes and variances: df = 2(n - 1) = 4, se = sqrt(1/3 + 1/3).
    diff, lo, hi, df = welch_ci(np.array([0.0, 1.0, 2.0]), np.array([5.0, 6.0, 7.0]), 0.95)
    half = 2.7764451051977934 * math.sqrt(2 / 3)
    assert (diff, df) == (pytest.approx(5.0), pytest.approx(4.0))
    assert (lo, hi) == (pytest.approx(5.0 - half), pytest.approx(5.0 + half))
    # Unequal: va = (5/3)/4, vb = 10/5, df = (va + vb)^2 / (va^2/3 + vb^2/4).
    diff, lo, hi, df = welch_ci(np.array([1.0, 2, 3, 4]), np.array([2.0, 4, 6, 8, 10]), 0.95)
    va, vb = 5 / 12, 2.0
    assert df == pytest.approx((va + vb) ** 2 / (va**2 / 3 + vb**2 / 4))
    assert hi - diff == pytest.approx(t_quantile(0.975, df) * math.sqrt(va + vb))


def test_welch_ci_degenerate():
    assert welch_ci(np.array([1.0, 1.0]), np.array([1.0, 1.0]), 0.95)[1:3] == (0.0, 0.0)
    diff, lo, hi, _ = welch_ci(np.array([1.0, 1.0]), np.array([2.0, 2.0]), 0.95)
    assert (diff, lo, hi) == (1.0, 1.0, 1.0)
    assert all(math.isnan(v) for v in welch_ci(np.array([1.0]), np.array([1.0, 2.0]), 0.95)[1:])


# ------------------------------------------------------------------------------------------------ compare_samples
def _sample(seed: int, n: int = 40, shift: dict | None = None) -> Sample:
    rng = np.random.default_rng(seed)
    values = {(m, h): rng.normal(10.0, 2.0, n) + (shift or {}).get((m, h), 0.0) for m in METRICS
              for h in (36, 60, 120)}
    return Sample(tuple(range(100, 100 + n)), values)


def test_identical_samples_are_equivalent():
    s = _sample(0)
    rows = compare_samples(s, s, paired=False)
    assert equivalent(rows)
    assert all(r.diff == 0 and r.ci_lo < 0 < r.ci_hi for r in rows)
    assert all(r.ok and r.ci_lo == r.ci_hi == 0 for r in compare_samples(s, s))  # paired: exactly zero
    assert rows[0].level == pytest.approx(1 - 0.05 / len(rows))
    assert [(r.metric, r.month) for r in rows] == s.keys()


def test_independent_samples_of_one_distribution_are_equivalent():
    assert equivalent(compare_samples(_sample(1), _sample(2, n=25)))


def test_a_shift_of_several_standard_errors_is_detected():
    key = (METRICS[3], 60)
    ref = _sample(3)
    se = math.sqrt(2 * 4.0 / 40)  # sd 2 on both sides, n 40
    rows = compare_samples(ref, _sample(3, shift={key: 8 * se}))
    assert not equivalent(rows)
    assert [(r.metric, r.month) for r in rows if not r.ok] == [key]
    (row,) = [r for r in rows if (r.metric, r.month) == key]
    assert row.diff == pytest.approx(8 * se) and row.ci_lo > 0


def test_nan_values_are_left_out():
    ref, new = _sample(4), _sample(4)
    key = (METRICS[0], 36)
    new.values[key][:5] = np.nan
    rows = {(r.metric, r.month): r for r in compare_samples(ref, new)}
    assert (rows[key].n_ref, rows[key].n_new) == (40, 35)
    assert math.isfinite(rows[key].ci_lo) and rows[key].ok
    assert rows[key].new_mean == pytest.approx(np.mean(ref.values[key][5:]))


def test_undefined_metrics():
    ref, new = _sample(5), _sample(5)
    both, one = (METRICS[1], 36), (METRICS[2], 36)
    ref.values[both][:] = np.nan
    new.values[both][:] = np.nan
    new.values[one][:] = np.nan
    rows = {(r.metric, r.month): r for r in compare_samples(ref, new)}
    assert rows[both].ok  # undefined in both
    assert not rows[one].ok and rows[one].n_new == 0
    # A key that one sample lacks is not ok.
    del new.values[(METRICS[4], 120)]
    rows = {(r.metric, r.month): r for r in compare_samples(ref, new)}
    assert not rows[(METRICS[4], 120)].ok


# ------------------------------------------------------------------------------------------------ CSV
def test_csv_round_trip(tmp_path: Path):
    s = _sample(6, n=5)
    s.values[(METRICS[0], 60)][2] = np.nan
    path = tmp_path / "s.csv"
    write_sample(path, s)
    back = read_sample(path)
    assert back.seeds == s.seeds
    assert back.keys() == s.keys()
    for k in s.keys():
        np.testing.assert_array_equal(back.values[k], s.values[k])  # NaN == NaN here, floats exact
    assert path.read_text().splitlines()[0] == "seed_index,seed,metric,month,value"


@pytest.mark.parametrize(("text", "match"), [
    ("a,b\n", "not a sample file"),
    ("seed_index,seed,metric,month,value\n0,7,m,36,abc\n", "not a number"),
    ("seed_index,seed,metric,month,value\n0,7,m,36,1.0\n1,8,m,36\n", "expected 5 fields"),
    ("seed_index,seed,metric,month,value\n0,7,m,36,1.0\n1,8,m,36,2.0\n0,7,m,60,1.0\n", "has 1 of 2 seeds"),
    ("seed_index,seed,metric,month,value\n0,7,m,36,1.0\n0,8,m,60,2.0\n", "seed index 0"),
    ("seed_index,seed,metric,month,value\n0,7,m,36,1.0\n0,7,m,36,2.0\n", "duplicate"),
    ("seed_index,seed,metric,month,value\n", "no values"),
])
def test_read_sample_rejects_bad_files(tmp_path: Path, text: str, match: str):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(EquivalenceError, match=match):
        read_sample(path)


# ------------------------------------------------------------------------------------------------ command line
def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("equivalence: error: ")
    return err


@pytest.mark.parametrize("argv", [
    ["check", "--reference", "no/such/file.csv", "--seeds", "40"],
    ["check", "--reference", str(REFERENCE), "--seeds", "forty"],
    ["check", "--reference", str(REFERENCE), "--seeds", "0"],
    ["check", "--reference", str(REFERENCE), "--alpha", "1.5"],
    ["make-reference", "--seeds", "3", "--out", "no/such/dir/ref.csv"],
    ["make-reference", "--seeds", "3", "--out", "{tmp}"],
    ["make-reference", "--seeds", "3", "--horizons", "x", "--out", "ref.csv"],
    ["make-reference", "--seeds", "3", "--scenario", "no_such_scenario", "--out", "{tmp}/ref.csv"],
    ["check"],
    [],
])
def test_cli_errors_are_one_line(argv, capsys, tmp_path: Path):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(argv))
    assert exc.value.code == 2
    _one_error_line(capsys)
    assert not (tmp_path / "ref.csv").exists()


def test_cli_make_reference_and_check(tmp_path: Path, capsys):
    ref = tmp_path / "ref.csv"
    args = ["--seeds", "3", "--master-seed", "5"]
    assert main(["make-reference", *args, "--horizons", "6,12", "--out", str(ref)]) == 0
    sample = read_sample(ref)
    assert list(sample.seeds) == child_seeds(5, 3)
    assert main(["check", *args, "--reference", str(ref)]) == 0
    out = capsys.readouterr().out
    assert "equivalent: 20 of 20 CIs contain 0" in out
    assert "ref mean" in out and "CI of diff" in out
    # The same file with one metric moved far away: exit status 1.
    lines = ref.read_text().splitlines()
    moved = [line if ",frontier_capability,12," not in line else line.rsplit(",", 1)[0] + ",1000.0"
             for line in lines]
    ref.write_text("\n".join(moved) + "\n")
    assert main(["check", *args, "--reference", str(ref)]) == 1
    assert "NOT equivalent: 19 of 20 CIs contain 0" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize(("metric", "shift"), [("lab_hhi_compute", 500.0), ("labs_active", 2.0)])
def test_gate_detects_a_small_shift_even_between_independent_streams(reference: Sample, current: Sample,
                                                                     metric: str, shift: float):
    """The gate's power in the worst case: a change that alters the random stream leaves paired seeds as
    variable as independent samples, so the unpaired (Welch) comparison of the current sample with itself
    shifted at month 60, using both samples' real variances, must flag the shift."""
    key = (metric, 60)
    shifted = Sample(current.seeds, {k: (v + shift if k == key else v) for k, v in current.values.items()})
    rows = {(r.metric, r.month): r for r in compare_samples(current, shifted, paired=False)}
    assert not rows[key].ok, format_table([rows[key]])
    assert rows[key].ci_lo > 0
    assert all(r.ok for k, r in rows.items() if k != key)


def test_paired_ci_by_hand():
    a = np.array([1.0, 2.0, 3.0, 4.0, np.nan])
    b = np.array([2.0, 2.5, 4.5, 5.0, 9.0])  # differences 1, 0.5, 1.5, 1 (the NaN pair is left out)
    diff, lo, hi, df = paired_ci(a, b, 0.95)
    d = np.array([1.0, 0.5, 1.5, 1.0])
    half = t_quantile(0.975, 3) * d.std(ddof=1) / 2.0
    assert (diff, df) == (1.0, 3.0)
    assert (lo, hi) == pytest.approx((1.0 - half, 1.0 + half), rel=1e-12)
    assert paired_ci(a, a + 2.0, 0.95)[1:3] == (2.0, 2.0)  # identical differences: a point
    assert all(math.isnan(x) for x in paired_ci(a[:1], b[:1], 0.95)[1:])


def test_compare_pairs_only_the_same_seeds():
    a = _sample(1)
    assert compare_samples(a, a) and equivalent(compare_samples(a, a))
    other = Sample(tuple(s + 1 for s in a.seeds), a.values)
    with pytest.raises(EquivalenceError, match="same seeds"):
        compare_samples(a, other, paired=True)
    assert equivalent(compare_samples(a, other))  # different seeds: Welch
