"""The typed scenario schema: every parameter of the model with its default, unit and source.

A scenario is a TOML file validated by these pydantic models. Unknown keys are errors (with the nearest
valid key suggested); every numeric field has bounds. ``load_scenario`` resolves a name in ``scenarios/``
or a path, applies ``extends`` and ``--set`` overrides, and returns a validated :class:`Scenario`.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .timeline import month_index, month_label

# scenarios/ of the repository, or abm/scenarios/ inside an installed wheel (see pyproject.toml).
SCENARIO_DIR = next((d for d in (Path(__file__).resolve().parent / "scenarios",
                                 Path(__file__).resolve().parent.parent / "scenarios") if d.is_dir()),
                    Path(__file__).resolve().parent.parent / "scenarios")


class ScenarioError(ValueError):
    """A user mistake in a scenario or override: the message is one line naming the field and the rule."""


class _Rule(ValueError):
    """A rule of a validator broken by one field: ``path`` is the field's dotted path from the model the
    validator belongs to, so that the error names the field in full (``chips.markup_min``, ``events.2.lab``)."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path, self.message = path, message


# The largest value of a field that has a lower bound and no upper bound of its own, by unit: far beyond any
# plausible world (a quadrillion dollars a month, a trillion H100e), and small enough that the model's sums
# and products of such values stay finite.
CEILING = {"$": 1e16, "$/month": 1e16, "$/MW": 1e12, "$/H100e": 1e6, "$/H100e-month": 1e6, "$/H100e-hour": 1e4,
           "$/kWh": 100.0, "H100e": 1e12, "H100e/month": 1e12, "MW": 1e8, "FLOP": 1e40, "x/yr": 1000.0,
           "years": 1000.0, "months": 1200, "1/month": 1e6, "1/yr": 100.0, "x": 1e6, "-": 1e6,
           "nats/token": 100.0, "1/capability": 1000.0, "kW": 1000.0, "capability": 100.0}


def _f(default, unit: str, source: str, **bounds):
    if ("ge" in bounds or "gt" in bounds) and not ("le" in bounds or "lt" in bounds):
        bounds["le"] = CEILING[unit]
    return Field(default, description=f"[{unit}] {source}", **bounds)


def _scalar_types(ann) -> set:
    """The scalar types a field's annotation admits (``float | None`` -> {float})."""
    args = getattr(ann, "__args__", None)
    if args and getattr(ann, "__origin__", None) is not list:
        return set().union(*(_scalar_types(a) for a in args))
    return {ann} & {bool, int, float, str}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _bool_is_not_a_number(cls, value, info):
        """A boolean is not a number and a number is not a boolean (pydantic would read true as 1.0 and 1 as
        true)."""
        kinds = _scalar_types(cls.model_fields[info.field_name].annotation)
        numeric = bool(kinds & {int, float})
        if isinstance(value, bool) and numeric and bool not in kinds:
            raise ValueError("expected a number, not true or false")
        if isinstance(value, int | float) and not isinstance(value, bool) and kinds == {bool}:
            raise ValueError("expected true or false")
        return value


def _ordered(section, lo: str, hi: str) -> None:
    """Raise if the lower bound of a range exceeds its upper bound."""
    if getattr(section, lo) > getattr(section, hi):
        raise _Rule(lo, f"must not exceed {hi} ({getattr(section, hi)}); given {getattr(section, lo)}")


MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"
MAX_MONTHS = 600  # the longest run
Month = Annotated[str, Field(pattern=MONTH_PATTERN)]


class RunCfg(_Section):
    start: Month = _f("2024-01", "YYYY-MM", "start of the default world")
    months: int = _f(120, "months", "ten years of monthly steps", ge=1, le=MAX_MONTHS)
    seed: int = _f(1, "-", "master seed of the run (a 64-bit integer)", ge=0, le=2**63 - 1)


class ScalingCfg(_Section):
    E: float = _f(1.8172, "nats/token", "Besiroglu et al. 2024 refit of Chinchilla", gt=0)
    A: float = _f(482.01, "-", "Besiroglu et al. 2024", gt=0)
    B: float = _f(2085.43, "-", "Besiroglu et al. 2024", gt=0)
    alpha: float = _f(0.3478, "-", "Besiroglu et al. 2024", gt=0, lt=2)
    beta: float = _f(0.3658, "-", "Besiroglu et al. 2024", gt=0, lt=2)
    gamma: float | None = _f(None, "-", "override of alpha*beta/(alpha+beta) = 0.178", gt=0, lt=2)
    mfu: float = _f(0.4, "-", "model FLOP utilisation typical of large runs (Epoch)", gt=0, le=1)


class EfficiencyCfg(_Section):
    g_max: float = _f(0.12, "ln/month", "cap on own-R&D efficiency growth; with rd_half gives ~8-month "
                      "frontier doubling (Ho et al. 2024)", ge=0, le=1)
    rd_half_usd: float = _f(1.5e8, "$/month", "R&D spend giving half of g_max (calibrated)", gt=0)
    diffusion: float = _f(0.05, "1/month", "share of the gap to the frontier closed each month", ge=0, le=1)
    exit_diffusion: float = _f(0.2, "-", "share of an exiting lab's efficiency lead passed on, split among the survivors", ge=0, le=1)
    rd_share_init: float = _f(0.35, "-", "Cottier et al. 2024: staff 29-49% of cost", ge=0, le=1)
    rd_share_min: float = _f(0.1, "-", "bound on the adaptive R&D share", ge=0, le=1)
    rd_share_max: float = _f(0.7, "-", "bound on the adaptive R&D share", ge=0, le=1)
    adapt_speed: float = _f(0.1, "-", "step of the R&D share toward the higher marginal return", ge=0, le=1)
    rd_cost_growth_annual: float = _f(2.0, "x/yr", "growth of rd_half: ideas get harder to find (Bloom et al. "
                                      "2020); ~frontier R&D budget growth, so that the frontier keeps its "
                                      "8-month doubling", gt=0)
    rd_horizon_months: float = _f(24.0, "months", "months an efficiency gain is used when weighing R&D", gt=0)
    inference_gain: bool = _f(True, "-", "efficiency also lowers the lab's price index (its serving cost per unit "
                              "of demand, S3)")

    @model_validator(mode="after")
    def _ranges(self):
        _ordered(self, "rd_share_min", "rd_share_max")
        return self


class DemandCfg(_Section):
    initial_usd_month: float = _f(6e8, "$/month", "end-user AI spend 2024-01, calibrated to lab revenue "
                                  "run-rates (Epoch AI companies data); potential demand is this / adoption_initial",
                                  gt=0)
    growth_annual: float = _f(1.9, "x/yr", "growth of potential end-user demand early on; calibrated: with adoption "
                              "(S3) end-user spending grows 2.4x in 2024, against about 2.5x a year (lab revenue growth "
                              "2023-24, Epoch AI companies data)", gt=0)
    growth_halflife_years: float = _f(4.0, "years", "half-life of the log growth rate (slowing)", gt=0)
    theta: float = _f(10.0, "1/capability", "logit weight of capability; calibrated so that the top lab holds "
                      "0.6-0.75 of lab revenue at 2024-12 (Epoch AI companies data: OpenAI $3.7-5.5B, Anthropic "
                      "$1.0B, xAI $0.1B run-rate)", ge=0)
    eta: float = _f(1.5, "-", "logit price elasticity", ge=0)
    adoption_initial: float = _f(0.3, "-", "share of potential end-user demand spent on AI at the start; proxy: US "
                                 "adults who had used ChatGPT, 23% in Feb 2024 (Pew), or any generative AI, 39% in Aug "
                                 "2024 (Bick, Blandin and Deming 2024)", gt=0, lt=1)
    adoption_nest_scale: float = _f(0.14, "-", "nested-logit scale: the share of a change in the labs' inclusive "
                                    "value that reaches the decision to use AI at all (0: adoption fixed); calibrated: "
                                    "adoption's log-odds rise 0.52 in 2024, as US adults' ChatGPT use from 18% (Jul 2023) "
                                    "to 23% (Feb 2024) (Pew), 0.53 a year", ge=0, le=1)
    markup: float = _f(2.0, "x", "price over serving cost (gross margin ~50%)", ge=1)


class ChipsCfg(_Section):
    annual_cost_decline: float = _f(0.30, "1/yr", "Epoch ML hardware hub: 30%/yr at fixed performance", ge=0,
                                    lt=1)
    foundry_capacity_h100e_month: float = _f(3.0e5, "H100e/month", "Epoch ai-chip-counts: 1.6M H100e sold by "
                                             "end-2023, 6.5M by end-2024", gt=0)
    foundry_growth_annual: float = _f(2.0, "x/yr", "Pilz et al. 2025: hardware growth ~2x/yr", gt=0)
    foundry_growth_halflife_years: float = _f(5.0, "years", "slowing of foundry growth", gt=0)
    allocation_rule: Literal["pro_rata", "priority"] = _f("pro_rata", "-", "rule for allocating chips under shortage")
    captive_growth: Literal["saving", "need", "frozen"] = _f(
        "saving", "-", "how an owner enlarges its captive line: when the saving over merchant chips pays the "
        "design cost (saving), whenever its own need outgrows the line (need), or never (frozen); a modelling "
        "switch, no source")
    delivery_lag_months: int = _f(4, "months", "chip delivery lag of 3-6 months", ge=0, le=24)
    initial_backlog_months: float = _f(4.0, "months", "order book at start, in months of each vendor's capacity, "
                                       "split over its buyers by fleet (H100 backlog of early 2024)", ge=0)
    markup_speed: float = _f(0.05, "-", "response of merchant markup to order book / capacity", ge=0)
    markup_min: float = _f(0.5, "x", "bounds on merchant markup over cost", ge=0)
    markup_max: float = _f(4.0, "x", "Nvidia data-centre gross margin ~75% (markup 3x)", ge=0)
    captive_markup: float = _f(0.1, "x", "captive vendors sell to their owner near cost", ge=0)
    ecosystem_factor: float = _f(0.85, "-", "software-ecosystem discount: labs value a captive H100e at 0.85", gt=0, le=1)
    ecosystem_maturity_months: float = _f(60.0, "months", "months for the captive discount to close half way",
                                          gt=0)
    kw_per_h100e: float = _f(1.453, "kW", "Epoch: 1,453 W IT power per H100 all-in", gt=0)
    energy_efficiency_gain: float = _f(0.25, "1/yr", "fall of kW per H100e for new chips (Epoch: 50%/yr "
                                       "FLOP/W; damped for all-in power)", ge=0, lt=1)
    captive_design_lead_months: int = _f(18, "months", "from a cloud's decision to enlarge its captive line to "
                                         "volume output (Google TPU v1: 15 months from start to deployment, "
                                         "Jouppi et al. 2017; AWS Trainium2: announced 2023-11, generally "
                                         "available 2024-12)", ge=1, le=60)
    captive_design_cost_usd: float = _f(5.4e8, "$", "up-front cost of a captive chip design and its "
                                        "masks (IBS: ~$540M for a 5 nm chip)", ge=0)
    generation_months: int = _f(24, "months", "a new generation every 18-30 months (Nvidia A100 2020, H100 2022, B200 2024)", ge=6, le=60)
    vendor_capacity_growth_max: float = _f(0.08, "1/month", "max monthly growth of a vendor's capacity", ge=0,
                                           le=1)

    @model_validator(mode="after")
    def _ranges(self):
        _ordered(self, "markup_min", "markup_max")
        return self


class CloudsCfg(_Section):
    facility_capex_usd_per_mw: float = _f(1.4e7, "$/MW", "non-chip capex; total $35-50B/GW (Bernstein, "
                                          "Epoch) with chips ~60%", gt=0)
    pue: float = _f(1.2, "-", "facility overhead ~1.2 (Epoch: up to 1.4)", ge=1)
    energy_price_usd_kwh: float = _f(0.08, "$/kWh", "US industrial power price", ge=0)
    opex_usd_per_h100e_month: float = _f(60.0, "$/H100e-month", "staff, network, maintenance", ge=0)
    life_months: int = _f(66, "months", "5-6 year depreciation life of AI servers", ge=12, le=180)
    build_lead_hyperscaler_months: int = _f(18, "months", "data-centre construction 12-24 months", ge=1, le=60)
    build_lead_neocloud_months: int = _f(12, "months", "neoclouds build faster (leased shells)", ge=1, le=60)
    leverage_max: float = _f(0.6, "-", "max debt / (fleet value + cash)", ge=0, le=0.95)
    initial_pipeline_share: float = _f(1.5, "-", "power under construction at start, as a share of power "
                                       "online, ready over the build lead time (hyperscaler capex 2023-24)", ge=0)
    capacity_buffer: float = _f(1.15, "x", "planned capacity over forecast demand", ge=1)
    forecast_months: int = _f(12, "months", "look-ahead of the capacity plan", ge=1, le=60)


class ContractingCfg(_Section):
    terms_months: list[Annotated[int, Field(ge=1, le=240)]] = _f(
        [12, 36], "months", "1-year and 3-year contracts (Epoch hardware prices); at least one, each 1-240 months",
        min_length=1)
    lgd: float = _f(0.6, "-", "cloud's loss given a lab default", ge=0, le=1)
    risk_k: float = _f(2.0, "-", "curvature of default probability in coverage", gt=0)
    lab_base_rate_annual: float = _f(0.12, "1/yr", "a lab's base discount rate", ge=0)
    lab_impatience: float = _f(0.1, "-", "impatience per month of short runway", ge=0)
    prudence: float = _f(0.6, "-", "share of cash plus a year of income a lab lets its remaining contract "
                         "obligations reach", gt=0, le=2)
    min_deal_h100e: float = _f(50.0, "H100e", "smallest reserved contract a cloud signs", ge=0)
    spot_risk_premium: float = _f(0.25, "-", "premium a lab would pay to avoid spot availability risk", ge=0)
    spot_exclusive: bool = _f(False, "-", "whether an exclusive equity-for-compute deal also bars the lab from "
                              "the spot market while it binds; a modelling switch, no source")
    forward_price_decline: float = _f(0.25, "1/yr", "prior of the expected yearly fall of spot "
                                  "prices, replaced by the observed trend over the first year (Epoch: GPU "
                                  "price-performance ~30%/yr)", ge=0,
                                      lt=1)


class TrainingCfg(_Section):
    run_months: int = _f(6, "months", "length of a lab's first training run (later ones: 1/g, S1)", ge=1, le=36)
    final_run_share: float = _f(0.06, "-", "share of training compute in the final run (rest: experiments); "
                                "calibrated to Epoch's largest runs 2024 (~5e25-1e26 FLOP)", gt=0, le=1)
    wind_down_cash_usd: float = _f(2.0e6, "$", "a lab with less cash, no compute and no income winds down", ge=0)


class CapitalCfg(_Section):
    inflow_usd_month: float = _f(2.5e9, "$/month", "venture and strategic inflow to AI labs 2024", ge=0)
    inflow_growth_annual: float = _f(1.6, "x/yr", "initial growth of investor inflow", gt=0)
    inflow_growth_halflife_years: float = _f(3.0, "years", "half-life of the inflow's log growth", gt=0)
    sentiment_elasticity: float = _f(0.5, "-", "inflow response to sector revenue growth vs plan", ge=0, le=10)
    kappa: float = _f(1.5, "-", "preferential attachment: investors split the pool in proportion to expected "
                      "return^kappa (calibration flag)", ge=0, le=10)
    hurdle_multiple: float = _f(1.0, "x", "least expected value per dollar at which investors fund a round "
                                "(calibration flag)", ge=0)
    revenue_multiple: float = _f(25.0, "x", "valuation / annualised revenue (OpenAI $157B on ~$4B run-rate "
                                 "revenue, 2024-10; Anthropic $61.5B on ~$1.4B, 2025-03: 25-45x)", gt=0)
    target_runway_months: float = _f(24.0, "months", "runway a lab raises for", gt=0)
    raise_trigger_months: float = _f(12.0, "months", "runway below which a lab seeks funds", gt=0)
    spend_growth_annual: float = _f(2.4, "x/yr", "Cottier et al.: frontier cost growth 2.4x/yr, a lab's "
                                    "ambition for its spend", gt=0)
    dry_powder_outflow: float = _f(0.1, "1/month", "share of undeployed investor funds that leave", ge=0, le=1)

    @model_validator(mode="after")
    def _ranges(self):
        _ordered(self, "raise_trigger_months", "target_runway_months")  # else a lab that raised still seeks
        return self


class EntryCfg(_Section):
    rate_per_month: float = _f(0.5, "1/month", "Poisson rate of potential entrants at base sentiment", ge=0)
    seed_capital_median_usd: float = _f(1.0e9, "$", "median seed round a new lab asks for at the 2024-01 "
                                        "investor inflow; it scales with the inflow (and so with sentiment). "
                                        "Safe Superintelligence $1B (2024-09), Thinking Machines Lab $2B "
                                        "(2025-07), Mistral EUR 385M (2023-12)", gt=0)
    seed_capital_sigma: float = _f(1.0, "-", "lognormal sigma of seed capital", ge=0, le=5)
    efficiency_fraction_lo: float = _f(0.3, "-", "starting efficiency as a fraction of the frontier's", gt=0,
                                       le=1)
    efficiency_fraction_hi: float = _f(0.9, "-", "", gt=0, le=1)
    planning_horizon_months: int = _f(24, "months", "horizon to reach a viable capability", ge=1)
    viable_gap: float = _f(0.6, "capability", "viable = within this gap of the frontier", ge=0)
    frontier_compute_growth_prior: float = _f(4.5, "x/yr", "prior of the frontier's training compute growth, "
                                              "replaced by the observed frontier trend over the first 36 months "
                                              "(Epoch AI 2024: 4-5x/yr, 2010-2024)", gt=0)
    efficiency_growth_prior: float = _f(2.83, "x/yr", "prior of the frontier's algorithmic efficiency growth, "
                                        "replaced likewise (Ho et al. 2024: compute to reach a given "
                                        "performance halves every ~8 months, 2^(12/8))", gt=0)
    open_model_lag_months: int = _f(12, "months", "an entrant starts from the best open model, which matches "
                                    "the frontier of this many months ago (Epoch AI 2024: open models lag "
                                    "closed ones by 5-22 months, about a year)", ge=0, le=120)

    @model_validator(mode="after")
    def _ranges(self):
        _ordered(self, "efficiency_fraction_lo", "efficiency_fraction_hi")
        return self


class BackgroundCfg(_Section):
    volume_h100e: float = _f(6.0e5, "H100e", "non-lab AI compute demand (enterprise, inference at others), "
                             "at the reference price; its value x the reference price is the buyers' budget there "
                             "(calibration flag)", ge=0)
    growth_annual: float = _f(1.6, "x/yr", "growth of the background workload at given values (calibration flag)",
                              gt=0)
    elasticity: float = _f(1.2, "-", "price elasticity of background demand: the Pareto shape of the buyers' "
                           "values per H100e (calibration flag)", gt=0)
    reference_price_usd_hour: float = _f(2.5, "$/H100e-hour", "Epoch: H100 spot $2-4/h in 2024", gt=0)
    choke_price_usd_hour: float = _f(12.0, "$/H100e-hour", "no background buyer values an H100e-hour above this: "
                                     "the 2023 on-demand list price of an H100 (AWS p5.48xlarge $98.32/h for 8 GPUs)",
                                     gt=0)
    lowest_value_usd_hour: float = _f(0.8, "$/H100e-hour", "value of the least valuable background workload; below "
                                      "it demand is saturated (finite workload) (calibration flag)", gt=0)

    @model_validator(mode="after")
    def _ranges(self):
        _ordered(self, "lowest_value_usd_hour", "reference_price_usd_hour")
        _ordered(self, "reference_price_usd_hour", "choke_price_usd_hour")
        return self


class PolicyCfg(_Section):
    exclusivity_allowed: bool = _f(True, "-", "antitrust: may equity-for-compute deals be exclusive")
    equity_for_compute_allowed: bool = _f(True, "-", "antitrust: may clouds take equity for compute")
    max_lab_share_of_cloud: float = _f(1.0, "-", "antitrust: cap on one lab's share of a cloud's capacity",
                                       gt=0, le=1)
    equity_deal_min_cash_usd: float = _f(2.0e10, "$", "cash a cloud needs to make an equity-for-compute "
                                         "offer", ge=0)
    equity_deal_share_of_cash: float = _f(0.03, "-", "share of a cloud's cash in one equity offer (Amazon's "
                                          "$4B rounds in Anthropic, 2023-24, were ~3-5% of its cash)", ge=0, le=1)
    equity_deal_interval_months: int = _f(12, "months", "a cloud makes at most one equity-for-compute deal in "
                                          "this many months (Microsoft-OpenAI, Amazon- and Google-Anthropic: "
                                          "about one round a year)", ge=1, le=240)
    equity_commit_multiple: float = _f(1.0, "x", "committed spend per dollar of equity", gt=0)


class VendorSpec(_Section):
    name: str
    kind: Literal["merchant", "captive"]
    owner: str | None = _f(None, "-", "cloud that owns a captive vendor")
    capacity_h100e_month: float = _f(..., "H100e/month", "production capacity", ge=0)
    foundry_share: float = _f(..., "-", "share of foundry capacity it is entitled to book; capacity others leave "
                              "unused is re-offered to those short", ge=0, le=1)
    base_cost_usd_per_h100e: float = _f(8000.0, "$/H100e", "cost of an H100e: price $33.8k (Epoch) at a "
                                        "~75% margin", gt=0)
    markup: float = _f(3.0, "x", "initial markup over cost", ge=0)
    gen_lag_months: int = _f(0, "months", "performance lag: its generations arrive this much later than "
                             "the schedule", ge=0, le=60)
    cash_usd: float = _f(0.0, "$", "", ge=0)


class CloudSpec(_Section):
    name: str
    kind: Literal["hyperscaler", "neocloud", "public"]
    cash_usd: float = _f(..., "$", "", ge=0)
    debt_usd: float = _f(0.0, "$", "", ge=0)
    cost_of_capital: float = _f(0.08, "1/yr", "hyperscalers ~7-9%, neoclouds 11-15%", gt=0, lt=1)
    fleet_h100e: float = _f(..., "H100e", "installed AI compute 2024-01", ge=0)
    captive_share: float = _f(0.0, "-", "share of the initial fleet on captive chips", ge=0, le=1)
    power_mw: float = _f(..., "MW", "IT power online 2024-01", ge=0)
    other_cashflow_usd_month: float = _f(0.0, "$/month", "operating cash flow from the rest of the business",
                                         ge=0)


class ContractSpec(_Section):
    cloud: str
    h100e: float = Field(..., gt=0, le=CEILING["H100e"])
    price_usd_hour: float = Field(..., gt=0, le=CEILING["$/H100e-hour"])
    months_left: int = Field(..., ge=1, le=240)


class LabSpec(_Section):
    name: str
    tier: Literal["frontier", "mid", "small"]
    cash_usd: float = _f(..., "$", "", ge=0)
    capital_raised_usd: float = _f(0.0, "$", "", ge=0)
    efficiency: float = _f(1.0, "x", "algorithmic efficiency relative to the 2024 frontier", gt=0)
    last_run_flop: float = _f(1e23, "FLOP", "physical FLOP of its best model so far (Epoch large-scale "
                              "models)", gt=0)
    revenue_usd_month: float = _f(0.0, "$/month", "Epoch AI companies data", ge=0)
    other_funding_usd_month: float = _f(0.0, "$/month", "funding from a parent company", ge=0)
    rd_share: float | None = _f(None, "-", "initial R&D share (default efficiency.rd_share_init)", ge=0, le=1)
    contracts: list[ContractSpec] = Field(default_factory=list)


class GeneratedLabs(_Section):
    n: int = _f(20, "labs", "small and mid labs drawn at start", ge=0, le=100_000)
    cash_median_usd: float = _f(2.0e8, "$", "", gt=0)
    cash_sigma: float = _f(1.0, "-", "lognormal sigma of the drawn labs' cash", ge=0, le=5)
    mid_threshold_usd: float = _f(1.0e9, "$", "labs born with more cash are 'mid', else 'small'", gt=0)
    efficiency_lo: float = _f(0.3, "x", "", gt=0)
    efficiency_hi: float = _f(0.9, "x", "", gt=0)
    last_run_flop_median: float = _f(3e23, "FLOP", "Epoch large-scale models 2023", gt=0)

    @model_validator(mode="after")
    def _ranges(self):
        _ordered(self, "efficiency_lo", "efficiency_hi")
        return self


# Keys read only when the world is built: a `set` event on them would silently do nothing.
_INITIAL_SECTIONS = {"run", "clouds", "vendors", "labs", "generated_labs", "name", "description", "extends",
                     "events"}
_INITIAL_KEYS = {"demand.initial_usd_month", "capital.inflow_usd_month", "chips.foundry_capacity_h100e_month",
                 "background.volume_h100e", "background.reference_price_usd_hour", "efficiency.rd_half_usd",
                 "chips.ecosystem_factor", "chips.captive_markup", "chips.initial_backlog_months",
                 "cloud_params.initial_pipeline_share"}

# A scenario's name names output folders.
_PLAIN_NAME = re.compile(r"[^\W_][^/\\\x00-\x1f\x7f]*")
# Names the model gives the labs it draws at the start and the entrants.
_DRAWN_NAME = re.compile(r"Lab-0*([1-9][0-9]*)")


def _lab_name(name: str, path: str, n_drawn: int) -> None:
    """A named lab's name must differ from those the model gives drawn labs and entrants."""
    drawn = _DRAWN_NAME.fullmatch(name)
    if drawn and int(drawn.group(1)) <= n_drawn or name.startswith("Entrant-"):
        raise _Rule(path, f"{name!r} is the name of a lab the model draws (Lab-001 to Lab-{n_drawn:03d}) or "
                          "of an entrant (Entrant-...); give another name")


EVENT_TYPES = ("mega_deal", "set", "export_controls", "foundry_shock", "demand_shock", "capital_shock",
               "algorithmic_breakthrough", "open_weights", "ecosystem_shift", "public_compute", "antitrust",
               "lab_entry", "funding")
_REQUIRED = {
    "mega_deal": ("lab", "cloud", "value_usd", "term_months", "gw", "chip_kind"),
    "set": ("key", "value"),
    "export_controls": ("labs", "clouds"),
    "foundry_shock": ("share", "months"),
    "demand_shock": ("factor",),
    "capital_shock": ("factor",),
    "algorithmic_breakthrough": ("factor",),
    "open_weights": ("share",),
    "ecosystem_shift": ("maturity_months",),
    "public_compute": ("budget_usd_year", "max_capital_usd"),
    "antitrust": (),
    "lab_entry": ("new_lab",),
    "funding": ("lab", "value_usd"),
}


class Event(_Section):
    """A scheduled event (S10). Which fields apply depends on ``type``; see docs/ODD.md."""

    month: Month
    type: Literal["mega_deal", "set", "export_controls", "foundry_shock", "demand_shock", "capital_shock",
                  "algorithmic_breakthrough", "open_weights", "ecosystem_shift", "public_compute", "antitrust",
                  "lab_entry", "funding"]
    # mega_deal
    lab: str | None = None
    cloud: str | None = None
    value_usd: float | None = Field(None, gt=0, le=CEILING["$"])
    term_months: int | None = Field(None, ge=1, le=360)
    gw: float | None = Field(None, gt=0, le=1e4)
    chip_kind: Literal["merchant", "captive"] | None = None
    exclusive: bool = False
    ramp_months: int = Field(36, ge=0, le=240)
    # set
    key: str | None = None
    value: float | bool | str | None = None
    # export_controls: who loses access to the newest chip generation
    labs: list[str] | None = None
    clouds: list[str] | None = None
    # shocks: foundry capacity cut by ``share`` for ``months``; demand/capital levels x ``factor``
    share: float | None = Field(None, ge=0, le=1)
    months: int | None = Field(None, ge=0, le=600)
    factor: float | None = Field(None, gt=0, le=1000)
    growth_annual: float | None = Field(None, gt=0, le=100)
    # open_weights: new diffusion rate; ecosystem_shift: captive catch-up
    diffusion: float | None = Field(None, ge=0, le=1)
    maturity_months: float | None = Field(None, gt=0, le=CEILING["months"])
    capacity_multiplier: float = Field(1.0, gt=0, le=100)
    gen_lag_months: int | None = Field(None, ge=0, le=60)
    # public_compute
    budget_usd_year: float | None = Field(None, ge=0, le=CEILING["$"])
    max_capital_usd: float | None = Field(None, ge=0, le=CEILING["$"])
    name: str = "Public Compute"
    # antitrust
    ban_exclusivity: bool = False
    ban_equity_for_compute: bool = False
    max_lab_share_of_cloud: float | None = Field(None, gt=0, le=1)
    # lab_entry: a named lab founded during the run (its contracts, if any, start that month)
    new_lab: LabSpec | None = None

    @model_validator(mode="after")
    def _check(self):
        missing = [k for k in _REQUIRED[self.type] if getattr(self, k) is None]
        if missing:
            raise _Rule(missing[0], f"{self.type} event needs {', '.join(missing)}")
        return self


class Scenario(_Section):
    name: str = "custom"
    description: str = ""
    extends: str | None = None
    run: RunCfg = Field(default_factory=RunCfg)
    scaling: ScalingCfg = Field(default_factory=ScalingCfg)
    efficiency: EfficiencyCfg = Field(default_factory=EfficiencyCfg)
    demand: DemandCfg = Field(default_factory=DemandCfg)
    chips: ChipsCfg = Field(default_factory=ChipsCfg)
    cloud_params: CloudsCfg = Field(default_factory=CloudsCfg)
    contracting: ContractingCfg = Field(default_factory=ContractingCfg)
    training: TrainingCfg = Field(default_factory=TrainingCfg)
    capital: CapitalCfg = Field(default_factory=CapitalCfg)
    entry: EntryCfg = Field(default_factory=EntryCfg)
    background: BackgroundCfg = Field(default_factory=BackgroundCfg)
    policy: PolicyCfg = Field(default_factory=PolicyCfg)
    vendors: list[VendorSpec] = Field(default_factory=list)
    clouds: list[CloudSpec] = Field(default_factory=list)
    labs: list[LabSpec] = Field(default_factory=list)
    generated_labs: GeneratedLabs = Field(default_factory=GeneratedLabs)
    events: list[Event] = Field(default_factory=list)

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True,
                              allow_inf_nan=False)

    @model_validator(mode="after")
    def _cross_check(self):
        """The rules between fields: populations, names, owners, foundry shares, and every event against the
        run, the agents and the keys it names (each error names the field that breaks the rule)."""
        if not self.clouds:
            raise _Rule("clouds", "a scenario needs at least one cloud")
        if not any(v.kind == "merchant" for v in self.vendors):
            raise _Rule("vendors", 'a scenario needs at least one merchant vendor (kind = "merchant")')
        if not _PLAIN_NAME.fullmatch(self.name):
            raise _Rule("name", f"{self.name!r} is not a plain name: it names output folders, so it needs a "
                                "letter or digit first and no '/', '\\' or control characters")
        for group in ("clouds", "vendors", "labs"):
            seen: set[str] = set()
            for i, x in enumerate(getattr(self, group)):
                if x.name in seen:
                    raise _Rule(f"{group}.{i}.name", f"{x.name!r} comes twice; names in {group} must be unique")
                seen.add(x.name)
        clouds = {c.name for c in self.clouds}
        owned: dict[str, str] = {}
        for i, v in enumerate(self.vendors):
            if v.kind == "merchant" and v.owner is not None:
                raise _Rule(f"vendors.{i}.owner", f"merchant vendor {v.name!r} sells to every cloud and has no "
                                                  f'owner (given {v.owner!r}); a cloud\'s own line is kind = "captive"')
            if v.kind == "captive" and v.owner not in clouds:
                raise _Rule(f"vendors.{i}.owner", f"captive vendor {v.name!r} needs an owner among the clouds "
                                                  f"({', '.join(sorted(clouds))}); given {v.owner!r}")
            if v.kind == "captive" and v.owner in owned:
                raise _Rule(f"vendors.{i}.owner", f"cloud {v.owner!r} already owns captive vendor "
                                                  f"{owned[v.owner]!r}; a cloud has at most one captive line")
            if v.kind == "captive":
                owned[v.owner] = v.name
        total = sum(v.foundry_share for v in self.vendors)
        if abs(total - 1.0) > 1e-6:
            raise _Rule("vendors", f"the vendors' foundry_share values must sum to 1 (they are shares of the "
                                   f"foundry's capacity); they sum to {total:.6g}")
        labs = set()
        for i, lab in enumerate(self.labs):
            _lab_name(lab.name, f"labs.{i}.name", self.generated_labs.n)
            for j, c in enumerate(lab.contracts):
                if c.cloud not in clouds:
                    raise _Rule(f"labs.{i}.contracts.{j}.cloud", f"lab {lab.name!r} has a contract with unknown "
                                                                 f"cloud {c.cloud!r}; clouds: {', '.join(sorted(clouds))}")
            labs.add(lab.name)
        self._check_events(clouds, owned, labs)
        return self

    def _check_events(self, clouds: set[str], owned: dict[str, str], labs: set[str]) -> None:
        """Each event not before the run's start, naming agents that exist at its date and keys and values
        that are valid."""
        for i, e in enumerate(self.events):  # events after the run's end: see load_scenario
            if month_index(self.run.start, e.month) < 0:
                raise _Rule(f"events.{i}.month", f"{e.month} is before run.start ({self.run.start})")
        valid = set(_valid_keys(Scenario))
        sections = {k.rsplit(".", 1)[0] for k in valid if "." in k}
        public = set()
        config = None  # the parameters as the set events so far leave them
        names = sorted(clouds)
        for i in sorted(range(len(self.events)), key=lambda j: self.events[j].month):  # stable: file order
            e, at = self.events[i], f"events.{i}"
            if e.type == "lab_entry":
                _lab_name(e.new_lab.name, f"{at}.new_lab.name", self.generated_labs.n)
                if e.new_lab.name in labs:
                    raise _Rule(f"{at}.new_lab.name", f"lab {e.new_lab.name!r} already exists")
                bad = [j for j, c in enumerate(e.new_lab.contracts) if c.cloud not in clouds]
                if bad:
                    raise _Rule(f"{at}.new_lab.contracts.{bad[0]}.cloud",
                                f"unknown cloud {e.new_lab.contracts[bad[0]].cloud!r}; clouds: {', '.join(names)}")
                labs.add(e.new_lab.name)
            if e.type in ("funding", "mega_deal") and e.lab not in labs:
                raise _Rule(f"{at}.lab", f"{e.lab!r} is not a named lab (or one founded by an earlier lab_entry)")
            if e.type in ("funding", "mega_deal") and e.cloud is not None and e.cloud not in clouds:
                raise _Rule(f"{at}.cloud", f"{e.cloud!r} is not one of the clouds ({', '.join(names)})")
            if e.type == "mega_deal" and e.chip_kind == "captive" and e.cloud not in owned:
                raise _Rule(f"{at}.chip_kind", f"captive chips need a cloud with a captive vendor, and {e.cloud!r} "
                                               f"has none (clouds with one: {', '.join(sorted(owned))})")
            if e.type == "set":
                config = self._check_set(e, at, valid, sections, config)
            if e.type == "export_controls":
                for key, known in (("clouds", clouds), ("labs", labs)):
                    bad = [x for x in getattr(e, key) if x not in known]
                    if bad:
                        raise _Rule(f"{at}.{key}", f"{bad[0]!r} is not one of the {key} (at {e.month})")
            if e.type == "algorithmic_breakthrough" and e.lab is not None and e.lab not in labs:
                raise _Rule(f"{at}.lab", f"{e.lab!r} is not a named lab (or one founded by an earlier lab_entry)")
            if e.type == "public_compute":
                if e.name in clouds or e.name in public:
                    raise _Rule(f"{at}.name", f"a cloud named {e.name!r} exists already; give the public provider "
                                              "another name")
                public.add(e.name)

    def _check_set(self, e, at: str, valid: set[str], sections: set[str], config: dict | None) -> dict:
        """A ``set`` event's key is a parameter that may change during a run, and its value is valid there
        (given the set events before it); returns the parameters with the value applied."""
        if e.key not in valid:
            near = difflib.get_close_matches(str(e.key), sorted(valid), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise _Rule(f"{at}.key", f"unknown key {e.key!r}{hint}")
        if e.key in sections:
            raise _Rule(f"{at}.key", f"{e.key!r} is a section; a set event changes one parameter, such as "
                                     f"{sorted(k for k in valid if k.startswith(e.key + '.'))[0]!r}")
        if e.key.split(".")[0] in _INITIAL_SECTIONS or e.key in _INITIAL_KEYS:
            raise _Rule(f"{at}.key", f"{e.key} only takes effect at the start of a run; use a shock event "
                                     "(demand_shock, capital_shock, foundry_shock) or set a growth rate instead")
        if config is None:
            config = self.model_dump(by_alias=True, exclude={"events"})
        config = apply_overrides(config, {e.key: e.value})
        try:
            Scenario.model_validate(config)
        except ValidationError as err:
            first = err.errors()[0]
            msg = first["msg"].replace("Value error, ", "")
            raise _Rule(f"{at}.value", f"{e.key} = {e.value!r}: {msg}") from None
        return config

    @property
    def gamma(self) -> float:
        s = self.scaling
        return s.gamma if s.gamma is not None else s.alpha * s.beta / (s.alpha + s.beta)


# --------------------------------------------------------------------------------------------------------
# loading, overrides and error messages
# --------------------------------------------------------------------------------------------------------


def _valid_keys(model_cls, prefix: str = "") -> list[str]:
    keys = []
    for name, f in model_cls.model_fields.items():
        key = f.alias or name
        keys.append(prefix + key)
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.extend(_valid_keys(ann, prefix + key + "."))
    return keys


def _model_at(loc) -> type[BaseModel] | None:
    """The pydantic model class that holds the field at ``loc`` (list indices skipped)."""
    cls: Any = Scenario
    for part in loc:
        if isinstance(part, int):
            continue
        f = cls.model_fields.get(str(part))
        if f is None:
            return None
        ann = f.annotation
        args = getattr(ann, "__args__", ())
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            cls = ann
        elif args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
            cls = args[0]
        else:
            return None
    return cls


def _format_error(err: ValidationError, source: str) -> str:
    e = err.errors()[0]
    loc = ".".join(str(x) for x in e["loc"])
    if e["type"] == "extra_forbidden":
        bad = str(e["loc"][-1])
        cls = _model_at(e["loc"][:-1])
        candidates = sorted(cls.model_fields) if cls else []
        near = difflib.get_close_matches(bad, candidates, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else f"; allowed: {', '.join(candidates)}"
        return f"{source}: unknown key {loc!r}{hint}"
    rule = (e.get("ctx") or {}).get("error")
    if isinstance(rule, _Rule):  # a validator's rule: the field is the validator's place plus the rule's path
        return f"{source}: {'.'.join(p for p in (loc, rule.path) if p)}: {rule.message}"
    given = e.get("input")
    given_s = repr(given) if not isinstance(given, dict | list) else type(given).__name__
    msg = e["msg"].replace("Value error, ", "")
    return f"{source}: {loc or '(top level)'}: {msg} (given {given_s})"


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _merge_named(base: list, over: list) -> list:
    """Merge lists of named tables: an item with an existing name updates it, a new name is appended."""
    if not isinstance(base, list):
        return over  # the parent's list is invalid: validation reports the child's (or the parent's) own
    out = [dict(x) if isinstance(x, dict) else x for x in base]
    index = {x.get("name"): i for i, x in enumerate(out) if isinstance(x, dict)}
    for item in over:
        name = item.get("name") if isinstance(item, dict) else None
        if name in index:
            out[index[name]] = _deep_merge(out[index[name]], item)
        else:
            out.append(item)
    return out


def resolve_path(name_or_path: str | Path) -> Path:
    """The file of a scenario given by name (in ``scenarios/``) or by path; ScenarioError if missing."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists() or "/" in str(name_or_path):
        if not p.is_file():
            raise ScenarioError(f"{p}: scenario file not found")
        return p
    cand = SCENARIO_DIR / f"{name_or_path}.toml"
    if not cand.is_file():
        names = available_scenarios()
        near = difflib.get_close_matches(str(name_or_path), names, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ScenarioError(f"unknown scenario {str(name_or_path)!r}; available: {', '.join(names)}{hint}")
    return cand


def available_scenarios() -> list[str]:
    """Names of the scenarios shipped in ``scenarios/``."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from None


def _raw(name_or_path, seen=()) -> tuple[dict, Path]:
    path = resolve_path(name_or_path)
    data = _read_toml(path)
    parent = data.get("extends")
    if parent:
        if not isinstance(parent, str):
            raise ScenarioError(f"{path}: extends must be a scenario name (given {parent!r})")
        if parent in seen:
            raise ScenarioError(f"{path}: extends cycle through {parent!r}")
        try:
            resolve_path(parent)
        except ScenarioError as exc:
            raise ScenarioError(f"{path}: extends: {exc}") from None
        for k in ("clouds", "vendors", "labs", "events"):
            if k in data and not isinstance(data[k], list):
                raise ScenarioError(f"{path}: {k}: expected a list of tables ([[{k}]]), given "
                                    f"{type(data[k]).__name__} {data[k]!r}")
        base, _ = _raw(parent, (*seen, parent))
        base.pop("description", None)
        base.pop("name", None)
        merged = {k: _merge_named(base.get(k, []), data[k]) for k in ("clouds", "vendors", "labs") if k in data}
        inherited = base.get("events", [])
        events = (inherited if isinstance(inherited, list) else []) + data.get("events", [])
        data = _deep_merge(base, {k: v for k, v in data.items() if k not in ("events", *merged)})
        data.update(merged)
        if events:
            data["events"] = events
    return data, path


def parse_value(text: str) -> Any:
    """Parse an override value as a TOML literal (number, bool, string, list); bare words are strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict, overrides: list[str] | dict[str, Any] | None, source: str = "--set") -> dict:
    """Apply ``key.path=value`` overrides to a raw scenario dict; unknown keys get a nearest-key hint."""
    if not overrides:
        return data
    items = overrides.items() if isinstance(overrides, dict) else []
    if not isinstance(overrides, dict):
        parsed = []
        for item in overrides:
            if "=" not in item:
                raise ScenarioError(f"{source} {item!r}: expected key.path=value")
            k, v = item.split("=", 1)
            parsed.append((k.strip(), parse_value(v.strip())))
        items = parsed
    valid = set(_valid_keys(Scenario))
    data = dict(data)
    for key, value in items:
        if key not in valid:
            near = difflib.get_close_matches(key, sorted(valid), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ScenarioError(f"{source} {key}: unknown key{hint}")
        parts = key.split(".")
        node = data
        for p in parts[:-1]:
            node[p] = dict(node.get(p, {}))
            node = node[p]
        node[parts[-1]] = value
    return data


def load_scenario(name_or_path: str | Path = "baseline", overrides=None, seed: int | None = None,
                  months: int | None = None) -> Scenario:
    """Load, extend, override and validate a scenario; raises ScenarioError with a one-line message.

    An event after the end of a scenario file's own run is an error; the events a shorter run (``months``
    or a ``run.months`` override) no longer reaches are left out (see :func:`_within_run`)."""
    if isinstance(name_or_path, Scenario):
        data, source = name_or_path.model_dump(by_alias=True), "scenario"
    else:
        data, path = _raw(name_or_path)
        source = str(path)
        data.setdefault("name", path.stem)
    data.pop("extends", None)  # resolved: the merged data stands alone
    own_months = None if isinstance(name_or_path, Scenario) else _months(data)
    data = apply_overrides(data, overrides)
    if seed is not None:
        data = apply_overrides(data, {"run.seed": seed}, "--seed")
    if months is not None:
        data = apply_overrides(data, {"run.months": months}, "--months")
    return _within_run(validate(data, source), own_months, source)


def _months(data: dict) -> int | None:
    """run.months of raw scenario data (the default where absent); None if it is not a whole number."""
    run = data.get("run", {})
    months = run.get("months", RunCfg.model_fields["months"].default) if isinstance(run, dict) else None
    return months if isinstance(months, int) and not isinstance(months, bool) else None


def _within_run(scn: Scenario, own_months: int | None, source: str) -> Scenario:
    """Refuse an event after the end of a scenario file's own run (``own_months``, its run.months before
    overrides, or the run asked for if longer): it would never happen. Leave out the events that only a
    shortened run does not reach (``--months 12`` on a scenario whose event is in its month 24), so that the
    resolved scenario holds the events of the run it describes. ``own_months`` None (a Scenario object
    given, not a file): nothing is refused."""
    start, months = scn.run.start, scn.run.months
    limit = max(own_months, months) if own_months is not None else math.inf
    kept = []
    for i, e in enumerate(scn.events):
        k = month_index(start, e.month)
        if k >= limit:
            raise ScenarioError(f"{source}: events.{i}.month: {e.month} is after the run's last month "
                                f"{month_label(start, limit - 1)} (run.start {start}, run.months {limit}), so "
                                "the event would never happen")
        if k < months:
            kept.append(e)
    return scn if len(kept) == len(scn.events) else scn.model_copy(update={"events": kept})


def validate(data: dict, source: str = "scenario") -> Scenario:
    """Validate a raw dict into a Scenario, turning pydantic's report into one ScenarioError line."""
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        raise ScenarioError(_format_error(err, source)) from None


def to_toml(scn: Scenario) -> str:
    """Serialise a resolved scenario to TOML (with tomli-w) that :func:`load_scenario` reads back to the same
    object: every value, floats at full precision."""
    import tomli_w

    data = scn.model_dump(by_alias=True, exclude_none=True)
    data.pop("extends", None)
    return tomli_w.dumps(data)
