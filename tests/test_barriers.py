"""The small-lab study and the model pieces it rests on.

- Probe entrants: a copy of the world continues exactly as the world would; a probe's place in the markets'
  random orders comes from its own stream, so the world's draws are those it makes without the probe.
- A fixed R&D share stays fixed; a cash-rich entrant with no revenue buys compute (the spend rule does not hold
  it to what it happened to spend).
- The entry barrier's parts add up to it; the switches of the sensitivity analysis act.
- ``abm barriers`` end to end on a tiny grid: files, resume without recomputation, bad input.
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from abm.markets import entry
from abm.model import ComputeMarket
from analysis.cli import main
from analysis.experiments import barriers as B


def _world(months: int, run_months: int | None = None, seed: int = 5, **over) -> ComputeMarket:
    m = ComputeMarket("baseline", overrides={"run.months": run_months or months, **over}, rng=seed)
    for _ in range(months):
        m.step()
    return m


def _rows_equal(a: list[dict], b: list[dict]) -> bool:
    def same(x, y):
        return x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))

    return len(a) == len(b) and all(same(r[k], s[k]) for r, s in zip(a, b, strict=True) for k in r)


def test_a_copy_of_the_world_continues_exactly():
    m = _world(12, 24)
    c = copy.deepcopy(m)
    for _ in range(12):
        m.step()
        c.step()
    assert _rows_equal(m.rows, c.rows)


def test_random_order_leaves_probes_out_of_the_worlds_draws():
    """The world's permutation is drawn as if the probes were not there; they are put in from their own
    stream, and the world's generator ends in the same state."""
    m = _world(1)
    m.probe_rng = np.random.default_rng(7)
    items = np.arange(20)
    probe = np.zeros(20, dtype=bool)
    probe[[3, 11]] = True
    state = copy.deepcopy(m.rng.bit_generator.state)
    with_probes = m.random_order(items, probe)
    after_with = m.rng.bit_generator.state
    m.rng.bit_generator.state = state
    without = m.random_order(items[~probe], np.zeros(18, dtype=bool))
    assert m.rng.bit_generator.state == after_with
    assert sorted(with_probes.tolist()) == items.tolist()
    assert [x for x in with_probes.tolist() if x not in (3, 11)] == without.tolist()
    # With no probe at all the order is the plain permutation the markets drew before probes existed.
    m.rng.bit_generator.state = state
    plain = m.random_order(items, np.zeros(20, dtype=bool))
    m.rng.bit_generator.state = state
    assert plain.tolist() == items[m.rng.permutation(20)].tolist()


def test_a_probe_draws_nothing_from_the_worlds_stream_in_its_first_month():
    """Until the probe's orders have changed some other lab's decision, the world's generator advances as it
    would without the probe: after the month of entry its state is the same."""
    m = _world(24, 30)
    ref = copy.deepcopy(m)
    entry.admit_probe(m, 1e7, 0.6)
    m.step()
    ref.step()
    assert m.rng.bit_generator.state == ref.rng.bit_generator.state


def test_probe_entrant_is_an_ordinary_lab_with_a_fixed_strategy():
    m = _world(24, 40)
    lab = entry.admit_probe(m, 2e9, 0.5, rd_share=0.4)
    front = max(x.efficiency for x in m.labs if x.alive and not x.probe)
    assert lab.probe and lab.rd_fixed and lab.small
    assert lab.efficiency == pytest.approx(0.5 * front)
    assert lab.cash == pytest.approx(2e9)
    assert m.events_log[-1]["event"] == "probe_entry"
    for _ in range(12):
        m.step()
    assert lab.rd_share == 0.4
    assert not any(e["event"] == "entry" and e["agent"] == lab.name for e in m.events_log)
    free = entry.admit_probe(m, 2e9, 0.5, name="Probe-free", stream=1)
    start = free.rd_share
    for _ in range(6):
        m.step()
    assert not free.rd_fixed and free.rd_share != start


def test_a_cash_rich_entrant_buys_compute():
    """A new lab with $5B and no revenue grows its compute month after month instead of holding its seed:
    after a year it has bought far more than its first month's compute and spent a good part of its cash."""
    m = _world(24, 40)
    lab = entry.admit_probe(m, 5e9, 0.6)
    m.step()
    first = lab.compute
    for _ in range(12):
        m.step()
    assert lab.compute > 3 * max(first, 1.0)
    assert lab.capital_raised - lab.cash > 2.5e8  # before the spend rule's fix it spent about $6M a month


def test_barrier_parts_add_up():
    m = _world(18)
    parts = entry.entry_barrier(m, parts=True)
    assert parts["total"] == pytest.approx(entry.entry_barrier(m))
    assert parts["compute"] + parts["runway"] + parts["terms"] == pytest.approx(parts["total"], rel=1e-12)
    assert parts["compute"] > 0 and parts["runway"] > parts["compute"]
    row = m.rows[-1]
    assert row["entry_barrier_usd"] == pytest.approx(row["entry_barrier_compute_usd"] + row["entry_barrier_runway_usd"]
                                                     + row["entry_barrier_terms_usd"], rel=1e-9)


def test_group_prices_are_volume_weighted_and_empty_without_contracts():
    m = _world(12)
    prices = [r["reserved_price_small_usd_per_h100e_hour"] for r in m.rows]
    front = [r["reserved_price_frontier_usd_per_h100e_hour"] for r in m.rows]
    assert any(math.isfinite(p) for p in front)
    assert all(math.isnan(p) or p > 0 for p in prices + front)
    m.reserved_by_group["small"][:] = (2.0, 2.0 * 730.0 * 3.0)
    from abm.metrics import group_price

    assert group_price(m, "small") == pytest.approx(3.0)
    m.reserved_by_group["small"][:] = 0.0
    assert math.isnan(group_price(m, "small"))


def test_captive_growth_switch():
    """frozen: no captive design ever; need: designs whenever the need outgrows the line, at least as many
    as when the saving must pay for them."""
    def designs(rule: str) -> int:
        m = _world(48, **{"chips.captive_growth": rule})
        return sum(e["event"] == "captive_design" for e in m.events_log)

    assert designs("frozen") == 0
    assert designs("need") >= designs("saving") > 0


def test_spot_exclusive_switch_keeps_bound_labs_off_the_spot_market(tmp_path):
    text = """name = "excl"
extends = "baseline"
[[events]]
month = "2024-03"
type = "mega_deal"
lab = "Google DeepMind"
cloud = "AWS"
value_usd = 1.0e9
term_months = 36
gw = 0.05
chip_kind = "captive"
ramp_months = 6
exclusive = true
"""
    path = tmp_path / "excl.toml"
    path.write_text(text)

    def bound_lab_spot(flag: bool) -> float:
        m = ComputeMarket(str(path), overrides={"run.months": 30, "contracting.spot_exclusive": flag}, rng=4)
        total = 0.0
        for _ in range(30):
            m.step()
            lab = next(x for x in m.labs if x.name == "Google DeepMind")
            if 3 <= m.t < 30 and lab.alive:
                total += lab.spot_bought
        return total

    assert bound_lab_spot(True) == 0.0
    assert bound_lab_spot(False) > 0.0


def test_crossing_and_threshold():
    x = np.array([0.0, 1.0, 2.0])
    assert B.crossing(x, np.array([0.2, 0.4, 0.8])) == pytest.approx(1.25)
    assert B.crossing(x, np.array([0.6, 0.7, 0.8])) == -math.inf
    assert B.crossing(x, np.array([0.1, 0.2, 0.3])) == math.inf
    hits = np.zeros((10, len(B.SEED_GRID)))
    hits[:, 3:] = 1.0  # every seed succeeds from the fourth grid point on
    est, lo, hi = B.threshold_ci(hits)
    assert est == pytest.approx(10 ** (np.log10(B.SEED_GRID[2]) + 0.5 * 0.5))
    assert lo == pytest.approx(est) and hi == pytest.approx(est)


@pytest.mark.slow
def test_barriers_command_end_to_end(tmp_path, capsys):
    out = tmp_path / "bar"
    args = ["barriers", "baseline", "--seeds", "2", "--months", "12", "--entry-months", "6", "--follow", "3",
            "--compare", "public_compute", "--out", str(out), "--quiet"]
    assert main(args) == 0
    for name in ("barriers.md", "survival.csv", "thresholds.csv", "trajectory.csv", "strategy.csv",
                 "probe_effect.csv", "study.json", "results.jsonl"):
        assert (out / name).is_file(), name
    figs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert figs == sorted(["survival_map.png", "reach_map.png", "barrier_trajectory.png", "barrier_parts.png",
                           "price_gap.png", "strategy.png", "comparison.png"])
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 2 * 2 + 3 * 2  # map tasks (2 scenarios x 2 seeds) + strategy (3 gammas x 2 seeds)
    first = json.loads(lines[0])["result"]
    assert len(first["probes"]) in (len(B.SEED_GRID) * len(B.EFFICIENCY_GRID), len(B.RD_GRID))
    survival = (out / "survival.csv").read_text().splitlines()
    assert len(survival) == 1 + 2 * len(B.SEED_GRID) * len(B.EFFICIENCY_GRID)
    md = (out / "barriers.md").read_bytes()
    assert main(["report", str(out)]) == 0  # the HTML report includes the study and its figures
    html = (out / "report.html").read_text()
    assert html.count("<img") == 7 and "Seed capital for a 50% chance" in html
    # Resume: nothing left to compute, the same tables.
    before = {p.name: p.read_bytes() for p in out.glob("*.csv")}
    assert main(args) == 0
    assert {p.name: p.read_bytes() for p in out.glob("*.csv")} == before
    assert (out / "barriers.md").read_bytes() == md
    # Other arguments on the same folder: refused, folder untouched.
    assert main([*args[:-1], "--follow", "4", "--quiet"]) == 2
    assert "other arguments" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.glob("*.csv")} == before


def test_barriers_bad_input(tmp_path, capsys):
    out = tmp_path / "x"
    assert main(["barriers", "baseline", "--seeds", "1", "--out", str(out)]) == 2
    assert "--seeds must be >= 2" in capsys.readouterr().err
    assert main(["barriers", "baseline", "--compare", "nope", "--out", str(out)]) == 2
    assert "unknown scenario 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["barriers", "baseline", "--entry-months", "0", "--out", str(out)])
    assert exc.value.code == 2
    assert "--entry-months" in capsys.readouterr().err
    assert not out.exists()
