"""Money and contracts as first-class records.

:class:`Ledger` holds every account's cash in one numpy array. Agents and the outside world (end users,
investors, lenders, and the sinks that money leaves to) are accounts; every dollar that moves is a transfer
with a payer and a payee, so the sum over all accounts stays at zero and conservation can be checked.

:class:`ContractBook` is the contract ledger as a struct of arrays: one row per contract with the fields
of a compute deal and a lifecycle (active, completed, defaulted, cancelled). Monthly volumes and payments are
computed over all contracts at once.

:class:`FlowLog`, when a ledger records one (:meth:`Ledger.record_flows`), keeps every transfer month by month
and sums them per month, payer, payee and kind: the rows of a run's ``flows.csv``, from which an audit can
rebuild every account's cash without the model.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

# External accounts: sources (money enters the market) and sinks (money leaves it).
SOURCES = ("endowment", "end_users", "investors", "lenders", "parent_companies", "other_compute_buyers",
           "government")
SINKS = ("chip_production", "facility_construction", "energy", "opex", "interest", "rd_staff", "chip_design")


class FlowLog:
    """Every transfer, marked by month, and summed per month, payer, payee and kind when read.

    Transfers are kept as they come: scalars as tuples in one list, a :meth:`Ledger.transfer_many` call as
    copies of its arrays. :meth:`close` only marks where a month ends, so recording costs an append per
    transfer or call and nothing per month; :meth:`month` and :meth:`summed` do the arithmetic when the log is
    read (for ``flows.csv``), and leave out transfers of zero. ``kinds`` names the kind codes the transfers are
    stored with.
    """

    def __init__(self):
        self.kinds: list[str] = []
        self._code: dict[str, int] = {}
        self._many: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]] = []
        self._one: list[tuple[int, int, float, int]] = []
        self.months: list[tuple[int, int, int]] = []  # (step, end of its calls in _many, end of its _one)

    def code(self, kind: str) -> int:
        """The code of a kind of flow (new kinds get the next code)."""
        c = self._code.get(kind)
        if c is None:
            c = self._code[kind] = len(self.kinds)
            self.kinds.append(kind)
        return c

    def add(self, payer: int, payee: int, amount: float, kind: str) -> None:
        """Record one transfer."""
        c = self._code.get(kind)
        self._one.append((payer, payee, float(amount), self.code(kind) if c is None else c))

    def add_many(self, payers: np.ndarray, payees: np.ndarray, amounts: np.ndarray, kind: str) -> None:
        """Record the transfers of one vectorised call (copies of its arrays; account indices as int32)."""
        self._many.append((np.array(payers, dtype=np.int32).ravel(), np.array(payees, dtype=np.int32).ravel(),
                           np.array(amounts, dtype=float).ravel(), self.code(kind)))

    def close(self, step: int) -> None:
        """The transfers recorded since the last close make month ``step``."""
        self.months.append((int(step), len(self._many), len(self._one)))

    def month(self, i: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Closed month ``i`` as ``(step, payer, payee, kind, amount)`` arrays, one entry per non-zero
        transfer: account indices, kind codes and amounts."""
        step, m1, o1 = self.months[i]
        m0, o0 = (self.months[i - 1][1], self.months[i - 1][2]) if i else (0, 0)
        many = self._many[m0:m1]
        one = np.array(self._one[o0:o1], dtype=float).reshape(-1, 4)  # (indices are exact as floats)
        payer = np.concatenate([m[0] for m in many] + [one[:, 0]]).astype(np.int64)
        payee = np.concatenate([m[1] for m in many] + [one[:, 1]]).astype(np.int64)
        amount = np.concatenate([m[2] for m in many] + [one[:, 2]])
        kind = np.concatenate([np.repeat(np.array([m[3] for m in many], dtype=np.int64), [m[0].size for m in many]),
                               one[:, 3].astype(np.int64)])
        keep = amount != 0
        if not keep.all():
            payer, payee, kind, amount = payer[keep], payee[keep], kind[keep], amount[keep]
        return step, payer, payee, kind, amount

    def summed(self, n_accounts: int):
        """Each closed month's transfers summed per (payer, payee, kind): yields ``(step, payer, payee, kind,
        amount)`` arrays, ordered by payer, payee and kind name (``n_accounts``: more than any account index)."""
        code = np.array(sorted(range(len(self.kinds)), key=self.kinds.__getitem__), dtype=np.int64)
        rank = np.empty(code.size, dtype=np.int64)
        rank[code] = np.arange(code.size)
        n_kinds = max(code.size, 1)
        for i in range(len(self.months)):
            step, payer, payee, kind, amount = self.month(i)
            key = (payer * n_accounts + payee) * n_kinds + rank[kind]
            uniq, inv = np.unique(key, return_inverse=True)
            total = np.bincount(inv.ravel(), weights=amount, minlength=uniq.size)
            pair, k = np.divmod(uniq, n_kinds)
            p, q = np.divmod(pair, n_accounts)
            yield step, p, q, code[k], total


class Ledger:
    """Cash of every account in one array; transfers always have a payer and a payee.

    With :meth:`record_flows` the ledger also keeps a :class:`FlowLog` of every transfer (``log``), closed
    month by month with :meth:`close_month`; without it (the default) ``log`` is None and costs nothing.
    """

    def __init__(self):
        self.names: list[str] = []
        self.index: dict[str, int] = {}
        self.balance = np.zeros(64)
        self.flows: dict[str, float] = defaultdict(float)
        self.gross = 0.0
        self.log: FlowLog | None = None
        for name in SOURCES + SINKS + ("investor_pool",):
            self.open(name)

    def record_flows(self) -> None:
        """Keep a log of every transfer from now on (see :class:`FlowLog`)."""
        if self.log is None:
            self.log = FlowLog()

    def close_month(self, step: int) -> None:
        """File the transfers since the last close as month ``step`` of the log (nothing without a log)."""
        if self.log is not None:
            self.log.close(step)

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
        i, j = self.acct(payer), self.acct(payee)
        self.balance[i] -= amount
        self.balance[j] += amount
        self.flows[kind] += amount
        self.gross += amount
        if self.log is not None:
            self.log.add(i, j, amount, kind)

    def transfer_many(self, payers, payees, amounts, kind: str) -> None:
        """Vectorised transfers: arrays of payer and payee account indices and amounts."""
        amounts = np.asarray(amounts, dtype=float)
        if amounts.size == 0:
            return
        if not np.all(np.isfinite(amounts)) or np.any(amounts < 0):
            raise ValueError(f"bad transfer amounts ({kind})")
        payers, payees = np.asarray(payers, dtype=int), np.asarray(payees, dtype=int)
        np.subtract.at(self.balance, payers, amounts)
        np.add.at(self.balance, payees, amounts)
        tot = float(amounts.sum())
        self.flows[kind] += tot
        self.gross += tot
        if self.log is not None:
            if payers.shape != amounts.shape or payees.shape != amounts.shape:
                payers, payees = np.broadcast_to(payers, amounts.shape), np.broadcast_to(payees, amounts.shape)
            self.log.add_many(payers, payees, amounts, kind)

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

    ``version`` counts changes (additions and closings) so that quantities derived from the book can be
    cached until the book changes. The rows of active reserved and equity-for-compute contracts (the
    capacity rows) are kept as an index in ascending order, so monthly scans do not touch the (many) spot
    and chip-order rows. The index grows by appending when such a contract is signed; ``epoch`` counts the
    other changes to it (closings). Within one epoch the index only grows at its end, so a per-lab sum over
    it can be extended with the new rows instead of recomputed (:meth:`abm.world.World.per_buyer`).
    """

    def __init__(self, capacity: int = 256):
        self.n = 0
        self.cols = {k: np.zeros(capacity, dtype=t) for k, t in _FIELDS.items()}
        self.cols["closed"][:] = -1
        self.version = 0
        self.epoch = 0
        self.last_kept: tuple[int, np.ndarray] | None = None  # (epoch before, rows of the index kept)
        self._active_buf = np.zeros(64, dtype=np.int64)  # the capacity rows, ascending, in [:_n_active]
        self._n_active = 0
        self._active: np.ndarray | None = self._active_buf[:0]
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
        self._changed(np.array([i]) if row["kind"] in (0, 3) and status == "active" else None)
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
        new = np.flatnonzero((status == 0) & ((kind == 0) | (kind == 3)))
        self._changed(new + sl.start if new.size else None)
        return np.arange(sl.start, sl.stop)

    def _changed(self, appended: np.ndarray | None) -> None:
        """Count a change; ``appended``: new capacity rows (all after every row of the index), or None."""
        self.version += 1
        if appended is not None:
            k, m = self._n_active, appended.size
            if k + m > self._active_buf.size:
                buf = np.zeros(max(2 * self._active_buf.size, k + m), dtype=np.int64)
                buf[:k] = self._active_buf[:k]
                self._active_buf = buf
            self._active_buf[k: k + m] = appended
            self._n_active = k + m
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
        out = np.where(on, vol, 0.0)
        ramped = np.flatnonzero(ramp > 0)  # few (equity-for-compute deals): the others deliver their volume
        if ramped.size:
            s, r = start[ramped], ramp[ramped]
            out[ramped] = np.where(on[ramped], vol[ramped] * np.minimum(1.0, (t - s + 1) / r), 0.0)
        return out

    def active_capacity_rows(self) -> np.ndarray:
        """Row indices of active reserved and equity-for-compute contracts (cached until the book changes)."""
        if self._active is None:
            self._active = self._active_buf[: self._n_active]
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
        units = np.maximum(e - np.maximum(t, s), 0).astype(float)  # months left (flat contracts)
        ramped = np.flatnonzero(r > 0)  # few (equity-for-compute deals)
        if ramped.size:
            s, e, r = s[ramped], e[ramped], r[ramped]
            k0 = np.maximum(t, s) - s + 1
            k1 = e - s
            n = np.maximum(k1 - k0 + 1, 0)
            # Months still ramping: k in [k0, min(k1, ramp - 1)].
            n_ramp = np.maximum(np.minimum(k1, r - 1) - k0 + 1, 0)
            ramp_sum = n_ramp * (2 * k0 + n_ramp - 1) / 2.0 / r
            units[ramped] = (n - n_ramp) + ramp_sum
        return vol * units * price

    def close(self, rows, status: str, t: int) -> None:
        """Set the status of contracts and the month they closed."""
        rows = np.asarray(rows, dtype=int)
        if rows.size:
            active = self.active_capacity_rows()
            closing = np.isin(active, rows)
            self.cols["status"][rows] = STATUSES.index(status)
            self.cols["closed"][rows] = t
            self.version += 1
            if closing.any():
                # What the last closing kept of the index as it was (for World.row_values).
                self.last_kept = (self.epoch, ~closing)
                kept = active[~closing]
                self._active_buf = np.concatenate([kept, np.zeros(max(64, kept.size), dtype=np.int64)])
                self._n_active = kept.size
                self._active = None
                self._active_cols = None
                self.epoch += 1
