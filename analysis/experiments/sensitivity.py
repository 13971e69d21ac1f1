"""Global sensitivity analysis: which free parameters move which outputs, over the parameters' whole ranges.

Parameters and ranges come from a bounds file (:data:`BOUNDS_FILE` by default, one ``[[param]]`` table each,
with the reason for its range). A continuous parameter is sampled uniformly between ``lo`` and ``hi``, or
uniformly in log when ``log = true``; a switch (``choices = [...]``) is sampled as u in [0, 1] and set to
``choices[min(floor(u·k), k − 1)]``. The design is drawn in the unit cube by SALib and mapped to the
parameters' units, so that every index measures the effect of moving a parameter across its own range.

Methods (SALib's samplers and estimators, with fixed seeds so that a rerun is byte-identical):

* ``morris``: elementary-effects screening (Morris 1991; Campolongo et al. 2007). ``n`` trajectories of
  k + 1 points on a 4-level grid, each step moving one parameter by 2/3 of its unit range. Per parameter:
  mu (mean effect, signed), mu* (mean absolute effect: the ranking measure), sigma (their spread:
  interactions or non-linearity) and the bootstrap 95% half-width of mu*. An effect is the output's change
  over the step divided by 2/3: output units per whole range of the parameter. Cost n·(k + 1) points.
* ``sobol``: variance-based indices (Saltelli et al. 2010's first-order estimator, Jansen's total-order
  one). ``n`` base samples (a power of 2) of a scrambled Sobol' sequence, n·(k + 2) points; per parameter
  the first-order index S1 (the share of the output's variance it explains alone), the total index ST
  (alone and in interactions) and their bootstrap 95% half-widths.

A point's output is, per metric, the mean over ``seeds`` seeds, the same child seeds of the master
seed at every point (common random numbers, as in ``abm compare``), so that the differences between points
are the parameters' effect, not noise. An output is ``METRIC@H``, the metric at month H (1-based) of the
run; a metric is a numeric timeseries column, or ``delta:SCENARIO:COLUMN``, the paired effect of another
scenario: COLUMN in SCENARIO minus COLUMN in the scenario under study, at the same parameter values and seed.

A point whose output is NaN (a metric undefined for every seed) is not imputed: the whole trajectory
(morris) or base sample (sobol) it belongs to is left out of that output's analysis, which keeps the
design's structure; sensitivity.md says how many points and blocks were left out.

The points are tasks of a resumable study (:mod:`.tasks`): running the same command again computes only the
missing points; study.json records every argument that changes results. Files in the output folder:
``samples.csv`` (every point's parameter values and outputs), ``sensitivity.csv`` (one row per output and
parameter), ``sensitivity.md`` and ``figures/sensitivity-<output>.png``, all computed from the results in
point order, so they are byte-identical whatever the executor.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
import shlex
import tomllib
import typing
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from abm.metrics import COLUMNS
from abm.scenario import (
    Scenario,
    ScenarioError,
    apply_overrides,
    load_scenario,
    parse_value,
    resolve_path,
    to_toml,
    validate,
)

from ..runio import run_scenario
from .compare import fmt
from .ensemble import child_seeds, table_text
from .tasks import Study, Task, open_study, results_in_order, run_tasks, study_info

BOUNDS_FILE = Path(__file__).resolve().with_name("parameter_bounds.toml")
METHODS = ("morris", "sobol")
DEFAULT_N = {"morris": 10, "sobol": 64}
NUM_LEVELS = 4  # Morris grid levels
NUM_RESAMPLES = 100  # bootstrap resamples of the confidence intervals
CONF_LEVEL = 0.95
DEFAULT_MASTER_SEED = 1  # with an evaluator (no scenario to take run.seed from)
NUMERIC_COLUMNS = tuple(COLUMNS[2:])  # every timeseries column after month and step
STATS = {"morris": ("mu_star", "mu_star_conf", "mu", "sigma"), "sobol": ("S1", "S1_conf", "ST", "ST_conf")}
RANK_BY = {"morris": "mu_star", "sobol": "ST"}
CSV_COLUMNS = {m: ("output", "parameter", "method", *s) for m, s in STATS.items()}
_PARAM_FIELDS = {"name", "lo", "hi", "log", "choices", "why"}


class SensitivityError(ValueError):
    """A sensitivity analysis that cannot start (bad bounds file, unknown metric, bad n); one-line message."""


# ------------------------------------------------------------------------------------------------ parameters
@dataclass(frozen=True)
class Param:
    """One sampled parameter: a dotted scenario key with a range (``lo``-``hi``, log-uniform if ``log``) or,
    for a switch, its ``choices`` (then ``lo`` and ``hi`` are None)."""

    name: str
    lo: float | None
    hi: float | None
    log: bool
    choices: tuple | None
    why: str

    @property
    def is_switch(self) -> bool:
        return self.choices is not None

    def value(self, u: float) -> float:
        """The parameter's value (a switch: the index of its choice) at u in [0, 1] of its range."""
        u = min(max(float(u), 0.0), 1.0)
        if self.choices is not None:
            k = len(self.choices)
            return float(min(int(math.floor(u * k)), k - 1))
        lo, hi = float(self.lo), float(self.hi)
        v = lo * (hi / lo) ** u if self.log else lo + u * (hi - lo)
        return min(max(v, lo), hi)

    def text(self, v: float) -> str:
        """The value ``v`` (a switch: a choice's index) as the text of a ``--set`` override."""
        if self.choices is None:
            return repr(float(v))
        return _choice_text(self.choices[int(v)])

    def describe(self) -> dict:
        """What study.json records: everything that decides the parameter's values."""
        return {"name": self.name, "lo": self.lo, "hi": self.hi, "log": self.log,
                "choices": list(self.choices) if self.choices is not None else None}


def _choice_text(c) -> str:
    """A choice as override text: booleans as true/false, numbers as TOML numbers, a string as plain text
    when that reads back as the same string, else quoted."""
    if isinstance(c, bool):
        return "true" if c else "false"
    if isinstance(c, int):
        return str(c)
    if isinstance(c, float):
        return repr(c)
    return c if parse_value(c) == c else json.dumps(c)


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _integer_field(key: str) -> bool:
    """Whether the scenario key holds an integer (a range of it would be sampled at fractional values)."""
    cls, ann = Scenario, None
    for part in key.split("."):
        f = getattr(cls, "model_fields", {}).get(part)
        if f is None:
            return False
        ann = cls = f.annotation
    args = typing.get_args(ann) or (ann,)
    return int in args and float not in args


def _parse_param(i: int, item, source: str) -> Param:
    where = f"{source}: [[param]] {i + 1}"
    if not isinstance(item, dict):
        raise SensitivityError(f"{where}: expected a table")
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise SensitivityError(f"{where}: name: expected a dotted scenario key (given {name!r})")
    where = f"{source}: param {name!r}"
    unknown = sorted(set(item) - _PARAM_FIELDS)
    if unknown:
        raise SensitivityError(f"{where}: unknown field {unknown[0]!r}; allowed: "
                               f"{', '.join(sorted(_PARAM_FIELDS))}")
    why = item.get("why", "")
    if not isinstance(why, str):
        raise SensitivityError(f"{where}: why: expected text (given {why!r})")
    log = item.get("log", False)
    if not isinstance(log, bool):
        raise SensitivityError(f"{where}: log: expected true or false (given {log!r})")
    if "choices" in item:
        choices = item["choices"]
        extra = [k for k in ("lo", "hi", "log") if k in item]
        if extra:
            raise SensitivityError(f"{where}: {extra[0]}: a switch (choices) has no {extra[0]}")
        if not isinstance(choices, list) or not choices:
            raise SensitivityError(f"{where}: choices: expected a non-empty list (given {choices!r})")
        if any(not isinstance(c, str | bool | int | float) for c in choices):
            raise SensitivityError(f"{where}: choices: expected text, numbers or booleans "
                                   f"(given {choices!r})")
        if len({json.dumps(c) for c in choices}) != len(choices):
            raise SensitivityError(f"{where}: choices: listed twice in {choices!r}")
        return Param(name, None, None, False, tuple(choices), why)
    for k in ("lo", "hi"):
        v = item.get(k)
        if not _is_number(v) or not math.isfinite(v):
            raise SensitivityError(f"{where}: {k}: expected a finite number (given {v!r}; a switch takes "
                                   "choices)")
    lo, hi = float(item["lo"]), float(item["hi"])
    if not lo < hi:
        raise SensitivityError(f"{where}: lo ({lo:g}) must be below hi ({hi:g})")
    if log and lo <= 0:
        raise SensitivityError(f"{where}: log: a log range needs lo > 0 (given lo = {lo:g})")
    return Param(name, lo, hi, log, None, why)


def _check_key(p: Param, scn: Scenario, source: str) -> None:
    """The parameter's key exists in the scenario and takes its bounds, midpoint and every choice."""
    if p.is_switch:
        values = [p.text(i) for i in range(len(p.choices))]
    else:
        if _integer_field(p.name):
            raise SensitivityError(f"{source}: param {p.name!r}: an integer parameter; give it as choices "
                                   "(e.g. choices = [3, 4, 6])")
        values = [p.text(p.value(u)) for u in (0.0, 0.5, 1.0)]
    for v in values:
        try:
            load_scenario(scn, overrides=[f"{p.name}={v}"])
        except ScenarioError as exc:
            raise SensitivityError(f"{source}: param {p.name!r}: {exc}") from None


def load_bounds(path: str | Path = BOUNDS_FILE, scenario: str | Path | Scenario | None = None) -> list[Param]:
    """The parameters of a bounds file (``[[param]]`` tables with name, lo, hi, log, why, or name, choices,
    why), checked: lo < hi, log ranges above 0, non-empty distinct choices. With a ``scenario``, every key
    must also exist there and accept its range's ends and midpoint (or each choice); without one the names
    are free (for an evaluator). Raises SensitivityError naming the file and the field."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SensitivityError(f"{path}: cannot read the bounds file: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SensitivityError(f"{path}: invalid TOML: {exc}") from None
    extra = sorted(set(data) - {"param"})
    if extra:
        raise SensitivityError(f"{path}: unknown top-level key {extra[0]!r}; a bounds file holds [[param]] "
                               "tables")
    items = data.get("param")
    if not isinstance(items, list) or not items:
        raise SensitivityError(f"{path}: no [[param]] table")
    params = [_parse_param(i, item, str(path)) for i, item in enumerate(items)]
    seen: set[str] = set()
    for p in params:
        if p.name in seen:
            raise SensitivityError(f"{path}: param {p.name!r}: name: listed twice")
        seen.add(p.name)
    if scenario is not None:
        scn = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        for p in params:
            _check_key(p, scn, str(path))
    return params


# ------------------------------------------------------------------------------------------------ outputs
def _metric_parts(metric: str) -> tuple[str | None, str]:
    """(other scenario or None, column) of a metric."""
    if metric.startswith("delta:"):
        other, _, column = metric[len("delta:"):].rpartition(":")
        return other, column
    return None, metric


def parse_outputs(text: str) -> list[str]:
    """The metrics of a comma-separated list: numeric timeseries columns, or ``delta:SCENARIO:COLUMN`` (COLUMN
    in SCENARIO minus COLUMN in the scenario under study, paired by parameter values and seed)."""
    items = [s.strip() for s in str(text).split(",")]
    if not any(items):
        raise SensitivityError("--outputs: no metric given")
    out: list[str] = []
    for item in items:
        if not item:
            raise SensitivityError(f"--outputs {text!r}: an empty metric")
        other, column = _metric_parts(item)
        if column not in NUMERIC_COLUMNS:
            near = difflib.get_close_matches(column, NUMERIC_COLUMNS, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise SensitivityError(f"--outputs {item}: unknown metric {column!r} (a numeric timeseries "
                                   f"column, or delta:SCENARIO:COLUMN){hint}")
        if other is not None:
            if not other:
                raise SensitivityError(f"--outputs {item}: expected delta:SCENARIO:COLUMN")
            try:
                resolve_path(other)
            except ScenarioError as exc:
                raise SensitivityError(f"--outputs {item}: {exc}") from None
        if item in out:
            raise SensitivityError(f"--outputs {item}: listed twice")
        out.append(item)
    return out


def output_name(metric: str, horizon: int) -> str:
    return f"{metric}@{horizon}"


# ------------------------------------------------------------------------------------------------ design
def _problem(params: Sequence[Param]) -> dict:
    """SALib's problem: the unit cube, one dimension per parameter."""
    return {"num_vars": len(params), "names": [p.name for p in params], "bounds": [[0.0, 1.0]] * len(params)}


def check_n(method: str, n: int) -> None:
    """Raise SensitivityError unless ``n`` suits ``method``."""
    if method not in METHODS:
        raise SensitivityError(f"--method {method}: expected one of {', '.join(METHODS)}")
    if method == "morris" and n < 2:
        raise SensitivityError(f"--n {n}: morris needs at least 2 trajectories")
    if method == "sobol" and (n < 2 or n & (n - 1)):
        raise SensitivityError(f"--n {n}: sobol needs a power of 2 of base samples (e.g. 64, 128, 256): the "
                               "Sobol' sequence is balanced only then")


def unit_sample(params: Sequence[Param], method: str, n: int, seed: int) -> np.ndarray:
    """SALib's design in the unit cube: points x parameters."""
    check_n(method, n)
    prob = _problem(params)
    if method == "morris":
        from SALib.sample import morris

        return morris.sample(prob, n, num_levels=NUM_LEVELS, seed=int(seed))
    from SALib.sample import sobol

    return sobol.sample(prob, n, calc_second_order=False, scramble=True, seed=int(seed))


def to_values(params: Sequence[Param], unit: np.ndarray) -> np.ndarray:
    """Unit-cube points in the parameters' own units (a switch: the index of its choice)."""
    return np.array([[p.value(u) for p, u in zip(params, row, strict=True)] for row in unit], dtype=float
                    ).reshape(len(unit), len(params))


def sample(params: Sequence[Param], method: str, n: int, seed: int) -> np.ndarray:
    """The design's points (rows) in the parameters' own units: log parameters uniform in log, a switch as
    the index of its choice. ``method`` morris (``n`` trajectories) or sobol (``n`` base samples)."""
    return to_values(params, unit_sample(params, method, n, seed))


def point_overrides(params: Sequence[Param], row: Sequence[float]) -> list[str]:
    """A point as ``--set`` overrides: ``["key=value", ...]``."""
    return [f"{p.name}={p.text(v)}" for p, v in zip(params, row, strict=True)]


# ------------------------------------------------------------------------------------------------ the tasks
def _nanmean(values: Sequence[float]) -> float:
    good = [v for v in values if not math.isnan(v)]
    return math.fsum(good) / len(good) if good else math.nan


def _rows(data: dict, seed: int, months: int) -> list[dict]:
    run = {**data.get("run", {}), "seed": int(seed), "months": int(months)}
    return run_scenario(validate({**data, "run": run}, "sensitivity point"), record_flows=False).rows


def _cell_value(rows: list[dict], column: str, horizon: int) -> float:
    v = rows[horizon - 1][column]
    return math.nan if v is None else float(v)


def model_point(base_toml: str, others: dict[str, str], overrides: list[str], seeds: list[int], months: int,
                outputs: list[str], horizons: list[int]) -> dict[str, float]:
    """One point of the design: ``{"METRIC@H": mean over seeds}``.

    Runs the scenario (TOML text) with ``overrides`` for each seed (and, for a ``delta:SCENARIO:COLUMN``
    metric, SCENARIO's TOML text from ``others`` with the same overrides and seed) for ``months`` months, and
    takes each metric at month H (row H − 1). A value undefined for some seeds is averaged over the others
    (NaN if undefined for all). Top level with plain arguments, so that it can go to a process pool or Dask.
    """
    base = apply_overrides(tomllib.loads(base_toml), list(overrides), "sensitivity point")
    parts = [_metric_parts(m) for m in outputs]
    needed = sorted({o for o, _ in parts if o is not None})
    other_data = {o: apply_overrides(tomllib.loads(others[o]), list(overrides), "sensitivity point")
                  for o in needed}
    values: dict[str, list[float]] = {output_name(m, h): [] for m in outputs for h in horizons}
    for seed in seeds:
        rows = _rows(base, seed, months)
        other_rows = {o: _rows(d, seed, months) for o, d in other_data.items()}
        for m, (other, column) in zip(outputs, parts, strict=True):
            for h in horizons:
                v = _cell_value(rows, column, h)
                if other is not None:
                    v = _cell_value(other_rows[other], column, h) - v
                values[output_name(m, h)].append(v)
    return {k: _nanmean(v) for k, v in values.items()}


def ishigami(row: Sequence[float]) -> dict[str, float]:
    """The Ishigami function (a = 7, b = 0.1; x in [-pi, pi]), the known-answer test of sensitivity analysis:
    S1 = (0.314, 0.442, 0), ST = (0.558, 0.442, 0.244)."""
    x1, x2, x3 = (float(v) for v in row)
    return {"y": math.sin(x1) + 7.0 * math.sin(x2) ** 2 + 0.1 * x3**4 * math.sin(x1)}


# ------------------------------------------------------------------------------------------------ analysis
def _block_size(method: str, k: int) -> int:
    return k + 1 if method == "morris" else k + 2


def analyse(params: Sequence[Param], method: str, unit: np.ndarray, y: np.ndarray, seed: int
            ) -> tuple[dict[str, np.ndarray], int, int]:
    """SALib's indices of one output (``STATS[method]`` -> one value per parameter), leaving out every block
    (trajectory or base sample) with a NaN output; also (NaN points, blocks left out)."""
    k = len(params)
    size = _block_size(method, k)
    bad = ~np.isfinite(y)
    keep = ~bad.reshape(-1, size).any(axis=1)
    dropped = int((~keep).sum())
    rows = np.repeat(keep, size)
    nan_stats = {s: np.full(k, math.nan) for s in STATS[method]}
    if not keep.any():
        return nan_stats, int(bad.sum()), dropped
    prob = _problem(params)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        if method == "morris":
            from SALib.analyze import morris

            si = morris.analyze(prob, unit[rows], y[rows], num_resamples=NUM_RESAMPLES, conf_level=CONF_LEVEL,
                                num_levels=NUM_LEVELS, seed=int(seed))
        else:
            from SALib.analyze import sobol

            si = sobol.analyze(prob, y[rows], calc_second_order=False, num_resamples=NUM_RESAMPLES,
                               conf_level=CONF_LEVEL, seed=int(seed))
    stats = {s: np.asarray(np.ma.filled(np.ma.asarray(si[s], dtype=float), np.nan), dtype=float)
             for s in STATS[method]}
    return stats, int(bad.sum()), dropped


def ranked_rows(output: str, params: Sequence[Param], method: str, stats: dict[str, np.ndarray]
                ) -> list[dict]:
    """The table rows of one output, largest mu* (morris) or ST (sobol) first, undefined last."""
    key = stats[RANK_BY[method]]

    def rank(j: int) -> tuple:
        return (1, 0.0, j) if math.isnan(key[j]) else (0, -key[j], j)

    order = sorted(range(len(params)), key=rank)
    return [{"output": output, "parameter": params[j].name, "method": method,
             **{s: float(stats[s][j]) for s in STATS[method]}} for j in order]


# ------------------------------------------------------------------------------------------------ result
@dataclass
class SensitivityResult:
    """A finished analysis: its folder, the table rows (as in sensitivity.csv) and what was run."""

    out: Path
    method: str
    scenario: str
    params: list[Param]
    outputs: list[str]
    rows: list[dict]
    points: int
    computed: int
    model_runs: int
    dropped: dict[str, tuple[int, int]] = field(default_factory=dict)  # output: (NaN points, blocks left out)
    warnings: list[str] = field(default_factory=list)

    def top(self, output: str, k: int = 5) -> list[str]:
        """The ``k`` parameters that move ``output`` most, by mu* (morris) or ST (sobol); a parameter whose
        index is zero or undefined is not listed."""
        if output not in self.outputs:
            raise SensitivityError(f"unknown output {output!r}; outputs: {', '.join(self.outputs)}")
        key = RANK_BY[self.method]
        return [r["parameter"] for r in self.rows if r["output"] == output and r[key] > 0][:k]

    def summary(self) -> str:
        """A few lines for the terminal: what ran, where, and the top parameters of each output."""
        runs = f"{self.model_runs} model runs" if self.model_runs else "evaluator"
        lines = [f"sensitivity of {self.scenario} ({self.method}): {self.points} points ({self.computed} "
                 f"computed now), {runs} -> {self.out}"]
        key = "mu*" if self.method == "morris" else "ST"
        for o in self.outputs:
            top = self.top(o)
            lines.append(f"  {o}: top by {key}: {', '.join(top) if top else 'none (zero or undefined)'}")
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ files
def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _count(k: int, noun: str) -> str:
    return f"{k} {noun}" + ("" if k == 1 else "s")


def _month_label(start: str, horizon: int) -> str:
    y, m = (int(x) for x in start.split("-"))
    idx = m - 1 + horizon - 1
    return f"{y + idx // 12:04d}-{idx % 12 + 1:02d}"


def samples_text(params: Sequence[Param], values: np.ndarray, columns: Sequence[str], ys: np.ndarray) -> str:
    """samples.csv: point, each parameter's value (a switch: its choice's text), each output."""
    header = ["point", *(p.name for p in params), *columns]
    rows = []
    for i, row in enumerate(values):
        cells: list = [i]
        cells += [p.text(v) if p.is_switch else float(v) for p, v in zip(params, row, strict=True)]
        cells += [float(ys[i, j]) for j in range(len(columns))]
        rows.append(cells)
    return table_text(header, rows)


def sensitivity_csv(method: str, rows: Sequence[dict]) -> str:
    cols = CSV_COLUMNS[method]
    return table_text(cols, [[r[c] for c in cols] for r in rows])


def command_line(scenario: str, outputs: Sequence[str], method: str, n: int, seeds: int, master_seed: int,
                 months: int, horizons: Sequence[int], overrides: Sequence[str], bounds: Path | None,
                 out: Path) -> str:
    """The ``abm sensitivity`` command that reproduces an analysis (executor options do not matter)."""
    args = ["abm", "sensitivity", scenario, "--outputs", ",".join(outputs), "--method", method, "--n", str(n),
            "--seeds", str(seeds), "--master-seed", str(master_seed), "--months", str(months),
            "--horizons", ",".join(map(str, horizons))]
    if bounds is not None:
        args += ["--bounds", str(bounds)]
    for o in overrides:
        args += ["--set", o]
    args += ["--out", str(out)]
    return shlex.join(args)


def _stat_cells(method: str, r: dict) -> list[str]:
    if method == "morris":
        return [fmt(r["mu_star"]), fmt(r["mu_star_conf"]), fmt(r["mu"]), fmt(r["sigma"])]
    return [f"{fmt(r['S1'])} ± {fmt(r['S1_conf'])}", f"{fmt(r['ST'])} ± {fmt(r['ST_conf'])}"]


def markdown(res: SensitivityResult, command: str, what: str, labels: dict[str, str]) -> str:
    """sensitivity.md: the method, the parameters, and per output a table and its top 5."""
    k = len(res.params)
    lines = [f"# Global sensitivity analysis: {res.scenario} ({res.method})", "", what, ""]
    if res.method == "morris":
        lines += ["Morris elementary effects (SALib): each step moves one parameter by 2/3 of its range "
                  "(a log range in log; a switch to another choice), and its effect is the output's change "
                  "divided by 2/3, in the output's units per whole range. mu* is the mean absolute effect "
                  "(the ranking), mu the signed mean, sigma their spread (interactions or non-linearity), "
                  "mu* CI the bootstrap 95% half-width."]
    else:
        lines += ["Sobol' indices (SALib: Saltelli et al. 2010 and Jansen estimators, no second order): "
                  "S1 is the share of the output's variance due to a parameter alone, ST alone and through "
                  "interactions; ± the bootstrap 95% half-width."]
    lines += ["", "Reproduce with:", "", "```", command, "```", "", "## Parameters", "",
              "| parameter | range | why |", "|---|---|---|"]
    for p in res.params:
        rng = (" / ".join(p.text(i) for i in range(len(p.choices))) if p.is_switch
               else f"{fmt(p.lo)} - {fmt(p.hi)}{' (log)' if p.log else ''}")
        lines.append(f"| `{p.name}` | {rng} | {p.why} |")
    head = (["parameter", "mu*", "mu* CI", "mu", "sigma"] if res.method == "morris"
            else ["parameter", "S1", "ST"])
    key = "mu*" if res.method == "morris" else "ST"
    for o in res.outputs:
        lines += ["", f"## `{o}`" + (f": {labels[o]}" if labels.get(o) else ""), ""]
        nan_points, dropped = res.dropped.get(o, (0, 0))
        if nan_points:
            unit = _design_name(res.method)
            total = res.points // _block_size(res.method, k)
            lines += [f"Warning: {nan_points} of {res.points} points gave NaN; the {dropped} {unit} holding "
                      f"them were left out ({total - dropped} of {total} remain).", ""]
        top = res.top(o)
        named = ", ".join(f"`{t}`" for t in top) if top else "none (every index is zero or undefined)"
        lines += [f"Top {len(top) or 5} by {key}: {named}.",
                  "", "| " + " | ".join(head) + " |",
                  "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
        for r in (r for r in res.rows if r["output"] == o):
            lines.append("| " + " | ".join([f"`{r['parameter']}`", *_stat_cells(res.method, r)]) + " |")
    return "\n".join(lines) + "\n"


def figure_name(output: str) -> str:
    """figures/sensitivity-<output>.png, with @, : and other characters unsafe in a file name as _."""
    return f"sensitivity-{re.sub(r'[^A-Za-z0-9._-]', '_', output)}.png"


# ------------------------------------------------------------------------------------------------ the command
def _callable_name(fn: Callable) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def _design_name(method: str) -> str:
    return "trajectories" if method == "morris" else "base samples"


@dataclass
class _Plan:
    """What an analysis evaluates: its name, parameters, metrics and output columns, master seed, the
    arguments for study.json, and how a point's values become a task."""

    name: str
    params: list[Param]
    metrics: list[str]
    columns: list[str]
    master: int
    args: dict
    task: Callable[[str, np.ndarray], Task]
    labels: dict[str, str] = field(default_factory=dict)
    runs_per_point: int = 0


def _master(seed: int) -> int:
    if int(seed) < 0:
        raise SensitivityError(f"--master-seed must be >= 0 (given {seed})")
    return int(seed)


def _evaluator_plan(evaluator: Callable, outputs: Sequence[str], bounds: Path, master_seed: int | None
                    ) -> _Plan:
    metrics = [str(o).strip() for o in outputs]
    if not metrics or not all(metrics) or len(set(metrics)) != len(metrics):
        raise SensitivityError(f"outputs {list(outputs)!r}: expected distinct non-empty names")
    master = _master(DEFAULT_MASTER_SEED if master_seed is None else master_seed)
    return _Plan(name=evaluator.__name__, params=load_bounds(bounds), metrics=metrics, columns=metrics,
                 master=master, args={"evaluator": _callable_name(evaluator), "outputs": metrics},
                 task=lambda key, row: Task(key, evaluator, ([float(v) for v in row],)))


def _model_plan(scenario: str | Path | Scenario, outputs: Sequence[str], seeds: int, master_seed: int | None,
                months: int | None, horizons: Sequence[int] | None, overrides: list[str], bounds: Path
                ) -> _Plan:
    if seeds < 1:
        raise SensitivityError(f"--seeds must be >= 1 (given {seeds})")
    metrics = parse_outputs(",".join(outputs))
    scn = load_scenario(scenario, overrides=overrides or None, months=months)
    months = scn.run.months
    horizons = sorted({int(h) for h in (horizons or [months])})
    beyond = [h for h in horizons if not 1 <= h <= months]
    if beyond:
        raise SensitivityError(f"--horizons: {beyond[0]} is beyond the {months}-month run (horizons are "
                               f"months 1-{months})")
    master = _master(scn.run.seed if master_seed is None else master_seed)
    params = load_bounds(bounds, scn)
    sampled = {p.name for p in params}
    clash = [o for o in overrides if o.split("=", 1)[0].strip() in sampled]
    if clash:
        raise SensitivityError(f"--set {clash[0]}: that parameter is sampled (in {bounds}); leave it out of "
                               "--set or of the bounds file")
    base_toml = to_toml(load_scenario(scn, seed=master))
    others = {o: to_toml(load_scenario(o, overrides=overrides or None, months=months, seed=master))
              for o in sorted({_metric_parts(m)[0] for m in metrics} - {None})}
    seed_list = child_seeds(master, seeds)

    def task(key: str, row: np.ndarray) -> Task:
        return Task(key, model_point, (base_toml, others, point_overrides(params, row), seed_list, months,
                                       metrics, horizons))

    args = {"scenario": scn.name, "scenario_sha256": _sha(base_toml),
            "others": {o: _sha(t) for o, t in others.items()}, "outputs": metrics, "seeds": int(seeds),
            "months": months, "horizons": horizons, "overrides": overrides}
    columns = [output_name(m, h) for m in metrics for h in horizons]
    labels = {output_name(m, h): f"at month {h} ({_month_label(scn.run.start, h)})"
              for m in metrics for h in horizons}
    return _Plan(name=scn.name, params=params, metrics=metrics, columns=columns, master=master, args=args,
                 task=task, labels=labels, runs_per_point=seeds * (1 + len(others)))


def run_sensitivity(scenario: str | Path | Scenario | None, outputs: list[str], method: str = "morris",
                    n: int | None = None, seeds: int = 4, master_seed: int | None = None,
                    months: int | None = None, horizons: list[int] | None = None,
                    overrides: list[str] | None = None,
                    bounds: str | Path | None = None, out: str | Path | None = None, force: bool = False,
                    executor_kwargs: dict | None = None, progress: bool = True,
                    evaluator: Callable[[list[float]], dict[str, float]] | None = None,
                    draw: Callable | None = None, allow_model_change: bool = False,
                    warn: Callable[[str], None] | None = None) -> SensitivityResult:
    """Run (or resume) a global sensitivity analysis and write its files; see the module docstring.

    ``warn``, if given, is called with each warning (a resumed folder of another model). ``draw`` draws
    the figures (:func:`analysis.views.sensitivity_figures.draw_figures`, passed in by the
    command line, since experiments do not import the views); without it there are no figures.

    ``outputs`` are metrics (see :func:`parse_outputs`), each analysed at every horizon (months, default the
    run's length). With an ``evaluator`` (a top-level function of a point's values, in the parameters'
    units, returning a dict with every name of ``outputs``) the model is not run: ``scenario``, ``months``,
    ``horizons`` and ``overrides`` must be absent and ``seeds`` is unused. Every argument is checked before
    anything is written. Raises SensitivityError (bad arguments or bounds), ScenarioError (bad scenario or
    override) or EnsembleError (a folder holding another study, unless ``force``; a failed point).
    """
    from .executors import make_executor

    n = DEFAULT_N.get(method, 0) if n is None else int(n)
    check_n(method, n)
    overrides = list(overrides or [])
    bounds_path = Path(bounds) if bounds is not None else BOUNDS_FILE
    if evaluator is not None:
        if scenario is not None or months is not None or horizons is not None or overrides:
            raise SensitivityError("an evaluator replaces the model: give no scenario, months, horizons or "
                                   "overrides")
        plan = _evaluator_plan(evaluator, outputs, bounds_path, master_seed)
    elif scenario is None:
        raise SensitivityError("no scenario given")
    else:
        plan = _model_plan(scenario, outputs, seeds, master_seed, months, horizons, overrides, bounds_path)
    out = Path(out) if out is not None else Path("runs") / f"sensitivity-{plan.name}-{method}-{n}"
    if evaluator is None:
        a = plan.args
        command = command_line(plan.name, plan.metrics, method, n, seeds, plan.master, a["months"],
                               a["horizons"], overrides, None if bounds is None else bounds_path, out)
    else:
        command = (f"run_sensitivity(None, {plan.metrics!r}, method={method!r}, n={n}, "
                   f"master_seed={plan.master}, bounds={str(bounds_path)!r}, out={str(out)!r}, "
                   f"evaluator={_callable_name(evaluator)})")
    design = ({"num_levels": NUM_LEVELS} if method == "morris"
              else {"calc_second_order": False, "scramble": True})
    info = study_info("sensitivity", {**plan.args, "method": method, "n": n, "master_seed": plan.master,
                                      "bounds": [p.describe() for p in plan.params], "design": design,
                                      "num_resamples": NUM_RESAMPLES, "conf_level": CONF_LEVEL,
                                      "command": command})
    study = open_study(out, json.loads(json.dumps(info)), force=force, allow_model_change=allow_model_change)
    for w in study.warnings if warn is not None else ():
        warn(w)

    params = plan.params
    unit = unit_sample(params, method, n, plan.master)
    values = to_values(params, unit)
    keys = [f"p{i:05d}" for i in range(len(values))]
    with make_executor(**(executor_kwargs or {})) as ex:
        computed = run_tasks(study, [plan.task(k, row) for k, row in zip(keys, values, strict=True)], ex,
                             progress=progress, desc="sensitivity", unit="point")
    ys = _outputs_matrix(results_in_order(study, keys), plan.columns, keys)

    res = SensitivityResult(out=out, method=method, scenario=plan.name, params=params, outputs=plan.columns,
                            rows=[], points=len(values), computed=computed,
                            model_runs=len(values) * plan.runs_per_point,
                            warnings=list(study.warnings))
    for j, o in enumerate(plan.columns):
        stats, nan_points, dropped = analyse(params, method, unit, ys[:, j], plan.master)
        res.rows += ranked_rows(o, params, method, stats)
        if nan_points:
            res.dropped[o] = (nan_points, dropped)
            res.warnings.append(f"{o}: {nan_points} of {len(values)} points gave NaN; {dropped} "
                                f"{_design_name(method)} left out")
    design_text = f"{len(params)} parameters; {n} {_design_name(method)}, {len(values)} points"
    if evaluator is None:
        others = sorted(plan.args["others"])
        what = (f"Scenario `{plan.name}`, {plan.args['months']} months; {design_text} × "
                f"{_count(seeds, 'seed')} (common random numbers: the same {_count(seeds, 'child seed')} of "
                f"master seed {plan.master} at every point; a point's output is the mean over them)"
                + (f", also run for {', '.join(others)} (delta outputs)" if others else "")
                + f": {res.model_runs} model runs.")
    else:
        what = f"Evaluator `{_callable_name(evaluator)}`; {design_text}."
    _write(study, res, values, ys, markdown(res, command, what, plan.labels), draw)
    return res


def _outputs_matrix(results: list, columns: Sequence[str], keys: Sequence[str]) -> np.ndarray:
    """points x outputs; an output missing from a point's result is an error naming both."""
    ys = np.empty((len(results), len(columns)))
    for i, r in enumerate(results):
        for j, c in enumerate(columns):
            if not isinstance(r, dict) or c not in r:
                raise SensitivityError(f"point {keys[i]}: no output {c!r} in its result")
            v = r[c]
            ys[i, j] = math.nan if v is None else float(v)
    return ys


def _write(study: Study, res: SensitivityResult, values: np.ndarray, ys: np.ndarray, md: str,
           draw: Callable | None) -> None:
    study.write("samples.csv", samples_text(res.params, values, res.outputs, ys))
    study.write("sensitivity.csv", sensitivity_csv(res.method, res.rows))
    study.write("sensitivity.md", md)
    if draw is not None:
        draw(study.out / "figures", res.method, res.outputs, res.rows,
             {o: figure_name(o) for o in res.outputs}, title=res.scenario)
