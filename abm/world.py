"""The world state: everything the markets read and write, and the queries they share.

A :class:`World` holds the lab table (the numeric state of every lab, :class:`abm.labtable.LabTable`), the labs, clouds
and chip vendors, the contract book and the committed capacity of every cloud by month, the cash ledger, the
environment's exogenous paths (:class:`Environment`), the market prices and signals every agent sees, and
the running frontier records. The markets in :mod:`abm.markets` are functions of a world: they read it
through the queries below (alive labs, cash, obligations, holdings, coverage, runway, eligibility, capacity
still free) and change it through its writers (opening accounts, adding labs, signing and releasing
contracts, logging events and training runs). :class:`abm.model.ComputeMarket` is a world that is built
from a scenario and stepped month by month.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING

import mesa
import numpy as np

from . import economics as ec
from .labtable import LabTable
from .ledger import ContractBook, Ledger
from .logs import ColumnLog
from .scenario import Scenario
from .timeline import month_label

if TYPE_CHECKING:
    from .agents import ChipVendor, CloudProvider, Lab

LARGE_RUN_FLOP = 1e25  # runs at or above this many physical FLOP are counted (Epoch's large-scale models)
HEADROOM_MONTHS = 400  # months of committed capacity kept beyond the horizon (contracts signed near the end)


class Environment:
    """Model-level paths driven by the scenario: demand, foundry capacity, energy, capital, policy.

    Paths advance one month at a time with the growth rates in force that month, so that an event that
    changes a rate (``set demand.growth_annual``) bends the path from then on without a jump, and shocks
    (``demand_shock``, ``foundry_shock``, ``capital_shock``) act on levels.
    """

    def __init__(self, cfg: Scenario):
        self.cfg = cfg
        self.t = 0
        # Potential end-user demand; what is spent on AI is this times adoption (S3).
        self.adoption = cfg.demand.adoption_initial
        self.demand = cfg.demand.initial_usd_month / self.adoption
        self.iv_start: float | None = None
        self.foundry_base = cfg.chips.foundry_capacity_h100e_month
        self.inflow_base = cfg.capital.inflow_usd_month
        self.background = cfg.background.volume_h100e
        self.rd_half = cfg.efficiency.rd_half_usd
        self.eco_gap = 1.0 - cfg.chips.ecosystem_factor
        self.foundry_cut = 0.0
        self.foundry_cut_until = -1
        self.inflow_factor = 1.0
        self.inflow_factor_until = -1
        self.demand_hist = [self.demand]
        self.spend_hist: list[float] = []
        self.update(0, sentiment=1.0)

    @staticmethod
    def _rate(growth_annual: float, halflife_years: float | None, month: int) -> float:
        """Monthly log growth in ``month``: ln(g)/12, halving every half-life when one is given."""
        r = math.log(growth_annual) / 12.0
        return r * 2.0 ** (-month / 12.0 / halflife_years) if halflife_years else r

    def _advance(self) -> None:
        c, k = self.cfg, self.t
        self.demand *= math.exp(self._rate(c.demand.growth_annual, c.demand.growth_halflife_years, k))
        self.foundry_base *= math.exp(self._rate(c.chips.foundry_growth_annual,
                                                 c.chips.foundry_growth_halflife_years, k))
        self.inflow_base *= math.exp(self._rate(c.capital.inflow_growth_annual,
                                                c.capital.inflow_growth_halflife_years, k))
        self.background *= c.background.growth_annual ** (1 / 12)
        self.rd_half *= c.efficiency.rd_cost_growth_annual ** (1 / 12)
        self.eco_gap *= 0.5 ** (1 / c.chips.ecosystem_maturity_months)
        self.t += 1
        self.demand_hist.append(self.demand)

    def update(self, t: int, sentiment: float) -> None:
        """Advance the paths to month ``t`` and recompute this month's values."""
        while self.t < t:
            self._advance()
        c = self.cfg
        if self.foundry_cut_until >= 0 and t >= self.foundry_cut_until:
            self.foundry_cut = 0.0
        self.foundry_cut_now = self.foundry_cut
        if self.inflow_factor_until >= 0 and t >= self.inflow_factor_until:
            self.inflow_factor = 1.0
            self.inflow_factor_until = -1
        self.inflow = self.inflow_base * self.inflow_factor * sentiment
        self.energy_price = c.cloud_params.energy_price_usd_kwh
        self.ecosystem_factor = 1.0 - self.eco_gap

    @property
    def spend(self) -> float:
        """End-user spending on AI this month: potential demand times the latest adoption."""
        return self.demand * self.adoption

    def set_adoption(self, iv: float) -> None:
        """Adoption from the labs' inclusive value this month (S3); the first month with labs is the reference
        at which adoption equals ``demand.adoption_initial``."""
        d = self.cfg.demand
        if math.isfinite(iv):  # with no lab alive, adoption keeps its last value (what an entrant would meet)
            if self.iv_start is None:
                self.iv_start = iv
            self.adoption = ec.adoption(iv, self.iv_start, d.adoption_initial, d.adoption_nest_scale)
        self.spend_hist.append(self.spend)

    def demand_growth_12m(self) -> float:
        """Growth of end-user spending on AI over the last 12 months (the investors' benchmark for sector
        growth)."""
        h = self.spend_hist
        return h[-1] / h[-13] if len(h) > 12 and h[-13] > 0 else 1.0


class World(mesa.Model):
    """The shared state of the compute market and the queries and writers every market uses.

    ``cfg`` is a validated :class:`Scenario`; ``rng`` seeds Mesa's random streams. The world starts empty
    (no agents); :class:`abm.model.ComputeMarket` builds the agents into it. With ``record_flows`` the ledger
    keeps a log of every transfer, summed per month (:class:`abm.ledger.FlowLog`, the rows of ``flows.csv``).
    """

    def __init__(self, cfg: Scenario, rng=None, record_flows: bool = True):
        super().__init__(rng=rng)
        self.cfg = cfg
        self.t = 0
        self.refresh_constants()
        self.ledger = Ledger()
        if record_flows:
            self.ledger.record_flows()
        self.book = ContractBook()
        self.lab_table = LabTable()
        self.labs: list[Lab] = []
        self.clouds: list[CloudProvider] = []
        self.vendors: list[ChipVendor] = []
        # Committed capacity of each cloud (row = cloud index) by month, beyond the horizon too.
        self.committed = np.zeros((0, cfg.run.months + HEADROOM_MONTHS))
        self._network_key = None
        self._book_cache: dict = {}
        self._row_cache: dict = {}  # per-contract values of the month (row_values)
        self.labs_version = 0  # bumped whenever a lab enters or exits
        self._alive_key = -1
        self._alive: list = []
        self._alive_list_key = -1
        self.uid_cap = 1  # one more than the largest lab unique_id (length of per-uid arrays)
        self._cloud_pos_n = -1
        self._p0 = None
        self.entry_cache = None  # (key, terms) of the entry market this month (see markets.entry.entry_terms)
        self.probe_rng: np.random.Generator | None = None  # probe entrants' own stream (markets.entry.admit_probe)
        self._label_t = -1
        self.events_log = ColumnLog(("month", "step", "event", "agent", "detail", "value_usd"))
        self.env = Environment(cfg)
        # Prices and signals every agent sees.
        self.spot_price = cfg.background.reference_price_usd_hour * ec.HOURS_PER_MONTH
        self.spot_price_ewma = self.spot_price
        self.spot_ewma_hist: list[float] = []  # smoothed spot price after each month's clearing
        self.price_decline_expected = cfg.contracting.forward_price_decline  # see markets.spot.update_expectations
        self.reserved_price_month = float("nan")
        self.reserved_ref = self.spot_price * 0.8
        self.train_fraction_est = 0.6
        self.lgd_estimate = cfg.contracting.lgd  # clouds' loss given default, learned from defaults
        self.sentiment = 1.0
        # This month's counters and flows (reset at the start of each step).
        self.entries = 0
        self.exits = 0
        self.reserved_volume = 0.0
        self.reserved_value = 0.0
        self.reserved_by_group = {"small": np.zeros(2), "frontier": np.zeros(2)}  # effective volume, value
        self.capex_month = 0.0
        self.chip_spend_month = 0.0
        self.chip_units_month = 0.0
        # Histories and records.
        self.runs_log = ColumnLog(("step", "lab", "physical_flop", "effective_flop", "cost_usd", "capability"))
        self.large_runs = 0  # completed runs of at least LARGE_RUN_FLOP physical FLOP
        self._recent_runs: deque = deque()
        self.eff_front_hist: list[float] = []  # ln frontier efficiency (best among alive labs), monthly
        self.q_front_hist: list[float] = []
        self.sector_revenue_hist: list[float] = []
        self.shipments_hist: list[np.ndarray] = []
        self.rows: list[dict] = []
        self.agent_frames: list[tuple] = []
        # Set by the phases every month before they are read (see the markets).
        self.entry_barrier = float("nan")
        self.entry_barrier_parts = {"total": math.nan, "compute": math.nan, "runway": math.nan, "terms": math.nan}
        self.entry_barrier_now = float("nan")
        self.spot_volume_labs = 0.0
        self.spot_volume_background = 0.0
        self.inflow_month = 0.0
        self.cloud_revenue_month = 0.0

    # ------------------------------------------------------------------ constants, accounts, agents, events
    def refresh_constants(self) -> None:
        """Derived constants of the scaling law (recomputed when an event changes scaling.*)."""
        s = self.cfg.scaling
        self.gamma = self.cfg.gamma
        self.g_coef = ec.scaling_coefficient(s.A, s.B, s.alpha, s.beta)
        self.flop_per_unit = ec.flop_per_h100e_month(s.mfu)

    def endow(self, agent, amount: float) -> None:
        if amount > 0:
            self.ledger.transfer("endowment", agent, amount, "endowment")

    def add_lab(self, lab: Lab) -> None:
        assert lab.slot == len(self.labs)
        self.labs.append(lab)
        self.labs_version += 1
        self.uid_cap = max(self.uid_cap, lab.unique_id + 1)

    def random_order(self, items: np.ndarray, probe: np.ndarray) -> np.ndarray:
        """``items`` in a random order from the world's stream. Probe entrants (``probe`` True) are left out
        of that draw and put in at places drawn from their own stream, so that adding a probe does not
        change the random numbers the rest of the world draws."""
        if not probe.any():
            return items[self.rng.permutation(items.size)]
        world = items[~probe]
        order = list(world[self.rng.permutation(world.size)])
        for x in items[probe].tolist():
            order.insert(int(self.probe_rng.integers(len(order) + 1)), x)
        return np.array(order, dtype=items.dtype)

    def log_event(self, kind: str, who: str, detail: str = "", value: float = 0.0) -> None:
        """Append to the events ledger (events, entries, exits, defaults)."""
        self.log_events(kind, (who,), (detail,), (value,))

    def log_events(self, kind: str, who, details, values) -> None:
        """Append many events of one kind this month: sequences of agent names, details (or a
        :class:`abm.logs.Formatted` column) and values."""
        if self._label_t != self.t:
            self._label, self._label_t = month_label(self.cfg.run.start, self.t), self.t
        self.events_log.extend(month=self._label, step=self.t, event=kind, agent=list(who), detail=details,
                               value_usd=values)

    # ------------------------------------------------------------------ who may trade with whom
    def may_buy(self, cloud: CloudProvider, vendor: ChipVendor) -> bool:
        """Whether a cloud may buy from a vendor: captive vendors sell only to their owner. A cloud under export
        controls may buy from every vendor open to it, on the terms of the previous generation
        (ChipVendor.terms_for)."""
        if not vendor.alive:
            return False
        if vendor.kind == "captive":
            return vendor.owner is cloud
        return True

    def may_contract(self, lab: Lab, cloud: CloudProvider) -> bool:
        """Whether a lab may rent from a cloud: exclusivity, export controls and public-compute eligibility."""
        if lab.exclusive_with is not None and lab.exclusive_until > self.t and cloud.unique_id != lab.exclusive_with:
            return False
        if lab.restricted and not cloud.restricted:
            return False
        return not cloud.public or lab.capital_raised <= cloud.eligible_capital_max

    def reference_price(self) -> float:
        """Reference reserved price per H100e-month (mean of recent signed prices)."""
        return self.reserved_ref

    # ------------------------------------------------------------------ labs alive, and per-lab queries on the contract book
    def alive_slots(self) -> np.ndarray:
        """Rows in the lab table (= positions in ``self.labs``) of the labs alive now, in creation order."""
        if self._alive_key != self.labs_version:
            tab = self.lab_table
            self._alive_slots = np.flatnonzero(tab.cols["alive"][: tab.n])
            self._alive_key = self.labs_version
        return self._alive_slots

    def alive_labs(self) -> list[Lab]:
        """Labs alive now, in creation order (cached until a lab enters or exits)."""
        slots = self.alive_slots()
        if self._alive_list_key != self._alive_key:
            self._alive = [self.labs[i] for i in slots.tolist()]
            self._alive_list_key = self._alive_key
        return self._alive

    def month_slots(self) -> np.ndarray:
        """Lab-table rows of the labs active this month: alive, or exited this month (they still traded)."""
        C, n = self.lab_table.cols, self.lab_table.n
        return np.flatnonzero(C["alive"][:n] | (C["exit_t"][:n] == self.t))

    def by_buyer(self, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Sum ``values`` of contract ``rows`` per buyer, as an array indexed by the buyer's unique_id."""
        return np.bincount(self.book.cols["buyer"][rows], weights=values, minlength=self.uid_cap)

    def _cached(self, name: str, compute):
        """A per-lab array derived from the contract book, recomputed when the month or the book changes."""
        key = (self.t, self.book.version, self.uid_cap)
        hit = self._book_cache.get(name)
        if hit is None or hit[0] != key:
            hit = (key, compute())
            self._book_cache[name] = hit
        return hit[1]

    def row_values(self, name: str, rows: np.ndarray | None = None) -> np.ndarray:
        """A quantity of each active capacity contract this month (aligned with ``book.active_capacity_rows()``,
        or for ``rows``): ``volume`` (nominal H100e delivered this month, ContractBook.volume_at), ``owed``
        (money still owed from this month on, ContractBook.remaining_value), ``owed_next`` (from next month
        on) or ``cloud`` (the seller's place in ``clouds``, :meth:`seller_idx`). For the active contracts the values are kept for the month: a contract's values do not change
        within it, so only contracts signed since are computed, and a closing drops the closed ones."""
        book = self.book
        active = book.active_capacity_rows()
        t = self.t + (name == "owed_next")
        fn = {"volume": book.volume_at, "cloud": lambda _, r: self.seller_idx(r)}.get(name, book.remaining_value)
        if rows is not None and rows is not active:
            return fn(t, rows)
        hit = self._row_cache.get(name)
        if hit is not None and hit[0] == self.t:
            kept_rows, kept, epoch = hit[1], hit[2], hit[3]
            if kept_rows is active:
                return kept
            if epoch == book.epoch:  # contracts were only signed since: the kept rows come first
                vals = np.concatenate([kept, fn(t, active[kept_rows.size:])])
                self._row_cache[name] = (self.t, active, vals, epoch)
                return vals
            last = book.last_kept
            if last is not None and last[0] == epoch and book.epoch == epoch + 1 and kept_rows.size <= last[1].size:
                # One closing since, of rows of the index as it was then (the kept rows came first in it).
                keep = last[1][: kept_rows.size]
                vals = np.concatenate([kept[keep], fn(t, active[int(keep.sum()):])])
                self._row_cache[name] = (self.t, active, vals, book.epoch)
                return vals
            n_old = int(np.searchsorted(active, kept_rows[-1], side="right")) if kept_rows.size else 0
            pos = np.searchsorted(kept_rows, active[:n_old])
            if kept_rows.size and np.array_equal(kept_rows[np.minimum(pos, kept_rows.size - 1)], active[:n_old]):
                vals = np.concatenate([kept[pos], fn(t, active[n_old:])])
            else:
                vals = fn(t, active)
        else:
            vals = fn(t, active)
        self._row_cache[name] = (self.t, active, vals, book.epoch)
        return vals

    def per_buyer(self, name: str, values) -> np.ndarray:
        """Sum of ``values(rows)`` over the active capacity contracts per buyer, indexed by unique_id (for
        ``held``, (unique_id, cloud index) by seller), kept for the month.

        Contracts signed since the last call are added to the kept sums one by one, in row order, which
        gives the same floating-point sums as :meth:`by_buyer` over all rows (it adds in row order too);
        after a closing (a new ``book.epoch``) the sums are recomputed, from values kept for the month
        (:meth:`row_values`); new labs get zeros."""
        book = self.book
        rows = book.active_capacity_rows()
        hit = self._book_cache.get(name)
        key = (self.t, len(self.clouds), book.epoch)
        held = name == "held"
        if hit is not None and hit[0] == key:
            done, out = hit[1], hit[2]
            if done == rows.size and out.shape[0] == self.uid_cap:
                return out
            new = rows[done:]
            grown = np.zeros((self.uid_cap, *out.shape[1:]))
            grown[: out.shape[0]] = out
            out = grown
            if new.size:
                if held:
                    np.add.at(out, (book.cols["buyer"][new], self.seller_idx(new)), values(new))
                else:
                    np.add.at(out, book.cols["buyer"][new], values(new))
        elif held:  # (bincount adds in row order, as np.add.at would)
            nc = len(self.clouds)
            out = np.bincount(book.cols["buyer"][rows] * nc + self.row_values("cloud"), weights=values(rows),
                              minlength=self.uid_cap * nc).reshape(self.uid_cap, nc)
        else:
            out = self.by_buyer(rows, values(rows))
        self._book_cache[name] = (key, rows.size, out)
        return out

    def obligations_by_uid(self, after_this_month: bool = False) -> np.ndarray:
        """Money each lab is committed to pay under its active contracts, indexed by unique_id: the full
        remaining schedule (ramps included) at the contracts' prices and take-or-pay shares, from this month
        on, or from next month on with ``after_this_month`` (what is left once this month is settled)."""
        owed = "owed_next" if after_this_month else "owed"
        top = self.book.cols["take_or_pay"]
        return self.per_buyer("obligations_after" if after_this_month else "obligations",
                              lambda rows: self.row_values(owed, rows) * top[rows])

    def contracted_by_uid(self) -> np.ndarray:
        """Effective H100e each lab holds under contract this month, by unique_id (a contract in its last
        month still counts: its renewal is signed next month, when it has ended, so no month is bought twice)."""
        eff = self.book.cols["eff_factor"]
        return self.per_buyer("contracted", lambda rows: self.row_values("volume", rows) * eff[rows])

    def dues_by_uid(self) -> np.ndarray:
        """Money each lab must pay this month under its active contracts (take-or-pay), by unique_id."""
        b = self.book.cols
        return self.per_buyer("dues", lambda rows: self.row_values("volume", rows) * b["price"][rows]
                              * b["take_or_pay"][rows])

    def held_by_uid(self) -> np.ndarray:
        """Nominal H100e each lab holds this month at each cloud: array (unique_id, cloud index)."""
        return self.per_buyer("held", lambda rows: self.row_values("volume", rows))

    # ------------------------------------------------------------------ labs' finances
    def lab_rows(self, labs) -> np.ndarray:
        """Lab-table rows of a list of labs (or the rows themselves when given an array)."""
        if isinstance(labs, np.ndarray):
            return labs
        if labs is self._alive and self._alive_list_key == self._alive_key == self.labs_version:
            return self._alive_slots
        return np.array([lab.slot for lab in labs], dtype=np.int64)

    def lab_cash(self, labs) -> np.ndarray:
        """Cash of each lab (a list of labs or an array of lab-table rows), from the ledger."""
        return self.ledger.balance[self.lab_table.cols["acct"][self.lab_rows(labs)]]

    def lab_coverage(self, labs, extra=0.0) -> np.ndarray:
        """Lab.coverage for many labs at once: (cash + a year of income) / (obligations + ``extra``)."""
        C, slots = self.lab_table.cols, self.lab_rows(labs)
        cover = np.maximum(self.lab_cash(slots), 0.0) + 12 * (C["revenue_ewma"][slots] + C["other_funding"][slots])
        owed = self.obligations_by_uid()[C["uid"][slots]] + extra
        return np.where(owed > 0, cover / np.where(owed > 0, owed, 1.0), 1e6)

    def lab_burn(self, labs) -> np.ndarray:
        """Lab.net_burn for many labs at once: the larger of the planned spend and what the lab must pay
        anyway this month (contract dues plus its R&D share of the plan), less revenue and parent funding."""
        C, slots = self.lab_table.cols, self.lab_rows(labs)
        spend = C["spend_rate"][slots]
        committed = self.dues_by_uid()[C["uid"][slots]] + C["rd_share"][slots] * spend
        return np.maximum(spend, committed) - C["revenue_ewma"][slots] - C["other_funding"][slots]

    def lab_runway(self, labs) -> np.ndarray:
        """Lab.runway for many labs at once: months the cash lasts at the net burn (capped at 240)."""
        slots = self.lab_rows(labs)
        burn = self.lab_burn(slots)
        cash = np.maximum(self.lab_cash(slots), 0.0)
        return np.where(burn <= 0, 240.0, np.minimum(240.0, cash / np.where(burn > 0, burn, 1.0)))

    def lab_obligations(self, lab: Lab) -> float:
        """Money a lab still owes on its active contracts."""
        return float(self.obligations_by_uid()[lab.unique_id])

    def lab_compute_reserved(self, labs) -> np.ndarray:
        """Effective H100e each lab receives this month under reserved contracts (rationed if short)."""
        slots = self.lab_rows(labs)
        rows = self.book.active_capacity_rows()
        if rows.size == 0 or slots.size == 0:
            return np.zeros(slots.size)
        vol = self.row_values("volume") * self.delivery_ratio()[self.row_values("cloud")]
        per_uid = self.by_buyer(rows, vol * self.book.cols["eff_factor"][rows])
        return per_uid[self.lab_table.cols["uid"][slots]]

    # ------------------------------------------------------------------ clouds' capacity
    def seller_idx(self, rows) -> np.ndarray:
        """Cloud index (position in ``self.clouds``) of the seller of each contract row."""
        if self._cloud_pos_n != len(self.clouds):
            pos = np.full(max(c.unique_id for c in self.clouds) + 1, -1, dtype=np.int64)
            for c in self.clouds:
                pos[c.unique_id] = c.idx
            self._cloud_pos, self._cloud_pos_n = pos, len(self.clouds)
        return self._cloud_pos[self.book.cols["seller"][rows]]

    def delivery_ratio(self) -> np.ndarray:
        """Per cloud: share of committed volume it can deliver this month (1 unless short of capacity)."""
        com = self.committed[:, self.t]
        online = np.array([c.online for c in self.clouds])
        return np.where(com > online, online / np.maximum(com, 1e-12), 1.0)

    def eligible(self, labs) -> np.ndarray:
        """may_contract for every (lab, cloud) pair: a boolean array (labs, clouds)."""
        C, slots = self.lab_table.cols, self.lab_rows(labs)
        uid = np.array([c.unique_id for c in self.clouds])
        c_restricted = np.array([c.restricted for c in self.clouds])
        c_public = np.array([c.public for c in self.clouds])
        c_max = np.array([c.eligible_capital_max for c in self.clouds])
        excl = np.where((C["excl_with"][slots] >= 0) & (C["excl_until"][slots] > self.t), C["excl_with"][slots], -1)
        restricted = C["restricted"][slots]
        raised = C["capital_raised"][slots]
        ok = (excl[:, None] < 0) | (excl[:, None] == uid[None, :])
        ok &= ~restricted[:, None] | c_restricted[None, :]
        ok &= ~c_public[None, :] | (raised[:, None] <= c_max[None, :])
        return ok

    def free_capacity(self, start: int, months: int) -> np.ndarray:
        """Capacity each cloud has not yet committed in each month of [start, start + months): its capacity
        path (fleet within its life, chips waiting or in transit) less its commitments; array (clouds,
        months), cached per month and contract book."""
        return self._cached(f"free {start} {months} {len(self.clouds)}",
                            lambda: self.capacity_paths(start, months) - self.committed[:, start: start + months])

    def capacity_paths(self, start: int, months: int) -> np.ndarray:
        """Each cloud's capacity path over [start, start + months) (CloudProvider.capacity_path); array
        (clouds, months). Signing contracts does not change it, only the clouds' own phases do."""
        return np.array([c.capacity_path(start, months) for c in self.clouds]).reshape(len(self.clouds), months)

    def available(self, cloud: CloudProvider, start: int, term: int) -> float:
        """Capacity a cloud can still commit in every month of [start, start + term): the least free
        capacity over the term (capacity that retires before the term ends cannot be sold)."""
        free = self.free_capacity(start, term)[cloud.idx]
        return max(float(free.min()) if free.size else 0.0, 0.0)

    # ------------------------------------------------------------------ contracts: signing and releasing capacity
    def sign(self, lab: Lab, cloud: CloudProvider, kind: str, volume: float, start: int, term: int,
             price: float, *, ramp: int = 0, exclusive: bool = False, equity_share: float = 0.0,
             investment: float = 0.0, eff_factor: float | None = None) -> int:
        """Record a reserved or equity-for-compute contract and commit the cloud's capacity."""
        eff = cloud.effective_factor() if eff_factor is None else eff_factor
        row = self.book.add(buyer=lab.unique_id, seller=cloud.unique_id, kind=kind, volume=volume, start=start,
                            end=start + term, price=price, signed=self.t, ramp=ramp, exclusive=exclusive,
                            equity_share=equity_share, investment=investment, eff_factor=eff)
        horizon = self.committed.shape[1]
        self.committed[cloud.idx] += self.book.profile(row, horizon)
        if exclusive:
            lab.exclusive_with = cloud.unique_id
            lab.exclusive_until = start + term
        return row

    def sign_reserved(self, buyers: np.ndarray, cloud_idx: np.ndarray, volume: np.ndarray, term: np.ndarray,
                      price: np.ndarray, eff: np.ndarray) -> None:
        """Record many flat reserved contracts starting this month and commit the clouds' capacity."""
        if volume.size == 0:
            return
        t = self.t
        sellers = np.array([c.unique_id for c in self.clouds])[cloud_idx]
        self.book.add_many(buyer=buyers, seller=sellers, kind=np.zeros(volume.size, dtype=int), volume=volume,
                           start=np.full(volume.size, t), end=t + term, price=price, signed=np.full(volume.size, t),
                           eff_factor=eff)
        self.commit_capacity(cloud_idx, t, t + term, volume)

    def commit_capacity(self, cloud_idx: np.ndarray, start: np.ndarray | int, end: np.ndarray, volume: np.ndarray) -> None:
        """Add flat volumes over [start, end) to the clouds' committed capacity (a difference array)."""
        start = np.broadcast_to(np.asarray(start), volume.shape)
        lo, hi = int(start.min()), int(end.max())
        diff = np.zeros((len(self.clouds), hi - lo + 1))
        np.add.at(diff, (cloud_idx, start - lo), volume)
        np.add.at(diff, (cloud_idx, end - lo), -volume)
        self.committed[:, lo:hi] += np.cumsum(diff, axis=1)[:, : hi - lo]

    def release(self, rows, status: str) -> None:
        """Close contracts early (default or cancellation) and free the committed capacity after this month."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return
        horizon = self.committed.shape[1]
        t = self.t
        b = self.book.cols
        idx = self.seller_idx(rows)
        flat = (b["ramp"][rows] == 0) | (b["start"][rows] + b["ramp"][rows] <= t + 1)
        f = rows[flat & (b["end"][rows] > t + 1)]
        if f.size:
            self.commit_capacity(self.seller_idx(f), t + 1, b["end"][f], -b["volume"][f])
        for r, i in zip(rows[~flat], idx[~flat], strict=True):
            prof = self.book.profile(int(r), horizon)
            prof[: t + 1] = 0.0
            self.committed[i] -= prof
        self.book.close(rows, status, t)

    # ------------------------------------------------------------------ training runs and the frontier
    def record_run(self, lab: Lab, phys: float, eff: float, cost: float, q: float) -> None:
        """Log a completed training run with the capability it reached (and keep the record run)."""
        self.record_runs([lab], [phys], [eff], [cost], [q])

    def record_runs(self, labs, phys, eff, cost, q) -> None:
        """Log completed training runs, in order (a list of labs; physical and effective FLOP, costs and
        capabilities as lists or arrays): the runs log, the record run (the first run above the record with
        the most effective FLOP), the count of large runs and the largest runs of the last 12 months."""
        if not len(eff):
            return
        t = self.t
        self.runs_log.extend(step=t, lab=[lab.name for lab in labs], physical_flop=phys, effective_flop=eff,
                             cost_usd=cost, capability=q)
        phys, eff, cost = (np.asarray(v, dtype=float) for v in (phys, eff, cost))
        best = int(np.argmax(eff))  # the first of the largest
        if eff[best] > self.record_eff_flop:
            self.record_eff_flop = float(eff[best])
            self.record_run_now = (math.log(max(float(phys[best]), 1.0)), labs[best].log_eff)
            self.record_train_spend = float(cost[best]) / self.cfg.training.final_run_share
        self.large_runs += int(np.count_nonzero(phys >= LARGE_RUN_FLOP))
        # The largest run of the last 12 months, as a sliding-window maximum (earliest first among equals):
        # runs smaller than a later one leave the window (a run stays unless a later one is larger).
        recent = self._recent_runs
        later = np.append(np.maximum.accumulate(phys[::-1])[::-1][1:], -np.inf)  # the largest later run
        stay = np.flatnonzero(phys >= later)
        top = float(phys[stay[0]])
        while recent and recent[-1][1] < top:
            recent.pop()
        recent.extend((t, p, c) for p, c in zip(phys[stay].tolist(), cost[stay].tolist(), strict=True))

    def frontier_run_cost(self) -> float:
        """Cost of the largest run (physical FLOP) completed in the last 12 months; 0 if none."""
        recent = self._recent_runs
        while recent and self.t - recent[0][0] >= 12:
            recent.popleft()
        return recent[0][2] if recent else 0.0

    def latest(self, key: str):
        """This run's last value of a timeseries column (0 before the first month)."""
        return self.rows[-1][key] if self.rows else 0.0

    @property
    def p0(self) -> float:
        """Compute price per H100e-month at which a lab of efficiency 1 charges the reference price 1."""
        if self._p0 is None:  # fixed at the first month's reference reserved price
            self._p0 = self.reserved_ref
        return self._p0

    def start_frontier_records(self) -> None:
        """Frontier records at the start: best capability, best runs (physical and effective) and efficiency."""
        C, n = self.lab_table.cols, self.lab_table.n  # (the labs created so far: all of them)
        self.q_front_hist.append(float(C["capability"][:n].max()) if n else 0.0)
        # Records so far over all labs that ever lived (updated monthly by update_frontier_records).
        self.best_run_flop = float(C["best_run_flop"][:n].max()) if n else 1.0
        self.best_run_eff_flop = float(C["best_run_eff_flop"][:n].max()) if n else 1.0
        self.eff_front_hist.append(float(C["log_eff"][:n].max()) if n else 0.0)
        # The record run (highest effective FLOP so far): its ln physical FLOP and ln efficiency, one series
        # for both terms of efficiency_share_of_progress.
        best = self.labs[int(np.argmax(C["best_run_eff_flop"][:n]))] if n else None  # the first of the best
        self.record_run_now = (math.log(max(best.best_run_flop, 1.0)), best.log_eff) if best else (0.0, 0.0)
        self.record_eff_flop = best.best_run_eff_flop if best else 1.0
        self.record_hist: list[tuple[float, float]] = [self.record_run_now]
        self.record_train_spend = 0.0  # whole training spend behind the record run (0 until one is run)

    def update_frontier_records(self, month: np.ndarray) -> None:
        """Append this month's frontier capability and (ln best run, ln frontier efficiency); ``month``: the
        lab-table rows of the labs active this month (see month_slots)."""
        C = self.lab_table.cols
        alive = self.alive_slots()
        q_front = float(C["capability"][alive].max()) if alive.size else 0.0
        self.q_front_hist.append(q_front)
        if month.size:
            self.best_run_flop = max(self.best_run_flop, float(C["best_run_flop"][month].max()))
            self.best_run_eff_flop = max(self.best_run_eff_flop, float(C["best_run_eff_flop"][month].max()))
        log_e = float(C["log_eff"][alive].max()) if alive.size else 0.0
        self.eff_front_hist.append(log_e)
        self.record_hist.append(self.record_run_now)
