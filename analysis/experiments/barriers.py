"""The small-lab study (``abm barriers``): what it takes a new lab to survive and to catch up with the frontier.

Four parts, every one from the model's own mechanisms (nothing here sets a price, a survival rule or a share):

1. **Entrant survival map.** In each seed's world, run to an entry month, then copy the world once per probe
   entrant and let one probe enter the copy (:func:`abm.markets.entry.admit_probe`): a new small lab with a
   seed capital on a log grid ($10M-$10B) and a starting efficiency of 0.1-1.0 times the frontier's, from the
   best open model, acting as any lab afterwards (it plans, contracts, trains, sells, raises money, can
   default). After ``follow`` months (36): did it survive, and is its capability within ``gap`` of the
   frontier (the best of the other labs)? Averaged over seeds: a probability per grid cell; the seed capital
   at which the chance crosses 50% (interpolated in log capital) with a bootstrap CI over seeds.
2. **The entry barrier's path** (``entry_barrier_usd``, the capital a representative entrant needs to reach a
   viable capability in its planning horizon) with its CI over seeds, split into the compute of the final
   run at the risk-free bargained price, the rest of the budget over the horizon (the runway), and what the
   entrant's own bargained contract terms and default risk add (columns ``entry_barrier_compute_usd``,
   ``entry_barrier_runway_usd``, ``entry_barrier_terms_usd``).
3. **The price gap**: the volume-weighted price of reserved contracts small labs signed against the one
   the three largest labs signed (``reserved_price_small_usd_per_h100e_hour`` and ``..._frontier_...``);
   both come out of the Nash bargains of the contract market.
4. **Strategy comparison**: probes with the same seed capital and efficiency but a fixed R&D share on a grid
   (the rest buys compute), in worlds whose compute returns gamma is scaled (x0.5, x1, x1.5): does spending
   on algorithmic efficiency beat buying compute, and how does the answer move with gamma?

Parts 1-3 are repeated in every compared scenario; part 4 runs in the study's own scenario.

Probes and the world's random stream. A probe is an ordinary lab in its copy of the world, so its orders
and its revenue move prices and the other labs' decisions from the month it enters; but the random orders
in which the markets serve labs leave probes out of the world's draws (``World.random_order``), so a probe
does not reshuffle the world's random numbers by its mere presence. Each task also continues the world
without a probe; ``barriers.md`` reports the probe's paired effect on the lab HHI, by seed capital.

Folder (default ``runs/barriers-<scenario>-<N>/``): ``study.json``, ``results.jsonl`` (one line per seed and
scenario's probes; resumable), ``scenarios/<name>/`` (an ensemble folder per scenario, for parts 2-3),
``barriers.md``, ``survival.csv``, ``thresholds.csv``, ``trajectory.csv``, ``strategy.csv``,
``probe_effect.csv`` and ``figures/``.
"""

from __future__ import annotations

import copy
import hashlib
import math
import shlex
import tomllib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from abm.scenario import MAX_MONTHS, Scenario, load_scenario, to_toml, validate
from abm.timeline import month_label

from .compare import paired_stats
from .ensemble import EnsemblePlan, SeedData, child_seeds, summary_stats, table_text
from .tasks import Study, Task, results_in_order

SCENARIOS = ("baseline", "mega_deal", "public_compute", "antitrust", "open_weights")
SEED_GRID = tuple(float(10 ** x) for x in np.arange(7.0, 10.01, 0.5))  # $10M ... $10B, half-decades
EFFICIENCY_GRID = (0.1, 0.3, 0.6, 0.8, 1.0)
HEADLINE_EFFICIENCY = 0.6  # the representative entrant's fraction (the middle of entry.efficiency_fraction_*)
RD_GRID = (0.05, 0.2, 0.4, 0.6, 0.8)
GAMMA_FACTORS = (0.5, 1.0, 1.5)
STRATEGY_SEED_USD = 1e9
FOLLOW_MONTHS = 36
ENTRY_MONTHS = (36,)
BOOTSTRAP = 1000
PARTS = ("entry_barrier_compute_usd", "entry_barrier_runway_usd", "entry_barrier_terms_usd")
PRICES = ("reserved_price_small_usd_per_h100e_hour", "reserved_price_frontier_usd_per_h100e_hour")


class BarriersError(ValueError):
    """A user-facing problem with the study's arguments; one line."""


# ------------------------------------------------------------------------------------------------ the task
def probe_task(scenario_toml: str, seed: int, entry_month: int, follow: int, probes: list[dict]) -> dict:
    """Run the world (TOML text) with ``seed`` to ``entry_month``, then, for each probe, a copy of it with the
    probe entered, ``follow`` months on; and once without a probe. Top level, plain arguments and result.

    A probe is ``{"seed_usd", "efficiency", "rd_share" (or None)}``. Each result: ``alive`` (after ``follow``
    months), ``months`` (alive), ``capability``, ``frontier`` (the best other lab's capability at the end),
    ``raised`` (capital raised, seed included) and ``hhi`` (lab HHI by compute at the end); ``reference`` is
    the world's HHI and frontier at the end without a probe.
    """
    from abm.markets.entry import admit_probe
    from abm.model import ComputeMarket

    data = tomllib.loads(scenario_toml)
    data["run"] = {**data.get("run", {}), "seed": int(seed), "months": int(entry_month + follow)}
    world = ComputeMarket(validate(data, "barriers scenario"), record_flows=False)
    for _ in range(entry_month):
        world.step()

    def frontier(m, exclude_probes: bool = True) -> float:
        C = m.lab_table.cols
        s = m.alive_slots()
        if exclude_probes:
            s = s[~C["probe"][s]]
        return float(C["capability"][s].max()) if s.size else 0.0

    ref = copy.deepcopy(world)
    for _ in range(follow):
        ref.step()
    out = {"reference": {"hhi": ref.rows[-1]["lab_hhi_compute"], "frontier": frontier(ref)}, "probes": []}
    for k, p in enumerate(probes):
        m = copy.deepcopy(world)
        lab = admit_probe(m, float(p["seed_usd"]), float(p["efficiency"]), p.get("rd_share"), stream=k)
        for _ in range(follow):
            m.step()
        months = follow if lab.alive else int(lab.exit_t - entry_month)
        out["probes"].append({"alive": bool(lab.alive), "months": months, "capability": float(lab.capability),
                              "frontier": frontier(m), "raised": float(lab.capital_raised),
                              "hhi": float(m.rows[-1]["lab_hhi_compute"])})
    return out


# ------------------------------------------------------------------------------------------------ the plan
@dataclass
class BarriersPlan:
    """A validated study: scenarios, seeds, grids; nothing is written until it runs."""

    out: Path
    scenarios: list[Scenario]
    tomls: list[str]
    master_seed: int
    n: int
    months: int
    overrides: list[str]
    entry_months: list[int]
    follow: int
    gap: float
    seeds: list[int] = field(default_factory=list)
    study: Study | None = None
    ensembles: list[EnsemblePlan] = field(default_factory=list)
    allow_model_change: bool = False

    @property
    def name(self) -> str:
        return self.scenarios[0].name

    def info(self) -> dict:
        return {"scenarios": [s.name for s in self.scenarios],
                "scenario_sha256": [hashlib.sha256(t.encode()).hexdigest() for t in self.tomls],
                "master_seed": self.master_seed, "n_seeds": self.n, "months": self.months,
                "overrides": list(self.overrides), "entry_months": list(self.entry_months),
                "follow_months": self.follow, "gap": self.gap, "seed_grid_usd": list(SEED_GRID),
                "efficiency_grid": list(EFFICIENCY_GRID), "rd_grid": list(RD_GRID),
                "gamma_factors": list(GAMMA_FACTORS), "strategy_seed_usd": STRATEGY_SEED_USD}

    def map_probes(self) -> list[dict]:
        return [{"seed_usd": s, "efficiency": e, "rd_share": None} for s in SEED_GRID for e in EFFICIENCY_GRID]

    def strategy_probes(self) -> list[dict]:
        return [{"seed_usd": STRATEGY_SEED_USD, "efficiency": HEADLINE_EFFICIENCY, "rd_share": r} for r in RD_GRID]

    def gamma_toml(self, factor: float) -> str:
        scn = self.scenarios[0]
        if factor == 1.0:
            return self.tomls[0]
        return to_toml(load_scenario(scn, overrides={"scaling.gamma": scn.gamma * factor}))

    def tasks(self) -> list[Task]:
        """Every probe task, keyed ``map/<scenario>/<entry>/<seed index>`` and ``strategy/<gamma x>/<seed index>``."""
        out = []
        probes = self.map_probes()
        for scn, toml in zip(self.scenarios, self.tomls, strict=True):
            for e in self.entry_months:
                for i, s in enumerate(self.seeds):
                    out.append(Task(f"map/{scn.name}/{e:03d}/{i:04d}", probe_task, (toml, s, e, self.follow, probes)))
        strat = self.strategy_probes()
        e = self.entry_months[0]
        for f in GAMMA_FACTORS:
            toml = self.gamma_toml(f)
            for i, s in enumerate(self.seeds):
                out.append(Task(f"strategy/{f:g}/{i:04d}", probe_task, (toml, s, e, self.follow, strat)))
        return out


def prepare_barriers(scenario: str | Path, n: int = 20, compare: Sequence[str] | None = None,
                     master_seed: int | None = None, months: int | None = None,
                     overrides: Sequence[str] | None = None, entry_months: Sequence[int] = ENTRY_MONTHS,
                     follow: int = FOLLOW_MONTHS, gap: float | None = None, out: str | Path | None = None
                     ) -> BarriersPlan:
    """Validate the study's arguments (raises ScenarioError or BarriersError); writes nothing.

    ``compare``: the scenarios compared with ``scenario`` (default the other four of :data:`SCENARIOS`).
    ``gap``: the distance to the frontier that counts as caught up (default the scenario's
    ``entry.viable_gap``, the distance the entry barrier is measured at)."""
    if n < 2:
        raise BarriersError(f"--seeds must be >= 2 for confidence intervals (given {n})")
    overrides = list(overrides or [])
    main = load_scenario(scenario, overrides=overrides or None, months=months)
    names = list(compare) if compare is not None else [s for s in SCENARIOS if s != main.name]
    scns = [main] + [load_scenario(s, overrides=overrides or None, months=main.run.months) for s in names]
    seen = [s.name for s in scns]
    if len(set(seen)) != len(seen):
        raise BarriersError(f"--compare: scenarios need distinct names (given {', '.join(seen)})")
    entry_months = sorted(set(int(e) for e in entry_months))
    if not entry_months or entry_months[0] < 1:
        raise BarriersError("--entry-months: months after the start, each >= 1")
    if follow < 1:
        raise BarriersError(f"--follow must be >= 1 (given {follow})")
    if entry_months[-1] >= main.run.months:
        raise BarriersError(f"--entry-months: {entry_months[-1]} is not a month of the {main.run.months}-month "
                            f"run; probes enter in months 1-{main.run.months - 1}")
    if entry_months[-1] + follow > MAX_MONTHS:
        raise BarriersError(f"--follow {follow}: a probe entering in month {entry_months[-1]} would be followed "
                            f"past month {MAX_MONTHS}, the longest run a scenario allows")
    if main.gamma * max(GAMMA_FACTORS) >= 2:
        raise BarriersError(f"{main.name}: gamma {main.gamma:g} x {max(GAMMA_FACTORS)} leaves the allowed range")
    master = main.run.seed if master_seed is None else int(master_seed)
    if master < 0:
        raise BarriersError(f"--master-seed must be >= 0 (given {master})")
    gap = main.entry.viable_gap if gap is None else float(gap)
    if not (gap >= 0 and math.isfinite(gap)):
        raise BarriersError(f"--gap must be a number >= 0 (given {gap})")
    scns = [load_scenario(s, seed=master) for s in scns]
    plan = BarriersPlan(out=Path(out) if out is not None else Path("runs") / f"barriers-{main.name}-{n}",
                        scenarios=scns, tomls=[to_toml(s) for s in scns], master_seed=master, n=n,
                        months=main.run.months, overrides=overrides, entry_months=entry_months, follow=follow,
                        gap=gap, seeds=child_seeds(master, n))
    return plan


# ------------------------------------------------------------------------------------------------ running
def open_barriers(plan: BarriersPlan, force: bool = False, allow_model_change: bool = False) -> Study:
    """Check the output folder (a new study, the same study to resume, or refuse); writes nothing."""
    from .tasks import open_study, study_info

    plan.allow_model_change = allow_model_change
    plan.study = open_study(plan.out, study_info("barriers", plan.info()), force, allow_model_change)
    return plan.study


def run_barriers(plan: BarriersPlan, executor, progress: bool = True) -> Results:
    """Run the scenario ensembles and the probe tasks still missing on ``executor``, then write the tables.

    Resumable: finished seeds and probe tasks are kept; the outputs are recomputed from all of them, in key
    order, so they do not depend on the executor or the number of workers."""
    from .ensemble import execute, prepare_ensemble, write_summary
    from .tasks import run_tasks

    study = plan.study if plan.study is not None else open_barriers(plan)
    study.create()
    plan.ensembles = [prepare_ensemble(scn, plan.n, master_seed=plan.master_seed, months=plan.months,
                                       out=plan.out / "scenarios" / scn.name,
                                       allow_model_change=plan.allow_model_change) for scn in plan.scenarios]
    execute(plan.ensembles, executor, progress=progress, desc="scenarios")
    data = {}
    for p in plan.ensembles:
        data[p.name] = p.load()
        write_summary(p, data[p.name])
    run_tasks(study, plan.tasks(), executor, progress=progress, desc="probes", unit="task")
    results = collect(plan, study, data)
    write_outputs(results, study)
    return results


# ------------------------------------------------------------------------------------------------ statistics
def crossing(x: np.ndarray, p: np.ndarray, level: float = 0.5) -> float:
    """Where ``p`` (over increasing ``x``) first reaches ``level``, linearly interpolated: -inf if it is at or
    above it at the first point, +inf if it never reaches it."""
    above = np.flatnonzero(p >= level)
    if above.size == 0:
        return math.inf
    i = int(above[0])
    if i == 0:
        return -math.inf
    return float(x[i - 1] + (level - p[i - 1]) / (p[i] - p[i - 1]) * (x[i] - x[i - 1]))


def threshold_ci(hits: np.ndarray, level: float = 0.5, reps: int = BOOTSTRAP, rng_seed: int = 0
                 ) -> tuple[float, float, float]:
    """(estimate, CI low, CI high) of the seed capital (USD) where the chance of ``hits`` (seeds x capital
    grid) first reaches ``level``; the CI is the 2.5-97.5 percentile of a bootstrap over seeds. Values
    beyond the grid are 0 (below its first point) or inf (never reached)."""
    x = np.log10(np.asarray(SEED_GRID))
    est = crossing(x, hits.mean(axis=0), level)
    rng = np.random.default_rng(rng_seed)
    idx = rng.integers(0, hits.shape[0], size=(reps, hits.shape[0]))
    boot = np.sort([crossing(x, hits[r].mean(axis=0), level) for r in idx])
    lo, hi = boot[int(0.025 * reps)], boot[int(math.ceil(0.975 * reps)) - 1]
    return tuple(0.0 if v == -math.inf else (math.inf if v == math.inf else 10 ** v) for v in (est, lo, hi))


def mean_ci(x) -> tuple[float, float, float, int]:
    s = summary_stats(np.asarray(x, dtype=float)[:, None])
    return float(s["mean"][0]), float(s["ci_lo"][0]), float(s["ci_hi"][0]), int(s["n"][0])


# ------------------------------------------------------------------------------------------------ results
@dataclass
class Results:
    """The study's results as arrays: ``alive``/``reach`` [scenario][entry] = (seeds, capital, efficiency)."""

    plan: BarriersPlan
    alive: dict
    reach: dict
    months_alive: dict
    effect: dict          # [scenario][entry] = (seeds, capital, efficiency) HHI with probe - without
    strategy: dict        # [gamma factor] = {"alive": (seeds, rd), "gap": (seeds, rd)}
    ensembles: dict[str, SeedData]


def collect(plan: BarriersPlan, study: Study, ensembles: dict[str, SeedData]) -> Results:
    """Arrange the finished task results into arrays (tasks in key order)."""
    ns, ne = len(SEED_GRID), len(EFFICIENCY_GRID)
    alive, reach, months, effect = {}, {}, {}, {}
    for scn in plan.scenarios:
        for e in plan.entry_months:
            keys = [f"map/{scn.name}/{e:03d}/{i:04d}" for i in range(plan.n)]
            res = results_in_order(study, keys)
            a = np.array([[p["alive"] for p in r["probes"]] for r in res], dtype=bool).reshape(plan.n, ns, ne)
            gap = np.array([[p["frontier"] - p["capability"] for p in r["probes"]] for r in res]).reshape(plan.n, ns, ne)
            alive[scn.name, e] = a
            reach[scn.name, e] = a & (gap <= plan.gap)
            months[scn.name, e] = np.array([[p["months"] for p in r["probes"]] for r in res]).reshape(plan.n, ns, ne)
            effect[scn.name, e] = (np.array([[p["hhi"] for p in r["probes"]] for r in res])
                                   - np.array([r["reference"]["hhi"] for r in res])[:, None]).reshape(plan.n, ns, ne)
    strategy = {}
    for f in GAMMA_FACTORS:
        res = results_in_order(study, [f"strategy/{f:g}/{i:04d}" for i in range(plan.n)])
        strategy[f] = {"alive": np.array([[p["alive"] for p in r["probes"]] for r in res], dtype=bool),
                       "gap": np.array([[p["frontier"] - p["capability"] for p in r["probes"]] for r in res]),
                       "capability": np.array([[p["capability"] for p in r["probes"]] for r in res])}
    return Results(plan, alive, reach, months, effect, strategy, ensembles)


def survival_rows(r: Results) -> list[list]:
    rows = []
    for (name, e), a in r.alive.items():
        for i, s in enumerate(SEED_GRID):
            for j, f in enumerate(EFFICIENCY_GRID):
                rows.append([name, e, s, f, a.shape[0], a[:, i, j].mean(), r.reach[name, e][:, i, j].mean(),
                             r.months_alive[name, e][:, i, j].mean()])
    return rows


SURVIVAL_HEADER = ["scenario", "entry_month", "seed_usd", "efficiency_fraction", "n", "survival", "reach",
                   "months_alive_mean"]
THRESHOLD_HEADER = ["scenario", "entry_month", "efficiency_fraction", "outcome", "seed_usd_50", "ci_lo", "ci_hi"]


def threshold_rows(r: Results) -> list[list]:
    rows = []
    for (name, e), a in r.alive.items():
        for j, f in enumerate(EFFICIENCY_GRID):
            for outcome, hits in (("survive", a[:, :, j]), ("reach", r.reach[name, e][:, :, j])):
                rows.append([name, e, f, outcome, *threshold_ci(hits.astype(float))])
    return rows


TRAJECTORY_HEADER = ["scenario", "month", "step"] + [
    f"{c}_{s}" for c in ("entry_barrier_usd", *PARTS, *PRICES) for s in ("mean", "ci_lo", "ci_hi", "n")]


def trajectory_rows(r: Results) -> list[list]:
    rows = []
    for name, data in r.ensembles.items():
        cols = [data.columns.index(c) for c in ("entry_barrier_usd", *PARTS, *PRICES)]
        stats = summary_stats(data.values[:, :, cols])
        for t, (label, step) in enumerate(zip(data.months, data.steps, strict=True)):
            row = [name, label, step]
            for k in range(len(cols)):
                row += [stats[s][t, k].item() for s in ("mean", "ci_lo", "ci_hi", "n")]
            rows.append(row)
    return rows


STRATEGY_HEADER = ["gamma_factor", "gamma", "rd_share", "n", "survival", "survival_ci_lo", "survival_ci_hi",
                   "gap_mean", "gap_ci_lo", "gap_ci_hi", "reach"]


def strategy_rows(r: Results) -> list[list]:
    rows = []
    g0 = r.plan.scenarios[0].gamma
    for f, d in r.strategy.items():
        for k, share in enumerate(RD_GRID):
            a = d["alive"][:, k].astype(float)
            sm, slo, shi, n = mean_ci(a)
            gm, glo, ghi, _ = mean_ci(d["gap"][:, k])
            reach = float(np.mean(d["alive"][:, k] & (d["gap"][:, k] <= r.plan.gap)))
            rows.append([f, g0 * f, share, n, sm, slo, shi, gm, glo, ghi, reach])
    return rows


EFFECT_HEADER = ["scenario", "entry_month", "seed_usd", "n", "hhi_diff_mean", "hhi_diff_ci_lo", "hhi_diff_ci_hi"]


def effect_rows(r: Results) -> list[list]:
    rows = []
    for (name, e), d in r.effect.items():
        for i, s in enumerate(SEED_GRID):
            diffs = d[:, i, :].mean(axis=1)  # per seed, averaged over the efficiency grid
            ps = paired_stats(np.zeros_like(diffs), diffs)
            rows.append([name, e, s, ps.n, ps.mean, ps.lo, ps.hi])
    return rows


# ------------------------------------------------------------------------------------------------ report
def _usd(v: float) -> str:
    if v == 0:
        return f"< {_usd(SEED_GRID[0])}"
    if math.isinf(v):
        return f"> {_usd(SEED_GRID[-1])}"
    for div, unit in ((1e9, "B"), (1e6, "M")):
        if abs(v) >= div:
            return f"${v / div:.3g}{unit}"
    return f"${v:,.0f}"


def _ci_usd(est, lo, hi) -> str:
    return f"{_usd(est)} ({_usd(lo)} - {_usd(hi)})"


def command_line(plan: BarriersPlan) -> str:
    parts = ["abm", "barriers", plan.name, "--seeds", str(plan.n), "--master-seed", str(plan.master_seed)]
    default_compare = [s for s in SCENARIOS if s != plan.name]
    names = [s.name for s in plan.scenarios[1:]]
    if names != default_compare:
        parts += ["--compare", ",".join(names)]
    if list(plan.entry_months) != list(ENTRY_MONTHS):
        parts += ["--entry-months", ",".join(map(str, plan.entry_months))]
    if plan.follow != FOLLOW_MONTHS:
        parts += ["--follow", str(plan.follow)]
    parts += ["--months", str(plan.months)]
    for o in plan.overrides:
        parts += ["--set", o]
    return " ".join(shlex.quote(p) for p in parts)


def markdown(r: Results) -> str:
    plan = r.plan
    main = plan.scenarios[0]
    e0 = plan.entry_months[0]

    def when(e: int) -> str:
        return month_label(main.run.start, e)

    n_runs = plan.n * (len(plan.scenarios) * len(plan.entry_months) * (len(SEED_GRID) * len(EFFICIENCY_GRID) + 1)
                       + len(GAMMA_FACTORS) * (len(RD_GRID) + 1))
    lines = [f"# Barriers for small labs: {main.name}", "",
             f"{plan.n} seeds (children of master seed {plan.master_seed}); probe entrants enter at "
             f"{', '.join(f'{when(e)} (month {e})' for e in plan.entry_months)} and are followed {plan.follow} "
             f"months; *caught up* = alive and within {plan.gap:g} capability of the best other lab at the end "
             f"(the distance the entry barrier is measured at). {n_runs:,} probe runs; scenario ensembles of "
             f"{plan.months} months. Reproduce with:", "", "```bash", command_line(plan), "```", ""]
    trows = threshold_rows(r)
    lines += ["## Seed capital for a 50% chance", "",
              f"Seed capital at which the chance first reaches 50% (interpolated in log capital over the grid "
              f"{_usd(SEED_GRID[0])}-{_usd(SEED_GRID[-1])}), 95% bootstrap CI over seeds in brackets; "
              f"starting efficiency {HEADLINE_EFFICIENCY:g} of the frontier's (the representative entrant), "
              f"entry {when(e0)}.", "",
              "| scenario | survive 36 months | catch up |", "|---|---|---|"]
    for scn in plan.scenarios:
        cells = []
        for outcome in ("survive", "reach"):
            row = next(x for x in trows if x[0] == scn.name and x[1] == e0 and x[2] == HEADLINE_EFFICIENCY
                       and x[3] == outcome)
            cells.append(_ci_usd(*row[4:]))
        lines.append(f"| {scn.name} | {' | '.join(cells)} |")
    lines += ["", "By starting efficiency (catch up; entry " + when(e0) + "):", "",
              "| scenario | " + " | ".join(f"eff {f:g}" for f in EFFICIENCY_GRID) + " |",
              "|---|" + "---|" * len(EFFICIENCY_GRID)]
    for scn in plan.scenarios:
        cells = [_ci_usd(*next(x for x in trows if x[0] == scn.name and x[1] == e0 and x[2] == f
                               and x[3] == "reach")[4:]) for f in EFFICIENCY_GRID]
        lines.append(f"| {scn.name} | {' | '.join(cells)} |")
    a = r.alive[main.name, e0]
    rc = r.reach[main.name, e0]
    lines += ["", f"## Survival and catch-up maps ({main.name}, entry {when(e0)})", "",
              "Share of seeds (survive / catch up) by seed capital (rows) and starting efficiency (columns). "
              "Figures: `figures/survival_map.png`, `figures/reach_map.png` (50% contour).", "",
              "| seed capital | " + " | ".join(f"{f:g}" for f in EFFICIENCY_GRID) + " |",
              "|---|" + "---|" * len(EFFICIENCY_GRID)]
    for i, s in enumerate(SEED_GRID):
        lines.append(f"| {_usd(s)} | " + " | ".join(f"{a[:, i, j].mean():.2f} / {rc[:, i, j].mean():.2f}"
                                                      for j in range(len(EFFICIENCY_GRID))) + " |")
    # Barrier and its parts at horizons.
    lines += ["", "## The entry barrier and its parts", "",
              "`entry_barrier_usd`: mean over seeds (95% CI); its parts: the final run's compute at the "
              "risk-free bargained price, the runway (the rest of the budget over the planning horizon at that "
              "price), and the premium of the entrant's own contract terms and default risk. Figures: "
              "`figures/barrier_trajectory.png`, `figures/barrier_parts.png`.", "",
              "| scenario | month | barrier | compute | runway | terms and risk |", "|---|---|---|---|---|---|"]
    for name, data in r.ensembles.items():
        for h in (12, 60, plan.months):
            if h > len(data.months):
                continue
            vals = []
            for c in ("entry_barrier_usd", *PARTS):
                m_, lo, hi, _ = mean_ci(data.values[:, h - 1, data.columns.index(c)])
                vals.append(f"{_usd(m_)} ({_usd(lo)} - {_usd(hi)})" if c == "entry_barrier_usd" else _usd(m_))
            lines.append(f"| {name} | {data.months[h - 1]} | {' | '.join(vals)} |")
    # Price gap by year.
    lines += ["", "## The price gap", "",
              "Reserved price per effective H100e-hour (volume-weighted) of contracts signed by small labs and by the "
              "three largest labs, averaged over the months of each year in which the group signed, mean "
              "over seeds (95% CI); ratio small / frontier. Figure: `figures/price_gap.png`.", "",
              "| scenario | year | small labs | frontier labs | ratio |", "|---|---|---|---|---|"]
    for name, data in r.ensembles.items():
        js, jf = data.columns.index(PRICES[0]), data.columns.index(PRICES[1])
        years = sorted({m[:4] for m in data.months})
        for y in years[::3] + ([years[-1]] if (len(years) - 1) % 3 else []):
            idx = [k for k, m in enumerate(data.months) if m.startswith(y)]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                ps = np.nanmean(data.values[:, idx, js], axis=1)
                pf = np.nanmean(data.values[:, idx, jf], axis=1)
            ok = np.isfinite(ps) & np.isfinite(pf) & (pf > 0)
            sm = mean_ci(ps[np.isfinite(ps)]) if np.isfinite(ps).sum() >= 2 else (math.nan,) * 3 + (0,)
            fm = mean_ci(pf[np.isfinite(pf)]) if np.isfinite(pf).sum() >= 2 else (math.nan,) * 3 + (0,)
            ratio = mean_ci(ps[ok] / pf[ok]) if ok.sum() >= 2 else (math.nan,) * 3 + (0,)
            lines.append(f"| {name} | {y} | {_num(sm)} | {_num(fm)} | {_num(ratio)} |")
    # Strategy.
    srows = strategy_rows(r)
    lines += ["", "## Efficiency or compute?", "",
              f"Probes with {_usd(STRATEGY_SEED_USD)} of seed capital and {HEADLINE_EFFICIENCY:g} of the frontier's "
              f"efficiency, entering {when(e0)} in {main.name}, with the R&D share fixed (the rest buys compute), "
              "in worlds whose compute returns gamma is scaled. Survival at 36 months and the capability gap to "
              "the best other lab at the end (mean, 95% CI; smaller is better). Figure: `figures/strategy.png`.",
              "", "| gamma | R&D share | survival | gap to the frontier | caught up |", "|---|---|---|---|---|"]
    for row in srows:
        lines.append(f"| {row[1]:.3g} (x{row[0]:g}) | {row[2]:g} | {row[4]:.2f} ({row[5]:.2f} - {row[6]:.2f}) | "
                     f"{row[7]:.3f} ({row[8]:.3f} - {row[9]:.3f}) | {row[10]:.2f} |")
    best = {}
    for f in GAMMA_FACTORS:
        rows_f = [x for x in srows if x[0] == f]
        best[f] = min(rows_f, key=lambda x: x[7])[2]
    lines += ["", "Best R&D share (smallest mean gap): " + ", ".join(
        f"gamma x{f:g}: {best[f]:g}" for f in GAMMA_FACTORS) + ".", ""]
    # Probe effect.
    erows = effect_rows(r)
    lines += ["## How much a probe moves the world", "",
              f"Paired difference of the lab HHI by compute {plan.follow} months after entry, world with the "
              "probe minus the same world without it (mean over the efficiency grid, then over seeds; 95% CI). "
              "Probes are left out of the world's random orders, so the difference is their market effect plus "
              "the divergence it sets off.", "", "| scenario | seed capital | HHI difference |", "|---|---|---|"]
    for row in erows:
        if row[1] == e0 and row[2] in (SEED_GRID[0], SEED_GRID[len(SEED_GRID) // 2], SEED_GRID[-1]):
            lines.append(f"| {row[0]} | {_usd(row[2])} | {row[4]:+.0f} ({row[5]:+.0f} - {row[6]:+.0f}) |")
    lines += ["", "Files: `survival.csv`, `thresholds.csv`, `trajectory.csv`, `strategy.csv`, `probe_effect.csv`, "
              "`figures/`; each scenario's seeds in `scenarios/<name>/`.", ""]
    return "\n".join(lines)


def _num(t) -> str:
    m_, lo, hi = t[0], t[1], t[2]
    if not math.isfinite(m_):
        return "n/a"
    return f"{m_:.3g} ({lo:.3g} - {hi:.3g})" if math.isfinite(lo) else f"{m_:.3g}"


def write_outputs(r: Results, study: Study) -> None:
    """barriers.md and the CSV tables, written atomically into the study folder (the figures are drawn by
    :mod:`analysis.views.barriers_figures`)."""
    study.write("survival.csv", table_text(SURVIVAL_HEADER, survival_rows(r)))
    study.write("thresholds.csv", table_text(THRESHOLD_HEADER, threshold_rows(r)))
    study.write("trajectory.csv", table_text(TRAJECTORY_HEADER, trajectory_rows(r)))
    study.write("strategy.csv", table_text(STRATEGY_HEADER, strategy_rows(r)))
    study.write("probe_effect.csv", table_text(EFFECT_HEADER, effect_rows(r)))
    study.write("barriers.md", markdown(r))

