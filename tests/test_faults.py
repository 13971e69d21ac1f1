"""Faults: a command killed with SIGKILL mid-way leaves no partial folder and resumes to the same bytes as
an uninterrupted run (``abm run``, ``abm sweep``, ``abm calibrate`` here; ``abm ensemble`` in
test_ensemble.py); a run that raises is reported by scenario and seed while the other seeds finish; a
folder computed by another version of the model is refused.

The kill tests start the real ``abm`` command in its own process group and kill the whole group (the
command and its worker processes) once the output shows it is part-way through.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analysis.cli import main
from analysis.experiments import ensemble as ens
from analysis.experiments.ensemble import TaskFailure, execute, prepare_ensemble
from analysis.experiments.executors import SerialExecutor
from analysis.experiments.tasks import Task, open_study, run_tasks, study_info

ROOT = Path(__file__).resolve().parents[1]
VOLATILE = {"run_info.json", "ensemble.json", "sweep.json", "study.json"}  # wall times, versions


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "analysis.cli", *args], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 240.0) -> bool:
    """SIGKILL the process group as soon as ``ready()`` is true; False if the command ended first."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            return False
        if ready():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    raise AssertionError("the command neither finished nor reached the point to kill it at")


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "analysis.cli", *args], cwd=cwd, capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stderr
    return res


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, except those holding wall times and versions."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in VOLATILE}


def _count(pattern: str, folder: Path) -> int:
    return len(list(folder.glob(pattern))) if folder.is_dir() else 0


def _killed_then_resumed(tmp_path: Path, args: list[str], out_flag: list[str] | None, ready, out_name: str
                         ) -> tuple[Path, Path, bool]:
    """Run ``args`` uninterrupted into ``ref/``, then killed (when ``ready(folder)``) and rerun into
    ``killed/``; returns both folders and whether the kill hit the command part-way."""
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    ref.mkdir()
    killed.mkdir()
    _run([*args, *(out_flag or []), "--out", out_name], ref)
    proc = _start([*args, *(out_flag or []), "--out", out_name], killed)
    hit = _kill_when(proc, lambda: ready(killed / out_name))
    return ref / out_name, killed / out_name, hit


# ------------------------------------------------------------------------------------------------ kill -9
@pytest.mark.slow
def test_killed_run_leaves_no_folder_and_reruns_identically(tmp_path):
    args = ["run", "baseline", "--seed", "3", "--months", "60", "--quiet"]
    ref, killed, hit = _killed_then_resumed(
        tmp_path, args, None, lambda out: any(out.parent.glob(f".{out.name}.tmp-*")), "r")
    assert hit, "abm run finished before it could be killed while writing"
    assert not killed.exists(), "a killed abm run left a visible run folder"
    assert list(killed.parent.glob(".r.tmp-*")), "the kill did not hit the writing phase"
    _run([*args, "--out", "r"], killed.parent)
    assert not list(killed.parent.glob(".r.*")), "the rerun did not clear the killed run's temporary folder"
    assert _files(killed) == _files(ref)


@pytest.mark.slow
def test_killed_sweep_resumes_to_the_same_bytes(tmp_path):
    args = ["sweep", "baseline", "--param", "capital.kappa=0.5,1,2", "--seeds", "3", "--months", "24",
            "--workers", "2", "--quiet"]
    ref, killed, hit = _killed_then_resumed(tmp_path, args, None,
                                            lambda out: _count("cells/*/seeds/*/timeseries.csv", out) >= 4, "s")
    assert hit
    assert 4 <= _count("cells/*/seeds/*/timeseries.csv", killed) < 9 and not (killed / "sweep.csv").exists()
    _run([*args, "--out", "s"], killed.parent)
    assert _files(killed) == _files(ref)


def _results(folder: Path) -> int:
    path = folder / "results.jsonl"
    return path.read_bytes().count(b"\n") if path.is_file() else 0


@pytest.mark.slow
def test_killed_calibration_resumes_to_the_same_result(tmp_path):
    scn = tmp_path / "historical_copy.toml"
    shutil.copy(ROOT / "scenarios" / "historical_2023.toml", scn)
    outs = {}
    for name in ("ref", "killed"):
        d = tmp_path / name
        d.mkdir()
        shutil.copy(scn, d / "fit.toml")
    args = ["calibrate", str(scn), "--tiny", "--report", "report.md", "--apply-to", "fit.toml", "--quiet"]
    _run([*args, "--out", "c"], tmp_path / "ref")
    proc = _start([*args, "--out", "c"], tmp_path / "killed")
    assert _kill_when(proc, lambda: _results(tmp_path / "killed" / "c") >= 5)
    assert not (tmp_path / "killed" / "report.md").exists()
    _run([*args, "--out", "c"], tmp_path / "killed")
    for name in ("ref", "killed"):
        d = tmp_path / name
        lines = (d / "c" / "results.jsonl").read_text().splitlines()
        outs[name] = ((d / "report.md").read_bytes(), (d / "fit.toml").read_bytes(),
                      {json.loads(x)["key"]: x for x in lines})
    assert outs["killed"][0] == outs["ref"][0], "the resumed calibration's report differs"
    assert outs["killed"][1] == outs["ref"][1], "the resumed calibration wrote other fitted values"
    assert outs["killed"][2] == outs["ref"][2]


# ------------------------------------------------------------------------------------------------ failures
REAL_RUN_SEED = ens.run_seed


def _failing_run_seed(bad: set[int]):
    real = REAL_RUN_SEED

    def run_seed(toml, seed, months):
        if seed in bad:
            raise ZeroDivisionError("injected failure")
        return real(toml, seed, months)

    return run_seed


def test_a_failing_seed_is_named_and_the_others_finish(tmp_path, monkeypatch):
    plan = prepare_ensemble("baseline", 4, months=3, out=tmp_path / "e")
    monkeypatch.setattr(ens, "run_seed", _failing_run_seed({plan.seeds[1]}))
    with pytest.raises(TaskFailure) as err:
        execute([plan], SerialExecutor(), progress=False)
    msg = str(err.value)
    assert f"baseline seed {plan.seeds[1]}" in msg and "ZeroDivisionError: injected failure" in msg
    assert "1 of 4 runs failed" in msg
    assert [plan.seed_file(i).is_file() for i in range(4)] == [True, False, True, True]
    log = (tmp_path / "e" / "errors.log").read_text()
    assert "Traceback" in log and "injected failure" in log
    # rerun once the defect is gone: only the failed seed is computed, and the log is removed
    monkeypatch.setattr(ens, "run_seed", _failing_run_seed(set()))
    assert execute([plan], SerialExecutor(), progress=False) == 1
    assert not (tmp_path / "e" / "errors.log").exists()


def test_cli_reports_a_failing_seed_in_one_line_with_status_1(tmp_path, monkeypatch, capsys):
    plan = prepare_ensemble("baseline", 3, months=2, out=tmp_path / "x")
    monkeypatch.setattr(ens, "run_seed", _failing_run_seed({plan.seeds[2]}))
    code = main(["ensemble", "baseline", "--seeds", "3", "--months", "2", "--out", str(tmp_path / "e"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("abm: error: 1 of 3 runs failed")
    assert f"seed {plan.seeds[2]}" in err and "Traceback" not in err
    assert len(list((tmp_path / "e" / "seeds").glob("*/timeseries.csv"))) == 2


def _task(x: int) -> int:
    if x == 3:
        raise ValueError("bad point")
    return x * x


def test_a_failing_task_is_named_and_the_others_are_kept(tmp_path):
    study = open_study(tmp_path / "s", study_info("test", {"n": 6}))
    tasks = [Task(f"k{i}", _task, (i,)) for i in range(6)]
    with pytest.raises(TaskFailure, match="task k3: ValueError: bad point"):
        run_tasks(study, tasks, SerialExecutor(), progress=False)
    assert sorted(study.done) == ["k0", "k1", "k2", "k4", "k5"]
    assert "bad point" in (tmp_path / "s" / "errors.log").read_text()


# ------------------------------------------------------------------------------------------------ versions
def _set_fingerprint(path: Path, value: str) -> None:
    info = json.loads(path.read_text())
    info["model_sha256"] = value
    path.write_text(json.dumps(info))


@pytest.mark.parametrize("command", ["sweep", "sensitivity", "calibrate"])
def test_folders_of_another_model_version_are_refused(tmp_path, command, capsys):
    out = tmp_path / "f"
    argv = {
        "sweep": ["sweep", "baseline", "--param", "capital.kappa=1,2", "--seeds", "1", "--months", "2"],
        "sensitivity": ["sensitivity", "baseline", "--outputs", "labs_active", "--n", "2", "--seeds", "1",
                        "--months", "2"],
        "calibrate": ["calibrate", "historical_2023", "--tiny", "--dry-run", "--max-evals", "1"],
    }[command] + ["--out", str(out), "--quiet"]
    assert main(argv) == 0, capsys.readouterr().err
    info = out / {"sweep": "sweep.json"}.get(command, "study.json")
    _set_fingerprint(info, "f" * 64)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "another version of the model" in err and len(err.strip().splitlines()) == 1
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert main([*argv, "--allow-model-change"]) == 0
    assert "abm: warning: the model code" in capsys.readouterr().err
