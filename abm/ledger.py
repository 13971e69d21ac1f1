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
SINKS = ("chip_production", "facility_construction", "energy", "opex", "interest", "rd_staff")


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
    """All contracts as columns of numpy arrays, grown by doubling."""

    def __init__(self, capacity: int = 256):
        self.n = 0
        self.cols = {k: np.zeros(capacity, dtype=t) for k, t in _FIELDS.items()}
        self.cols["closed"][:] = -1

    def __len__(self) -> int:
        return self.n

    def __getattr__(self, name):
        cols = self.__dict__.get("cols")
        if cols is not None and name in cols:
            return cols[name][: self.n]
        raise AttributeError(name)

    def add(self, *, buyer: int, seller: int, kind: str, volume: float, start: int, end: int, price: float,
            signed: int, take_or_pay: float = 1.0, prepayment: float = 0.0, equity_share: float = 0.0,
            investment: float = 0.0, eff_factor: float = 1.0, ramp: int = 0, exclusive: bool = False,
            status: str = "active") -> int:
        """Append a contract and return its id (its row)."""
        if self.n == self.cols["buyer"].size:
            for k, arr in self.cols.items():
                extra = np.zeros(arr.size, dtype=arr.dtype)
                if k == "closed":
                    extra[:] = -1
                self.cols[k] = np.concatenate([arr, extra])
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
        return i

    def add_many(self, **cols) -> None:
        """Append many contracts at once (arrays of equal length; kind/status given as codes)."""
        m = len(cols["buyer"])
        if m == 0:
            return
        while self.n + m > self.cols["buyer"].size:
            for k, arr in self.cols.items():
                extra = np.zeros(arr.size, dtype=arr.dtype)
                if k == "closed":
                    extra[:] = -1
                self.cols[k] = np.concatenate([arr, extra])
        for k in _FIELDS:
            if k in cols:
                self.cols[k][self.n: self.n + m] = cols[k]
            elif k == "closed":
                self.cols[k][self.n: self.n + m] = -1
            else:
                self.cols[k][self.n: self.n + m] = 0
        self.n += m

    def volume_at(self, t: int, rows=None):
        """Nominal H100e each contract delivers in month ``t`` (ramps included; zero outside its term)."""
        sl = slice(0, self.n) if rows is None else rows
        start = self.cols["start"][sl]
        end = self.cols["end"][sl]
        vol = self.cols["volume"][sl]
        ramp = self.cols["ramp"][sl]
        on = (start <= t) & (t < end)
        frac = np.where(ramp > 0, np.minimum(1.0, (t - start + 1) / np.maximum(ramp, 1)), 1.0)
        return np.where(on, vol * frac, 0.0)

    def active_capacity_rows(self):
        """Row indices of active reserved and equity-for-compute contracts."""
        kind = self.cols["kind"][: self.n]
        status = self.cols["status"][: self.n]
        return np.flatnonzero((status == 0) & ((kind == 0) | (kind == 3)))

    def profile(self, row: int, horizon: int) -> np.ndarray:
        """Volume of one contract in each month 0..horizon-1."""
        t = np.arange(horizon)
        s, e = self.cols["start"][row], self.cols["end"][row]
        v, r = self.cols["volume"][row], self.cols["ramp"][row]
        frac = np.minimum(1.0, (t - s + 1) / r) if r > 0 else np.ones(horizon)
        return np.where((t >= s) & (t < e), v * frac, 0.0)

    def remaining_value(self, t: int, rows) -> np.ndarray:
        """Money still owed on each contract from month ``t`` to its end (price x remaining volume)."""
        out = np.zeros(len(rows))
        for j, r in enumerate(rows):
            s, e = self.cols["start"][r], self.cols["end"][r]
            months = np.arange(max(t, s), e)
            if months.size == 0:
                continue
            v, rp = self.cols["volume"][r], self.cols["ramp"][r]
            frac = np.minimum(1.0, (months - s + 1) / rp) if rp > 0 else 1.0
            out[j] = float(np.sum(v * frac)) * self.cols["price"][r]
        return out

    def close(self, rows, status: str, t: int) -> None:
        """Set the status of contracts and the month they closed."""
        rows = np.asarray(rows, dtype=int)
        if rows.size:
            self.cols["status"][rows] = STATUSES.index(status)
            self.cols["closed"][rows] = t
