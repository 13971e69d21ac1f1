"""The compute-market model: one place that builds the world and wires the eleven monthly phases."""

from __future__ import annotations

import math
from collections import deque

import mesa
import networkx as nx
import numpy as np

from . import economics as ec
from .agents import ChipVendor, CloudProvider, Lab, LabTable
from .ledger import ContractBook, Ledger
from .metrics import collect_row
from .records import CONTRACT_FIELDS, contract_network, iter_agent_rows, iter_contract_rows, record_agents
from .scenario import Scenario, ScenarioError, load_scenario
from .timeline import month_index, month_label

HEADROOM_MONTHS = 400



def _trend(series, window: int) -> float:
    """Least-squares slope per month of the last ``window`` values (0 with fewer than 2), never negative."""
    y = np.asarray(series[-window:], dtype=float)
    if y.size < 2:
        return 0.0
    x = np.arange(y.size, dtype=float)
    return max(float(np.polyfit(x, y, 1)[0]), 0.0)


class Environment:
    """Model-level paths driven by the scenario: demand, foundry capacity, energy, capital, policy.

    Paths advance one month at a time with the growth rates in force that month, so that an event that
    changes a rate (``set demand.growth_annual``) bends the path from then on without a jump, and shocks
    (``demand_shock``, ``foundry_shock``, ``capital_shock``) act on levels.
    """

    def __init__(self, cfg: Scenario):
        self.cfg = cfg
        self.t = 0
        self.demand = cfg.demand.initial_usd_month
        self.foundry_base = cfg.chips.foundry_capacity_h100e_month
        self.inflow_base = cfg.capital.inflow_usd_month
        self.background = cfg.background.volume_h100e
        self.background_price = cfg.background.reference_price_usd_hour * ec.HOURS_PER_MONTH
        self.rd_half = cfg.efficiency.rd_half_usd
        self.eco_gap = 1.0 - cfg.chips.ecosystem_factor
        self.foundry_cut = 0.0
        self.foundry_cut_until = -1
        self.inflow_factor = 1.0
        self.inflow_factor_until = -1
        self.demand_hist = [self.demand]
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
        self.background_price *= (1 - c.background.price_decline_annual) ** (1 / 12)
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
        self.foundry_capacity = self.foundry_base * (1.0 - self.foundry_cut_now)
        if self.inflow_factor_until >= 0 and t >= self.inflow_factor_until:
            self.inflow_factor = 1.0
            self.inflow_factor_until = -1
        self.inflow = self.inflow_base * self.inflow_factor * sentiment
        self.energy_price = c.cloud_params.energy_price_usd_kwh
        self.ecosystem_factor = 1.0 - self.eco_gap

    def demand_growth_12m(self) -> float:
        """Growth of end-user demand over the last 12 months (the investors' benchmark for sector growth)."""
        h = self.demand_hist
        return h[-1] / h[-13] if len(h) > 12 else 1.0


def _match_in_order(buy: np.ndarray, sell: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Match buyers to sellers in order (the north-west corner rule): buyer i takes the next ``buy[i]`` units
    of the sellers' concatenated volumes. Returns (buyer index, seller index, quantity) per matched stretch;
    at most len(buy) + len(sell) - 1 stretches. Quantities beyond the smaller total are dropped."""
    a = np.cumsum(buy)
    b = np.cumsum(sell)
    total = min(a[-1], b[-1]) if a.size and b.size else 0.0
    cuts = np.union1d(a[a < total], b[b < total])
    edges = np.concatenate(([0.0], cuts, [total]))
    q = np.diff(edges)
    keep = q > 0
    mid = (edges[:-1] + edges[1:])[keep] / 2
    return (np.searchsorted(a, mid).astype(np.int64), np.searchsorted(b, mid).astype(np.int64), q[keep])


class ComputeMarket(mesa.Model):
    """Agent-based model of the AI compute market (labs, clouds, chip vendors) in monthly steps.

    Parameters: ``scenario`` (a name in ``scenarios/``, a path to a TOML file, or a :class:`Scenario`),
    ``overrides`` (``{"capital.kappa": 2.0}``), any scenario key as a keyword with ``__`` for dots
    (``capital__kappa=2.0``, so that ``mesa.batch_run`` can sweep it), and ``rng`` (the seed; defaults
    to the scenario's ``run.seed``).
    """

    def __init__(self, scenario: str | Scenario = "baseline", overrides: dict | None = None, rng=None,
                 **params):
        over = dict(overrides or {})
        over.update({k.replace("__", "."): v for k, v in params.items()})
        cfg = load_scenario(scenario, overrides=over or None) if not isinstance(scenario, Scenario) or over \
            else scenario
        if rng is None:
            rng = cfg.run.seed
        elif isinstance(rng, int | np.integer):
            cfg = load_scenario(cfg, overrides={"run.seed": int(rng)})
        super().__init__(rng=rng)
        self.cfg = cfg
        self.t = 0
        self.refresh_constants()
        self.ledger = Ledger()
        self.book = ContractBook()
        self.lab_table = LabTable()
        self._network_key = None
        self._book_cache: dict = {}
        self._labs_version = 0
        self._alive_key = -1
        self._uid_cap = 1
        self._cloud_pos_n = -1
        self._entry_key = None
        self._label_t = -1
        self.events_log: list[dict] = []
        self.env = Environment(cfg)
        self.spot_price = cfg.background.reference_price_usd_hour * ec.HOURS_PER_MONTH
        self.spot_price_ewma = self.spot_price
        self.reserved_price_month = float("nan")
        self.reserved_ref = self.spot_price * 0.8
        self.train_fraction_est = 0.6
        self.sentiment = 1.0
        self.entries = 0
        self.exits = 0
        self.capex_month = 0.0
        self.runs_log: list[dict] = []
        self._recent_runs: deque = deque()
        self.frontier_hist: list[tuple[float, float]] = []  # (ln best physical run, ln frontier efficiency)
        self.q_front_hist: list[float] = []
        self.sector_revenue_hist: list[float] = []
        self.shipments_hist: list[np.ndarray] = []
        self.chip_spend_month = 0.0
        self.chip_units_month = 0.0
        self.rows: list[dict] = []
        self.agent_frames: list[tuple] = []
        self._scheduled = self._parse_events()
        self._build_world()
        self.q_front_hist.append(max(lab.capability for lab in self.labs) if self.labs else 0.0)
        # Records so far over all labs that ever lived (updated monthly in phase_collect).
        self.best_run_flop = max((lab.best_run_flop for lab in self.labs), default=1.0)
        self.best_run_eff_flop = max((lab.best_run_eff_flop for lab in self.labs), default=1.0)
        self.frontier_hist.append((math.log(self.best_run_flop), max((lab.log_eff for lab in self.labs), default=0.0)))
        self.datacollector = mesa.DataCollector(model_reporters={
            "lab_hhi_compute": lambda m: m.latest("lab_hhi_compute"),
            "entry_barrier_usd": lambda m: m.latest("entry_barrier_usd"),
            "frontier_capability": lambda m: m.latest("frontier_capability"),
            "spot_price_usd_per_h100e_hour": lambda m: m.latest("spot_price_usd_per_h100e_hour"),
            "labs_active": lambda m: m.latest("labs_active"),
            "cloud_hhi_capacity": lambda m: m.latest("cloud_hhi_capacity"),
        })

    def refresh_constants(self) -> None:
        """Derived constants of the scaling law (recomputed when an event changes scaling.*)."""
        s = self.cfg.scaling
        self.gamma = self.cfg.gamma
        self.g_coef = ec.scaling_coefficient(s.A, s.B, s.alpha, s.beta)
        self.flop_per_unit = ec.flop_per_h100e_month(s.mfu)

    # ------------------------------------------------------------------ world
    def _build_world(self) -> None:
        cfg = self.cfg
        self.clouds: list[CloudProvider] = []
        self.vendors: list[ChipVendor] = []
        for i, spec in enumerate(cfg.clouds):
            c = CloudProvider(self, spec)
            c.idx = i
            self._endow(c, spec.cash_usd)
            if spec.debt_usd > 0:
                self.ledger.transfer("lenders", c, spec.debt_usd, "borrowing")
                c.debt = spec.debt_usd
            self.clouds.append(c)
        by_name = {c.name: c for c in self.clouds}
        for spec in cfg.vendors:
            v = ChipVendor(self, spec)
            self._endow(v, spec.cash_usd)
            if spec.kind == "captive":
                v.owner = by_name[spec.owner]
                v.owner.captive_vendor = v
            self.vendors.append(v)
        for v in self.vendors:
            buyers = [c for c in self.clouds if self.may_buy(c, v)]
            fleet = np.array([c.online if c.online else float(c.v_h100e.sum()) for c in buyers], dtype=float)
            if buyers and fleet.sum() > 0:
                book = v.capacity * cfg.chips.initial_backlog_months
                v.orders = {c.unique_id: float(book * f / fleet.sum()) for c, f in zip(buyers, fleet, strict=True)}
        self.committed = np.zeros((len(self.clouds), cfg.run.months + HEADROOM_MONTHS))
        for c in self.clouds:
            c.bring_online()
            c.set_prices()
        self.reserved_ref = float(np.mean([c.floor_price for c in self.clouds])) * 1.1
        self.labs: list[Lab] = []
        for spec in cfg.labs:
            lab = Lab(self, spec.name, spec.tier, efficiency=spec.efficiency, last_run_flop=spec.last_run_flop,
                      revenue=spec.revenue_usd_month, other_funding=spec.other_funding_usd_month,
                      rd_share=spec.rd_share)
            self._endow(lab, spec.cash_usd)
            lab.capital_raised = spec.capital_raised_usd
            self._add_lab(lab)
            for cs in spec.contracts:
                cloud = by_name[cs.cloud]
                price = cs.price_usd_hour * ec.HOURS_PER_MONTH
                self.sign(lab, cloud, "reserved", cs.h100e, 0, cs.months_left, price)
        g = cfg.generated_labs
        if g.n:
            cash = self.rng.lognormal(math.log(g.cash_median_usd), g.cash_sigma, g.n)
            effs = self.rng.uniform(g.efficiency_lo, g.efficiency_hi, g.n)
            flops = g.last_run_flop_median * self.rng.lognormal(0.0, 1.0, g.n)
            for k in range(g.n):
                tier = "mid" if cash[k] >= g.mid_threshold_usd else "small"
                lab = Lab(self, f"Lab-{k + 1:03d}", tier, efficiency=float(effs[k]), last_run_flop=float(flops[k]))
                self._endow(lab, float(cash[k]))
                lab.capital_raised = float(cash[k])
                self._add_lab(lab)
        for lab in self.labs:
            lab.start_spending()

    def _endow(self, agent, amount: float) -> None:
        if amount > 0:
            self.ledger.transfer("endowment", agent, amount, "endowment")

    def _add_lab(self, lab: Lab) -> None:
        assert lab.slot == len(self.labs)
        self.labs.append(lab)
        self._labs_version += 1
        self._uid_cap = max(self._uid_cap, lab.unique_id + 1)

    def _parse_events(self) -> dict[int, list]:
        out: dict[int, list] = {}
        for ev in self.cfg.events:
            t = month_index(self.cfg.run.start, ev.month)
            if t < 0:
                raise ScenarioError(f"events: month {ev.month} is before run.start {self.cfg.run.start}")
            out.setdefault(t, []).append(ev)
        return out

    # ------------------------------------------------------------------ helpers used by agents
    def log_event(self, kind: str, who: str, detail: str = "", value: float = 0.0) -> None:
        """Append to the events ledger (events, entries, exits, defaults)."""
        if self._label_t != self.t:
            self._label, self._label_t = month_label(self.cfg.run.start, self.t), self.t
        self.events_log.append({"month": self._label, "step": self.t, "event": kind,
                                "agent": who, "detail": detail, "value_usd": value})

    def may_buy(self, cloud: CloudProvider, vendor: ChipVendor) -> bool:
        """Whether a cloud may buy from a vendor: captive vendors sell only to their owner, and a cloud under
        export controls buys only merchant chips (of the previous generation, see ChipVendor.terms_for)."""
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

    def alive_slots(self) -> np.ndarray:
        """Rows in the lab table (= positions in ``self.labs``) of the labs alive now, in creation order."""
        if self._alive_key != self._labs_version:
            tab = self.lab_table
            self._alive_slots = np.flatnonzero(tab.cols["alive"][: tab.n])
            self._alive = [self.labs[i] for i in self._alive_slots.tolist()]
            self._alive_key = self._labs_version
        return self._alive_slots

    def alive_labs(self) -> list[Lab]:
        """Labs alive now, in creation order (cached until a lab enters or exits)."""
        self.alive_slots()
        return self._alive

    def _by_buyer(self, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Sum ``values`` of contract ``rows`` per buyer, as an array indexed by the buyer's unique_id."""
        return np.bincount(self.book.cols["buyer"][rows], weights=values, minlength=self._uid_cap)

    def _cached(self, name: str, compute):
        """A per-lab array derived from the contract book, recomputed when the month or the book changes."""
        key = (self.t, self.book.version, self._uid_cap)
        hit = self._book_cache.get(name)
        if hit is None or hit[0] != key:
            hit = (key, compute())
            self._book_cache[name] = hit
        return hit[1]

    def obligations_by_uid(self) -> np.ndarray:
        """Money each lab still owes on its active contracts, indexed by unique_id."""
        def compute():
            rows = self.book.active_capacity_rows()
            return self._by_buyer(rows, self.book.remaining_value(self.t, rows))
        return self._cached("obligations", compute)

    def contracted_next_by_uid(self) -> np.ndarray:
        """Effective H100e each lab holds under contract both this month and the next, by unique_id."""
        def compute():
            rows = self.book.active_capacity_rows()
            now = self.book.volume_at(self.t, rows)
            nxt = self.book.volume_at(self.t + 1, rows)
            return self._by_buyer(rows, np.minimum(now, nxt) * self.book.cols["eff_factor"][rows])
        return self._cached("contracted_next", compute)

    def held_by_uid(self) -> np.ndarray:
        """Nominal H100e each lab holds this month at each cloud: array (unique_id, cloud index)."""
        def compute():
            rows = self.book.active_capacity_rows()
            out = np.zeros((self._uid_cap, len(self.clouds)))
            np.add.at(out, (self.book.cols["buyer"][rows], self._seller_idx(rows)), self.book.volume_at(self.t, rows))
            return out
        return self._cached("held", compute)

    def _slots(self, labs) -> np.ndarray:
        """Lab-table rows of a list of labs (or the rows themselves when given an array)."""
        if isinstance(labs, np.ndarray):
            return labs
        return np.array([lab.slot for lab in labs], dtype=np.int64)

    def lab_cash(self, labs) -> np.ndarray:
        """Cash of each lab (a list of labs or an array of lab-table rows), from the ledger."""
        return self.ledger.balance[self.lab_table.cols["acct"][self._slots(labs)]]

    def lab_coverage(self, labs, extra=0.0) -> np.ndarray:
        """Lab.coverage for many labs at once: (cash + a year of income) / (obligations + ``extra``)."""
        C, slots = self.lab_table.cols, self._slots(labs)
        cover = np.maximum(self.lab_cash(slots), 0.0) + 12 * (C["revenue_ewma"][slots] + C["other_funding"][slots])
        owed = self.obligations_by_uid()[C["uid"][slots]] + extra
        return np.where(owed > 0, cover / np.where(owed > 0, owed, 1.0), 1e6)

    def lab_runway(self, labs) -> np.ndarray:
        """Lab.runway for many labs at once: months the cash lasts at the planned net burn (capped at 240)."""
        C, slots = self.lab_table.cols, self._slots(labs)
        burn = C["spend_rate"][slots] - C["revenue_ewma"][slots] - C["other_funding"][slots]
        cash = np.maximum(self.lab_cash(slots), 0.0)
        return np.where(burn <= 0, 240.0, np.minimum(240.0, cash / np.where(burn > 0, burn, 1.0)))

    def lab_obligations(self, lab: Lab) -> float:
        """Money a lab still owes on its active contracts."""
        return float(self.obligations_by_uid()[lab.unique_id])

    def record_run(self, lab: Lab, phys: float, eff: float, cost: float, q: float) -> None:
        """Log a completed training run with the capability it reached."""
        self.runs_log.append({"step": self.t, "lab": lab.name, "physical_flop": phys, "effective_flop": eff,
                              "cost_usd": cost, "capability": q})
        # The largest run of the last 12 months, as a sliding-window maximum (earliest first among equals).
        recent = self._recent_runs
        while recent and recent[-1][1] < phys:
            recent.pop()
        recent.append((self.t, phys, cost))

    def frontier_run_cost(self) -> float:
        """Cost of the largest run (physical FLOP) completed in the last 12 months; 0 if none."""
        recent = self._recent_runs
        while recent and self.t - recent[0][0] >= 12:
            recent.popleft()
        return recent[0][2] if recent else 0.0

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
        self._commit(cloud_idx, t, t + term, volume)

    def _commit(self, cloud_idx: np.ndarray, start: np.ndarray | int, end: np.ndarray, volume: np.ndarray) -> None:
        """Add flat volumes over [start, end) to the clouds' committed capacity (a difference array)."""
        start = np.broadcast_to(np.asarray(start), volume.shape)
        lo, hi = int(start.min()), int(end.max())
        diff = np.zeros((len(self.clouds), hi - lo + 1))
        np.add.at(diff, (cloud_idx, start - lo), volume)
        np.add.at(diff, (cloud_idx, end - lo), -volume)
        self.committed[:, lo:hi] += np.cumsum(diff, axis=1)[:, : hi - lo]

    def _release(self, rows, status: str) -> None:
        """Close contracts early (default or cancellation) and free the committed capacity after this month."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return
        horizon = self.committed.shape[1]
        t = self.t
        b = self.book.cols
        idx = self._seller_idx(rows)
        flat = (b["ramp"][rows] == 0) | (b["start"][rows] + b["ramp"][rows] <= t + 1)
        f = rows[flat & (b["end"][rows] > t + 1)]
        if f.size:
            self._commit(self._seller_idx(f), t + 1, b["end"][f], -b["volume"][f])
        for r, i in zip(rows[~flat], idx[~flat], strict=True):
            prof = self.book.profile(int(r), horizon)
            prof[: t + 1] = 0.0
            self.committed[i] -= prof
        self.book.close(rows, status, t)

    @property
    def network(self) -> nx.MultiDiGraph:
        """The contract network now (see records.contract_network), built when asked for."""
        key = (self.t, self.book.version, len(self.labs), len(self.clouds))
        if self._network_key != key:
            self._network, self._network_key = contract_network(self), key
        return self._network

    # ------------------------------------------------------------------ the monthly step
    def step(self) -> None:
        """One month: the eleven phases in a fixed order (docs/ODD.md)."""
        self.ledger.reset_flows()
        self.entries = self.exits = 0
        self.reserved_volume = 0.0
        self.reserved_value = 0.0
        self.reserved_price_month = float("nan")
        self.phase_events()           # 1
        self.phase_vendors()          # 2
        self.phase_clouds()           # 3
        self.phase_chip_market()      # 4
        self.phase_labs()             # 5
        self.phase_capital_market()   # 6
        self.phase_contracting()      # 7
        self.phase_spot_market()      # 8
        self.phase_settlement()       # 9
        self.phase_entry_exit()       # 10
        self.phase_collect()          # 11
        self.t += 1
        if self.t >= self.cfg.run.months:
            self.running = False

    # 1 ------------------------------------------------------------------
    def phase_events(self) -> None:
        """Apply the scenario's events due this month, then update the environment."""
        from .events import apply_event

        self.env.update(self.t, self.sentiment)
        due = self._scheduled.get(self.t, [])
        for ev in due:
            apply_event(self, ev)
        if due:
            self.env.update(self.t, self.sentiment)

    # 2 ------------------------------------------------------------------
    def phase_vendors(self) -> None:
        self.agents_by_type[ChipVendor].shuffle_do("update")

    # 3 ------------------------------------------------------------------
    def phase_clouds(self) -> None:
        clouds = self.agents_by_type[CloudProvider]
        clouds.shuffle_do("bring_online")
        clouds.do("set_prices")
        clouds.shuffle_do("plan_capacity")
        self.capex_month = sum(c.capex for c in self.clouds)

    # 4 ------------------------------------------------------------------
    def phase_chip_market(self) -> None:
        """Vendors allocate constrained supply to outstanding orders; clouds pay at allocation."""
        cfg = self.cfg.chips
        lag = cfg.delivery_lag_months
        cl = {c.unique_id: c for c in self.clouds}
        shipped = np.zeros(len(self.vendors))
        spend = 0.0
        for j, v in enumerate(self.vendors):
            ids = [k for k, q in v.orders.items() if q > 1e-9]
            if not ids:
                continue
            qty = np.array([v.orders[k] for k in ids])
            fill = ec.allocate_supply(v.output, qty, cfg.allocation_rule, order_rank=np.array(ids))
            rows = {k: []for k in ("buyer", "seller", "kind", "volume", "start", "end", "price", "signed", "status")}
            for k, q in zip(ids, fill, strict=True):
                if q <= 0:
                    continue
                cloud = cl[k]
                v.orders[k] -= q
                price, kw = v.terms_for(cloud)
                cost = price * q
                cloud.pay_or_borrow(v, cost, "chip_purchase")
                self.ledger.transfer(v, "chip_production", v.unit_cost * q, "chip_production")
                cloud.pending.append((self.t + lag, q, v.kind == "captive", kw, price))
                cloud.capex += cost
                spend += cost
                shipped[j] += q
                for key, val in (("buyer", cloud.unique_id), ("seller", v.unique_id), ("kind", 2), ("volume", q),
                                 ("start", self.t), ("end", self.t + lag), ("price", price),
                                 ("signed", self.t), ("status", 0)):
                    rows[key].append(val)
            self.book.add_many(**{k: np.asarray(x) for k, x in rows.items()})
            v.revenue_month = float(np.dot(rows["price"], rows["volume"])) if rows["price"] else 0.0
        self.shipments_hist.append(shipped)
        self.chip_spend_month = spend
        self.chip_units_month = float(shipped.sum())
        self.capex_month = sum(c.capex for c in self.clouds)
        # Chip orders complete on delivery.
        kinds = self.book.kind
        due = np.flatnonzero((kinds == 2) & (self.book.status == 0) & (self.book.end <= self.t))
        self.book.close(due, "completed", self.t)

    # 5 ------------------------------------------------------------------
    def phase_labs(self) -> None:
        Lab.plan_all(self, self.alive_labs())

    # 6 ------------------------------------------------------------------
    def phase_capital_market(self) -> None:
        """Investor inflow, allocation to fundraising labs by score^kappa, and equity-for-compute offers."""
        cap = self.cfg.capital
        led = self.ledger
        led.transfer("investors", "investor_pool", self.env.inflow, "investor_inflow")
        self.inflow_month = self.env.inflow
        C = self.lab_table.cols
        alive = self.alive_slots()
        seekers = alive[C["seeking"][alive]]
        if seekers.size:
            self.phase_equity_for_compute([self.labs[i] for i in seekers.tolist()])
            seekers = seekers[C["seeking"][seekers]]
        if seekers.size:
            labs = [self.labs[i] for i in seekers.tolist()]
            gap = C["capability"][alive].max() - C["capability"][seekers]
            growth = self.lab_table.revenue_growth(seekers)
            asks = C["ask"][seekers]
            scores = ec.investor_score(gap, growth, cap.score_scale)
            funds = max(led.of("investor_pool"), 0.0)
            grant = ec.allocate_capital(funds, scores, asks, cap.kappa, weight_by_ask=True)
            got = np.flatnonzero(grant > 0)
            s, amount = seekers[got], grant[got]
            led.transfer_many(np.full(got.size, led.index["investor_pool"]), C["acct"][s], amount, "equity_raise")
            pre = np.maximum(np.maximum(cap.revenue_multiple * 12 * C["revenue_ewma"][s], C["capital_raised"][s]), 1.0)
            share = amount / (pre + amount)
            C["capital_raised"][s] += amount
            Lab.start_spending_all(self, s)
            C["seeking"][s] = False
            for i, sh, a in zip(got.tolist(), share.tolist(), amount.tolist(), strict=True):
                lab = labs[i]
                lab.dilute("investors", sh)
                self.log_event("raise", lab.name, f"{sh:.3f} of equity", a)
        out = led.of("investor_pool") * cap.dry_powder_outflow
        if out > 0:
            led.transfer("investor_pool", "investors", out, "dry_powder_outflow")

    def phase_equity_for_compute(self, seekers: list[Lab]) -> None:
        """Clouds with cash invest in fundraising labs for committed spend on their capacity (S6)."""
        pol = self.cfg.policy
        if not pol.equity_for_compute_allowed:
            return
        clouds = [c for c in self.clouds if c.kind == "hyperscaler" and c.cash > pol.equity_deal_min_cash_usd
                  and self.t - c.last_equity_deal >= pol.equity_deal_interval_months]
        order = self.rng.permutation(len(clouds))
        for i in order:
            cloud = clouds[int(i)]
            ok = self._eligible(seekers)[:, cloud.idx]
            cands = [lab for lab, k in zip(seekers, ok.tolist(), strict=True)
                     if k and lab.seeking and lab.unique_id not in cloud.equity_stakes]
            if not cands:
                continue
            pd = ec.default_probability(self.lab_coverage(cands), self.cfg.contracting.risk_k)
            value = self.lab_table.cols["desired"][self._slots(cands)] * (1 - pd)
            lab = cands[int(np.argmax(value))]
            invest = min(pol.equity_deal_share_of_cash * cloud.cash, lab.ask)
            if invest <= 0:
                continue
            term = max(self.cfg.contracting.terms_months)
            price = self.quote_price(lab, cloud, term, pol.equity_commit_multiple * invest)
            if not np.isfinite(price):
                continue
            volume = pol.equity_commit_multiple * invest / (price * term)
            cap = self.cfg.policy.max_lab_share_of_cloud * max(cloud.online, 1.0)
            volume = min(volume, cap)
            pre = max(self.cfg.capital.revenue_multiple * 12 * lab.revenue_ewma, lab.capital_raised, 1.0)
            share = invest / (pre + invest)
            lab.dilute(cloud.name, share)
            cloud.equity_stakes[lab.unique_id] = share
            cloud.equity_invested += invest
            cloud.last_equity_deal = self.t
            self.ledger.transfer(cloud, lab, invest, "equity_for_compute")
            lab.capital_raised += invest
            self.sign(lab, cloud, "equity_for_compute", volume, self.t, term, price, ramp=6,
                      exclusive=pol.exclusivity_allowed, equity_share=share, investment=invest)
            self.log_event("equity_for_compute", lab.name, f"{cloud.name} takes {share:.3f}", invest)
            lab.ask = max(lab.ask - invest, 0.0)
            lab.start_spending()
            lab.seeking = lab.ask > 0

    # 7 ------------------------------------------------------------------
    def cloud_terms(self, lab: Lab, clouds, term: int, extra_value: float):
        """Cloud reservation prices and lab outside option for a request (vectorised over clouds)."""
        ct = self.cfg.contracting
        floors = np.array([c.floor_price for c in clouds])
        util = np.array([self.committed[c.idx, self.t] / c.online if c.online > 0 else 1.0 for c in clouds])
        spot_path = ec.expected_price_path(self.spot_price_ewma, term, ct.forward_price_decline)
        sell_prob = np.clip(util, 0.3, 1.0)
        pdef = float(ec.default_probability(lab.coverage(extra_value), ct.risk_k))
        cloud_min = (1 + pdef * ct.lgd) * np.maximum(floors * (1 - ct.forward_price_decline) ** (term / 24),
                                                     spot_path * sell_prob)
        lab_alt = spot_path * (1 + ct.spot_risk_premium)
        r_lab = float(ec.lab_discount_rate(ct.lab_base_rate_annual, lab.runway(), ct.lab_impatience))
        r_cloud = np.array([c.cost_of_capital / 12 for c in clouds])
        beta = ec.rubinstein_weight(r_lab, r_cloud)
        return cloud_min, lab_alt, beta

    def quote_price(self, lab: Lab, cloud: CloudProvider, term: int, value: float = 0.0) -> float:
        """The bargained price a lab would get from one cloud for a deal worth ``value``; outside option spot."""
        cmin, alt, beta = self.cloud_terms(lab, [cloud], term, value)
        return float(ec.nash_price(alt, cmin, beta)[0])

    def available(self, cloud: CloudProvider, start: int, term: int) -> float:
        """Capacity a cloud can still commit over [start, start+term): online less the peak committed."""
        w = self.committed[cloud.idx, start: start + term]
        return max(cloud.online - (float(w.max()) if w.size else 0.0), 0.0)

    def _eligible(self, labs) -> np.ndarray:
        """may_contract for every (lab, cloud) pair: a boolean array (labs, clouds)."""
        C, slots = self.lab_table.cols, self._slots(labs)
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

    def _available_by_term(self, terms: np.ndarray) -> np.ndarray:
        """Capacity each cloud can still commit over [t, t + term) for each term: array (terms, clouds)."""
        online = np.array([c.online for c in self.clouds])
        win = self.committed[:, self.t: self.t + int(terms.max())]
        peak = np.maximum.accumulate(win, axis=1)[:, terms - 1].T
        return np.maximum(online[None, :] - peak, 0.0)

    def phase_contracting(self) -> None:
        """Requests for quotes, Nash bargaining with outside options, signed reserved contracts (S6).

        Requests are served in a random priority order, all at once over arrays: in each round every
        unserved request goes to the eligible cloud with the lowest reservation price per effective H100e
        that can still fill a minimum deal, and a cloud's capacity goes to its requests in priority order
        (the last one served in part). The price is the Nash bargain between the cloud's reservation price
        and the lab's outside option (the next-best cloud or the spot market). Requests that found a cloud
        full try the next one in the following round; what no cloud can serve is recorded as unmet demand.
        """
        C = self.lab_table.cols
        reqs = self.alive_slots()
        reqs = reqs[C["req_volume"][reqs] > 0]
        if reqs.size == 0:
            return
        ct, pol = self.cfg.contracting, self.cfg.policy
        reqs = reqs[self.rng.permutation(reqs.size)]
        clouds = self.clouds
        vol = C["req_volume"][reqs]
        term = C["req_term"][reqs]
        uid = C["uid"][reqs]
        ok = self._eligible(reqs)
        n_ok = ok.sum(axis=1)
        has = n_ok > 0
        eff = np.array([c.effective_factor() for c in clouds])
        online = np.array([c.online for c in clouds])
        public = np.array([c.public for c in clouds])
        floors = np.array([c.floor_price for c in clouds])
        cap = pol.max_lab_share_of_cloud * online[None, :] - self.held_by_uid()[uid]
        want = vol[:, None] / eff[None, :]
        # Reservation prices (the cloud's) and outside options (the lab's), as in cloud_terms.
        pdef = ec.default_probability(self.lab_coverage(reqs, vol * self.reserved_ref * term), ct.risk_k)
        terms, t_idx = np.unique(term, return_inverse=True)
        spot_path = np.array([ec.expected_price_path(self.spot_price_ewma, int(k), ct.forward_price_decline)
                              for k in terms])[t_idx]
        util = np.where(online > 0, self.committed[:, self.t] / np.where(online > 0, online, 1.0), 1.0)
        sell_prob = np.clip(util, 0.3, 1.0)
        cloud_min = (1 + pdef * ct.lgd)[:, None] * np.maximum(
            floors[None, :] * ((1 - ct.forward_price_decline) ** (term / 24))[:, None],
            spot_path[:, None] * sell_prob[None, :])
        lab_alt = spot_path * (1 + ct.spot_risk_premium)
        r_lab = ec.lab_discount_rate(ct.lab_base_rate_annual, self.lab_runway(reqs), ct.lab_impatience)
        r_cloud = np.array([c.cost_of_capital / 12 for c in clouds])
        beta = ec.rubinstein_weight(r_lab[:, None], r_cloud[None, :])
        per_eff = cloud_min / eff[None, :]
        done = ~has
        unmet = np.zeros(len(clouds))
        rows_r = np.arange(len(reqs))
        for _ in range(len(clouds) + 1):
            avail = self._available_by_term(terms)[t_idx]
            qty = np.minimum(np.minimum(avail, cap), want)
            cand = ok & (qty >= ct.min_deal_h100e) & ~done[:, None]
            live = np.flatnonzero(cand.any(axis=1))
            if live.size == 0:
                break
            pe = np.where(cand[live], per_eff[live], np.inf)
            b = np.argmin(pe, axis=1)
            pe[np.arange(live.size), b] = np.inf
            second = pe.min(axis=1)
            # Each cloud's capacity goes to its requests in priority order: what earlier requests took first.
            q_want = qty[live, b]
            ob = np.lexsort((live, b))
            qs = q_want[ob]
            cs = np.cumsum(qs)
            first = np.r_[True, b[ob][1:] != b[ob][:-1]]
            before = np.empty_like(cs)
            before[ob] = cs - qs - np.maximum.accumulate(np.where(first, cs - qs, 0.0))
            room = np.maximum(avail[live, b] - before, 0.0)
            q = np.minimum(q_want, room)
            served = q >= ct.min_deal_h100e
            lab_max = np.where(np.isfinite(second), np.minimum(lab_alt[live], second * eff[b]), lab_alt[live])
            price = np.where(public[b], floors[b], ec.nash_price(lab_max, cloud_min[live, b], beta[live, b]))
            bad = served & ~np.isfinite(price)
            good = served & np.isfinite(price)
            i_bad = live[bad]
            unmet += (ok[i_bad] / n_ok[i_bad, None] * vol[i_bad, None]).sum(axis=0)
            i, bi, qi, pi = live[good], b[good], q[good], price[good]
            self.sign_reserved(uid[i], bi, qi, term[i], pi, eff[bi])
            self.reserved_volume += float(qi.sum())
            self.reserved_value += float(qi @ pi)
            short = vol[i] - qi * eff[bi]
            s_ = short > ct.min_deal_h100e
            unmet += (ok[i[s_]] / n_ok[i[s_], None] * short[s_, None]).sum(axis=0)
            done[live[served]] = True
        left = rows_r[~done]
        unmet += (ok[left] / np.maximum(n_ok[left], 1)[:, None] * vol[left, None]).sum(axis=0)
        for c, u in zip(clouds, unmet, strict=True):
            c.unmet_month += float(u)
        if self.reserved_volume > 0:
            p = self.reserved_value / self.reserved_volume
            self.reserved_price_month = p
            self.reserved_ref = 0.7 * self.reserved_ref + 0.3 * p

    def phase_spot_market(self) -> None:
        """Uniform-price clearing of residual lab demand and background demand against idle capacity (S7).

        Who sold to whom: at the uniform price it does not matter to anyone's money, so lab purchases (in a
        random order, then the background demand) are matched to the clouds' sales in order, each buyer
        taking the next stretch of the clouds' filled volume. A lab gets the effective compute of the
        clouds that served it.
        """
        bg = self.cfg.background
        C = self.lab_table.cols
        labs = self.alive_slots()
        for k in ("spot_bought", "spot_paid", "spot_eff"):
            C[k][labs] = 0.0
        labs = labs[~C["restricted"][labs]]
        contracted_now = self.lab_compute_reserved(labs)
        need = np.maximum(C["desired"][labs] - contracted_now, 0.0)
        bid_p = np.full(labs.size, self.spot_price_ewma * (1 + self.cfg.contracting.spot_risk_premium))
        budget = np.maximum(self.lab_cash(labs), 0.0) * 0.5
        need = np.minimum(need, budget / np.maximum(bid_p, 1e-9))
        # Background demand as a step curve V(p) = V0 (p/p_ref)^-elasticity.
        p_ref = self.env.background_price
        levels = p_ref * np.array([4.0, 2.5, 1.6, 1.25, 1.0, 0.8, 0.6, 0.45, 0.3, 0.2])
        cum = self.env.background * (levels / p_ref) ** (-bg.elasticity)
        steps = np.diff(np.concatenate(([0.0], cum)))
        bid_price = np.concatenate((bid_p, levels))
        bid_qty = np.concatenate((need, steps))
        online = np.array([c.online for c in self.clouds])
        com = self.committed[:, self.t]
        public = np.array([c.public for c in self.clouds])
        idle = np.where(public, 0.0, np.maximum(online - com, 0.0))
        opc = np.array([c.operating_cost() for c in self.clouds])
        floor = np.array([c.floor_price for c in self.clouds])
        util = np.where(online > 0, np.minimum(com / np.where(online > 0, online, 1.0), 1.0), 1.0)
        ask = opc + (floor - opc).clip(min=0) * util
        price, volume, bfill, afill = ec.clear_spot_market(bid_price, bid_qty, ask, idle)
        for c, q in zip(self.clouds, afill, strict=True):
            c.spot_sold = float(q)
            c.spot_ewma = 0.8 * c.spot_ewma + 0.2 * float(q)
        if volume > 0:
            self.spot_price = price
            n = labs.size
            buying = np.flatnonzero(bfill[:n] > 0)
            buying = buying[self.rng.permutation(buying.size)]
            bg_q = float(bfill[n:].sum())
            amounts = np.append(bfill[buying], bg_q)
            buyer, cloud, q = _match_in_order(amounts, afill)
            accounts = np.append(C["acct"][labs[buying]], self.ledger.index["other_compute_buyers"])
            cloud_acct = np.array([c.account for c in self.clouds])
            eff = np.array([c.effective_factor() for c in self.clouds])
            is_lab = buyer < buying.size
            self.ledger.transfer_many(accounts[buyer[is_lab]], cloud_acct[cloud[is_lab]], q[is_lab] * price, "spot")
            self.ledger.transfer_many(accounts[buyer[~is_lab]], cloud_acct[cloud[~is_lab]], q[~is_lab] * price,
                                      "spot_background")
            got = np.bincount(buyer[is_lab], weights=q[is_lab], minlength=buying.size)
            got_eff = np.bincount(buyer[is_lab], weights=q[is_lab] * eff[cloud[is_lab]], minlength=buying.size)
            C["spot_bought"][labs[buying]] = got
            C["spot_paid"][labs[buying]] = got * price
            C["spot_eff"][labs[buying]] = got_eff
            m = int(is_lab.sum())
            uids = C["uid"][labs[buying]]
            c_uid = np.array([c.unique_id for c in self.clouds])
            self.book.add_many(buyer=uids[buyer[is_lab]], seller=c_uid[cloud[is_lab]], kind=np.ones(m, dtype=int),
                               volume=q[is_lab], start=np.full(m, self.t), end=np.full(m, self.t + 1),
                               price=np.full(m, price), signed=np.full(m, self.t), status=np.ones(m, dtype=int),
                               closed=np.full(m, self.t), eff_factor=eff[cloud[is_lab]])
            self.spot_volume = volume
        else:
            self.spot_volume = 0.0
        self.spot_price_ewma = 0.8 * self.spot_price_ewma + 0.2 * self.spot_price

    def lab_compute_reserved(self, labs) -> np.ndarray:
        """Effective H100e each lab receives this month under reserved contracts (rationed if short)."""
        slots = self._slots(labs)
        rows = self.book.active_capacity_rows()
        if rows.size == 0 or slots.size == 0:
            return np.zeros(slots.size)
        vol = self.book.volume_at(self.t, rows) * self._delivery_ratio()[self._seller_idx(rows)]
        per_uid = self._by_buyer(rows, vol * self.book.cols["eff_factor"][rows])
        return per_uid[self.lab_table.cols["uid"][slots]]

    def _seller_idx(self, rows) -> np.ndarray:
        """Cloud index (position in ``self.clouds``) of the seller of each contract row."""
        if self._cloud_pos_n != len(self.clouds):
            pos = np.full(max(c.unique_id for c in self.clouds) + 1, -1, dtype=np.int64)
            for c in self.clouds:
                pos[c.unique_id] = c.idx
            self._cloud_pos, self._cloud_pos_n = pos, len(self.clouds)
        return self._cloud_pos[self.book.cols["seller"][rows]]

    def _delivery_ratio(self) -> np.ndarray:
        """Per cloud: share of committed volume it can deliver this month (1 unless short of capacity)."""
        com = self.committed[:, self.t]
        online = np.array([c.online for c in self.clouds])
        return np.where(com > online, online / np.maximum(com, 1e-12), 1.0)

    # 9 ------------------------------------------------------------------
    def phase_settlement(self) -> None:
        """Serve and train, product-market revenue, contract payments, R&D, cloud costs, defaults."""
        cfg = self.cfg
        led = self.ledger
        labs = self.alive_labs()
        t = self.t
        rows = self.book.active_capacity_rows()
        # Contracts that have run their course complete.
        done = rows[self.book.cols["end"][rows] <= t]
        self.book.close(done, "completed", t)
        rows = rows[self.book.cols["end"][rows] > t]
        ratio = self._delivery_ratio()
        if rows.size:
            vol = self.book.volume_at(t, rows) * ratio[self._seller_idx(rows)]
        else:
            vol = np.zeros(0)
        self.delivered_by_cloud = np.zeros(len(self.clouds))
        if rows.size:
            np.add.at(self.delivered_by_cloud, self._seller_idx(rows), vol)
        for c, d in zip(self.clouds, self.delivered_by_cloud, strict=True):
            c.delivered = float(d) + c.spot_sold
        pay = vol * self.book.cols["price"][rows] * self.book.cols["take_or_pay"][rows]
        C = self.lab_table.cols
        slots = self.alive_slots()
        uid = C["uid"][slots]
        n = len(labs)
        k_res = self._by_buyer(rows, vol * self.book.cols["eff_factor"][rows])[uid]
        owed = self._by_buyer(rows, pay)[uid]
        k_spot = np.where(C["spot_bought"][slots] > 0, C["spot_eff"][slots], 0.0)
        spot_paid = C["spot_paid"][slots]
        k = k_res + k_spot
        unit = np.where(k > 0, (owed + spot_paid) / np.maximum(k, 1e-12), self.reserved_ref)
        # Product market (S3): logit over capability and price with an outside option.
        d = cfg.demand
        q = C["capability"][slots]
        e = np.exp(C["log_eff"][slots]) if d.markup and cfg.efficiency.inference_gain else np.ones(n)
        p0 = self._p0
        price = d.markup * unit / (p0 * d.markup) / e
        q_front = q.max() if n else 0.0
        shares, outside = ec.logit_shares(q - q_front, np.log(np.maximum(price, 1e-12)), d.theta, d.eta,
                                          d.outside_utility)
        potential = self.env.demand * shares
        need = potential / (d.markup * np.maximum(unit, 1e-9))
        inf = np.minimum(k, need)
        rev = np.where(need > 0, potential * inf / np.maximum(need, 1e-12), 0.0)
        train = k - inf
        tot_k = k.sum()
        if tot_k > 0:
            self.train_fraction_est = 0.9 * self.train_fraction_est + 0.1 * float(train.sum() / tot_k)
        self.demand_served = float(rev.sum())
        accounts = C["acct"][slots]
        led.transfer_many(np.full(n, led.index["end_users"]), accounts, rev, "lab_revenue")
        led.transfer_many(np.full(n, led.index["parent_companies"]), accounts, C["other_funding"][slots],
                          "parent_funding")
        # Payments: contract obligations first, R&D with what is left.
        frs = cfg.training.final_run_share
        paid = owed + spot_paid
        C["revenue"][slots] = rev
        C["revenue_ewma"][slots] = 0.7 * C["revenue_ewma"][slots] + 0.3 * rev
        C["compute"][slots] = k
        C["compute_paid"][slots] = paid
        C["compute_train"][slots] = train
        C["unit_price"][slots] = unit
        C["potential_revenue"][slots] = potential
        C["market_share"][slots] = shares
        C["run_flop"][slots] += frs * train * self.flop_per_unit
        C["run_cost"][slots] += frs * train * unit
        self.lab_table.push_revenue(slots, rev)
        self._pay_contracts(labs, rows, pay)
        cash = np.maximum(led.balance[accounts], 0.0)
        solvent = C["alive"][slots] & ~C["insolvent"][slots]
        rd = np.where(solvent, np.minimum(C["rd_share"][slots] * C["spend_rate"][slots], cash), 0.0)
        led.transfer_many(accounts, np.full(n, led.index["rd_staff"]), rd, "rd_spend")
        C["rd_spend"][slots] = rd
        C["spent_last"][slots] = np.where(solvent, rd + paid, C["spent_last"][slots])
        # Efficiency and training runs.
        grow = slots[~C["insolvent"][slots]]
        if grow.size:
            ef = cfg.efficiency
            log_eff = C["log_eff"][grow]
            log_front = log_eff.max()
            log_eff = log_eff + ec.efficiency_growth(C["rd_spend"][grow], self.env.rd_half, ef.g_max)
            C["log_eff"][grow] = log_eff + ec.efficiency_diffusion(log_eff, log_front, ef.diffusion)
            due = grow[(t - C["run_start"][grow] + 1 >= cfg.training.run_months) & (C["run_flop"][grow] > 0)]
            Lab.finish_runs(self, due)
        # Cloud revenue and costs.
        for c in self.clouds:
            c.revenue = 0.0
        self.cloud_revenue_month = led.flows.get("reserved_payment", 0.0) + led.flows.get("spot", 0.0) + \
            led.flows.get("spot_background", 0.0)
        self.agents_by_type[CloudProvider].do("settle_costs")

    def _pay_contracts(self, labs, rows, pay) -> None:
        """Labs pay this month's contract obligations; one that cannot pays pro rata and defaults."""
        if rows.size == 0:
            return
        led = self.ledger
        buyers = self.book.cols["buyer"][rows]
        total = np.bincount(buyers, weights=pay, minlength=self._uid_cap)
        cash = np.zeros(self._uid_cap)
        slots = self._slots(labs)
        uid = self.lab_table.cols["uid"][slots]
        cash[uid] = self.lab_cash(slots)
        frac = np.where(cash >= total, 1.0, np.maximum(cash, 0.0) / np.where(total > 0, total, 1.0))
        mine = np.zeros(self._uid_cap, dtype=bool)
        mine[uid] = True
        sel = mine[buyers] & (pay > 0)
        amounts = pay[sel] * frac[buyers[sel]]
        acct = np.zeros(self._uid_cap, dtype=np.int64)
        acct[uid] = self.lab_table.cols["acct"][slots]
        cloud_acct = np.array([c.account for c in self.clouds])
        led.transfer_many(acct[buyers[sel]], cloud_acct[self._seller_idx(rows[sel])], amounts, "reserved_payment")
        short = uid[(frac[uid] < 1.0) & (total[uid] > 0)]
        if short.size:
            by_uid = {lab.unique_id: lab for lab in labs}
            got = np.bincount(buyers[sel], weights=amounts, minlength=self._uid_cap)
            for u in short.tolist():
                lab = by_uid[u]
                lab.insolvent = True
                self.log_event("default", lab.name, "could not pay reserved contracts", float(total[u] - got[u]))

    # 10 -----------------------------------------------------------------
    def phase_entry_exit(self) -> None:
        """Insolvent labs exit (contracts default, know-how diffuses); entrants arrive and test entry (S9)."""
        tr = self.cfg.training
        C = self.lab_table.cols
        s = self.alive_slots()
        idle = (C["compute"][s] <= 0) & (C["revenue"][s] <= 0) & (C["other_funding"][s] <= 0)
        broke = idle & (self.lab_cash(s) < tr.wind_down_cash_usd) & (self.obligations_by_uid()[C["uid"][s]] <= 0)
        out = np.flatnonzero(C["insolvent"][s] | broke)
        self._exit_many([(self.labs[i], "default" if C["insolvent"][i] else "wind_down") for i in s[out].tolist()])
        self.entry_barrier = self.compute_entry_barrier()
        self._entrants()

    def _exit_many(self, leaving: list[tuple[Lab, str]]) -> None:
        """Labs exit in the given order: take-or-pay claims on their contracts' remaining value are paid pro
        rata from the cash left, the contracts default and free the clouds' capacity, clouds write off their
        stakes, and each exit's know-how diffuses to the labs still alive that are behind it."""
        if not leaving:
            return
        before = self.alive_slots()
        uid = np.array([lab.unique_id for lab, _ in leaving], dtype=np.int64)
        rows = self.book.active_capacity_rows()
        rows = rows[np.isin(self.book.cols["buyer"][rows], uid)]
        if rows.size:
            buyers = self.book.cols["buyer"][rows]
            claims = self.book.remaining_value(self.t + 1, rows) * self.book.cols["take_or_pay"][rows]
            total = np.bincount(buyers, weights=claims, minlength=self._uid_cap)
            cash = np.zeros(self._uid_cap)
            cash[uid] = self.ledger.balance[[lab.account for lab, _ in leaving]]
            share = np.where((total > 0) & (cash > 0), np.minimum(1.0, cash / np.where(total > 0, total, 1.0)), 0.0)
            pay = share[buyers] > 0
            acct = np.zeros(self._uid_cap, dtype=np.int64)
            acct[uid] = [lab.account for lab, _ in leaving]
            cloud_acct = np.array([c.account for c in self.clouds])
            self.ledger.transfer_many(acct[buyers[pay]], cloud_acct[self._seller_idx(rows[pay])],
                                      claims[pay] * share[buyers[pay]], "default_recovery")
            self._release(rows, "defaulted")
        for lab, _ in leaving:
            lab.alive = False
            lab.exit_month = self.t
            lab.exit_t = self.t
            self.exits += 1
            for c in self.clouds:
                c.equity_stakes.pop(lab.unique_id, None)
        self._labs_version += 1
        # Know-how diffuses, exit by exit, to the labs still alive that are behind the one leaving.
        ed = self.cfg.efficiency.exit_diffusion
        log_eff = self.lab_table.cols["log_eff"][before]
        changed = np.zeros(before.size, dtype=bool)
        alive_now = np.ones(before.size, dtype=bool)
        for lab, _ in leaving:
            j = int(np.searchsorted(before, lab.slot))
            alive_now[j] = False
            behind = alive_now & (log_eff < log_eff[j])
            if behind.any():
                log_eff[behind] += ed * (log_eff[j] - log_eff[behind]) / max(int(alive_now.sum()), 1)
                changed |= behind
        self.lab_table.cols["log_eff"][before[changed]] = log_eff[changed]
        for lab, why in leaving:
            self.log_event("exit", lab.name, why, lab.cash)

    def projected_frontier(self, horizon: int) -> float:
        """Frontier capability extrapolated ``horizon`` months along its least-squares trend (last 36 months)."""
        alive = self.alive_slots()
        q_now = float(self.lab_table.cols["capability"][alive].max()) if alive.size else 0.0
        return q_now + _trend(self.q_front_hist, 36) * horizon

    def _entry_terms(self) -> dict:
        """What an entrant faces this month, the same for every entrant (cached per month and lab set)."""
        key = (self.t, self._labs_version)
        if self._entry_key == key:
            return self._entry_ctx
        ct, en = self.cfg.contracting, self.cfg.entry
        term = min(ct.terms_months)
        market = [c for c in self.clouds if not c.public and not c.restricted]
        r_lab = float(ec.lab_discount_rate(ct.lab_base_rate_annual, self.cfg.capital.target_runway_months,
                                           ct.lab_impatience))
        alive = self.alive_slots()
        log_front = float(self.lab_table.cols["log_eff"][alive].max()) if alive.size else 0.0
        ctx = {
            "floor": float(np.median([c.floor_price for c in market])) * (1 - ct.forward_price_decline) ** (term / 24),
            "spot_path": ec.expected_price_path(self.spot_price_ewma, term, ct.forward_price_decline),
            "beta": float(ec.rubinstein_weight(r_lab, float(np.median([c.cost_of_capital for c in market])) / 12)),
            # A public provider with spare capacity rents to the entrants it would take at its floor.
            "public": [(c.floor_price, c.eligible_capital_max) for c in self.clouds
                       if c.public and self.available(c, self.t, term) > 0],
            "target": self.projected_frontier(en.planning_horizon_months) - en.viable_gap,
            "eff_front_then": math.exp(log_front) * math.exp(self._frontier_eff_slope() * en.planning_horizon_months),
        }
        self._entry_ctx, self._entry_key = ctx, key
        return ctx

    def entrant_price(self, cash, obligation):
        """Price per H100e-month an entrant with ``cash`` would bargain for a deal worth ``obligation``.

        Median cloud terms; the entrant's default risk comes from its coverage cash / obligation and its
        patience from a full target runway; its outside option is the expected spot price. Works
        elementwise on arrays.
        """
        ct = self.cfg.contracting
        x = self._entry_terms()
        cash = np.asarray(cash, dtype=float)
        pdef = ec.default_probability(cash / np.maximum(obligation, 1.0), ct.risk_k)
        cmin = (1 + pdef * ct.lgd) * max(x["floor"], x["spot_path"] * 0.3)
        alt = x["spot_path"] * (1 + ct.spot_risk_premium)
        p = ec.nash_price(alt, cmin, x["beta"])
        p = np.where(np.isfinite(p), p, np.maximum(cmin, alt))
        for floor, max_capital in x["public"]:
            p = np.where(cash <= max_capital, np.minimum(p, floor), p)
        return float(p) if p.ndim == 0 else p

    def compute_entry_barrier(self, efficiency_fraction=None, cash=None):
        """Capital a representative entrant needs to reach a viable capability in its horizon (S9).

        With arrays of efficiency fractions and cash, the capital each such entrant needs."""
        en = self.cfg.entry
        frac = efficiency_fraction if efficiency_fraction is not None else \
            0.5 * (en.efficiency_fraction_lo + en.efficiency_fraction_hi)
        cash = en.seed_capital_median_usd if cash is None else cash
        x = self._entry_terms()
        eff_then = x["eff_front_then"] * np.asarray(frac, dtype=float)
        compute_share = 1 - self.cfg.efficiency.rd_share_init
        frs = self.cfg.training.final_run_share
        # Two passes: the price depends on the entrant's coverage of the compute bill it implies.
        need = 0.0
        for _ in range(2):
            price = self.entrant_price(cash, need * compute_share)
            need = ec.capital_to_reach(x["target"], eff_then, self.g_coef, self.gamma, self.flop_per_unit, price,
                                       compute_share) / frs
        return need

    def _frontier_eff_slope(self) -> float:
        return _trend([h[1] for h in self.frontier_hist], 36)

    def _entrants(self) -> None:
        en = self.cfg.entry
        n = int(self.rng.poisson(en.rate_per_month * self.sentiment))
        if n == 0:
            return
        seeds = np.empty(n)
        fracs = np.empty(n)
        for k in range(n):
            seeds[k] = self.rng.lognormal(math.log(en.seed_capital_median_usd), en.seed_capital_sigma)
            fracs[k] = self.rng.uniform(en.efficiency_fraction_lo, en.efficiency_fraction_hi)
        need = np.asarray(self.compute_entry_barrier(fracs, seeds))
        go = np.flatnonzero(need <= seeds * en.reach_multiple)
        if go.size == 0:
            return
        alive = self.alive_slots()
        C = self.lab_table.cols
        log_front = float(C["log_eff"][alive].max()) if alive.size else 0.0
        q_front = float(C["capability"][alive].max()) if alive.size else 0.0
        # Starts from an open model well behind the frontier.
        eff_flop = float(ec.effective_flop_for_capability(q_front - 2 * en.viable_gap, self.g_coef, self.gamma))
        for k in go.tolist():
            seed, frac = float(seeds[k]), float(fracs[k])
            if self.ledger.of("investor_pool") < seed:
                continue
            eff = math.exp(log_front) * frac
            lab = Lab(self, f"Entrant-{self.t:03d}-{len(self.labs):04d}", "small", efficiency=eff,
                      last_run_flop=eff_flop / eff)
            self.ledger.transfer("investor_pool", lab, seed, "seed_round")
            lab.capital_raised = seed
            lab.dilute("investors", 1.0)
            self._add_lab(lab)
            lab.start_spending()
            self.entries += 1
            self.log_event("entry", lab.name, f"efficiency {frac:.2f} of frontier", seed)

    # 11 -----------------------------------------------------------------
    def month_slots(self) -> np.ndarray:
        """Lab-table rows of the labs active this month: alive, or exited this month (they still traded)."""
        C, n = self.lab_table.cols, self.lab_table.n
        return np.flatnonzero(C["alive"][:n] | (C["exit_t"][:n] == self.t))

    def phase_collect(self) -> None:
        C = self.lab_table.cols
        alive = self.alive_slots()
        month = self.month_slots()
        q_front = float(C["capability"][alive].max()) if alive.size else 0.0
        self.q_front_hist.append(q_front)
        if month.size:
            self.best_run_flop = max(self.best_run_flop, float(C["best_run_flop"][month].max()))
            self.best_run_eff_flop = max(self.best_run_eff_flop, float(C["best_run_eff_flop"][month].max()))
        log_e = float(C["log_eff"][alive].max()) if alive.size else 0.0
        self.frontier_hist.append((math.log(self.best_run_flop), log_e))
        rev = float(C["revenue"][month].sum())
        self.sector_revenue_hist.append(rev)
        if len(self.sector_revenue_hist) > 12 and self.sector_revenue_hist[-13] > 0:
            g = rev / self.sector_revenue_hist[-13]
            expected = self.env.demand_growth_12m()
            self.sentiment = float(np.clip((g / expected) ** self.cfg.capital.sentiment_elasticity, 0.25, 4.0))
        for c in self.clouds:
            c.unmet_ewma = 0.7 * c.unmet_ewma + 0.3 * c.unmet_month
            c.unmet_month = 0.0
        row = collect_row(self, month)
        self.rows.append(row)
        record_agents(self, month)
        self.datacollector.collect(self)

    def latest(self, key: str):
        return self.rows[-1][key] if self.rows else 0.0

    @property
    def _p0(self) -> float:
        """Compute price per H100e-month at which a lab of efficiency 1 charges the reference price 1."""
        if not hasattr(self, "_p0_value"):
            self._p0_value = self.reserved_ref
        return self._p0_value

    def iter_agent_rows(self):
        """Rows of agents.csv, month by month (see records.iter_agent_rows)."""
        return iter_agent_rows(self)

    @property
    def agent_rows(self) -> list[tuple]:
        """All rows of agents.csv as a list."""
        return list(iter_agent_rows(self))

    def iter_contract_rows(self):
        """Every contract as a tuple of the CONTRACT_FIELDS (see records.iter_contract_rows)."""
        return iter_contract_rows(self)

    def contracts_table(self) -> list[dict]:
        """Every contract with its fields (names instead of ids)."""
        return [dict(zip(CONTRACT_FIELDS, row, strict=True)) for row in iter_contract_rows(self)]
