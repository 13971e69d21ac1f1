"""``abm validate``: the model against the public figures the project ships, over an ensemble of seeds.

For every target of ``abm/data/targets.csv`` that applies to the scenario (its date inside the run, its agents
present), the ensemble's mean and 90% interval (5th-95th percentile over seeds) beside the data value; a target
is *inside* when the data value lies in that interval. Targets marked ``fit = yes`` are the ones calibration may
use (dated 2024 or earlier); the rest are out-of-sample checks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .moments import Target, applicable, moments_over_seeds

VALIDATION_COLUMNS = ("id", "target", "date", "unit", "data_value", "data_lo", "data_hi", "fit", "model_mean",
                      "model_p5", "model_p95", "inside", "seeds", "source")


@dataclass(frozen=True)
class ValidationRow:
    target: Target
    mean: float
    p5: float
    p95: float
    n: int

    @property
    def inside(self) -> bool:
        return self.n > 0 and self.p5 <= self.target.value <= self.p95


def scenario_targets(cfg, targets: Sequence[Target]) -> list[Target]:
    """The targets that apply to a validated scenario (named agents taken from the scenario's own lists)."""
    names = {x.name for x in (*cfg.labs, *cfg.clouds, *cfg.vendors)}
    names |= {ev.name for ev in cfg.events if ev.type == "public_compute"}
    names |= {ev.new_lab.name for ev in cfg.events if ev.type == "lab_entry"}
    return applicable(targets, cfg.run.start, cfg.run.months, names)


def summarise(targets: Sequence[Target], per_seed: Sequence[dict[str, float]]) -> list[ValidationRow]:
    """Mean and 5th/95th percentiles over seeds of each target's model value (non-finite values left out)."""
    rows = []
    for t in targets:
        x = np.array([d.get(t.id, math.nan) for d in per_seed], dtype=float)
        x = x[np.isfinite(x)]
        if x.size:
            rows.append(ValidationRow(t, float(x.mean()), float(np.percentile(x, 5)), float(np.percentile(x, 95)),
                                      int(x.size)))
        else:
            rows.append(ValidationRow(t, math.nan, math.nan, math.nan, 0))
    return rows


def run_validation(toml: str, seeds: Sequence[int], months: int, targets: Sequence[Target], executor,
                   progress: bool = False) -> list[dict[str, float]]:
    """Each seed's target values, computed on ``executor`` (results in seed order), with a progress bar."""
    from .ensemble import _progress_bar

    bar = _progress_bar(len(seeds), 0, progress, "validate")
    try:
        return moments_over_seeds(toml, seeds, months, targets, executor, bar)
    finally:
        if bar is not None:
            bar.close()


OUTLOOK_YEAR = "2025"
# The model's own figures at the end of 2025, reported beside the validation table (no 2025 figure is fitted).
OUTLOOK = (
    ("Largest training run to date", "frontier_training_flop", "FLOP"),
    ("Models of at least 1e25 FLOP completed in the year", "count12:models_above_1e25_cumulative", "models"),
    ("World AI compute stock (delivered since the start, initial fleets included)", "world_compute_stock_h100e",
     "H100e"),
    ("Installed AI compute at clouds", "installed_h100e", "H100e"),
    ("Compute of the largest lab", "rank:1:compute_h100e", "H100e"),
    ("Compute of the 2nd largest lab", "rank:2:compute_h100e", "H100e"),
    ("Compute of the 3rd largest lab", "rank:3:compute_h100e", "H100e"),
    ("Compute of the 4th largest lab", "rank:4:compute_h100e", "H100e"),
    ("Compute of the 5th largest lab", "rank:5:compute_h100e", "H100e"),
    ("Cloud HHI by installed capacity", "cloud_hhi_capacity", "HHI"),
    ("Captive chips' share of shipments (12 months)", "captive_share_shipments", "share"),
    ("Spot price, mean over the year", "mean12:spot_price_usd_per_h100e_hour", "$/H100e-hour"),
    ("Labs active", "labs_active", "labs"),
)


def outlook_targets(cfg) -> list[Target]:
    """The OUTLOOK figures at the end of 2025, plus every vendor's share of chip sales, if the run reaches then."""
    date = f"{OUTLOOK_YEAR}-12"
    rows = list(OUTLOOK) + [(f"{v.name}'s share of chip sales over the year", f"vendor:{v.name}:revenue_share",
                             "share") for v in cfg.vendors]
    out = [Target(f"outlook_{i}", label, metric, date, math.nan, math.nan, math.nan, unit, False, "model")
           for i, (label, metric, unit) in enumerate(rows)]
    return scenario_targets(cfg, out)


def outlook_markdown(rows: Sequence[ValidationRow], year: str = OUTLOOK_YEAR) -> str:
    if not rows:
        return ""
    lines = [f"## The model's {year} (fitted on nothing from {year})", "",
             "| figure | model mean | model 90% interval |", "|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.target.target} ({r.target.unit}) | {_num(r.mean)} | {_num(r.p5)} - {_num(r.p95)} |")
    return "\n".join(lines) + "\n"


def _num(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    a = abs(v)
    if a != 0 and (a >= 1e5 or a < 1e-2):
        return f"{v:.3g}"
    return f"{v:.3g}" if a < 100 else f"{v:,.0f}"


def csv_text(rows: Sequence[ValidationRow]) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(VALIDATION_COLUMNS)
    for r in rows:
        t = r.target
        w.writerow([t.id, t.target, t.date, t.unit, repr(t.value), "" if math.isnan(t.lo) else repr(t.lo),
                    "" if math.isnan(t.hi) else repr(t.hi), "yes" if t.fit else "no",
                    "" if math.isnan(r.mean) else repr(r.mean), "" if math.isnan(r.p5) else repr(r.p5),
                    "" if math.isnan(r.p95) else repr(r.p95), "yes" if r.inside else "no", r.n, t.source])
    return buf.getvalue()


def markdown(rows: Sequence[ValidationRow], scenario: str, n_seeds: int, master_seed: int) -> str:
    fitted = [r for r in rows if r.target.fit]
    held = [r for r in rows if not r.target.fit]
    lines = [f"# Validation: {scenario}", "",
             f"{n_seeds} seeds (children of master seed {master_seed}); the model's mean and 90% interval (5th-95th "
             "percentile over seeds) against each public figure the project ships (`abm/data/targets.csv`). "
             "*Inside*: the data value lies in the model's interval. *Fit*: the target may be used for fitting "
             "(dated 2024 or earlier); the others were fitted on nothing.", "",
             f"Inside: {sum(r.inside for r in rows)} of {len(rows)} "
             f"({sum(r.inside for r in fitted)} of {len(fitted)} fitting targets, "
             f"{sum(r.inside for r in held)} of {len(held)} out-of-sample).", "",
             "| target | date | data | data range | model mean | model 90% interval | inside | fit |",
             "|---|---|---:|---:|---:|---:|:-:|:-:|"]
    for r in rows:
        t = r.target
        rng = f"{_num(t.lo)}-{_num(t.hi)}" if not math.isnan(t.lo) else ""
        interval = f"{_num(r.p5)} - {_num(r.p95)}" if r.n else "n/a"
        lines.append(f"| {t.target} ({t.unit}) | {t.date} | {_num(t.value)} | {rng} | {_num(r.mean)} | {interval} "
                     f"| {'yes' if r.inside else 'no'} | {'yes' if t.fit else 'no'} |")
    lines += ["", "Sources: " + "; ".join(f"{r.target.id}: {r.target.source}" for r in rows), ""]
    return "\n".join(lines)

