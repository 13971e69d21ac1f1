"""Compare scenarios with common random numbers: paired differences of headline metrics at horizons.

Every scenario runs the same child seeds (from the first scenario's ``run.seed`` or ``--master-seed``), so
seed k of scenario X and seed k of the reference (the first scenario) share every random draw until their
rules differ. For each headline metric and horizon h (month index h-1) the paired difference
d_k = X_k - ref_k over seeds gives mean, std, a t-based 95% CI of the mean, n, and ``significant`` (the CI
excludes zero). For positive, heavy-tailed metrics (:data:`LOG_METRICS`) the paired difference of log10
values is reported as well (``log10_diff_*``): its mean is the average log10 ratio X/ref, so 0.3 means
about twice as large; pairs where either value is not positive are left out (``log10_n``).

Outputs in DIR: ``comparison.csv`` (one row per scenario x metric x horizon, the reference included with a
zero difference) and ``comparison.md`` (a table per horizon, with the command that reproduces it); the
command also draws ``figures/<metric>.png`` with :mod:`analysis.views.comparison_figures`.
"""

from __future__ import annotations

import io
import math
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .ensemble import SeedData, atomic_write, t975, table_text

HEADLINE_METRICS = [
    "lab_hhi_compute", "lab_hhi_revenue", "lab_hhi_capital", "lab_top3_share_compute", "entry_barrier_usd",
    "frontier_capability", "efficiency_share_of_progress", "marginal_capability_per_usd",
    "cloud_hhi_capacity", "spot_price_usd_per_h100e_hour", "labs_active", "small_lab_survival_24m",
    "frontier_training_flop", "installed_h100e",
]
# Positive and heavy-tailed: also compared as log10 values, and drawn on a log scale.
LOG_METRICS = {"entry_barrier_usd", "frontier_training_flop", "installed_h100e", "marginal_capability_per_usd"}
DEFAULT_HORIZONS = (12, 36, 60, 120)
CSV_COLUMNS = [
    "scenario", "reference", "metric", "horizon", "month", "step", "mean", "reference_mean", "n",
    "diff_mean", "diff_std", "diff_ci_lo", "diff_ci_hi", "significant",
    "log10_diff_mean", "log10_diff_std", "log10_diff_ci_lo", "log10_diff_ci_hi", "log10_n",
    "log10_significant",
]


# ------------------------------------------------------------------------------------------------ statistics
class PairedStats(NamedTuple):
    """Paired difference b - a: mean, std (ddof 1), 95% CI of the mean [lo, hi] (t-based), pairs n."""

    mean: float
    std: float
    lo: float
    hi: float
    n: int

    @property
    def significant(self) -> bool:
        """The 95% CI excludes zero (False when it is undefined, n < 2)."""
        return bool(self.lo > 0 or self.hi < 0)


def paired_stats(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> PairedStats:
    """Statistics of the paired differences ``b[k] - a[k]``, over pairs where both are finite.

    CI: mean ± t_{0.975, n-1}·std/√n; std and CI are NaN for n < 2 and the mean is NaN for n = 0.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples need the same shape, got {a.shape} and {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b)
    d = b[ok] - a[ok]
    n = int(d.size)
    if n == 0:
        return PairedStats(math.nan, math.nan, math.nan, math.nan, 0)
    mean = float(np.mean(d))
    if n < 2:
        return PairedStats(mean, math.nan, math.nan, math.nan, 1)
    std = float(np.std(d, ddof=1))
    half = t975(n - 1) * std / math.sqrt(n)
    return PairedStats(mean, std, mean - half, mean + half, n)


def log10_paired_stats(a, b) -> PairedStats:
    """:func:`paired_stats` of log10 values, over pairs where both values are finite and > 0."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
    return paired_stats(np.log10(a[ok]), np.log10(b[ok]))


def parse_horizons(text: str) -> list[int]:
    """``"12,36,60,120"`` -> [12, 36, 60, 120]: whole numbers >= 1, sorted, duplicates dropped."""
    parts = [p.strip() for p in str(text).split(",")]
    if not parts or any(not p for p in parts):
        raise ValueError(f"expected comma-separated whole numbers >= 1, got {text!r}")
    out = set()
    for p in parts:
        try:
            v = int(p)
        except ValueError:
            raise ValueError(f"expected comma-separated whole numbers >= 1, got {text!r}") from None
        if v < 1:
            raise ValueError(f"horizons are months >= 1, got {v} in {text!r}")
        out.add(v)
    return sorted(out)


def _nanmean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(np.mean(x)) if x.size else math.nan


def comparison_rows(names: Sequence[str], data: dict[str, SeedData], horizons: Sequence[int],
                    metrics: Sequence[str] = HEADLINE_METRICS) -> list[dict]:
    """One dict per scenario x metric x horizon (horizons within the run only), reference first.

    ``data[name].values[k]`` must hold seed k of every scenario (common random numbers)."""
    ref = names[0]
    r = data[ref]
    rows = []
    for h in horizons:
        if h > len(r.months):
            continue
        m = h - 1
        for metric in metrics:
            if metric not in r.columns:
                continue
            j = r.columns.index(metric)
            a = r.values[:, m, j]
            for name in names:
                d = data[name]
                b = d.values[:, m, d.columns.index(metric)]
                s = paired_stats(a, b)
                row = {"scenario": name, "reference": ref, "metric": metric, "horizon": h,
                       "month": d.months[m], "step": d.steps[m], "mean": _nanmean(b),
                       "reference_mean": _nanmean(a), "n": s.n, "diff_mean": s.mean, "diff_std": s.std,
                       "diff_ci_lo": s.lo, "diff_ci_hi": s.hi, "significant": s.significant}
                if metric in LOG_METRICS:
                    ls = log10_paired_stats(a, b)
                    row.update(log10_diff_mean=ls.mean, log10_diff_std=ls.std, log10_diff_ci_lo=ls.lo,
                               log10_diff_ci_hi=ls.hi, log10_n=ls.n, log10_significant=ls.significant)
                rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------ writing
def write_csv(path: Path, rows: list[dict]) -> None:
    atomic_write(path, table_text(CSV_COLUMNS, ([r.get(c) for c in CSV_COLUMNS] for r in rows)))


def fmt(v) -> str:
    """A compact human-readable number for the Markdown tables."""
    if v is None:
        return "n/a"
    f = float(v)
    if math.isnan(f):
        return "n/a"
    if f == 0:
        return "0"
    if abs(f) >= 1e5 or abs(f) < 1e-3:
        return f"{f:.3g}"
    if abs(f) >= 100:
        return f"{f:,.0f}"
    return f"{f:.4g}"


def _diff_cell(mean, lo, hi, sig) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    ci = f" [{fmt(lo)}, {fmt(hi)}]" if lo is not None and not math.isnan(lo) else ""
    return f"{fmt(mean)}{ci}{' ✓' if sig else ''}"


def markdown(rows: list[dict], names: Sequence[str], n_seeds: int, master_seed: int, months: int,
             horizons: Sequence[int], command: str) -> str:
    """comparison.md: a table per horizon (metric, each scenario's mean, differences to the reference)."""
    ref, others = names[0], list(names[1:])
    out = io.StringIO()
    out.write(f"# Scenario comparison: {', '.join(names)}\n\n")
    out.write(f"{n_seeds} seeds per scenario, {months} months, common random numbers: seed k of every "
              f"scenario is child k of master seed {master_seed}. Differences are paired, scenario − "
              f"{ref}, over seeds: mean [95% CI of the mean, t-based]; ✓ = the CI excludes zero. For "
              f"{', '.join(sorted(LOG_METRICS))} the row `log10 ...` is the paired difference of log10 values "
              "(0.3 ≈ twice as large).\n\n")
    skipped = [h for h in horizons if h > months]
    if skipped:
        out.write(f"Horizons beyond the run's {months} months skipped: {', '.join(map(str, skipped))}.\n\n")
    out.write(f"Reproduce with:\n\n```\n{command}\n```\n")
    by_h: dict[int, list[dict]] = {}
    for r in rows:
        by_h.setdefault(r["horizon"], []).append(r)
    for h, hrows in by_h.items():
        idx = {(r["scenario"], r["metric"]): r for r in hrows}
        metrics = list(dict.fromkeys(r["metric"] for r in hrows))
        month = hrows[0]["month"]
        out.write(f"\n## Horizon {h} months ({month})\n\n")
        head = ["metric", f"{ref} mean"]
        for o in others:
            head += [f"{o} mean", f"{o} − {ref}"]
        out.write("| " + " | ".join(head) + " |\n")
        out.write("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|\n")
        for metric in metrics:
            base = idx[(ref, metric)]
            cells = [f"`{metric}`", fmt(base["mean"])]
            for o in others:
                r = idx[(o, metric)]
                cells += [fmt(r["mean"]), _diff_cell(r["diff_mean"], r["diff_ci_lo"], r["diff_ci_hi"],
                                                     r["significant"])]
            out.write("| " + " | ".join(cells) + " |\n")
            if metric in LOG_METRICS:
                cells = [f"`log10 {metric}`", ""]
                for o in others:
                    r = idx[(o, metric)]
                    cells += ["", _diff_cell(r.get("log10_diff_mean"), r.get("log10_diff_ci_lo"),
                                             r.get("log10_diff_ci_hi"), r.get("log10_significant"))]
                out.write("| " + " | ".join(cells) + " |\n")
    return out.getvalue()


def command_line(names: Sequence[str], n_seeds: int, master_seed: int, months: int, horizons: Sequence[int],
                 overrides: Sequence[str], out: Path, fmt: str = "csv") -> str:
    """The ``abm compare`` command that reproduces a comparison (executor options do not matter)."""
    args = ["abm", "compare", *names, "--seeds", str(n_seeds), "--master-seed", str(master_seed),
            "--months", str(months), "--horizons", ",".join(map(str, horizons))]
    for o in overrides:
        args += ["--set", o]
    if fmt != "csv":
        args += ["--format", fmt]
    args += ["--out", str(out)]
    return shlex.join(args)
