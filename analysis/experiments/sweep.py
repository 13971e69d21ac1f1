"""Parameter sweeps: a grid over scenario parameters, an ensemble in every cell, one summary row per cell.

Parameters. Each swept parameter is a dotted scenario key with its values (:func:`parse_param`)::

    key.path=start:stop:n        n values evenly spaced from start to stop (n = 1: start alone)
    key.path=log:start:stop:n    n values geometrically spaced (start, stop > 0)
    key.path=a,b,c               the values listed, numbers or words (chips.allocation_rule=pro_rata,priority)

Numbers are written with ``format(v, ".10g")`` (so ``log:1e7:1e10:4`` gives exactly 1e7, 1e8, 1e9, 1e10) and
that text is the cell's override, applied as ``--set key.path=<text>`` after the sweep's own ``--set``
overrides. Values of an integer-typed key are rounded; values that repeat are refused. The run section
(``run.*``) is not swept: the seeds, master seed and months are the sweep's own arguments.

Cells. The grid is the product of the parameters' values in the order given, the first parameter varying
slowest: cell ``i0 * n1 + i1`` holds value i0 of the first and i1 of the second. Every cell is an ensemble
(:mod:`analysis.experiments.ensemble`) with the same master seed and N, hence the same child seeds: seed k
of every cell shares every random draw until the cells' parameters make them differ (common random
numbers). Every cell's scenario is validated before anything runs or is written.

Folder (default ``runs/sweep-<scenario>-<key1>[-<key2>...]-<N>/``, keys by the last part of their path)::

    sweep.json                 scenario and its sha256, parameters with their values, N, master seed,
                               months, --set overrides, metrics, month ``at``, the cell -> overrides
                               table, the command
    cells/cell-<index:04d>/    an ensemble folder (scenario.toml, seeds.csv, ensemble.json, seeds/,
                               ensemble.csv)
    sweep.csv                  per cell: cell, one column per swept key, then for each metric
                               <metric>_mean, <metric>_ci_lo, <metric>_ci_hi, <metric>_n at month ``at``
    sweep.md                   the same as a table (means with 95% CIs) and the command that reproduces it
    figures/                   one parameter: sweep.png (a panel per metric, mean and CI against the values);
                               two: <metric>.png (a heatmap of the mean); three or more: none

Statistics are :func:`~analysis.experiments.ensemble.summary_stats` over seeds at month ``at`` (default the
last), NaN-safe (``_n`` counts the seeds where the metric is defined); numbers are written as in ensemble.csv.

Resuming. The folder is created atomically with its cells' initial files. Running the same sweep again
computes only the missing seeds, writes every cell's ensemble.csv and rewrites sweep.csv, sweep.md,
sweep.json and the figures, byte-identical whatever the executor or the number of workers. The run
arguments (scenario, parameters and values, N, master seed, months, --set) decide the runs: another value of
one of them on an existing folder is refused unless ``force``, which replaces the folder. ``metrics`` and
``at`` only decide the summary and may change on a rerun, which then computes nothing. A folder without
sweep.json is never touched.
"""

from __future__ import annotations

import concurrent.futures as cf
import difflib
import hashlib
import io
import itertools
import json
import math
import re
import shlex
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from abm.metrics import COLUMNS
from abm.scenario import Scenario, ScenarioError, load_scenario, to_toml

from ..runio import remove_stale_temporaries, stage_dir
from .compare import fmt
from .ensemble import (
    EnsembleError,
    EnsemblePlan,
    atomic_write,
    execute,
    folder_info,
    model_check,
    model_fingerprint,
    prepare_ensemble,
    summary_stats,
    table_text,
    write_summary,
)

INFO = "sweep.json"
SUMMARY = "sweep.csv"
REPORT = "sweep.md"
CELLS_DIR = "cells"
FIGURES_DIR = "figures"
DEFAULT_METRICS = ("lab_hhi_compute", "entry_barrier_usd", "frontier_capability", "labs_active",
                   "small_lab_survival_24m", "lab_top3_share_compute", "spot_price_usd_per_h100e_hour")
# Statistics of sweep.csv, written as <metric>_<stat> for every metric, in this order.
STATS = ("mean", "ci_lo", "ci_hi", "n")
FORMS = "expected key.path=[log:]start:stop:n or key.path=v1,v2,..."
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")
# Keys of sweep.json that decide the runs: another value on an existing folder needs force.
_RUN_ARGS = (("params", "--param"), ("n_seeds", "--seeds"), ("master_seed", "master seed"),
             ("months", "months"), ("overrides", "--set"))


class SweepError(ValueError):
    """A user-facing problem with a sweep's arguments or folder; one line naming the flag."""


# ------------------------------------------------------------------------------------------------ parameters
def value_text(v: float | str) -> str:
    """A value as the text of its override: words as they are, numbers as ``format(v, ".10g")``."""
    return v if isinstance(v, str) else format(v, ".10g")


def _spaced(start: float, stop: float, n: int, log: bool) -> list[float]:
    raw = [start] if n == 1 else (np.geomspace if log else np.linspace)(start, stop, n).tolist()
    return [float(value_text(float(v))) for v in raw]


@dataclass(frozen=True)
class SweepParam:
    """A swept scenario key and its values; ``log``: geometric spacing (drawn on a log axis)."""

    key: str
    values: tuple[float | str, ...]
    log: bool = False

    @property
    def texts(self) -> list[str]:
        return [value_text(v) for v in self.values]

    @property
    def numeric(self) -> bool:
        return not any(isinstance(v, str) for v in self.values)

    @property
    def text(self) -> str:
        """The ``--param`` argument giving these values: the [log:]start:stop:n form when it does (log
        spacing, or three values or more), else the list."""
        v = self.values
        if self.numeric and (self.log or len(v) >= 3) and (not self.log or (v[0] > 0 and v[-1] > 0)):
            if list(v) == _spaced(float(v[0]), float(v[-1]), len(v), self.log):
                t = self.texts
                return f"{self.key}={'log:' if self.log else ''}{t[0]}:{t[-1]}:{len(v)}"
        return f"{self.key}={','.join(self.texts)}"

    def override(self, i: int) -> str:
        return f"{self.key}={self.texts[i]}"


def _number(text: str, what: str, arg: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise SweepError(f"--param {arg}: {FORMS}; {what} {text!r} is not a number") from None
    if not math.isfinite(v):
        raise SweepError(f"--param {arg}: {what} must be finite (given {text!r})")
    return v


def _unique(values: Sequence[float | str], arg: str) -> tuple[float | str, ...]:
    seen: set = set()
    for v in values:
        if v in seen:
            raise SweepError(f"--param {arg}: the value {value_text(v)} comes twice; each cell needs its own "
                             "values")
        seen.add(v)
    return tuple(values)


def parse_param(text: str) -> SweepParam:
    """Parse a ``--param`` argument: ``key.path=start:stop:n``, ``key.path=log:start:stop:n`` or
    ``key.path=a,b,c`` (see the module docstring). Raises SweepError naming the argument."""
    arg = str(text).strip()
    key, sep, spec = arg.partition("=")
    key, spec = key.strip(), spec.strip()
    if not sep or not spec or not _KEY.fullmatch(key):
        raise SweepError(f"--param {arg}: {FORMS}")
    log = spec.startswith("log:")
    if log or ":" in spec:
        parts = [p.strip() for p in spec.removeprefix("log:").split(":")]
        if len(parts) != 3:
            raise SweepError(f"--param {arg}: {FORMS}")
        start, stop = _number(parts[0], "start", arg), _number(parts[1], "stop", arg)
        try:
            n = int(parts[2])
        except ValueError:
            n = 0
        if n < 1:
            raise SweepError(f"--param {arg}: n must be a whole number >= 1 (given {parts[2]!r})")
        if log and not (start > 0 and stop > 0):
            raise SweepError(f"--param {arg}: log spacing needs start > 0 and stop > 0")
        return SweepParam(key, _unique(_spaced(start, stop, n, log), arg), log)
    items = [p.strip() for p in spec.split(",")]
    if any(not p for p in items):
        raise SweepError(f"--param {arg}: {FORMS}; empty value in the list")
    values: list[float | str] = []
    for p in items:
        try:
            float(p)
        except ValueError:
            values.append(p)
            continue
        values.append(float(value_text(_number(p, "value", arg))))
    return SweepParam(key, _unique(values, arg), False)


def _field_value(scn: Scenario, key: str):
    node = scn
    for part in key.split("."):
        node = getattr(node, part)
    return node


def _scenario_reason(exc: ScenarioError, key: str) -> str:
    """The rule a value broke, without the scenario's file name or the ``--set`` label."""
    msg = str(exc)
    for prefix in ("scenario: ", f"--set {key}: "):
        if msg.startswith(prefix):
            return msg[len(prefix):]
    return msg


# ------------------------------------------------------------------------------------------------ plan
def cell_dirname(index: int) -> str:
    return f"cell-{index:04d}"


def _folder_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "scenario"


@dataclass
class SweepPlan:
    """A validated sweep: the grid, its cells' ensembles and the folder; nothing is written until run."""

    out: Path
    source: str
    scenario: Scenario  # the swept scenario with --set, months and run.seed = master applied
    params: list[SweepParam]
    n: int
    master_seed: int
    months: int
    overrides: list[str]
    metrics: list[str]
    at: int
    cells: list[EnsemblePlan]
    cell_overrides: list[list[str]]
    state: str = "new"  # new (folder absent or empty), resume (matching folder), replace (force)
    created_here: bool = field(default=False, compare=False)
    computed: int = field(default=0, compare=False)  # seeds computed by the last run_sweep
    warnings: list[str] = field(default_factory=list, compare=False)
    model_sha256: str = field(default_factory=model_fingerprint, compare=False)
    allow_model_change: bool = field(default=False, compare=False)

    @property
    def cell_values(self) -> list[tuple[float | str, ...]]:
        return list(itertools.product(*(p.values for p in self.params)))

    def command(self) -> str:
        """The ``abm sweep`` command that reproduces this sweep (executor and folder options aside)."""
        args = ["abm", "sweep", self.source]
        for p in self.params:
            args += ["--param", p.text]
        args += ["--seeds", str(self.n), "--master-seed", str(self.master_seed), "--months", str(self.months)]
        for o in self.overrides:
            args += ["--set", o]
        if self.at != self.months:
            args += ["--at", str(self.at)]
        if tuple(self.metrics) != DEFAULT_METRICS:
            args += ["--metrics", ",".join(self.metrics)]
        return shlex.join(args)

    def info(self) -> dict:
        return {
            "scenario": self.scenario.name,
            "source": self.source,
            "scenario_sha256": hashlib.sha256(to_toml(self.scenario).encode("utf-8")).hexdigest(),
            "params": [{"key": p.key, "values": list(p.values), "log": p.log} for p in self.params],
            "n_seeds": self.n,
            "master_seed": self.master_seed,
            "months": self.months,
            "overrides": list(self.overrides),
            "metrics": list(self.metrics),
            "at": self.at,
            "cells": [{"cell": i, "folder": f"{CELLS_DIR}/{cell_dirname(i)}", "overrides": o}
                      for i, o in enumerate(self.cell_overrides)],
            "model_sha256": self.model_sha256,
            "command": self.command(),
        }

    def info_text(self) -> str:
        return json.dumps(self.info(), indent=2) + "\n"

    def create(self) -> None:
        """Create (or replace) the folder with sweep.json and every cell's initial files, atomically; for a
        resumed one, clear dead temporaries (missing cells are created by the ensemble runner)."""
        if self.state == "resume":
            remove_stale_temporaries(self.out)
            remove_stale_temporaries(self.out / FIGURES_DIR)
            return

        def populate(d: Path) -> None:
            (d / INFO).write_text(self.info_text(), encoding="utf-8")
            (d / CELLS_DIR).mkdir()
            for c in self.cells:
                c.populate(d / CELLS_DIR / c.out.name)

        stage_dir(self.out, populate, replace=self.state == "replace")
        for c in self.cells:
            c.state = "resume"
        self.state = "resume"
        self.created_here = True


def _describe_mismatch(old: dict, new: dict) -> str | None:
    def show(v) -> str:
        if isinstance(v, list):
            if v and isinstance(v[0], dict):  # parameters
                return " ".join(f"{p.get('key')}={','.join(map(str, p.get('values', [])))}" for p in v)
            return " ".join(map(str, v)) if v else "(none)"
        return str(v)

    for key, label in _RUN_ARGS:
        o, n = old.get(key), new[key]
        if key == "params" and isinstance(o, list):
            o = [{"key": p.get("key"), "values": p.get("values")} for p in o if isinstance(p, dict)]
            n = [{"key": p["key"], "values": p["values"]} for p in n]
        if o != n:
            return f"{label} {show(o)} there, {show(n)} now"
    if old.get("scenario_sha256") != new["scenario_sha256"]:
        return f"scenario {old.get('scenario')!r} content differs"
    return None


def _folder_state(plan: SweepPlan, force: bool) -> str:
    out = plan.out
    old = folder_info(out, INFO, "a sweep", force, SweepError)
    if isinstance(old, str):
        return old
    why = _describe_mismatch(old, plan.info())
    if why is not None:
        if force:
            return "replace"
        raise SweepError(f"{out} holds a sweep made with other arguments ({why}); use --force to replace it, "
                         "or another --out")
    state = model_check(out, old.get("model_sha256"), force, plan.allow_model_change, plan.warnings, SweepError)
    if state == "resume" and old.get("model_sha256"):
        plan.model_sha256 = old["model_sha256"]  # sweep.json keeps the fingerprint the sweep started with
    return state


def _check_params(params: Sequence[SweepParam], overrides: Sequence[str]) -> None:
    if not params:
        raise SweepError("--param: give at least one parameter to sweep")
    set_keys = {o.split("=", 1)[0].strip() for o in overrides}
    seen: set[str] = set()
    for p in params:
        if not p.values:
            raise SweepError(f"--param {p.key}: no values")
        if p.key in seen:
            raise SweepError(f"--param {p.key}: the key is swept twice; give each key once")
        if p.key in set_keys:
            raise SweepError(f"--param {p.text}: {p.key} is also given with --set; drop one of them")
        if p.key.split(".")[0] == "run":
            raise SweepError(f"--param {p.text}: run.* is not swept; use --seeds, --master-seed and --months")
        seen.add(p.key)


def _resolve_param(base: Scenario, p: SweepParam) -> SweepParam:
    """Validate each value of ``p`` alone on ``base``; round the values of an integer-typed key."""
    try:
        current = _field_value(base, p.key)
    except AttributeError:  # an unknown key: load_scenario below names the nearest valid one
        current = None
    if isinstance(current, int) and not isinstance(current, bool) and p.numeric:
        rounded = tuple(int(round(float(v))) for v in p.values)
        if len(set(rounded)) != len(rounded):
            raise SweepError(f"--param {p.text}: {p.key} is a whole number and the values round to "
                             f"{','.join(map(str, rounded))}, with repeats; choose fewer or wider values")
        p = SweepParam(p.key, rounded, p.log)
    for i in range(len(p.values)):
        try:
            load_scenario(base, overrides=[p.override(i)])
        except ScenarioError as exc:
            raise SweepError(f"--param {p.text}: {p.override(i)}: {_scenario_reason(exc, p.key)}") from None
    return p


def _check_metrics(metrics: Sequence[str] | None) -> list[str]:
    chosen = list(DEFAULT_METRICS if metrics is None else metrics)
    numeric = COLUMNS[2:]
    if not chosen:
        raise SweepError("--metrics: give at least one timeseries column")
    for m in chosen:
        if m not in numeric:
            near = difflib.get_close_matches(str(m), numeric, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise SweepError(f"--metrics: {m!r} is not a numeric timeseries column{hint}")
    if len(set(chosen)) != len(chosen):
        raise SweepError(f"--metrics: a column comes twice ({','.join(chosen)})")
    return chosen


def prepare_sweep(scenario: str | Path | Scenario, params: Sequence[SweepParam], seeds: int,
                  master_seed: int | None = None, months: int | None = None,
                  overrides: Sequence[str] | None = None, out: str | Path | None = None, force: bool = False,
                  metrics: Sequence[str] | None = None, at: int | None = None,
                  allow_model_change: bool = False) -> SweepPlan:
    """Validate a sweep's arguments, every cell's scenario and the folder; writes nothing.

    Raises ScenarioError for the scenario itself, ``--set`` or ``months`` (as ``load_scenario`` does) and
    SweepError for everything else: a parameter (its key, a value, a cell's combination of values), N,
    the master seed, metrics, ``at`` or the folder (other run arguments there need ``force``).
    """
    if seeds < 1:
        raise SweepError(f"--seeds must be >= 1 (given {seeds})")
    overrides = list(overrides or [])
    _check_params(params, overrides)
    base = load_scenario(scenario, overrides=overrides or None, months=months)  # errors name the file
    raw = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)  # the cells start from it
    master = base.run.seed if master_seed is None else int(master_seed)
    if master < 0:
        raise SweepError(f"--master-seed must be >= 0 (given {master})")
    base = load_scenario(base, seed=master)
    months = base.run.months
    at = months if at is None else int(at)
    if not 1 <= at <= months:
        raise SweepError(f"--at {at}: expected a month 1-{months} of the run")
    chosen = _check_metrics(metrics)
    resolved = [_resolve_param(base, p) for p in params]

    cell_overrides = [[p.override(i) for p, i in zip(resolved, idx, strict=True)]
                      for idx in itertools.product(*(range(len(p.values)) for p in resolved))]
    for cell in cell_overrides:
        if len(cell) > 1:
            try:
                load_scenario(base, overrides=cell)
            except ScenarioError as exc:
                flags = " ".join(f"--param {p.text}" for p in resolved)
                raise SweepError(f"{flags}: the cell {', '.join(cell)} is invalid: "
                                 f"{_scenario_reason(exc, '')}") from None

    keys = "-".join(p.key.rsplit(".", 1)[-1] for p in resolved)
    default = Path("runs") / f"sweep-{_folder_name(base.name)}-{keys}-{seeds}"
    folder = Path(out) if out is not None else default
    source = base.name if isinstance(scenario, Scenario) else str(scenario)
    plan = SweepPlan(out=folder, source=source, scenario=base, params=resolved, n=seeds, master_seed=master,
                     months=months, overrides=overrides, metrics=chosen, at=at, cells=[],
                     cell_overrides=cell_overrides, allow_model_change=allow_model_change)
    # The cells' folders are looked at only once the sweep's own folder is known to be this sweep's.
    plan.state = _folder_state(plan, force)
    try:
        plan.cells = [prepare_ensemble(raw, seeds, master_seed=master, months=months,
                                       overrides=[*overrides, *cell], force=force or plan.state == "replace",
                                       out=folder / CELLS_DIR / cell_dirname(i),
                                       allow_model_change=allow_model_change)
                      for i, cell in enumerate(cell_overrides)]
    except EnsembleError as exc:
        raise SweepError(str(exc)) from None
    return plan


# ------------------------------------------------------------------------------------------------ running
def run_sweep(plan: SweepPlan, executor: cf.Executor, progress: bool = True, draw: Callable | None = None) -> Path:
    """Create the folder if new, compute every missing seed of every cell on ``executor``, then write each
    cell's ensemble.csv, sweep.csv, sweep.md, figures/ and sweep.json; returns the folder.

    ``draw`` draws the figures (:func:`analysis.views.sweep_figures.draw_figures`, passed in by the command
    line, since experiments do not import the views); without it there are no figures.

    ``plan.computed`` is set to the number of seeds computed. If this call created the folder and fails
    before any seed is finished, the folder is removed. Errors are those of
    :func:`~analysis.experiments.ensemble.execute` (EnsembleError, or whatever the executor raised).
    """
    try:
        plan.create()
        plan.computed = execute(plan.cells, executor, progress=progress, desc="sweep")
        _write_outputs(plan, draw)
    except BaseException:
        if plan.created_here and not any(c.completed() for c in plan.cells):
            shutil.rmtree(plan.out, ignore_errors=True)
        raise
    return plan.out


def _cell_stats(plan: SweepPlan) -> tuple[str, dict[str, dict[str, np.ndarray]]]:
    """Write every cell's ensemble.csv and return (month label at ``at``, per metric and statistic an
    array over cells). Cells are read one at a time, so that a large sweep does not sit in memory."""
    per_cell = []
    label = ""
    for c in plan.cells:
        data = c.load()
        write_summary(c, data)
        idx = [data.columns.index(m) for m in plan.metrics]
        per_cell.append(summary_stats(data.values[:, plan.at - 1, idx]))
        label = data.months[plan.at - 1]
    stats = {m: {s: np.array([pc[s][j] for pc in per_cell]) for s in STATS}
             for j, m in enumerate(plan.metrics)}
    return label, stats


def _write_outputs(plan: SweepPlan, draw: Callable | None) -> None:
    label, stats = _cell_stats(plan)
    header = ["cell", *(p.key for p in plan.params), *(f"{m}_{s}" for m in plan.metrics for s in STATS)]
    rows = [[i, *values, *(stats[m][s][i].item() for m in plan.metrics for s in STATS)]
            for i, values in enumerate(plan.cell_values)]
    atomic_write(plan.out / SUMMARY, table_text(header, rows))
    figures = _draw(plan, label, stats, draw)
    atomic_write(plan.out / REPORT, markdown(plan, label, stats, figures))
    atomic_write(plan.out / INFO, plan.info_text())


def _draw(plan: SweepPlan, label: str, stats: dict[str, dict[str, np.ndarray]], draw: Callable | None) -> list[Path]:
    """Draw figures/ (one or two parameters) and remove figures of an earlier summary that are not redrawn."""
    folder = plan.out / FIGURES_DIR
    written: list[Path] = []
    if len(plan.params) <= 2 and draw is not None:
        title = f"{plan.scenario.name}: {plan.n} seeds per cell, month {plan.at} ({label})"
        written = draw(folder, [(p.key, p.values, p.log) for p in plan.params], plan.metrics,
                               stats, title)
    if folder.is_dir():
        for old in folder.glob("*.png"):
            if old not in written:
                old.unlink()
        if not any(folder.iterdir()):
            folder.rmdir()
    return written


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def markdown(plan: SweepPlan, label: str, stats: dict[str, dict[str, np.ndarray]],
             figures: Sequence[Path]) -> str:
    """sweep.md: what was run, the command that reproduces it, and the table of means with 95% CIs."""
    out = io.StringIO()
    keys = " x ".join(f"`{p.key}`" for p in plan.params)
    cells = len(plan.cells)
    out.write(f"# Sweep of {plan.scenario.name} over {keys}\n\n")
    out.write(f"{_plural(cells, 'cell')} x {_plural(plan.n, 'seed')} = {_plural(cells * plan.n, 'run')} of "
              f"{_plural(plan.months, 'month')}. Common random "
              f"numbers: seed k of every cell is child k of master seed {plan.master_seed}. Values at month "
              f"{plan.at} ({label}): mean over seeds [95% CI of the mean, t-based]; n/a where a metric is "
              "undefined in every seed.")
    if plan.overrides:
        out.write(f" Every cell also has --set {', '.join(f'`{o}`' for o in plan.overrides)}.")
    out.write(f"\n\nReproduce with:\n\n```\n{plan.command()}\n```\n\n")
    if figures:
        names = ", ".join(f"`{FIGURES_DIR}/{p.name}`" for p in figures)
        what = "mean and 95% CI against the values" if len(plan.params) == 1 else "heatmaps of the mean"
        out.write(f"Figures ({what}): {names}.\n\n")
    else:
        out.write("No figures: a sweep over three or more parameters is not drawn; see sweep.csv.\n\n")
    head = ["cell", *(f"`{p.key}`" for p in plan.params), *(f"`{m}`" for m in plan.metrics)]
    out.write("| " + " | ".join(head) + " |\n")
    out.write("|" + "|".join(["---:"] * len(head)) + "|\n")
    for i, values in enumerate(plan.cell_values):
        row = [str(i), *(value_text(v) for v in values)]
        for m in plan.metrics:
            s = {k: stats[m][k][i].item() for k in STATS}
            ci = f" [{fmt(s['ci_lo'])}, {fmt(s['ci_hi'])}]" if not math.isnan(s["ci_lo"]) else ""
            row.append(f"{fmt(s['mean'])}{ci}")
        out.write("| " + " | ".join(row) + " |\n")
    return out.getvalue()
