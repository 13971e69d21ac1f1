"""Installing without cloning: a wheel built by ``pip wheel .`` carries the model, the command line, its data
files and every shipped scenario, and runs them from a folder that is not the repository."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from abm.scenario import available_scenarios

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import io, sys, contextlib
sys.path.insert(0, {site!r})
import abm, analysis
assert abm.__file__.startswith({site!r}), abm.__file__
from abm.scenario import available_scenarios
from analysis.cli import main
names = available_scenarios()
print("scenarios:", ",".join(names))
for name in names:
    code = main(["run", name, "--months", "3", "--out", "runs/" + name, "--quiet"])
    assert code == 0, (name, code)
print("ran", len(names))
"""


@pytest.mark.slow
def test_wheel_runs_every_shipped_scenario(tmp_path):
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                            "-w", str(wheels), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheels.glob("compute_market_abm-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = available_scenarios()
    assert {f"abm/scenarios/{n}.toml" for n in shipped} <= set(names)
    assert any(n.startswith("abm/data/") and n.endswith(".csv") for n in names)
    site = tmp_path / "site"
    inst = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                           str(wheel)], capture_output=True, text=True, timeout=600)
    assert inst.returncode == 0, inst.stderr[-2000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    res = subprocess.run([sys.executable, "-c", SCRIPT.format(site=str(site))], cwd=work, capture_output=True,
                         text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"ran {len(shipped)}" in res.stdout
    assert sorted(res.stdout.split("scenarios: ")[1].split()[0].split(",")) == sorted(shipped)
    assert all((work / "runs" / n / "timeseries.csv").is_file() for n in shipped)


def test_dashboard_front_end_matches_the_solara_that_serves_it():
    from importlib.metadata import version

    assert version("solara-assets") == version("solara") == version("solara-server") == version("solara-ui")


def test_constraints_pin_every_installed_requirement():
    """constraints.txt pins each dependency of pyproject.toml (and their own) to one exact version."""
    import tomllib

    from packaging.requirements import Requirement

    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, ver = line.partition("==")
            assert sep and ver.strip(), f"constraints.txt: {line!r} is not name==version"
            pins[name.strip().lower().replace("_", "-")] = ver.strip()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
    for spec in wanted:
        req = Requirement(spec)
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{req.name} is not pinned in constraints.txt (run make lock)"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} violates {spec}"
