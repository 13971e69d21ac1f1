"""An independent audit of a run folder's money: every agent's cash rebuilt from the folder's CSV files alone.

This module reads ``agents.csv``, ``contracts.csv``, ``events.csv`` and ``flows.csv`` and nothing of the model
(it imports no ``abm`` code), so a fault in the model's accounting cannot hide itself here. A folder written with
``abm run --format parquet`` holds the same tables as ``.parquet`` files; they are read instead (with pyarrow,
still without the model's code), and everything below applies to them alike. It rebuilds a
ledger of every transfer in the run from three sources and checks each against the others:

* **contract terms** (``contracts.csv``): what every contract should have paid, month by month, from its
  volume, ramp, price, take-or-pay share, start, end, status and closing month. Reserved and
  equity-for-compute contracts pay ``volume(m) x delivery ratio x price x take-or-pay`` in each month m of
  their term up to the month they closed (a defaulted contract still pays in the month its lab exits: exits
  come after settlement). The delivery ratio is a cloud's online capacity (its ``h100e`` row in agents.csv)
  over the volume it has committed that month (all its capacity contracts then), when that is larger.
  A lab that defaults pays every contract pro rata, short by the ``default`` event's value; when it exits, its
  clouds recover the take-or-pay value of the defaulted contracts' remaining months pro rata from the cash
  it has left. Spot purchases pay volume x price in their month, chip orders volume x price when signed,
  and equity-for-compute deals their investment when signed;
* **events** (``events.csv``): seed rounds (``entry`` from the investor pool, ``probe_entry`` from
  investors), investors' rounds (``raise``), announced rounds (``funding``, from investors or a cloud),
  equity-for-compute investments, captive-chip designs, the founding cash of ``lab_entry`` labs, the cash
  a lab leaves with (``exit``), and the value of a ``mega_deal`` against its contract;
* **flows** (``flows.csv``): every other transfer (revenue, R&D, energy, borrowing, ...), summed per month,
  payer, payee and kind.

For the kinds the contracts or the events determine, the amounts derived from them must equal the flows of
that kind in ``flows.csv``, payer, payee and month alike; the ledger rebuilt from the derived amounts and
the other flows must then give every agent's ``cash_usd`` in every month of ``agents.csv``. Every agent starts
at zero and receives its initial cash as an ``endowment`` flow in month 0 (or, for a ``lab_entry`` lab, in
the month it is founded). The cash in ``agents.csv`` is read at the end of the month, after that month's
transfers, so the rebuilt cash of month t sums every transfer of months 0..t. A lab's rows stop in the month
it exits; no transfer may involve it before its first row or after its last.

Also checked: the lifecycle the payments rest on (a contract completes in the month it ends, defaults in the
month its lab exits), that a lab that defaults exits that month, and that no lab or cloud ends a month below
zero by more than rounding (labs never pay more than their cash, clouds borrow any shortfall).

Tolerance: 1e-9 relative (to a scale of at least 1 USD). For a cash balance, relative to the larger of its
absolute value and the agent's gross flows to date, in plus out (floating-point sums in another order differ
by about 1e-16 of the money that went through the account, not of what is left); for a derived amount,
relative to the larger of the two amounts and the total it is a share of (a defaulting lab's dues; an
exiting lab's claims or the money that went through it); for conservation, relative to the gross flows.
Conservation: in every month the net flows over all accounts sum to zero, and the agents' cash (the last
reported balance of labs that have exited included) equals what the outside accounts (investors, end users,
lenders, sinks, ...) have paid in net.

    python -m analysis.experiments.audit runs/baseline-seed1      # or: abm audit runs/baseline-seed1
"""

from __future__ import annotations

import csv
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

REL_TOL = 1e-9

REQUIRED = {
    "agents.csv": ("step", "agent_id", "name", "type", "cash_usd", "h100e"),
    "contracts.csv": ("contract_id", "buyer", "seller", "kind", "volume_h100e", "start", "end", "unit_price_usd",
                      "take_or_pay_share", "investment_usd", "ramp_months", "signed", "status", "closed"),
    "events.csv": ("step", "event", "agent", "detail", "value_usd"),
    "flows.csv": ("step", "payer", "payee", "kind", "amount_usd"),
}
FLOAT_COLS = {"cash_usd", "h100e", "volume_h100e", "unit_price_usd", "take_or_pay_share", "investment_usd",
              "value_usd", "amount_usd"}
INT_COLS = {"step", "agent_id", "contract_id", "start", "end", "ramp_months", "signed"}
CAPACITY_KINDS = ("reserved", "equity_for_compute")
# Kinds of flow whose amounts the contracts or the events determine; flows.csv must agree with them.
CONTRACT_FLOWS = ("spot", "chip_purchase", "equity_for_compute", "reserved_payment", "default_recovery")
EVENT_FLOWS = ("seed_round", "equity_raise", "equity_investment", "captive_design")
KEY = ["step", "payer", "payee", "kind"]


class AuditError(Exception):
    """The folder cannot be audited: a file is missing, unreadable or lacks a column, or names are ambiguous."""


@dataclass(frozen=True)
class Discrepancy:
    """One failed check: what was checked (``check``), for which agent or pair of accounts (``agent``) and month
    index (``month``, the ``step`` of the files), the value the audit expected, the value the folder holds, the
    relative error (inf for a row that should not exist or is missing) and a note."""

    check: str
    agent: str
    month: int
    expected: float
    found: float
    rel_error: float
    detail: str = ""

    def __str__(self) -> str:
        extra = f" ({self.detail})" if self.detail else ""
        return (f"{self.check}: {self.agent}, month {self.month}: expected {self.expected!r}, found {self.found!r}, "
                f"relative error {self.rel_error:.3g}{extra}")


@dataclass
class AuditResult:
    """The outcome of :func:`audit_run`: how much was checked and every check that failed.

    ``by_check`` gives, per kind of check (``cash``, ``contract_flow``, ``event_flow``, ``exit_cash``,
    ``conservation``, ...), how many were made and the largest relative error among them; ``externals`` the
    outside accounts' balances at the end (sources negative, sinks positive).
    """

    run_dir: Path
    agents: int
    months: int
    checks: int = 0
    max_rel_error: float = 0.0
    discrepancies: list[Discrepancy] = field(default_factory=list)
    tolerance: float = REL_TOL
    externals: dict[str, float] = field(default_factory=dict)
    by_check: dict[str, tuple[int, float]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Whether every check passed."""
        return not self.discrepancies

    def summary(self) -> str:
        """One line: agents, months, checks, the largest relative error and the verdict."""
        verdict = "passed" if self.passed else f"FAILED: {len(self.discrepancies)} discrepancies"
        return (f"{self.run_dir}: {self.agents} agents, {self.months} months, {self.checks} checks, max relative "
                f"error {self.max_rel_error:.2e} (tolerance {self.tolerance:g}): {verdict}")


class _Checker:
    """Counts checks, keeps the largest relative error and the failures."""

    def __init__(self, result: AuditResult):
        self.r = result

    def compare(self, check: str, agent, month, expected, found, scale, detail=None) -> None:
        """Compare arrays (or scalars) of expected and found values, each relative to its scale."""
        expected, found = np.atleast_1d(np.asarray(expected, dtype=float)), np.atleast_1d(np.asarray(found, dtype=float))
        scale = np.maximum(np.broadcast_to(np.asarray(scale, dtype=float), expected.shape), 1.0)
        with np.errstate(invalid="ignore"):
            rel = np.abs(expected - found) / scale
        rel = np.where(np.isfinite(rel), rel, np.inf)
        self._count(check, int(rel.size), float(rel.max()) if rel.size else 0.0)
        bad = np.flatnonzero(rel > self.r.tolerance)
        agent = np.broadcast_to(np.asarray(agent, dtype=object), expected.shape)
        month = np.broadcast_to(np.asarray(month), expected.shape)
        det = np.broadcast_to(np.asarray("" if detail is None else detail, dtype=object), expected.shape)
        for i in bad.tolist():
            self.r.discrepancies.append(Discrepancy(check, str(agent[i]), int(month[i]), float(expected[i]),
                                                    float(found[i]), float(rel[i]), str(det[i])))

    def fail(self, check: str, agent: str, month: int, detail: str, expected=np.nan, found=np.nan) -> None:
        """A check that failed outright (a row where none may be, a missing row)."""
        self._count(check, 1, math.inf)
        self.r.discrepancies.append(Discrepancy(check, agent, int(month), float(expected), float(found), np.inf, detail))

    def ok(self, check: str, n: int = 1) -> None:
        """Checks that passed outright."""
        self._count(check, n, 0.0)

    def _count(self, check: str, n: int, worst: float) -> None:
        self.r.checks += n
        self.r.max_rel_error = max(self.r.max_rel_error, worst)
        count, prev = self.r.by_check.get(check, (0, 0.0))
        self.r.by_check[check] = (count + n, max(prev, worst))


# ------------------------------------------------------------------------------------------------ reading
def _file(d: Path, name: str) -> Path:
    """The file of table ``name`` (``agents.csv`` ...): its ``.parquet`` twin if the folder has one (as for every
    reader of run folders), else the CSV file."""
    twin = d / (Path(name).stem + ".parquet")
    return twin if twin.is_file() else d / name


def _read_parquet(path: Path, wanted: tuple[str, ...], text: list[str]) -> pd.DataFrame:
    """The ``wanted`` columns of a Parquet table, texts as categories (as pyarrow gives dictionary columns)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        header = pq.read_schema(str(path)).names
        missing = [c for c in wanted if c not in header]
        if missing:
            raise AuditError(f"{path}: no column {missing[0]!r}; was it written by 'abm run'?")
        table = pq.read_table(str(path), columns=list(dict.fromkeys(wanted)))
        for c in text:
            i = table.schema.get_field_index(c)
            if not pa.types.is_dictionary(table.schema.field(i).type):
                table = table.set_column(i, c, table.column(i).dictionary_encode())
        return table.to_pandas()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise AuditError(f"{path}: cannot read: {' '.join(str(exc).split())}") from None


def _read(d: Path, name: str) -> pd.DataFrame:
    """The columns of a file the audit uses (``name`` as ``agents.csv``; its ``.parquet`` twin is read when the
    folder has one): numbers as float64 or int64 (``closed`` -1 when empty), the rest as text. Raises
    :class:`AuditError` naming the file, row and column of what cannot be read."""
    path = _file(d, name)
    if not path.is_file():
        if name == "flows.csv" and _file(d, "agents.csv").is_file():
            raise AuditError(f"{d}: no flows.csv (run folders written before it existed have none); "
                             "write the run again with 'abm run'")
        raise AuditError(f"{d}: no {name}; give a folder written by 'abm run'")
    wanted = REQUIRED[name] + (("closed",) if name == "contracts.csv" else ())
    numeric = [c for c in wanted if c in FLOAT_COLS or c in INT_COLS or c == "closed"]
    # Text as categories, then as objects: each distinct name is one string however many rows hold it.
    text = [c for c in wanted if c not in numeric]
    first_row = 2  # the row number of the first data row in messages: after the header line of a CSV file
    if path.suffix == ".parquet":
        df, first_row = _read_parquet(path, wanted, text), 1
    else:
        try:
            with open(path, newline="", encoding="utf-8") as fh:
                header = next(csv.reader(fh), [])
            missing = [c for c in wanted if c not in header]
            if missing:
                raise AuditError(f"{path}: no column {missing[0]!r}; was it written by 'abm run'?")
            df = pd.read_csv(path, usecols=list(wanted), keep_default_na=False,
                             na_values={c: [""] for c in numeric}, dtype=dict.fromkeys(text, "category"))
        except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:
            raise AuditError(f"{path}: cannot read: {' '.join(str(exc).split())}") from None
    for col in text:
        df[col] = df[col].astype(object)
    for col in numeric:
        vals = df[col]
        if not pd.api.types.is_numeric_dtype(vals):  # text somewhere, or no rows at all
            raw = vals.to_numpy(dtype=object)
            bad = [i for i, x in enumerate(raw) if not _is_number(x)]
            if bad:
                raise AuditError(f"{path}: row {bad[0] + first_row}, column {col!r}: not a number: {raw[bad[0]]!r}")
            vals = np.array([float(x) if x is not None and x == x and x != "" else np.nan for x in raw], dtype=float)
        vals = vals.to_numpy(dtype=float) if isinstance(vals, pd.Series) else vals
        if col == "closed":
            vals = np.where(np.isnan(vals), -1.0, vals)
        if col in INT_COLS or col == "closed":
            wrong = ~np.isfinite(vals) | (vals != np.round(vals))
            if wrong.any():
                bad = int(np.flatnonzero(wrong)[0])
                raise AuditError(f"{path}: row {bad + first_row}, column {col!r}: not a whole number")
            vals = vals.astype(np.int64)
        df[col] = vals
    return df


def _is_number(x: str) -> bool:
    try:
        float(x or "nan")
    except ValueError:
        return False
    return True


def _rows(step, payer, payee, kind, amount, scale=None) -> pd.DataFrame:
    """A frame of ledger rows (scale defaults to the amount itself)."""
    amount = np.asarray(amount, dtype=float)
    n = amount.size
    return pd.DataFrame({
        "step": np.broadcast_to(np.asarray(step, dtype=np.int64), (n,)),
        "payer": np.broadcast_to(np.asarray(payer, dtype=object), (n,)),
        "payee": np.broadcast_to(np.asarray(payee, dtype=object), (n,)),
        "kind": np.broadcast_to(np.asarray(kind, dtype=object), (n,)),
        "amount": amount,
        "scale": np.abs(amount) if scale is None else np.broadcast_to(np.asarray(scale, dtype=float), (n,)),
    })


def _sum_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows summed per (step, payer, payee, kind); the scale of a sum is the largest of its parts'."""
    if df.empty:
        return df
    return df.groupby(KEY, sort=True, as_index=False).agg(amount=("amount", "sum"), scale=("scale", "max"))


# ------------------------------------------------------------------------------------------------ contracts
def _expand(con: pd.DataFrame, first: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(contract position, month, volume that month) for every month in [first, last] of each contract, the
    volume ramped linearly over ``ramp_months`` from its start."""
    n = np.maximum(last - first + 1, 0)
    pos = np.repeat(np.arange(len(con)), n)
    offset = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    month = first[pos] + offset
    start = con["start"].to_numpy()[pos]
    ramp = con["ramp_months"].to_numpy()[pos]
    frac = np.where(ramp > 0, np.minimum(1.0, (month - start + 1) / np.maximum(ramp, 1)), 1.0)
    return pos, month, con["volume_h100e"].to_numpy()[pos] * frac


def _capacity_payments(con: pd.DataFrame, agents: pd.DataFrame, events: pd.DataFrame, months: int,
                       chk: _Checker) -> pd.DataFrame:
    """Reserved and equity-for-compute contracts: what each lab should have paid each cloud each month.

    Works on (agent, month) cells as integer codes: one entry per contract and month it pays in."""
    cap = con[con["kind"].isin(CAPACITY_KINDS)].reset_index(drop=True)
    if cap.empty:
        return _rows([], [], [], [], [])
    names = pd.Index(pd.unique(np.concatenate([cap["buyer"].to_numpy(dtype=object),
                                               cap["seller"].to_numpy(dtype=object)])))
    n = len(names)
    buyer, seller = names.get_indexer(cap["buyer"]), names.get_indexer(cap["seller"])
    start, end, closed = cap["start"].to_numpy(), cap["end"].to_numpy(), cap["closed"].to_numpy()
    cut = cap["status"].isin(("defaulted", "cancelled")).to_numpy() & (closed >= 0)
    last = np.minimum(np.where(cut, np.minimum(end - 1, closed), end - 1), months - 1)
    pos, month, vol = _expand(cap, start, last)
    cloud_cell = seller[pos] * months + month
    lab_cell = buyer[pos] * months + month
    # What each cloud had committed that month, against what it had online (agents.csv), gives its delivery ratio.
    committed = np.bincount(cloud_cell, weights=vol, minlength=n * months)[cloud_cell]
    online = np.full(n * months, np.nan)
    clouds = agents[agents["type"] == "cloud"]
    idx = names.get_indexer(clouds["name"])
    known = idx >= 0
    online[idx[known] * months + clouds["step"].to_numpy()[known]] = clouds["h100e"].to_numpy()[known]
    online = online[cloud_cell]
    missing = np.isnan(online)
    for cell in np.unique(cloud_cell[missing]).tolist():
        chk.fail("cloud_row", names[cell // months], cell % months,
                 "a contract delivers from this cloud in a month it has no agents.csv row")
    online = np.where(missing, committed, online)
    ratio = np.where(committed > online, online / np.maximum(committed, 1e-12), 1.0)
    due = vol * ratio * cap["unit_price_usd"].to_numpy()[pos] * cap["take_or_pay_share"].to_numpy()[pos]
    # A lab that could not pay everything paid each contract pro rata, short by its default event's value.
    dues = np.bincount(lab_cell, weights=due, minlength=n * months)
    short = np.full(n * months, np.nan)
    for (lab, m), s in events[events["event"] == "default"].groupby(["agent", "step"])["value_usd"].sum().items():
        i = names.get_loc(lab) if lab in names else -1
        total = float(dues[i * months + m]) if i >= 0 and 0 <= m < months else 0.0
        if total <= 0:
            chk.fail("default", lab, m, "a default event in a month the lab owed nothing", 0.0, s)
            continue
        chk.compare("default", lab, m, min(max(s, 0.0), total), s, total, "shortfall outside [0, dues]")
        short[i * months + m] = s
    owed, s = dues[lab_cell], short[lab_cell]
    paid = np.where(np.isnan(s), 1.0, np.clip((owed - s) / np.where(owed > 0, owed, 1.0), 0.0, 1.0))
    # Summed per (month, lab, cloud); the scale of a payment is the lab's dues that month.
    key = (month * n + buyer[pos]) * n + seller[pos]
    uniq, inv = np.unique(key, return_inverse=True)
    amount = np.bincount(inv.ravel(), weights=due * paid, minlength=uniq.size)
    step, pair = np.divmod(uniq, n * n)
    b, c = np.divmod(pair, n)
    return _rows(step, names.to_numpy()[b], names.to_numpy()[c], "reserved_payment", amount, dues[b * months + step])


def _check_contracts(con: pd.DataFrame, events: pd.DataFrame, months: int, chk: _Checker) -> None:
    """The lifecycle the payments rest on: a capacity contract still active runs past the last month; one
    completed closed in the month it ended; one defaulted closed during its term, in the month its lab exited."""
    cap = con[con["kind"].isin(CAPACITY_KINDS)]
    start, end, closed, status = cap["start"], cap["end"], cap["closed"], cap["status"]
    exits = set(zip(events.loc[events["event"] == "exit", "agent"], events.loc[events["event"] == "exit", "step"],
                    strict=True))
    exited = np.array([(b, c) in exits for b, c in zip(cap["buyer"], closed, strict=True)], dtype=bool)
    ok = np.where(status == "active", (end >= months) & (closed < 0),
                  np.where(status == "completed", closed == end,
                           np.where(status == "defaulted", (start <= closed) & (closed < end) & exited,
                                    status == "cancelled")))
    ok &= (start <= end) & (cap["signed"] == start)
    for r in cap[~ok].itertuples():
        chk.fail("contract_status", f"{r.buyer} -> {r.seller}", r.closed if r.closed >= 0 else r.start,
                 f"contract {r.contract_id} ({r.kind}, {r.status}, months {r.start}-{r.end}, closed {r.closed})")
    chk.ok("contract_status", int(ok.sum()))


def _claims(con: pd.DataFrame) -> pd.DataFrame:
    """Defaulted contracts: the take-or-pay value of their months after the exit, per (exit month, lab, cloud)."""
    dfl = con[(con["kind"].isin(CAPACITY_KINDS)) & (con["status"] == "defaulted")].reset_index(drop=True)
    if dfl.empty:
        return pd.DataFrame(columns=["step", "buyer", "seller", "claim"])
    closed = dfl["closed"].to_numpy()
    pos, month, vol = _expand(dfl, np.maximum(closed + 1, dfl["start"].to_numpy()), dfl["end"].to_numpy() - 1)
    value = pd.Series(vol * dfl["unit_price_usd"].to_numpy()[pos]).groupby(pos).sum()
    claim = value.reindex(np.arange(len(dfl)), fill_value=0.0).to_numpy() * dfl["take_or_pay_share"].to_numpy()
    out = pd.DataFrame({"step": closed, "buyer": dfl["buyer"], "seller": dfl["seller"], "claim": claim})
    return out.groupby(["step", "buyer", "seller"], as_index=False, sort=True)["claim"].sum()


def _contract_flows(con: pd.DataFrame) -> pd.DataFrame:
    """Spot purchases, chip orders and equity-for-compute investments, from their contract rows."""
    spot = con[con["kind"] == "spot"]
    chips = con[con["kind"] == "chip_order"]
    equity = con[con["kind"] == "equity_for_compute"]
    return _sum_rows(pd.concat([
        _rows(spot["start"], spot["buyer"], spot["seller"], "spot",
              spot["volume_h100e"].to_numpy() * spot["unit_price_usd"].to_numpy()),
        _rows(chips["signed"], chips["buyer"], chips["seller"], "chip_purchase",
              chips["unit_price_usd"].to_numpy() * chips["volume_h100e"].to_numpy()),
        _rows(equity["signed"], equity["seller"], equity["buyer"], "equity_for_compute",
              equity["investment_usd"].to_numpy()),
    ], ignore_index=True))


def _mega_deals(con: pd.DataFrame, events: pd.DataFrame, chk: _Checker) -> None:
    """A mega-deal's value (its event) is its contract's price times the H100e-months of its ramped schedule."""
    for ev in events[events["event"] == "mega_deal"].itertuples():
        cloud = str(ev.detail).split(":", 1)[0]
        rows = con[(con["kind"] == "reserved") & (con["buyer"] == ev.agent) & (con["seller"] == cloud)
                   & (con["signed"] == ev.step)]
        if rows.empty:
            chk.fail("mega_deal", ev.agent, ev.step, f"no reserved contract with {cloud} signed that month", ev.value_usd)
            continue
        pos, _, vol = _expand(rows.reset_index(drop=True), rows["start"].to_numpy(), rows["end"].to_numpy() - 1)
        values = pd.Series(vol * rows["unit_price_usd"].to_numpy()[pos]).groupby(pos).sum().to_numpy()
        best = values[np.argmin(np.abs(values - ev.value_usd))]
        chk.compare("mega_deal", ev.agent, ev.step, ev.value_usd, best, ev.value_usd, "contract value")


# ------------------------------------------------------------------------------------------------ events
def _event_flows(events: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Transfers the events determine: (rows of the EVENT_FLOWS kinds, rows that only verify flows.csv:
    equity-for-compute investments and lab_entry founding cash)."""
    e = events
    v = e["value_usd"].to_numpy()

    def pick(name):
        sel = (e["event"] == name).to_numpy()
        return e[sel], v[sel]

    entry, ve = pick("entry")
    probe, vp = pick("probe_entry")
    raise_, vr = pick("raise")
    funding, vf = pick("funding")
    design, vd = pick("captive_design")
    efc, vq = pick("equity_for_compute")
    found, vl = pick("lab_entry")
    who = funding["detail"].astype(str).str.rsplit(" take ", n=1).str[0].to_numpy(dtype=object)
    by_investors = who == "investors"
    main = pd.concat([
        _rows(entry["step"], "investor_pool", entry["agent"], "seed_round", ve),
        _rows(probe["step"], "investors", probe["agent"], "seed_round", vp),
        _rows(raise_["step"], "investor_pool", raise_["agent"], "equity_raise", vr),
        _rows(funding["step"].to_numpy()[by_investors], "investors", funding["agent"].to_numpy()[by_investors],
              "equity_raise", vf[by_investors]),
        _rows(funding["step"].to_numpy()[~by_investors], who[~by_investors], funding["agent"].to_numpy()[~by_investors],
              "equity_investment", vf[~by_investors]),
        _rows(design["step"], design["agent"], "chip_design", "captive_design", vd),
    ], ignore_index=True)
    cloud = efc["detail"].astype(str).str.rsplit(" takes ", n=1).str[0].to_numpy(dtype=object)
    founded = vl > 0
    verify = pd.concat([
        _rows(efc["step"], cloud, efc["agent"], "equity_for_compute", vq),
        _rows(found["step"].to_numpy()[founded], "endowment", found["agent"].to_numpy()[founded], "endowment",
              vl[founded]),
    ], ignore_index=True)
    return _sum_rows(main), _sum_rows(verify)


# ------------------------------------------------------------------------------------------------ the ledger
def _match(derived: pd.DataFrame, flows: pd.DataFrame, check: str, chk: _Checker) -> None:
    """Every derived row against the flows.csv row of the same (step, payer, payee, kind), and every flows.csv
    row of those kinds against a derived one (a flow nothing accounts for is expected to be zero)."""
    d = derived.rename(columns={"amount": "expected"})
    f = flows[KEY + ["amount"]].rename(columns={"amount": "found"})
    both = d.merge(f, on=KEY, how="outer")
    both["expected"] = both["expected"].fillna(0.0)
    both["found"] = both["found"].fillna(0.0)
    scale = np.maximum.reduce([both["expected"].abs().to_numpy(), both["found"].abs().to_numpy(),
                               both["scale"].fillna(0.0).to_numpy()])
    who = (both["payer"] + " -> " + both["payee"]).to_numpy(dtype=object)
    chk.compare(check, who, both["step"].to_numpy(), both["expected"].to_numpy(), both["found"].to_numpy(), scale,
                both["kind"].to_numpy(dtype=object))


class _Books:
    """Balances of every account, month by month, rebuilt from ledger rows."""

    def __init__(self, rows: pd.DataFrame, months: int):
        names = pd.Index(pd.unique(np.concatenate([rows["payer"].to_numpy(dtype=object),
                                                   rows["payee"].to_numpy(dtype=object)])))
        self.names = names
        n = len(names)
        step = rows["step"].to_numpy()
        payer, payee = names.get_indexer(rows["payer"]), names.get_indexer(rows["payee"])
        amount = rows["amount"].to_numpy()
        net = np.zeros((n, months))
        gross = np.zeros((n, months))
        np.add.at(net, (payee, step), amount)
        np.subtract.at(net, (payer, step), amount)
        np.add.at(gross, (payee, step), np.abs(amount))
        np.add.at(gross, (payer, step), np.abs(amount))
        self.net = net
        self.cash = np.cumsum(net, axis=1)
        self.gross = np.cumsum(gross, axis=1)
        self.month_gross = np.bincount(step, weights=np.abs(amount), minlength=months)

    def lookup(self, name, step) -> tuple[np.ndarray, np.ndarray]:
        """(cash, gross flows to date) of accounts ``name`` at the end of months ``step`` (0 without flows)."""
        i = self.names.get_indexer(pd.Index(np.asarray(name, dtype=object)))
        step = np.asarray(step)
        has = i >= 0
        cash, gross = np.zeros(step.size), np.zeros(step.size)
        cash[has] = self.cash[i[has], step[has]]
        gross[has] = self.gross[i[has], step[has]]
        return cash, gross


def audit_run(run_dir: str | Path, tol: float = REL_TOL) -> AuditResult:
    """Audit one run folder (see the module docstring); raises :class:`AuditError` if it cannot be read."""
    d = Path(run_dir)
    if not d.is_dir():
        raise AuditError(f"{d}: run folder not found" if not d.exists() else f"{d}: not a directory")
    agents = _read(d, "agents.csv")
    con = _read(d, "contracts.csv")
    events = _read(d, "events.csv")
    flows = _read(d, "flows.csv")
    if agents.empty:
        raise AuditError(f"{_file(d, 'agents.csv')}: no rows")
    ids = agents.groupby("name")["agent_id"].nunique()
    names = agents.groupby("agent_id")["name"].nunique()
    if (ids > 1).any() or (names > 1).any():
        dup = ids[ids > 1].index[0] if (ids > 1).any() else names[names > 1].index[0]
        raise AuditError(f"{_file(d, 'agents.csv')}: agent names are not one per agent ({dup!r}); cannot join the "
                         "files")
    months = int(agents["step"].max()) + 1
    result = AuditResult(d, agents=int(agents["agent_id"].nunique()), months=months, tolerance=tol)
    chk = _Checker(result)

    flows = flows.rename(columns={"amount_usd": "amount"})
    _check_flow_rows(flows, months, chk)
    flows = flows[(flows["step"] >= 0) & (flows["step"] < months)]

    # The ledger: derived amounts for the kinds contracts and events determine, flows.csv for the rest.
    by_contract = _sum_rows(pd.concat([_contract_flows(con), _capacity_payments(con, agents, events, months, chk)],
                                      ignore_index=True))
    by_event, verify = _event_flows(events)
    derived_kinds = set(CONTRACT_FLOWS) | set(EVENT_FLOWS)
    rest = flows[~flows["kind"].isin(derived_kinds)][KEY + ["amount"]]
    base = pd.concat([by_contract[KEY + ["amount"]], by_event[KEY + ["amount"]], rest], ignore_index=True)
    # Exiting labs' clouds recover claims pro rata from the cash the lab has after the month's other transfers.
    # (A lab that paid out all its cash keeps a rounding residue of either sign, about 1e-16 of the money that
    # went through it: the scale of a recovery is the larger of the claims and that money.)
    claims = _claims(con)
    recovery = _rows([], [], [], [], [])
    if not claims.empty:
        before = _Books(base, months)
        total = claims.groupby(["buyer", "step"])["claim"].transform("sum").to_numpy()
        cash, gross = before.lookup(claims["buyer"].to_numpy(dtype=object), claims["step"].to_numpy())
        share = np.where((total > 0) & (cash > 0), np.minimum(1.0, cash / np.where(total > 0, total, 1.0)), 0.0)
        recovery = _sum_rows(_rows(claims["step"], claims["buyer"], claims["seller"], "default_recovery",
                                   claims["claim"].to_numpy() * share, np.maximum(total, gross)))
    by_contract = _sum_rows(pd.concat([by_contract, recovery], ignore_index=True))
    _match(by_contract, flows[flows["kind"].isin(CONTRACT_FLOWS)], "contract_flow", chk)
    _match(by_event, flows[flows["kind"].isin(EVENT_FLOWS)], "event_flow", chk)
    verify_flows = flows[(flows["kind"] == "equity_for_compute")
                         | ((flows["kind"] == "endowment") & (flows["step"] > 0))]
    _match(verify, verify_flows, "event_flow", chk)
    _mega_deals(con, events, chk)
    _check_contracts(con, events, months, chk)
    ledger = pd.concat([base, recovery[KEY + ["amount"]]], ignore_index=True)
    books = _Books(ledger, months)

    # Every agent's cash in every month it has a row.
    cash, gross = books.lookup(agents["name"].to_numpy(dtype=object), agents["step"].to_numpy())
    found = agents["cash_usd"].to_numpy()
    chk.compare("cash", agents["name"].to_numpy(dtype=object), agents["step"].to_numpy(), cash, found,
                np.maximum(np.abs(found), gross))
    # Labs never pay more than their cash and clouds borrow any shortfall (docs/ODD.md, 3.4): neither goes
    # below zero by more than rounding.
    payers = agents["type"].isin(("lab", "cloud")).to_numpy()
    chk.compare("negative_cash", agents["name"].to_numpy(dtype=object)[payers], agents["step"].to_numpy()[payers],
                np.maximum(found[payers], 0.0), found[payers], gross[payers], "a lab or cloud below zero")
    _check_lifetimes(agents, ledger, chk)
    _check_exits(events, books, chk)
    _check_conservation(agents, books, months, chk)
    agent_names = set(agents["name"])
    result.externals = {n: float(books.cash[i, -1]) for i, n in enumerate(books.names) if n not in agent_names}
    result.discrepancies.sort(key=lambda x: (x.month, x.check, x.agent))
    return result


def _check_flow_rows(flows: pd.DataFrame, months: int, chk: _Checker) -> None:
    """Each row of flows.csv: a month of the run, a payer and a payee that differ, a finite positive amount,
    and one row per (month, payer, payee, kind)."""
    a = flows["amount"].to_numpy()
    bad = ~np.isfinite(a) | (a <= 0) | (flows["payer"] == "").to_numpy() | (flows["payee"] == "").to_numpy() \
        | (flows["payer"] == flows["payee"]).to_numpy() | (flows["step"] < 0).to_numpy() \
        | (flows["step"] >= months).to_numpy()
    bad |= flows.duplicated(KEY, keep="first").to_numpy()
    for r in flows[bad].itertuples():
        chk.fail("flow_row", f"{r.payer} -> {r.payee}", r.step, f"{r.kind}: bad or repeated flows.csv row",
                 found=r.amount)
    chk.ok("flow_row", int((~bad).sum()))


def _check_lifetimes(agents: pd.DataFrame, ledger: pd.DataFrame, chk: _Checker) -> None:
    """No transfer involves an agent before its first row in agents.csv or after its last (a lab that exited)."""
    life = agents.groupby("name")["step"].agg(["min", "max"])
    for side in ("payer", "payee"):
        sel = ledger[ledger[side].isin(life.index)]
        lo = life["min"].reindex(sel[side]).to_numpy()
        hi = life["max"].reindex(sel[side]).to_numpy()
        step = sel["step"].to_numpy()
        out = (step < lo) | (step > hi)
        for r in sel[out].itertuples():
            chk.fail("lifetime", getattr(r, side), r.step, f"{r.kind} flow outside the agent's rows in agents.csv",
                     found=r.amount)
        chk.ok("lifetime", int((~out).sum()))


def _check_exits(events: pd.DataFrame, books: _Books, chk: _Checker) -> None:
    """A lab that exits leaves with the cash its exit event reports; a lab that defaults exits that month."""
    exits = events[events["event"] == "exit"]
    cash, gross = books.lookup(exits["agent"].to_numpy(dtype=object), exits["step"].to_numpy())
    chk.compare("exit_cash", exits["agent"].to_numpy(dtype=object), exits["step"].to_numpy(), cash,
                exits["value_usd"].to_numpy(), np.maximum(np.abs(exits["value_usd"].to_numpy()), gross))
    left = set(zip(exits["agent"], exits["step"], strict=True))
    for ev in events[events["event"] == "default"].itertuples():
        if (ev.agent, ev.step) in left:
            chk.ok("default_exit")
        else:
            chk.fail("default_exit", ev.agent, ev.step, "a lab that defaulted did not exit that month")


def _check_conservation(agents: pd.DataFrame, books: _Books, months: int, chk: _Checker) -> None:
    """Net flows over all accounts are zero every month; the agents' reported cash (with the last balance of
    labs that have exited) equals the net of what the outside accounts paid in."""
    month_net = books.net.sum(axis=0)
    chk.compare("conservation", "all accounts", np.arange(months), np.zeros(months), month_net, books.month_gross,
                "net flows of the month")
    agent_names = set(agents["name"])
    external = np.array([n not in agent_names for n in books.names], dtype=bool)
    outside = -books.cash[external].sum(axis=0) if external.any() else np.zeros(months)
    last = agents.sort_values("step").groupby("name").tail(1)
    reported = np.bincount(agents["step"].to_numpy(), weights=agents["cash_usd"].to_numpy(), minlength=months)
    # Labs that exited keep their last balance in the ledger but have no more rows.
    gone = last[last["step"] < months - 1]
    held = np.zeros(months + 1)
    np.add.at(held, gone["step"].to_numpy() + 1, gone["cash_usd"].to_numpy())
    reported = reported + np.cumsum(held)[:months]
    total_gross = np.cumsum(books.month_gross)
    chk.compare("conservation", "agents", np.arange(months), outside, reported, np.maximum(total_gross, np.abs(reported)),
                "agents' cash against the outside accounts' net payments")


def main(argv: list[str] | None = None) -> int:
    """``python -m analysis.experiments.audit RUN_DIR [RUN_DIR ...]``: audit each; exit 1 if any fails."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m analysis.experiments.audit RUN_DIR [RUN_DIR ...]", file=sys.stderr)
        return 2
    status = 0
    for a in args:
        try:
            res = audit_run(a)
        except AuditError as exc:
            print(f"audit: error: {exc}", file=sys.stderr)
            return 2
        print(res.summary())
        for x in res.discrepancies[:10]:
            print(f"  {x}")
        status |= not res.passed
    return int(status)


if __name__ == "__main__":
    sys.exit(main())
