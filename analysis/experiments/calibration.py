"""``abm calibrate``: the simulated method of moments against the public figures of 2023-2024.

The free parameters (:data:`FREE_PARAMS`, each with bounds and the reason it is free) are chosen to bring the
model's moments close to the fitting targets of ``abm/data/targets.csv`` (``fit = yes``: dated 2024 or
earlier). A moment is the ensemble mean over ``seeds`` seeds, the same seeds at every parameter value (common
random numbers), so that the distance is a smooth function of the parameters and differences between two
points are not noise.

Distance: targets are compared on a log scale (log(x + 1) for counts), each divided by a scale sigma: the
target's own 90% range when the source gives one, (ln hi − ln lo) / (2 × 1.645), else
:data:`DEFAULT_LOG_SIGMA` (a figure known to about ±25%); the distance is the mean of squared scaled gaps,
so a distance of 1 means the model misses each target by one sigma on average (diagonal weighting
W = diag(1/sigma²)).

Optimiser: scipy's bounded Nelder-Mead in the unit cube of the parameters (log-scaled where the bounds span a
factor above 4), started from the scenario's current values, stopped by the wall-time budget or when the
simplex has converged. Standard errors come from the sandwich formula of the method of moments,
(G'WG)⁻¹ G'W Ω W G (G'WG)⁻¹, with G the Jacobian of the log moments with respect to the log parameters
(central differences, common random numbers; converted to the parameters' units by the delta method) and Ω the data variance diag(sigma²) plus the simulation variance of the
ensemble means (estimated from the seeds).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .moments import Target, applicable, moments_over_seeds

DEFAULT_LOG_SIGMA = 0.25
MIN_LOG_SIGMA = 0.1  # no figure is taken as known to better than about 10%
Z90 = 1.6448536269514722


class CalibrationError(ValueError):
    """A calibration that cannot start (no fitting target applies, a bad parameter); one-line message."""


@dataclass(frozen=True)
class FreeParam:
    key: str
    lo: float
    hi: float
    why: str
    baseline: bool = True  # also written into the baseline scenario (a structural value, not a 2023 level)

    @property
    def log(self) -> bool:
        return self.lo > 0 and self.hi / self.lo > 4.0

    def to_unit(self, v: float) -> float:
        v = min(max(v, self.lo), self.hi)
        if self.log:
            return math.log(v / self.lo) / math.log(self.hi / self.lo)
        return (v - self.lo) / (self.hi - self.lo)

    def from_unit(self, u: float) -> float:
        u = min(max(u, 0.0), 1.0)
        if self.log:
            return self.lo * (self.hi / self.lo) ** u
        return self.lo + u * (self.hi - self.lo)


FREE_PARAMS: tuple[FreeParam, ...] = (
    FreeParam("training.final_run_share", 0.01, 0.3,
              "no source separates the final run from experiments (docs/ODD.md S1); the largest runs pin it"),
    FreeParam("demand.growth_annual", 1.2, 100.0,
              "potential demand's early growth: the 2023 take-off of paid AI use has no direct measure; lab "
              "revenue pins it", baseline=False),
    FreeParam("demand.growth_halflife_years", 0.3, 8.0,
              "how fast that growth slows: the 2023 and 2024 revenue pin it together", baseline=False),
    FreeParam("demand.theta", 3.0, 20.0, "the weight of capability in the choice among labs: the revenue of the "
              "leader against the followers pins it"),
    FreeParam("capital.inflow_usd_month", 3e8, 1e10,
              "investors' money to AI labs: rounds are announced, the flow is not measured; lab compute pins it",
              baseline=False),
    FreeParam("chips.foundry_capacity_h100e_month", 2e4, 4e5,
              "advanced packaging capacity in H100e: not public; the world compute stock pins it", baseline=False),
    FreeParam("chips.foundry_growth_annual", 1.2, 4.0,
              "growth of that capacity: the stock's growth over 2023-24 pins it"),
    FreeParam("background.volume_h100e", 2e4, 2e6,
              "non-lab compute demand at its reference price: no public series; the spot price pins it",
              baseline=False),
)


def target_sigma(t: Target) -> float:
    """The log-scale tolerance of a target: its own 90% range if the source gives one, else the default; never
    below MIN_LOG_SIGMA, and for a count never below its Poisson spread on the log(x + 1) scale, 1/sqrt(x + 1)."""
    if math.isfinite(t.lo) and math.isfinite(t.hi) and t.lo > 0 and t.hi > t.lo:
        sigma = max((math.log(t.hi) - math.log(t.lo)) / (2 * Z90), MIN_LOG_SIGMA)
    else:
        sigma = DEFAULT_LOG_SIGMA
    if t.unit == "models":
        sigma = max(sigma, 1.0 / math.sqrt(max(t.value, 0.0) + 1.0))
    return sigma


def log_moment(x: float, t: Target) -> float:
    """Targets compared on a log scale; counts (which can be 0) as log(x + 1)."""
    if not math.isfinite(x):
        return math.nan
    if t.unit == "models":
        return math.log(max(x, 0.0) + 1.0)
    return math.log(max(x, 1e-300))


@dataclass
class Evaluation:
    values: np.ndarray  # natural units, one per free parameter
    per_seed: np.ndarray  # seeds x targets, natural units
    moments: np.ndarray  # log of the ensemble means
    distance: float


@dataclass
class Calibration:
    params: Sequence[FreeParam]
    targets: Sequence[Target]
    seeds: Sequence[int]
    base_toml: str
    months: int
    executor: object
    progress: object = None
    history: list[Evaluation] = field(default_factory=list)
    study: object = None  # a tasks.Study: each seed's moments at each point, kept so that a rerun resumes

    def __post_init__(self):
        self.data = np.array([log_moment(t.value, t) for t in self.targets])
        self.sigma = np.array([target_sigma(t) for t in self.targets])
        self.ids = [t.id for t in self.targets]
        self.base_cfg = load_scenario_from_text(self.base_toml)

    def scenario_toml(self, values: Sequence[float]) -> str:
        """The scenario with the free parameters at ``values``, as TOML text for the workers."""
        from abm.scenario import load_scenario, to_toml

        over = {p.key: float(v) for p, v in zip(self.params, values, strict=True)}
        return to_toml(load_scenario(self.base_cfg, overrides=over))

    def seed_rows(self, toml: str) -> list[dict[str, float]]:
        """Each seed's moments for the scenario ``toml``: from the study's results when a previous (killed)
        calibration computed them, else on the executor, each stored as it comes."""
        if self.study is None:
            return moments_over_seeds(toml, self.seeds, self.months, self.targets, self.executor)
        from .ensemble import Failures
        from .moments import seed_moments, spec

        point = hashlib.sha256(toml.encode("utf-8")).hexdigest()[:24]
        keys = [f"{point}/{s}" for s in self.seeds]
        specs = [spec(t) for t in self.targets]
        todo = [(k, s, self.executor.submit(seed_moments, toml, int(s), self.months, specs))
                for k, s in zip(keys, self.seeds, strict=True) if k not in self.study.done]
        failures = Failures(self.study.out, len(todo))
        for k, s, fut in todo:
            try:
                self.study.append(k, fut.result())
            except Exception as exc:
                failures.record(f"seed {s} at point {point}", exc)
        failures.check()
        return [self.study.done[k] for k in keys]

    def evaluate(self, values: Sequence[float]) -> Evaluation:
        rows = self.seed_rows(self.scenario_toml(values))
        per_seed = np.array([[r.get(i, math.nan) for i in self.ids] for r in rows], dtype=float)
        with np.errstate(invalid="ignore"):
            means = np.nanmean(np.where(np.isfinite(per_seed), per_seed, np.nan), axis=0)
        moments = np.array([log_moment(float(x), t) for x, t in zip(means, self.targets, strict=True)])
        gap = (moments - self.data) / self.sigma
        gap = np.where(np.isfinite(gap), gap, 10.0)  # a moment the model cannot produce counts as 10 sigma
        ev = Evaluation(np.asarray(values, dtype=float), per_seed, moments, float(np.mean(gap**2)))
        self.history.append(ev)
        if self.progress is not None:
            self.progress.update(1)
            self.progress.set_postfix(distance=f"{self.best.distance:.3g}")
        return ev

    @property
    def best(self) -> Evaluation:
        return min(self.history, key=lambda e: e.distance)

    def fit(self, start: Sequence[float], budget_s: float, max_evals: int | None = None) -> Evaluation:
        """Nelder-Mead in the unit cube from ``start`` until the budget, ``max_evals`` or convergence."""
        from scipy.optimize import minimize

        deadline = time.monotonic() + budget_s

        class _Stop(Exception):
            pass

        def objective(u: np.ndarray) -> float:
            if time.monotonic() > deadline or (max_evals is not None and len(self.history) >= max_evals):
                raise _Stop
            return self.evaluate([p.from_unit(float(x)) for p, x in zip(self.params, u, strict=True)]).distance

        u0 = np.array([p.to_unit(v) for p, v in zip(self.params, start, strict=True)])
        k = len(self.params)
        simplex = [u0] + [np.clip(u0 + np.eye(k)[i] * (0.15 if u0[i] < 0.85 else -0.15), 0, 1) for i in range(k)]
        try:
            minimize(objective, u0, method="Nelder-Mead", bounds=[(0.0, 1.0)] * k,
                     options={"initial_simplex": np.array(simplex), "xatol": 0.01, "fatol": 0.01,
                              "maxfev": max_evals or 10**9})
        except _Stop:
            pass
        return self.best

    def standard_errors(self, at: Evaluation, rel_step: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
        """Standard errors of the fitted values (natural units) and the Jacobian used (log moments per unit of
        each parameter's log). The Jacobian is taken in log parameters (elasticities) so that parameters of very
        different magnitudes are comparable; a parameter no moment moves with gets an infinite error."""
        k = len(self.params)
        G = np.zeros((len(self.targets), k))
        for j, p in enumerate(self.params):
            v = at.values.copy()
            up, dn = v.copy(), v.copy()
            up[j], dn[j] = min(v[j] * (1 + rel_step), p.hi), max(v[j] * (1 - rel_step), p.lo)
            m_up, m_dn = self.evaluate(up).moments, self.evaluate(dn).moments
            G[:, j] = (m_up - m_dn) / (math.log(up[j]) - math.log(dn[j]))
        G = np.where(np.isfinite(G), G, 0.0)
        W = np.diag(1.0 / self.sigma**2)
        # Simulation variance of the log ensemble means (delta method: var(x)/mean^2/S), plus the data variance.
        x = at.per_seed
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.nanmean(x, axis=0)
            sim = np.nanvar(x, axis=0, ddof=1) / np.maximum(mean**2, 1e-300) / max(x.shape[0], 1)
        omega = np.diag(self.sigma**2 + np.where(np.isfinite(sim), sim, 0.0))
        moved = np.abs(G).max(axis=0) > 1e-6
        se = np.full(k, math.inf)
        if moved.any():
            g = G[:, moved]
            A = g.T @ W @ g
            Ainv = np.linalg.pinv(A)
            V = Ainv @ g.T @ W @ omega @ W @ g @ Ainv
            se[moved] = np.sqrt(np.maximum(np.diag(V), 0.0)) * at.values[moved]  # delta method: d v = v d ln v
        return se, G


def load_scenario_from_text(text: str):
    import tomllib

    from abm.scenario import validate

    return validate(tomllib.loads(text), "scenario")


# ------------------------------------------------------------------------------------------------ the command
TINY_SEEDS, TINY_MONTHS, TINY_EVALS = 2, 24, 4
REPORT_FILE = Path(__file__).resolve().parents[2] / "docs" / "CALIBRATION.md"


def _get(cfg, key: str) -> float:
    section, name = key.split(".")
    return float(getattr(getattr(cfg, section), name))


def _fmt_value(v: float) -> str:
    """A TOML float with 4 significant digits."""
    text = f"{v:.4g}"
    return text if any(c in text for c in ".en") else text + ".0"


def set_toml_values(text: str, values: dict[str, float], note: str) -> str:
    """``text`` with ``section.key = value`` set for each of ``values``: an existing key keeps its line's
    position and trailing comment; a missing key is added under its section header, a missing section at the
    end. Only plain ``[section]`` tables are touched (never ``[[array]]`` entries)."""
    lines = text.split("\n")
    for key, v in values.items():
        section, name = key.split(".")
        header = f"[{section}]"
        start = next((i for i, ln in enumerate(lines) if ln.strip() == header), None)
        new_line = f"{name} = {_fmt_value(v)}  # {note}"
        if start is None:
            if lines and lines[-1].strip():
                lines.append("")
            lines += [header, new_line]
            continue
        end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
        at = next((i for i in range(start + 1, end) if lines[i].split("=")[0].strip() == name
                   and not lines[i].lstrip().startswith("#")), None)
        if at is None:
            lines.insert(start + 1, new_line)
        else:
            lines[at] = new_line
    out = "\n".join(lines)
    return out if out.endswith("\n") else out + "\n"


@dataclass
class CalibrationResult:
    scenario: str
    calib: Calibration
    start: Evaluation
    fitted: Evaluation
    se: np.ndarray
    wall_s: float
    written: list[str]
    report: str | None

    def summary(self) -> str:
        lines = [f"calibrated {self.scenario}: distance {self.start.distance:.3g} -> {self.fitted.distance:.3g} "
                 f"after {len(self.calib.history)} evaluations ({self.wall_s:.0f} s)"]
        for p, v0, v, s in zip(self.calib.params, self.start.values, self.fitted.values, self.se, strict=True):
            note = f"standard error {s:.2g}" if math.isfinite(s) else "not identified: kept at its start value"
            lines.append(f"  {p.key} = {v:.4g} (start {v0:.4g}, {note})")
        for w in self.written:
            lines.append(f"wrote {w}")
        return "\n".join(lines)


def reach(calib: Calibration, i: int) -> str:
    """Whether any evaluated point brought target ``i`` within one sigma, and on which side the model stayed."""
    m = np.array([e.moments[i] for e in calib.history])
    m = m[np.isfinite(m)]
    if m.size == 0:
        return "the model never produced it"
    d, s = calib.data[i], calib.sigma[i]
    if np.any(np.abs(m - d) <= s):
        return "yes"
    if m.min() > d:
        return "no: above it at every point tried"
    if m.max() < d:
        return "no: below it at every point tried"
    return "no: the points tried fall on both sides, none within one sigma"


def markdown_report(res: CalibrationResult, command: str) -> str:
    c = res.calib
    lines = ["# Calibration", "",
             "What `abm calibrate` fitted, to what, and how well. Regenerate with:", "", "```bash", command, "```",
             "",
             f"Scenario `{res.scenario}`, {len(c.seeds)} seeds per evaluation (common random numbers), "
             f"{c.months} months, {len(c.history)} evaluations. Distance (mean squared "
             f"gap in sigmas over the fitting targets): {res.start.distance:.3g} at the start, "
             f"{res.fitted.distance:.3g} fitted.", "",
             "Method: the simulated method of moments. Each moment is the mean over seeds of the target's "
             "quantity in the model, compared with the data on a log scale (log(x + 1) for counts); each gap is "
             "divided by the target's sigma (its 90% range / 3.29 in log terms when the source gives one, else "
             f"{DEFAULT_LOG_SIGMA}; at least {MIN_LOG_SIGMA}, and for counts at least the Poisson spread "
             "1/sqrt(x + 1)); the distance is the mean of the squared scaled gaps (weights 1/sigma², "
             "diagonal). Search: scipy's bounded Nelder-Mead in the unit cube of the parameters (log scale where "
             "the bounds span a factor above 4) from the scenario's values, within the time budget. Standard "
             "errors: the sandwich formula with the Jacobian of the log moments with respect to the log parameters "
             "by central differences (±5%, the same seeds), converted to the parameters' units by the delta "
             "method, and Ω the data variance plus the simulation variance of the ensemble means; an infinite "
             "error means no target moves with that parameter near the fit: it is not identified by these "
             "targets, and the scenarios keep their value.", "",
             "## Free parameters", "",
             "| parameter | bounds | start | fitted | standard error | why it is free |",
             "|---|---|---:|---:|---:|---|"]
    for p, v0, v, s in zip(c.params, res.start.values, res.fitted.values, res.se, strict=True):
        se = "∞ (not identified: not written)" if not math.isfinite(s) else f"{s:.3g}"
        where = "" if p.baseline else " (this scenario only)"
        lines.append(f"| `{p.key}` | {p.lo:.3g} - {p.hi:.3g} | {v0:.4g} | {v:.4g} | {se} | {p.why}{where} |")
    lines += ["", "## Targets", "",
              "Model: mean and 90% interval over the seeds at the fitted values. Gap: (model − data) / sigma "
              "on the log scale.", "",
              "| target | date | data | sigma (log) | model mean | model 90% interval | gap | within one sigma at some point tried |",
              "|---|---|---:|---:|---:|---:|---:|---|"]
    from .validation import summarise

    per_seed = [dict(zip(c.ids, row, strict=True)) for row in res.fitted.per_seed.tolist()]
    for i, r in enumerate(summarise(c.targets, per_seed)):
        t = r.target
        gap = (res.fitted.moments[i] - c.data[i]) / c.sigma[i]
        lines.append(f"| {t.target} ({t.unit}) | {t.date} | {t.value:.3g} | {c.sigma[i]:.2f} | {r.mean:.3g} | "
                     f"{r.p5:.3g} - {r.p95:.3g} | {gap:+.2f} | {reach(c, i)} |")
    missed = [t for i, t in enumerate(c.targets) if reach(c, i) != "yes"]
    lines += ["", "## Targets the model does not reach", ""]
    if missed:
        lines += [f"- {t.target}, {t.date}: {reach(c, c.targets.index(t))[4:]}." for t in missed]
    else:
        lines.append("None: every fitting target came within one sigma at some point tried.")
    lines += ["", "Why the model misses what it misses, and what the fitted values change in the baseline: "
              "docs/FINDINGS.md, section 4. The figures dated 2025 and later were fitted on nothing; `abm validate` "
              "compares the model with them.", ""]
    return "\n".join(lines)


def run_calibration(scenario: str, targets: Sequence[Target], *, seeds: int = 8, master_seed: int = 1,
                    budget_s: float = 1800.0, tiny: bool = False, executor_kwargs: dict | None = None,
                    progress: bool = True, write: bool = True, report: str | None = None,
                    apply_to: Sequence[str] | None = None, max_evals: int | None = None,
                    out: str | Path | None = None, force: bool = False,
                    allow_model_change: bool = False, warn=None) -> CalibrationResult:
    """Fit :data:`FREE_PARAMS` of ``scenario`` to its applicable fitting targets (module docstring); write
    the fitted values into ``apply_to`` (default: the scenario and the baseline) and the report.

    Every seed's moments at every point tried are kept in the study folder ``out`` (default
    ``runs/calibrate-<scenario>-<seeds>x<seed>[-tiny]-<first 8 hex digits of the scenario's SHA-256>``) as
    they are computed; the same
    command run again (after a kill, say) replays the search from them, computing only what is missing.
    The search is deterministic, so a resumed calibration stopped by ``max_evals`` (or by convergence)
    equals an uninterrupted one; the time ``budget_s`` counts the time of this invocation only. A folder
    made with other arguments needs ``force``; one made by another version of the model needs ``force`` or
    ``allow_model_change``; ``warn``, if given, is called with each warning (a resumed folder of another
    model)."""
    from abm.scenario import ScenarioError, load_scenario, resolve_path, to_toml

    from .ensemble import EnsembleError, atomic_write, child_seeds
    from .executors import make_executor
    from .tasks import open_study, study_info
    from .validation import scenario_targets

    try:
        cfg = load_scenario(scenario)
    except ScenarioError as exc:
        raise CalibrationError(str(exc)) from None
    fit = [t for t in scenario_targets(cfg, targets) if t.fit]
    if not fit:
        raise CalibrationError(f"{scenario}: no fitting target applies to a run from {cfg.run.start} over "
                               f"{cfg.run.months} months")
    s0 = int(cfg.run.start[:4]) * 12 + int(cfg.run.start[5:]) - 1
    last = max(int(t.date[:4]) * 12 + int(t.date[5:]) - 1 for t in fit) - s0 + 1
    months = min(cfg.run.months, last)
    n_seeds = seeds
    if max_evals is not None and max_evals < 1:
        raise CalibrationError(f"--max-evals must be >= 1 (given {max_evals})")
    if tiny:
        months, n_seeds, max_evals = min(months, TINY_MONTHS), TINY_SEEDS, max_evals or TINY_EVALS
        names = {t.metric.split(":")[1] for t in fit if t.kind in ("lab", "cloud", "vendor")}
        fit = applicable(fit, cfg.run.start, months, names)
        if not fit:
            raise CalibrationError(f"{scenario}: no fitting target within the tiny run's {months} months")
    # Where the results go is checked now, not after a search of --budget minutes.
    report_path = Path(report) if report else (None if tiny else REPORT_FILE)
    targets_to = list(apply_to) if apply_to is not None else ([] if tiny else [scenario, "baseline"])
    for name in targets_to:
        try:
            resolve_path(name)
        except ScenarioError as exc:
            raise CalibrationError(f"--apply-to {name}: {exc}") from None
    report_dir = Path(os.path.abspath(report_path)).parent if report_path is not None else None
    if report_dir is not None and not report_dir.is_dir():
        raise CalibrationError(f"--report {report_path}: the folder {report_dir} does not exist")
    params = FREE_PARAMS
    start = [_get(cfg, p.key) for p in params]
    seed_list = child_seeds(master_seed, n_seeds)
    base_toml = to_toml(cfg)
    scenario_sha = hashlib.sha256(base_toml.encode("utf-8")).hexdigest()
    # The scenario's hash is in the default name: a calibration rewrites its scenario, so the next one starts
    # a folder of its own instead of meeting the last one's.
    folder = Path(out) if out is not None else Path("runs") / (
        f"calibrate-{cfg.name}-{n_seeds}x{master_seed}" + ("-tiny" if tiny else "") + f"-{scenario_sha[:8]}")
    info = study_info("calibration", {
        "scenario": cfg.name, "scenario_sha256": scenario_sha,
        "seeds": seed_list, "months": months,
        "targets": [[t.id, t.value, float(target_sigma(t))] for t in fit],
        "params": [[p.key, p.lo, p.hi] for p in params]})
    try:
        study = open_study(folder, json.loads(json.dumps(info)), force, allow_model_change)
        study.create()
        for w in study.warnings if warn is not None else ():
            warn(w)
    except EnsembleError as exc:
        raise CalibrationError(str(exc)) from None
    except OSError as exc:
        raise CalibrationError(f"cannot write {folder}: {exc.strerror or exc}") from None
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc="calibrate", unit="eval", dynamic_ncols=True, mininterval=0.5)
    t0 = time.monotonic()
    try:
        with make_executor(**(executor_kwargs or {})) as ex:
            calib = Calibration(params, fit, seed_list, base_toml, months, ex, bar, study=study)
            first = calib.evaluate(start)
            best = calib.fit(start, budget_s, max_evals)
            se, _ = calib.standard_errors(best)
    finally:
        if bar is not None:
            bar.close()
    wall = time.monotonic() - t0
    res = CalibrationResult(cfg.name, calib, first, best, se, wall, [], None)
    command = (f"abm calibrate {scenario} --seeds {n_seeds} --seed {master_seed} --budget {budget_s / 60:g}"
               + (f" --max-evals {max_evals}" if max_evals is not None and not tiny else "")
               + (" --tiny" if tiny else ""))
    if write and report_path is not None:
        atomic_write(report_path, markdown_report(res, command))
        res.written.append(str(report_path))
    if write:
        for name in targets_to:
            try:
                path = resolve_path(name)
                text = path.read_text(encoding="utf-8")
            except (ScenarioError, OSError) as exc:
                raise CalibrationError(f"--apply-to {name}: {exc}") from None
            own = resolve_path(scenario).resolve() == path.resolve()
            # A parameter no target moves with near the fit is not identified: its value stays as it was.
            values = {p.key: v for p, v, e in zip(params, best.values, se, strict=True)
                      if (own or p.baseline) and math.isfinite(e)}
            new = set_toml_values(text, values, f"fitted by abm calibrate ({cfg.name})")
            load_scenario_from_text(new)  # the written file must still be a valid scenario
            atomic_write(path, new)
            res.written.append(str(path))
    return res
