"""Calibration targets and the model's values of them (the moments of ``abm validate`` and ``abm calibrate``).

A target (``abm/data/targets.csv``) names a figure from public data, its date, the value (with a range where
the source gives one), whether it is used for fitting (only figures dated 2024 or earlier are), and a
``metric``: how the same quantity is read from a run. Metrics are one of

* ``COLUMN``: the ``timeseries.csv`` column at the target's month;
* ``mean12:COLUMN``: its mean over the 12 months to the target's month (months without a value skipped);
* ``growth12:COLUMN``: its ratio to the value 12 months before;
* ``count12:COLUMN``: the increase of a cumulative column over those 12 months (0 before the start);
* ``lab:NAME:compute_h100e`` / ``lab:NAME:revenue_annual``: a named lab's compute held, or its revenue this
  month × 12 (0 if the lab is not alive then);
* ``cloud:NAME:capacity_share``: a cloud's share of the clouds' installed H100e;
* ``vendor:NAME:merchant_revenue_share``: a merchant vendor's share of merchant vendors' chip sales over the
  12 months to the target's month; ``vendor:NAME:revenue_share``: its share of all vendors' sales (captive lines
  sell at cost);
* ``rank:K:compute_h100e``: the compute held by the K-th largest lab (1 = the largest).

A target applies to a scenario when its whole window lies inside the run (a month before the start counts
for ``count12``) and the agents it names exist. :func:`seed_moments` runs one seed and returns every
applicable target's value; it is the task function sent to process pools and Dask workers.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TARGETS_FILE = Path(__file__).resolve().parents[2] / "abm" / "data" / "targets.csv"
TARGET_FIELDS = ("id", "target", "metric", "date", "value", "lo", "hi", "unit", "fit", "source", "row")
_WINDOWED = ("mean12", "growth12", "count12")


class TargetError(ValueError):
    """A targets file that cannot be used; one-line message naming the file, row and field."""


@dataclass(frozen=True)
class Target:
    id: str
    target: str
    metric: str
    date: str  # YYYY-MM
    value: float
    lo: float  # NaN when the source gives no range
    hi: float
    unit: str
    fit: bool
    source: str

    @property
    def kind(self) -> str:
        """The metric's form: a column name's prefix (mean12, growth12, count12, lab, cloud, vendor) or ``column``."""
        head = self.metric.split(":", 1)[0]
        return head if ":" in self.metric else "column"


def _month_index(date: str) -> int:
    y, m = date.split("-")
    return int(y) * 12 + int(m) - 1


def _number(text: str, where: str, field: str, blank_ok: bool) -> float:
    if text.strip() == "":
        if blank_ok:
            return math.nan
        raise TargetError(f"{where}: {field} is empty; a number is required")
    try:
        v = float(text)
    except ValueError:
        raise TargetError(f"{where}: {field} = {text!r} is not a number") from None
    if not math.isfinite(v):
        raise TargetError(f"{where}: {field} = {text!r} must be finite")
    return v


def load_targets(path: str | Path = TARGETS_FILE) -> list[Target]:
    """Read and check a targets file. Raises TargetError (one line) for a missing file or a bad row."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TargetError(f"{path}: cannot read ({exc.strerror or exc})") from None
    reader = csv.DictReader(text.splitlines())
    missing = [f for f in TARGET_FIELDS if f not in (reader.fieldnames or [])]
    if missing:
        raise TargetError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(TARGET_FIELDS)}")
    out: list[Target] = []
    seen: set[str] = set()
    for n, row in enumerate(reader, start=2):
        where = f"{path.name} line {n}"
        tid = row["id"].strip()
        if not tid or tid in seen:
            raise TargetError(f"{where}: id {tid!r} is empty or repeated")
        seen.add(tid)
        date = row["date"].strip()
        parts = date.split("-")
        if len(parts) != 2 or not all(p.isdigit() for p in parts) or not 1 <= int(parts[1]) <= 12:
            raise TargetError(f"{where}: date = {date!r}; expected YYYY-MM")
        fit = row["fit"].strip().lower()
        if fit not in ("yes", "no"):
            raise TargetError(f"{where}: fit = {row['fit']!r}; expected yes or no")
        metric = row["metric"].strip()
        head = metric.split(":")[0]
        if ":" in metric and head not in (*_WINDOWED, "lab", "cloud", "vendor", "rank"):
            raise TargetError(f"{where}: metric {metric!r}: unknown form {head!r}")
        if head in ("lab", "cloud", "vendor", "rank") and len(metric.split(":")) != 3:
            raise TargetError(f"{where}: metric {metric!r}: expected {head}:NAME:FIELD")
        t = Target(tid, row["target"].strip(), metric, date, _number(row["value"], where, "value", False),
                   _number(row["lo"], where, "lo", True), _number(row["hi"], where, "hi", True),
                   row["unit"].strip(), fit == "yes", row["source"].strip())
        if fit == "yes" and int(parts[0]) > 2024:
            raise TargetError(f"{where}: {tid} is dated {date}; only figures dated 2024 or earlier may be fitted")
        out.append(t)
    if not out:
        raise TargetError(f"{path}: no targets")
    return out


_OFFSET = {"mean12": -11, "vendor": -11, "growth12": -12, "count12": -12}  # first month a metric reads


def applicable(targets: Sequence[Target], start: str, months: int, names: set[str]) -> list[Target]:
    """The targets a run from ``start`` over ``months`` months, with agents ``names``, can be compared with."""
    s0 = _month_index(start)
    out = []
    for t in targets:
        step = _month_index(t.date) - s0
        first = step + _OFFSET.get(t.kind, 0)
        if first < (-1 if t.kind == "count12" else 0) or step > months - 1:
            continue
        if t.kind in ("lab", "cloud", "vendor") and t.metric.split(":")[1] not in names:
            continue
        out.append(t)
    return out


def _agent_table(model) -> dict[tuple[str, int], tuple[str, str, float, float]]:
    """(name, step) -> (type, kind, h100e, revenue_usd) for every agent row of the run."""
    table = {}
    for row in model.iter_agent_rows():
        month, step, _aid, name, typ, kind, _alive, _cash, _raised, h100e, revenue = row[:11]
        table[(name, int(step))] = (typ, kind, float(h100e), float(revenue))
    return table


def moment_values(targets: Sequence[Target], start: str, rows: Sequence[Mapping[str, float]],
                  agents: Mapping[tuple[str, int], tuple[str, str, float, float]]) -> dict[str, float]:
    """Each target's value in one run: ``rows`` the run's timeseries rows (dicts by column), ``agents`` the
    (name, step) table of :func:`_agent_table`. Targets are assumed applicable (:func:`applicable`)."""
    s0 = _month_index(start)

    def col(name: str, step: int, before: float = math.nan) -> float:
        if step < 0:  # before the start: a cumulative count is 0, anything else unknown
            return before
        v = rows[step][name]
        return math.nan if v is None or v == "" else float(v)

    out: dict[str, float] = {}
    for t in targets:
        step = _month_index(t.date) - s0
        kind, parts = t.kind, t.metric.split(":")
        if kind == "column":
            v = col(t.metric, step)
        elif kind == "mean12":
            xs = [col(parts[1], k) for k in range(step - 11, step + 1)]
            xs = [x for x in xs if math.isfinite(x)]
            v = float(np.mean(xs)) if xs else math.nan
        elif kind == "growth12":
            a, b = col(parts[1], step), col(parts[1], step - 12)
            v = a / b if b > 0 else math.nan
        elif kind == "count12":
            v = col(parts[1], step) - col(parts[1], step - 12, before=0.0)
        elif kind == "lab":
            rec = agents.get((parts[1], step))
            if parts[2] == "compute_h100e":
                v = rec[2] if rec else 0.0
            elif parts[2] == "revenue_annual":
                v = 12.0 * rec[3] if rec else 0.0
            else:
                raise TargetError(f"target {t.id}: unknown lab field {parts[2]!r}")
        elif kind == "cloud":
            clouds = {n: r for (n, s), r in agents.items() if s == step and r[0] == "cloud"}
            total = sum(r[2] for r in clouds.values())
            v = clouds[parts[1]][2] / total if parts[1] in clouds and total > 0 else math.nan
        elif kind == "rank":
            sizes = sorted((r[2] for (n, s), r in agents.items() if s == step and r[0] == "lab"), reverse=True)
            k = int(parts[1])
            v = sizes[k - 1] if 1 <= k <= len(sizes) else 0.0
        elif kind == "vendor":
            sales: dict[str, float] = {}
            merchant_only = parts[2] == "merchant_revenue_share"
            for (n, s), r in agents.items():
                if r[0] == "vendor" and (r[1] == "merchant" or not merchant_only) and step - 11 <= s <= step:
                    sales[n] = sales.get(n, 0.0) + r[3]
            total = sum(sales.values())
            v = sales.get(parts[1], 0.0) / total if total > 0 else math.nan
        else:  # load_targets admits no other form
            raise TargetError(f"target {t.id}: unknown metric {t.metric!r}")
        out[t.id] = v
    return out


def moments_over_seeds(toml: str, seeds: Sequence[int], months: int, targets: Sequence[Target], executor,
                       bar=None) -> list[dict[str, float]]:
    """Each seed's values of ``targets`` (:func:`seed_moments`), computed on ``executor``, in seed order; ``bar``
    (a progress bar, if any) advances by one a seed."""
    specs = [spec(t) for t in targets]
    futures = [executor.submit(seed_moments, toml, int(s), months, specs) for s in seeds]
    out = []
    for f in futures:
        out.append(f.result())
        if bar is not None:
            bar.update(1)
    return out


def spec(t: Target) -> tuple[str, str, str]:
    """What a worker needs of a target: its id, metric and date."""
    return (t.id, t.metric, t.date)


def seed_moments(scenario_toml: str, seed: int, months: int, specs: Sequence[tuple[str, str, str]]) -> dict[str, float]:
    """Run the scenario (TOML text) with ``seed`` for ``months`` months and return the value of each
    (id, metric, date) in ``specs`` (see :func:`spec`). A top-level function of plain arguments, for process pools
    and Dask workers."""
    import tomllib

    from abm.model import ComputeMarket
    from abm.scenario import validate

    data = tomllib.loads(scenario_toml)
    run = dict(data.get("run", {}))
    run.update(seed=int(seed), months=int(months))
    data["run"] = run
    cfg = validate(data, "scenario")
    model = ComputeMarket(cfg, record_flows=False)
    for _ in range(cfg.run.months):
        model.step()
    chosen = [Target(i, i, m, d, math.nan, math.nan, math.nan, "", False, "") for i, m, d in specs]
    return moment_values(chosen, cfg.run.start, model.rows, _agent_table(model))
