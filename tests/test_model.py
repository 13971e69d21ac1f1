"""Whole-model tests of abm.model: invariants every month, determinism, batch_run, and mechanisms."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import mesa
import numpy as np
import pytest
from conftest import assert_invariants, check_invariants, checked_run, run_checked

from abm import economics as ec
from abm.markets import contracting
from abm.model import ComputeMarket
from abm.timeline import month_index

RUNS = [("baseline", 1), ("baseline", 2), ("mega_deal", 1), ("mega_deal", 2)]
INVARIANTS = {
    "a": "money conserved",
    "b": "deliveries within capacity online",
    "c": "negative cash only after a recorded default",
    "d": "no NaN/inf outside nullable columns",
    "e": "no active contract with an exited lab",
    "f": "HHI in [0, 10000], shares in [0, 1]",
    "g": "committed capacity equals the active contracts",
}


# --------------------------------------------------------------------------------- invariants, full runs


@pytest.fixture(scope="module")
def full_runs():
    """The four full 120-month runs, invariants checked after every step (cached across tests)."""
    return {key: checked_run(*key) for key in RUNS}


@pytest.mark.slow
@pytest.mark.parametrize("key", RUNS, ids=[f"{s}-{seed}" for s, seed in RUNS])
@pytest.mark.parametrize("code", sorted(INVARIANTS), ids=[f"{c}-{d.replace(' ', '_')}" for c, d in
                                                         sorted(INVARIANTS.items())])
def test_invariant_every_month(full_runs, key, code):
    model, violations = full_runs[key]
    assert model.t == model.cfg.run.months == 120
    assert len(model.rows) == 120
    msgs = violations.get(code, [])
    assert not msgs, f"{INVARIANTS[code]}: {len(msgs)} violations, first: " + "; ".join(msgs[:3])


@pytest.mark.slow
@pytest.mark.parametrize("key", RUNS, ids=[f"{s}-{seed}" for s, seed in RUNS])
def test_full_run_exits_close_contracts(full_runs, key):
    """Every exited lab is dead, has an exit event, and its capacity contracts are no longer active."""
    model, _ = full_runs[key]
    book = model.book
    exited = [lab for lab in model.labs if not lab.alive]
    exits = {e["agent"] for e in model.events_log if e["event"] == "exit"}
    assert {lab.name for lab in exited} == exits
    assert sum(r["lab_exits"] for r in model.rows) == len(exited)
    active = book.active_capacity_rows()
    for lab in exited:
        assert lab.exit_month is not None
        mine = np.flatnonzero((book.buyer == lab.unique_id) & np.isin(book.kind, (0, 3)))
        assert not np.isin(mine, active).any(), lab.name
        # A defaulted contract was closed in the month of the exit, no later.
        closed_default = mine[book.status[mine] == 2]
        assert (book.closed[closed_default] == lab.exit_month).all(), lab.name


@pytest.mark.slow
def test_mega_deal_full_run_differs_from_baseline(full_runs):
    """Same seed: the runs agree before the event month and diverge from it (the event matters)."""
    base, _ = full_runs[("baseline", 1)]
    mega, _ = full_runs[("mega_deal", 1)]
    t_ev = month_index(mega.cfg.run.start, "2026-01")
    assert repr(base.rows[:t_ev]) == repr(mega.rows[:t_ev])
    assert repr(base.rows[t_ev]) != repr(mega.rows[t_ev])
    assert not any(e["event"] == "mega_deal" for e in base.events_log)


# ------------------------------------------------------------------------------------------ determinism


def _run(months: int, rng, scenario: str = "baseline") -> ComputeMarket:
    m = ComputeMarket(scenario, overrides={"run.months": months}, rng=rng)
    while m.running:
        m.step()
    assert m.t == months
    return m


def _fingerprint(m: ComputeMarket) -> dict[str, str]:
    """NaN-safe comparable form of everything a run writes out."""
    return {"rows": repr(m.rows), "agent_rows": repr(m.agent_rows), "contracts": repr(m.contracts_table()),
            "events": repr(m.events_log)}


@pytest.fixture(scope="module")
def runs36():
    return {seed: _fingerprint(_run(36, seed)) for seed in (7, 8)}


def test_same_seed_same_run(runs36):
    again = _fingerprint(_run(36, 7))
    for k, v in runs36[7].items():
        assert again[k] == v, f"{k} differs between two runs with seed 7"


def test_different_seed_different_run(runs36):
    assert runs36[7]["rows"] != runs36[8]["rows"]
    assert runs36[7]["agent_rows"] != runs36[8]["agent_rows"]


def test_default_seed_is_scenario_seed():
    """Without rng the model uses run.seed (1 in baseline): same as passing rng=1, different from rng=2."""
    a = ComputeMarket("baseline", overrides={"run.months": 12})
    assert a.cfg.run.seed == 1
    while a.running:
        a.step()
    assert _fingerprint(a) == _fingerprint(_run(12, 1))
    assert _fingerprint(a)["rows"] != _fingerprint(_run(12, 2))["rows"]


def test_same_run_across_processes():
    """No dependence on str hashing (set/dict order of names) nor on the number of BLAS threads: two
    interpreters, two hash seeds and two thread counts, one run."""
    code = ("import hashlib; from abm.model import ComputeMarket\n"
            "m = ComputeMarket('mega_deal', overrides={'run.months': 30}, rng=7)\n"
            "while m.running: m.step()\n"
            "s = repr(m.rows) + repr(m.agent_rows) + repr(m.contracts_table()) + repr(m.events_log)\n"
            "print(hashlib.sha256(s.encode()).hexdigest())\n")
    root = Path(__file__).resolve().parent.parent
    out = []
    for hs, threads in (("0", "1"), ("12345", "2")):
        env = {**os.environ, "PYTHONHASHSEED": hs, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
               "MKL_NUM_THREADS": threads}
        res = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                             timeout=120, check=True)
        out.append(res.stdout.strip())
    assert len(out[0]) == 64 and out[0] == out[1]


@pytest.mark.slow
def test_a_big_world_does_not_depend_on_the_number_of_blas_threads():
    """At 25,000 labs a month has about 25,000 contract requests; a BLAS dot product of more than 10,000 terms
    is split over threads, so a sum taken with one would change in its last bits with the number of cores."""
    code = ("import hashlib; from abm.model import ComputeMarket; from abm.scale import scale_world\n"
            "from abm.scenario import load_scenario\n"
            "m = ComputeMarket(scale_world(load_scenario('baseline', seed=1, months=2), 25000), record_flows=False)\n"
            "while m.running: m.step()\n"
            "s = repr(m.rows).encode() + b''.join(a.tobytes() for f in m.agent_frames for a in f[2:])\n"
            "print(hashlib.sha256(s).hexdigest())\n")
    root = Path(__file__).resolve().parent.parent
    out = []
    for threads in ("1", "2"):
        env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        res = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                             timeout=300, check=True)
        out.append(res.stdout.strip())
    assert len(out[0]) == 64 and out[0] == out[1]


# -------------------------------------------------------------------------------------------- batch_run


def test_kappa_keyword_reaches_config():
    assert ComputeMarket(capital__kappa=2.0).cfg.capital.kappa == 2.0
    assert ComputeMarket("baseline", overrides={"capital.kappa": 0.5}, rng=3).cfg.capital.kappa == 0.5
    assert ComputeMarket().cfg.capital.kappa == 1.5  # schema default, baseline does not set it


def test_batch_run_sweeps_kappa():
    results = mesa.batch_run(ComputeMarket, parameters={"scenario": "baseline", "capital__kappa": [1.0, 2.0]},
                             rng=[1, 2], max_steps=24, number_processes=1, data_collection_period=-1,
                             display_progress=False)
    assert len(results) == 4
    reporters = ("lab_hhi_compute", "entry_barrier_usd", "frontier_capability", "spot_price_usd_per_h100e_hour",
                 "labs_active", "cloud_hhi_capacity")
    for r in results:
        for k in reporters:
            assert k in r and math.isfinite(r[k]), k
        assert r["Step"] == 24
        assert 0 <= r["lab_hhi_compute"] <= 10_000
    combos = {(r["capital__kappa"], r["rng"]) for r in results}
    assert combos == {(1.0, 1), (2.0, 1), (1.0, 2), (2.0, 2)}
    by = {(r["capital__kappa"], r["rng"]): r for r in results}
    # The reporters are the model's own timeseries values at the last step.
    direct = ComputeMarket("baseline", capital__kappa=2.0, rng=1)
    for _ in range(24):
        direct.step()
    assert direct.cfg.capital.kappa == 2.0
    for k in reporters:
        assert by[(2.0, 1)][k] == direct.rows[-1][k], k
    # The sweep changes the outcome: kappa shapes who gets the investor money when rounds compete for the
    # pool (capital shares move first; in seed 2 no two rounds compete in the first 24 months).
    swept = [k for k in by[(1.0, 1)] if k not in ("capital__kappa", "rng", "Step", "RunId", "iteration", "scenario")]
    assert "lab_hhi_capital" in swept
    assert by[(1.0, 1)]["lab_hhi_capital"] != by[(2.0, 1)]["lab_hhi_capital"]


# ------------------------------------------------------------------------------------------- mechanisms


@pytest.fixture(scope="module")
def mega_step():
    """mega_deal run to just before its event month, a snapshot, then the event month itself."""
    m = ComputeMarket("mega_deal", overrides={"run.months": 36}, rng=1)
    t_ev = month_index(m.cfg.run.start, "2026-01")
    assert t_ev == 24
    run_checked(m, max_steps=t_ev)
    assert m.t == t_ev
    aws = next(c for c in m.clouds if c.name == "AWS")
    before = {"committed": m.committed.copy(), "n_contracts": len(m.book), "kw": aws.captive_vendor.kw,
              "ecosystem": m.env.ecosystem_factor}
    m.step()
    return m, before


def test_mega_deal_contract_terms(mega_step):
    m, before = mega_step
    assert_invariants(m)
    ev = m.cfg.events[0]
    table = m.contracts_table()
    deals = [c for c in table[before["n_contracts"]:]
             if c["buyer"] == "Anthropic" and c["seller"] == "AWS" and c["ramp_months"] == 48]
    assert len(deals) == 1
    d = deals[0]
    assert d["kind"] == "reserved" and d["status"] == "active"
    assert d["start"] == 24 and d["end"] - d["start"] == 120 and d["signed"] == 24
    # Volume from power: 5 GW over kW per H100e of Trainium (the captive line) times PUE.
    assert d["volume_h100e"] == pytest.approx(ev.gw * 1e6 / (before["kw"] * m.cfg.cloud_params.pue), rel=1e-12)
    # Captive chips carry the ecosystem discount (events fire before the month's environment update, so
    # the factor is the one in force at the start of the month; either end of the month is accepted).
    lo, hi = sorted((before["ecosystem"], m.env.ecosystem_factor))
    assert lo * (1 - 1e-12) <= d["effective_factor"] <= hi * (1 + 1e-12)
    assert d["effective_factor"] < 1.0
    # Total value: sum over the term of the linearly ramped volume times the unit price.
    k = np.arange(120)
    ramped = d["volume_h100e"] * np.minimum(1.0, (k + 1) / 48)
    assert float(ramped.sum() * d["unit_price_usd"]) == pytest.approx(1.1e11, rel=1e-6)
    assert float(m.book.remaining_value(24, [d["contract_id"]])[0]) == pytest.approx(1.1e11, rel=1e-6)
    assert any(e["event"] == "mega_deal" and e["agent"] == "Anthropic" and e["step"] == 24
               and e["value_usd"] == 1.1e11 for e in m.events_log)
    assert m.network.has_edge("Anthropic", "AWS", key=d["contract_id"])


def test_mega_deal_commits_aws_capacity(mega_step):
    """AWS's committed row moves by exactly the contracts signed and released in the event month."""
    m, before = mega_step
    horizon = m.committed.shape[1]
    delta = m.committed - before["committed"]
    expect = np.zeros_like(delta)
    book = m.book
    for r in range(len(book)):
        if book.kind[r] not in (0, 3):
            continue
        ci = next(c.idx for c in m.clouds if c.unique_id == int(book.seller[r]))
        if book.signed[r] == 24:
            prof = book.profile(r, horizon)
            if book.status[r] == 2 and book.closed[r] == 24:
                prof[:25] = 0.0  # signed and released in the same month: only past months stay
            expect[ci] += prof
        elif book.status[r] == 2 and book.closed[r] == 24:
            prof = book.profile(r, horizon)
            prof[:25] = 0.0
            expect[ci] -= prof
    np.testing.assert_allclose(delta, expect, rtol=0, atol=1e-6 * max(np.abs(m.committed).max(), 1.0))
    aws = next(c for c in m.clouds if c.name == "AWS")
    mega = next(c for c in m.contracts_table() if c["buyer"] == "Anthropic" and c["ramp_months"] == 48)
    vol = mega["volume_h100e"]
    # Ramp: 1/48 of the volume in the first month, all of it from month 24+47 until the end.
    assert delta[aws.idx, 24] >= vol / 48 * (1 - 1e-9)
    assert m.committed[aws.idx, 24 + 47] >= vol * (1 - 1e-9)
    assert m.committed[aws.idx, 24 + 119] >= vol * (1 - 1e-9)
    assert delta[aws.idx, 144:].max() <= 1e-6 * vol  # nothing committed by the deal past its end


def _insolvent_model():
    """Baseline with no investor money, no equity deals and no entry; xAI left with $1,000 at month 0."""
    m = ComputeMarket("baseline", overrides={"capital.inflow_usd_month": 0.0,
                                             "policy.equity_for_compute_allowed": False,
                                             "entry.rate_per_month": 0.0, "run.months": 12}, rng=3)
    lab = next(lab for lab in m.labs if lab.name == "xAI")
    m.ledger.transfer(lab, "investors", lab.cash - 1_000.0, "test_drain")
    return m, lab


def test_insolvent_lab_defaults_and_exits():
    m, lab = _insolvent_model()
    book = m.book
    mine = np.flatnonzero((book.buyer == lab.unique_id) & (book.kind == 0))
    assert mine.size == 1 and book.status[mine[0]] == 0
    cw = next(c for c in m.clouds if c.unique_id == int(book.seller[mine[0]]))
    vol = float(book.volume[mine[0]])
    committed_next = m.committed[cw.idx, 1:13].copy()
    n_before = len(book)
    m.step()
    assert_invariants(m)
    assert not lab.alive and lab.exit_month == 0
    kinds = [e["event"] for e in m.events_log if e["agent"] == "xAI"]
    assert "default" in kinds and "exit" in kinds
    book = m.book
    mine = np.flatnonzero((book.buyer == lab.unique_id) & np.isin(book.kind, (0, 3)))
    assert not np.isin(mine, book.active_capacity_rows()).any()
    assert book.status[mine[0]] == 2 and book.closed[mine[0]] == 0
    # The freed capacity is no longer committed from the next month on (other labs' new contracts at the
    # same cloud this month are added back).
    new = [r for r in range(n_before, len(book)) if book.kind[r] in (0, 3) and book.seller[r] == cw.unique_id]
    added = sum((book.profile(r, m.committed.shape[1])[1:13] for r in new), np.zeros(12))
    np.testing.assert_allclose(committed_next + added - m.committed[cw.idx, 1:13], vol, rtol=1e-9)
    assert m.rows[-1]["lab_exits"] == 1
    assert lab.name not in {r[3] for r in m.agent_rows if r[1] == 0 and r[6]}
    # Later months: the lab stays out of the market and out of agent rows.
    for _ in range(3):
        m.step()
        assert_invariants(m)
    assert not lab.alive
    assert lab.name not in {r[3] for r in m.agent_rows if r[1] >= 1}
    assert not m.network.has_edge("xAI", cw.name)


def test_check_invariants_detects_violations():
    """The invariant checker itself flags broken states (so the full-run tests can fail)."""
    m, lab = _insolvent_model()
    m.step()
    assert check_invariants(m) == []
    m.ledger.balance[lab.account] -= 5.0  # money from nowhere (a)
    other = next(x for x in m.labs if x.alive)
    m.ledger.balance[other.account] -= other.cash + 1e3  # negative cash without default (c)
    m.rows[-1]["lab_hhi_compute"] = float("inf")  # (d) and (f)
    m.clouds[0].delivered = m.clouds[0].online * 2  # (b)
    m.committed[0, m.t + 3] += 1e6  # (g)
    codes = {c for c, _ in check_invariants(m)}
    assert {"a", "b", "c", "d", "f", "g"} <= codes
    book = m.book
    row = int(np.flatnonzero(book.buyer == lab.unique_id)[0])
    book.cols["status"][row] = 0  # (e): a contract of the exited lab made active again
    assert "e" in {c for c, _ in check_invariants(m)}


def _lab_for_quote(m):
    """A lab with obligations and a positive burn (so cash matters to both coverage and runway)."""
    for lab in m.alive_labs():
        if m.lab_obligations(lab) > 0 and lab.net_burn() > 0 and lab.runway() < 240:
            return lab
    raise AssertionError("no lab with obligations and positive burn")


def test_quote_price_rises_when_cash_falls():
    """Rubinstein patience and default risk: a poorer lab gets a worse (higher) bargained price."""
    m = ComputeMarket("baseline", overrides={"run.months": 12}, rng=1)
    for _ in range(3):
        m.step()
    lab = _lab_for_quote(m)
    term = 12
    cash = lab.cash
    full = {c.name: contracting.quote_price(m, lab, c, term) for c in m.clouds}
    r_full, cov_full = lab.runway(), lab.coverage()
    terms_full = {c.name: contracting.cloud_terms(m, lab, [c], term, 0.0) for c in m.clouds}
    m.ledger.transfer(lab, "investors", 0.2 * cash, "test")
    low = {c.name: contracting.quote_price(m, lab, c, term) for c in m.clouds}
    r_low, cov_low = lab.runway(), lab.coverage()
    terms_low = {c.name: contracting.cloud_terms(m, lab, [c], term, 0.0) for c in m.clouds}
    m.ledger.transfer("investors", lab, 0.2 * cash, "test")
    assert lab.cash == pytest.approx(cash, rel=1e-12)
    assert {c.name: contracting.quote_price(m, lab, c, term) for c in m.clouds} == full  # the quote has no side effects
    assert r_low < r_full and cov_low < cov_full
    finite = [n for n in full if math.isfinite(full[n]) and math.isfinite(low[n])]
    assert finite, (full, low)
    for n in finite:
        cmin_f, alt_f, beta_f = terms_full[n]
        cmin_l, alt_l, beta_l = terms_low[n]
        assert alt_l == alt_f  # the outside option (spot) does not depend on the lab's cash
        assert beta_l[0] < beta_f[0]  # shorter runway: more impatient, smaller bargaining weight
        assert cmin_l[0] >= cmin_f[0]  # lower coverage: higher default risk premium
        assert low[n] > full[n], n
        # The quote is the Nash split between the cloud's minimum and the lab's outside option.
        assert full[n] == pytest.approx(float(ec.nash_price(alt_f, cmin_f, beta_f)[0]), rel=1e-12)
        assert cmin_f[0] <= full[n] <= alt_f


def test_rubinstein_weight_tracks_cost_of_capital():
    """Same lab, same moment: the more patient cloud (lower cost of capital) extracts a higher price."""
    m = ComputeMarket("baseline", overrides={"run.months": 12}, rng=1)
    for _ in range(3):
        m.step()
    lab = _lab_for_quote(m)
    azure = next(c for c in m.clouds if c.name == "Azure")  # 7% cost of capital
    lam = next(c for c in m.clouds if c.name == "Lambda")  # 14%
    cmin_a, alt_a, b_a = contracting.cloud_terms(m, lab, [azure], 12, 0.0)
    cmin_l, alt_l, b_l = contracting.cloud_terms(m, lab, [lam], 12, 0.0)
    assert b_a[0] < b_l[0]  # the lab's weight is lower against the patient cloud
    assert alt_a == alt_l
    # Holding the cloud's reservation price fixed, the patient cloud's weight gives the higher price.
    p_a = float(ec.nash_price(alt_a, cmin_a, b_a)[0])
    p_l = float(ec.nash_price(alt_a, cmin_a, b_l)[0])
    assert math.isfinite(p_a) and p_a > p_l
    if cmin_a[0] == cmin_l[0]:
        assert contracting.quote_price(m, lab, azure, 12) > contracting.quote_price(m, lab, lam, 12)


@pytest.mark.parametrize("overrides", [
    {"run.months": 1},
    {"generated_labs.n": 0},
    {"chips.delivery_lag_months": 0},
    {"chips.allocation_rule": "priority"},
    {"policy.max_lab_share_of_cloud": 0.05},
    {"policy.exclusivity_allowed": False, "policy.equity_for_compute_allowed": False},
    {"contracting.terms_months": [1]},
    {"background.volume_h100e": 0.0},
    {"capital.kappa": 10.0},
    {"chips.foundry_capacity_h100e_month": 1.0},
], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_extreme_valid_parameters_run(overrides):
    """Values at the edges of the schema's bounds still give a run that reaches its last month (30; 1 for
    run.months=1) and keeps every invariant of conftest (a)-(g) after each month.

    chips.foundry_capacity_h100e_month=1 (valid: gt=0) leaves an order book orders of magnitude above the
    capacity; the run must still complete with finite numbers (the markup's monthly log step is capped, so
    the excess demand cannot overflow it).
    """
    m = ComputeMarket("mega_deal", overrides={"run.months": 30, **overrides}, rng=3)
    violations = run_checked(m)
    assert m.t == m.cfg.run.months
    assert not violations, {k: v[:2] for k, v in violations.items()}


def test_market_queries_between_steps_do_not_change_the_run():
    """Asking the markets questions from Python (README) leaves the run as it would have been."""
    from abm.markets import entry

    plain, asked = ComputeMarket("baseline", rng=5), ComputeMarket("baseline", rng=5)
    for _ in range(14):
        plain.step()
        asked.step()
        lab = asked.alive_labs()[-1]
        entry.entry_barrier(asked)
        contracting.quote_price(asked, lab, asked.clouds[0], 36, 1e9)
        asked.lab_obligations(lab)
    assert repr(asked.rows) == repr(plain.rows)
