"""The numeric state of every lab as columns, held by the world and read by the labs' attributes."""

from __future__ import annotations

import numpy as np


class LabTable:
    """The numeric state of every lab ever created, as columns: row ``lab.slot`` belongs to ``lab``.

    Labs are agents and decide for themselves, but at 10,000 labs the monthly phases must read and write
    their state over arrays. Each column below is exposed on :class:`Lab` as an ordinary attribute (a
    descriptor reading and writing this table), so per-lab code and vectorized phases see the same state.
    Rows are in creation order, the order of ``model.labs``.
    """

    FLOATS = ("spend_rate", "spent_last", "rd_share", "revenue", "revenue_ewma", "other_funding", "compute",
              "compute_paid", "compute_train", "unit_price", "market_share", "run_flop", "run_hw_flop",
              "run_cost", "rd_spend", "desired", "log_eff", "capability", "capital_raised", "cloud_equity", "spot_bought",
              "spot_paid", "spot_eff", "best_run_flop", "best_run_eff_flop", "req_volume", "ask", "last_run_cost", "cap_train_spend",
              "investor_share")
    INTS = ("req_term", "run_start", "run_len", "birth", "exit_t", "excl_with", "excl_until", "rev_n", "uid", "acct")
    BOOLS = ("alive", "insolvent", "seeking", "restricted", "small", "probe", "rd_fixed")
    HIST = 13  # months of revenue kept (revenue growth over a year)

    def __init__(self, capacity: int = 64):
        self.n = 0
        self.cols: dict[str, np.ndarray] = {}
        for names, dtype in ((self.FLOATS, float), (self.INTS, np.int64), (self.BOOLS, bool)):
            for k in names:
                self.cols[k] = np.zeros(capacity, dtype=dtype)
        self.rev_hist = np.zeros((capacity, self.HIST))

    def new_row(self) -> int:
        """Append a row (grown by doubling) and return its index."""
        if self.n == self.rev_hist.shape[0]:
            for k, arr in self.cols.items():
                self.cols[k] = np.concatenate([arr, np.zeros_like(arr)])
            self.rev_hist = np.concatenate([self.rev_hist, np.zeros_like(self.rev_hist)])
        self.n += 1
        return self.n - 1

    def push_revenue(self, slots: np.ndarray, revenue: np.ndarray) -> None:
        """Append this month's revenue to each lab's history (the last 13 months are kept)."""
        n = self.cols["rev_n"][slots]
        self.rev_hist[slots, n % self.HIST] = revenue
        self.cols["rev_n"][slots] = n + 1

    def revenue_growth(self, slots: np.ndarray) -> np.ndarray:
        """Growth of revenue over the last 12 months (0 without history or revenue a year ago)."""
        n = self.cols["rev_n"][slots]
        last = self.rev_hist[slots, (n - 1) % self.HIST]
        first = self.rev_hist[slots, np.maximum(n - self.HIST, 0) % self.HIST]
        ok = (n >= 2) & (first > 0)
        return np.where(ok, last / np.where(ok, first, 1.0) - 1.0, 0.0)
