"""A run's tables as typed columns, built straight from the model's arrays: the columnar counterpart of the rows
of :mod:`abm.records` (the same tables, the same values, the same order), for writers of columnar files.

Each builder takes the model and returns a dict, column name -> column, in the order of the CSV file's columns.
A column is one of:

* a numpy array: ``int64``, ``bool`` or ``float64`` (in a float column NaN stands for an empty cell: the CSV
  writer writes NaN and None alike as empty cells);
* a ``numpy.ma.MaskedArray`` of ``int64``: an integer column with empty cells (masked);
* :class:`Coded`: strings given as codes into a list of values (names, kinds, months), cheap to build and to
  dictionary-encode;
* a list of ``str`` or ``None``: other text.

Nothing here formats text or writes files, and no row tuples are made: the agent columns come from
``model.agent_frames`` (see :func:`abm.records.record_agents`), the contract columns from the contract book and
the flow columns from the ledger's flow log. Where rows are Python records anyway (the timeseries, events and
training runs: a few per month), their columns are typed from the values (see :func:`record_columns`).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from operator import attrgetter

import numpy as np

from .ledger import KINDS
from .records import STATUS_NAMES
from .timeline import month_label


@dataclass(frozen=True)
class Coded:
    """A text column as ``codes`` (an integer array, one entry per row) into ``values`` (the distinct texts)."""

    codes: np.ndarray
    values: list[str]

    def __len__(self) -> int:
        return int(self.codes.size)

    def decode(self) -> list[str]:
        """The column as a list of texts (for tests and small tables)."""
        return [self.values[i] for i in self.codes.tolist()]


def _compact(codes: np.ndarray, values) -> Coded:
    """A Coded column keeping only the values that occur (in their original order)."""
    codes = np.asarray(codes)
    if codes.size == 0:
        return Coded(np.zeros(0, dtype=np.int32), [])
    used = np.flatnonzero(np.bincount(codes, minlength=len(values)))
    remap = np.zeros(len(values), dtype=np.int32)
    remap[used] = np.arange(used.size, dtype=np.int32)
    return Coded(remap[codes], [values[i] for i in used.tolist()])


def _uid_position(uids: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Position in ``uids`` (distinct agent ids) of each id in ``query``."""
    order = np.argsort(uids, kind="stable")
    ranked = uids[order]
    pos = np.minimum(np.searchsorted(ranked, query), max(ranked.size - 1, 0))
    if query.size and (ranked.size == 0 or not np.array_equal(ranked[pos], query)):
        raise ValueError("a row names an agent that is not among the model's labs, clouds and vendors")
    return order[pos]


def _all_agents(m) -> list:
    return [*m.labs, *m.clouds, *m.vendors]


# ------------------------------------------------------------------------------------------------ agents
def agent_columns(m) -> dict:
    """The columns of agents.csv (see :func:`abm.records.iter_agent_rows`): month by month, every agent active
    that month. ``capability``, ``efficiency``, ``obligations_usd`` and ``cloud_equity_usd`` are NaN (empty)
    for clouds and vendors."""
    frames = m.agent_frames
    start = m.cfg.run.start
    sizes = np.array([len(f[1]) for f in frames], dtype=np.int64)
    total = int(sizes.sum())
    steps = np.array([f[0] for f in frames], dtype=np.int64)
    everyone = _all_agents(m)
    uid_of = attrgetter("unique_id")
    uids = np.fromiter(map(uid_of, everyone), dtype=np.int64, count=len(everyone))
    row_uid = np.fromiter((u for f in frames for u in map(uid_of, f[1])), dtype=np.int64, count=total)
    who = _uid_position(uids, row_uid)

    def per_agent(attr: str) -> Coded:
        texts = [getattr(a, attr) for a in everyone]
        distinct = list(dict.fromkeys(texts))
        index = {t: i for i, t in enumerate(distinct)}
        code = np.array([index[t] for t in texts], dtype=np.int32)
        return _compact(code[who], distinct)

    def stacked(k: int) -> np.ndarray:
        if not frames:
            return np.zeros(0)
        return np.concatenate([np.asarray(f[k], dtype=np.float64) for f in frames])

    def labs_only(k: int) -> np.ndarray:
        out = np.full(total, np.nan)
        at = 0
        for f, n in zip(frames, sizes.tolist(), strict=True):
            vals = np.asarray(f[k], dtype=np.float64)
            out[at:at + vals.size] = vals
            at += n
        return out

    names = [a.name for a in everyone]
    month_codes = np.repeat(np.arange(len(frames), dtype=np.int32), sizes)
    alive = (np.concatenate([np.asarray(f[2], dtype=bool) for f in frames]) if frames
             else np.zeros(0, dtype=bool))
    return {
        "month": Coded(month_codes, [month_label(start, int(t)) for t in steps.tolist()]),
        "step": np.repeat(steps, sizes),
        "agent_id": uids[who],
        "name": _compact(who, names),
        "type": per_agent("type_name"),
        "kind": per_agent("kind"),
        "alive": alive,
        "cash_usd": stacked(3),
        "capital_raised_usd": stacked(4),
        "h100e": stacked(5),
        "revenue_usd": stacked(6),
        "capability": labs_only(7),
        "efficiency": labs_only(8),
        "market_share": stacked(9),
        "obligations_usd": labs_only(10),
        "cloud_equity_usd": labs_only(11),
    }


# ------------------------------------------------------------------------------------------------ contracts
def contract_columns(m) -> dict:
    """The columns of contracts.csv (see :func:`abm.records.iter_contract_rows`): every contract in id order,
    buyers and sellers by name; ``closed`` is masked (empty) while a contract is open."""
    b = m.book
    everyone = _all_agents(m)
    uids = np.array([a.unique_id for a in everyone], dtype=np.int64)
    names = [a.name for a in everyone]
    kind = np.asarray(b.kind, dtype=np.int64)
    chip = KINDS.index("chip_order")
    capacity = np.isin(kind, [KINDS.index("reserved"), KINDS.index("equity_for_compute")])
    closed = np.asarray(b.closed, dtype=np.int64)
    return {
        "contract_id": np.arange(len(b), dtype=np.int64),
        "buyer": _compact(_uid_position(uids, np.asarray(b.buyer, dtype=np.int64)), names),
        "seller": _compact(_uid_position(uids, np.asarray(b.seller, dtype=np.int64)), names),
        "kind": Coded(kind.astype(np.int32), list(KINDS)),
        "volume_h100e": np.asarray(b.volume, dtype=np.float64),
        "start": np.asarray(b.start, dtype=np.int64),
        "end": np.asarray(b.end, dtype=np.int64),
        "unit_price_usd": np.asarray(b.price, dtype=np.float64),
        "unit": Coded(np.where(kind == chip, 0, 1).astype(np.int32), ["usd_per_h100e", "usd_per_h100e_month"]),
        "take_or_pay_share": np.where(capacity, np.asarray(b.take_or_pay, dtype=np.float64), 0.0),
        "prepayment_usd": np.asarray(b.prepayment, dtype=np.float64),
        "equity_share": np.asarray(b.equity_share, dtype=np.float64),
        "investment_usd": np.asarray(b.investment, dtype=np.float64),
        "effective_factor": np.asarray(b.eff_factor, dtype=np.float64),
        "ramp_months": np.asarray(b.ramp, dtype=np.int64),
        "exclusive": np.asarray(b.exclusive, dtype=bool),
        "signed": np.asarray(b.signed, dtype=np.int64),
        "status": Coded(np.asarray(b.status, dtype=np.int32), list(STATUS_NAMES)),
        "closed": np.ma.masked_array(closed, mask=closed < 0),
    }


# ------------------------------------------------------------------------------------------------ flows
def flow_columns(m) -> dict | None:
    """The columns of flows.csv (see :func:`abm.records.flow_months`: the same rows in the same order), or
    None when the ledger kept no log. Payers and payees are named as there: an agent by its name, an outside
    account by its ledger name."""
    return next(flow_column_chunks(m), None)


def flow_column_chunks(m, rows: int | None = None):
    """:func:`flow_columns` in pieces of whole months, in order: each piece as many months as fit in ``rows``
    rows (at least one month; None: one piece of every month), so that a writer holds one piece at a time.
    Nothing when the ledger kept no log; one piece without rows when it logged nothing."""
    log = m.ledger.log
    if log is None:
        return
    names = list(m.ledger.names)
    for a in _all_agents(m):
        names[a.account] = a.name
    kinds = list(log.kinds)
    start = m.cfg.run.start
    parts: list[tuple] = []
    n = 0
    made = False
    for step, payer, payee, kind, amount in log.summed(len(names)):
        if parts and rows is not None and n + payer.size > rows:
            yield _flow_piece(parts, names, kinds, start)
            parts, n, made = [], 0, True
        # kept compact as they come: account and kind codes fit in int32
        parts.append((int(step), payer.astype(np.int32), payee.astype(np.int32), kind.astype(np.int32),
                      np.asarray(amount, dtype=np.float64)))
        n += payer.size
    if parts or not made:
        yield _flow_piece(parts, names, kinds, start)


def _flow_piece(parts: list[tuple], names: list[str], kinds: list[str], start: str) -> dict:
    sizes = np.array([p[1].size for p in parts], dtype=np.int64)
    steps = np.array([p[0] for p in parts], dtype=np.int64)

    def cat(k: int, dtype) -> np.ndarray:
        return np.concatenate([p[k] for p in parts]) if parts else np.zeros(0, dtype)

    return {
        "month": Coded(np.repeat(np.arange(len(parts), dtype=np.int32), sizes),
                       [month_label(start, int(t)) for t in steps.tolist()]),
        "step": np.repeat(steps, sizes),
        "payer": _compact(cat(1, np.int32), names),
        "payee": _compact(cat(2, np.int32), names),
        "kind": _compact(cat(3, np.int32), kinds),
        "amount_usd": cat(4, np.float64),
    }


# ------------------------------------------------------------------------------------------------ records
def _is_null(v) -> bool:
    return v is None or (isinstance(v, float | np.floating) and math.isnan(v))


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool | np.bool_)


def _text(v) -> str:
    """A value as the CSV writer writes it (the cell of a text column)."""
    if isinstance(v, bool | np.bool_):
        return "True" if v else "False"
    if _is_int(v):
        return str(int(v))
    if isinstance(v, numbers.Real):
        return repr(float(v))
    return str(v)


def _infer(values: list) -> str:
    types = set(map(type, values))
    types.discard(type(None))
    if not types:
        return "float"
    if all(issubclass(t, numbers.Integral) and not issubclass(t, bool | np.bool_) for t in types):
        return "int"
    if all(issubclass(t, bool | np.bool_) for t in types):
        return "bool"
    if all(issubclass(t, numbers.Real) and not issubclass(t, bool | np.bool_) for t in types):
        # a float column without a value (only None and NaN) is typed as float too
        return "int" if all(_is_int(v) or _is_null(v) for v in values) and any(_is_int(v) for v in values) \
            else "float"
    return "str"


def typed_column(values: list, kind: str | None = None):
    """One column of Python values, typed: ``kind`` ``"int"``, ``"float"``, ``"bool"`` or ``"str"``, or None to
    type it from the values. None and NaN are empty cells. From the values: every non-empty value an int ->
    int64, a bool -> bool, a real number -> float64, anything else -> text; a column with no value -> float64.
    An ``"int"`` column holding anything but whole numbers becomes float64 (or text)."""
    values = list(values)
    if kind is None:
        kind = _infer(values)
    if kind == "int":
        null = np.fromiter((_is_null(v) for v in values), dtype=bool, count=len(values))
        if all(_is_int(v) for v, n in zip(values, null.tolist(), strict=True) if not n):
            data = np.array([0 if n else int(v) for v, n in zip(values, null.tolist(), strict=True)], dtype=np.int64)
            return np.ma.masked_array(data, mask=null) if null.any() else data
        kind = "float"
    if kind == "float":
        try:
            return np.array([math.nan if v is None else v for v in values], dtype=np.float64)
        except (TypeError, ValueError):  # text among the numbers
            kind = "str"
    if kind == "bool" and not any(_is_null(v) for v in values):
        return np.array([bool(v) for v in values], dtype=bool)
    return [v if type(v) is str else (None if _is_null(v) else _text(v)) for v in values]


def record_columns(records, columns, kinds: dict[str, str] | None = None) -> dict:
    """Columns of a log of records, typed by :func:`typed_column` (``kinds`` fixes a column's type): a list of
    dicts (a missing key is an empty cell), or a log kept as columns (:class:`abm.logs.ColumnLog`: read with
    its ``columns()``, without making a dict per record)."""
    kinds = kinds or {}
    as_columns = getattr(records, "columns", None)
    if callable(as_columns):
        data = as_columns()
        n = len(records)
        return {c: typed_column(data[c] if c in data else [None] * n, kinds.get(c)) for c in columns}
    return {c: typed_column([r.get(c) for r in records], kinds.get(c)) for c in columns}


def record_fields(records, fallback) -> list[str]:
    """The fields of a log of records, as the CSV writer finds them (the keys of every record in order of
    appearance; ``fallback`` when there is no record)."""
    fields = getattr(records, "fields", None)
    if fields is not None and not isinstance(records, list | tuple):
        return list(fields) if len(records) else list(fallback)
    return list(dict.fromkeys(k for rec in records for k in rec)) or list(fallback)


def timeseries_columns(m, columns) -> dict:
    """The monthly timeseries (``m.rows``) as typed columns, in the order of ``columns``."""
    return record_columns(m.rows, columns)
