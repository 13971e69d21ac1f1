"""Mechanisms in small worlds: each test changes one input that a mechanism should respond to and checks the
direction of the response, against the same world and seed without the change (common random numbers).

- Utilization: with background buyers gone and lab money cut, capacity outruns demand and sits idle.
- Entry: potential entrants are funded by investors in the capital market, so entry follows the money.
- Captive lines: an owner enlarges its line when the saving over merchant chips pays the design cost.
- Exclusivity: an exclusive deal keeps its lab off other clouds when it needs more than the deal gives.
- Demand: a jump in every lab's capability raises what end users spend on AI, with potential demand unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest

from abm.model import ComputeMarket


def _run(scenario: str, months: int, seed: int = 3, **overrides) -> ComputeMarket:
    m = ComputeMarket(scenario, overrides={"run.months": months, **overrides}, rng=seed)
    for _ in range(months):
        m.step()
    return m


def _col(m: ComputeMarket, name: str) -> np.ndarray:
    return np.array([r[name] for r in m.rows], dtype=float)


def test_utilization_falls_below_one_when_demand_is_cut():
    """Background buyers bid their values and labs spend their money: with both cut, idle capacity finds no
    buyer at any price above operating cost and utilization falls well below 1 once the labs' cash runs
    down (third year); in the same world with demand intact capacity is sold out."""
    base = _run("baseline", 36)
    cut = _run("baseline", 36, **{"background.volume_h100e": 0.0, "demand.initial_usd_month": 1e6,
                                  "capital.inflow_usd_month": 0.0})
    u_base = _col(base, "cloud_utilization")[24:]
    u_cut = _col(cut, "cloud_utilization")[24:]
    assert u_base.min() > 0.95
    assert u_cut.max() < 0.9
    assert np.all(_col(cut, "cloud_utilization_background") == 0.0)
    # Labs' and background utilization add up to the total.
    assert _col(base, "cloud_utilization") == pytest.approx(
        _col(base, "cloud_utilization_labs") + _col(base, "cloud_utilization_background"), abs=1e-9)


def test_entry_follows_investor_money():
    """Entrants need investors: with plentiful inflow seed rounds close and labs enter; with inflow scarce the
    incumbents' rounds take the pool, seeds do not close in full and entry stops."""
    rich = _run("baseline", 36, **{"capital.inflow_usd_month": 2.5e10, "entry.rate_per_month": 1.0})
    poor = _run("baseline", 36, **{"capital.inflow_usd_month": 1.0e8, "entry.rate_per_month": 1.0})
    assert _col(rich, "lab_entries").sum() >= 5
    assert _col(poor, "lab_entries").sum() == 0
    # Every entrant's seed came from the investor pool (a seed_round transfer per entry).
    seeds = [e for e in rich.events_log if e["event"] == "entry"]
    assert len(seeds) == _col(rich, "lab_entries").sum()


def test_captive_line_grows_when_its_saving_pays_the_design():
    """Captive chips sell near cost while merchants carry a markup: owners enlarge their lines and captive
    capacity outgrows merchant capacity. With a design cost no saving can pay, lines stay as they were."""
    def growth(m: ComputeMarket, kind: str) -> float:
        caps = {v.name: v.capacity for v in m.vendors if v.kind == kind}
        first = {v.name: v.capacity_h100e_month for v in m.cfg.vendors if v.kind == kind}
        return sum(caps.values()) / sum(first.values())

    cheap = _run("baseline", 48)
    dear = _run("baseline", 48, **{"chips.captive_design_cost_usd": 1e15})
    assert growth(cheap, "captive") > growth(cheap, "merchant") > 1.0
    assert growth(dear, "captive") == pytest.approx(1.0)
    assert any(e["event"] == "captive_design" for e in cheap.events_log)
    assert not any(e["event"] == "captive_design" for e in dear.events_log)
    # The design cost left the market through its own sink.
    assert dear.ledger.of("chip_design") == 0.0 < cheap.ledger.of("chip_design")


DEAL = """name = "small_deal"
extends = "baseline"
[[events]]
month = "2024-07"
type = "mega_deal"
lab = "Anthropic"
cloud = "AWS"
value_usd = 1.0e9
term_months = 36
gw = 0.02
chip_kind = "captive"
ramp_months = 6
exclusive = {exclusive}
"""


@pytest.mark.parametrize("seed", [3, 4])
def test_exclusive_deal_keeps_its_lab_off_other_clouds(tmp_path, seed):
    """A deal smaller than what the lab needs (0.02 GW, about 12k H100e, for three years): plain, the lab
    buys the rest from other clouds while the deal runs; exclusive, every contract it signs in the term is
    with the deal's cloud, and it still signs some (it needs more than the deal gives)."""
    def signed_in_term(exclusive: bool) -> dict[str, float]:
        path = tmp_path / f"deal_{exclusive}.toml"
        path.write_text(DEAL.format(exclusive=str(exclusive).lower()))
        m = _run(str(path), 42, seed=seed)
        out: dict[str, float] = {}
        for c in m.contracts_table():
            if c["buyer"] == "Anthropic" and c["kind"] in ("reserved", "equity_for_compute") and 6 < c["signed"] < 42:
                out[c["seller"]] = out.get(c["seller"], 0.0) + c["volume_h100e"]
        return out

    plain, excl = signed_in_term(False), signed_in_term(True)
    assert sum(v for k, v in plain.items() if k != "AWS") > 0
    assert set(excl) == {"AWS"}
    assert excl["AWS"] > 0


def test_entry_barrier_is_the_price_fixed_point():
    """The barrier is the budget whose compute bill, priced at the terms that budget's coverage earns, costs
    exactly that budget (the entrant's price and its need agree)."""
    from abm import economics as ec
    from abm.markets import entry

    m = _run("baseline", 30)
    need = entry.entry_barrier(m)
    x = entry.entry_terms(m)
    en, cs = m.cfg.entry, 1 - m.cfg.efficiency.rd_share_init
    frac = 0.5 * (en.efficiency_fraction_lo + en.efficiency_fraction_hi)
    price = entry.entrant_price(m, entry.seed_median(m), need * cs)
    again = ec.capital_to_reach(x["target"], x["eff_front_then"] * frac, m.g_coef, m.gamma, m.flop_per_unit, price,
                                cs) / m.cfg.training.final_run_share
    assert again == pytest.approx(need, rel=1e-6)


def test_projected_barrier_has_no_start_switch():
    """The frontier's trend starts from its prior (Epoch's compute growth, Ho et al.'s efficiency growth) and
    data take over gradually: the projected barrier is above today's from month 0, and the ratio of the two
    moves smoothly instead of jumping when the second month of history arrives."""
    m = ComputeMarket("baseline", overrides={"run.months": 6}, rng=3)
    ratios = []
    for _ in range(6):
        m.step()
        r = m.rows[-1]
        ratios.append(r["entry_barrier_usd"] / r["entry_barrier_now_usd"])
    assert ratios[0] > 1.5
    assert max(ratios) / min(ratios) < 2.0


def test_absolute_capability_raises_spending():
    """A tenfold efficiency jump at the frontier lab, diffused to the others, raises every lab's capability
    once its next run finishes: end users spend more on AI (adoption rises) while potential demand follows the
    same path. With capability counted only relative to the best lab this would not move spending at all; with
    the nest scale at 0 it does not."""
    event = {"events": [{"month": "2024-02", "type": "algorithmic_breakthrough", "factor": 10.0}]}
    base = _run("baseline", 24)
    jump = _run("baseline", 24, **event)
    assert base.env.demand_hist == jump.env.demand_hist
    assert _col(jump, "frontier_capability")[-1] > _col(base, "frontier_capability")[-1] + 0.1
    assert _col(jump, "ai_adoption")[-1] > _col(base, "ai_adoption")[-1] + 0.05
    assert _col(jump, "end_user_demand_usd")[-1] > 1.1 * _col(base, "end_user_demand_usd")[-1]
    fixed = _run("baseline", 24, **{"demand.adoption_nest_scale": 0.0}, **event)
    assert np.allclose(_col(fixed, "ai_adoption"), 0.3)
