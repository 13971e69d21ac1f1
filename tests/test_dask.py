"""Ensembles on a real Dask cluster give the same bytes as the serial run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from analysis.cli import main
from analysis.experiments.ensemble import prepare_ensemble, run_ensemble

ROOT = Path(__file__).resolve().parent.parent
SEEDS, MONTHS = 4, 12

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address="127.0.0.1:0") as c:
        yield c


@pytest.fixture(scope="module")
def serial(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dask") / "serial"
    assert main(["ensemble", "baseline", "--seeds", str(SEEDS), "--months", str(MONTHS), "--out", str(out),
                 "--quiet"]) == 0
    return out


def _seed_files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted((d / "seeds").glob("*/timeseries.csv"))}


def test_client_executor_matches_serial(cluster, serial, tmp_path):
    """The Python API on Client(cluster).get_executor(): identical ensemble.csv and seed files."""
    from distributed import Client

    plan = prepare_ensemble("baseline", SEEDS, months=MONTHS, out=tmp_path / "dask")
    with Client(cluster) as client:
        ex = client.get_executor()
        path = run_ensemble(plan, ex)
        ex.shutdown()
    assert path.read_bytes() == (serial / "ensemble.csv").read_bytes()
    assert _seed_files(tmp_path / "dask") == _seed_files(serial) and len(_seed_files(serial)) == SEEDS


def test_cli_scheduler_matches_serial(cluster, serial, tmp_path):
    """abm ensemble --scheduler ADDRESS (a separate process connecting to the cluster): identical bytes."""
    out = tmp_path / "cli"
    res = subprocess.run([sys.executable, "-m", "analysis.cli", "ensemble", "baseline", "--seeds", str(SEEDS),
                          "--months", str(MONTHS), "--scheduler", cluster.scheduler_address, "--out", str(out)],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().startswith(f"{out}: {SEEDS} seeds")
    assert (out / "ensemble.csv").read_bytes() == (serial / "ensemble.csv").read_bytes()
    assert _seed_files(out) == _seed_files(serial)


def test_validate_on_the_cluster_matches_local(cluster, tmp_path):
    """abm validate --scheduler gives the same validation.csv as local processes (the calibration's moments
    travel the same way)."""
    def run(*extra: str) -> bytes:
        out = tmp_path / extra[-1].replace(":", "_").replace("/", "_")
        res = subprocess.run([sys.executable, "-m", "analysis.cli", "validate", "historical_2023", "--seeds", "3",
                              "--months", "24", "--out", str(out), "--quiet", *extra],
                             capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert res.returncode == 0, res.stderr
        return (out / "validation.csv").read_bytes()

    assert run("--scheduler", cluster.scheduler_address) == run("--workers", "2")
