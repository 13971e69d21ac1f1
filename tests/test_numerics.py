"""Statistics users cite come from maintained libraries; these tests pin them to published values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.experiments.compare import paired_stats
from analysis.experiments.ensemble import t975
from analysis.views.run_data import survival_curve


def test_kaplan_meier_matches_the_textbook_example():
    # Freireich et al. (1963), 6-MP arm: weeks in remission, + = censored. The Kaplan-Meier estimates are the
    # ones printed in survival-analysis textbooks (e.g. Kleinbaum & Klein, table 2.2).
    weeks = [6, 6, 6, 7, 10, 13, 16, 22, 23, (6,), (9,), (10,), (11,), (17,), (19,), (20,), (25,), (32,), (32,),
             (34,), (35,)]
    durations = np.array([w[0] if isinstance(w, tuple) else w for w in weeks], dtype=float)
    events = np.array([not isinstance(w, tuple) for w in weeks])
    ages, surv = survival_curve(durations, events)
    assert ages.tolist() == [0, 6, 7, 10, 13, 16, 22, 23]
    expected = [1.0, 0.8571, 0.8067, 0.7529, 0.6902, 0.6275, 0.5378, 0.4482]
    assert surv == pytest.approx(expected, abs=5e-5)


def test_kaplan_meier_without_exits_is_flat():
    ages, surv = survival_curve(np.array([3.0, 5.0]), np.array([False, False]))
    assert ages.tolist() == [0.0] and surv.tolist() == [1.0]


def test_t_quantiles_match_the_printed_table():
    for df, q in ((1, 12.706), (2, 4.303), (5, 2.571), (10, 2.228), (30, 2.042), (120, 1.980)):
        assert t975(df) == pytest.approx(q, abs=5e-4)
    assert math.isnan(t975(0))


def test_paired_interval_by_hand():
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 4.0, 3.5, 6.0])
    d = b - a
    s = paired_stats(a, b)
    half = 3.182446305284263 * d.std(ddof=1) / 2.0  # t_{0.975, 3} from the table
    assert (s.mean, s.lo, s.hi, s.n) == pytest.approx((d.mean(), d.mean() - half, d.mean() + half, 4))
