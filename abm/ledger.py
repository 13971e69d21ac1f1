"""Money and contracts as first-class records.

:class:`Ledger` holds every account's cash in one numpy array. Agents and the outside world (end users,
investors, lenders, and the sinks that money leaves to) are accounts; every dollar that moves is a transfer
with a payer and a payee, so the sum over all accounts stays at zero and conservation can be checked.

:class:`ContractBook` is the contract ledger as a struct of arrays: one row per contract with the fields
of a compute deal and a lifecycle (active, completed, defaulted, cancelled). Monthly volumes and payments are
computed over all contracts at once.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

# External accounts: sources (money enters the market) and sinks (money leaves it).
SOURCES = ("endowment", "end_users", "investors", "lenders", "parent_companies", "other_compute_buyers",
           "government")
SINKS = ("chip_production", "facility_construction", "energy", "opex", "interest", "rd_staff", "chip_design")


class Ledger:
    """Cash of every account in one array; transfers always have a payer and a payee."""

    def __init__(self):
        self.names: list[str] = []
        self.index: dict[str, int] = {}
        self.balance = np.zeros(64)
        self.flows: dict[str, float] = defaultdict(float)
        self.gross = 0.0
        for name in SOURCES + SINKS + ("investor_pool",):
            self.open(name)

    def open(self, name: str) -> int:
        """Open an account and return its index."""
        i = len(self.names)
        if name in self.index:
            name = f"{name}#{i}"
        self.names.append(name)
        self.index[name] = i
        if i >= self.balance.size:
            self.balance = np.concatenate([self.balance, np.zeros(self.balance.size)])
        return i

    def acct(self, who) -> int:
        """Account index of an agent (its ``account``) or of a named external account."""
        return who if isinstance(who, int | np.integer) else (
            self.index[who] if isinstance(who, str) else who.account)

    def transfer(self, payer, payee, amount: float, kind: str) -> None:
        """Move ``amount`` dollars from payer to payee and count it under ``kind``."""
        if amount == 0:
            return
        if not np.isfinite(amount) or amount < 0:
            raise ValueError(f"transfer of {amount!r} ({kind})")
        self.balance[self.acct(payer)] -= amount
        self.balance[self.acct(payee)] += amount
        self.flows[kind] += amount
        self.gross += amount

    def transfer_many(self, payers, payees, amounts, kind: str) -> None:
        """Vectorised transfers: arrays of payer and payee account indices and amounts."""
        amounts = np.asarray(amounts, dtype=float)
        if amounts.size == 0:
            return
        if not np.all(np.isfinite(amounts)) or np.any(amounts < 0):
            raise ValueError(f"bad transfer amounts ({kind})")
        np.subtract.at(self.balance, np.asarray(payers, dtype=int), amounts)
        np.add.at(self.balance, np.asarray(payees, dtype=int), amounts)
        tot = float(amounts.sum())
        self.flows[kind] += tot
        self.gross += tot

    def total(self) -> float:
        """Sum over all accounts: zero up to rounding when money is conserved."""
        return float(self.balance[: len(self.names)].sum())

    def of(self, name: str) -> float:
        """Balance of a named account."""
        return float(self.balance[self.index[name]])

    def reset_flows(self) -> None:
        """Start a new month's flow counters."""
        self.flows = defaultdict(float)


KINDS = ("reserved", "spot", "chip_order", "equity_for_compute")
STATUSES = ("active", "completed", "defaulted", "cancelled")
_FIELDS = {
    "buyer": int, "seller": int, "kind": int, "volume": float, "start": int, "end": int, "price": float,
    "take_or_pay": float, "prepayment": float, "equity_share": float, "investment": float, "status": int,
    "eff_factor": float, "ramp": int, "exclusive": bool, "signed": int, "closed": int,
}


class ContractBook:
    """All contracts as columns of numpy arrays, grown by doubling.

    ``version`` counts changes (additions and closings) so that quantities derived from the book, such as
    each lab's remaining obligations, can be cached until the book changes. The rows of active reserved and
    equity-for-compute contracts are kept as a cached index, so monthly scans do not touch the (many) spot
    and chip-order rows.
    """

    def __init__(self, capacity: int = 256):
        self.n = 0
        self.cols = {k: np.zeros(capacity, dtype=t) for k, t in _FIELDS.items()}
        self.cols["closed"][:] = -1
        self.version = 0
        self._active: np.ndarray | None = np.zeros(0, dtype=np.int64)
        self._active_cols: dict | None = None

    def __len__(self) -> int:
        return self.n

    def __getattr__(self, name):
        cols = self.__dict__.get("cols")
        if cols is not None and name in cols:
            return cols[name][: self.n]
        raise AttributeError(name)

    def _grow(self, m: int) -> None:
        size = self.cols["buyer"].size
        if self.n + m <= size:
            return
        while self.n + m > size:
            size *= 2
        for k, arr in self.cols.items():
            new = np.zeros(size, dtype=arr.dtype)
            if k == "closed":
                new[:] = -1
            new[: arr.size] = arr
            self.cols[k] = new

    def add(self, *, buyer: int, seller: int, kind: str, volume: float, start: int, end: int, price: float,
            signed: int, take_or_pay: float = 1.0, prepayment: float = 0.0, equity_share: float = 0.0,
            investment: float = 0.0, eff_factor: float = 1.0, ramp: int = 0, exclusive: bool = False,
            status: str = "active") -> int:
        """Append a contract and return its id (its row)."""
        self._grow(1)
        i = self.n
        row = dict(buyer=buyer, seller=seller, kind=KINDS.index(kind), volume=volume, start=start, end=end,
                   price=price, take_or_pay=take_or_pay, prepayment=prepayment, equity_share=equity_share,
                   investment=investment, status=STATUSES.index(status), eff_factor=eff_factor, ramp=ramp,
                   exclusive=exclusive, signed=signed)
        for k, v in row.items():
            self.cols[k][i] = v
        if status != "active":
            self.cols["closed"][i] = signed
        self.n += 1
        self._changed(row["kind"] in (0, 3) and status == "active")
        return i

    def add_many(self, **cols) -> np.ndarray:
        """Append many contracts at once (arrays of equal length; kind/status given as codes); their rows."""
        m = len(cols["buyer"])
        if m == 0:
            return np.zeros(0, dtype=np.int64)
        self._grow(m)
        sl = slice(self.n, self.n + m)
        for k in _FIELDS:
            if k in cols:
                self.cols[k][sl] = cols[k]
            elif k == "closed":
                self.cols[k][sl] = -1
            elif k == "take_or_pay":
                self.cols[k][sl] = 1.0
            else:
                self.cols[k][sl] = 0
        self.n += m
        kind, status = self.cols["kind"][sl], self.cols["status"][sl]
        self._changed(bool(np.any((status == 0) & ((kind == 0) | (kind == 3)))))
        return np.arange(sl.start, sl.stop)

    def _changed(self, capacity_rows: bool) -> None:
        self.version += 1
        if capacity_rows:
            self._active = None
            self._active_cols = None

    def _gather(self, rows, *names):
        """Columns at ``rows``; the active index's columns are kept gathered until the book changes."""
        if rows is None:
            return [self.cols[k][: self.n] for k in names]
        if rows is self._active:
            if self._active_cols is None:
                self._active_cols = {}
            got = self._active_cols
            for k in names:
                if k not in got:
                    got[k] = self.cols[k][rows]
            return [got[k] for k in names]
        return [self.cols[k][rows] for k in names]

    def volume_at(self, t: int, rows=None):
        """Nominal H100e each contract delivers in month ``t`` (ramps included; zero outside its term)."""
        start, end, vol, ramp = self._gather(rows, "start", "end", "volume", "ramp")
        on = (start <= t) & (t < end)
        frac = np.where(ramp > 0, np.minimum(1.0, (t - start + 1) / np.maximum(ramp, 1)), 1.0)
        return np.where(on, vol * frac, 0.0)

    def active_capacity_rows(self) -> np.ndarray:
        """Row indices of active reserved and equity-for-compute contracts (cached until the book changes)."""
        if self._active is None:
            kind = self.cols["kind"][: self.n]
            status = self.cols["status"][: self.n]
            self._active = np.flatnonzero((status == 0) & ((kind == 0) | (kind == 3)))
        return self._active

    def profile(self, row: int, horizon: int) -> np.ndarray:
        """Volume of one contract in each month 0..horizon-1."""
        t = np.arange(horizon)
        s, e = self.cols["start"][row], self.cols["end"][row]
        v, r = self.cols["volume"][row], self.cols["ramp"][row]
        frac = np.minimum(1.0, (t - s + 1) / r) if r > 0 else np.ones(horizon)
        return np.where((t >= s) & (t < e), v * frac, 0.0)

    def remaining_value(self, t: int, rows) -> np.ndarray:
        """Money still owed on each contract from month ``t`` on: price x volume over its remaining months.

        The sum over months m in [max(t, start), end) of volume * min(1, (m - start + 1) / ramp) (1 for a flat
        contract, ramp 0), in closed form: with k = m - start + 1 running over [k0, k1], the months still
        ramping form an arithmetic series. Take-or-pay shares are not applied here (see the callers).
        """
        s, e, r, vol, price = self._gather(rows, "start", "end", "ramp", "volume", "price")
        k0 = np.maximum(t, s) - s + 1
        k1 = e - s
        n = np.maximum(k1 - k0 + 1, 0)
        # Months still ramping: k in [k0, min(k1, ramp - 1)].
        n_ramp = np.where(r > 0, np.maximum(np.minimum(k1, r - 1) - k0 + 1, 0), 0)
        ramp_sum = n_ramp * (2 * k0 + n_ramp - 1) / 2.0 / np.maximum(r, 1)
        units = (n - n_ramp) + ramp_sum
        return vol * units * price

    def close(self, rows, status: str, t: int) -> None:
        """Set the status of contracts and the month they closed."""
        rows = np.asarray(rows, dtype=int)
        if rows.size:
            self.cols["status"][rows] = STATUSES.index(status)
            self.cols["closed"][rows] = t
            self._changed(True)
