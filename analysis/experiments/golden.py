"""The golden regression file: the baseline, seed 1, summarised after 12, 60 and 120 months.

``tests/data/golden_baseline_seed1.json`` holds every timeseries column of the baseline run with seed 1 at
those months (floats at full precision), with the model fingerprint that made them. The test suite reruns
the baseline and compares: any change of the model's behaviour, intended or not, shows up there first.
When the model changes on purpose, rewrite the file and commit it with the change::

    python -m analysis.experiments.golden update     # or: make golden
    python -m analysis.experiments.golden check      # what the test does; exit 1 on a difference

Values are compared to a relative tolerance of :data:`RTOL` (far below any behavioural change, above the
last-digit differences a different CPU's floating point could give); a column added or removed is a
difference too.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

SCENARIO = "baseline"
SEED = 1
MONTHS = (12, 60, 120)
RTOL = 1e-9
PATH = Path(__file__).resolve().parents[2] / "tests" / "data" / "golden_baseline_seed1.json"


def summary() -> dict:
    """The baseline with seed 1 run for max(MONTHS) months: every timeseries column after each of MONTHS."""
    from abm.scenario import load_scenario

    from ..runio import run_scenario
    from .ensemble import model_fingerprint

    model = run_scenario(load_scenario(SCENARIO, seed=SEED, months=max(MONTHS)), record_flows=False)
    months = {}
    for m in MONTHS:
        row = model.rows[m - 1]
        months[str(m)] = {k: _plain(v) for k, v in row.items()}
    return {"scenario": SCENARIO, "seed": SEED, "model_sha256": model_fingerprint(), "months": months}


def _plain(v):
    if isinstance(v, bool | str) or v is None:
        return v
    f = float(v)
    if math.isnan(f):
        return None
    return int(v) if float(v).is_integer() and not isinstance(v, float) else f


def differences(golden: dict, now: dict, rtol: float = RTOL) -> list[str]:
    """Every (month, column) where ``now`` differs from ``golden``, as readable lines."""
    out = []
    for m, cols in sorted(golden["months"].items(), key=lambda kv: int(kv[0])):
        new = now["months"].get(m)
        if new is None:
            out.append(f"month {m}: missing")
            continue
        for k in sorted(set(cols) | set(new)):
            if k not in new or k not in cols:
                out.append(f"month {m} {k}: {'removed' if k not in new else 'added'}")
                continue
            a, b = cols[k], new[k]
            if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
                if not math.isclose(a, b, rel_tol=rtol, abs_tol=1e-300):
                    out.append(f"month {m} {k}: {a!r} in the golden file, {b!r} now")
            elif a != b:
                out.append(f"month {m} {k}: {a!r} in the golden file, {b!r} now")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.experiments.golden",
                                description="Check or rewrite the golden regression file (baseline, seed 1).")
    p.add_argument("action", choices=("check", "update"))
    p.add_argument("--file", type=Path, default=PATH, help=f"the golden file (default {PATH.name} in tests/data)")
    args = p.parse_args(argv)
    now = summary()
    if args.action == "update":
        args.file.parent.mkdir(parents=True, exist_ok=True)
        args.file.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(f"wrote {args.file}: {SCENARIO} seed {SEED} at months {', '.join(map(str, MONTHS))}")
        return 0
    try:
        golden = json.loads(args.file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"golden: error: {args.file}: {exc}", file=sys.stderr)
        return 2
    diff = differences(golden, now)
    if diff:
        print(f"golden: {len(diff)} values differ from {args.file}:", *diff[:20], sep="\n  ")
        return 1
    n = sum(len(c) for c in golden["months"].values())
    print(f"golden: {n} values at months {', '.join(sorted(golden['months'], key=int))} agree (rtol {RTOL:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
