"""Stylized facts of industry dynamics, tested on an ensemble of a scenario's runs.

Four regularities that firm-dynamics studies find across industries (Bottazzi and Secchi 2006 for Laplace-like
growth rates; Axtell 2001 for skewed firm sizes; Dunne, Roberts and Samuelson 1988 for the co-movement of entry
and exit) are measured on the labs of each seed, from the model's second year on:

* growth rates fat-tailed: the kurtosis of labs' annual log growth of compute held (normal 3, Laplace 6);
* sizes right-skewed with a heavy tail: the skewness of compute held across labs alive at the end, and the
  ratio of the mean to the median;
* leaders persist: Spearman's rank correlation of labs' compute between the ends of consecutive years;
* entry and exit move together: the correlation over years of the number of entries and of exits.

Each statistic is computed per seed and reported as the mean over seeds with a t-based 95% confidence
interval. A fact holds when the interval lies on the side the literature reports; the report says so either
way and nothing is tuned to make it hold.

    python -m analysis.experiments.stylized_facts baseline --seeds 20 --workers 2 --out runs/facts
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

FACTS = (
    ("growth_kurtosis", "kurtosis of labs' annual log growth of compute", 3.0, "above",
     "fat tails: above 3, the normal's (Laplace: 6)"),
    ("size_skewness", "skewness of compute held across labs at the end", 0.0, "above",
     "right-skewed size distribution"),
    ("size_mean_over_median", "mean / median of compute held at the end", 1.0, "above",
     "heavy right tail: the mean above the median"),
    ("rank_persistence", "Spearman correlation of labs' compute, year to year", 0.5, "above",
     "leaders persist: rank correlation well above 0"),
    ("entry_exit_correlation", "correlation over years of entries and exits", 0.0, "above",
     "entry and exit move together"),
)


def _standardised_moment(x: np.ndarray, k: int) -> float:
    """E[(x - mean)^k] / var^(k/2) over the finite values; NaN with fewer than k values or no spread."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if x.size < k:
        return math.nan
    d = x - x.mean()
    m2 = float(np.mean(d**2))
    return float(np.mean(d**k) / m2 ** (k / 2)) if m2 > 0 else math.nan


def kurtosis(x: np.ndarray) -> float:
    """Pearson's kurtosis (normal = 3); NaN with fewer than 4 values or no spread."""
    return _standardised_moment(x, 4)


def skewness(x: np.ndarray) -> float:
    """Skewness; NaN with fewer than 3 values or no spread."""
    return _standardised_moment(x, 3)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN with fewer than 3 pairs or no spread."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(spearmanr(a, b).statistic)


def correlation(a: Sequence[float], b: Sequence[float]) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size < 3 or np.std(a) == 0 or np.std(b) == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def facts_of_run(sizes: dict[str, np.ndarray], entries: np.ndarray, exits: np.ndarray, months: int) -> dict[str, float]:
    """The statistics of one run. ``sizes``: each lab's compute held month by month (NaN while not alive);
    ``entries``, ``exits``: counts per month. Years start at month 12 (the first year is the initial shake-up)."""
    ends = list(range(23, months, 12))  # ends of the model's years from the second on
    growth, ranks = [], []
    for a, b in zip(ends, ends[1:], strict=False):
        x = np.array([s[a] for s in sizes.values()])
        y = np.array([s[b] for s in sizes.values()])
        ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
        growth.extend(np.log(y[ok] / x[ok]).tolist())
        ranks.append(spearman(x[ok], y[ok]))
    last = np.array([s[months - 1] for s in sizes.values()])
    last = last[np.isfinite(last) & (last > 0)]
    years = [(k, k + 12) for k in range(12, months - 11, 12)]
    ent = [float(entries[a:b].sum()) for a, b in years]
    ext = [float(exits[a:b].sum()) for a, b in years]
    return {
        "growth_kurtosis": kurtosis(np.array(growth)),
        "size_skewness": skewness(last),
        "size_mean_over_median": float(last.mean() / np.median(last)) if last.size else math.nan,
        "rank_persistence": float(np.nanmean(ranks)) if any(np.isfinite(ranks)) else math.nan,
        "entry_exit_correlation": correlation(ent, ext),
    }


def seed_facts(scenario_toml: str, seed: int, months: int) -> dict[str, float]:
    """Run one seed and return its statistics (a top-level task for process pools and Dask)."""
    import tomllib

    from abm.model import ComputeMarket
    from abm.scenario import validate

    data = tomllib.loads(scenario_toml)
    data["run"] = {**data.get("run", {}), "seed": int(seed), "months": int(months)}
    cfg = validate(data, "scenario")
    model = ComputeMarket(cfg, record_flows=False)
    for _ in range(months):
        model.step()
    sizes: dict[str, np.ndarray] = {}
    for row in model.iter_agent_rows():
        _m, step, aid, _name, typ, _k, alive, _c, _r, h100e = row[:10]
        if typ == "lab" and alive:
            sizes.setdefault(aid, np.full(months, np.nan))[int(step)] = float(h100e)
    entries = np.array([r["lab_entries"] for r in model.rows], dtype=float)
    exits = np.array([r["lab_exits"] for r in model.rows], dtype=float)
    return facts_of_run(sizes, entries, exits, months)


def summarise(per_seed: Sequence[dict[str, float]]) -> list[dict]:
    from .ensemble import t975

    out = []
    for key, label, ref, side, meaning in FACTS:
        x = np.array([d[key] for d in per_seed], dtype=float)
        x = x[np.isfinite(x)]
        mean = float(x.mean()) if x.size else math.nan
        half = float(t975(x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else math.nan
        lo, hi = mean - half, mean + half
        holds = bool(lo > ref) if side == "above" else bool(hi < ref)
        out.append({"fact": key, "statistic": label, "mean": mean, "ci_lo": lo, "ci_hi": hi, "n": int(x.size),
                    "reference": ref, "holds": holds, "meaning": meaning})
    return out


def markdown(rows: Sequence[dict], scenario: str, seeds: int, months: int) -> str:
    lines = [f"# Stylized facts: {scenario}", "",
             f"{seeds} seeds, {months} months; per-seed statistics, mean and 95% CI over seeds (t-based). A fact "
             "holds when the whole interval is on the side the literature reports.", "",
             "| fact | statistic | mean [95% CI] | reference | holds |", "|---|---|---:|---:|:-:|"]
    for r in rows:
        lines.append(f"| {r['meaning']} | {r['statistic']} | {r['mean']:.3g} [{r['ci_lo']:.3g}, {r['ci_hi']:.3g}] "
                     f"| {r['reference']:g} | {'yes' if r['holds'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from abm.scenario import ScenarioError, load_scenario, to_toml

    from .ensemble import atomic_write, child_seeds
    from .executors import make_executor

    p = argparse.ArgumentParser(prog="python -m analysis.experiments.stylized_facts",
                                description="Test the stylized facts of industry dynamics on an ensemble.")
    p.add_argument("scenario", nargs="?", default="baseline")
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--master-seed", type=int, default=1)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", default=None, help="folder for facts.md and facts.csv (default: print only)")
    args = p.parse_args(argv)
    if args.seeds < 2 or args.workers < 1:
        print("stylized_facts: error: --seeds must be at least 2 and --workers at least 1", file=sys.stderr)
        return 2
    try:
        cfg = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"stylized_facts: error: {exc}", file=sys.stderr)
        return 2
    seeds = child_seeds(args.master_seed, args.seeds)
    with make_executor(workers=args.workers) as ex:
        futs = [ex.submit(seed_facts, to_toml(cfg), s, cfg.run.months) for s in seeds]
        per_seed = [f.result() for f in futs]
    rows = summarise(per_seed)
    md = markdown(rows, cfg.name, args.seeds, cfg.run.months)
    print(md)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "facts.md", md)
        import csv
        import io

        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        atomic_write(out / "facts.csv", buf.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
