"""Studies made of many small independent tasks (sensitivity points, probe entrants), run on an Executor
and resumable.

A study lives in a folder with ``study.json`` (what was asked: the arguments that decide every task) and
``results.jsonl``, one line ``{"key": ..., "result": ...}`` per finished task, appended as each finishes.
Running the same command again reads the finished keys and computes only the others; a line torn by a kill
is dropped. Outputs are computed from the results sorted by key, never from the file's order, so they are
the same whatever the number of workers or the executor.

``study.json`` written by another set of arguments makes :func:`open_study` refuse (``--force`` replaces
the folder); so does a change of the model's code since the study started, unless allowed explicitly.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from abm.scenario import ScenarioError

from ..runio import remove_stale_temporaries
from .ensemble import (
    PACKAGE,
    EnsembleError,
    Failures,
    _progress_bar,
    atomic_write,
    folder_info,
    model_check,
    model_fingerprint,
)

INFO = "study.json"
RESULTS = "results.jsonl"
# Keys of study.json that may differ on resume (a warning, or nothing), not a refusal.
VOLATILE = ("model_sha256", "versions", "command")


@dataclass
class Study:
    """A study folder: its arguments (``info``) and the results finished so far (``done``, by key)."""

    out: Path
    info: dict
    state: str = "new"  # new, resume, replace
    done: dict[str, object] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    created_here: bool = False

    @property
    def results_path(self) -> Path:
        return self.out / RESULTS

    def create(self) -> None:
        """Create (or replace) the folder with study.json; on resume read the finished results."""
        if self.state == "resume":
            remove_stale_temporaries(self.out)
            self.done = read_results(self.results_path)
            return
        if self.state == "replace":
            shutil.rmtree(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write(self.out / INFO, json.dumps(self.info, indent=2, sort_keys=True) + "\n")
        self.results_path.touch()
        self.state = "resume"
        self.created_here = True
        self.done = {}

    def append(self, key: str, result) -> None:
        """Record one finished task: one line, written with a single ``write`` and flushed to disk."""
        line = json.dumps({"key": key, "result": result}, sort_keys=True, allow_nan=True) + "\n"
        fd = os.open(self.results_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        self.done[key] = result

    def write(self, name: str, text: str) -> Path:
        """Write an output file of the study atomically."""
        path = self.out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, text)
        return path


def read_results(path: Path) -> dict[str, object]:
    """The finished results of a results.jsonl, by key. A torn (unparsable) last line, left by a process
    killed mid-write, is cut off; an unparsable line elsewhere means the file was edited: an error."""
    if not path.is_file():
        return {}
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    out: dict[str, object] = {}
    good = 0
    for i, line in enumerate(lines):
        if not line.strip():
            good += len(line) + 1
            continue
        try:
            rec = json.loads(line)
            out[str(rec["key"])] = rec["result"]
        except (ValueError, KeyError, TypeError):
            if i == len(lines) - 1:  # a torn last line: drop it so that appends start on a fresh line
                with open(path, "r+b") as fh:
                    fh.truncate(good)
                break
            raise EnsembleError(f"{path}: line {i + 1} is not a result; delete the file to recompute") from None
        good += len(line) + 1
    return out


def study_info(kind: str, args: dict) -> dict:
    """study.json's content: the kind of study, its arguments, the model's fingerprint and versions."""
    import platform

    import numpy as np

    from .ensemble import _version

    return {"study": kind, **args, "model_sha256": model_fingerprint(),
            "versions": {PACKAGE: _version(PACKAGE), "python": platform.python_version(),
                         "numpy": np.__version__, "SALib": _version("SALib")}}


def open_study(out: str | Path, info: dict, force: bool = False, allow_model_change: bool = False) -> Study:
    """Check the folder ``out`` for a study with ``info``; writes nothing (see :meth:`Study.create`).

    Absent or empty: new. Holding the same study: resume. Another study, or not a study folder: an
    EnsembleError naming the first argument that differs, unless ``force`` (replace; a folder that is not
    a study is never replaced). A study started by another version of the model needs ``force`` or
    ``allow_model_change`` (see :func:`~analysis.experiments.ensemble.model_check`)."""
    out = Path(out)
    study = Study(out=out, info=info)
    old = folder_info(out, INFO, f"a {info['study']}", force)
    if old == "new":
        return study
    if old == "replace":
        study.state = "replace"
        return study
    for key in sorted(set(old) | set(info)):
        if key in VOLATILE or old.get(key) == info.get(key):
            continue
        if force:
            study.state = "replace"
            return study
        raise EnsembleError(f"{out} holds a study made with other arguments ({key}: {old.get(key)!r} there, "
                            f"{info.get(key)!r} now); use --force to replace it, or another --out")
    study.state = model_check(out, old.get("model_sha256"), force, allow_model_change, study.warnings)
    return study


@dataclass(frozen=True)
class Task:
    """One task: a key (unique in the study), a top-level function and its plain arguments."""

    key: str
    fn: Callable
    args: tuple = ()


def run_tasks(study: Study, tasks: Iterable[Task], executor: cf.Executor, progress: bool = True,
              desc: str = "study", unit: str = "task") -> int:
    """Compute the tasks of ``study`` not yet finished on ``executor``, appending each result as it comes.

    A few tasks per worker are in flight at a time. Returns the number computed. A task's ScenarioError
    becomes an EnsembleError naming the task at once; a task that raises anything else is recorded while the
    others finish, then :class:`~analysis.experiments.ensemble.TaskFailure` names it (tracebacks in the
    study's ``errors.log``). Errors of the machinery cancel the rest and propagate; finished results stay
    on disk.
    """
    from .executors import run_windowed

    study.create()
    tasks = list(tasks)
    keys = [t.key for t in tasks]
    if len(set(keys)) != len(keys):
        raise ValueError("task keys must be unique")
    todo = [t for t in tasks if t.key not in study.done]
    bar = _progress_bar(len(tasks), len(tasks) - len(todo), progress, desc)
    if bar is not None and hasattr(bar, "unit"):
        bar.unit = unit
    computed = 0

    failures = Failures(study.out, len(todo))

    def finished(t: Task, fut: cf.Future) -> None:
        nonlocal computed
        try:
            result = fut.result()
        except ScenarioError as exc:
            raise EnsembleError(f"task {t.key}: {exc}") from None
        except Exception as exc:
            failures.record(f"task {t.key}", exc)
            return
        study.append(t.key, result)
        computed += 1
        if bar is not None:
            bar.update(1)

    try:
        run_windowed(executor, ((t, t.fn, t.args) for t in todo), finished)
    finally:
        if bar is not None:
            bar.close()
    failures.check()
    return computed


def results_in_order(study: Study, keys: Sequence[str]) -> list:
    """The results of ``keys`` in that order (all must be finished)."""
    missing = [k for k in keys if k not in study.done]
    if missing:
        raise EnsembleError(f"{study.out}: {len(missing)} tasks unfinished (first {missing[0]}); run the command "
                            "again to finish them")
    return [study.done[k] for k in keys]
