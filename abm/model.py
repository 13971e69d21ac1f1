"""The compute-market model: builds the world from a scenario and runs the eleven monthly phases.

Reads like the ODD process overview (docs/ODD.md, 1.3): :class:`ComputeMarket` is a :class:`World` (the
shared state, :mod:`abm.world`) built from a scenario; :meth:`ComputeMarket.step` runs the phases in order.
Agents decide (:mod:`abm.agents`); markets clear (:mod:`abm.markets`); events are applied by
:mod:`abm.events`; what a month records comes from :mod:`abm.metrics` and :mod:`abm.records`.
"""

from __future__ import annotations

import math

import mesa
import networkx as nx
import numpy as np

from .agents import ChipVendor, CloudProvider, Lab
from .events import apply_event
from .markets import capital, chips, contracting, entry, settlement, spot
from .metrics import collect_row
from .records import (
    CONTRACT_FIELDS,
    contract_network,
    flow_months,
    iter_agent_rows,
    iter_contract_rows,
    iter_flow_rows,
    record_agents,
)
from .scenario import Scenario, ScenarioError, load_scenario
from .timeline import month_index
from .world import HEADROOM_MONTHS, World


class ComputeMarket(World):
    """Agent-based model of the AI compute market (labs, clouds, chip vendors) in monthly steps.

    Parameters: ``scenario`` (a name in ``scenarios/``, a path to a TOML file, or a :class:`Scenario`),
    ``overrides`` (``{"capital.kappa": 2.0}``), any scenario key as a keyword with ``__`` for dots
    (``capital__kappa=2.0``, so that ``mesa.batch_run`` can sweep it), and ``rng`` (the seed; defaults
    to the scenario's ``run.seed``). ``record_flows`` (default True) keeps the monthly log of transfers that
    ``flows.csv`` is written from (:meth:`iter_flow_rows`); False saves its small cost where it is not needed.
    """

    def __init__(self, scenario: str | Scenario = "baseline", overrides: dict | None = None, rng=None, *,
                 record_flows: bool = True, **params):
        over = dict(overrides or {})
        over.update({k.replace("__", "."): v for k, v in params.items()})
        cfg = load_scenario(scenario, overrides=over or None) if not isinstance(scenario, Scenario) or over \
            else scenario
        if rng is None:
            rng = cfg.run.seed
        elif isinstance(rng, int | np.integer):
            cfg = load_scenario(cfg, overrides={"run.seed": int(rng)})
        super().__init__(cfg, rng=rng, record_flows=record_flows)
        self._scheduled = self._parse_events()
        self._build_world()
        self.start_frontier_records()
        self.datacollector = mesa.DataCollector(model_reporters={
            "lab_hhi_compute": lambda m: m.latest("lab_hhi_compute"),
            "lab_hhi_capital": lambda m: m.latest("lab_hhi_capital"),
            "entry_barrier_usd": lambda m: m.latest("entry_barrier_usd"),
            "frontier_capability": lambda m: m.latest("frontier_capability"),
            "spot_price_usd_per_h100e_hour": lambda m: m.latest("spot_price_usd_per_h100e_hour"),
            "labs_active": lambda m: m.latest("labs_active"),
            "cloud_hhi_capacity": lambda m: m.latest("cloud_hhi_capacity"),
        })

    # ------------------------------------------------------------------ building the world (ODD 3.1)
    def _build_world(self) -> None:
        """Clouds, vendors (with their initial order books), labs (named, then drawn) and their contracts."""
        cfg = self.cfg
        for i, spec in enumerate(cfg.clouds):
            c = CloudProvider(self, spec)
            c.idx = i
            self.endow(c, spec.cash_usd)
            if spec.debt_usd > 0:
                self.ledger.transfer("lenders", c, spec.debt_usd, "borrowing")
                c.debt = spec.debt_usd
            self.clouds.append(c)
        by_name = {c.name: c for c in self.clouds}
        for spec in cfg.vendors:
            v = ChipVendor(self, spec)
            self.endow(v, spec.cash_usd)
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
        for spec in cfg.labs:
            Lab.from_spec(self, spec)
        g = cfg.generated_labs
        if g.n:
            cash = self.rng.lognormal(math.log(g.cash_median_usd), g.cash_sigma, g.n)
            effs = self.rng.uniform(g.efficiency_lo, g.efficiency_hi, g.n)
            flops = g.last_run_flop_median * self.rng.lognormal(0.0, 1.0, g.n)
            for k in range(g.n):
                tier = "mid" if cash[k] >= g.mid_threshold_usd else "small"
                lab = Lab(self, f"Lab-{k + 1:03d}", tier, efficiency=float(effs[k]), last_run_flop=float(flops[k]))
                self.endow(lab, float(cash[k]))
                lab.capital_raised = float(cash[k])
                self.add_lab(lab)
        Lab.start_spending_all(self, np.arange(len(self.labs)))

    def _parse_events(self) -> dict[int, list]:
        """The scenario's events by the month index they are due."""
        out: dict[int, list] = {}
        for ev in self.cfg.events:
            t = month_index(self.cfg.run.start, ev.month)
            if t < 0:
                raise ScenarioError(f"events: month {ev.month} is before run.start {self.cfg.run.start}")
            out.setdefault(t, []).append(ev)
        return out

    # ------------------------------------------------------------------ the monthly step (ODD 1.3)
    def step(self) -> None:
        """One month: the eleven phases in a fixed order (docs/ODD.md)."""
        self.ledger.reset_flows()
        self.entry_cache = None  # a query between steps (entry.entry_barrier) must not leak into this month
        self.entries = self.exits = 0
        self.reserved_volume = 0.0
        self.reserved_value = 0.0
        self.reserved_by_group = {"small": np.zeros(2), "frontier": np.zeros(2)}  # effective volume, value
        self.reserved_price_month = float("nan")
        self.phase_events()                 # 1  events and environment (S10)
        self.phase_vendors()                # 2  vendors update (S4)
        self.phase_clouds()                 # 3  clouds install, price and plan (S5)
        chips.allocate(self)                # 4  chip market (S4)
        self.phase_labs()                   # 5  labs plan (S2, S6, S8)
        capital.clear(self)                 # 6  capital market, equity-for-compute (S8)
        contracting.sign_requests(self)     # 7  contracting (S6)
        spot.clear(self)                    # 8  spot market (S7)
        settlement.settle(self)             # 9  production, revenue, settlement (S1-S3, S5, S9)
        entry.exit_and_enter(self)          # 10 exit, entry barrier, entry (S9)
        self.phase_collect()                # 11 observation (ODD 3.5)
        self.ledger.close_month(self.t)     #    the month's transfers into the flow log (flows.csv)
        self.t += 1
        if self.t >= self.cfg.run.months:
            self.running = False

    def phase_events(self) -> None:
        """Phase 1: update the environment, apply the scenario's events due this month, update again."""
        self.env.update(self.t, self.sentiment)
        due = self._scheduled.get(self.t, [])
        for ev in due:
            apply_event(self, ev)
        if due:
            self.env.update(self.t, self.sentiment)

    def phase_vendors(self) -> None:
        """Phase 2: each vendor releases generations, sets its cost and asks for foundry capacity; the foundry
        allocates; each vendor sets its output and price."""
        self.agents_by_type[ChipVendor].shuffle_do("update")
        chips.book_foundry(self)

    def phase_clouds(self) -> None:
        """Phase 3: clouds bring capacity online, set floor prices and plan capacity."""
        clouds = self.agents_by_type[CloudProvider]
        clouds.shuffle_do("bring_online")
        clouds.do("set_prices")
        clouds.shuffle_do("plan_capacity")
        clouds.do("plan_captive_line")
        self.capex_month = sum(c.capex for c in self.clouds)

    def phase_labs(self) -> None:
        """Phase 5: every lab's plan for the month (spend, R&D share, request, fundraising)."""
        Lab.plan_all(self, self.alive_labs())

    def phase_collect(self) -> None:
        """Phase 11: frontier records, investor sentiment, clouds' unmet-demand signal, one row of output."""
        month = self.month_slots()
        self.update_frontier_records(month)
        capital.update_sentiment(self, month)
        for c in self.clouds:
            c.update_unmet_signal()
        self.rows.append(collect_row(self, month))
        record_agents(self, month)
        self.datacollector.collect(self)

    # ------------------------------------------------------------------ outputs
    @property
    def network(self) -> nx.MultiDiGraph:
        """The contract network now (see records.contract_network), built when asked for."""
        key = (self.t, self.book.version, len(self.labs), len(self.clouds))
        if self._network_key != key:
            self._network, self._network_key = contract_network(self), key
        return self._network

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

    def iter_flow_rows(self):
        """Rows of flows.csv: every month's transfers summed per payer, payee and kind (see
        records.flow_months); nothing when the model was built with ``record_flows=False``."""
        return iter_flow_rows(self)

    def flow_months(self):
        """The rows of flows.csv month by month, as columns (see records.flow_months)."""
        return flow_months(self)

    def contracts_table(self) -> list[dict]:
        """Every contract with its fields (names instead of ids)."""
        return [dict(zip(CONTRACT_FIELDS, row, strict=True)) for row in iter_contract_rows(self)]
