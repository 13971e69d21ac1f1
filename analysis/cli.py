"""The ``abm`` command line: run a scenario, list scenarios, draw a run's overview figure.

User mistakes (unknown scenario, broken TOML, bad ``--set``, out-of-range values, an existing output
folder) end with one line ``abm: error: ...`` on stderr and exit status 2, and leave nothing on disk.
matplotlib is imported only by ``abm overview``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import tomllib
from pathlib import Path

EXIT_USAGE = 2


class UserError(Exception):
    """A mistake in the command's arguments or inputs; reported in one line, exit status 2."""


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, int):
        return str(v)
    f = float(v)
    if math.isnan(f):
        return "n/a"
    if f != 0 and (abs(f) >= 1e6 or abs(f) < 1e-3):
        return f"{f:.3g}"
    return f"{f:,.4g}" if abs(f) < 1000 else f"{f:,.0f}"


def _blame_flag(msg: str, args: argparse.Namespace) -> str:
    """Name the command-line flag, not the scenario file, when a flag's value is what failed validation.

    ``load_scenario`` labels every validation error with the scenario file; ``"<file>: run.months: ..."``
    becomes ``"--months 700: run.months: ..."``.
    """
    flags = [(item.split("=", 1)[0].strip(), f"--set {item}") for item in args.set or []]
    if args.months is not None:
        flags.append(("run.months", f"--months {args.months}"))
    if args.seed is not None:
        flags.append(("run.seed", f"--seed {args.seed}"))
    for key, flag in reversed(flags):  # the last --set of a key is the one that applies
        i = msg.find(f": {key}: ")
        if i >= 0:
            return f"{flag}: {msg[i + 2:]}"
    return msg


# ------------------------------------------------------------------------------------------------ commands
def cmd_run(args: argparse.Namespace) -> int:
    from abm.scenario import ScenarioError, load_scenario

    from .runio import OutputError, check_target, run_scenario, write_run

    try:
        scn = load_scenario(args.scenario, overrides=args.set or None, seed=args.seed, months=args.months)
    except ScenarioError as exc:
        raise UserError(_blame_flag(str(exc), args)) from None
    out = Path(args.out) if args.out else Path("runs") / f"{scn.name}-seed{scn.run.seed}"
    try:
        check_target(out, args.force)  # fail before spending the run's time; checked again when writing
    except OutputError as exc:
        raise UserError(str(exc)) from None
    t0 = time.perf_counter()
    try:
        model = run_scenario(scn)
    except ScenarioError as exc:  # e.g. an event that turns out to be invalid when applied
        raise UserError(str(exc)) from None
    wall = time.perf_counter() - t0
    try:
        write_run(model, out, wall, force=args.force)
    except OutputError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"cannot write {exc.filename or out}: {exc.strerror or exc}") from None
    if not args.quiet:
        last = model.rows[-1] if model.rows else {}
        heads = ", ".join(f"{k}={_fmt(last.get(k))}" for k in
                          ("lab_hhi_compute", "entry_barrier_usd", "frontier_capability"))
        print(f"{out}: {len(model.rows)} months in {wall:.1f} s; final {heads}")
    return 0


def cmd_scenarios(args: argparse.Namespace) -> int:
    from abm.scenario import SCENARIO_DIR, available_scenarios

    names = available_scenarios()
    if not names:
        print(f"no scenarios in {SCENARIO_DIR}")
        return 0
    width = max(len(n) for n in names)
    for name in names:
        path = SCENARIO_DIR / f"{name}.toml"
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
            desc = data.get("description") or (f"(extends {data['extends']})" if data.get("extends") else "")
            desc = " ".join(str(desc).split())
        except tomllib.TOMLDecodeError as exc:
            desc = f"(invalid TOML: {exc})"
        except OSError as exc:
            desc = f"(cannot read: {exc.strerror})"
        print(f"{name:<{width}}  {desc}".rstrip())
    return 0


def cmd_overview(args: argparse.Namespace) -> int:
    d = Path(args.dir)
    if not d.is_dir():
        raise UserError(f"{d}: run folder not found" if not d.exists() else f"{d}: not a directory")
    if not (d / "timeseries.csv").is_file():
        raise UserError(f"{d}: no timeseries.csv; give a folder written by 'abm run'")
    from .figures import FigureInputError, overview

    try:
        path = overview(d)
    except FigureInputError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"cannot write {exc.filename or d}: {exc.strerror or exc}") from None
    print(path)
    return 0


# ------------------------------------------------------------------------------------------------ parser
def _nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return v


def _pos_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return v


def _override(text: str) -> str:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected key.path=value, got {text!r}")
    return text


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors in the same ``abm: error: ...`` form as the rest (exit status 2)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"abm: error: {message}; see '{self.prog} --help'\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="abm", description="Agent-based model of the AI compute market.")
    try:
        from importlib.metadata import version

        ver = version("compute-market-abm")
    except Exception:  # not installed: no version to show
        ver = "unknown"
    p.add_argument("--version", action="version", version=f"%(prog)s {ver}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("run", help="run a scenario and write a run folder",
                       description="Run a scenario and write timeseries.csv, agents.csv, contracts.csv, "
                                   "events.csv, runs.csv, scenario.toml and run_info.json into a folder.")
    r.add_argument("scenario", metavar="SCENARIO", help="a name in scenarios/ or a path to a .toml file")
    r.add_argument("--seed", type=_nonneg_int, metavar="N", help="master seed (default: the scenario's run.seed)")
    r.add_argument("--months", type=_pos_int, metavar="N", help="months to simulate (default: run.months)")
    r.add_argument("--out", metavar="DIR", help="output folder (default: runs/<scenario>-seed<N>/)")
    r.add_argument("--set", action="append", type=_override, metavar="KEY.PATH=VALUE", default=[],
                   help="override a scenario value, e.g. --set capital.kappa=2 (repeatable)")
    r.add_argument("--force", action="store_true", help="replace an existing run folder")
    r.add_argument("--quiet", action="store_true", help="print nothing on success")
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("scenarios", help="list the scenarios in scenarios/",
                       description="List the scenarios in scenarios/ with their descriptions.")
    s.set_defaults(func=cmd_scenarios)

    o = sub.add_parser("overview", help="draw DIR/overview.png from a run folder",
                       description="Draw a 2x3 overview figure of a run folder into DIR/overview.png.")
    o.add_argument("dir", metavar="DIR", help="a folder written by 'abm run'")
    o.set_defaults(func=cmd_overview)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.error("a command is required: run, scenarios or overview")
    try:
        return args.func(args)
    except UserError as exc:
        print("abm: error: " + " ".join(str(exc).split()), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("abm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
