"""Start the dashboard (:mod:`analysis.views.dashboard`) as a ``solara run`` subprocess and wait until it
answers.

Works offline: the front-end comes from ``solara-assets``, telemetry and the version check are off.
Run folders and reports written from the page go to ``runs/dashboard`` in the folder the server was started
from (``runs_dir`` of :func:`serve`), and the server serves them at ``/runs/``.
Importing this module is cheap (it does not import Solara or Mesa's visualization).
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import webbrowser
from pathlib import Path
from typing import IO

from ..errors import UserError

APP = Path(__file__).with_name("dashboard.py")
READY_TIMEOUT_S = 60.0
RUNS_ENV = "ABM_DASHBOARD_RUNS"  # read by the page (dashboard.runs_root)


def default_runs_dir() -> Path:
    """``runs/dashboard`` in the current folder: where the page writes run folders and reports."""
    return Path.cwd() / "runs" / "dashboard"


class DashboardError(RuntimeError):
    """The dashboard server could not be started (port taken, solara missing, app crashed)."""


def _bind_error(host: str, port: int) -> OSError | None:
    """Why the server could not listen on ``host:port`` now (None if it can)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no conflict
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc
    return None


def _check_listen(host: str, port: int) -> None:
    """DashboardError naming the flag at fault if the server could not listen on ``host:port``."""
    exc = _bind_error(host, port)
    if exc is None:
        return
    if exc.errno == errno.EADDRINUSE:
        raise DashboardError(f"port {port} on {host} is already in use; choose another with --port")
    if exc.errno in (errno.EACCES, errno.EPERM):
        raise DashboardError(f"--port {port}: not allowed to listen on it ({exc.strerror}); choose a port above 1023")
    reason = exc.strerror or str(exc)
    raise DashboardError(f"--host {host}: cannot listen on this address ({reason}); give a name or address of "
                         "this machine, such as 127.0.0.1")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` now (for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def solara_command(host: str, port: int) -> list[str]:
    """The ``solara run`` command line for the dashboard (production mode, no telemetry, no browser)."""
    return [sys.executable, "-m", "solara", "run", str(APP), "--host", host, "--port", str(port),
            "--production", "--no-check-version", "--no-open"]


def _tail(path: str | None, n: int = 25) -> str:
    if not path:
        return ""
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def _wait_ready(proc: subprocess.Popen, timeout: float, log_path: str | None) -> None:
    """Poll ``proc.url`` until it answers 200; DashboardError if the server exits or the time is up."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise DashboardError(f"the dashboard server exited with status {proc.returncode}"
                                 + (f"; its output ({log_path}):\n{_tail(log_path)}" if log_path else ""))
        try:
            with urllib.request.urlopen(proc.url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if time.monotonic() > deadline:
            raise DashboardError(f"the dashboard server did not answer at {proc.url} within {timeout:.0f} s"
                                 + (f"; its output ({log_path}):\n{_tail(log_path)}" if log_path else ""))
        time.sleep(0.2)


def serve(host: str = "127.0.0.1", port: int = 8765, open_browser: bool = False, *,
          log: str | os.PathLike | IO | None = None, timeout: float = READY_TIMEOUT_S,
          runs_dir: str | os.PathLike | None = None) -> subprocess.Popen:
    """Start the dashboard server and return its process once ``http://host:port/`` answers.

    ``log``: where the server's output goes: a path, an open file, or None for a temporary file (its path is
    ``proc.log_path``). ``runs_dir``: where the page writes run folders and their reports (created when the
    first is written; default :func:`default_runs_dir`), served at ``/runs/``; it is ``proc.runs_dir``.
    Raises :class:`DashboardError` if the port is taken, or if the server exits or does not answer within
    ``timeout`` seconds (it is then stopped). Stop it with ``proc.terminate(); proc.wait()`` or :func:`stop`.
    """
    _check_listen(host, port)
    log_path = None
    if log is None:
        fd, log_path = tempfile.mkstemp(prefix="abm-dashboard-", suffix=".log")
        out = os.fdopen(fd, "wb")
    elif isinstance(log, str | os.PathLike):
        log_path = str(log)
        out = open(log_path, "wb")  # noqa: SIM115 - handed to the child, closed below
    else:
        out = log
    runs = Path(os.path.abspath(runs_dir if runs_dir is not None else default_runs_dir()))
    env = {**os.environ, "SOLARA_TELEMETRY_MIXPANEL_ENABLE": "false", "PYTHONUNBUFFERED": "1",
           RUNS_ENV: str(runs)}
    cwd = APP.parents[2]  # the project root, so that ``analysis`` and ``abm`` import from here
    try:
        proc = subprocess.Popen(solara_command(host, port), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, cwd=cwd)
    finally:
        if out is not log:
            out.close()
    proc.log_path = log_path  # type: ignore[attr-defined]
    proc.runs_dir = runs  # type: ignore[attr-defined]
    url_host = f"[{host}]" if ":" in host else host
    proc.url = f"http://{url_host}:{port}/"  # type: ignore[attr-defined]
    try:
        _wait_ready(proc, timeout, log_path)
    except BaseException:  # not ready, or interrupted while waiting: leave no server behind
        stop(proc)
        raise
    if open_browser:
        webbrowser.open(proc.url)
    return proc


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop a server started by :func:`serve`: SIGTERM, then SIGKILL if it has not exited in ``timeout``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main_dashboard(args) -> int:
    """``abm dashboard [--port N] [--host H] [--open]``: serve until Ctrl-C (or SIGTERM)."""
    host = getattr(args, "host", None) or "127.0.0.1"
    port = int(getattr(args, "port", None) or 8765)

    def _term(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _term)
    proc = None
    interrupted = False
    t0 = time.monotonic()
    try:
        proc = serve(host, port, open_browser=bool(getattr(args, "open", False)), log=sys.stderr)
        print(f"dashboard at {proc.url} (ready in {time.monotonic() - t0:.1f} s); Ctrl-C to stop", flush=True)
        print(f"run folders and reports written from the page go to {proc.runs_dir}", flush=True)
        proc.wait()
    except DashboardError as exc:
        raise UserError(str(exc)) from None
    except KeyboardInterrupt:
        interrupted = True
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc is not None:
            stop(proc)
    if proc is not None and not interrupted and proc.returncode != 0:
        raise UserError(f"the dashboard server stopped with status {proc.returncode}")
    print("dashboard stopped", flush=True)
    return 0
