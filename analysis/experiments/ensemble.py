"""Ensembles: one scenario run with many seeds, each seed's timeseries kept, and a per-month summary.

Seeds. The N child seeds come from one master seed (``--master-seed``, else the scenario's ``run.seed``)::

    children = numpy.random.SeedSequence(master).spawn(N)
    seed_k   = int(children[k].generate_state(1)[0])      # a uint32, used as the model's run.seed

so seed k is the same whatever N is (``spawn`` is prefix-stable) and whatever executor ran it. Seed k's run
is exactly ``abm run DIR/scenario.toml --seed seed_k`` (same timeseries.csv, byte for byte).

Folder (default ``runs/<scenario>-ensemble-<N>/``)::

    scenario.toml          the resolved scenario with run.seed = master and run.months = months;
                           abm ensemble DIR/scenario.toml --seeds N reproduces the ensemble
    seeds.csv              index, seed
    ensemble.json          scenario, its sha256, master seed, N, months, --set overrides, seed rule, versions
    seeds/seed-<index:04d>-<seed>/timeseries.csv       (timeseries.parquet with --format parquet)
    ensemble.csv           per month: C_mean, C_std, C_p2_5, C_p50, C_p97_5, C_ci_lo, C_ci_hi (+ C_n)

Seeds are computed by a ``concurrent.futures`` executor (see :mod:`analysis.experiments.executors`); the task
function :func:`run_seed` takes the scenario as a TOML string and returns the timeseries as CSV text, which
this process writes (so Dask workers need no shared file system). A seed folder is renamed into place only
when complete, so an interrupted ensemble leaves complete seed files only; running the same command again
computes the missing seeds and never rewrites a finished one. ``ensemble.csv`` is computed from the seed files
in index order, so it is byte-identical whatever the number of workers or the executor.

Format. With ``fmt="parquet"`` (``abm ensemble --format parquet``) each seed's timeseries is kept as
``timeseries.parquet``, the bytes ``abm run --format parquet`` writes for that seed: the task still returns CSV
text, which this process converts (:func:`analysis.tables.csv_text_columns`). ``ensemble.csv`` is the same
in either format. The format is part of the folder's arguments (``ensemble.json`` records ``"format"`` when
it is not CSV): resuming a folder in the other format is refused like any other change of arguments.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import hashlib
import io
import json
import math
import os
import platform
import shutil
import sys
import time
import tomllib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from abm.metrics import COLUMNS, NULLABLE
from abm.scenario import Scenario, ScenarioError, load_scenario, to_toml, validate

from ..runio import FORMATS, cell, remove_stale_temporaries, run_scenario, stage_dir
from ..tables import SUFFIX

SEEDS_DIR = "seeds"
TIMESERIES = "timeseries.csv"
INFO = "ensemble.json"
SUMMARY = "ensemble.csv"
# Summary statistics written for every numeric column C, in this order, as C_<stat>.
STATS = ("mean", "std", "p2_5", "p50", "p97_5", "ci_lo", "ci_hi")
PERCENTILES = (2.5, 50.0, 97.5)
SEED_RULE = ("seed_k = int(numpy.random.SeedSequence(master_seed).spawn(n_seeds)[k].generate_state(1)[0])")
PACKAGE = "compute-market-abm"


class EnsembleError(Exception):
    """A user-facing problem with an ensemble's arguments or folder; one line, exit status 2."""


# ------------------------------------------------------------------------------------------------ seeds
def child_seeds(master: int, n: int) -> list[int]:
    """The model seeds of an ensemble: ``int(SeedSequence(master).spawn(n)[k].generate_state(1)[0])``."""
    return [int(c.generate_state(1)[0]) for c in np.random.SeedSequence(int(master)).spawn(int(n))]


def seed_dirname(index: int, seed: int) -> str:
    return f"seed-{index:04d}-{seed}"


# ------------------------------------------------------------------------------------------------ the task
def timeseries_text(rows: Sequence[dict], columns: Sequence[str] = COLUMNS) -> str:
    """The timeseries as CSV text, exactly as ``abm run`` writes timeseries.csv."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow([cell(row[c]) for c in columns])
    return buf.getvalue()


def run_seed(scenario_toml: str, seed: int, months: int) -> str:
    """Run the scenario (TOML text) with ``seed`` for ``months`` and return its timeseries as CSV text.

    The task function of an ensemble: top level, plain arguments, a plain string back, so that it can be
    sent to a process pool or a Dask worker.
    """
    data = tomllib.loads(scenario_toml)
    run = dict(data.get("run", {}))
    run.update(seed=int(seed), months=int(months))
    data["run"] = run
    model = run_scenario(validate(data, "ensemble scenario"), record_flows=False)
    return timeseries_text(model.rows)


# ------------------------------------------------------------------------------------------------ statistics
@cache
def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (``scipy.stats``); NaN if df < 1."""
    if df < 1:
        return math.nan
    from scipy.stats import t

    return float(t.ppf(0.975, int(df)))


def summary_stats(x: np.ndarray) -> dict[str, np.ndarray]:
    """Statistics over seeds (axis 0) of ``x``, ignoring NaN: n, mean, std (ddof 1), 2.5/50/97.5
    percentiles (linear interpolation), and the 95% CI of the mean, mean ± t_{0.975,n-1}·std/√n.

    Each result has the shape of ``x[0]``; NaN where undefined (no value; std and CI need n >= 2).
    """
    x = np.asarray(x, dtype=float)
    n = np.sum(~np.isnan(x), axis=0)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(x, axis=0)
        std = np.nanstd(x, axis=0, ddof=1) if x.shape[0] > 1 else np.full(x.shape[1:], np.nan)
        std = np.where(n >= 2, std, np.nan)
        pct = np.nanpercentile(x, PERCENTILES, axis=0)
        tq = np.vectorize(lambda k: t975(int(k) - 1), otypes=[float])(n) if n.size else np.zeros(n.shape)
        half = tq * std / np.sqrt(np.maximum(n, 1))
    return {"n": n, "mean": mean, "std": std, "p2_5": pct[0], "p50": pct[1], "p97_5": pct[2],
            "ci_lo": mean - half, "ci_hi": mean + half}


# ------------------------------------------------------------------------------------------------ seed files
@dataclass
class SeedData:
    """All seeds of an ensemble: ``values[seed index, month, column]`` for the numeric ``columns``."""

    columns: list[str]
    months: list[str]
    steps: list[int]
    values: np.ndarray


def parse_timeseries(text: str, source: str = "timeseries") -> tuple[list[str], list[str], list[int], np.ndarray]:
    """(header, month labels, steps, values of the numeric columns) of a timeseries CSV text."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or rows[0][:2] != ["month", "step"]:
        raise EnsembleError(f"{source}: not a timeseries file (first columns must be month, step)")
    header = rows[0]
    body = rows[1:]
    try:
        vals = np.array([[float(v) if v != "" else math.nan for v in r[2:]] for r in body], dtype=float)
        steps = [int(r[1]) for r in body]
    except ValueError as exc:
        raise EnsembleError(f"{source}: non-numeric value ({exc}); delete it to recompute that seed") from None
    if any(len(r) != len(header) for r in body):
        raise EnsembleError(f"{source}: rows of unequal length; delete it to recompute that seed")
    return header, [r[0] for r in body], steps, vals.reshape(len(body), len(header) - 2)


def parse_timeseries_parquet(path: Path) -> tuple[list[str], list[str], list[int], np.ndarray]:
    """(header, month labels, steps, values of the numeric columns) of a ``timeseries.parquet``."""
    import pyarrow as pa

    from ..tables import read_arrow

    try:
        table = read_arrow(path, error=EnsembleError)
    except EnsembleError as exc:
        raise EnsembleError(f"{exc}; delete it to recompute that seed") from None
    header = list(table.column_names)
    if header[:2] != ["month", "step"]:
        raise EnsembleError(f"{path}: not a timeseries file (first columns must be month, step)")
    try:
        labels = [str(v) for v in table.column(0).to_pylist()]
        steps = [int(v) for v in table.column(1).to_pylist()]
        cols = [np.asarray(table.column(j).cast(pa.float64()).to_numpy(), dtype=float)
                for j in range(2, len(header))]
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise EnsembleError(f"{path}: non-numeric value ({' '.join(str(exc).split())}); delete it to recompute "
                            "that seed") from None
    vals = np.column_stack(cols) if cols else np.zeros((len(labels), 0))
    return header, labels, steps, vals.reshape(len(labels), len(header) - 2)


def timeseries_parquet(text: str) -> bytes:
    """A seed's timeseries CSV text (as :func:`run_seed` returns it) as the bytes of ``timeseries.parquet``."""
    from ..tables import csv_text_columns, parquet_bytes

    return parquet_bytes(csv_text_columns(text))


# ------------------------------------------------------------------------------------------------ files
def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@cache
def model_fingerprint() -> str:
    """SHA-256 of the model's source and data files (abm/), to notice a resume across code changes."""
    import abm

    root = Path(abm.__file__).resolve().parent
    h = hashlib.sha256()
    # Scenario files are not the model (a folder records its scenario's own hash); a wheel carries them in
    # abm/scenarios/, a clone beside abm/: leaving them out gives both the same fingerprint.
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".py", ".csv", ".toml")
                       and "__pycache__" not in p.parts and p.relative_to(root).parts[0] != "scenarios"):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write ``path`` through a temporary sibling and ``os.replace``: readers see the old or the new file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------------------------------------ plan
@dataclass
class EnsemblePlan:
    """A validated ensemble: what to run and where; nothing is written until :meth:`create`."""

    out: Path
    scenario: Scenario
    toml: str
    master_seed: int
    n: int
    months: int
    overrides: list[str]
    seeds: list[int]
    state: str = "new"  # new (folder absent or empty), resume (matching folder), replace (--force)
    allow_model_change: bool = field(default=False, compare=False)
    created_here: bool = field(default=False, compare=False)
    fmt: str = "csv"  # how seeds' timeseries are kept: "csv" or "parquet"
    warnings: list[str] = field(default_factory=list, compare=False)

    @property
    def name(self) -> str:
        return self.scenario.name

    def seed_dir(self, index: int) -> Path:
        return self.out / SEEDS_DIR / seed_dirname(index, self.seeds[index])

    @property
    def seed_file_name(self) -> str:
        return f"timeseries{SUFFIX[self.fmt]}"

    def seed_file(self, index: int) -> Path:
        return self.seed_dir(index) / self.seed_file_name

    def completed(self) -> int:
        """Seeds whose timeseries file exists now."""
        return sum(1 for i in range(self.n) if self.seed_file(i).is_file())

    def info(self) -> dict:
        info = {
            "scenario": self.scenario.name,
            "description": self.scenario.description,
            "scenario_sha256": hashlib.sha256(self.toml.encode("utf-8")).hexdigest(),
            "master_seed": self.master_seed,
            "n_seeds": self.n,
            "months": self.months,
            "start": self.scenario.run.start,
            "overrides": list(self.overrides),
            "seed_rule": SEED_RULE,
            "model_sha256": model_fingerprint(),
            "versions": {"compute-market-abm": _version(PACKAGE), "python": platform.python_version(),
                         "numpy": np.__version__, "mesa": _version("mesa"), "scipy": _version("scipy")},
        }
        if self.fmt != "csv":  # (a CSV ensemble's ensemble.json stays as it was before formats existed)
            info["format"] = self.fmt
        return info

    def initial_files(self) -> dict[str, str]:
        seeds = "index,seed\n" + "".join(f"{i},{s}\n" for i, s in enumerate(self.seeds))
        return {"scenario.toml": self.toml, "seeds.csv": seeds,
                INFO: json.dumps(self.info(), indent=2) + "\n"}

    def populate(self, d: Path) -> None:
        """Write the initial files of the ensemble folder into ``d``."""
        d.mkdir(exist_ok=True)
        for name, text in self.initial_files().items():
            (d / name).write_text(text, encoding="utf-8")
        (d / SEEDS_DIR).mkdir(exist_ok=True)

    def create(self) -> None:
        """Create (or, with --force, replace) the folder; for a resumed one, clear dead temporaries."""
        if self.state == "resume":
            remove_stale_temporaries(self.out / SEEDS_DIR)
            remove_stale_temporaries(self.out)
            (self.out / SEEDS_DIR).mkdir(exist_ok=True)
            return
        stage_dir(self.out, self.populate, replace=self.state == "replace")
        self.state = "resume"
        self.created_here = True

    def write_seed(self, index: int, text: str) -> bool:
        """Store seed ``index``'s timeseries (CSV text, kept in the plan's format) unless it exists; returns
        whether it was written."""
        final = self.seed_dir(index)
        name = self.seed_file_name
        if (final / name).exists():
            return False
        data: str | bytes = timeseries_parquet(text) if self.fmt == "parquet" else text
        if final.is_dir():  # a stray folder without the file: write the file atomically inside it
            atomic_write(final / name, data)
            return True
        tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
        try:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
            if isinstance(data, bytes):
                (tmp / name).write_bytes(data)
            else:
                with open(tmp / name, "w", encoding="utf-8", newline="") as fh:
                    fh.write(data)
            os.replace(tmp, final)  # the seed folder appears complete or not at all
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return True

    def load(self) -> SeedData:
        """Read every seed's timeseries (all must exist) in index order."""
        header: list[str] | None = None
        labels: list[str] = []
        steps: list[int] = []
        values = None
        for i in range(self.n):
            path = self.seed_file(i)
            if path.suffix == ".parquet":
                h, lab, st, v = parse_timeseries_parquet(path)
            else:
                try:
                    text = path.read_text(encoding="utf-8")
                except OSError as exc:
                    raise EnsembleError(f"cannot read {path}: {exc.strerror or exc}") from None
                h, lab, st, v = parse_timeseries(text, str(path))
            if header is None:
                header, labels, steps = h, lab, st
                values = np.empty((self.n, len(lab), len(h) - 2))
            if h != header or lab != labels or v.shape != values.shape[1:]:
                raise EnsembleError(f"{path}: columns or months differ from seed 0's; delete it to recompute")
            values[i] = v
        if header is None or len(labels) != self.months:
            raise EnsembleError(f"{self.seed_file(0)}: expected {self.months} months")
        return SeedData(header[2:], labels, steps, values)


def _describe_mismatch(old: dict, plan: EnsemblePlan) -> str | None:
    new = plan.info()
    checks = [("n_seeds", "--seeds"), ("master_seed", "master seed"), ("months", "months"),
              ("overrides", "--set")]
    if old.get("format", "csv") != plan.fmt:
        return f"--format {old.get('format', 'csv')} there, {plan.fmt} now"
    def show(v):
        if isinstance(v, list):
            return " ".join(map(str, v)) if v else "(none)"
        return str(v)

    for key, label in checks:
        if old.get(key) != new[key]:
            return f"{label} {show(old.get(key))} there, {show(new[key])} now"
    if old.get("scenario_sha256") != new["scenario_sha256"]:
        return f"scenario {old.get('scenario')!r} content differs"
    return None


def prepare_ensemble(scenario: str | Path | Scenario, n: int, master_seed: int | None = None,
                     months: int | None = None, overrides: Sequence[str] | None = None,
                     out: str | Path | None = None, force: bool = False,
                     allow_model_change: bool = False, fmt: str = "csv") -> EnsemblePlan:
    """Validate an ensemble's arguments and its folder; writes nothing. ``fmt``: how each seed's timeseries
    is kept, ``"csv"`` (the default) or ``"parquet"``.

    Raises ScenarioError (bad scenario or override) or EnsembleError (bad N or folder: an existing folder
    made with other arguments needs ``force``, which replaces it; a folder that is not an ensemble is
    never touched; a folder started by another version of the model needs ``force`` or
    ``allow_model_change``, see :func:`model_check`).
    """
    if n < 1:
        raise EnsembleError(f"--seeds must be >= 1 (given {n})")
    if fmt not in FORMATS:
        raise EnsembleError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    overrides = list(overrides or [])
    scn = load_scenario(scenario, overrides=overrides or None, months=months)
    master = scn.run.seed if master_seed is None else int(master_seed)
    if master < 0:
        raise EnsembleError(f"--master-seed must be >= 0 (given {master})")
    scn = load_scenario(scn, seed=master)
    plan = EnsemblePlan(out=Path(out) if out is not None else Path("runs") / f"{scn.name}-ensemble-{n}",
                        scenario=scn, toml=to_toml(scn), master_seed=master, n=n, months=scn.run.months,
                        overrides=overrides, seeds=child_seeds(master, n),
                        allow_model_change=allow_model_change, fmt=fmt)
    plan.state = _folder_state(plan, force)
    return plan


def folder_info(out: Path, info_name: str, what: str, force: bool,
                error: type[Exception] = EnsembleError) -> dict | str:
    """What an output folder holds: ``"new"`` (absent or empty), ``"replace"`` (its ``info_name`` file is
    unreadable and ``force`` is given), or the file's content (a dict) for the caller to compare with its
    arguments. A path that is not a directory, a folder without ``info_name`` (not a ``what`` folder: never
    touched) and an unreadable file without ``force`` raise ``error`` with a one-line message."""
    anc = Path(os.path.abspath(out)).parent
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise error(f"{out}: {anc} is not a directory; choose another --out")
    if not (out.exists() or out.is_symlink()):
        return "new"
    if out.is_symlink() or not out.is_dir():
        raise error(f"{out} exists and is not a directory; choose another --out")
    if not any(out.iterdir()):
        return "new"
    info = out / info_name
    if not info.is_file():
        raise error(f"{out} exists and is not {what} folder (no {info_name}); choose another --out")
    try:
        old = json.loads(info.read_text(encoding="utf-8"))
        if not isinstance(old, dict):
            raise ValueError("not an object")
    except (OSError, ValueError) as exc:
        if force:
            return "replace"
        raise error(f"{info}: unreadable ({exc}); use --force to replace the folder") from None
    return old


def model_check(out: Path, old_sha: str | None, force: bool, allow: bool, warnings: list[str],
                error: type[Exception] = EnsembleError) -> str:
    """``"resume"`` or ``"replace"`` for a folder made with the same arguments whose model fingerprint is
    ``old_sha``: the same model resumes; another model (or none recorded) is replaced with ``force``,
    resumed with a warning appended to ``warnings`` if ``allow``, and otherwise refused with ``error``, so
    that one folder never silently mixes results of two versions of the model."""
    now = model_fingerprint()
    if old_sha == now:
        return "resume"
    if force:
        return "replace"
    there = str(old_sha)[:12] if old_sha else "none"
    if not allow:
        raise error(f"{out} was computed by another version of the model (abm/ fingerprint {there} there, "
                    f"{now[:12]} now) and resuming would mix the two; use --force to start over, or "
                    "--allow-model-change to resume anyway")
    warnings.append(f"the model code (abm/) changed since {out} was started (fingerprint {there} there, "
                    f"{now[:12]} now); its results mix two versions of the model")
    return "resume"


def _folder_state(plan: EnsemblePlan, force: bool) -> str:
    out = plan.out
    old = folder_info(out, INFO, "an ensemble", force)
    if isinstance(old, str):
        return old
    why = _describe_mismatch(old, plan)
    if why is None:
        return model_check(out, old.get("model_sha256"), force, plan.allow_model_change, plan.warnings)
    if force:
        return "replace"
    raise EnsembleError(f"{out} holds an ensemble made with other arguments ({why}); use --force to replace "
                        "it, or another --out")


# ------------------------------------------------------------------------------------------------ running
def _progress_bar(total: int, initial: int, enabled: bool, desc: str):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return _SimpleBar(total, initial, desc)
    return tqdm(total=total, initial=initial, desc=desc, unit="seed", file=sys.stderr, dynamic_ncols=True,
                mininterval=0.5, smoothing=0.1)


class _SimpleBar:
    """A one-line ``\\r`` progress line when tqdm is missing: done/total, rate and ETA."""

    def __init__(self, total: int, initial: int, desc: str):
        self._time = time.perf_counter
        self.total, self.n, self.start_n, self.desc = total, initial, initial, desc
        self.t0 = self._time()
        self._draw()

    def _draw(self) -> None:
        dt = self._time() - self.t0
        rate = (self.n - self.start_n) / dt if dt > 0 else 0.0
        eta = (self.total - self.n) / rate if rate > 0 else float("nan")
        eta_s = f"{eta:.0f} s" if math.isfinite(eta) else "?"
        sys.stderr.write(f"\r{self.desc}: {self.n}/{self.total} seeds, {rate:.2f} seed/s, ETA {eta_s}  ")
        sys.stderr.flush()

    def update(self, k: int = 1) -> None:
        self.n += k
        self._draw()

    def close(self) -> None:
        sys.stderr.write("\n")
        sys.stderr.flush()


def worker_import_error(exc: ImportError) -> EnsembleError:
    """A Dask worker without this project installed, as a one-line error."""
    return EnsembleError(f"a worker cannot import {exc.name or exc}: install {PACKAGE} (same version) on every "
                         "worker")


class TaskFailure(EnsembleError):
    """Some runs raised inside the model; every other run finished and is stored (exit status 1)."""


# Errors of the machinery, not of one run: they stop the whole experiment at once.
_FATAL = (ImportError, cf.CancelledError, OSError, TimeoutError, MemoryError)


class Failures:
    """The runs of an experiment that raised: each is logged with its traceback, the others go on.

    :meth:`record` keeps a failed task (``what`` names it, e.g. ``baseline seed 123``); :meth:`check`, once
    everything else has finished, writes ``errors.log`` into ``folder`` and raises :class:`TaskFailure`
    naming the first failure; without failures it removes an old ``errors.log``."""

    LOG = "errors.log"

    def __init__(self, folder: Path, total: int):
        self.folder, self.total = Path(folder), total
        self.items: list[tuple[str, BaseException]] = []

    def record(self, what: str, exc: BaseException) -> None:
        if isinstance(exc, ImportError):
            raise worker_import_error(exc) from None
        if isinstance(exc, _FATAL):
            raise exc
        self.items.append((what, exc))

    def check(self) -> None:
        import traceback

        log = self.folder / self.LOG
        if not self.items:
            if log.is_file():
                log.unlink()
            return
        parts = []
        for what, exc in self.items:
            text = "".join(traceback.format_exception(exc))
            cause = getattr(exc, "__cause__", None)  # a process pool's remote traceback
            if cause is not None and "Traceback" not in text:
                text = str(cause) + "\n" + text
            parts.append(f"== {what}\n{text}")
        if self.folder.is_dir():
            atomic_write(log, "\n".join(parts))
        what, exc = self.items[0]
        msg = " ".join(str(exc).split()) or "(no message)"
        raise TaskFailure(f"{len(self.items)} of {self.total} runs failed, the others are stored; first: {what}: "
                          f"{type(exc).__name__}: {msg} (tracebacks in {log}); run the same command again "
                          "to retry the failed runs")


def execute(plans: Sequence[EnsemblePlan], executor: cf.Executor, progress: bool = True,
            desc: str = "ensemble") -> int:
    """Compute every missing seed of ``plans`` on ``executor`` and store each as soon as it is done.

    Tasks are submitted in (plan, seed index) order with at most a few per worker in flight, so that a
    large ensemble does not sit in memory. Returns the number of seeds computed. A task's ScenarioError
    becomes an EnsembleError at once; a run that raises anything else is recorded and the other seeds
    finish, then :class:`TaskFailure` names the scenario and seed that failed (tracebacks in ``errors.log``
    in the folder that holds every plan's). Errors of the machinery (a worker without the project, a lost
    cluster) cancel the rest and propagate.
    """
    from .executors import run_windowed

    for p in plans:
        p.create()
    todo = [(p, i) for p in plans for i in range(p.n) if not p.seed_file(i).is_file()]
    total = sum(p.n for p in plans)
    bar = _progress_bar(total, total - len(todo), progress, desc)
    computed = 0
    failures = Failures(Path(os.path.commonpath([p.out for p in plans])), len(todo)) if plans else None

    def finished(tag: tuple[EnsemblePlan, int], fut: cf.Future) -> None:
        nonlocal computed
        p, i = tag
        try:
            text = fut.result()
        except ScenarioError as exc:
            raise EnsembleError(f"{p.name} seed {p.seeds[i]}: {exc}") from None
        except Exception as exc:
            failures.record(f"{p.name} seed {p.seeds[i]} (index {i})", exc)
            return
        p.write_seed(i, text)
        computed += 1
        if bar is not None:
            bar.update(1)

    try:
        run_windowed(executor, ((t, run_seed, (t[0].toml, t[0].seeds[t[1]], t[0].months)) for t in todo), finished)
    finally:
        if bar is not None:
            bar.close()
    if failures is not None:
        failures.check()
    return computed


def summary_table(data: SeedData, nullable: set[str] | frozenset[str] = frozenset(NULLABLE)
                  ) -> tuple[list[str], list[list]]:
    """The wide summary: one row per month, columns month, step, then C_<stat> for every numeric column C
    (and C_n for nullable columns), in the order of the timeseries columns."""
    stats = summary_stats(data.values)
    header = ["month", "step"]
    blocks = []
    for j, c in enumerate(data.columns):
        names = list(STATS) + (["n"] if c in nullable else [])
        header += [f"{c}_{s}" for s in names]
        blocks.append([stats[s][:, j] for s in names])
    rows = []
    for m, (label, step) in enumerate(zip(data.months, data.steps, strict=True)):
        row: list = [label, step]
        for block in blocks:
            row += [arr[m].item() for arr in block]
        rows.append(row)
    return header, rows


def table_text(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow([cell(v) for v in r])
    return buf.getvalue()


def write_summary(plan: EnsemblePlan, data: SeedData | None = None) -> Path:
    """Compute ``ensemble.csv`` from the seed files and write it atomically; returns its path."""
    data = data if data is not None else plan.load()
    header, rows = summary_table(data)
    path = plan.out / SUMMARY
    atomic_write(path, table_text(header, rows))
    return path


def run_ensemble(plan: EnsemblePlan, executor: cf.Executor, progress: bool = False) -> Path:
    """Python API: compute the missing seeds of ``plan`` on ``executor`` and write ensemble.csv."""
    execute([plan], executor, progress=progress)
    return write_summary(plan)
