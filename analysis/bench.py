"""The benchmark behind ``abm bench`` and ``make bench``: how fast the model is, how it scales with the
number of labs, what an ensemble costs, and how it compares with a reference Mesa model.

What is measured (``--quick`` shrinks every size, for tests and CI; its figures are not compared with the
targets):

* **baseline, model only**: in this process, ``ComputeMarket("baseline", rng=1)`` built and stepped 120
  times; the median wall time of ``--repeats`` runs (default 5) after one warm-up run that is not counted
  (it pays one-off costs such as lazy imports). Every run uses the same seed, so every run does the same
  work. No interpreter start, no imports, no files.
* **baseline, whole process**: ``python -m analysis.cli run baseline --out TMP --force --quiet`` (what
  ``abm run baseline`` runs) in a fresh interpreter, imports and writing the run folder included; median
  of 3.
* **scaling**: the baseline grown to each of ``--labs`` labs (default 100, 1,000, 10,000, 100,000; see
  :func:`abm.scale.scale_world`) for 120 months, model only (no files), each in a fresh interpreter so that
  its peak memory (``ru_maxrss``, imports included) is its own. Build and step times are reported apart;
  agent-steps are the sum over months of the labs alive at the end of the month (``labs_active``) plus
  the clouds and vendors; time per agent-step is the step time over agent-steps. A run over ``--timeout``
  seconds is stopped and counts as a miss; larger sizes are then skipped.
* **bare Mesa agent-step**: in the same interpreter, right after each scaling run, the Boltzmann wealth
  model of Mesa's tutorial without space or data collection (:class:`BareMoneyModel`) with as many agents
  as labs, stepped until about a million agent-steps are done (10 to 100 steps). Its time per agent-step
  is what one Python method call per agent costs in Mesa on this machine; ours at 10,000 labs is compared
  with it.
* **whole process at 10,000 labs**: ``abm run baseline --labs 10000`` (``--process-labs``) in a fresh
  interpreter with every output written, once as CSV (the default) and once with ``--format parquet``:
  wall time, peak memory of that process (``os.wait4``) and the size of the run folder.
* **ensemble**: ``--seeds`` (default 100) seeds of the baseline through ``analysis.experiments.ensemble``
  on each of ``--workers`` (default 1 and 2) local processes, process-pool start-up included, into a
  temporary folder; the ``ensemble.csv`` files must be byte-identical.
* **reference**: Mesa's own example ``mesa.examples.basic.boltzmann_wealth_model`` run as shipped (its
  step includes its DataCollector and its grid), with as many agents as the largest lab count up to
  10,000, on a square grid with one agent per cell on average, for 100 steps, in this process; for
  information beside the bare reference.

``bench.json`` holds the machine, every figure, every target with whether it was met, and the command;
``bench.md`` holds the tables that are also printed.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = "baseline"
SEED = 1
BOLTZMANN_SEED = 42
JSON_NAME = "bench.json"
TABLE_NAME = "bench.md"

FULL = {"labs": [100, 1000, 10_000, 100_000], "months": 120, "seeds": 100, "workers": [1, 2], "repeats": 5,
        "process_repeats": 3, "boltzmann_steps": 100, "process_labs": 10_000}
QUICK = {"labs": [40, 80], "months": 12, "seeds": 4, "workers": [1, 2], "repeats": 1,
         "process_repeats": 1, "boltzmann_steps": 10, "process_labs": 80}
DEFAULT_TIMEOUT = 600.0
BARE_AGENT_STEPS = 1_000_000  # agent-steps of the bare Mesa reference (10 to 100 steps)
FORMATS = ("csv", "parquet")

# The targets: (key, what, limit, unit). Each applies only to a measurement of the size it names.
TARGETS = [
    ("baseline_model_s", "baseline, 120 months, model only", 0.1, "s"),
    ("baseline_process_s", "`abm run baseline`, whole process", 3.0, "s"),
    ("per_agent_step_over_bare_mesa", "time per agent-step at 10,000 labs / a bare Mesa agent-step", 3.0, "x"),
    ("run_10000_csv_s", "`abm run baseline --labs 10000`, whole process, all outputs (CSV)", 10.0, "s"),
    ("run_10000_parquet_s", "`abm run baseline --labs 10000 --format parquet`, whole process", 10.0, "s"),
    ("labs_10000_s", "10,000 labs × 120 months, model only", 30.0, "s"),
    ("labs_10000_peak_rss_mib", "peak memory at 10,000 labs", 2048.0, "MiB"),
    ("labs_10000_over_1000", "time(10,000 labs) / time(1,000 labs)", 12.0, "x"),
    ("labs_100000_s", "100,000 labs × 120 months, model only", 120.0, "s"),
    ("labs_100000_peak_rss_mib", "peak memory at 100,000 labs", 4096.0, "MiB"),
    ("labs_100000_over_10000", "time(100,000 labs) / time(10,000 labs)", 11.0, "x"),
    ("ensemble_100_seeds_2_workers_s", "100-seed baseline ensemble on 2 workers", 60.0, "s"),
]


class BenchError(Exception):
    """A user-facing problem with the benchmark's arguments or output folder; one line."""


@dataclass
class BenchSettings:
    """What to measure; :meth:`make` fills what is not given from the full or the quick sizes."""

    labs: list[int]
    months: int
    seeds: int
    workers: list[int]
    repeats: int
    process_repeats: int
    boltzmann_steps: int
    process_labs: int
    quick: bool = False
    timeout: float = DEFAULT_TIMEOUT
    boltzmann_agents: int = field(init=False)

    def __post_init__(self) -> None:
        self.labs = sorted(set(self.labs))
        self.workers = sorted(set(self.workers))
        self.boltzmann_agents = max([n for n in self.labs if n <= 10_000] or [min(self.labs)])

    @classmethod
    def make(cls, quick: bool = False, timeout: float | None = None, **given) -> BenchSettings:
        base = dict(QUICK if quick else FULL)
        base.update({k: v for k, v in given.items() if v is not None})
        return cls(**base, quick=quick, timeout=DEFAULT_TIMEOUT if timeout is None else timeout)

    def command(self) -> str:
        """The ``abm bench`` command line that measures exactly this."""
        parts = ["abm bench", "--quick" if self.quick else "",
                 f"--labs {','.join(map(str, self.labs))}", f"--months {self.months}",
                 f"--seeds {self.seeds}", f"--workers {','.join(map(str, self.workers))}",
                 f"--repeats {self.repeats}", f"--process-labs {self.process_labs}", f"--timeout {self.timeout:g}"]
        return " ".join(p for p in parts if p)


def _say(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def _child_env() -> dict[str, str]:
    """The environment of child interpreters: this project's code first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _peak_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident set size so far, MiB (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(who).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


# ------------------------------------------------------------------------------------------------ baseline
def time_model(months: int, repeats: int, seed: int = SEED) -> dict:
    """Wall time of building and stepping the baseline in this process: one warm-up, then ``repeats``."""
    from abm.model import ComputeMarket

    over = {"run.months": months}

    def once() -> float:
        t0 = time.perf_counter()
        model = ComputeMarket(SCENARIO, overrides=over, rng=seed, record_flows=False)
        for _ in range(months):
            model.step()
        return time.perf_counter() - t0

    warm = once()
    runs = []
    for k in range(repeats):
        runs.append(once())
        _say(f"baseline, model only, run {k + 1}/{repeats}: {runs[-1]:.2f} s")
    return {"months": months, "seed": seed, "repeats": repeats, "warmup_s": warm,
            "warmup": "one run before the timed ones, not counted", "runs_s": runs,
            "median_s": statistics.median(runs)}


def time_process(months: int, repeats: int, tmp: Path) -> dict:
    """Wall time of ``abm run baseline`` (as ``python -m analysis.cli``) in a fresh interpreter."""
    from abm.scenario import load_scenario

    cmd = [sys.executable, "-m", "analysis.cli", "run", SCENARIO, "--out", str(tmp / "run"), "--force",
           "--quiet"]
    if months != load_scenario(SCENARIO).run.months:
        cmd[5:5] = ["--months", str(months)]
    runs = []
    for k in range(repeats):
        t0 = time.perf_counter()
        res = subprocess.run(cmd, env=_child_env(), cwd=tmp, capture_output=True, text=True)
        runs.append(time.perf_counter() - t0)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[1:])} failed: {res.stderr.strip()}")
        _say(f"abm run {SCENARIO}, whole process, run {k + 1}/{repeats}: {runs[-1]:.2f} s")
    shown = ["abm", *cmd[3:]]
    shown[shown.index("--out") + 1] = "TMP"
    return {"command": " ".join(shown), "months": months, "repeats": repeats, "runs_s": runs,
            "median_s": statistics.median(runs)}


def time_process_labs(n_labs: int, months: int, tmp: Path) -> list[dict]:
    """``abm run baseline --labs N`` in a fresh interpreter, every output written, once per format: wall
    time, the process's own peak memory and the run folder's size."""
    from abm.scenario import load_scenario

    out = []
    for fmt in FORMATS:
        folder = tmp / f"run-{n_labs}-{fmt}"
        cmd = [sys.executable, "-m", "analysis.cli", "run", SCENARIO, "--labs", str(n_labs), "--out", str(folder),
               "--force", "--quiet", "--format", fmt]
        if months != load_scenario(SCENARIO).run.months:
            cmd[5:5] = ["--months", str(months)]
        _say(f"abm run {SCENARIO} --labs {n_labs} --format {fmt}, whole process")
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=_child_env(), cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        proc.stderr.close()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[3:])} failed: {err.strip()}")
        files = sorted(p for p in folder.iterdir() if p.is_file())
        rss = usage.ru_maxrss / 2**20 if sys.platform == "darwin" else usage.ru_maxrss / 2**10
        shown = ["abm", *cmd[3:]]
        shown[shown.index("--out") + 1] = "TMP"
        out.append({"format": fmt, "labs": n_labs, "months": months, "command": " ".join(shown), "wall_s": wall,
                    "peak_rss_mib": rss, "folder_mib": sum(p.stat().st_size for p in files) / 2**20,
                    "files": {p.name: p.stat().st_size for p in files}})
        _say(f"--labs {n_labs} --format {fmt}: {wall:.1f} s, peak {rss:.0f} MiB, "
             f"{out[-1]['folder_mib']:.0f} MiB written")
        shutil.rmtree(folder, ignore_errors=True)
    return out


def _bare_model_class():
    import mesa

    class BareMoneyAgent(mesa.Agent):
        """Gives one unit of wealth to a random agent when it has any (no space, no data collection)."""

        def __init__(self, model):
            super().__init__(model)
            self.wealth = 1

        def step(self):
            if self.wealth > 0:
                other = self.random.choice(self.model.everyone)
                other.wealth += 1
                self.wealth -= 1

    class BareMoneyModel(mesa.Model):
        """The Boltzmann wealth model of Mesa's tutorial before space and data collection are added: each step
        every agent, in a random order (``shuffle_do``), gives a unit to a random agent. The agents are drawn
        from a list kept at the start (``self.model.agents`` would be copied to a list at every draw)."""

        def __init__(self, n: int, rng: int = BOLTZMANN_SEED):
            super().__init__(rng=rng)
            BareMoneyAgent.create_agents(self, n)
            self.everyone = self.agents.to_list()

        def step(self):
            self.agents.shuffle_do("step")

    return BareMoneyModel


def time_bare_mesa(agents: int, steps: int | None = None) -> dict:
    """Time per agent-step of the bare Boltzmann model (:func:`_bare_model_class`) with ``agents`` agents,
    in this process, after a short warm-up: ``steps`` steps, by default enough for about a million
    agent-steps (10 to 100)."""
    model_cls = _bare_model_class()
    steps = steps or max(10, min(100, BARE_AGENT_STEPS // max(agents, 1)))
    warm = model_cls(100)
    for _ in range(5):
        warm.step()
    model = model_cls(agents)
    t0 = time.perf_counter()
    for _ in range(steps):
        model.step()
    dt = time.perf_counter() - t0
    return {"model": "Boltzmann wealth, no space, no data collection", "agents": agents, "steps": steps,
            "step_s": dt, "us_per_agent_step": dt / (agents * steps) * 1e6}


# ------------------------------------------------------------------------------------------------ scaling
def agent_steps(model) -> int:
    """Agent-steps of a finished run: per month, the labs alive at its end plus the clouds and vendors."""
    firms = len(model.clouds) + len(model.vendors)
    return int(sum(row["labs_active"] for row in model.rows)) + firms * len(model.rows)


def scale_once(n_labs: int, months: int, seed: int = SEED, progress: bool = True, emit=None,
               bare_steps: int | None = None) -> dict:
    """Build the baseline grown to ``n_labs`` labs and step it ``months`` times, in this process; then time
    the bare Mesa reference with as many agents (:func:`time_bare_mesa`; ``bare_steps`` 0 skips it).

    ``emit``, if given, is called after every month with a dict of the figures so far (month, step time,
    labs active, peak memory), so that a run stopped at a timeout still says how far it got.
    """
    t_imp = time.perf_counter()
    from abm.model import ComputeMarket
    from abm.scale import scale_world
    from abm.scenario import load_scenario

    t0 = time.perf_counter()
    scn = scale_world(load_scenario(SCENARIO, seed=seed, months=months), n_labs)
    model = ComputeMarket(scn, record_flows=False)  # the model alone: flows.csv's log is an output
    t1 = time.perf_counter()
    if progress:
        _say(f"{n_labs} labs: built in {t1 - t0:.1f} s")
    shown = t1
    for k in range(months):
        model.step()
        now = time.perf_counter()
        if emit is not None:
            emit({"month": k + 1, "build_s": t1 - t0, "step_s": now - t1, "agent_steps": agent_steps(model),
                  "labs_active_first": int(model.rows[0]["labs_active"]),
                  "labs_active": int(model.rows[-1]["labs_active"]), "peak_rss_mib": _peak_rss_mib()})
        if progress and (now - shown >= 10.0 or k + 1 == months):
            shown = now
            _say(f"{n_labs} labs: month {k + 1}/{months}, {now - t1:.1f} s, "
                 f"{model.rows[-1]['labs_active']} labs active")
    t2 = time.perf_counter()
    steps = agent_steps(model)
    peak = _peak_rss_mib()
    first, final = int(model.rows[0]["labs_active"]), int(model.rows[-1]["labs_active"])
    n_clouds, n_vendors = len(model.clouds), len(model.vendors)
    del model
    bare = time_bare_mesa(n_labs, bare_steps) if bare_steps is None or bare_steps > 0 else None
    return {"labs": n_labs, "months": months, "seed": seed, "status": "ok", "import_s": t0 - t_imp,
            "build_s": t1 - t0, "step_s": t2 - t1, "total_s": t2 - t0, "agent_steps": steps,
            "us_per_agent_step": (t2 - t1) / steps * 1e6 if steps else None,
            "peak_rss_mib": peak, "labs_active_first": first, "labs_active_final": final, "clouds": n_clouds,
            "vendors": n_vendors, "bare_mesa": bare,
            "over_bare_mesa": (t2 - t1) / steps * 1e6 / bare["us_per_agent_step"] if bare and steps else None}


def time_scaling(labs: list[int], months: int, timeout: float) -> list[dict]:
    """Each size in a fresh interpreter (``python -m analysis.bench scale N MONTHS``), smallest first."""
    out: list[dict] = []
    stopped = None
    for n in labs:
        if stopped is not None:
            out.append({"labs": n, "months": months, "status": "skipped",
                        "note": f"not run: {stopped} labs already took over {timeout:g} s"})
            continue
        cmd = [sys.executable, "-m", "analysis.bench", "scale", str(n), str(months)]
        _say(f"{n} labs x {months} months in a fresh process (stopped after {timeout:g} s)")
        t0 = time.perf_counter()
        try:
            res = subprocess.run(cmd, env=_child_env(), stdout=subprocess.PIPE, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            stopped = n
            text = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            last = _last_json(text, "progress")
            row = {"labs": n, "months": months, "status": "timeout", "timeout_s": timeout}
            if last:
                row.update(months_done=last["month"], build_s=last["build_s"], step_s=last["step_s"],
                           agent_steps=last["agent_steps"],
                           us_per_agent_step=last["step_s"] / last["agent_steps"] * 1e6,
                           labs_active_first=last["labs_active_first"], labs_active_final=last["labs_active"],
                           peak_rss_mib=last["peak_rss_mib"])
                row["note"] = f"stopped after {timeout:g} s, in month {last['month'] + 1} of {months}"
            else:
                row["note"] = f"stopped after {timeout:g} s, before its first month ended"
            _say(f"{n} labs: {row['note']}")
            out.append(row)
            continue
        wall = time.perf_counter() - t0
        if res.returncode != 0:
            raise RuntimeError(f"the {n}-lab run failed (exit status {res.returncode}); see its messages above")
        row = _last_json(res.stdout, "result")
        row["process_s"] = wall
        out.append(row)
    return out


def _last_json(text: str, key: str) -> dict | None:
    """The value of ``key`` in the last line of ``text`` that is a JSON object holding it."""
    for line in reversed(text.splitlines()):
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and key in obj:
            return obj[key]
    return None


# ------------------------------------------------------------------------------------------------ ensemble
def time_ensemble(seeds: int, months: int, workers: list[int], tmp: Path) -> dict:
    """A ``seeds``-seed baseline ensemble on each worker count; are the ensemble.csv files identical?"""
    from .experiments.ensemble import SUMMARY, prepare_ensemble, run_ensemble
    from .experiments.executors import make_executor

    runs = []
    texts = []
    for w in workers:
        _say(f"ensemble: {seeds} seeds x {months} months on {w} worker{'s' if w > 1 else ''}")
        plan = prepare_ensemble(SCENARIO, seeds, months=months, out=tmp / f"ensemble-{w}")
        t0 = time.perf_counter()
        with make_executor(workers=w) as ex:
            run_ensemble(plan, ex, progress=True)
        runs.append({"workers": w, "wall_s": time.perf_counter() - t0})
        texts.append((plan.out / SUMMARY).read_bytes())
        _say(f"ensemble on {w} worker{'s' if w > 1 else ''}: {runs[-1]['wall_s']:.1f} s")
    identical = all(t == texts[0] for t in texts) if len(texts) > 1 else None
    return {"seeds": seeds, "months": months, "runs": runs, "identical": identical}


# ------------------------------------------------------------------------------------------------ reference
def time_boltzmann(agents: int, steps: int, seed: int = BOLTZMANN_SEED) -> dict:
    """Mesa's Boltzmann wealth example as shipped: ``agents`` on a square grid of about one agent per cell."""
    from mesa.examples.basic.boltzmann_wealth_model.model import BoltzmannScenario, BoltzmannWealth

    side = max(1, round(math.sqrt(agents)))

    def build(n: int, w: int):
        return BoltzmannWealth(BoltzmannScenario(n=n, width=w, height=w, rng=seed))

    warm = build(100, 10)
    for _ in range(5):
        warm.step()
    t0 = time.perf_counter()
    model = build(agents, side)
    t1 = time.perf_counter()
    for _ in range(steps):
        model.step()
    t2 = time.perf_counter()
    bare = build(agents, side)
    t3 = time.perf_counter()
    for _ in range(steps):
        bare.agents.shuffle_do("step")
    t4 = time.perf_counter()
    n = agents * steps
    _say(f"Boltzmann wealth, {agents} agents x {steps} steps: {t2 - t1:.2f} s")
    return {"model": "mesa.examples.basic.boltzmann_wealth_model (as shipped)", "agents": agents,
            "grid": [side, side], "steps": steps, "seed": seed, "build_s": t1 - t0, "step_s": t2 - t1,
            "us_per_agent_step": (t2 - t1) / n * 1e6,
            "step_s_without_datacollector": t4 - t3, "us_per_agent_step_without_datacollector": (t4 - t3) / n * 1e6}


# ------------------------------------------------------------------------------------------------ targets
def evaluate(results: dict) -> list[dict]:
    """Every target with its value and whether it was met.

    ``met`` is None (n/a) when the benchmark did not measure what the target names (``--quick``, other
    sizes), False when it tried and the run was stopped at the timeout.
    """
    st = results["settings"]
    why = "" if st["months"] == FULL["months"] else f"{st['months']} months, not 120"

    def size(n: int) -> tuple[dict | None, str, bool]:
        r = next((r for r in results["scaling"] if r["labs"] == n), None)
        if r is None:
            return None, f"{n:,} labs not measured", False
        if r["status"] != "ok":
            return None, r["note"], True
        return r, why, False

    def ratio(a: int, b: int) -> tuple[float | None, str, bool]:
        (ra, na, fa), (rb, nb, fb) = size(a), size(b)
        if ra and rb:
            return ra["total_s"] / rb["total_s"], why, False
        return None, na if ra is None else nb, fa or fb

    big, big_note, big_failed = size(10_000)
    huge, huge_note, huge_failed = size(100_000)
    ens = results["ensemble"]
    ens2 = next((r for r in ens["runs"] if r["workers"] == 2), None)
    values: dict[str, tuple[float | None, str, bool]] = {
        "baseline_model_s": (results["baseline"]["model"]["median_s"], why, False),
        "baseline_process_s": (results["baseline"]["process"]["median_s"], why, False),
        "labs_10000_s": (big and big["total_s"], big_note, big_failed),
        "labs_10000_peak_rss_mib": (big and big["peak_rss_mib"], big_note, big_failed),
        "labs_10000_over_1000": ratio(10_000, 1000),
        "labs_100000_s": (huge and huge["total_s"], huge_note, huge_failed),
        "labs_100000_peak_rss_mib": (huge and huge["peak_rss_mib"], huge_note, huge_failed),
        "labs_100000_over_10000": ratio(100_000, 10_000),
        "per_agent_step_over_bare_mesa": (big and big.get("over_bare_mesa"), big_note, big_failed),
    }
    for fmt in FORMATS:
        r = next((r for r in results.get("process_labs", []) if r["format"] == fmt), None)
        if r is None:
            values[f"run_10000_{fmt}_s"] = (None, "not measured", False)
        else:
            note = why or ("" if r["labs"] == 10_000 else f"{r['labs']:,} labs, not 10,000")
            values[f"run_10000_{fmt}_s"] = (r["wall_s"], note, False)
    if ens2 is not None and ens["seeds"] == 100:
        values["ensemble_100_seeds_2_workers_s"] = (ens2["wall_s"], why, False)
    else:
        values["ensemble_100_seeds_2_workers_s"] = (None, "100 seeds on 2 workers not measured", False)
    out = []
    for key, what, limit, unit in TARGETS:
        value, note, failed = values[key]
        if value is None:
            met = False if failed else None
        else:
            met = None if note else bool(value <= limit)
        out.append({"key": key, "what": what, "value": value, "limit": limit, "unit": unit, "met": met,
                    "note": note})
    return out


# ------------------------------------------------------------------------------------------------ tables
def _num(v) -> str:
    """A figure for the tables: thousands separators from 100 up, else 3 significant digits."""
    if v is None:
        return "–"
    if isinstance(v, int) or v >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _sec(v) -> str:
    """Seconds for the tables: whole seconds from 100 s, two decimals from 0.1 s, else 2 significant digits."""
    if v is None:
        return "–"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.2f}" if v >= 0.095 else f"{v:.2g}"


def _value(v, unit: str) -> str:
    if v is None:
        return "–"
    if unit == "s":
        return f"{_sec(v)} s"
    return f"{_num(v)} {unit}" if unit != "x" else _num(v)


def tables(results: dict) -> str:
    """The Markdown tables printed by ``abm bench`` and written to bench.md."""
    m = results["machine"]
    lines = [f"`{results['command']}` on {m['cpu_count']} cores, Python {m['python']}, Mesa {m['mesa']}, "
             f"numpy {m['numpy']}; {results['date']}", ""]
    lines += ["| figure | value | target | result |", "|---|---|---|---|"]
    for t in results["targets"]:
        res = {True: "pass", False: "**miss**", None: "n/a"}[t["met"]]
        if t["note"]:
            res += f" ({t['note']})"
        lim = f"≤ {_num(t['limit'])}" + (f" {t['unit']}" if t["unit"] != "x" else "")
        lines.append(f"| {t['what']} | {_value(t['value'], t['unit'])} | {lim} | {res} |")
    b = results["baseline"]
    lines += ["", f"Baseline, {b['model']['months']} months: model only {_sec(b['model']['median_s'])} s "
                  f"(median of {b['model']['repeats']}, after one warm-up run not counted); whole process "
                  f"`{b['process']['command']}` {_sec(b['process']['median_s'])} s (median of "
                  f"{b['process']['repeats']}).", ""]
    for r in results.get("process_labs", []):
        sizes = ", ".join(f"{k} {v / 2**20:,.1f} MiB" for k, v in r["files"].items() if v >= 2**20)
        lines.append(f"`{r['command']}`: {_sec(r['wall_s'])} s, peak {_num(r['peak_rss_mib'])} MiB, "
                     f"{_num(r['folder_mib'])} MiB written ({sizes or 'every file under 1 MiB'}).")
        lines.append("")
    lines += ["| labs | months | build s | step s | total s | agent-steps | µs / agent-step | bare Mesa µs "
              "| ratio | peak RSS MiB | labs active, first / last month |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results["scaling"]:
        if r.get("status") == "timeout" and "months_done" in r:
            lines.append(f"| {r['labs']:,} | {r['months_done']} of {r['months']} | {_sec(r['build_s'])} | "
                         f"{_sec(r['step_s'])} | stopped at {r['timeout_s']:g} s | {r['agent_steps']:,} | "
                         f"{_num(r['us_per_agent_step'])} | – | – | {_num(r['peak_rss_mib'])} | "
                         f"{r['labs_active_first']:,} / {r['labs_active_final']:,} |")
            continue
        if r.get("status") != "ok":
            lines.append(f"| {r['labs']:,} | {r['months']} | {r.get('note', r.get('status'))} | | | | | | | | |")
            continue
        bare = r.get("bare_mesa")
        lines.append(f"| {r['labs']:,} | {r['months']} | {_sec(r['build_s'])} | {_sec(r['step_s'])} | "
                     f"{_sec(r['total_s'])} | {r['agent_steps']:,} | {_num(r['us_per_agent_step'])} | "
                     f"{_num(bare and bare['us_per_agent_step'])} | {_num(r.get('over_bare_mesa'))} | "
                     f"{_num(r['peak_rss_mib'])} | {r['labs_active_first']:,} / {r['labs_active_final']:,} |")
    e = results["ensemble"]
    walls = ", ".join(f"{_sec(r['wall_s'])} s on {r['workers']} worker{'s' if r['workers'] > 1 else ''}"
                      for r in e["runs"])
    same = {True: "byte-identical", False: "**differ**", None: "one worker count only"}[e["identical"]]
    lines += ["", f"Ensemble, {e['seeds']} seeds × {e['months']} months: {walls}; ensemble.csv {same}."]
    z = results["boltzmann"]
    lines += ["", "Bare Mesa: Mesa's tutorial Boltzmann wealth model without space or data collection, as many "
              "agents as labs, about a million agent-steps, in the same process right after the scaling run.",
              "", f"Reference: Mesa's Boltzmann wealth model, {z['agents']:,} agents on {z['grid'][0]} × "
              f"{z['grid'][1]}, {z['steps']} steps: {_sec(z['step_s'])} s, {_num(z['us_per_agent_step'])} µs "
              f"per agent-step with its data collection ({_num(z['us_per_agent_step_without_datacollector'])}"
              " µs without)."]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ running
def machine_info() -> dict:
    import numpy as np

    from .runio import _version

    info = {"cpu_count": os.cpu_count(), "platform": platform.platform(), "machine": platform.machine(),
            "processor": platform.processor() or None, "python": platform.python_version(),
            "numpy": np.__version__, "mesa": _version("mesa"), "pydantic": _version("pydantic"),
            "compute-market-abm": _version("compute-market-abm")}
    if hasattr(os, "sched_getaffinity"):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            kib = next(int(line.split()[1]) for line in fh if line.startswith("MemTotal:"))
        info["memory_gib"] = round(kib / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        pass
    return info


def _git(*args: str) -> str | None:
    try:
        res = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def code_version() -> dict:
    """The git commit of the code measured (if it is a git checkout) and whether files were modified."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit or None, "modified": bool(status) if status is not None else None}


def check_out(out: Path, force: bool) -> None:
    """Raise BenchError unless ``out`` is absent, empty, or a benchmark folder (replaced with ``force``)."""
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise BenchError(f"{out} exists and is not a directory; choose another --out")
        if any(out.iterdir()):
            if not (out / JSON_NAME).is_file():
                raise BenchError(f"{out} exists and is not a benchmark folder (no {JSON_NAME}); "
                                 "choose another --out")
            if not force:
                raise BenchError(f"{out} exists; use --force to overwrite its {JSON_NAME}")


def run_bench(settings: BenchSettings, out: Path) -> dict:
    """Measure everything, write ``out/bench.json`` and ``out/bench.md``; returns the results."""
    from .experiments.ensemble import atomic_write, model_fingerprint

    t_start = time.perf_counter()
    results: dict = {"command": settings.command(),
                     "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine_info(),
                     "code": {**code_version(), "model_sha256": model_fingerprint()},
                     "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
                     "settings": asdict(settings)}
    tmp = Path(tempfile.mkdtemp(prefix="abm-bench-"))
    try:
        results["baseline"] = {"model": time_model(settings.months, settings.repeats),
                               "process": time_process(settings.months, settings.process_repeats, tmp)}
        results["process_labs"] = time_process_labs(settings.process_labs, settings.months, tmp)
        results["scaling"] = time_scaling(settings.labs, settings.months, settings.timeout)
        results["ensemble"] = time_ensemble(settings.seeds, settings.months, settings.workers, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["boltzmann"] = time_boltzmann(settings.boltzmann_agents, settings.boltzmann_steps)
    largest = next((r for r in reversed(results["scaling"]) if r.get("status") == "ok"
                    and r["labs"] == results["boltzmann"]["agents"]), None)
    results["ratio_to_boltzmann"] = {
        "labs": largest["labs"] if largest else None,
        "value": largest["us_per_agent_step"] / results["boltzmann"]["us_per_agent_step"] if largest else None,
        "definition": "our step time per agent-step at the lab count of the shipped Boltzmann reference (the "
                      "largest up to 10,000) / that model's, grid and data collection included"}
    results["targets"] = evaluate(results)
    results["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    results["bench_wall_s"] = time.perf_counter() - t_start
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / JSON_NAME, json.dumps(results, indent=2, allow_nan=False) + "\n")
    atomic_write(out / TABLE_NAME, tables(results))
    return results


def _child(argv: list[str]) -> int:
    """``python -m analysis.bench scale N MONTHS``: one scaling run; on stdout a JSON line
    ``{"progress": ...}`` after every month and ``{"result": ...}`` at the end."""
    if len(argv) != 3 or argv[0] != "scale":
        print("usage: python -m analysis.bench scale N_LABS MONTHS", file=sys.stderr)
        return 2
    def emit(progress: dict) -> None:
        print(json.dumps({"progress": progress}), flush=True)

    row = scale_once(int(argv[1]), int(argv[2]), emit=emit)
    print(json.dumps({"result": row}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
