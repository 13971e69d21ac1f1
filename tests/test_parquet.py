"""Columnar outputs: ``abm run --format parquet`` and ``abm ensemble/compare --format parquet``.

A parquet run folder holds the same tables as a CSV one, with the same values (floats exactly) and, read back,
the same DataFrames; its columns are typed; its files are the same bytes on every run; every reader (report,
overview, animation, audit, ensembles and comparisons) gives the same result from either format; a broken
parquet file is one line and exit status 2. The columnar builders of ``abm.columns`` give exactly the rows
of ``abm.records``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from abm import columns as ac
from abm.columns import Coded
from abm.records import CONTRACT_FIELDS, FLOW_FIELDS
from abm.scenario import load_scenario
from analysis import tables
from analysis.cli import main
from analysis.experiments.audit import audit_run
from analysis.runio import AGENT_COLUMNS, run_scenario

ROOT = Path(__file__).resolve().parent.parent
TABLES = ("timeseries", "agents", "contracts", "events", "runs", "flows")
RUN = ["run", "baseline", "--months", "12", "--seed", "2", "--quiet"]


def _run(out: Path, *extra: str) -> Path:
    assert main([*RUN, "--out", str(out), *extra]) == 0
    return out


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    """The same 12-month baseline run (seed 2) as a CSV folder and as a parquet folder, each named ``run``."""
    base = tmp_path_factory.mktemp("parquet")
    return _run(base / "csv" / "run"), _run(base / "pq" / "run", "--format", "parquet")


def _csv_cells(path: Path) -> dict[str, list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return {c: [r[j] for r in rows[1:]] for j, c in enumerate(rows[0])}


def _one_line_error(capsys, *names: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith("abm: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for n in names:
        assert n in err, err
    return err


# ------------------------------------------------------------------------------------------------ the folder
def test_parquet_folder_holds_parquet_tables_instead_of_csv(folders):
    csv_dir, pq_dir = folders
    assert sorted(p.name for p in pq_dir.iterdir()) == sorted(
        [f"{t}.parquet" for t in TABLES] + ["run_info.json", "scenario.toml"])
    assert sorted(p.name for p in csv_dir.iterdir()) == sorted(
        [f"{t}.csv" for t in TABLES] + ["run_info.json", "scenario.toml"])
    assert (csv_dir / "scenario.toml").read_bytes() == (pq_dir / "scenario.toml").read_bytes()
    info_csv = json.loads((csv_dir / "run_info.json").read_text())
    info_pq = json.loads((pq_dir / "run_info.json").read_text())
    assert "format" not in info_csv and info_pq.pop("format") == "parquet"
    info_csv.pop("wall_time_s"), info_pq.pop("wall_time_s")
    assert info_csv == info_pq
    assert not list(pq_dir.parent.glob(".*tmp*")), "temporary folder left behind"


@pytest.mark.parametrize("table", TABLES)
def test_every_table_reads_back_as_the_csv_one(folders, table):
    """Same columns, dtypes and values (exactly) through the shared reader as pandas.read_csv gives; and each
    float column equals the CSV's text parsed with float() (no rounding on either side)."""
    csv_dir, pq_dir = folders
    want = pd.read_csv(csv_dir / f"{table}.csv")
    got = tables.read_table(pq_dir, table)
    assert len(got) > 0
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    cells = _csv_cells(csv_dir / f"{table}.csv")
    assert list(cells) == list(got.columns)
    for c in got.columns:
        if got[c].dtype == np.float64:
            exact = np.array([float(x) if x != "" else math.nan for x in cells[c]])
            assert np.array_equal(got[c].to_numpy(), exact, equal_nan=True), c
            assert (np.isnan(exact) == (np.array(cells[c]) == "")).all(), c
        elif got[c].dtype == np.int64:
            assert got[c].tolist() == [int(x) for x in cells[c]], c
        elif got[c].dtype == bool:
            assert [str(v) for v in got[c]] == cells[c], c
        else:
            assert [("" if pd.isna(v) else v) for v in got[c]] == cells[c], c


def test_columns_are_typed(folders):
    _, d = folders
    schema = {t: pq.read_schema(d / f"{t}.parquet") for t in TABLES}
    dictionary = pa.dictionary(pa.int32(), pa.string())
    want = {
        "timeseries": {"month": pa.string(), "step": pa.int64(), "labs_active": pa.int64(),
                       "lab_hhi_compute": pa.float64(), "spot_price_usd_per_h100e_hour": pa.float64()},
        "agents": {"month": pa.string(), "step": pa.int64(), "agent_id": pa.int64(), "name": dictionary,
                   "type": dictionary, "kind": dictionary, "alive": pa.bool_(), "cash_usd": pa.float64(),
                   "h100e": pa.float64(), "capability": pa.float64(), "obligations_usd": pa.float64()},
        "contracts": {"contract_id": pa.int64(), "buyer": dictionary, "seller": dictionary, "kind": dictionary,
                      "volume_h100e": pa.float64(), "start": pa.int64(), "end": pa.int64(),
                      "unit_price_usd": pa.float64(), "unit": dictionary, "ramp_months": pa.int64(),
                      "exclusive": pa.bool_(), "signed": pa.int64(), "status": dictionary, "closed": pa.int64()},
        "events": {"month": pa.string(), "step": pa.int64(), "event": dictionary, "agent": dictionary,
                   "detail": pa.string(), "value_usd": pa.float64()},
        "runs": {"step": pa.int64(), "lab": dictionary, "physical_flop": pa.float64(), "cost_usd": pa.float64()},
        "flows": {"month": pa.string(), "step": pa.int64(), "payer": dictionary, "payee": dictionary,
                  "kind": dictionary, "amount_usd": pa.float64()},
    }
    for t, cols in want.items():
        for c, typ in cols.items():
            assert schema[t].field(c).type == typ, (t, c, schema[t].field(c).type)
    # Empty cells are nulls: the lab-only columns for clouds and vendors, an open contract's closing month.
    agents = pq.read_table(d / "agents.parquet")
    others = pa.compute.not_equal(agents.column("type"), "lab").to_numpy(zero_copy_only=False)
    for c in ("capability", "efficiency", "obligations_usd", "cloud_equity_usd"):
        null = agents.column(c).is_null().to_numpy(zero_copy_only=False)
        assert others.any() and np.array_equal(null, others), c
    closed = pq.read_table(d / "contracts.parquet").column("closed")
    assert 0 < closed.null_count < len(closed)
    assert (pq.read_table(d / "timeseries.parquet").column("small_lab_survival_24m").null_count == 12)
    meta = pq.ParquetFile(d / "agents.parquet").metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_parquet_is_byte_identical_run_after_run(folders, tmp_path):
    """Another process (another string-hash seed) writes the same bytes; so does a rerun from scenario.toml."""
    _, d = folders
    again = tmp_path / "again"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    proc = subprocess.run([sys.executable, "-m", "analysis.cli", *RUN, "--out", str(again), "--format", "parquet"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    rerun = _run(tmp_path / "rerun", "--format", "parquet")
    for t in TABLES:
        assert (again / f"{t}.parquet").read_bytes() == (d / f"{t}.parquet").read_bytes(), t
        assert (rerun / f"{t}.parquet").read_bytes() == (d / f"{t}.parquet").read_bytes(), t


def test_force_replaces_a_parquet_folder_and_refuses_other_folders(folders, tmp_path, capsys):
    _, d = folders
    copy = tmp_path / "copy"
    shutil.copytree(d, copy)
    (copy / "run_info.json").unlink()  # still a run folder: it has timeseries.parquet
    assert main([*RUN, "--out", str(copy), "--format", "parquet"]) == 2
    _one_line_error(capsys, "--force")
    assert main([*RUN, "--out", str(copy), "--format", "parquet", "--force"]) == 0
    assert (copy / "run_info.json").is_file()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main([*RUN, "--out", str(other), "--format", "parquet", "--force"]) == 2
    _one_line_error(capsys, "not a run folder")
    assert (other / "notes.txt").read_text() == "mine"


# ------------------------------------------------------------------------------------------------ builders
@pytest.fixture(scope="module")
def model():
    scn = load_scenario("mega_deal", seed=3, months=30)
    m = run_scenario(scn)
    m.labs[0].name = 'Acme, "Inc."'  # names are data, not syntax
    return m


def _column_values(col) -> list:
    if isinstance(col, Coded):
        return col.decode()
    if isinstance(col, np.ma.MaskedArray):
        return [None if masked else int(v) for v, masked in zip(col.data.tolist(), col.mask.tolist(), strict=True)]
    if isinstance(col, np.ndarray):
        return col.tolist()
    return list(col)


def _empty(v) -> bool:
    return v is None or (isinstance(v, str) and v == "") or (isinstance(v, float) and math.isnan(v))


def _same(a, b) -> bool:
    """A column value against a row value: equal and of the same type (bool, int, float, str), or both empty
    (NaN and None in a column, "" in a row)."""
    if _empty(a) or _empty(b):
        return _empty(a) and _empty(b)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("table", ["agents", "contracts", "flows"])
def test_columnar_builders_give_exactly_the_rows(model, table):
    cols, rows, names = {
        "agents": (ac.agent_columns(model), list(model.iter_agent_rows()), AGENT_COLUMNS),
        "contracts": (ac.contract_columns(model), list(model.iter_contract_rows()), CONTRACT_FIELDS),
        "flows": (ac.flow_columns(model), list(model.iter_flow_rows()), FLOW_FIELDS),
    }[table]
    assert list(cols) == list(names) and len(rows) > 100
    for j, c in enumerate(names):
        values = _column_values(cols[c])
        assert len(values) == len(rows), c
        bad = [(i, v, r[j]) for i, (v, r) in enumerate(zip(values, rows, strict=True)) if not _same(v, r[j])]
        assert not bad, (c, bad[:3])


def test_flow_pieces_are_whole_months_and_join_to_the_table(model):
    whole = ac.flow_columns(model)
    pieces = list(ac.flow_column_chunks(model, rows=500))
    assert len(pieces) > 3
    steps = [p["step"] for p in pieces]
    assert all(a[-1] < b[0] for a, b in zip(steps, steps[1:], strict=False))  # a month is never split
    for c in FLOW_FIELDS:
        joined = sum((_column_values(p[c]) for p in pieces), [])
        assert joined == _column_values(whole[c]), c


def test_typed_columns_from_values_and_from_csv_text_agree():
    values = {"i": [1, None, 3], "f": [1.5, float("nan"), 2.0], "m": [1, 2.5, None], "s": ["a", None, "b, c"],
              "b": [True, False, True], "none": [None, None, None]}
    typed = {c: ac.typed_column(v) for c, v in values.items()}
    assert isinstance(typed["i"], np.ma.MaskedArray) and typed["i"].dtype == np.int64
    assert typed["f"].dtype == np.float64 and typed["m"].dtype == np.float64 and typed["none"].dtype == np.float64
    assert typed["b"].dtype == bool and typed["s"] == ["a", None, "b, c"]
    text = "i,f,m,s,b,none\n1,1.5,1,a,True,\n,,2.5,,False,\n3,2.0,,\"b, c\",True,\n"
    assert tables.parquet_bytes(tables.csv_text_columns(text)) == tables.parquet_bytes(typed)


# ------------------------------------------------------------------------------------------------ readers
def _report_text(d: Path) -> str:
    assert main(["report", str(d)]) == 0
    return (d / "report.html").read_text(encoding="utf-8").replace(str(d), "DIR")


def test_report_overview_and_animation_are_the_same_from_parquet(folders, capsys):
    csv_dir, pq_dir = folders
    a, b = _report_text(csv_dir), _report_text(pq_dir)
    assert re.search(r"timeseries\.parquet, agents\.parquet, contracts\.parquet and runs\.parquet", b)
    assert a == b.replace(".parquet", ".csv")
    assert a.count("<img") >= 7
    for d in folders:
        assert main(["overview", str(d)]) == 0
        assert main(["animate", str(d), "--every", "11", "--fps", "4"]) == 0
    assert (csv_dir / "overview.png").read_bytes() == (pq_dir / "overview.png").read_bytes()
    assert (csv_dir / "animation.gif").read_bytes() == (pq_dir / "animation.gif").read_bytes()
    capsys.readouterr()


def test_audit_reads_the_parquet_tables(folders, tmp_path, capsys):
    csv_dir, pq_dir = folders
    assert main(["audit", str(pq_dir)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].endswith("passed")
    a, b = audit_run(csv_dir), audit_run(pq_dir)
    assert b.passed and (a.checks, a.agents, a.months) == (b.checks, b.agents, b.months)
    assert b.by_check["cash"][0] == pq.ParquetFile(pq_dir / "agents.parquet").metadata.num_rows
    # A planted defect in the parquet cash is found: the audit reads these files, not some other copy.
    bad = tmp_path / "bad"
    shutil.copytree(pq_dir, bad)
    t = pq.read_table(bad / "agents.parquet")
    cash = t.column("cash_usd").to_numpy().copy()
    cash[100] += 1e3
    tables.write_table(bad / "agents.parquet", t.set_column(t.schema.get_field_index("cash_usd"), "cash_usd",
                                                            pa.array(cash)))
    assert main(["audit", str(bad), "--show", "2"]) == 1
    assert "cash" in capsys.readouterr().out


@pytest.mark.parametrize(("cmd", "file", "damage"), [
    ("report", "timeseries", "garbage"), ("overview", "timeseries", "garbage"), ("animate", "agents", "truncated"),
    ("audit", "flows", "truncated"), ("report", "contracts", "truncated"), ("audit", "contracts", "no_column"),
    ("report", "agents", "no_column"),
])
def test_a_broken_parquet_file_is_one_line_and_exit_2(folders, tmp_path, capsys, cmd, file, damage):
    d = tmp_path / "broken"
    shutil.copytree(folders[1], d, ignore=shutil.ignore_patterns("*.html", "*.png", "*.gif", "*.mp4"))
    path = d / f"{file}.parquet"
    if damage == "garbage":
        path.write_bytes(b"not a parquet file\n")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:  # a required column missing
        t = pq.read_table(path)
        drop = {"contracts": "closed", "agents": "alive"}[file]
        tables.write_table(path, t.drop_columns([drop]))
    assert main([cmd, str(d)]) == 2
    _one_line_error(capsys, str(path))
    assert not (d / "report.html").exists() and not (d / "overview.png").exists()


# ------------------------------------------------------------------------------------------------ ensembles
ENS = ["ensemble", "baseline", "--seeds", "3", "--months", "12", "--quiet"]


@pytest.fixture(scope="module")
def ensembles(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("ens")
    a, b = base / "csv", base / "pq"
    assert main([*ENS, "--out", str(a)]) == 0
    assert main([*ENS, "--out", str(b), "--format", "parquet"]) == 0
    return a, b


def test_ensemble_in_parquet_gives_the_same_summary(ensembles, tmp_path):
    a, b = ensembles
    assert (a / "ensemble.csv").read_bytes() == (b / "ensemble.csv").read_bytes()
    assert (a / "seeds.csv").read_bytes() == (b / "seeds.csv").read_bytes()
    seeds_pq = sorted(b.glob("seeds/*/timeseries.parquet"))
    assert len(seeds_pq) == 3 and not list(b.glob("seeds/*/timeseries.csv"))
    assert json.loads((b / "ensemble.json").read_text())["format"] == "parquet"
    assert "format" not in json.loads((a / "ensemble.json").read_text())
    # Each seed's file is the one abm run --format parquet writes for that seed, and holds the CSV's values.
    seed = int(seeds_pq[1].parent.name.rsplit("-", 1)[1])
    one = tmp_path / "one"
    assert main(["run", str(b / "scenario.toml"), "--seed", str(seed), "--out", str(one), "--format", "parquet",
                 "--quiet"]) == 0
    assert (one / "timeseries.parquet").read_bytes() == seeds_pq[1].read_bytes()
    csv_seed = a / "seeds" / seeds_pq[1].parent.name / "timeseries.csv"
    pd.testing.assert_frame_equal(tables.read_table(seeds_pq[1].parent, "timeseries"), pd.read_csv(csv_seed),
                                  check_exact=True)


def test_parquet_ensemble_resumes_and_refuses_another_format(ensembles, tmp_path, capsys):
    _, b = ensembles
    d = tmp_path / "resume"
    shutil.copytree(b, d)
    (d / "ensemble.csv").unlink()
    victim = sorted(d.glob("seeds/*"))[1]
    shutil.rmtree(victim)
    assert main([*ENS, "--out", str(d), "--format", "parquet"]) == 0
    assert (d / "ensemble.csv").read_bytes() == (b / "ensemble.csv").read_bytes()
    assert (victim / "timeseries.parquet").read_bytes() == (b / "seeds" / victim.name / "timeseries.parquet").read_bytes()
    assert main([*ENS, "--out", str(d)]) == 2  # CSV now, parquet there
    _one_line_error(capsys, "--format parquet there, csv now")
    # A broken seed file: one line naming it, and what to do.
    (victim / "timeseries.parquet").write_bytes(b"PAR1 broken")
    assert main([*ENS, "--out", str(d), "--format", "parquet"]) == 2
    _one_line_error(capsys, str(victim / "timeseries.parquet"), "delete it")


def test_compare_in_parquet_gives_the_same_comparison(tmp_path):
    args = ["compare", "baseline", "mega_deal", "--seeds", "2", "--months", "12", "--horizons", "6,12", "--quiet"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert main([*args, "--out", str(a)]) == 0
    assert main([*args, "--out", str(b), "--format", "parquet"]) == 0
    assert (a / "comparison.csv").read_bytes() == (b / "comparison.csv").read_bytes()
    assert len(list(b.glob("*/seeds/*/timeseries.parquet"))) == 4
    assert "--format parquet" in (b / "comparison.md").read_text()
    assert main(["report", str(b)]) == 0 and (b / "report.html").is_file()
