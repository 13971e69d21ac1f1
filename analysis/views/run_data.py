"""A run folder read for its report: :class:`RunData` (``timeseries.csv`` and, when present, ``agents.csv``,
``contracts.csv``, ``runs.csv``, ``events.csv`` and ``run_info.json``; each table may be a ``.parquet`` file
instead, read into the same DataFrame), and the tables derived from it that
the figures and the animation draw: the labs' shares of compute and their colours, chip vendors' shipments,
the labs' lifetimes and a Kaplan-Meier survival curve.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from abm.metrics import COLUMNS

from ..tables import has_table
from .common import (
    ReportError,
    _read_json,
    read_table,
    table_name,
    timeseries_problem,
)

TOP_LABS = 8
# tab10 without its grey (kept for "rest").
LAB_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22",
               "#17becf"]
REST_COLOR = "#b0b0b0"


@dataclass
class RunData:
    d: Path
    ts: pd.DataFrame
    months: list[str]
    agents: pd.DataFrame | None
    contracts: pd.DataFrame | None
    runs: pd.DataFrame | None
    events: pd.DataFrame | None
    info: dict

    @property
    def n(self) -> int:
        return len(self.months)


AGENT_REQUIRED = ["step", "name", "type", "kind", "alive", "cash_usd", "capital_raised_usd", "h100e",
                  "agent_id"]
CONTRACT_REQUIRED = ["buyer", "seller", "kind", "volume_h100e", "start", "end", "unit_price_usd", "closed"]


def load_run(d: Path) -> RunData:
    ts = read_table(d, "timeseries", ["month", "step"], dtype={"month": str})
    ts_file = d / table_name(d, "timeseries")
    if ts.empty:
        raise ReportError(f"{ts_file}: no rows")
    bad = timeseries_problem(ts, [c for c in COLUMNS if c != "month"])
    if bad:
        raise ReportError(f"{ts_file}: {bad}")
    agents = _optional(d, "agents", AGENT_REQUIRED, dtype={"month": str, "name": str})
    contracts = _optional(d, "contracts", CONTRACT_REQUIRED, dtype={"buyer": str, "seller": str})
    runs = _optional(d, "runs", ["step", "lab", "effective_flop", "capability"], dtype={"lab": str})
    events = _optional(d, "events", ["step", "event", "agent"])
    info = _read_json(d / "run_info.json")
    if not info and (d / "scenario.toml").is_file():
        try:
            t = tomllib.loads((d / "scenario.toml").read_text(encoding="utf-8"))
            info = {"scenario": t.get("name"), "description": t.get("description"),
                    "seed": t.get("run", {}).get("seed"), "start": t.get("run", {}).get("start")}
        except (OSError, ValueError):
            info = {}
    return RunData(d, ts, ts["month"].astype(str).tolist(), agents, contracts, runs, events, info)


def _optional(d: Path, name: str, required: Sequence[str], **kw) -> pd.DataFrame | None:
    return read_table(d, name, required, **kw) if has_table(d, name) else None


def lab_compute_shares(agents: pd.DataFrame, n: int) -> pd.DataFrame:
    """Months x labs: each alive lab's share of all labs' compute held (h100e) in that month."""
    labs = agents[(agents["type"] == "lab") & agents["alive"].astype(str).str.lower().isin(("true", "1"))]
    wide = labs.pivot_table(index="step", columns="name", values="h100e", aggfunc="sum")
    wide = wide.reindex(range(n)).fillna(0.0).clip(lower=0)
    tot = wide.sum(axis=1).replace(0, np.nan)
    return wide.div(tot, axis=0).fillna(0.0)


def top_labs(shares: pd.DataFrame, k: int = TOP_LABS) -> list[str]:
    """The ``k`` labs with the largest peak share (the peak is at least the final share)."""
    if shares.empty:
        return []
    peak = shares.max(axis=0)
    final = shares.iloc[-1]
    score = np.maximum(peak, final)
    return [str(c) for c in score.sort_values(ascending=False, kind="stable").index[:k] if score[c] > 0]


def lab_colors(names: Sequence[str]) -> dict[str, str]:
    return {n: LAB_PALETTE[i % len(LAB_PALETTE)] for i, n in enumerate(names)}


def vendor_shipments(contracts: pd.DataFrame, n: int) -> pd.DataFrame:
    """Months x vendors: H100e shipped (chip orders allocated) in each month."""
    co = contracts[contracts["kind"].astype(str) == "chip_order"]
    if co.empty:
        return pd.DataFrame(index=range(n))
    wide = co.pivot_table(index="start", columns="seller", values="volume_h100e", aggfunc="sum")
    return wide.reindex(range(n)).fillna(0.0)


def survival_curve(durations: np.ndarray, events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier estimate (``scipy.stats.ecdf`` of right-censored data: labs alive at the end are
    censored at their age then): ages (0 and every exit age) and the share surviving past each."""
    from scipy import stats

    durations = np.asarray(durations, dtype=float)
    events = np.asarray(events, dtype=bool)
    exits = np.unique(durations[events])
    if exits.size == 0:
        return np.array([0.0]), np.array([1.0])
    km = stats.ecdf(stats.CensoredData(uncensored=durations[events], right=durations[~events]))
    return np.concatenate([[0.0], exits]), np.concatenate([[1.0], km.sf.evaluate(exits)])


def lab_lifetimes(agents: pd.DataFrame, n: int) -> pd.DataFrame:
    """Per lab: tier (kind), first month seen, age at exit or at the end of the run, and whether it exited."""
    labs = agents[agents["type"] == "lab"]
    if labs.empty:
        return pd.DataFrame(columns=["name", "kind", "birth", "duration", "exited"])
    alive = labs["alive"].astype(str).str.lower().isin(("true", "1"))
    g = labs.assign(_alive=alive.to_numpy()).groupby("name", sort=False)
    birth = g["step"].min()
    dead = labs[~alive].groupby("name")["step"].min()
    out = pd.DataFrame({"kind": g["kind"].first(), "birth": birth})
    out["exited"] = out.index.isin(dead.index)
    end = pd.Series(n - 1, index=out.index, dtype=float)
    end[dead.index] = dead.astype(float)
    out["duration"] = end - out["birth"]
    return out.reset_index(names="name")
