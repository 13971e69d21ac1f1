"""Agents: chip vendors, cloud providers and AI labs. They hold state and decide; markets clear elsewhere."""

from __future__ import annotations

import math

import mesa
import numpy as np

from . import economics as ec
from .labtable import LabTable


class MarketAgent(mesa.Agent):
    """Common state of every market participant: a name, a kind and a cash account in the ledger."""

    type_name = "agent"

    def __init__(self, model, name: str, kind: str):
        super().__init__(model)
        self.name = name
        self.kind = kind
        self.account = model.ledger.open(name)
        self.alive = True
        self.capital_raised = 0.0
        self.revenue = 0.0
        self.market_share = 0.0

    @property
    def cash(self) -> float:
        """Cash in the ledger."""
        return float(self.model.ledger.balance[self.account])

    # Uniform reporters for agents.csv (overridden where they mean something).
    @property
    def h100e(self) -> float:
        return 0.0

    @property
    def capability_index(self) -> float:
        return 0.0

    @property
    def efficiency_index(self) -> float:
        return 0.0


# ---------------------------------------------------------------------------------------------------------
class ChipVendor(MarketAgent):
    """A chip vendor: merchant (sells to every cloud) or captive (owned by one cloud, sells near cost)."""

    type_name = "vendor"

    def __init__(self, model, spec):
        super().__init__(model, spec.name, spec.kind)
        cfg = model.cfg.chips
        self.owner_name = spec.owner
        self.owner = None
        self.capacity = spec.capacity_h100e_month
        self.output = self.capacity
        self.foundry_share = spec.foundry_share
        self.base_cost = spec.base_cost_usd_per_h100e
        self.markup = spec.markup if spec.kind == "merchant" else cfg.captive_markup
        self.gen_lag = spec.gen_lag_months
        self.generation = 0
        self.gen_release = -self.gen_lag
        self.unit_cost = self.base_cost
        self.kw = cfg.kw_per_h100e
        self.price = self.unit_cost * (1 + self.markup)
        self.orders = {}  # cloud unique_id -> outstanding H100e
        self.shipped = np.zeros(0)
        self.shipped_month = 0.0
        self.request = self.capacity  # capacity it asks the foundry for this month
        self.line_target = self.capacity  # a captive line: the capacity its owner has planned so far
        self.plan = None  # a captive line: (month ready, H100e/month added) of the design under way

    @property
    def backlog(self) -> float:
        """Outstanding orders, H100e."""
        return float(sum(self.orders.values()))

    def terms_for(self, cloud) -> tuple[float, float]:
        """(price per H100e, kW per H100e) this vendor offers ``cloud``.

        A cloud under export controls gets only the previous generation, from merchant and captive lines
        alike: the price per H100e and the power per H100e of chips one generation older.
        """
        if cloud is not None and cloud.restricted:
            cfg = self.model.cfg.chips
            years = cfg.generation_months / 12
            return (self.price * (1 - cfg.annual_cost_decline) ** -years,
                    self.kw * (1 - cfg.energy_efficiency_gain) ** -years)
        return self.price, self.kw

    def update(self) -> None:
        """Release a new generation when due, update unit cost and kW per H100e, and state the capacity it
        wants to book at the foundry this month (phase 2; the foundry allocates in :meth:`finish`).

        A merchant asks for growth while its backlog exceeds the delivery lag's output; a captive line asks
        for the capacity its owner has planned (:meth:`CloudProvider.plan_captive_line`), which arrives
        the design lead time after the decision."""
        m, cfg = self.model, self.model.cfg.chips
        t = m.t
        due = t > self.gen_lag and (t - self.gen_lag) % cfg.generation_months == 0
        if due:
            self.generation += 1
            self.gen_release = t
            m.log_event("generation_release", self.name, f"generation {self.generation}")
        release = max(self.gen_release, 0)
        self.unit_cost = ec.unit_cost(self.base_cost, release, cfg.annual_cost_decline)
        self.kw = cfg.kw_per_h100e * (1 - cfg.energy_efficiency_gain) ** (release / 12)
        if self.kind == "captive":
            if self.plan is not None and t >= self.plan[0]:
                self.line_target += self.plan[1]
                m.log_event("captive_line", self.name, f"line enlarged by {self.plan[1]:.0f} H100e/month",
                            self.plan[1])
                self.plan = None
            self.request = self.line_target
        else:
            excess = self.backlog / max(self.capacity * cfg.delivery_lag_months, 1.0) - 1.0
            self.request = self.capacity * (1 + cfg.vendor_capacity_growth_max * min(max(excess, 0.0), 1.0))

    def finish(self, booked: float) -> None:
        """Take the foundry capacity booked this month; set output (a foundry shock cuts it), markup, price."""
        m, cfg = self.model, self.model.cfg.chips
        self.capacity = booked
        self.output = self.capacity * (1.0 - m.env.foundry_cut_now)
        if self.kind == "merchant":
            self.markup = ec.update_markup(self.markup, self.backlog / max(cfg.delivery_lag_months, 1),
                                           self.output, cfg.markup_speed, cfg.markup_min, cfg.markup_max)
        self.price = self.unit_cost * (1 + self.markup)


# ---------------------------------------------------------------------------------------------------------
class CloudProvider(MarketAgent):
    """A cloud: builds power, buys chips, rents capacity on reserved contracts and in the spot market."""

    type_name = "cloud"

    def __init__(self, model, spec):
        super().__init__(model, spec.name, spec.kind)
        cfg = model.cfg
        self.cost_of_capital = spec.cost_of_capital
        self.debt = 0.0
        self.other_cashflow = spec.other_cashflow_usd_month
        self.captive_vendor = None
        life = cfg.cloud_params.life_months
        # Fleet by vintage: month installed, H100e, captive flag, kW per H100e, chip price paid per H100e.
        # The initial fleet is spread over the previous two years so that it retires gradually.
        n0 = 24
        months = -np.arange(n0, 0, -1) + min(0, life - 60)
        per = spec.fleet_h100e / n0
        cap_share = spec.captive_share
        parts = [(False, 1 - cap_share, 25_000.0)] + ([(True, cap_share, 12_000.0)] if cap_share > 0 else [])
        self.v_month = np.concatenate([months.astype(np.int64) for _ in parts])
        self.v_h100e = np.concatenate([np.full(n0, per * share) for _, share, _ in parts])
        self.v_captive = np.concatenate([np.full(n0, captive, dtype=bool) for captive, _, _ in parts])
        self.v_kw = np.full(self.v_month.size, cfg.chips.kw_per_h100e)
        self.v_cost = np.concatenate([np.full(n0, cost) for _, _, cost in parts])
        self.power_online = spec.power_mw
        lead = cfg.cloud_params.build_lead_hyperscaler_months if spec.kind == "hyperscaler" else \
            cfg.cloud_params.build_lead_neocloud_months
        pipeline = spec.power_mw * cfg.cloud_params.initial_pipeline_share
        self.builds: list[tuple[int, float]] = [(k, pipeline / lead) for k in range(1, lead + 1)]
        self.pending: list[tuple[int, float, bool, float, float]] = []  # (arrival, h100e, captive, kw, cost)
        self.stored: list[tuple[float, bool, float, float]] = []
        self.online = 0.0
        self.online_captive = 0.0
        self.power_used = 0.0
        self.floor_price = 0.0
        self.spot_ewma = 0.0
        self.unmet_ewma = 0.0
        self.spot_sold = 0.0
        self.spot_revenue = 0.0  # spot sales this month, $
        self._path_cache = None  # (key, capacity path) of capacity_path
        self.delivered = 0.0
        self.capex = 0.0
        self.revenue = 0.0
        self.equity_stakes: dict[int, float] = {}
        self.last_equity_deal = -10**6
        self.unmet_month = 0.0
        self.demand_hist: list[float] = []
        self.restricted = False
        self.captive_commitment = 0.0  # H100e of committed captive-chip deals not yet ordered
        self.chip_need_ewma = float(self.v_h100e.sum()) / 24  # chips it wants to order a month (12-month EWMA)
        self.received = float(self.v_h100e.sum())  # H100e ever delivered here, the initial fleet included
        self.public = spec.kind == "public"
        self.eligible_capital_max = math.inf
        self.budget_month = 0.0

    def update_unmet_signal(self) -> None:
        """Fold this month's unmet demand into its moving average (phase 11) and start the next month at 0."""
        self.unmet_ewma = 0.7 * self.unmet_ewma + 0.3 * self.unmet_month
        self.unmet_month = 0.0

    def demand_growth(self) -> float:
        """Yearly growth of this cloud's paying demand (committed, plus spot while it covers levelized cost) over
        the last 12 months."""
        h = self.demand_hist
        if len(h) < 13 or h[-13] <= 0:
            return 1.0
        return h[-1] / h[-13]

    # --- state --------------------------------------------------------------------------------------------
    @property
    def h100e(self) -> float:
        return self.online

    @property
    def captive_share(self) -> float:
        """Share of online capacity on captive chips."""
        return self.online_captive / self.online if self.online > 0 else 0.0

    def capacity_path(self, start: int, months: int) -> np.ndarray:
        """H100e this cloud will have in each month of [start, start + months): the fleet still within its
        life then, plus chips already delivered and waiting for power, plus chips in transit that arrive
        by then. Chips still on order and power not yet built are not counted. Cached until the fleet, the
        chips in transit or waiting, or the month change."""
        key = (start, months, self.model.t, self.v_month.size, self.online, len(self.pending), len(self.stored))
        hit = self._path_cache
        if hit is not None and hit[0] == key:
            return hit[1]
        life = self.model.cfg.cloud_params.life_months
        month = start + np.arange(months)
        alive = (month[:, None] - self.v_month[None, :] < life) @ self.v_h100e
        waiting = sum(s[0] for s in self.stored)
        arriving = np.zeros(months)
        for arrival, h, *_ in self.pending:
            arriving[max(arrival - start, 0):] += h
        path = alive + waiting + arriving
        self._path_cache = (key, path)
        return path

    def effective_factor(self) -> float:
        """H100e a lab gets per nominal H100e of this cloud (captive chips carry an ecosystem discount)."""
        return 1.0 - self.captive_share * (1.0 - self.model.env.ecosystem_factor)

    def outstanding_orders(self) -> float:
        """Chips on order and not yet allocated by vendors, H100e."""
        return sum(v.orders.get(self.unique_id, 0.0) for v in self.model.vendors)

    def _refresh_online(self) -> None:
        t, life = self.model.t, self.model.cfg.cloud_params.life_months
        keep = t - self.v_month < life
        if not keep.all():
            for name in ("v_month", "v_h100e", "v_captive", "v_kw", "v_cost"):
                setattr(self, name, getattr(self, name)[keep])
        h = self.v_h100e
        self.online = float(h.sum())
        self.online_captive = float(h[self.v_captive].sum())
        self.power_used = float(h @ self.v_kw) / 1000.0

    def bring_online(self) -> None:
        """Retire old vintages, finish power builds, install delivered chips while power allows (phase 3)."""
        t = self.model.t
        self._refresh_online()
        if any(b[0] <= t for b in self.builds):
            self.power_online += sum(mw for m, mw in self.builds if m <= t)
            self.builds = [b for b in self.builds if b[0] > t]
        if any(p[0] <= t for p in self.pending):
            arrived = [(h, c, kw, cost) for m, h, c, kw, cost in self.pending if m <= t]
            self.received += sum(a[0] for a in arrived)
            self.stored += arrived
            self.pending = [p for p in self.pending if p[0] > t]
        if not self.stored:
            return
        still, new = [], []
        for h, c, kw, cost in self.stored:
            free_mw = self.power_online - self.power_used
            fit = min(h, max(free_mw, 0.0) * 1000.0 / kw)
            if fit > 0:
                new.append((t, fit, c, kw, cost))
                self.power_used += fit * kw / 1000.0
            if h - fit > 1e-9:
                still.append((h - fit, c, kw, cost))
        self.stored = still
        if new:
            cols = list(zip(*new, strict=True))
            self.v_month = np.concatenate([self.v_month, np.array(cols[0], dtype=np.int64)])
            self.v_h100e = np.concatenate([self.v_h100e, cols[1]])
            self.v_captive = np.concatenate([self.v_captive, np.array(cols[2], dtype=bool)])
            self.v_kw = np.concatenate([self.v_kw, cols[3]])
            self.v_cost = np.concatenate([self.v_cost, cols[4]])
        self._refresh_online()

    def set_prices(self) -> None:
        """Floor price: levelized cost of a new H100e from the cheapest source (phase 3)."""
        m, cc = self.model, self.model.cfg.cloud_params
        vendor, cost, kw = self.cheapest_source()
        facility = cc.facility_capex_usd_per_mw * kw * cc.pue / 1000.0
        self.floor_price = ec.levelized_cost(cost, facility, self.cost_of_capital, cc.life_months, kw, cc.pue,
                                             m.env.energy_price, cc.opex_usd_per_h100e_month)

    def operating_cost(self) -> float:
        """Energy plus opex per online H100e-month (the marginal cost of running it)."""
        cc = self.model.cfg.cloud_params
        kw = (self.power_used * 1000.0 / self.online) if self.online > 0 else self.model.cfg.chips.kw_per_h100e
        return kw * cc.pue * ec.HOURS_PER_MONTH * self.model.env.energy_price + cc.opex_usd_per_h100e_month

    def cheapest_source(self):
        """The vendor with the lowest price per effective H100e open to this cloud, its price and kW."""
        best, best_val = None, math.inf
        f = self.model.env.ecosystem_factor
        for v in self.model.vendors:
            if not self.model.may_buy(self, v):
                continue
            val = v.terms_for(self)[0] / (f if v.kind == "captive" else 1.0)
            if val < best_val:
                best, best_val = v, val
        if best is None:
            return None, 30_000.0, self.model.cfg.chips.kw_per_h100e
        price, kw = best.terms_for(self)
        return best, price, kw

    def plan_capacity(self) -> None:
        """Forecast demand; order chips for the chip lead time and build power for the build lead time,
        financed by cash and debt (phase 3).

        Demand now = peak committed volume over the forecast window + spot sales (counted only while the
        spot price covers levelized cost, the floor) + demand no cloud could serve. It is projected at the
        growth of the paying part (committed + counted spot; capped at 3x a year) to the month a decision
        taken now would deliver.
        """
        m, cc = self.model, self.model.cfg.cloud_params
        t = m.t
        self.capex = 0.0
        h = cc.forecast_months
        committed = float(m.committed[self.idx, t: t + h].max()) if t + h <= m.committed.shape[1] else 0.0
        # Spot sales count as demand for new capacity only while the spot price covers levelized cost.
        paying = committed + (self.spot_ewma if m.spot_price_ewma >= self.floor_price else 0.0)
        demand_now = paying + self.unmet_ewma
        self.demand_hist.append(paying)
        growth = min(max(self.demand_growth(), 1.0), 3.0)
        chip_lead = m.cfg.chips.delivery_lag_months + 2
        build_lead = cc.build_lead_hyperscaler_months if self.kind == "hyperscaler" else cc.build_lead_neocloud_months
        life = cc.life_months

        def surviving(months: int) -> float:
            return float(self.v_h100e[t + months - self.v_month < life].sum())

        pipeline = (sum(p[1] for p in self.pending) + sum(s[0] for s in self.stored) + self.outstanding_orders())
        chip_target = cc.capacity_buffer * demand_now * growth ** (chip_lead / 12)
        chip_gap = max(chip_target - surviving(chip_lead) - pipeline, 0.0)
        self.chip_need_ewma += (chip_gap - self.chip_need_ewma) / 12.0
        _, price_new, kw_new = self.cheapest_source()
        if self.public:
            # A public programme spends its budget on capacity (keeping six months of running costs).
            unit = price_new + cc.facility_capex_usd_per_mw * kw_new * cc.pue / 1000.0
            spare = self.cash - 6 * self.online * self.operating_cost()
            chip_gap = max(chip_gap, spare / unit)
        orders = self.split_order(chip_gap) if chip_gap > 1.0 else []
        # Power for the fleet expected when a build started now is ready.
        power_target = cc.capacity_buffer * demand_now * growth ** (build_lead / 12) * kw_new / 1000.0
        power_planned = self.power_online + sum(mw for _, mw in self.builds)
        gone = t + build_lead - self.v_month >= life
        power_kept = self.power_used - float(self.v_h100e[gone] @ self.v_kw[gone]) / 1000.0
        pipeline_mw = (sum(p[1] * p[3] for p in self.pending) + sum(s[0] * s[2] for s in self.stored)
                       + sum(v.terms_for(self)[1] * v.orders.get(self.unique_id, 0.0) for v in m.vendors)
                       + sum(q * v.terms_for(self)[1] for v, q in orders)) / 1000.0
        # Build what the forecast needs, and at least enough for the fleet that stays and the chips on order.
        build_mw = max(max(power_target, power_kept + pipeline_mw) - power_planned, 0.0)
        if not orders and build_mw <= 0:
            return
        # Money available: cash plus headroom under the leverage limit.
        fleet_value = float(self.v_h100e @ self.v_cost)
        headroom = 0.0 if self.public else cc.leverage_max * (fleet_value + max(self.cash, 0.0)) - self.debt
        budget = max(self.cash, 0.0) + max(headroom, 0.0)
        chip_cost = sum(v.terms_for(self)[0] * q for v, q in orders)
        build_cost = build_mw * cc.pue * cc.facility_capex_usd_per_mw  # per facility MW, as in the floor price
        total = chip_cost + build_cost
        scale = min(1.0, budget / total) if total > 0 else 0.0
        if scale <= 0:
            return
        for v, q in orders:
            if q * scale > 0:
                v.orders[self.unique_id] = v.orders.get(self.unique_id, 0.0) + q * scale
                if v is self.captive_vendor and self.captive_commitment > 0:
                    self.captive_commitment = max(self.captive_commitment - q * scale, 0.0)
        if build_mw * scale > 0:
            self.builds.append((t + build_lead, build_mw * scale))
            self.pay_or_borrow("facility_construction", build_cost * scale, "facility_capex")
            self.capex += build_cost * scale

    def plan_captive_line(self) -> None:
        """An owner plans its captive line (phase 3): when no design is under way, it sizes the line for its
        own chip need (smoothed, projected at its demand growth to when a design started now would be
        ready) and starts a design for the difference if the line's saving over the best merchant, per
        effective H100e over one chip generation of that extra output, pays the up-front design cost.
        ``chips.captive_growth`` switches the rule: ``need`` designs whenever the need outgrows the line by
        5%, ``frozen`` never enlarges a line."""
        cv, m = self.captive_vendor, self.model
        cfg = m.cfg.chips
        if cv is None or cv.plan is not None or not m.may_buy(self, cv) or cfg.captive_growth == "frozen":
            return
        lead = cfg.captive_design_lead_months
        growth = min(max(self.demand_growth(), 1.0), 3.0)
        add = self.chip_need_ewma * growth ** (lead / 12) - cv.line_target
        if add <= 0.05 * cv.line_target:
            return
        if cfg.captive_growth == "saving":
            merch = [v.terms_for(self)[0] for v in m.vendors if v.kind == "merchant" and m.may_buy(self, v)]
            if not merch:
                return
            own = cv.unit_cost * (1 + cv.markup) / m.env.ecosystem_factor
            if (min(merch) - own) * add * cfg.generation_months <= cfg.captive_design_cost_usd:
                return
        self.pay_or_borrow("chip_design", cfg.captive_design_cost_usd, "captive_design")
        self.capex += cfg.captive_design_cost_usd
        cv.plan = (m.t + lead, add)
        m.log_event("captive_design", self.name, f"{cv.name} +{add:.0f} H100e/month from month {m.t + lead}",
                    cfg.captive_design_cost_usd)

    def split_order(self, gap: float):
        """Split an order between the captive vendor and merchants (see the comment on captive chips)."""
        m = self.model
        f = m.env.ecosystem_factor
        lag = max(m.cfg.chips.delivery_lag_months, 1)
        out = []
        rest = gap
        cv = self.captive_vendor
        merch = [v for v in m.vendors if v.kind == "merchant" and m.may_buy(self, v)]
        best_merchant = min((v.terms_for(self)[0] for v in merch), default=math.inf)
        if cv is not None and cv.alive and m.may_buy(self, cv):
            # Captive chips when they are cheaper per effective H100e (within what the line can deliver
            # soon), and always for the volume of a committed captive-chip deal not yet ordered.
            room = max(cv.capacity * (lag + 2) - cv.backlog, 0.0) if cv.terms_for(self)[0] / f <= best_merchant \
                else 0.0
            q = min(rest, max(room, self.captive_commitment))
            if q > 0:
                out.append((cv, q))
                rest -= q
        if rest > 0 and merch:
            prices = np.array([v.terms_for(self)[0] for v in merch])
            caps = np.array([max(v.capacity, 1.0) for v in merch])
            w = caps * (prices / prices.min()) ** -3.0
            w = w / w.sum()
            out += [(v, rest * wi) for v, wi in zip(merch, w, strict=True)]
        elif rest > 0 and cv is not None and m.may_buy(self, cv):
            out.append((cv, rest))
        return out

    def pay_or_borrow(self, payee, amount: float, kind: str) -> None:
        """Pay ``amount``, borrowing from lenders first if cash is short (a recorded draw on credit)."""
        if amount <= 0:
            return
        short = amount - self.cash
        if short > 0:
            self.model.ledger.transfer("lenders", self, short, "borrowing")
            self.debt += short
        self.model.ledger.transfer(self, payee, amount, kind)

    def settle_costs(self) -> None:
        """Pay energy, opex and interest; receive parent cash flow; repay debt from surplus (phase 9)."""
        m, cc = self.model, self.model.cfg.cloud_params
        if self.other_cashflow > 0:
            m.ledger.transfer("parent_companies", self, self.other_cashflow, "parent_cashflow")
        if self.public and self.budget_month > 0:
            m.ledger.transfer("government", self, self.budget_month, "public_budget")
        energy = self.power_used * 1000.0 * cc.pue * ec.HOURS_PER_MONTH * m.env.energy_price
        self.pay_or_borrow("energy", energy, "energy")
        self.pay_or_borrow("opex", self.online * cc.opex_usd_per_h100e_month, "opex")
        self.pay_or_borrow("interest", self.debt * self.cost_of_capital / 12.0, "interest")
        reserve = 3 * (energy + self.online * cc.opex_usd_per_h100e_month)
        repay = min(self.debt, max(self.cash - reserve, 0.0))
        if repay > 0:
            m.ledger.transfer(self, "lenders", repay, "debt_repayment")
            self.debt -= repay
        if self.cash < 0:  # rounding in a bill paid with borrowed cash can leave a fraction of a cent below zero
            short = -self.cash
            m.ledger.transfer("lenders", self, short, "borrowing")
            self.debt += short


# ---------------------------------------------------------------------------------------------------------
class _Column:
    """A Lab attribute stored in the model's LabTable."""

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        return obj._table.cols[self.name][obj.slot].item()

    def __set__(self, obj, value):
        obj._table.cols[self.name][obj.slot] = value


class Lab(MarketAgent):
    """An AI lab: raises money, buys compute, splits budget between compute and R&D, trains and serves.

    Its numeric state lives in ``model.lab_table`` (see :class:`LabTable`); the attributes below read and
    write it."""

    type_name = "lab"
    for _name in (*LabTable.FLOATS, *LabTable.INTS, *LabTable.BOOLS):
        locals()[_name] = _Column()
    del _name

    def __init__(self, model, name: str, tier: str, *, efficiency: float, last_run_flop: float,
                 revenue: float = 0.0, other_funding: float = 0.0, rd_share: float | None = None):
        table = self._table = model.lab_table
        slot = self.slot = table.new_row()
        mesa.Agent.__init__(self, model)
        self.name = name
        self.kind = tier
        self.account = model.ledger.open(name)
        self.tier = tier
        self.exit_month = None
        self._stakes: dict[str, float] = {}  # clouds' shares of the lab (investors': investor_share)
        cfg = model.cfg
        best_eff = last_run_flop * efficiency
        # The lab's row is new, so every column is 0 (False) but those set here.
        C = table.cols
        for k, v in (("alive", True), ("uid", self.unique_id), ("acct", self.account), ("small", tier == "small"),
                     ("birth", model.t), ("exit_t", -1), ("log_eff", math.log(efficiency)),
                     ("best_run_flop", last_run_flop), ("best_run_eff_flop", best_eff),
                     ("capability", float(ec.capability(best_eff, model.g_coef, model.gamma))),
                     ("revenue", revenue), ("revenue_ewma", revenue), ("rev_n", 1), ("other_funding", other_funding),
                     ("rd_share", cfg.efficiency.rd_share_init if rd_share is None else rd_share),
                     ("spent_last", math.inf),  # actual spend last month (unknown before the first month)
                     ("run_start", model.t), ("run_len", cfg.training.run_months),
                     ("unit_price", model.reference_price()), ("excl_with", -1), ("excl_until", -1)):
            C[k][slot] = v
        table.rev_hist[slot, 0] = revenue

    @property
    def request(self) -> tuple[float, int] | None:
        """This month's request for reserved compute: (effective H100e, term in months), or None."""
        v = self.req_volume
        return (v, self.req_term) if v > 0 else None

    @request.setter
    def request(self, value) -> None:
        self.req_volume, self.req_term = (0.0, 0) if value is None else (value[0], value[1])

    @property
    def exclusive_with(self) -> int | None:
        """unique_id of the cloud this lab is bound to exclusively (see exclusive_until), or None."""
        v = self.excl_with
        return None if v < 0 else v

    @exclusive_with.setter
    def exclusive_with(self, value) -> None:
        self.excl_with = -1 if value is None else value

    @property
    def exclusive_until(self) -> int:
        return self.excl_until

    @exclusive_until.setter
    def exclusive_until(self, value) -> None:
        self.excl_until = value

    @property
    def revenue_hist(self) -> list[float]:
        """Revenue of the last (up to) 13 months, oldest first."""
        n = self.rev_n
        k = min(n, LabTable.HIST)
        return [float(self._table.rev_hist[self.slot, i % LabTable.HIST]) for i in range(n - k, n)]

    @property
    def equity(self) -> dict[str, float]:
        """The cap table: the share of the lab held by its investors and by each cloud that took a stake."""
        out = {"investors": self.investor_share} if self.investor_share > 0 else {}
        out.update(self._stakes)
        return out

    def dilute(self, holder: str, share: float) -> None:
        """Issue ``share`` of the post-money equity to ``holder``; existing holders are diluted."""
        Lab.dilute_many(self.model, np.array([self.slot]), np.array([share]), holder)

    @staticmethod
    def dilute_many(model, slots: np.ndarray, share: np.ndarray, holder: str = "investors") -> None:
        """dilute for many labs (lab-table rows) at once, each issuing its ``share`` to ``holder``. Investors'
        shares are a lab-table column; the stakes of clouds (few) are kept per lab."""
        C, labs = model.lab_table.cols, model.labs
        keep = 1.0 - share
        C["investor_share"][slots] *= keep
        if holder == "investors":
            C["investor_share"][slots] += share
        for i in np.flatnonzero(C["cloud_equity"][slots] > 0).tolist():
            st, f = labs[int(slots[i])]._stakes, float(keep[i])
            for k in st:
                st[k] *= f
        if holder != "investors":
            for i, sh in zip(slots.tolist(), share.tolist(), strict=True):
                st = labs[i]._stakes
                st[holder] = st.get(holder, 0.0) + sh

    @staticmethod
    def from_spec(model, spec) -> Lab:
        """A named lab from its scenario entry (:class:`abm.scenario.LabSpec`), added to the world with its
        cash and its contracts, which start this month. Used at the start and by ``lab_entry`` events."""
        lab = Lab(model, spec.name, spec.tier, efficiency=spec.efficiency, last_run_flop=spec.last_run_flop,
                  revenue=spec.revenue_usd_month, other_funding=spec.other_funding_usd_month, rd_share=spec.rd_share)
        model.endow(lab, spec.cash_usd)
        lab.capital_raised = spec.capital_raised_usd
        model.add_lab(lab)
        by_name = {c.name: c for c in model.clouds}
        for cs in spec.contracts:
            model.sign(lab, by_name[cs.cloud], "reserved", cs.h100e, model.t, cs.months_left,
                       cs.price_usd_hour * ec.HOURS_PER_MONTH)
        return lab

    def start_spending(self) -> None:
        """Set the monthly spend plan from cash and revenue (after birth or a raise)."""
        Lab.start_spending_all(self.model, np.array([self.slot]))

    @staticmethod
    def start_spending_all(model, slots: np.ndarray) -> None:
        """start_spending for many labs (lab-table rows): spend at least income plus cash over the target
        runway."""
        C = model.lab_table.cols
        cash = np.maximum(model.ledger.balance[C["acct"][slots]], 0.0)
        C["spend_rate"][slots] = np.maximum(C["spend_rate"][slots], C["revenue_ewma"][slots] + C["other_funding"][slots]
                                            + cash / model.cfg.capital.target_runway_months)

    @property
    def efficiency(self) -> float:
        return math.exp(self.log_eff)

    @property
    def h100e(self) -> float:
        return self.compute

    @property
    def capability_index(self) -> float:
        return self.capability

    @property
    def efficiency_index(self) -> float:
        return self.efficiency

    def net_burn(self) -> float:
        """Net cash out per month: the larger of the planned spend and this month's contract dues plus the
        R&D share of the plan, less revenue and parent funding."""
        return float(self.model.lab_burn(np.array([self.slot]))[0])

    def runway(self) -> float:
        """Months the cash lasts at the net burn (capped at 240)."""
        return float(self.model.lab_runway(np.array([self.slot]))[0])

    @staticmethod
    def plan_all(model, labs: list[Lab]) -> None:
        """Each lab's plan for the month (phase 5): spend rate, R&D share, desired compute, request, fundraising.

        A lab's plan depends only on its own state and on public signals (prices, the scaling law), so the
        plans of all labs are evaluated together over arrays; the decision rule is the same for each lab:

        - the spend rate grows at ``capital.spend_growth_annual`` but never beyond six months of cash plus
          income, nor far beyond what the lab managed to deploy last month (compute it could not get is not
          spent);
        - the R&D share moves toward the use with the higher marginal capability per dollar (adapt_share);
        - the compute budget at the expected reserved price gives the desired H100e; the gap to what is
          already contracted becomes a request, on the longest term whose whole obligation fits the lab's
          prudent coverage room, and shrunk to fit it;
        - a lab whose runway falls below ``capital.raise_trigger_months`` seeks the money for
          ``capital.target_runway_months`` of its (growing) spend.
        """
        if not labs:
            return
        m, cfg = model, model.cfg
        cap, eff, ct = cfg.capital, cfg.efficiency, cfg.contracting
        C = m.lab_table.cols
        slots = m.alive_slots() if labs is m.alive_labs() else np.array([lab.slot for lab in labs], dtype=np.int64)
        uid = C["uid"][slots]
        cash_raw = m.ledger.balance[C["acct"][slots]]
        cash = np.maximum(cash_raw, 0.0)
        income = C["revenue_ewma"][slots] + C["other_funding"][slots]
        spend = C["spend_rate"][slots] * cap.spend_growth_annual ** (1 / 12)
        rd_share = C["rd_share"][slots]
        # Short of compute last month (it got under 90% of what it planned): no more than half as much again as
        # it managed to spend. A lab that got what it asked for is not held back by what it spent.
        short = C["compute"][slots] < 0.9 * C["desired"][slots]
        cap_deployed = np.where(short, np.maximum(np.maximum(C["spent_last"][slots] * 1.5, income), 1.0), np.inf)
        spend = np.minimum(np.minimum(spend, income + cash / 6.0), cap_deployed)
        train_spend = (1 - rd_share) * spend * m.train_fraction_est * cfg.training.run_months
        mr_c = ec.marginal_compute_return(np.maximum(train_spend * cfg.training.final_run_share, 1.0), m.gamma)
        mr_r = ec.marginal_rd_return(rd_share * spend, m.env.rd_half, eff.g_max, m.gamma, eff.rd_horizon_months)
        adapted = np.asarray(ec.adapt_share(rd_share, mr_r, mr_c, eff.adapt_speed, eff.rd_share_min,
                                            eff.rd_share_max), dtype=float)
        rd_share = np.where(C["rd_fixed"][slots], rd_share, adapted)  # a probe's strategy stays as set
        price = m.reserved_ref
        desired = (1 - rd_share) * spend / price
        gap = desired - m.contracted_by_uid()[uid]
        room = ct.prudence * (cash + 12 * income) - m.obligations_by_uid()[uid]
        terms = np.array(sorted(ct.terms_months))
        # Longest term whose whole obligation fits the room, else the shortest.
        fits = room[:, None] >= (gap * price)[:, None] * terms[None, :]
        longest = np.where(fits.any(axis=1), terms.size - 1 - np.argmax(fits[:, ::-1], axis=1), 0)
        term = terms[longest]
        sized = np.where(room > 0, np.minimum(gap, room / (price * term)), 0.0)
        want = (gap >= ct.min_deal_h100e) & (sized >= ct.min_deal_h100e)
        # Net burn counts what must be paid anyway: contract dues and the R&D share, if above the plan.
        burn = np.maximum(spend, m.dues_by_uid()[uid] + rd_share * spend) - income
        runway = np.where(burn <= 0, 240.0, np.minimum(240.0, cash / np.where(burn > 0, burn, 1.0)))
        seeking = runway < cap.raise_trigger_months
        ambition = cap.spend_growth_annual ** (cap.target_runway_months / 24)
        ask = np.maximum((spend * ambition - income) * cap.target_runway_months - cash_raw, 0.0)
        C["spend_rate"][slots] = spend
        C["rd_share"][slots] = rd_share
        C["desired"][slots] = desired
        C["req_volume"][slots] = np.where(want, sized, 0.0)
        C["req_term"][slots] = np.where(want, term, 0)
        C["ask"][slots] = np.where(seeking, ask, C["ask"][slots])
        C["seeking"][slots] = seeking & (ask > 0)

    def coverage(self, extra: float = 0.0) -> float:
        """(cash + a year of revenue and funding) / (remaining obligations + ``extra``)."""
        owed = self.model.lab_obligations(self) + extra
        cover = max(self.cash, 0.0) + 12 * (self.revenue_ewma + self.other_funding)
        return cover / owed if owed > 0 else 1e6

    @staticmethod
    def finish_runs(model, slots: np.ndarray) -> None:
        """Labs (lab-table rows) whose training run is due finish it: the run's effective compute sets the
        capability it reaches (S1), records are kept, and a new run starts next month."""
        if slots.size == 0:
            return
        m, C = model, model.lab_table.cols
        phys = C["run_flop"][slots]  # physical FLOP on the hardware used (nominal H100e)
        # Effective FLOP: the hardware's FLOP after the captive-chip ecosystem discount, times efficiency.
        eff_flop = C["run_hw_flop"][slots] * np.exp(C["log_eff"][slots])
        q = ec.capability(eff_flop, m.g_coef, m.gamma)
        cost = C["run_cost"][slots]
        C["last_run_cost"][slots] = cost
        C["best_run_eff_flop"][slots] = np.maximum(C["best_run_eff_flop"][slots], eff_flop)
        C["best_run_flop"][slots] = np.maximum(C["best_run_flop"][slots], phys)
        # Training spend of the run behind each lab's capability (final run and the runs before it).
        better = q > C["capability"][slots]
        C["cap_train_spend"][slots] = np.where(better, cost / m.cfg.training.final_run_share,
                                               C["cap_train_spend"][slots])
        C["capability"][slots] = np.maximum(C["capability"][slots], q)
        m.record_runs([m.labs[i] for i in slots.tolist()], phys, eff_flop, cost,
                      np.asarray(q, dtype=float))
        C["run_flop"][slots] = 0.0
        C["run_hw_flop"][slots] = 0.0
        C["run_cost"][slots] = 0.0
        C["run_start"][slots] = m.t + 1
