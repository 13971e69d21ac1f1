"""Statistical equivalence of the model before and after a change that alters its random stream.

A change of algorithm (a new summation order, a different matching rule) can make a seed's run differ from
the one before, so runs can no longer be compared byte for byte. Instead the ensemble statistics of the
headline metrics must agree: for every metric and horizon, the CI of the difference of the two ensemble
means must contain 0.

* :func:`headline_sample` runs one scenario for a list of seeds, each exactly as ``abm ensemble`` runs it,
  and keeps the headline metrics at the end of each horizon (month index h-1). Heavy-tailed positive
  metrics are kept as log10 values (named ``log10_<column>``); a value that is NaN, infinite or (for log
  metrics) not positive is kept as NaN and left out of the statistics.
* :func:`write_sample` / :func:`read_sample` store a sample as a long CSV,
  ``seed_index,seed,metric,month,value`` (an empty value is NaN).
* :func:`compare_samples` gives, per (metric, month), the CI of ``new mean - ref mean`` at the Bonferroni
  level ``1 - family_alpha / m`` over the m comparisons, so that the chance that any CI misses a true zero
  is at most ``family_alpha``. When both samples ran the same seeds (the check runs the reference's seeds)
  the CI is paired, on the per-seed differences (common random numbers: seed k of both versions draws the
  same initial world, so much of the between-seed variance cancels); otherwise it is Welch's (unpaired,
  unequal variances). :func:`equivalent` is True when every CI contains 0.

Command line::

    python -m analysis.experiments.equivalence make-reference --seeds 200 --out tests/data/reference_baseline.csv
    python -m analysis.experiments.equivalence check --reference tests/data/reference_baseline.csv --seeds 200

``check`` prints one row per comparison and exits 0 (equivalent) or 1 (not); a user error (missing file,
bad number, bad scenario) is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

# (timeseries column, compared on log10)
HEADLINE: tuple[tuple[str, bool], ...] = (
    ("lab_hhi_compute", False),
    ("cloud_hhi_capacity", False),
    ("entry_barrier_usd", True),
    ("frontier_capability", False),
    ("efficiency_share_of_progress", False),
    ("labs_active", False),
    ("spot_price_usd_per_h100e_hour", False),
    ("marginal_capability_per_usd", True),
    ("installed_h100e", True),
    ("vendor_hhi_shipments", False),
)
HORIZONS = (36, 60, 120)
FAMILY_ALPHA = 0.05
DEFAULT_MASTER_SEED = 1
CSV_HEADER = ["seed_index", "seed", "metric", "month", "value"]
PROG = "equivalence"
EXIT_USAGE = 2


class EquivalenceError(ValueError):
    """A user-facing problem with a sample file or the arguments; one line, exit status 2."""


def metric_name(column: str, log: bool) -> str:
    """The sample's name of a headline column: ``log10_<column>`` when it is compared on log10."""
    return f"log10_{column}" if log else column


METRICS = tuple(metric_name(c, lg) for c, lg in HEADLINE)


# ------------------------------------------------------------------------------------------------ the t quantile
def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` > 0 (real) degrees of freedom, from ``scipy.stats``;
    ``df = inf`` gives the normal quantile. NaN when ``df`` is NaN or not positive, or ``p`` is outside
    (0, 1)."""
    if not (0.0 < p < 1.0) or math.isnan(df) or df <= 0:
        return math.nan
    if math.isinf(df):
        return float(stats.norm.ppf(p))
    return float(stats.t.ppf(p, df))


# ------------------------------------------------------------------------------------------------ samples
@dataclass(frozen=True)
class Sample:
    """Headline values of one scenario over seeds: ``values[(metric, month)][seed index]`` (NaN if none)."""

    seeds: tuple[int, ...]
    values: Mapping[tuple[str, int], np.ndarray]

    def keys(self) -> list[tuple[str, int]]:
        return list(self.values)


def _headline_values(row: Mapping[str, object]) -> dict[str, float]:
    out = {}
    for col, log in HEADLINE:
        v = row[col]
        f = math.nan if v is None or v == "" else float(v)
        if not math.isfinite(f) or (log and f <= 0):
            f = math.nan
        out[metric_name(col, log)] = math.log10(f) if log and not math.isnan(f) else f
    return out


def sample_from_rows(seeds: Sequence[int], rows_per_seed: Sequence[Sequence[Mapping[str, object]]],
                     horizons: Sequence[int] = HORIZONS) -> Sample:
    """A sample from each seed's per-month rows (dicts keyed by timeseries column), at ``horizons``."""
    values = {(m, h): np.full(len(seeds), np.nan) for m in METRICS for h in horizons}
    for i, rows in enumerate(rows_per_seed):
        for h in horizons:
            if h < 1 or h > len(rows):
                raise EquivalenceError(f"horizon {h} is outside the run's {len(rows)} months")
            for m, v in _headline_values(rows[h - 1]).items():
                values[(m, h)][i] = v
    return Sample(tuple(int(s) for s in seeds), values)


def _run_rows(scenario_toml: str, seed: int, months: int) -> list[dict[str, str]]:
    """One seed's per-month rows, computed by the ensemble's task function (so exactly an ensemble seed)."""
    from .ensemble import run_seed

    return list(csv.DictReader(io.StringIO(run_seed(scenario_toml, seed, months))))


def headline_sample(scenario: str = "baseline", *, seeds: Sequence[int], horizons: Sequence[int] = HORIZONS,
                    overrides: Mapping[str, object] | Sequence[str] | None = None, workers: int = 1) -> Sample:
    """Run ``scenario`` (with ``overrides``, as ``--set``) for each seed to the last horizon and keep the
    headline metrics at every horizon.

    Each seed runs as ``abm ensemble`` runs it (:func:`analysis.experiments.ensemble.run_seed` with the
    scenario's TOML and ``run.seed = seed``); ``workers`` > 1 uses a local forkserver process pool (a calling
    script then needs the ``if __name__ == "__main__":`` guard). The sample does not depend on ``workers``.
    Raises ScenarioError for a bad scenario or override.
    """
    from abm.scenario import load_scenario, to_toml

    from .executors import make_executor

    horizons = tuple(int(h) for h in horizons)
    if not horizons or min(horizons) < 1:
        raise EquivalenceError(f"horizons must be positive months (given {horizons})")
    months = max(horizons)
    toml = to_toml(load_scenario(scenario, overrides=overrides or None, months=months))
    with make_executor(workers=max(1, min(int(workers), len(seeds) or 1))) as ex:
        futures = [ex.submit(_run_rows, toml, int(s), months) for s in seeds]
        rows = [f.result() for f in futures]
    return sample_from_rows(seeds, rows, horizons)


def _cell(v: float) -> str:
    return "" if math.isnan(v) else repr(float(v))


def write_sample(path: str | Path, sample: Sample) -> None:
    """Write ``sample`` as CSV ``seed_index,seed,metric,month,value``, one row per seed, metric and month
    (through a temporary file, so that the file is complete or absent)."""
    from .ensemble import atomic_write

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER)
    for (metric, month), vals in sample.values.items():
        for i, seed in enumerate(sample.seeds):
            w.writerow([i, seed, metric, month, _cell(vals[i])])
    atomic_write(Path(path), buf.getvalue())


def read_sample(path: str | Path) -> Sample:
    """Read a sample written by :func:`write_sample`; every seed must have every (metric, month).

    Raises EquivalenceError (one line) for a missing or malformed file.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise EquivalenceError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise EquivalenceError(f"{path}: not a text CSV file") from None
    if not rows or rows[0] != CSV_HEADER:
        raise EquivalenceError(f"{path}: not a sample file (header must be {','.join(CSV_HEADER)})")
    seeds: dict[int, int] = {}
    cells: dict[tuple[str, int], dict[int, float]] = {}
    for line, r in enumerate(rows[1:], start=2):
        if len(r) != len(CSV_HEADER):
            raise EquivalenceError(f"{path}:{line}: expected {len(CSV_HEADER)} fields, got {len(r)}")
        try:
            idx, seed, month = int(r[0]), int(r[1]), int(r[3])
            value = math.nan if r[4] == "" else float(r[4])
        except ValueError:
            raise EquivalenceError(f"{path}:{line}: not a number in {','.join(r)!r}") from None
        if idx < 0 or seeds.setdefault(idx, seed) != seed:
            raise EquivalenceError(f"{path}:{line}: seed index {idx} has seed {seed} here and "
                                   f"{seeds.get(idx)} before")
        by_seed = cells.setdefault((r[2], month), {})
        if idx in by_seed:
            raise EquivalenceError(f"{path}:{line}: duplicate value for seed index {idx}, {r[2]} month {month}")
        by_seed[idx] = value
    n = len(seeds)
    if n == 0:
        raise EquivalenceError(f"{path}: no values")
    if sorted(seeds) != list(range(n)):
        raise EquivalenceError(f"{path}: seed indices are not 0..{n - 1}")
    values = {}
    for key, by_seed in cells.items():
        if len(by_seed) != n:
            raise EquivalenceError(f"{path}: {key[0]} month {key[1]} has {len(by_seed)} of {n} seeds")
        values[key] = np.array([by_seed[i] for i in range(n)], dtype=float)
    return Sample(tuple(seeds[i] for i in range(n)), values)


# ------------------------------------------------------------------------------------------------ comparing
@dataclass(frozen=True)
class Comparison:
    """One (metric, month): the means (NaN left out), ``diff = new - ref`` and its CI (paired or Welch) at the
    Bonferroni level; ``ok`` when the CI contains 0 (or the metric is undefined in both samples)."""

    metric: str
    month: int
    n_ref: int
    n_new: int
    ref_mean: float
    new_mean: float
    diff: float
    ci_lo: float
    ci_hi: float
    df: float
    level: float
    ok: bool


def welch_ci(a: np.ndarray, b: np.ndarray, level: float) -> tuple[float, float, float, float]:
    """(mean(b) - mean(a), CI low, CI high, Welch df) at two-sided ``level``; NaNs are left out.

    With fewer than two values on a side the CI is NaN; with zero variance on both sides it is the point
    ``[diff, diff]`` (df NaN).
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if len(a) == 0 or len(b) == 0:
        return math.nan, math.nan, math.nan, math.nan
    diff = float(b.mean() - a.mean())
    if len(a) < 2 or len(b) < 2:
        return diff, math.nan, math.nan, math.nan
    if float(a.var(ddof=1)) + float(b.var(ddof=1)) == 0:
        return diff, diff, diff, math.nan
    with warnings.catch_warnings():  # nearly equal values: scipy warns of precision loss; the CI stands
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_ind(b, a, equal_var=False)
        ci = res.confidence_interval(confidence_level=level)
    return diff, float(ci.low), float(ci.high), float(res.df)


def paired_ci(a: np.ndarray, b: np.ndarray, level: float) -> tuple[float, float, float, float]:
    """(mean of b - a over seeds where both are defined, CI low, CI high, df = n - 1) at two-sided ``level``.

    With fewer than two pairs the CI is NaN; with identical differences it is the point ``[d, d]``."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    both = ~np.isnan(a) & ~np.isnan(b)
    d = b[both] - a[both]
    if d.size == 0:
        return math.nan, math.nan, math.nan, math.nan
    diff = float(d.mean())
    if d.size < 2:
        return diff, math.nan, math.nan, math.nan
    if float(d.std(ddof=1)) == 0:
        return diff, diff, diff, float(d.size - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ci = stats.ttest_1samp(d, 0.0).confidence_interval(confidence_level=level)
    return diff, float(ci.low), float(ci.high), float(d.size - 1)


def _mean(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(x.mean()) if len(x) else math.nan


def compare_samples(ref: Sample, new: Sample, family_alpha: float = FAMILY_ALPHA,
                    paired: bool | None = None) -> list[Comparison]:
    """CIs of ``new - ref`` for every (metric, month) of either sample, at the Bonferroni level
    ``1 - family_alpha / m`` (m = number of comparisons), in the reference's order: paired over seeds when
    ``paired`` (by default: when both samples ran the same seeds in the same order), else Welch's.

    A key missing from one sample, or with fewer than two values on a side while the other side has
    values, is not ok; a key with no value in either sample is ok (undefined in both).
    """
    if not 0 < family_alpha < 1:
        raise EquivalenceError(f"family alpha must be in (0, 1) (given {family_alpha})")
    if paired is None:
        paired = tuple(ref.seeds) == tuple(new.seeds)
    elif paired and tuple(ref.seeds) != tuple(new.seeds):
        raise EquivalenceError("a paired comparison needs the same seeds in both samples")
    keys = ref.keys() + [k for k in new.keys() if k not in ref.values]
    level = 1.0 - family_alpha / max(len(keys), 1)
    out = []
    empty = np.array([], dtype=float)
    for metric, month in keys:
        a = ref.values.get((metric, month), empty)
        b = new.values.get((metric, month), empty)
        na, nb = int(np.sum(~np.isnan(a))), int(np.sum(~np.isnan(b)))
        pair = paired and a.shape == b.shape  # a key one sample lacks has nothing to pair
        diff, lo, hi, df = (paired_ci if pair else welch_ci)(a, b, level)
        both_missing = na == 0 and nb == 0 and (metric, month) in ref.values and (metric, month) in new.values
        ok = both_missing or bool(lo <= 0.0 <= hi)
        out.append(Comparison(metric, month, na, nb, _mean(a), _mean(b), diff, lo, hi, df, level, ok))
    return out


def equivalent(rows: Iterable[Comparison]) -> bool:
    """Whether every comparison's CI contains 0."""
    return all(r.ok for r in rows)


# ------------------------------------------------------------------------------------------------ report
def _num(v: float) -> str:
    if math.isnan(v):
        return "n/a"
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
        return f"{v:.4g}"
    return f"{v:.4f}" if abs(v) < 100 else f"{v:.1f}"


def format_table(rows: Sequence[Comparison]) -> str:
    """The comparisons as an aligned text table: metric, month, ref mean, new mean, diff, CI, ok."""
    header = ["metric", "month", "n ref", "n new", "ref mean", "new mean", "diff", "CI of diff", "ok"]
    body = [[r.metric, str(r.month), str(r.n_ref), str(r.n_new), _num(r.ref_mean), _num(r.new_mean),
             _num(r.diff), f"[{_num(r.ci_lo)}, {_num(r.ci_hi)}]", "yes" if r.ok else "NO"] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(header, *body, strict=True)]
    left = {0, 7}
    lines = ["  ".join(x.ljust(w) if j in left else x.rjust(w) for j, (x, w) in enumerate(zip(line, widths,
                                                                                           strict=True)))
             for line in [header, *body]]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ command line
class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{PROG}: error: {message}\n")


def _int_at_least(lo: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo} (given {v})")
        return v
    return parse


def _alpha(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1) (given {v})")
    return v


def _horizons(text: str) -> tuple[int, ...]:
    try:
        hs = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated months, got {text!r}") from None
    if not hs or min(hs) < 1:
        raise argparse.ArgumentTypeError(f"expected positive months, got {text!r}")
    return tuple(sorted(set(hs)))


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=f"python -m analysis.experiments.{PROG}",
                description="Headline-metric equivalence of model versions.")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--seeds", type=_int_at_least(2), default=200, metavar="N",
                       help="number of child seeds of the master seed (default 200)")
        q.add_argument("--master-seed", type=_int_at_least(0), default=DEFAULT_MASTER_SEED, metavar="S",
                       help=f"master seed of the child seeds (default {DEFAULT_MASTER_SEED})")
        q.add_argument("--scenario", default="baseline", help="scenario name or TOML path (default baseline)")
        q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a scenario value (repeatable)")
        q.add_argument("--workers", type=_int_at_least(1), default=1, metavar="W",
                       help="local processes (default 1)")

    mk = sub.add_parser("make-reference", help="run the seeds and write the reference sample")
    common(mk)
    mk.add_argument("--horizons", type=_horizons, default=HORIZONS, metavar="H,H,...",
                    help="months at which to record the metrics (default 36,60,120)")
    mk.add_argument("--out", required=True, help="CSV file to write")
    ck = sub.add_parser("check", help="run the seeds and compare them with a reference sample")
    common(ck)
    ck.add_argument("--reference", required=True, help="reference sample CSV")
    ck.add_argument("--alpha", type=_alpha, default=FAMILY_ALPHA,
                    help=f"family-wise error rate over all comparisons (default {FAMILY_ALPHA})")
    ck.add_argument("--unpaired", action="store_true",
                    help="Welch CIs of the difference of means even when the seeds are the reference's "
                         "(default: paired CIs over the common seeds)")
    return p


def _sample(args: argparse.Namespace, horizons: Sequence[int]) -> tuple[Sample, float]:
    from .ensemble import child_seeds

    t0 = time.perf_counter()
    sample = headline_sample(args.scenario, seeds=child_seeds(args.master_seed, args.seeds), horizons=horizons,
                             overrides=args.set, workers=args.workers)
    return sample, time.perf_counter() - t0


def cmd_make_reference(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if not out.parent.is_dir():
        raise EquivalenceError(f"{out.parent} is not a directory")
    if out.is_dir():
        raise EquivalenceError(f"{out} is a directory; give a file name")
    sample, dt = _sample(args, args.horizons)
    write_sample(out, sample)
    print(f"wrote {out}: {len(sample.seeds)} seeds x {len(sample.values)} (metric, month) in {dt:.1f} s")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    ref = read_sample(args.reference)
    horizons = sorted({month for _, month in ref.keys()})
    sample, dt = _sample(args, horizons)
    paired = not args.unpaired and tuple(ref.seeds) == tuple(sample.seeds)
    rows = compare_samples(ref, sample, args.alpha, paired=paired)
    ok = equivalent(rows)
    print(f"reference {args.reference}: {len(ref.seeds)} seeds; new: {len(sample.seeds)} seeds of master "
          f"seed {args.master_seed}, {args.scenario}, run in {dt:.1f} s")
    kind = "paired CI (common seeds)" if paired else "Welch CI"
    print(f"{kind} of new - ref at {100 * rows[0].level:.3f}% each "
          f"(family alpha {args.alpha} over {len(rows)} comparisons, Bonferroni)\n")
    print(format_table(rows))
    bad = sum(not r.ok for r in rows)
    print(f"\n{'equivalent' if ok else 'NOT equivalent'}: {len(rows) - bad} of {len(rows)} CIs contain 0")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    from abm.scenario import ScenarioError

    from .executors import ExecutorError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.error("a command is required: make-reference or check")
    try:
        return cmd_make_reference(args) if args.command == "make-reference" else cmd_check(args)
    except (EquivalenceError, ScenarioError, ExecutorError) as exc:
        print(f"{PROG}: error: " + " ".join(str(exc).split()), file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"{PROG}: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
