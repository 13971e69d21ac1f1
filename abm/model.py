"""The compute-market model: one place that builds the world and wires the eleven monthly phases."""

from __future__ import annotations

import math

import mesa
import networkx as nx
import numpy as np

from . import economics as ec
from .agents import ChipVendor, CloudProvider, Lab
from .ledger import KINDS, ContractBook, Ledger
from .metrics import collect_row
from .scenario import Scenario, ScenarioError, load_scenario

HEADROOM_MONTHS = 400


def month_label(start: str, t: int) -> str:
    """'YYYY-MM' of month index ``t`` counted from ``start``."""
    y, m = (int(x) for x in start.split("-"))
    k = y * 12 + (m - 1) + t
    return f"{k // 12:04d}-{k % 12 + 1:02d}"


def month_index(start: str, label: str) -> int:
    """Month index of 'YYYY-MM' counted from ``start``."""
    y0, m0 = (int(x) for x in start.split("-"))
    y, m = (int(x) for x in label.split("-"))
    return (y * 12 + m) - (y0 * 12 + m0)


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
        self.network = nx.MultiDiGraph()
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
        self.frontier_hist: list[tuple[float, float]] = []  # (ln best physical run, ln frontier efficiency)
        self.q_front_hist: list[float] = []
        self.sector_revenue_hist: list[float] = []
        self.shipments_hist: list[np.ndarray] = []
        self.chip_spend_month = 0.0
        self.chip_units_month = 0.0
        self.rows: list[dict] = []
        self.agent_rows: list[tuple] = []
        self._scheduled = self._parse_events()
        self._build_world()
        self.q_front_hist.append(max(lab.capability for lab in self.labs) if self.labs else 0.0)
        self.frontier_hist.append((math.log(max((lab.best_run_flop for lab in self.labs), default=1.0)),
                                   max((lab.log_eff for lab in self.labs), default=0.0)))
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
            self.network.add_node(c.name, type="cloud")
        by_name = {c.name: c for c in self.clouds}
        for spec in cfg.vendors:
            v = ChipVendor(self, spec)
            self._endow(v, spec.cash_usd)
            if spec.kind == "captive":
                v.owner = by_name[spec.owner]
                v.owner.captive_vendor = v
            self.vendors.append(v)
            self.network.add_node(v.name, type="vendor")
        for v in self.vendors:
            buyers = [c for c in self.clouds if self.may_buy(c, v)]
            fleet = np.array([c.online if c.online else sum(c.v_h100e) for c in buyers], dtype=float)
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
        self.labs.append(lab)
        self.network.add_node(lab.name, type="lab")

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
        self.events_log.append({"month": month_label(self.cfg.run.start, self.t), "step": self.t, "event": kind,
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

    def alive_labs(self) -> list[Lab]:
        return [lab for lab in self.labs if lab.alive]

    def lab_obligations(self, lab: Lab) -> float:
        """Money a lab still owes on its active contracts."""
        rows = self._lab_rows(lab)
        return float(self.book.remaining_value(self.t, rows).sum()) if rows.size else 0.0

    def _lab_rows(self, lab: Lab) -> np.ndarray:
        rows = self.book.active_capacity_rows()
        return rows[self.book.cols["buyer"][rows] == lab.unique_id]

    def lab_contracted_next(self, lab: Lab) -> float:
        """Effective H100e a lab holds under contract this month and the next."""
        rows = self._lab_rows(lab)
        if rows.size == 0:
            return 0.0
        eff = self.book.cols["eff_factor"][rows]
        now = self.book.volume_at(self.t, rows)
        nxt = self.book.volume_at(self.t + 1, rows)
        return float(np.minimum(now, nxt) @ eff)

    def expected_reserved_price(self, lab: Lab) -> float:
        """The price per effective H100e-month a lab expects to pay (recent reserved prices)."""
        return self.reserved_ref

    def record_run(self, lab: Lab, phys: float, eff: float, cost: float, q: float) -> None:
        """Log a completed training run with the capability it reached."""
        self.runs_log.append({"step": self.t, "lab": lab.name, "physical_flop": phys, "effective_flop": eff,
                              "cost_usd": cost, "capability": q})

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
        self.network.add_edge(lab.name, cloud.name, key=row, kind=kind, value=volume * price * term)
        if exclusive:
            lab.exclusive_with = cloud.unique_id
            lab.exclusive_until = start + term
        return row

    def _release(self, rows, status: str) -> None:
        """Close contracts early (default or cancellation) and free the committed capacity."""
        horizon = self.committed.shape[1]
        t = self.t
        cl = {c.unique_id: c for c in self.clouds}
        for r in rows:
            prof = self.book.profile(int(r), horizon)
            prof[: t + 1] = 0.0
            self.committed[cl[int(self.book.cols["seller"][r])].idx] -= prof
            self.network.remove_edges_from([(u, v, k) for u, v, k in self.network.edges(keys=True) if k == r])
        self.book.close(rows, status, t)

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
                if not self.network.has_edge(cloud.name, v.name):
                    self.network.add_edge(cloud.name, v.name, key=f"chips-{v.name}", kind="chip_order", value=0.0)
                self.network.edges[cloud.name, v.name, f"chips-{v.name}"]["value"] += cost
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
        self.agents_by_type[Lab].select(lambda a: a.alive).shuffle_do("plan")

    # 6 ------------------------------------------------------------------
    def phase_capital_market(self) -> None:
        """Investor inflow, allocation to fundraising labs by score^kappa, and equity-for-compute offers."""
        cap = self.cfg.capital
        led = self.ledger
        led.transfer("investors", "investor_pool", self.env.inflow, "investor_inflow")
        self.inflow_month = self.env.inflow
        labs = [lab for lab in self.alive_labs() if lab.seeking]
        if labs:
            self.phase_equity_for_compute(labs)
            labs = [lab for lab in labs if lab.seeking]
        if labs:
            q_front = max(lab.capability for lab in self.alive_labs())
            gap = np.array([q_front - lab.capability for lab in labs])
            growth = np.array([lab.revenue_growth() for lab in labs])
            asks = np.array([lab.ask for lab in labs])
            scores = ec.investor_score(gap, growth, cap.score_scale)
            funds = max(led.of("investor_pool"), 0.0)
            grant = ec.allocate_capital(funds, scores, asks, cap.kappa, weight_by_ask=True)
            for lab, amount in zip(labs, grant, strict=True):
                if amount <= 0:
                    continue
                pre = max(cap.revenue_multiple * 12 * lab.revenue_ewma, lab.capital_raised, 1.0)
                share = amount / (pre + amount)
                lab.dilute("investors", share)
                led.transfer("investor_pool", lab, float(amount), "equity_raise")
                lab.capital_raised += float(amount)
                lab.start_spending()
                lab.seeking = False
                self.log_event("raise", lab.name, f"{share:.3f} of equity", float(amount))
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
            cands = [lab for lab in seekers if lab.seeking and lab.unique_id not in cloud.equity_stakes
                     and self.may_contract(lab, cloud)]
            if not cands:
                continue
            pd = np.array([float(ec.default_probability(lab.coverage(), self.cfg.contracting.risk_k)) for lab in cands])
            value = np.array([lab.desired for lab in cands]) * (1 - pd)
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

    def phase_contracting(self) -> None:
        """Requests for quotes, Nash bargaining with outside options, signed reserved contracts (S6)."""
        reqs = [lab for lab in self.alive_labs() if lab.request is not None]
        if not reqs:
            return
        ct, pol = self.cfg.contracting, self.cfg.policy
        order = self.rng.permutation(len(reqs))
        for i in order:
            lab = reqs[int(i)]
            volume, term = lab.request
            clouds = [c for c in self.clouds if self.may_contract(lab, c)]
            if not clouds:
                continue
            avail = np.array([self.available(c, self.t, term) for c in clouds])
            held = np.array([self.committed_by(lab, c) for c in clouds])
            cap = np.array([pol.max_lab_share_of_cloud * c.online for c in clouds]) - held
            qty = np.minimum(np.minimum(avail, cap), volume / np.array([c.effective_factor() for c in clouds]))
            ok = qty >= ct.min_deal_h100e
            if not ok.any():
                self._unmet(clouds, volume)
                continue
            cloud_min, lab_alt, beta = self.cloud_terms(lab, clouds, term, volume * self.reserved_ref * term)
            per_eff = cloud_min / np.array([c.effective_factor() for c in clouds])
            cand = np.flatnonzero(ok)
            best = cand[np.argsort(per_eff[cand], kind="stable")]
            b = best[0]
            if clouds[b].public:
                # A public provider sells at cost: no risk premium, no bargaining.
                price = clouds[b].floor_price
            else:
                # Outside option: the next-best cloud's reservation price or the spot market.
                lab_max = lab_alt
                if best.size > 1:
                    lab_max = min(lab_alt, per_eff[best[1]] * clouds[b].effective_factor())
                price = float(ec.nash_price(lab_max, cloud_min[b], beta[b]))
            if not np.isfinite(price):
                self._unmet(clouds, volume)
                continue
            q = float(qty[b])
            cloud = clouds[b]
            self.sign(lab, cloud, "reserved", q, self.t, term, price)
            self.reserved_volume += q
            self.reserved_value += q * price
            shortfall = volume - q * cloud.effective_factor()
            if shortfall > ct.min_deal_h100e:
                self._unmet(clouds, shortfall)
        if self.reserved_volume > 0:
            p = self.reserved_value / self.reserved_volume
            self.reserved_price_month = p
            self.reserved_ref = 0.7 * self.reserved_ref + 0.3 * p

    def committed_by(self, lab: Lab, cloud: CloudProvider) -> float:
        rows = self._lab_rows(lab)
        rows = rows[self.book.cols["seller"][rows] == cloud.unique_id]
        return float(self.book.volume_at(self.t, rows).sum()) if rows.size else 0.0

    def _unmet(self, clouds, volume: float) -> None:
        """Demand no cloud could serve now: a signal every eligible cloud adds to its capacity plan."""
        for c in clouds:
            c.unmet_month += volume / len(clouds)

    # 8 ------------------------------------------------------------------
    def phase_spot_market(self) -> None:
        """Uniform-price clearing of residual lab demand and background demand against idle capacity (S7)."""
        bg = self.cfg.background
        labs = self.alive_labs()
        for lab in labs:
            lab.spot_bought = 0.0
            lab.spot_paid = 0.0
            lab.spot_eff = 0.0
        labs = [lab for lab in labs if not lab.restricted]
        contracted_now = self.lab_compute_reserved(labs)
        need = np.array([max(lab.desired - k, 0.0) for lab, k in zip(labs, contracted_now, strict=True)])
        bid_p = np.full(len(labs), self.spot_price_ewma * (1 + self.cfg.contracting.spot_risk_premium))
        budget = np.array([max(lab.cash, 0.0) * 0.5 for lab in labs])
        need = np.minimum(need, budget / np.maximum(bid_p, 1e-9))
        # Background demand as a step curve V(p) = V0 (p/p_ref)^-elasticity.
        p_ref = self.env.background_price
        levels = p_ref * np.array([4.0, 2.5, 1.6, 1.25, 1.0, 0.8, 0.6, 0.45, 0.3, 0.2])
        cum = self.env.background * (levels / p_ref) ** (-bg.elasticity)
        steps = np.diff(np.concatenate(([0.0], cum)))
        bid_price = np.concatenate((bid_p, levels))
        bid_qty = np.concatenate((need, steps))
        idle = np.array([0.0 if c.public else max(c.online - self.committed[c.idx, self.t], 0.0)
                         for c in self.clouds])
        opc = np.array([c.operating_cost() for c in self.clouds])
        floor = np.array([c.floor_price for c in self.clouds])
        util = np.array([min(self.committed[c.idx, self.t] / c.online, 1.0) if c.online > 0 else 1.0
                         for c in self.clouds])
        ask = opc + (floor - opc).clip(min=0) * util
        price, volume, bfill, afill = ec.clear_spot_market(bid_price, bid_qty, ask, idle)
        for c, q in zip(self.clouds, afill, strict=True):
            c.spot_sold = float(q)
            c.spot_ewma = 0.8 * c.spot_ewma + 0.2 * float(q)
        if volume > 0:
            self.spot_price = price
            n = len(labs)
            for lab, q in zip(labs, bfill[:n], strict=True):
                if q > 0:
                    lab.spot_bought = float(q)
                    lab.spot_paid = float(q) * price
            # Who sold to whom: lab purchases are split over clouds in proportion to their fills.
            share = afill / volume
            lab_idx = [i for i in range(n) if bfill[i] > 0]
            for i in lab_idx:
                lab = labs[i]
                pays = bfill[i] * price * share
                self.ledger.transfer_many([lab.account] * len(self.clouds), [c.account for c in self.clouds], pays,
                                          "spot")
                eff = float(np.dot(share, [c.effective_factor() for c in self.clouds]))
                lab.spot_eff = bfill[i] * eff
                rows = {"buyer": [], "seller": [], "kind": [], "volume": [], "start": [], "end": [], "price": [],
                        "signed": [], "status": [], "closed": [], "eff_factor": []}
                for c, sh in zip(self.clouds, share, strict=True):
                    if sh <= 0:
                        continue
                    for key, val in (("buyer", lab.unique_id), ("seller", c.unique_id), ("kind", 1),
                                     ("volume", bfill[i] * sh), ("start", self.t), ("end", self.t + 1),
                                     ("price", price), ("signed", self.t), ("status", 1), ("closed", self.t),
                                     ("eff_factor", c.effective_factor())):
                        rows[key].append(val)
                self.book.add_many(**{k: np.asarray(x) for k, x in rows.items()})
            bg_q = float(bfill[n:].sum())
            if bg_q > 0:
                self.ledger.transfer_many(
                    [self.ledger.index["other_compute_buyers"]] * len(self.clouds),
                    [c.account for c in self.clouds], bg_q * price * share, "spot_background")
            self.spot_volume = volume
        else:
            self.spot_volume = 0.0
        self.spot_price_ewma = 0.8 * self.spot_price_ewma + 0.2 * self.spot_price

    def lab_compute_reserved(self, labs) -> np.ndarray:
        """Effective H100e each lab receives this month under reserved contracts (rationed if short)."""
        rows = self.book.active_capacity_rows()
        out = np.zeros(len(labs))
        if rows.size == 0:
            return out
        vol = self.book.volume_at(self.t, rows) * self._delivery_ratio()[self._seller_idx(rows)]
        eff = self.book.cols["eff_factor"][rows]
        pos = {lab.unique_id: i for i, lab in enumerate(labs)}
        buyers = self.book.cols["buyer"][rows]
        for b, v in zip(buyers, vol * eff, strict=True):
            i = pos.get(int(b))
            if i is not None:
                out[i] += v
        return out

    def _seller_idx(self, rows) -> np.ndarray:
        idx = {c.unique_id: c.idx for c in self.clouds}
        return np.array([idx[int(s)] for s in self.book.cols["seller"][rows]], dtype=int)

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
        eff_vol = vol * self.book.cols["eff_factor"][rows]
        buyers = self.book.cols["buyer"][rows]
        pos = {lab.unique_id: i for i, lab in enumerate(labs)}
        n = len(labs)
        k_res = np.zeros(n)
        owed = np.zeros(n)
        for b, ev, p in zip(buyers, eff_vol, pay, strict=True):
            i = pos.get(int(b))
            if i is not None:
                k_res[i] += ev
                owed[i] += p
        k_spot = np.array([getattr(lab, "spot_eff", 0.0) if lab.spot_bought > 0 else 0.0 for lab in labs])
        spot_paid = np.array([lab.spot_paid for lab in labs])
        k = k_res + k_spot
        unit = np.where(k > 0, (owed + spot_paid) / np.maximum(k, 1e-12), self.reserved_ref)
        # Product market (S3): logit over capability and price with an outside option.
        d = cfg.demand
        q = np.array([lab.capability for lab in labs])
        e = np.array([lab.efficiency for lab in labs]) if d.markup and cfg.efficiency.inference_gain else np.ones(n)
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
        ends = self.ledger.index["end_users"]
        led.transfer_many([ends] * n, [lab.account for lab in labs], rev, "lab_revenue")
        # Payments: contract obligations first, R&D with what is left.
        frs = cfg.training.final_run_share
        for i, lab in enumerate(labs):
            lab.revenue = float(rev[i])
            lab.revenue_ewma = 0.7 * lab.revenue_ewma + 0.3 * lab.revenue
            lab.revenue_hist.append(lab.revenue)
            if len(lab.revenue_hist) > 13:
                lab.revenue_hist.pop(0)
            lab.compute = float(k[i])
            lab.compute_paid = float(owed[i] + spot_paid[i])
            lab.compute_train = float(train[i])
            lab.unit_price = float(unit[i])
            lab.potential_revenue = float(potential[i])
            lab.market_share = float(shares[i])
            if lab.other_funding > 0:
                led.transfer("parent_companies", lab, lab.other_funding, "parent_funding")
            lab.run_flop += frs * train[i] * self.flop_per_unit
            lab.run_cost += frs * train[i] * unit[i]
        self._pay_contracts(labs, rows, buyers, pay)
        for lab in labs:
            if not lab.alive or lab.insolvent:
                lab.rd_spend = 0.0
                continue
            rd = min(lab.rd_share * lab.spend_rate, max(lab.cash, 0.0))
            lab.rd_spend = rd
            led.transfer(lab, "rd_staff", rd, "rd_spend")
            lab.spent_last = rd + lab.compute_paid
        # Efficiency and training runs.
        alive = [lab for lab in labs if not lab.insolvent]
        if alive:
            log_front = max(lab.log_eff for lab in alive)
            for lab in alive:
                lab.grow_efficiency(log_front)
                lab.finish_run_if_due()
        # Cloud revenue and costs.
        for c in self.clouds:
            c.revenue = 0.0
        self.cloud_revenue_month = led.flows.get("reserved_payment", 0.0) + led.flows.get("spot", 0.0) + \
            led.flows.get("spot_background", 0.0)
        self.agents_by_type[CloudProvider].do("settle_costs")

    def _pay_contracts(self, labs, rows, buyers, pay) -> None:
        """Labs pay this month's contract obligations; one that cannot pays pro rata and defaults."""
        led = self.ledger
        if rows.size == 0:
            return
        sellers = self.book.cols["seller"][rows]
        acct = {c.unique_id: c.account for c in self.clouds}
        by_lab: dict[int, list[int]] = {}
        for j, b in enumerate(buyers):
            by_lab.setdefault(int(b), []).append(j)
        for lab in labs:
            js = by_lab.get(lab.unique_id)
            if not js:
                continue
            due = pay[js]
            total = float(due.sum())
            if total <= 0:
                continue
            cash = lab.cash
            frac = 1.0 if cash >= total else max(cash, 0.0) / total
            amounts = due * frac
            led.transfer_many([lab.account] * len(js), [acct[int(s)] for s in sellers[js]], amounts,
                              "reserved_payment")
            if frac < 1.0:
                lab.insolvent = True
                self.log_event("default", lab.name, "could not pay reserved contracts", total - float(amounts.sum()))

    # 10 -----------------------------------------------------------------
    def phase_entry_exit(self) -> None:
        """Insolvent labs exit (contracts default, know-how diffuses); entrants arrive and test entry (S9)."""
        tr = self.cfg.training
        for lab in self.alive_labs():
            idle = lab.compute <= 0 and lab.revenue <= 0 and lab.other_funding <= 0
            broke = lab.cash < tr.wind_down_cash_usd and idle and self.lab_obligations(lab) <= 0
            if lab.insolvent or broke:
                self._exit(lab, "default" if lab.insolvent else "wind_down")
        self.entry_barrier = self.compute_entry_barrier()
        self._entrants()

    def _exit(self, lab: Lab, why: str) -> None:
        rows = self._lab_rows(lab)
        if rows.size:
            # Take-or-pay claims on the remaining value are paid pro rata from what cash is left.
            claims = self.book.remaining_value(self.t + 1, rows) * self.book.cols["take_or_pay"][rows]
            total = float(claims.sum())
            if total > 0 and lab.cash > 0:
                paid = claims * min(1.0, lab.cash / total)
                acct = {c.unique_id: c.account for c in self.clouds}
                self.ledger.transfer_many([lab.account] * rows.size,
                                          [acct[int(s)] for s in self.book.cols["seller"][rows]], paid,
                                          "default_recovery")
            self._release(rows, "defaulted")
        lab.alive = False
        lab.exit_month = self.t
        self.exits += 1
        for c in self.clouds:
            c.equity_stakes.pop(lab.unique_id, None)
        alive = self.alive_labs()
        ed = self.cfg.efficiency.exit_diffusion
        for other in alive:
            if lab.log_eff > other.log_eff:
                other.log_eff += ed * (lab.log_eff - other.log_eff) / max(len(alive), 1)
        self.log_event("exit", lab.name, why, lab.cash)

    def projected_frontier(self, horizon: int) -> float:
        """Frontier capability extrapolated ``horizon`` months along its least-squares trend (last 36 months)."""
        q_now = max((lab.capability for lab in self.alive_labs()), default=0.0)
        return q_now + _trend(self.q_front_hist, 36) * horizon

    def entrant_price(self, cash: float, obligation: float) -> float:
        """Price per H100e-month an entrant with ``cash`` would bargain for a deal worth ``obligation``.

        Median cloud terms; the entrant's default risk comes from its coverage cash / obligation and its
        patience from a full target runway; its outside option is the expected spot price.
        """
        ct = self.cfg.contracting
        term = min(ct.terms_months)
        market = [c for c in self.clouds if not c.public and not c.restricted]
        floors = np.array([c.floor_price for c in market])
        spot_path = ec.expected_price_path(self.spot_price_ewma, term, ct.forward_price_decline)
        pdef = float(ec.default_probability(cash / max(obligation, 1.0), ct.risk_k))
        cmin = (1 + pdef * ct.lgd) * max(float(np.median(floors)) * (1 - ct.forward_price_decline) ** (term / 24),
                                         spot_path * 0.3)
        alt = spot_path * (1 + ct.spot_risk_premium)
        r_lab = float(ec.lab_discount_rate(ct.lab_base_rate_annual, self.cfg.capital.target_runway_months,
                                           ct.lab_impatience))
        r_cloud = float(np.median([c.cost_of_capital for c in market])) / 12
        p = float(ec.nash_price(alt, cmin, ec.rubinstein_weight(r_lab, r_cloud)))
        p = p if np.isfinite(p) else max(cmin, alt)
        # A public provider with spare capacity that would take this entrant rents at its floor.
        public = [c.floor_price for c in self.clouds if c.public and cash <= c.eligible_capital_max
                  and self.available(c, self.t, term) > 0]
        return min([p, *public])

    def compute_entry_barrier(self, efficiency_fraction: float | None = None, cash: float | None = None) -> float:
        """Capital a representative entrant needs to reach a viable capability in its horizon (S9)."""
        en = self.cfg.entry
        frac = efficiency_fraction if efficiency_fraction is not None else \
            0.5 * (en.efficiency_fraction_lo + en.efficiency_fraction_hi)
        cash = en.seed_capital_median_usd if cash is None else cash
        target = self.projected_frontier(en.planning_horizon_months) - en.viable_gap
        log_front = max((lab.log_eff for lab in self.alive_labs()), default=0.0)
        eff_then = math.exp(log_front) * frac * math.exp(self._frontier_eff_slope() * en.planning_horizon_months)
        compute_share = 1 - self.cfg.efficiency.rd_share_init
        frs = self.cfg.training.final_run_share
        # Two passes: the price depends on the entrant's coverage of the compute bill it implies.
        need = 0.0
        for _ in range(2):
            price = self.entrant_price(cash, need * compute_share)
            need = ec.capital_to_reach(target, eff_then, self.g_coef, self.gamma, self.flop_per_unit, price,
                                       compute_share) / frs
        return need

    def _frontier_eff_slope(self) -> float:
        return _trend([h[1] for h in self.frontier_hist], 36)

    def _entrants(self) -> None:
        en = self.cfg.entry
        n = int(self.rng.poisson(en.rate_per_month * self.sentiment))
        for _ in range(n):
            seed = float(self.rng.lognormal(math.log(en.seed_capital_median_usd), en.seed_capital_sigma))
            frac = float(self.rng.uniform(en.efficiency_fraction_lo, en.efficiency_fraction_hi))
            need = self.compute_entry_barrier(frac, seed)
            if need > seed * en.reach_multiple or self.ledger.of("investor_pool") < seed:
                continue
            log_front = max((lab.log_eff for lab in self.alive_labs()), default=0.0)
            q_front = max((lab.capability for lab in self.alive_labs()), default=0.0)
            eff = math.exp(log_front) * frac
            # Starts from an open model well behind the frontier.
            flop = float(ec.effective_flop_for_capability(q_front - 2 * en.viable_gap, self.g_coef, self.gamma)) / eff
            lab = Lab(self, f"Entrant-{self.t:03d}-{len(self.labs):04d}", "small", efficiency=eff,
                      last_run_flop=flop)
            self.ledger.transfer("investor_pool", lab, seed, "seed_round")
            lab.capital_raised = seed
            lab.dilute("investors", 1.0)
            self._add_lab(lab)
            lab.start_spending()
            self.entries += 1
            self.log_event("entry", lab.name, f"efficiency {frac:.2f} of frontier", seed)

    # 11 -----------------------------------------------------------------
    def phase_collect(self) -> None:
        labs = self.alive_labs()
        q_front = max((lab.capability for lab in labs), default=0.0)
        self.q_front_hist.append(q_front)
        phys = max((lab.best_run_flop for lab in self.labs), default=1.0)
        log_e = max((lab.log_eff for lab in labs), default=0.0)
        self.frontier_hist.append((math.log(phys), log_e))
        rev = sum(lab.revenue for lab in self.labs if lab.alive or lab.exit_month == self.t)
        self.sector_revenue_hist.append(rev)
        if len(self.sector_revenue_hist) > 12 and self.sector_revenue_hist[-13] > 0:
            g = rev / self.sector_revenue_hist[-13]
            expected = self.env.demand_growth_12m()
            self.sentiment = float(np.clip((g / expected) ** self.cfg.capital.sentiment_elasticity, 0.25, 4.0))
        for c in self.clouds:
            c.unmet_ewma = 0.7 * c.unmet_ewma + 0.3 * c.unmet_month
            c.unmet_month = 0.0
        row = collect_row(self)
        self.rows.append(row)
        self.agent_rows.extend(self._agent_rows(row["month"]))
        self.datacollector.collect(self)

    def latest(self, key: str):
        return self.rows[-1][key] if self.rows else 0.0

    def _agent_rows(self, month: str):
        for a in (*self.labs, *self.clouds, *self.vendors):
            if a.type_name == "lab" and not a.alive and a.exit_month is not None and a.exit_month < self.t:
                continue
            yield (month, self.t, a.unique_id, a.name, a.type_name, a.kind, a.alive, a.cash, a.capital_raised,
                   a.h100e, a.revenue, a.capability_index if a.type_name == "lab" else "",
                   a.efficiency_index if a.type_name == "lab" else "", a.market_share)

    @property
    def _p0(self) -> float:
        """Compute price per H100e-month at which a lab of efficiency 1 charges the reference price 1."""
        if not hasattr(self, "_p0_value"):
            self._p0_value = self.reserved_ref
        return self._p0_value

    def contracts_table(self) -> list[dict]:
        """Every contract with its fields (names instead of ids)."""
        names = {a.unique_id: a.name for a in (*self.labs, *self.clouds, *self.vendors)}
        b = self.book
        out = []
        for i in range(len(b)):
            k = KINDS[int(b.kind[i])]
            out.append({
                "contract_id": i, "buyer": names[int(b.buyer[i])], "seller": names[int(b.seller[i])], "kind": k,
                "volume_h100e": float(b.volume[i]), "start": int(b.start[i]), "end": int(b.end[i]),
                "unit_price_usd": float(b.price[i]),
                "unit": "usd_per_h100e" if k == "chip_order" else "usd_per_h100e_month",
                "take_or_pay_share": float(b.take_or_pay[i]) if k in ("reserved", "equity_for_compute") else 0.0,
                "prepayment_usd": float(b.prepayment[i]), "equity_share": float(b.equity_share[i]),
                "investment_usd": float(b.investment[i]), "effective_factor": float(b.eff_factor[i]),
                "ramp_months": int(b.ramp[i]), "exclusive": bool(b.exclusive[i]), "signed": int(b.signed[i]),
                "status": ("active", "completed", "defaulted", "cancelled")[int(b.status[i])],
                "closed": int(b.closed[i]) if b.closed[i] >= 0 else "",
            })
        return out
