"""The golden regression file (baseline, seed 1, months 12, 60 and 120) and the comparison behind it."""

from __future__ import annotations

import copy
import json

from analysis.experiments import golden


def test_baseline_matches_the_golden_file():
    saved = json.loads(golden.PATH.read_text(encoding="utf-8"))
    diff = golden.differences(saved, golden.summary())
    assert not diff, ("the baseline (seed 1) no longer matches tests/data/golden_baseline_seed1.json; if the "
                      "model changed on purpose, run `make golden` and commit the file:\n  " + "\n  ".join(diff[:20]))
    assert set(saved["months"]) == {"12", "60", "120"}
    assert len(saved["months"]["120"]) > 30


def test_differences_see_a_changed_value_and_a_missing_column():
    saved = json.loads(golden.PATH.read_text(encoding="utf-8"))
    now = copy.deepcopy(saved)
    assert golden.differences(saved, now) == []
    now["months"]["60"]["lab_hhi_compute"] *= 1 + 1e-7
    del now["months"]["120"]["labs_active"]
    diff = golden.differences(saved, now)
    assert len(diff) == 2
    assert diff[0].startswith("month 60 lab_hhi_compute") and diff[1] == "month 120 labs_active: removed"
    now = copy.deepcopy(saved)
    now["months"]["12"]["lab_hhi_compute"] *= 1 + 1e-12  # last-digit noise is within the tolerance
    assert golden.differences(saved, now) == []
