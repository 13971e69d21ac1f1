"""The independent audit of a run folder's money (analysis/experiments/audit.py).

It must pass on real runs (a seeded random sample of scenarios, seeds and horizons; every scenario over 120
months in the slow test), catch defects planted in a copy of a run folder (a cash value, a dropped flow, a
contract's price, an event's value, a contract's status, ...), and apply its rules exactly on tiny folders
written by hand (delivery rationing, pro-rata payments of a defaulting lab, recovery at exit, a lab's rows
stopping at its exit).
"""

from __future__ import annotations

import ast
import csv
import shutil
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from abm.ledger import Ledger
from abm.model import ComputeMarket
from abm.records import CONTRACT_FIELDS, FLOW_FIELDS
from abm.scale import scale_world
from abm.scenario import available_scenarios, load_scenario
from analysis.cli import main
from analysis.experiments import audit as audit_module
from analysis.experiments.audit import REL_TOL, AuditError, audit_run
from analysis.runio import AGENT_COLUMNS, EVENT_COLUMNS, RUN_COLUMNS, _write_csv, run_scenario, write_run


def _sample(n: int, master: int = 20240601) -> list[tuple[str, int, int]]:
    """(scenario, seed, months) for n runs: scenarios without replacement, seeds and horizons at random."""
    rng = np.random.default_rng(master)
    names = available_scenarios()
    picked = rng.choice(len(names), size=min(n, len(names)), replace=False)
    return [(names[int(i)], int(rng.integers(1, 1_000_000)), int(rng.integers(36, 61))) for i in picked]


SAMPLE = _sample(10)


def _write(tmp: Path, scenario: str, seed: int, months: int, labs: int | None = None) -> Path:
    scn = load_scenario(scenario, seed=seed, months=months)
    if labs is not None:
        scn = scale_world(scn, labs)
    out = tmp / f"{scenario}-seed{seed}"
    write_run(run_scenario(scn), out, 0.0)
    return out


def _assert_passes(folder: Path, months: int) -> None:
    res = audit_run(folder)
    assert res.passed, "\n".join(map(str, res.discrepancies[:10]))
    assert res.months == months
    assert res.max_rel_error <= REL_TOL
    # Every agent row was reconciled, every contract and event kind that moves money was checked.
    n_rows = sum(1 for _ in open(folder / "agents.csv")) - 1
    assert res.by_check["cash"][0] == n_rows
    assert res.by_check["contract_flow"][0] > 0 and res.by_check["event_flow"][0] > 0
    assert res.by_check["conservation"][0] == 2 * months


# ------------------------------------------------------------------------------------------------ real runs
@pytest.mark.parametrize(("scenario", "seed", "months"), SAMPLE, ids=[f"{s}-{k}-{m}" for s, k, m in SAMPLE])
def test_audit_passes_on_a_sample_of_scenarios_and_seeds(tmp_path, scenario, seed, months):
    _assert_passes(_write(tmp_path, scenario, seed, months), months)


def test_audit_passes_on_a_world_of_many_labs(tmp_path):
    _assert_passes(_write(tmp_path, "baseline", 5, 24, labs=150), 24)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", available_scenarios())
@pytest.mark.parametrize("seed", [1, 2])
def test_audit_passes_on_every_scenario_over_120_months(tmp_path, scenario, seed):
    _assert_passes(_write(tmp_path, scenario, seed, 120), 120)


# ------------------------------------------------------------------------------------------------ planted defects
@cache
def _reference(root: str) -> Path:
    """historical_2023, seed 1, 36 months: rounds, seeds, announced rounds from investors and clouds,
    equity-for-compute deals, a founded lab, captive designs, defaults and exits."""
    return _write(Path(root), "historical_2023", 1, 36)


@pytest.fixture
def folder(tmp_path_factory, tmp_path) -> Path:
    """A fresh copy of the reference run folder, to tamper with."""
    ref = _reference(str(tmp_path_factory.getbasetemp() / "audit-reference"))
    return Path(shutil.copytree(ref, tmp_path / "run"))


def _load(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _save(path: Path, rows: list[dict]) -> None:
    with open(path, newline="", encoding="utf-8") as fh:
        columns = next(csv.reader(fh))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, columns, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def _failed(folder: Path, check: str) -> list:
    res = audit_run(folder)
    assert not res.passed
    found = [d for d in res.discrepancies if d.check == check]
    assert found, f"no {check!r} discrepancy among {[str(d) for d in res.discrepancies[:5]]}"
    return found


def test_the_reference_folder_passes_and_covers_the_event_driven_flows(folder):
    res = audit_run(folder)
    assert res.passed, "\n".join(map(str, res.discrepancies[:10]))
    kinds = {r["kind"] for r in _load(folder / "flows.csv")}
    assert {"seed_round", "equity_raise", "equity_investment", "equity_for_compute", "captive_design",
            "reserved_payment", "spot", "chip_purchase"} <= kinds
    events = {r["event"] for r in _load(folder / "events.csv")}
    assert {"default", "exit", "funding", "lab_entry"} <= events
    assert res.externals["investors"] < 0 and res.externals["rd_staff"] > 0


def test_a_tampered_cash_value_is_caught(folder):
    rows = _load(folder / "agents.csv")
    i = next(k for k, r in enumerate(rows) if r["type"] == "lab" and r["step"] == "20")
    true = float(rows[i]["cash_usd"])
    rows[i]["cash_usd"] = repr(true * (1 + 1e-7))
    _save(folder / "agents.csv", rows)
    bad = _failed(folder, "cash")
    assert [(d.agent, d.month) for d in bad] == [(rows[i]["name"], 20)]
    assert bad[0].expected == pytest.approx(true, rel=1e-12) and bad[0].rel_error > REL_TOL


def _drop_flow(folder, kind: str, step: int) -> dict:
    """Remove the first flow of ``kind`` in month ``step`` from the folder's flows.csv; returns it."""
    rows = _load(folder / "flows.csv")
    i = next(k for k, r in enumerate(rows) if r["kind"] == kind and int(r["step"]) == step)
    gone = rows.pop(i)
    _save(folder / "flows.csv", rows)
    return gone


def test_a_dropped_flow_is_caught(folder):
    gone = _drop_flow(folder, "rd_spend", 12)
    bad = _failed(folder, "cash")
    assert {d.agent for d in bad} == {gone["payer"]}
    assert min(d.month for d in bad) == 12


def test_a_dropped_contract_payment_is_caught(folder):
    gone = _drop_flow(folder, "reserved_payment", 10)
    bad = _failed(folder, "contract_flow")
    assert (bad[0].agent, bad[0].month) == (f"{gone['payer']} -> {gone['payee']}", 10)
    assert bad[0].expected == pytest.approx(float(gone["amount_usd"]), rel=1e-12) and bad[0].found == 0


@pytest.mark.parametrize("kind", ["reserved", "spot", "chip_order", "equity_for_compute"])
def test_a_changed_contract_term_is_caught(folder, kind):
    rows = _load(folder / "contracts.csv")
    i = next(k for k, r in enumerate(rows) if r["kind"] == kind and int(r["start"]) >= 1)
    field = "investment_usd" if kind == "equity_for_compute" else "unit_price_usd"
    rows[i][field] = repr(float(rows[i][field]) * 1.01)
    _save(folder / "contracts.csv", rows)
    bad = _failed(folder, "contract_flow")
    payer, payee = (rows[i]["seller"], rows[i]["buyer"]) if kind == "equity_for_compute" else \
        (rows[i]["buyer"], rows[i]["seller"])
    assert f"{payer} -> {payee}" in {d.agent for d in bad}
    assert min(d.month for d in bad) == int(rows[i]["signed"])
    # The ledger is rebuilt from the contract's terms, so the cash of both sides no longer reconciles either.
    assert {payer, payee} & {d.agent for d in _failed(folder, "cash")}


def test_a_changed_closing_month_is_caught(folder):
    rows = _load(folder / "contracts.csv")
    i = next(k for k, r in enumerate(rows) if r["kind"] == "reserved" and r["status"] == "defaulted"
             and int(r["closed"]) > int(r["start"]))
    rows[i]["closed"] = str(int(rows[i]["closed"]) - 1)
    _save(folder / "contracts.csv", rows)
    assert _failed(folder, "contract_status")
    assert _failed(folder, "contract_flow")


def test_a_changed_event_value_is_caught(folder):
    rows = _load(folder / "events.csv")
    for event in ("raise", "funding", "entry"):
        i = next(k for k, r in enumerate(rows) if r["event"] == event)
        rows[i]["value_usd"] = repr(float(rows[i]["value_usd"]) + 1e3)
    _save(folder / "events.csv", rows)
    assert len({d.month for d in _failed(folder, "event_flow")}) >= 2


def test_a_wrong_exit_cash_or_a_flow_after_the_exit_is_caught(folder):
    events = _load(folder / "events.csv")
    ex = next(r for r in events if r["event"] == "exit")
    ex["value_usd"] = repr(float(ex["value_usd"]) + 1e6)
    _save(folder / "events.csv", events)
    assert _failed(folder, "exit_cash")[0].agent == ex["agent"]
    flows = _load(folder / "flows.csv")
    later = int(ex["step"]) + 1
    flows.append({"month": "", "step": str(later), "payer": "end_users", "payee": ex["agent"],
                  "kind": "lab_revenue", "amount_usd": "1000.0"})
    _save(folder / "flows.csv", flows)
    assert _failed(folder, "lifetime")[0].month == later


def test_a_misdirected_flow_breaks_both_agents_cash(folder):
    rows = _load(folder / "flows.csv")
    labs = [r["name"] for r in _load(folder / "agents.csv") if r["type"] == "lab" and r["step"] == "30"]
    i = next(k for k, r in enumerate(rows) if r["kind"] == "lab_revenue" and int(r["step"]) == 30
             and r["payee"] == labs[0])
    rows[i]["payee"] = labs[1]
    _save(folder / "flows.csv", rows)
    assert {labs[0], labs[1]} <= {d.agent for d in _failed(folder, "cash")}


def test_a_negative_or_repeated_flow_row_is_caught(folder):
    rows = _load(folder / "flows.csv")
    rows.append(dict(rows[-1]))
    rows.append({**rows[5], "amount_usd": "-1.0", "kind": "opex"})
    _save(folder / "flows.csv", rows)
    assert len(_failed(folder, "flow_row")) == 2


# ------------------------------------------------------------------------------------------------ tiny folders
def _tiny(tmp_path: Path, *, agents, contracts=(), events=(), flows=()) -> Path:
    """A run folder by hand: agents as (step, name, type, cash[, h100e]); contracts, events and flows as dicts
    of the fields that matter (the rest filled in as abm run would write them)."""
    d = tmp_path / "tiny"
    d.mkdir()
    ids = {}
    with open(d / "agents.csv", "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(AGENT_COLUMNS)
        for step, name, typ, cash, *h in agents:
            ids.setdefault(name, len(ids) + 1)
            row = dict.fromkeys(AGENT_COLUMNS, "")
            row.update(month=f"2024-{step + 1:02d}", step=step, agent_id=ids[name], name=name, type=typ, kind="x",
                       alive=True, cash_usd=repr(float(cash)), h100e=repr(float(h[0] if h else 0.0)))
            w.writerow(row.values())
    defaults = {"unit": "usd_per_h100e_month", "take_or_pay_share": 1.0, "prepayment_usd": 0.0, "equity_share": 0.0,
                "investment_usd": 0.0, "effective_factor": 1.0, "ramp_months": 0, "exclusive": False, "closed": ""}
    with open(d / "contracts.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, CONTRACT_FIELDS, lineterminator="\n")
        w.writeheader()
        for i, c in enumerate(contracts):
            w.writerow({**defaults, "contract_id": i, "signed": c["start"], **c})
    with open(d / "events.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, EVENT_COLUMNS, lineterminator="\n")
        w.writeheader()
        for e in events:
            w.writerow({"month": "", "detail": "", **e})
    with open(d / "flows.csv", "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(FLOW_FIELDS)
        for step, payer, payee, kind, amount in flows:
            w.writerow(["", step, payer, payee, kind, repr(float(amount))])
    return d


RESERVED = {"buyer": "L", "seller": "C", "kind": "reserved", "volume_h100e": 1.0, "start": 0, "end": 3,
            "unit_price_usd": 10.0, "status": "active"}


def _world(lab_cash, cloud_cash, vendor_cash=(0, 50, 50), online=(5, 5, 5)):
    """A lab L, a cloud C and a vendor V over months 0-2 (the lab's rows as long as lab_cash)."""
    rows = [(t, "L", "lab", c) for t, c in enumerate(lab_cash)]
    rows += [(t, "C", "cloud", c, online[t]) for t, c in enumerate(cloud_cash)]
    rows += [(t, "V", "vendor", c) for t, c in enumerate(vendor_cash)]
    return rows


BASE_FLOWS = [(0, "endowment", "L", "endowment", 100), (0, "endowment", "C", "endowment", 1000),
              (1, "C", "V", "chip_purchase", 50)]
CHIPS = {"buyer": "C", "seller": "V", "kind": "chip_order", "volume_h100e": 1.0, "start": 1, "end": 5,
         "unit_price_usd": 50.0, "unit": "usd_per_h100e", "status": "active"}


def test_tiny_folder_reconciles_exactly(tmp_path):
    d = _tiny(tmp_path, agents=_world([90, 74, 84], [1010, 976, 986]),
              contracts=[RESERVED, CHIPS, {"buyer": "L", "seller": "C", "kind": "spot", "volume_h100e": 2.0,
                                           "start": 1, "end": 2, "unit_price_usd": 3.0, "status": "completed",
                                           "closed": 1}],
              flows=[*BASE_FLOWS, (0, "L", "C", "reserved_payment", 10), (1, "L", "C", "reserved_payment", 10),
                     (1, "L", "C", "spot", 6), (2, "L", "C", "reserved_payment", 10),
                     (2, "end_users", "L", "lab_revenue", 20)])
    res = audit_run(d)
    assert res.passed, res.discrepancies
    assert (res.agents, res.months, res.max_rel_error) == (3, 3, 0.0)
    assert res.by_check["cash"][0] == 9 and res.by_check["contract_flow"][0] == 5
    assert res.externals == {"endowment": -1100.0, "end_users": -20.0}
    assert "3 agents, 3 months" in res.summary() and res.summary().endswith("passed")


def test_tiny_folder_a_short_cloud_delivers_and_is_paid_pro_rata(tmp_path):
    """Online 0.5 H100e against 1 committed: the lab gets and pays half its contract's volume."""
    agents = _world([90, 80, 75], [1010, 970, 975], online=(5, 5, 0.5))
    flows = [*BASE_FLOWS, (0, "L", "C", "reserved_payment", 10), (1, "L", "C", "reserved_payment", 10),
             (2, "L", "C", "reserved_payment", 5)]
    assert audit_run(_tiny(tmp_path, agents=agents, contracts=[RESERVED, CHIPS], flows=flows)).passed
    full = [*flows[:-1], (2, "L", "C", "reserved_payment", 10)]
    agents = _world([90, 80, 70], [1010, 970, 980], online=(5, 5, 0.5))
    (tmp_path / "x").mkdir()
    bad = _failed(_tiny(tmp_path / "x", agents=agents, contracts=[RESERVED, CHIPS], flows=full), "contract_flow")
    assert [(d.month, d.expected, d.found) for d in bad] == [(2, 5.0, 10.0)]


@pytest.mark.parametrize(("endowment", "paid", "recovered", "left"), [
    (25, 5, 0, 0),      # defaults: pays what it has pro rata, nothing left to recover
    (100, 10, 20, 50),  # exits owing 20 for months 3-4 with 70 in hand: the claims are paid in full
    (35, 10, 5, 0),     # ... with 5 in hand: a quarter of the claims
])
def test_tiny_folder_default_and_recovery_at_exit(tmp_path, endowment, paid, recovered, left):
    contract = {**RESERVED, "end": 5, "status": "defaulted", "closed": 2}
    flows = [(0, "endowment", "L", "endowment", endowment), (0, "endowment", "C", "endowment", 1000),
             (1, "C", "V", "chip_purchase", 50), (0, "L", "C", "reserved_payment", 10),
             (1, "L", "C", "reserved_payment", 10), (2, "L", "C", "reserved_payment", paid)]
    if recovered:
        flows.append((2, "L", "C", "default_recovery", recovered))
    events = [{"step": 2, "event": "exit", "agent": "L", "value_usd": left}]
    if paid < 10:
        events.append({"step": 2, "event": "default", "agent": "L", "value_usd": 10 - paid})
    agents = _world([endowment - 10, endowment - 20, left], [1010, 970, 970 + paid + recovered])
    res = audit_run(_tiny(tmp_path, agents=agents, contracts=[contract, CHIPS], events=events, flows=flows))
    assert res.passed, res.discrepancies
    assert res.by_check["exit_cash"] == (1, 0.0)


def test_tiny_folder_a_default_without_its_event_is_caught(tmp_path):
    contract = {**RESERVED, "end": 5, "status": "defaulted", "closed": 2}
    flows = [(0, "endowment", "L", "endowment", 25), (0, "endowment", "C", "endowment", 1000),
             (1, "C", "V", "chip_purchase", 50), (0, "L", "C", "reserved_payment", 10),
             (1, "L", "C", "reserved_payment", 10), (2, "L", "C", "reserved_payment", 5)]
    events = [{"step": 2, "event": "exit", "agent": "L", "value_usd": 0}]
    agents = _world([15, 5, 0], [1010, 970, 975])
    bad = _failed(_tiny(tmp_path, agents=agents, contracts=[contract, CHIPS], events=events, flows=flows),
                  "contract_flow")
    assert [(d.month, d.expected, d.found) for d in bad] == [(2, 10.0, 5.0)]


def test_tiny_folder_unreadable_folders_raise(tmp_path):
    with pytest.raises(AuditError, match="not found"):
        audit_run(tmp_path / "nothing")
    d = _tiny(tmp_path, agents=_world([100, 100, 100], [1000, 1000, 1000], (0, 0, 0)),
              flows=[(0, "endowment", "L", "endowment", 100), (0, "endowment", "C", "endowment", 1000)])
    assert audit_run(d).passed
    text = (d / "flows.csv").read_text()
    (d / "flows.csv").write_text(text.replace("amount_usd", "amount"))
    with pytest.raises(AuditError, match="no column 'amount_usd'"):
        audit_run(d)
    (d / "flows.csv").write_text(text.replace("1000.0", "lots"))
    with pytest.raises(AuditError, match="not a number"):
        audit_run(d)
    (d / "flows.csv").unlink()
    with pytest.raises(AuditError, match="no flows.csv"):
        audit_run(d)


# ------------------------------------------------------------------------------------------------ the flow log
def test_the_ledger_logs_transfers_summed_per_month_payer_payee_and_kind():
    led = Ledger()
    a, b = led.open("a"), led.open("b")
    led.transfer("investors", a, 5.0, "equity_raise")      # not logged: the log is off
    led.record_flows()
    led.transfer("investors", a, 1.0, "equity_raise")
    led.transfer_many([a, a, b], [b, b, a], [2.0, 3.0, 0.0], "spot")
    led.transfer(a, "rd_staff", 0.5, "rd_spend")
    led.transfer_many([a], [b], [4.0], "reserved_payment")
    led.close_month(0)
    led.transfer(b, a, 7.0, "spot")
    led.close_month(1)
    rows = [(step, led.names[p], led.names[q], led.log.kinds[k], x)
            for step, *cols in led.log.summed(len(led.names)) for p, q, k, x in zip(*map(list, cols), strict=True)]
    assert rows == [(0, "investors", "a", "equity_raise", 1.0), (0, "a", "rd_staff", "rd_spend", 0.5),
                    (0, "a", "b", "reserved_payment", 4.0), (0, "a", "b", "spot", 5.0), (1, "b", "a", "spot", 7.0)]


def test_a_model_without_the_log_writes_no_flows(tmp_path):
    m = ComputeMarket("baseline", overrides={"run.months": 2}, rng=1, record_flows=False)
    m.step()
    m.step()
    assert m.ledger.log is None and list(m.iter_flow_rows()) == []
    write_run(m, tmp_path / "r", 0.0)
    assert (tmp_path / "r" / "agents.csv").is_file() and not (tmp_path / "r" / "flows.csv").exists()


def test_tables_are_written_as_the_csv_writer_would(tmp_path):
    """The column writers of agents.csv, contracts.csv, events.csv, runs.csv and flows.csv give the bytes of
    the generic row writer, names that need quoting, empty cells and booleans included."""
    m = ComputeMarket("baseline", overrides={"run.months": 3}, rng=2)
    for _ in range(3):
        m.step()
    m.labs[0].name = 'Acme, "Inc."'
    m.labs[1].name = "two\nlines"
    m.log_event("note", m.labs[0].name, 'detail, "quoted"', 0)  # an int value stays an int in events.csv
    write_run(m, tmp_path / "run", 0.0)
    slow = {
        "agents": (AGENT_COLUMNS, m.iter_agent_rows()),
        "contracts": (CONTRACT_FIELDS, m.iter_contract_rows()),
        "events": (EVENT_COLUMNS, ([e.get(c) for c in EVENT_COLUMNS] for e in m.events_log)),
        "runs": (RUN_COLUMNS, ([r[c] for c in RUN_COLUMNS] for r in m.runs_log)),
        "flows": (FLOW_FIELDS, m.iter_flow_rows()),
    }
    for name, (cols, rows) in slow.items():
        _write_csv(tmp_path / f"{name}.csv", cols, rows)
        assert (tmp_path / "run" / f"{name}.csv").read_bytes() == (tmp_path / f"{name}.csv").read_bytes(), name
    agents = (tmp_path / "run" / "agents.csv").read_bytes()
    assert b'"Acme, ""Inc."""' in agents and b'"two\nlines"' in agents
    assert b',"detail, ""quoted""",0\n' in (tmp_path / "run" / "events.csv").read_bytes()


def test_the_audit_reads_no_model_code():
    tree = ast.parse(Path(audit_module.__file__).read_text(encoding="utf-8"))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"__future__", "csv", "math", "sys", "dataclasses", "pathlib", "numpy", "pandas", "pyarrow"}, \
        imported


# ------------------------------------------------------------------------------------------------ command line
def test_cli_audit(folder, tmp_path, capsys):
    assert main(["audit", str(folder)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].endswith("passed") and "checks" in out[0]
    rows = _load(folder / "agents.csv")
    rows[100]["cash_usd"] = repr(float(rows[100]["cash_usd"]) + 1e3)
    _save(folder / "agents.csv", rows)
    assert main(["audit", str(folder), "--show", "3"]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert "FAILED" in out[0] and out[1].lstrip().startswith("cash:")
    assert main(["audit", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("abm: error:")
