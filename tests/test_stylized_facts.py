"""The stylized-facts statistics on samples with known answers, and the study end to end on a small ensemble."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.experiments import stylized_facts as sf


def test_kurtosis_and_skewness_known_distributions():
    rng = np.random.default_rng(0)
    assert sf.kurtosis(rng.normal(size=200_000)) == pytest.approx(3.0, abs=0.05)
    assert sf.kurtosis(rng.laplace(size=200_000)) == pytest.approx(6.0, abs=0.25)
    assert sf.skewness(rng.normal(size=200_000)) == pytest.approx(0.0, abs=0.03)
    assert sf.skewness(rng.exponential(size=200_000)) == pytest.approx(2.0, abs=0.1)
    assert math.isnan(sf.kurtosis(np.array([1.0, 2.0])))
    assert math.isnan(sf.kurtosis(np.ones(10)))


def test_rank_and_plain_correlation():
    assert sf.spearman(np.array([1, 2, 3, 4.0]), np.array([10, 20, 30, 40.0])) == pytest.approx(1.0)
    assert sf.spearman(np.array([1, 2, 3, 4.0]), np.array([4, 3, 2, 1.0])) == pytest.approx(-1.0)
    assert sf.correlation([1, 2, 3, 4], [2, 4, 6, 8]) == pytest.approx(1.0)
    assert math.isnan(sf.correlation([1, 1, 1], [1, 2, 3]))


def test_facts_of_a_hand_made_run():
    """Four labs over 48 months: sizes double or halve each year, ranks fixed, entries and exits equal."""
    months = 48
    t = np.arange(months)
    sizes = {
        "a": 100.0 * 2.0 ** (t // 12), "b": 50.0 * 2.0 ** (t // 12),
        "c": 10.0 * 0.5 ** (t // 12), "d": np.where(t < 30, 5.0, np.nan),
    }
    entries = np.zeros(months)
    exits = np.zeros(months)
    entries[[14, 26, 27]] = 1
    exits[[15, 28, 29]] = 1
    f = sf.facts_of_run(sizes, entries, exits, months)
    assert f["rank_persistence"] == pytest.approx(1.0)
    assert f["entry_exit_correlation"] == pytest.approx(1.0)
    last = np.array([800.0, 400.0, 1.25])
    assert f["size_mean_over_median"] == pytest.approx(last.mean() / 400.0)
    assert f["size_skewness"] == pytest.approx(sf.skewness(last))


def test_summary_says_when_a_fact_fails():
    per_seed = [dict(growth_kurtosis=2.0 + 0.01 * k, size_skewness=1.0, size_mean_over_median=2.0,
                     rank_persistence=0.9, entry_exit_correlation=0.3 + 0.01 * k) for k in range(5)]
    rows = {r["fact"]: r for r in sf.summarise(per_seed)}
    assert not rows["growth_kurtosis"]["holds"]
    assert rows["rank_persistence"]["holds"] and rows["entry_exit_correlation"]["holds"]


@pytest.mark.slow
def test_study_runs_on_the_baseline(tmp_path, capsys):
    assert sf.main(["baseline", "--seeds", "3", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "facts.md").read_text()
    assert text.count("\n| ") == 6  # header and five facts
    assert (tmp_path / "facts.csv").read_text().count("\n") == 6
