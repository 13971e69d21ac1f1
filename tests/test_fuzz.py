"""Bad input, fuzzed: invalid scenarios and invalid command lines must each end with exit status 2 and one
line ``abm: error: ...`` naming the field (or file, or flag), with no traceback and no output folder.

Hypothesis generates the scenarios as mutations of the shipped baseline, written to a TOML file and run
with ``abm run FILE --out DIR`` in this process: for every field of the schema, a value of the wrong type,
a negative, NaN, infinite or huge number, an unknown key at every level, a bad date; events after the end of
the run, before its start or naming labs, clouds or keys that do not exist; no cloud or no merchant vendor
(a world with no lab at the start is valid: tests/test_extreme.py); broken TOML; foundry shares that do not
sum to 1; contradictory settings (inverted ranges, duplicate names, owners, set events). The command lines are
bad flags, values, scenarios, folders and combinations of every command. Nothing here may start a simulation: the functions that would run one (``run_scenario``,
``make_executor``, the benchmark and the dashboard server) are replaced by ones that fail the test, so an
invalid input that passes validation shows up as such instead of running for minutes.

The totals tried are printed at the end of the module (``fuzz: N invalid scenarios, M invalid
invocations``).
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import io
import json
import math
import re
import string
import typing
from dataclasses import dataclass, field
from pathlib import Path

import annotated_types as at
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from abm.scenario import Scenario, _model_at, load_scenario
from analysis.cli import main

N_SCENARIOS = 1100
N_INVOCATIONS = 400
COUNTS = {"scenarios": 0, "invocations": 0}


class Accepted(AssertionError):
    """An invalid input got past validation and would have started a run."""


def _refuse(*args, **kwargs):
    raise Accepted("an invalid input passed validation and started a run")


@pytest.fixture(scope="module", autouse=True)
def guarded(tmp_path_factory, request):
    """Work in a scratch folder (default output folders land there) with every run-starting function
    replaced by one that fails; print the totals at the end of the module."""
    import analysis.bench
    import analysis.experiments.executors
    import analysis.runio
    import analysis.views.dashboard_server

    work = tmp_path_factory.mktemp("fuzz")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        mp.setattr(analysis.runio, "run_scenario", _refuse)
        mp.setattr(analysis.experiments.executors, "make_executor", _refuse)
        mp.setattr(analysis.bench, "run_bench", _refuse)
        mp.setattr(analysis.views.dashboard_server, "solara_command", _refuse)
        yield work
    line = f"fuzz: {COUNTS['scenarios']} invalid scenarios, {COUNTS['invocations']} invalid invocations"
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print("\n" + line)


def invoke(argv: list[str]) -> tuple[int, str, str]:
    """``abm ARGV`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def assert_refused(argv: list[str], names: list[str], absent: list[Path]) -> str:
    """``abm ARGV`` exits 2 with exactly one line ``abm: error: ...`` that contains every text in ``names``,
    no traceback, nothing on stdout, and none of the paths in ``absent`` exists afterwards."""
    code, out, err = invoke(argv)
    lines = err.splitlines()
    shown = f"abm {' '.join(argv)}\nexit {code}\nstderr: {err!r}\nstdout: {out[-500:]!r}"
    assert code == 2, shown
    assert len(lines) == 1 and lines[0].startswith("abm: error: "), shown
    assert "Traceback" not in err + out, shown
    assert not out, shown
    for name in names:
        assert name in lines[0], f"{name!r} not named\n{shown}"
    for p in absent:
        assert not p.exists(), f"{p} was written\n{shown}"
    return lines[0]


# ------------------------------------------------------------------------------------------ TOML writing
def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def toml_value(v) -> str:
    """A TOML literal for ``v`` (NaN and infinities as TOML's nan and inf; dates unquoted)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def _is_table_list(v) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def to_toml_text(data: dict) -> str:
    """Top-level scalars, then tables, then arrays of tables (nested tables inline)."""
    lines = [f"{_key(k)} = {toml_value(v)}" for k, v in data.items()
             if not isinstance(v, dict) and not _is_table_list(v)]
    for k, v in data.items():
        if isinstance(v, dict):
            lines.append(f"\n[{_key(k)}]")
            lines += [f"{_key(kk)} = {toml_value(vv)}" for kk, vv in v.items()]
    for k, v in data.items():
        if _is_table_list(v):
            for item in v:
                lines.append(f"\n[[{_key(k)}]]")
                lines += [f"{_key(kk)} = {toml_value(vv)}" for kk, vv in item.items()]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ the baseline
BASE: dict = load_scenario("baseline").model_dump(by_alias=True, exclude_none=True)
BASE.pop("extends", None)
START = BASE["run"]["start"]


def month_at(k: int, start: str = START) -> str:
    """The label of month ``k`` after ``start`` (YYYY-MM)."""
    y, m = int(start[:4]), int(start[5:])
    idx = y * 12 + m - 1 + k
    return f"{idx // 12:04d}-{idx % 12 + 1:02d}"


LABS = [lab["name"] for lab in BASE["labs"]]
CLOUDS = [c["name"] for c in BASE["clouds"]]
CAPTIVE_OWNERS = {v["owner"] for v in BASE["vendors"] if v["kind"] == "captive"}
NEW_LAB = {"name": "Newco", "tier": "small", "cash_usd": 1.0e8, "capital_raised_usd": 1.0e8, "efficiency": 0.9,
           "last_run_flop": 1e22, "revenue_usd_month": 0.0, "other_funding_usd_month": 0.0, "rd_share": 0.3,
           "contracts": [{"cloud": "Lambda", "h100e": 500.0, "price_usd_hour": 2.5, "months_left": 12}]}
# A valid event of every type, dated inside the run.
EVENTS = {
    "mega_deal": {"month": "2026-01", "type": "mega_deal", "lab": "Anthropic", "cloud": "AWS", "value_usd": 1.1e11,
                  "term_months": 120, "gw": 5.0, "chip_kind": "captive", "exclusive": False, "ramp_months": 48},
    "set": {"month": "2025-01", "type": "set", "key": "capital.inflow_growth_annual", "value": 1.2},
    "export_controls": {"month": "2025-01", "type": "export_controls", "clouds": ["Alibaba Cloud"],
                        "labs": ["DeepSeek", "Moonshot"]},
    "foundry_shock": {"month": "2026-01", "type": "foundry_shock", "share": 0.5, "months": 12},
    "demand_shock": {"month": "2026-01", "type": "demand_shock", "factor": 0.8, "growth_annual": 1.15},
    "capital_shock": {"month": "2026-01", "type": "capital_shock", "factor": 0.4, "growth_annual": 1.0},
    "algorithmic_breakthrough": {"month": "2026-01", "type": "algorithmic_breakthrough", "factor": 10.0,
                                 "lab": "Mistral"},
    "open_weights": {"month": "2025-01", "type": "open_weights", "share": 0.8, "diffusion": 0.15},
    "ecosystem_shift": {"month": "2024-07", "type": "ecosystem_shift", "maturity_months": 18.0,
                        "capacity_multiplier": 2.5, "gen_lag_months": 0},
    "public_compute": {"month": "2025-01", "type": "public_compute", "budget_usd_year": 5.0e9,
                       "max_capital_usd": 2.0e9, "name": "Public Compute"},
    "antitrust": {"month": "2024-01", "type": "antitrust", "ban_exclusivity": True, "ban_equity_for_compute": True,
                  "max_lab_share_of_cloud": 0.3},
    "lab_entry": {"month": "2025-06", "type": "lab_entry", "new_lab": NEW_LAB},
    "funding": {"month": "2024-06", "type": "funding", "lab": "Mistral", "cloud": "Azure", "value_usd": 6.4e8},
}


def test_base_and_every_event_are_valid(tmp_path):
    """The mutations start from a valid scenario: the baseline with one valid event of each type."""
    data = copy.deepcopy(BASE)
    data["events"] = list(EVENTS.values())
    p = tmp_path / "ok.toml"
    p.write_text(to_toml_text(data), encoding="utf-8")
    scn = load_scenario(p)
    assert [e.type for e in scn.events] == list(EVENTS)


# ------------------------------------------------------------------------------------------ the schema's fields
@dataclass(frozen=True)
class Leaf:
    """A field of the schema: its dotted path in the base data, its kind and lower bound."""

    path: str
    kind: str  # "int", "float", "bool", "str", "month", "literal", "int_list", "str_list", "value"
    lo: float | None = None  # the lower bound (None: unbounded)
    strict: bool = False  # the lower bound itself is not allowed (gt rather than ge)
    choices: tuple = ()  # a literal's values


def _kind(ann, name: str) -> tuple[str, tuple]:
    """The kind of a field's annotation (optional or not) and, for a literal, its values."""
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    if type(None) in typing.get_args(ann):  # optional: the kind of what it holds when given
        if len(args) > 1:
            return "value", ()
        ann, args = args[0], list(typing.get_args(args[0]))
    if typing.get_origin(ann) is typing.Literal:
        return "literal", tuple(args)
    if typing.get_origin(ann) is list:
        item = typing.get_args(args[0])[0] if typing.get_origin(args[0]) is typing.Annotated else args[0]
        return ("int_list" if item is int else "str_list"), ()
    if ann in (bool, int, float):
        return ann.__name__, ()
    if ann is str:
        return ("month" if name in ("start", "month") else "str"), ()
    return "value", ()


def _leaves(cls, prefix: str, data: dict | None) -> list[Leaf]:
    """Every leaf field of ``cls`` with its path in ``data``: list items by index, as many as ``data`` has."""
    out = []
    for name, f in cls.model_fields.items():
        ann = f.annotation
        inner = [a for a in (ann, *typing.get_args(ann)) if isinstance(a, type) and issubclass(a, BaseModel)]
        if inner and inner[0] is ann:  # a section
            out += _leaves(ann, f"{prefix}{name}.", (data or {}).get(name, {}))
            continue
        if inner:  # a list of tables (clouds, labs, contracts) or an optional table (new_lab)
            value = (data or {}).get(name)
            if isinstance(value, list):
                for i, item in enumerate(value):
                    out += _leaves(inner[0], f"{prefix}{name}.{i}.", item)
            elif isinstance(value, dict):
                out += _leaves(inner[0], f"{prefix}{name}.", value)
            continue
        if name in ("name", "description", "extends") and not prefix:
            continue  # the scenario's own labels: checked apart (see bad_names and bad_extends)
        lo, strict = None, False
        for m in f.metadata:
            if isinstance(m, at.Ge | at.Gt):
                lo, strict = (m.ge, False) if isinstance(m, at.Ge) else (m.gt, True)
        kind, choices = _kind(ann, name)
        out.append(Leaf(prefix + name, kind, lo, strict, choices))
    return out


def _with_events(events: list[dict]) -> dict:
    data = copy.deepcopy(BASE)
    data["events"] = [copy.deepcopy(e) for e in events]  # each its own copy, also of an event drawn twice
    return data


BASE_LEAVES = _leaves(Scenario, "", BASE)
# Every event type's own fields (those the type uses), each in a scenario with that one event.
EVENT_LEAVES = [(etype, leaf) for etype, ev in EVENTS.items()
                for leaf in _leaves(Scenario, "", _with_events([ev]))
                if leaf.path.startswith("events.0.") and leaf.path.split(".")[2] in ev]
FIELDS_COVERED = {re.sub(r"\.\d+\.", ".", leaf.path) for leaf in BASE_LEAVES} | {
    re.sub(r"\.\d+\.", ".", leaf.path) for _, leaf in EVENT_LEAVES}


def _get(data, path: str):
    node = data
    for p in path.split("."):
        node = node[int(p)] if p.isdigit() else node[p]
    return node


def _set(data, path: str, value) -> None:
    parts = path.split(".")
    node = data
    for p in parts[:-1]:
        node = node[int(p)] if p.isdigit() else node[p]
    last = parts[-1]
    if last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value


# ------------------------------------------------------------------------------------------ invalid values
NOT_A_NUMBER = st.sampled_from(["abc", "", "1e5x", "twelve", "--1"]) | st.text(
    string.ascii_letters, min_size=1, max_size=6)
OTHER_TABLE = st.fixed_dictionaries({"x": st.integers(0, 3)})
A_DATE = st.dates(datetime.date(1990, 1, 1), datetime.date(2100, 1, 1))
HUGE_FLOAT = st.sampled_from([1e300, 1.7e308, 1e200, 1e100, 1e60])
BAD_MONTHS = st.sampled_from(["2024-13", "2024-00", "2024-1", "24-01", "2024/01", "2024-01-01", "January 2024",
                              "", "2024-011", " 2024-01", "2024-01 "])


def wrong_values(leaf: Leaf) -> st.SearchStrategy:
    """Values this field never allows: of the wrong type, below its lower bound, NaN, infinite or huge."""
    k = leaf.kind
    if k in ("int", "float"):
        bad = [NOT_A_NUMBER, st.booleans(), st.lists(st.integers(0, 9), min_size=1, max_size=3), OTHER_TABLE,
               A_DATE, st.sampled_from([math.nan, math.inf, -math.inf]), HUGE_FLOAT]
        if k == "int":
            bad += [st.floats(0.1, 0.9).map(lambda x: 12 + x), st.integers(2**63, 10**30)]
        if leaf.lo is not None:
            lo = leaf.lo
            below = st.floats(-1e12, lo, allow_nan=False).filter(lambda x: x < lo or (leaf.strict and x == lo))
            bad += [below, st.just(float(lo) if leaf.strict else lo - 1.0)]
            if k == "int":
                bad.append(st.integers(-10**9, lo if leaf.strict else lo - 1))
        return st.one_of(bad)
    if k == "bool":
        return st.one_of(st.integers(0, 5), st.floats(0.5, 2), st.sampled_from(["maybe", "ja", "nope"]),
                         st.lists(st.booleans(), min_size=1, max_size=2), OTHER_TABLE, A_DATE)
    if k == "str":
        return st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
                         st.lists(st.just("x"), min_size=1, max_size=2), OTHER_TABLE, A_DATE)
    if k == "month":
        return st.one_of(BAD_MONTHS, st.integers(2024, 2030), A_DATE, st.booleans())
    if k == "literal":
        return st.one_of(st.text(string.ascii_lowercase + "_", max_size=12).filter(lambda s: s not in leaf.choices),
                         st.integers(0, 3), st.booleans(), st.lists(st.sampled_from(leaf.choices), min_size=1,
                                                                       max_size=2))
    if k == "int_list":
        return st.one_of(st.just([]), st.lists(st.integers(-100, 0), min_size=1, max_size=3),
                         st.lists(st.integers(1000, 10**6), min_size=1, max_size=2),
                         st.just([12, "x"]), st.just([12.5]), st.just(12), st.just("12,36"))
    if k == "str_list":
        return st.one_of(st.just("Azure"), st.integers(0, 3), st.lists(st.integers(0, 9), min_size=1, max_size=2),
                         st.just([["Azure"]]))
    return st.one_of(st.lists(st.integers(0, 3), min_size=1, max_size=2), OTHER_TABLE, A_DATE)


@dataclass
class Case:
    """An invalid scenario: its data (or raw TOML text) and what the error line must name."""

    what: str
    data: dict | None = None
    text: str | None = None
    names: list[str] = field(default_factory=list)


@st.composite
def bad_field_values(draw) -> Case:
    """One field of the baseline (or of an event of any type) set to a value it never allows."""
    if draw(st.integers(0, 3)) == 0:
        etype, leaf = draw(st.sampled_from(EVENT_LEAVES))
        data = _with_events([EVENTS[etype]])
    else:
        leaf = draw(st.sampled_from(BASE_LEAVES))
        data = copy.deepcopy(BASE)
    value = draw(wrong_values(leaf))
    _set(data, leaf.path, value)
    return Case(f"{leaf.path} = {value!r}", data, names=[leaf.path])


def _containers(data: dict) -> list[str]:
    """Dotted paths of every table in the data: the top level (''), sections, list items, nested tables."""
    out = [""]

    def walk(node, prefix):
        for k, v in node.items():
            if isinstance(v, dict):
                out.append(prefix + k)
                walk(v, prefix + k + ".")
            elif isinstance(v, list):
                for i, item in enumerate(v):
                    if isinstance(item, dict):
                        out.append(f"{prefix}{k}.{i}")
                        walk(item, f"{prefix}{k}.{i}.")

    walk(data, "")
    return out


UNKNOWN_KEY = st.text(string.ascii_lowercase + "_", min_size=1, max_size=14).filter(lambda s: not s.startswith("_"))


@st.composite
def unknown_keys(draw) -> Case:
    """A key the schema does not have, at any level: top, a section, a cloud/lab/vendor, a contract, an event."""
    data = _with_events(draw(st.lists(st.sampled_from(list(EVENTS.values())), max_size=2)))
    where = draw(st.sampled_from(_containers(data)))
    node = _get(data, where) if where else data
    cls = _model_at(tuple(int(p) if p.isdigit() else p for p in where.split("."))) if where else Scenario
    key = draw(UNKNOWN_KEY.filter(lambda k: k not in node and k not in cls.model_fields))
    node[key] = draw(st.integers(0, 5) | st.text(string.ascii_letters, max_size=4) | st.booleans())
    path = f"{where}.{key}" if where else key
    return Case(f"unknown key {path}", data, names=[path])


@st.composite
def bad_dates(draw) -> Case:
    """run.start or an event's month that is not a YYYY-MM month."""
    bad = draw(BAD_MONTHS | st.integers(1, 300000) | A_DATE)
    if draw(st.booleans()):
        data = copy.deepcopy(BASE)
        data["run"]["start"] = bad
        return Case(f"run.start = {bad!r}", data, names=["run.start"])
    ev = copy.deepcopy(draw(st.sampled_from(list(EVENTS.values()))))
    ev["month"] = bad
    return Case(f"event month {bad!r}", _with_events([ev]), names=["events.0.month"])


@st.composite
def events_out_of_run(draw) -> Case:
    """An event dated after the run's last month or before its first."""
    ev = copy.deepcopy(draw(st.sampled_from(list(EVENTS.values()))))
    months = draw(st.integers(1, 600))
    data = _with_events([EVENTS["open_weights"], ev])
    data["run"]["months"] = months
    after = draw(st.booleans())
    k = draw(st.integers(months, months + 2000)) if after else -draw(st.integers(1, 2000))
    ev["month"] = month_at(k)
    data["events"][1] = ev
    data["events"][0]["month"] = START  # a valid event first, so that the index of the bad one is 1
    return Case(f"event at month {k} of {months}", data, names=["events.1.month"])


@st.composite
def unknown_agents(draw) -> Case:
    """An event that names a lab, cloud or key that does not exist (at its date)."""
    ghost = draw(st.sampled_from(["Oracle", "Nobody", "openai", "AWS ", "Lab-999", "Anthropic2", ""]))
    choice = draw(st.sampled_from(["mega_lab", "mega_cloud", "funding_lab", "funding_cloud", "export_labs",
                                   "export_clouds", "breakthrough", "entry_contract", "set_key",
                                   "later_entry", "mega_captive"]))
    ev: dict
    if choice == "mega_lab":
        ev, key = {**EVENTS["mega_deal"], "lab": ghost}, "lab"
    elif choice == "mega_cloud":
        ev, key = {**EVENTS["mega_deal"], "cloud": ghost}, "cloud"
    elif choice == "mega_captive":  # captive chips from a cloud that has no captive line
        cloud = draw(st.sampled_from([c for c in CLOUDS if c not in CAPTIVE_OWNERS]))
        ev, key = {**EVENTS["mega_deal"], "cloud": cloud}, "chip_kind"
    elif choice == "funding_lab":
        ev, key = {**EVENTS["funding"], "lab": ghost}, "lab"
    elif choice == "funding_cloud":
        ev, key = {**EVENTS["funding"], "cloud": ghost}, "cloud"
    elif choice == "export_labs":
        ev, key = {**EVENTS["export_controls"], "labs": ["DeepSeek", ghost]}, "labs"
    elif choice == "export_clouds":
        ev, key = {**EVENTS["export_controls"], "clouds": [ghost]}, "clouds"
    elif choice == "breakthrough":
        ev, key = {**EVENTS["algorithmic_breakthrough"], "lab": ghost}, "lab"
    elif choice == "entry_contract":
        lab = copy.deepcopy(NEW_LAB)
        lab["contracts"][0]["cloud"] = ghost
        ev, key = {**EVENTS["lab_entry"], "new_lab": lab}, "new_lab.contracts.0.cloud"
    elif choice == "set_key":
        ev, key = {**EVENTS["set"], "key": draw(st.sampled_from(["capital.kapa", "capital", "nope.x", "run",
                                                                    "labs", "demand.theta.x", ghost]))}, "key"
    else:  # a lab that enters only after the event that names it
        entry = {**EVENTS["lab_entry"], "month": "2027-01"}
        ev = {**EVENTS["funding"], "lab": "Newco", "month": "2026-01"}
        data = _with_events([entry, ev])
        return Case("funding before entry", data, names=["events.1.lab"])
    return Case(f"{choice} {ghost!r}", _with_events([ev]), names=[f"events.0.{key}"])


@st.composite
def empty_populations(draw) -> Case:
    """No clouds or no merchant vendor. (No lab at the start is a valid world: labs enter; see
    tests/test_extreme.py.)"""
    data = copy.deepcopy(BASE)
    which = draw(st.sampled_from(["clouds", "vendors", "merchants"]))
    if which == "clouds":
        data["clouds"] = []
        data["vendors"] = [v for v in data["vendors"] if v["kind"] == "merchant"]
        data["labs"] = [{**lab, "contracts": []} for lab in data["labs"]]
    elif which == "vendors":
        data["vendors"] = []
    else:
        data["vendors"] = [v for v in data["vendors"] if v["kind"] == "captive"]
        which = "vendors"
    return Case(f"empty {which}", data, names=[which])


@st.composite
def broken_toml(draw) -> Case:
    """A scenario file that is not valid TOML."""
    text = to_toml_text(copy.deepcopy(BASE))
    lines = text.splitlines()
    how = draw(st.sampled_from(["bracket", "quote", "equals", "duplicate_key", "duplicate_table", "garbage",
                                "truncate", "binary"]))
    i = draw(st.integers(0, len(lines) - 1))

    def line(test) -> int:  # the first line at or after i (else from the top) that passes ``test``
        return next(k for k in [*range(i, len(lines)), *range(i)] if test(lines[k]))

    if how == "bracket":
        j = line(lambda x: x.startswith("["))
        lines[j] = lines[j].rstrip("]")
    elif how == "quote":
        j = line(lambda x: '"' in x)
        lines[j] = lines[j][: lines[j].rindex('"')]
    elif how == "equals":
        j = line(lambda x: " = " in x and not x.startswith("["))
        lines[j] = lines[j].replace(" = ", " ", 1)
    elif how == "duplicate_key":
        j = line(lambda x: " = " in x and not x.startswith("["))
        lines.insert(j + 1, lines[j])
    elif how == "duplicate_table":
        lines += ["", "[capital]", "kappa = 1.0"]
    elif how == "garbage":
        lines.insert(i, draw(st.sampled_from(["}}}", "= 3", "[[", "key = = 1", "x = [1, 2", "@@@", "a.b. = 1"])))
    elif how == "truncate":
        j = line(lambda x: "{" in x)
        lines[j] = lines[j][: lines[j].index("{") + 3]
    else:
        return Case("binary", text="\x00\x01\x02 not toml \xff", names=["fuzz.toml"])
    return Case(f"broken TOML ({how})", text="\n".join(lines) + "\n", names=["fuzz.toml"])


@st.composite
def bad_shares(draw) -> Case:
    """Vendors' foundry shares that do not sum to 1."""
    data = copy.deepcopy(BASE)
    i = draw(st.integers(0, len(data["vendors"]) - 1))
    old = data["vendors"][i]["foundry_share"]
    new = draw(st.floats(0, 1).filter(lambda x: abs(x - old) > 1e-3))
    data["vendors"][i]["foundry_share"] = new
    return Case(f"foundry shares sum {1 - old + new}", data, names=["foundry_share"])


@st.composite
def contradictions(draw) -> Case:
    """Settings that contradict each other."""
    data = copy.deepcopy(BASE)
    which = draw(st.sampled_from(["range", "dup_cloud", "dup_lab", "dup_vendor", "captive_owner",
                                  "merchant_owner", "two_captive", "entry_exists", "drawn_name",
                                  "public_name", "initial_set", "section_set", "set_value", "runway"]))
    if which == "range":
        lo, hi, section = draw(st.sampled_from([
            ("markup_min", "markup_max", "chips"), ("rd_share_min", "rd_share_max", "efficiency"),
            ("efficiency_fraction_lo", "efficiency_fraction_hi", "entry"),
            ("efficiency_lo", "efficiency_hi", "generated_labs"),
            ("lowest_value_usd_hour", "reference_price_usd_hour", "background"),
            ("reference_price_usd_hour", "choke_price_usd_hour", "background")]))
        top = data[section][hi]
        data[section][lo] = draw(st.floats(top * 1.01 + 1e-6, top * 1.5 + 1e-3))
        if section == "efficiency" or section == "entry":
            data[section][lo] = min(data[section][lo], 1.0)
            data[section][hi] = min(data[section][hi], data[section][lo] * 0.9)
        return Case(f"{section}.{lo} > {hi}", data, names=[f"{section}.{lo}"])
    if which in ("dup_cloud", "dup_lab", "dup_vendor"):
        key = {"dup_cloud": "clouds", "dup_lab": "labs", "dup_vendor": "vendors"}[which]
        i, j = draw(st.lists(st.integers(0, len(data[key]) - 1), min_size=2, max_size=2, unique=True))
        data[key][j]["name"] = data[key][i]["name"]
        return Case(f"duplicate {key} name", data, names=[f"{key}.{max(i, j)}.name"])
    if which == "captive_owner":
        i = next(k for k, v in enumerate(data["vendors"]) if v["kind"] == "captive")
        data["vendors"][i]["owner"] = draw(st.sampled_from(["Oracle", "", "azure"]))
        return Case("captive owner unknown", data, names=[f"vendors.{i}.owner"])
    if which == "merchant_owner":
        i = next(k for k, v in enumerate(data["vendors"]) if v["kind"] == "merchant")
        data["vendors"][i]["owner"] = draw(st.sampled_from(CLOUDS))
        return Case("merchant with an owner", data, names=[f"vendors.{i}.owner"])
    if which == "two_captive":
        i = next(k for k, v in enumerate(data["vendors"]) if v["kind"] == "captive")
        extra = {**data["vendors"][i], "name": "Second line", "foundry_share": 0.0}
        data["vendors"].append(extra)
        return Case("two captive lines", data, names=[f"vendors.{len(data['vendors']) - 1}.owner"])
    if which == "entry_exists":
        lab = {**NEW_LAB, "name": draw(st.sampled_from(LABS))}
        data["events"] = [{**EVENTS["lab_entry"], "new_lab": lab}]
        return Case("lab_entry of an existing lab", data, names=["events.0.new_lab.name"])
    if which == "drawn_name":  # a named lab called like one the model draws, or an entrant
        i = draw(st.integers(0, len(data["labs"]) - 1))
        data["labs"][i]["name"] = draw(st.sampled_from(["Lab-001", "Lab-20", "Lab-0007", "Entrant-003-0040"]))
        return Case("named like a drawn lab", data, names=[f"labs.{i}.name"])
    if which == "section_set":
        data["events"] = [{**EVENTS["set"], "key": draw(st.sampled_from(["capital", "demand", "policy"]))}]
        return Case("set event on a section", data, names=["events.0.key"])
    if which == "public_name":
        data["events"] = [{**EVENTS["public_compute"], "name": draw(st.sampled_from(CLOUDS))}]
        return Case("public compute named like a cloud", data, names=["events.0.name"])
    if which == "initial_set":
        key = draw(st.sampled_from(["demand.initial_usd_month", "run.months", "generated_labs.n",
                                    "chips.foundry_capacity_h100e_month"]))
        data["events"] = [{**EVENTS["set"], "key": key, "value": 1.0}]
        return Case("set event on an initial key", data, names=["events.0.key"])
    if which == "set_value":
        key, value = draw(st.sampled_from([("capital.kappa", -1.0), ("capital.kappa", "lots"), ("capital.kappa", 11.0),
                                           ("chips.allocation_rule", "random"), ("demand.theta", True),
                                           ("chips.markup_min", 5.0), ("policy.exclusivity_allowed", "perhaps"),
                                           ("contracting.lgd", 2.0), ("scaling.gamma", 0.0)]))
        data["events"] = [{**EVENTS["set"], "key": key, "value": value}]
        return Case(f"set {key} = {value!r}", data, names=["events.0.value"])
    data["capital"]["raise_trigger_months"] = data["capital"]["target_runway_months"] + draw(st.floats(1, 100))
    return Case("raise trigger above target runway", data, names=["capital.raise_trigger_months"])


@st.composite
def bad_extends(draw) -> Case:
    """``extends`` naming no scenario, or not a name; or a file extending the baseline whose lists of tables
    are not lists."""
    if draw(st.booleans()):
        value = draw(st.sampled_from(["no_such_scenario", "basline", "/nowhere/x.toml", 3, True, ["baseline"]]))
        return Case(f"extends {value!r}", {"extends": value, "capital": {"kappa": 2.0}}, names=["extends"])
    key = draw(st.sampled_from(["clouds", "vendors", "labs", "events"]))
    value = draw(st.sampled_from([3, "Azure", True, {"name": "Azure"}]))
    return Case(f"extends baseline, {key} = {value!r}", {"extends": "baseline", key: value}, names=[key])


@st.composite
def bad_names(draw) -> Case:
    """A scenario name that could not name an output folder."""
    data = copy.deepcopy(BASE)
    data["name"] = draw(st.sampled_from(["", "../escape", "a/b", "runs\\x", ".hidden", "_x", "tab\there", " x"]))
    return Case(f"name {data['name']!r}", data, names=["name"])


SCENARIO_CASES = st.one_of(
    bad_field_values(), bad_field_values(), bad_field_values(), unknown_keys(), bad_dates(), events_out_of_run(),
    unknown_agents(), empty_populations(), broken_toml(), bad_shares(), contradictions(), bad_extends(),
    bad_names())


def _schema_paths(cls, prefix: str = "") -> set[str]:
    """Every leaf field of the schema as a dotted path without list indices (``labs.contracts.cloud``)."""
    out = set()
    for name, f in cls.model_fields.items():
        subs = [a for a in (f.annotation, *typing.get_args(f.annotation))
                if isinstance(a, type) and issubclass(a, BaseModel)]
        if subs:
            out |= _schema_paths(subs[0], f"{prefix}{name}.")
        else:
            out.add(prefix + name)
    return out


def test_schema_fields_all_fuzzed():
    """Every field of the schema (but the scenario's name, description and extends, which are checked
    apart) is among those the fuzzer sets to invalid values."""
    missing = _schema_paths(Scenario) - {"name", "description", "extends"} - FIELDS_COVERED
    assert not missing, sorted(missing)


def test_invalid_scenarios_exit_2_naming_the_field(guarded):
    """``abm run FILE --out DIR`` on an invalid scenario: exit 2, one line naming the field, no folder."""
    path, out = guarded / "fuzz.toml", guarded / "out"
    before = COUNTS["scenarios"]

    @settings(max_examples=N_SCENARIOS, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=SCENARIO_CASES)
    def check(case):
        COUNTS["scenarios"] += 1
        if case.text is not None:
            path.write_bytes(case.text.encode("utf-8", "surrogateescape"))
        else:
            path.write_text(to_toml_text(case.data), encoding="utf-8")
        assert_refused(["run", str(path), "--out", str(out)], case.names, [out, guarded / "runs"])

    check()
    assert COUNTS["scenarios"] - before >= 1000


# ------------------------------------------------------------------------------------------ command lines
COMMANDS = ("run", "ensemble", "compare", "sweep", "barriers", "sensitivity", "calibrate", "validate", "report",
            "animate", "dashboard", "bench")
# A valid invocation of each command (with an --out that must never appear when a piece is made invalid).
BASE_ARGV = {
    "run": ["run", "baseline", "--out", "o"],
    "ensemble": ["ensemble", "baseline", "--seeds", "2", "--out", "o"],
    "compare": ["compare", "baseline", "mega_deal", "--seeds", "2", "--out", "o"],
    "sweep": ["sweep", "baseline", "--param", "capital.kappa=1:2:2", "--seeds", "2", "--out", "o"],
    "barriers": ["barriers", "baseline", "--seeds", "2", "--out", "o"],
    "sensitivity": ["sensitivity", "baseline", "--outputs", "lab_hhi_compute", "--seeds", "2", "--out", "o"],
    "calibrate": ["calibrate", "--dry-run", "--seeds", "2"],
    "validate": ["validate", "--seeds", "2", "--out", "o"],
    "report": ["report", "runfolder"],
    "animate": ["animate", "runfolder"],
    "dashboard": ["dashboard"],
    "bench": ["bench", "--quick", "--out", "o"],
}
ENSEMBLE_LIKE = ("ensemble", "compare", "sweep", "barriers", "sensitivity", "validate")
POS_INT = ["0", "-1", "-12", "abc", "1.5", "", "1e3", "two"]
NONNEG_INT = ["-1", "-5", "abc", "0.5", ""]
POS_FLOAT = ["0", "-1", "nan", "inf", "-inf", "abc", ""]
INT_LIST = ["0", "1,0", "a", "", "1,,2", "-3", "2,x"]
HORIZONS = ["0", "abc", "12,,36", "-1", "", "1.5"]
# Typed flags of each command and their invalid values.
FLAG_VALUES = {
    "run": {"--seed": NONNEG_INT, "--months": [*POS_INT, "601"], "--labs": [*POS_INT, "5", "200000"]},
    "ensemble": {},
    "compare": {"--horizons": [*HORIZONS, "700"]},
    "sweep": {"--at": [*POS_INT, "500"], "--metrics": ["nope", "", "lab_hhi_compute,,x", "month",
                                                       "lab_hhi_compute,lab_hhi_compute"],
              "--param": ["capital.kappa", "capital.kapa=1:2:3", "capital.kappa=1:2:0", "capital.kappa=log:-1:2:3",
                          "capital.kappa=20:30:2", "capital.kappa=1,1", "run.months=1:2:2", "capital.kappa=1:2",
                          "capital.kappa=a,b", "scaling.gamma=0:1:3", "=1,2", "capital.kappa=nan:2:2"]},
    "barriers": {"--entry-months": [*INT_LIST, "500"], "--follow": [*POS_INT, "600"],
                 "--gap": ["-1", "nan", "inf", "abc", ""], "--compare": ["nope", "baseline", "", "mega_deal,,x"]},
    "sensitivity": {"--outputs": ["nope", "", "delta:nope:lab_hhi_compute", "delta:mega_deal", "month",
                                  "lab_hhi_compute,lab_hhi_compute"],
                    "--method": ["x", "MORRIS", ""], "--n": [*POS_INT, "1"],
                    "--horizons": [*HORIZONS, "700"], "--bounds": ["/nowhere/b.toml", "afile.txt", "bad_bounds.toml",
                                                                   "emptydir"]},
    "calibrate": {"--seeds": POS_INT, "--seed": NONNEG_INT, "--budget": POS_FLOAT,
                  "--targets": ["/nowhere/t.csv", "afile.txt", "bad_targets.csv", "emptydir"],
                  "--workers": POS_INT, "--dask-local": POS_INT},
    "validate": {"--targets": ["/nowhere/t.csv", "afile.txt", "bad_targets.csv", "emptydir"]},
    "report": {},
    "animate": {"--every": POS_INT, "--fps": POS_FLOAT},
    "dashboard": {"--port": ["0", "-1", "65536", "70000", "abc", "", "80.5"],
                  "--host": ["not a host", "999.1.1.1", "8.8.8.8", "-", "::1x"]},
    "bench": {"--labs": [*INT_LIST, "5", "200000"], "--months": POS_INT, "--seeds": POS_INT,
              "--workers": INT_LIST, "--repeats": POS_INT, "--timeout": POS_FLOAT},
}
for _c in ENSEMBLE_LIKE:
    FLAG_VALUES[_c] |= {"--seeds": POS_INT if _c != "barriers" else [*POS_INT, "1"], "--master-seed": NONNEG_INT,
                        "--months": [*POS_INT, "601"], "--workers": POS_INT, "--dask-local": POS_INT}
BAD_SETS = [("capital.kapa=2", "capital.kapa"), ("capital.kappa", "--set"), ("=3", "--set"), ("capital.kappa=", "--set"),
            ("capital.kappa=-1", "capital.kappa"), ("capital.kappa=nan", "capital.kappa"),
            ("capital.kappa=lots", "capital.kappa"), ("run.months=0", "run.months"), ("demand.theta=1e300", "demand.theta"),
            ("policy.exclusivity_allowed=3", "policy.exclusivity_allowed"), ("clouds=[]", "clouds"),
            ("name=../x", "name"), ("run.start=2024-13", "run.start"), ("chips.markup_min=9", "markup_min"),
            ("vendors=[]", "vendors"), ("capital.kappa=true", "capital.kappa"), ("contracting.terms_months=[]",
                                                                                 "contracting.terms_months")]
BAD_SCENARIOS = [("no_such_scenario", "no_such_scenario"), ("basline", "basline"), ("/nowhere/x.toml", "/nowhere/x.toml"),
                 ("broken.toml", "broken.toml"), ("afile.txt", "afile.txt"), ("emptydir", "emptydir"),
                 ("typo.toml", "capital.kapa")]
UNKNOWN_FLAGS = ["--frobnicate", "--no-such-flag", "-z", "--verbose", "--seed-file", "--outdir"]
BAD_OUTS = [("afile.txt", "afile.txt"), ("afile.txt/sub", "afile.txt"), ("junkdir", "junkdir")]
# Files a folder given to report or animate may hold, with content that is not a run's.
JUNK_FILES = ["timeseries.csv", "ensemble.csv", "comparison.csv", "agents.csv"]


def _setup_files(work: Path) -> None:
    """The files and folders the invalid command lines refer to."""
    from abm.metrics import COLUMNS

    (work / "afile.txt").write_text("hello\n")
    (work / "emptydir").mkdir(exist_ok=True)
    (work / "junkdir").mkdir(exist_ok=True)
    (work / "junkdir" / "notes.txt").write_text("not an output folder\n")
    (work / "broken.toml").write_text("[run\nmonths = 3\n")
    (work / "typo.toml").write_text('extends = "baseline"\n[capital]\nkapa = 2\n')
    (work / "bad_bounds.toml").write_text("[[param]]\nname = \"capital.kappa\"\nlo = 3\nhi = 1\n")
    (work / "bad_targets.csv").write_text("id,target\n1,2\n")
    run = work / "runfolder"  # looks like a run folder to the argument checks; never drawn (see below)
    run.mkdir(exist_ok=True)
    (run / "timeseries.csv").write_text(",".join(COLUMNS) + "\n")


@dataclass
class Call:
    """An invalid command line and what its error line must name."""

    argv: list[str]
    names: list[str]
    files: dict[str, str] = field(default_factory=dict)  # folder/file -> text, written before the call


def _replace_flag(argv: list[str], flag: str, value: str) -> list[str]:
    """``argv`` with ``flag`` set to ``value`` (replacing its value if it is there)."""
    out = list(argv)
    if flag in out:
        i = out.index(flag)
        out[i + 1] = value
        return out
    return [*out, flag, value]


@st.composite
def invalid_calls(draw, command: str) -> Call:
    """One invalid invocation of ``command``: the valid base with one piece made invalid."""
    base = BASE_ARGV[command]
    kinds = ["unknown_flag"]
    if FLAG_VALUES[command]:
        kinds += ["flag_value"] * 3
    if command in (*ENSEMBLE_LIKE, "run"):
        kinds += ["set", "scenario", "out"]
    if command in ("calibrate",):
        kinds += ["scenario"]
    if command in ("report", "animate"):
        kinds += ["folder"] * 3
    kinds += ["special"]
    kind = draw(st.sampled_from(kinds))
    if kind == "unknown_flag":
        flag = draw(st.sampled_from(UNKNOWN_FLAGS))
        return Call([*base, flag], [flag])
    if kind == "flag_value":
        flag = draw(st.sampled_from(sorted(FLAG_VALUES[command])))
        value = draw(st.sampled_from(FLAG_VALUES[command][flag]))
        names = [flag] if not flag.startswith(("--bounds", "--targets")) else [value.rstrip("/") or flag]
        if flag == "--compare" and value == "nope":
            names = ["nope"]
        argv = _replace_flag(base, flag, value)
        if flag in ("--workers", "--dask-local") and command != "bench":
            argv = [*base, flag, value]
        return Call(argv, names)
    if kind == "set":
        text, name = draw(st.sampled_from(BAD_SETS))
        return Call([*base, "--set", text], [name])
    if kind == "scenario":
        value, name = draw(st.sampled_from(BAD_SCENARIOS))
        if command == "calibrate":
            return Call(["calibrate", value, *base[1:]], [name])
        if command == "validate":
            return Call(["validate", value, *base[1:]], [name])
        if command == "compare":
            i = draw(st.integers(1, 2))
            argv = list(base)
            argv[i] = value
            return Call(argv, [name])
        return Call([base[0], value, *base[2:]], [name])
    if kind == "out":
        value, name = draw(st.sampled_from(BAD_OUTS))
        return Call(_replace_flag(base, "--out", value), [name])
    if kind == "folder":
        return draw(bad_folders(command))
    return draw(special_calls(command))


@st.composite
def bad_folders(draw, command: str) -> Call:
    """A folder for report or animate that is missing, a file, empty, or holds files that are not a run's."""
    what = draw(st.sampled_from(["missing", "file", "empty", "junk", "junk", "junk"]))
    if what == "missing":
        return Call([command, "/nowhere/run"], ["/nowhere/run"])
    if what == "file":
        return Call([command, "afile.txt"], ["afile.txt"])
    if what == "empty":
        return Call([command, "emptydir"], ["emptydir"])
    from abm.metrics import COLUMNS

    name = draw(st.sampled_from(JUNK_FILES))
    header = ",".join(COLUMNS) if name == "timeseries.csv" else draw(st.sampled_from(["month,step", "x,y", ""]))
    rows = draw(st.lists(st.text(string.ascii_letters + string.digits + ",.-", max_size=30), max_size=3))
    if name == "timeseries.csv" and rows and draw(st.booleans()):
        rows[0] = "2024-01,0," + draw(st.sampled_from(["abc", "x,y,z", "1e", "--"]))
    text = draw(st.sampled_from([header + "\n" + "\n".join(rows) + "\n", "", "\x00\x01garbage", "\"unclosed\n"]))
    if name == "timeseries.csv" and not rows and text.startswith(header) and header:
        text = header + "\n"  # a header and no rows
    if name == "agents.csv":  # a valid-looking timeseries and junk agents: animate needs both
        return Call([command, "case"], ["case"], {"case/timeseries.csv": text, "case/agents.csv": text})
    return Call([command, "case"], ["case"], {f"case/{name}": text})


@st.composite
def special_calls(draw, command: str) -> Call:
    """Invalid combinations particular to each command."""
    base = BASE_ARGV[command]
    options = {
        "run": [(["run"], ["SCENARIO"]), ([*base, "--seed"], ["--seed"]), ([*base, "extra_arg"], ["extra_arg"])],
        "ensemble": [(["ensemble", "baseline", "--out", "o"], ["--seeds"]),
                     ([*base, "--workers", "2", "--dask-local", "2"], ["--dask-local"])],
        "compare": [(["compare", "baseline", "--seeds", "2", "--out", "o"], ["two scenarios"]),
                    (["compare", "baseline", "baseline", "--seeds", "2", "--out", "o"], ["distinct names"])],
        "sweep": [(["sweep", "baseline", "--seeds", "2", "--out", "o"], ["--param"]),
                  ([*base, "--param", "capital.kappa=1,2"], ["capital.kappa"]),
                  ([*base, "--set", "capital.kappa=2"], ["capital.kappa"])],
        "barriers": [([*base, "--entry-months", "36,119", "--follow", "500"], ["--follow"]),
                     ([*base, "--months", "12", "--entry-months", "12"], ["--entry-months"])],
        "sensitivity": [(["sensitivity", "baseline", "--seeds", "2", "--out", "o"], ["--outputs"]),
                        ([*base, "--method", "sobol", "--n", "3"], ["--n"])],
        "calibrate": [(["calibrate", "nope", "--dry-run"], ["nope"]), ([*base, "--budget"], ["--budget"])],
        "validate": [([*base, "--set", "run.start=2040-01"], ["2040-01"]), (["validate", "a", "b"], ["b"])],
        "report": [(["report"], ["DIR"]), (["report", "runfolder", "other"], ["other"])],
        "animate": [(["animate"], ["DIR"]), (["animate", "runfolder", "--every", "2.5"], ["--every"])],
        "dashboard": [(["dashboard", "--port", "BUSY"], ["--port"]), (["dashboard", "extra"], ["extra"])],
        "bench": [(["bench", "--out", "junkdir"], ["junkdir"]), (["bench", "--labs", "5,100"], ["--labs"])],
    }[command]
    argv, names = draw(st.sampled_from(options))
    return Call(list(argv), list(names))


@pytest.fixture(scope="module")
def files(guarded):
    """The work folder with the files the command lines name, and a port that is busy."""
    import socket

    _setup_files(guarded)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield guarded, str(busy.getsockname()[1])


def _run_call(work: Path, port: str, call: Call) -> None:
    import shutil

    case = work / "case"
    shutil.rmtree(case, ignore_errors=True)
    for rel, text in call.files.items():
        p = work / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(text.encode("utf-8", "surrogateescape"))
    argv = [port if a == "BUSY" else a for a in call.argv]
    absent = [work / "o", work / "runs", work / "runfolder" / "report.html", work / "runfolder" / "animation.gif",
              case / "report.html", case / "animation.gif", work / "junkdir" / "bench.json",
              work / "emptydir" / "report.html"]
    assert_refused(argv, call.names, absent)
    assert sorted(p.name for p in (work / "junkdir").iterdir()) == ["notes.txt"], "junkdir was written"


@pytest.mark.parametrize("command", [c for c in COMMANDS if c not in ("report", "animate")])
def test_base_invocations_are_valid(files, command):
    """The command lines the fuzzer makes invalid are valid as they are: each reaches the point where it
    would start running, so that each invalid one fails because of the piece made invalid. (report and
    animate are left out: their folder is what the fuzzer varies, and their flags are checked before it.)"""
    import shutil

    work, port = files
    with pytest.raises(Accepted):
        invoke(BASE_ARGV[command])
    shutil.rmtree(work / "runs", ignore_errors=True)  # calibrate makes its study folder before running


def test_invalid_invocations_exit_2_naming_the_flag(files):
    """Every command with one invalid flag, value, scenario, folder or combination: exit 2, one line naming
    it, no traceback, no output written."""
    work, port = files
    before = COUNTS["invocations"]

    @settings(max_examples=N_INVOCATIONS, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def check(data):
        command = data.draw(st.sampled_from(COMMANDS))
        call = data.draw(invalid_calls(command))
        COUNTS["invocations"] += 1
        _run_call(work, port, call)

    check()
    assert COUNTS["invocations"] - before >= 300


@pytest.mark.parametrize("argv,names", [
    (["calibrate", "--dry-run", "--seeds", "2", "--apply-to", "no_such_scenario"], ["no_such_scenario"]),
    (["calibrate", "--seeds", "2", "--report", "/nowhere/dir/CALIBRATION.md"], ["/nowhere/dir"]),
], ids=["apply_to_unknown", "report_unwritable"])
def test_calibrate_outputs_checked_before_fitting(files, argv, names):
    """calibrate's outputs are checked before the search starts, not after it has run for --budget minutes."""
    work, port = files
    _run_call(work, port, Call(argv, names))
