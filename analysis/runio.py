"""Run a scenario and write its outputs to a run folder, atomically.

A run folder holds ``timeseries.csv``, ``agents.csv``, ``contracts.csv``, ``events.csv``, ``runs.csv``,
``flows.csv`` (every month's transfers of cash, summed per payer, payee and kind), ``scenario.toml`` (the fully
resolved scenario, seed included, so that ``abm run DIR/scenario.toml`` reproduces the run byte for byte) and ``run_info.json`` (versions, wall time, headline final values).
With ``fmt="parquet"`` (``abm run --format parquet``) the six tables are ``.parquet`` files instead, with typed
columns built from the model's arrays (:mod:`abm.columns`, written by :mod:`analysis.tables`), and
``run_info.json`` records ``"format": "parquet"``.
Every file except ``run_info.json`` is a deterministic function of the scenario and seed (and the format).
"""

from __future__ import annotations

import csv
import glob
import io
import itertools
import json
import math
import numbers
import os
import platform
import shutil
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata
from pathlib import Path

import numpy as np

from abm.metrics import COLUMNS
from abm.model import ComputeMarket
from abm.records import CONTRACT_FIELDS, FLOW_FIELDS
from abm.scenario import Scenario, to_toml

AGENT_COLUMNS = [
    "month", "step", "agent_id", "name", "type", "kind", "alive", "cash_usd", "capital_raised_usd", "h100e",
    "revenue_usd", "capability", "efficiency", "market_share", "obligations_usd",
    "cloud_equity_usd",
]
EVENT_COLUMNS = ["month", "step", "event", "agent", "detail", "value_usd"]
RUN_COLUMNS = ["step", "lab", "physical_flop", "effective_flop", "cost_usd", "capability"]
# Column types of events and runs in Parquet (other columns of runs are typed from their values).
EVENT_TYPES = {"month": "str", "step": "int", "event": "str", "agent": "str", "detail": "str", "value_usd": "float"}
RUN_TYPES = {"step": "int", "lab": "str", "physical_flop": "float", "effective_flop": "float", "cost_usd": "float",
             "capability": "float"}
FORMATS = ("csv", "parquet")
HEADLINE = [
    "lab_hhi_compute", "lab_hhi_revenue", "lab_top3_share_compute", "entry_barrier_usd", "frontier_capability",
    "efficiency_share_of_progress", "marginal_capability_per_usd", "cloud_hhi_capacity",
    "spot_price_usd_per_h100e_hour", "labs_active", "small_lab_survival_24m",
]
PACKAGE = "compute-market-abm"


class OutputError(Exception):
    """A user-facing problem with the output folder (exists, not a directory, not a run folder)."""


# ------------------------------------------------------------------------------------------------ running
def run_scenario(scn: Scenario, progress=None, record_flows: bool = True) -> ComputeMarket:
    """Build the model from a validated scenario and step it ``scn.run.months`` times.

    The scenario as given (before any ``set`` event replaces ``model.cfg`` mid-run) is kept on the model
    as ``initial_cfg``; :func:`write_run` serialises that one, so that re-running it reproduces the run.
    ``progress``, if given, is called with (months done, months total) after every step. ``record_flows``
    keeps the log ``flows.csv`` is written from; callers that write no run folder turn it off.
    """
    initial = scn.model_copy(deep=True)
    model = ComputeMarket(scn, record_flows=record_flows)
    model.initial_cfg = initial
    total = scn.run.months
    for k in range(total):
        model.step()
        if progress is not None:
            progress(k + 1, total)
    return model


# ------------------------------------------------------------------------------------------------ cells
def _float_cell(f: float) -> str:
    return "" if f != f else repr(f)


# Cell formats by exact type: the common cases, without the isinstance chain.
_CELL = {float: _float_cell, int: str, str: str, bool: lambda b: "True" if b else "False", type(None): lambda v: ""}


def cell(v) -> str:
    """One CSV cell: floats at repr precision (shortest round-trip), NaN and None as empty cells."""
    fast = _CELL.get(type(v))
    if fast is not None:
        return fast(v)
    if isinstance(v, bool | np.bool_):
        return "True" if v else "False"
    if isinstance(v, numbers.Integral):
        return str(int(v))
    if isinstance(v, numbers.Real):
        f = float(v)
        return "" if math.isnan(f) else repr(f)
    return str(v)


def _write_csv(path: Path, columns: Sequence[str], rows: Iterable[Sequence]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow(map(cell, r))


def csv_field(text: str) -> str:
    """A string as one field of a CSV line, quoted as :func:`_write_csv` quotes it (only when it must be)."""
    if not text:
        return ""  # (alone on a line the csv module would write "")
    if not any(c in text for c in ',"\r\n'):  # nothing the csv module quotes
        return text
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([text])
    return buf.getvalue()[:-1]


def _dict_rows(records: list[dict], fallback: Sequence[str]) -> tuple[list[str], list[list]]:
    """Columns (keys of the first record, then any new keys in order of appearance) and row values."""
    cols: list[str] = []
    for rec in records:
        for k in rec:
            if k not in cols:
                cols.append(k)
    if not cols:
        cols = list(fallback)
    return cols, [[rec.get(c) for c in cols] for rec in records]


def _json_number(v):
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bool | np.bool_):
        return bool(v)
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        f = float(v)
        return f if math.isfinite(f) else None
    return v


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


# ------------------------------------------------------------------------------------------------ writing
def _write_csv_tables(model: ComputeMarket, d: Path) -> None:
    from abm import columns as ac

    _write_csv(d / "timeseries.csv", COLUMNS, ([row[c] for c in COLUMNS] for row in model.rows))
    _write_csv_columns(d / "agents.csv", _checked(ac.agent_columns(model), AGENT_COLUMNS, "agent"))
    _write_csv_columns(d / "contracts.csv", _checked(ac.contract_columns(model), CONTRACT_FIELDS, "contract"))
    for name, log, fallback in (("events", model.events_log, EVENT_COLUMNS), ("runs", model.runs_log, RUN_COLUMNS)):
        if hasattr(log, "columns"):  # a log kept as columns (abm.logs.ColumnLog): the raw values, cell by cell
            data = log.columns()
            _write_csv_columns(d / f"{name}.csv", {c: data[c] for c in log.fields})
        else:
            cols, rows = _dict_rows(log, fallback)
            _write_csv(d / f"{name}.csv", cols, rows)
    if model.ledger.log is not None:
        _write_csv_columns(d / "flows.csv", ac.flow_column_chunks(model, CSV_CHUNK))


CSV_CHUNK = 100_000  # rows formatted at a time by _write_csv_columns


def _csv_texts(col) -> list[str]:
    """One column of a table from :mod:`abm.columns` as CSV cells, as :func:`cell` and the csv module write
    them: floats at repr precision and NaN empty, ints, True/False, texts quoted only where they must be,
    masked ints empty."""
    from abm.columns import Coded

    if isinstance(col, Coded):
        texts = np.array([csv_field(v) for v in col.values] or [""], dtype=object)
        return texts[col.codes].tolist()
    if isinstance(col, np.ma.MaskedArray):
        out = list(map(str, col.data.tolist()))
        for i in np.flatnonzero(np.ma.getmaskarray(col)).tolist():
            out[i] = ""
        return out
    if isinstance(col, list):  # raw values (a log's columns)
        kinds = set(map(type, col))
        if kinds <= {str}:
            quoted = {v: csv_field(v) for v in set(col)}
            return list(map(quoted.__getitem__, col))
        if kinds <= {float}:
            out = list(map(repr, col))
            for i in np.flatnonzero(np.isnan(np.array(col, dtype=float))).tolist():
                out[i] = ""
            return out
        if kinds <= {int}:
            return list(map(str, col))
        return [csv_field(v) if isinstance(v, str) else cell(v) for v in col]
    col = np.asarray(col)
    if col.dtype == bool:
        return np.where(col, "True", "False").tolist()
    if col.dtype.kind in "iu":
        return list(map(str, col.tolist()))
    if col.dtype.kind == "f":
        out = list(map(repr, col.tolist()))
        for i in np.flatnonzero(np.isnan(col)).tolist():
            out[i] = ""
        return out
    raise TypeError(f"no CSV cells for a column of {col.dtype}")


def _slice(col, lo: int, hi: int):
    from abm.columns import Coded

    return Coded(col.codes[lo:hi], col.values) if isinstance(col, Coded) else col[lo:hi]


def _write_csv_columns(path: Path, table) -> None:
    """A CSV file from a table's columns (:mod:`abm.columns`; or an iterable of pieces of it with the same
    columns, in order), a chunk of rows at a time: the same bytes as :func:`_write_csv` with the same values as
    rows, without a Python call per cell."""
    pieces = iter([table] if isinstance(table, dict) else table)
    first = next(pieces)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        fh.write(",".join(first) + "\n")
        for columns in itertools.chain([first], pieces):
            n = len(next(iter(columns.values()))) if columns else 0
            for lo in range(0, n, CSV_CHUNK):
                texts = [_csv_texts(_slice(c, lo, lo + CSV_CHUNK)) for c in columns.values()]
                fh.write("\n".join(map(",".join, zip(*texts, strict=True))))
                fh.write("\n")


def _checked(columns: dict, expected: Sequence[str], what: str) -> dict:
    if list(columns) != list(expected):
        raise ValueError(f"{what} columns {list(columns)}, expected {list(expected)}")
    return columns


def parquet_tables(model: ComputeMarket):
    """(name, typed columns) of each table of the run folder but flows, built one at a time from the model's
    arrays (see :mod:`abm.columns`); with :func:`flow_chunks`, the tables ``write_run(..., fmt="parquet")``
    writes."""
    from abm import columns as ac

    yield "timeseries", ac.timeseries_columns(model, COLUMNS)
    yield "agents", _checked(ac.agent_columns(model), AGENT_COLUMNS, "agent")
    yield "contracts", _checked(ac.contract_columns(model), CONTRACT_FIELDS, "contract")
    yield "events", ac.record_columns(model.events_log, EVENT_COLUMNS, EVENT_TYPES)
    yield "runs", ac.record_columns(model.runs_log, ac.record_fields(model.runs_log, RUN_COLUMNS), RUN_TYPES)


def flow_chunks(model: ComputeMarket, rows: int | None = None):
    """The typed columns of flows, in pieces of whole months of at most about ``rows`` rows (nothing when the
    model kept no flow log; see :func:`abm.columns.flow_column_chunks`)."""
    from abm import columns as ac

    for piece in ac.flow_column_chunks(model, rows):
        yield _checked(piece, FLOW_FIELDS, "flow")


def _write_parquet_tables(model: ComputeMarket, d: Path) -> None:
    from .tables import ROW_GROUP, write_parquet, write_parquet_chunks

    for name, columns in parquet_tables(model):
        write_parquet(d / f"{name}.parquet", columns)
        del columns  # one table's columns in memory at a time
    if model.ledger.log is not None:  # flows (the largest table) a row group's worth of months at a time
        write_parquet_chunks(d / "flows.parquet", flow_chunks(model, ROW_GROUP))


def _write_files(model: ComputeMarket, d: Path, wall_time: float, fmt: str = "csv") -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    cfg = getattr(model, "initial_cfg", None) or model.cfg
    if fmt == "parquet":
        _write_parquet_tables(model, d)
    else:
        _write_csv_tables(model, d)
    (d / "scenario.toml").write_text(to_toml(cfg), encoding="utf-8")
    last = model.rows[-1] if model.rows else {}
    info = {
        "scenario": cfg.name,
        "description": cfg.description,
        "seed": cfg.run.seed,
        "start": cfg.run.start,
        "months": len(model.rows),
        "package_version": _version(PACKAGE),
        "python": platform.python_version(),
        "mesa": _version("mesa"),
        "wall_time_s": round(float(wall_time), 3),
        "final": {k: _json_number(last.get(k)) for k in HEADLINE},
    }
    if fmt != "csv":  # (a CSV folder's run_info.json stays as it was before formats existed)
        info["format"] = fmt
    (d / "run_info.json").write_text(json.dumps(info, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def is_run_folder(d: Path) -> bool:
    """Whether ``d`` looks like a folder written by :func:`write_run` (safe to overwrite with force)."""
    return (d / "run_info.json").is_file() or any((d / f"timeseries{s}").is_file() for s in (".csv", ".parquet"))


def check_target(out_dir: str | Path, force: bool = False, ours: Callable[[Path], bool] = is_run_folder,
                 what: str = "a run folder (no run_info.json, timeseries.csv or timeseries.parquet)") -> Path:
    """Raise OutputError unless ``out_dir`` can be written: absent, empty, or with ``force`` a folder that
    ``ours`` recognises (by default a run folder; ``what`` names that kind in the message)."""
    out = Path(out_dir)
    anc = Path(os.path.abspath(out)).parent
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise OutputError(f"{out}: {anc} is not a directory; choose another --out")
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise OutputError(f"{out} exists and is not a directory; choose another --out")
        if any(out.iterdir()):
            if not force:
                raise OutputError(f"{out} exists; use --force to overwrite")
            if not ours(out):
                raise OutputError(f"{out} exists and is not {what}; refusing to overwrite it even with --force")
    return out


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (this process counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: Path, name: str = "*") -> None:
    """Remove ``.<name>.tmp-<pid>`` and ``.<name>.old-<pid>`` in ``folder`` (``name`` a glob, default any)
    left by processes that are gone (killed while writing) or by this one, so that a killed command leaves
    nothing behind once it is rerun."""
    if not folder.is_dir():
        return
    for tag in (".tmp-", ".old-"):
        for p in folder.glob(f".{name}{tag}*"):
            pid = p.name.rsplit(tag, 1)[1]
            if not pid.isdigit() or (int(pid) != os.getpid() and pid_alive(int(pid))):
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


def stage_dir(final: Path, populate: Callable[[Path], None], replace: bool = False) -> None:
    """Create folder ``final`` atomically: ``populate`` fills a temporary sibling that is then renamed.

    ``final`` must be absent or an empty folder, or with ``replace`` any folder (moved aside and deleted
    once the new one is in place). On failure nothing is left: neither the temporary folder nor parents
    created here.
    """
    final = Path(os.path.abspath(final))
    parent = final.parent
    created: list[Path] = []
    p = parent
    while not p.exists():
        created.append(p)
        p = p.parent
    tmp = parent / f".{final.name}.tmp-{os.getpid()}"
    old = parent / f".{final.name}.old-{os.getpid()}"
    remove_stale_temporaries(parent, glob.escape(final.name))
    try:
        parent.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        populate(tmp)
        if final.exists() and any(final.iterdir()):
            if not replace:
                raise OutputError(f"{final} exists; use --force to replace it")
            os.replace(final, old)
            try:
                os.replace(tmp, final)
            except BaseException:
                os.replace(old, final)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for c in created:  # innermost first
            try:
                c.rmdir()
            except OSError:
                break
        raise



def write_run(model: ComputeMarket, out_dir: str | Path, wall_time: float, force: bool = False,
              fmt: str = "csv") -> Path:
    """Write the run's files into ``out_dir`` atomically and return its path.

    ``fmt``: ``"csv"`` (the default) or ``"parquet"`` (the tables as Parquet files, see the module docstring).
    Everything is written into a temporary sibling and renamed into place (see :func:`stage_dir`); an
    existing run folder is replaced only with ``force``. On any failure nothing is left behind and an
    existing target is untouched.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    out = Path(os.path.abspath(check_target(out_dir, force)))  # normalised: "." and ".." have a name
    stage_dir(out, lambda tmp: _write_files(model, tmp, wall_time, fmt), replace=True)
    return Path(out_dir)


