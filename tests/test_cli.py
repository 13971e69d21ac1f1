"""The command line: outputs, byte-identical reruns, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from abm.metrics import COLUMNS
from analysis.cli import main

FILES = ("timeseries.csv", "agents.csv", "contracts.csv", "events.csv")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """Run ``abm`` in a fresh interpreter, as a user would."""
    return subprocess.run([sys.executable, "-m", "analysis.cli", *args], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent)


def test_run_writes_every_output(tmp_path):
    """abm run writes the six files; timeseries.csv has exactly the documented columns, one row a month."""
    out = tmp_path / "r"
    assert main(["run", "baseline", "--months", "6", "--seed", "4", "--out", str(out), "--quiet"]) == 0
    for name in (*FILES, "scenario.toml", "run_info.json"):
        assert (out / name).is_file(), name
    lines = (out / "timeseries.csv").read_text().splitlines()
    assert lines[0].split(",") == COLUMNS
    assert len(lines) == 1 + 6
    assert lines[1].startswith("2024-01,0,")
    info = json.loads((out / "run_info.json").read_text())
    assert info["seed"] == 4 and info["months"] == 6
    assert not list(tmp_path.glob(".*tmp*")), "temporary folder left behind"


def test_same_seed_byte_identical_and_rerun_from_scenario_toml(tmp_path):
    """Same scenario and seed: identical bytes; DIR/scenario.toml reproduces the run; another seed differs."""
    a, b, c, d = (tmp_path / x for x in "abcd")
    assert main(["run", "mega_deal", "--months", "30", "--seed", "5", "--out", str(a), "--quiet"]) == 0
    assert main(["run", "mega_deal", "--months", "30", "--seed", "5", "--out", str(b), "--quiet"]) == 0
    assert main(["run", str(a / "scenario.toml"), "--out", str(c), "--quiet"]) == 0
    assert main(["run", "mega_deal", "--months", "30", "--seed", "6", "--out", str(d), "--quiet"]) == 0
    for name in FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
        assert (a / name).read_bytes() == (c / name).read_bytes(), name
    assert (a / "timeseries.csv").read_bytes() != (d / "timeseries.csv").read_bytes()


BAD_TOML = "[run\nmonths = 3\n"


@pytest.mark.parametrize("case", ["unknown_key", "negative", "missing_file", "broken_toml", "unknown_name",
                                  "unknown_key_in_file", "bad_set_syntax", "labs_zero", "labs_negative",
                                  "labs_fraction", "labs_too_few"])
def test_bad_input_exits_2_with_one_line_and_no_folder(tmp_path, case):
    """Each user mistake: exit 2, exactly one line on stderr, no traceback, no output folder."""
    out = tmp_path / "out"
    args = {
        "unknown_key": ["baseline", "--set", "capital.kapa=2"],
        "negative": ["baseline", "--set", "capital.kappa=-1"],
        "missing_file": [str(tmp_path / "nope.toml")],
        "broken_toml": [str(tmp_path / "broken.toml")],
        "unknown_name": ["basline"],
        "unknown_key_in_file": [str(tmp_path / "typo.toml")],
        "bad_set_syntax": ["baseline", "--set", "capital.kappa"],
        "labs_zero": ["baseline", "--labs", "0"],
        "labs_negative": ["baseline", "--labs=-5"],
        "labs_fraction": ["baseline", "--labs", "1.5"],
        "labs_too_few": ["baseline", "--labs", "5"],
    }[case]
    (tmp_path / "broken.toml").write_text(BAD_TOML)
    (tmp_path / "typo.toml").write_text('extends = "baseline"\n[capital]\nkapa = 2\n')
    res = run_cli("run", *args, "--out", str(out), "--months", "3")
    assert res.returncode == 2, res.stderr
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("abm: error:"), res.stderr
    assert "Traceback" not in res.stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    if case in ("unknown_key", "unknown_key_in_file"):
        assert "kappa" in err[0]
    if case == "negative":
        assert "capital.kappa" in err[0]
    if case.startswith("labs"):
        assert "--labs" in err[0]
    if case == "labs_too_few":
        assert err[0] == "abm: error: --labs 5: must be at least 9 (the scenario's named labs)"


def test_run_with_labs_writes_the_scaled_scenario(tmp_path):
    """--labs N: N labs in the first month, the scaled scenario in scenario.toml, which reproduces the run."""
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["run", "baseline", "--labs", "60", "--months", "6", "--out", str(a), "--quiet"]) == 0
    assert main(["run", str(a / "scenario.toml"), "--out", str(b), "--quiet"]) == 0
    for name in FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    first = (a / "timeseries.csv").read_text().splitlines()[1].split(",")
    assert abs(int(first[COLUMNS.index("labs_active")]) - 60) <= 3
    from abm.scenario import load_scenario

    scn = load_scenario(a / "scenario.toml")
    base = load_scenario("baseline")
    assert len(scn.labs) + scn.generated_labs.n == 60
    s = 60 / (len(base.labs) + base.generated_labs.n)
    assert scn.chips.foundry_capacity_h100e_month == pytest.approx(base.chips.foundry_capacity_h100e_month * s)


def test_existing_folder_needs_force(tmp_path):
    """An existing run folder is not overwritten without --force, and is replaced with it."""
    out = tmp_path / "r"
    assert main(["run", "baseline", "--months", "2", "--out", str(out), "--quiet"]) == 0
    before = (out / "timeseries.csv").read_bytes()
    res = run_cli("run", "baseline", "--months", "3", "--out", str(out))
    assert res.returncode == 2 and "--force" in res.stderr
    assert (out / "timeseries.csv").read_bytes() == before
    assert main(["run", "baseline", "--months", "3", "--out", str(out), "--force", "--quiet"]) == 0
    assert len((out / "timeseries.csv").read_text().splitlines()) == 4


def test_scenarios_lists_every_file(capsys):
    """abm scenarios lists each scenario file with its description."""
    assert main(["scenarios"]) == 0
    text = capsys.readouterr().out
    for name in ("baseline", "mega_deal"):
        assert name in text
    assert "5 GW" in text


@pytest.mark.slow
def test_overview_png_is_drawn(tmp_path):
    """abm overview writes a non-blank PNG beside the CSVs."""
    import matplotlib.image as mpimg

    out = tmp_path / "r"
    assert main(["run", "baseline", "--months", "24", "--out", str(out), "--quiet"]) == 0
    assert main(["overview", str(out)]) == 0
    img = mpimg.imread(out / "overview.png")
    assert img.shape[0] > 500 and img.shape[1] > 1000
    assert img[..., :3].std() > 0.05
