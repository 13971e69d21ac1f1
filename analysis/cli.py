"""The ``abm`` command line: run a scenario, run an ensemble of seeds, compare scenarios, benchmark the
model, list scenarios, draw a run's overview figure, write an HTML report or an animation, audit a run's
money, serve the live dashboard.

User mistakes (unknown scenario, broken TOML, bad ``--set``, out-of-range values, an existing output
folder) end with one line ``abm: error: ...`` on stderr and exit status 2, and leave nothing on disk.
matplotlib is imported only by the commands that draw (``overview``, ``compare``, ``report``, ``animate``);
Dask only with ``--scheduler`` or ``--dask-local``; Solara only by ``dashboard``.
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import sys
import time
import tomllib
from pathlib import Path

from .errors import EXIT_FAILED, EXIT_USAGE, RunFailure, UserError


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
    if getattr(args, "seed", None) is not None:
        flags.append(("run.seed", f"--seed {args.seed}"))
    if getattr(args, "master_seed", None) is not None:
        flags.append(("run.seed", f"--master-seed {args.master_seed}"))
    for key, flag in reversed(flags):  # the last --set of a key is the one that applies
        i = msg.find(f": {key}: ")
        if i >= 0:
            return f"{flag}: {msg[i + 2:]}"
    return msg


# ------------------------------------------------------------------------------------------------ commands
def cmd_run(args: argparse.Namespace) -> int:
    from abm.scale import scale_world
    from abm.scenario import ScenarioError, load_scenario

    from .runio import OutputError, check_target, run_scenario, write_run

    try:
        scn = load_scenario(args.scenario, overrides=args.set or None, seed=args.seed, months=args.months)
        if args.labs is not None:
            scn = scale_world(scn, args.labs)
    except ScenarioError as exc:
        raise UserError(_blame_flag(str(exc), args)) from None
    size = f"-labs{args.labs}" if args.labs is not None else ""
    out = Path(args.out) if args.out else Path("runs") / f"{scn.name}{size}-seed{scn.run.seed}"
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
        write_run(model, out, wall, force=args.force, fmt=args.format)
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


def _executor_kwargs(args: argparse.Namespace) -> dict:
    return {"workers": args.workers, "scheduler": args.scheduler, "dask_local": args.dask_local}


def _remove_if_empty_run(folder: Path, plans) -> None:
    """After a failed start: remove a folder created by this command if no seed was completed in it."""
    try:
        if folder.is_dir() and not any(p.completed() for p in plans):
            shutil.rmtree(folder, ignore_errors=True)
    except OSError:
        pass


def cmd_ensemble(args: argparse.Namespace) -> int:
    from abm.scenario import ScenarioError

    from .experiments.ensemble import EnsembleError, execute, prepare_ensemble, write_summary
    from .experiments.executors import make_executor

    try:
        plan = prepare_ensemble(args.scenario, args.seeds, master_seed=args.master_seed, months=args.months,
                                overrides=args.set, out=args.out, force=args.force,
                                allow_model_change=args.allow_model_change, fmt=args.format)
    except ScenarioError as exc:
        raise UserError(_blame_flag(str(exc), args)) from None
    except EnsembleError as exc:
        raise UserError(str(exc)) from None
    for w in plan.warnings:
        print(f"abm: warning: {w}", file=sys.stderr)
    t0 = time.perf_counter()
    try:
        with make_executor(**_executor_kwargs(args)) as ex:
            computed = execute([plan], ex, progress=not args.quiet, desc=plan.name)
        write_summary(plan)
    except BaseException as exc:
        if plan.created_here:
            _remove_if_empty_run(plan.out, [plan])
        _reraise_run_failure(exc, args)
        raise
    wall = time.perf_counter() - t0
    if not args.quiet:
        print(f"{plan.out}: {plan.n} seeds x {plan.months} months ({computed} computed, "
              f"{plan.n - computed} already done) in {wall:.1f} s")
    return 0


def _reraise_run_failure(exc: BaseException, args: argparse.Namespace) -> None:
    """After an ensemble or comparison failed and was cleaned up: raise a user error one line long, if it is one."""
    from .experiments.ensemble import EnsembleError, TaskFailure
    from .experiments.executors import ExecutorError
    from .runio import OutputError

    if isinstance(exc, TaskFailure):
        raise RunFailure(str(exc)) from None
    if isinstance(exc, EnsembleError | ExecutorError | OutputError):
        raise UserError(str(exc)) from None
    _explain_failure(exc, args)


def _explain_failure(exc: BaseException, args: argparse.Namespace) -> None:
    """Turn a file-system error, or a Dask cluster lost mid-run, into a one-line UserError."""
    import concurrent.futures as cf

    if isinstance(exc, OSError) and exc.filename is not None:
        raise UserError(f"cannot write {exc.filename}: {exc.strerror or exc}") from None
    dask = args.scheduler is not None or args.dask_local is not None
    if dask and isinstance(exc, OSError | cf.CancelledError | TimeoutError):
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise UserError(f"the Dask cluster failed ({msg}); finished seeds are kept: run the same command "
                        "again to resume") from None


def _folder_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "scenario"


def cmd_compare(args: argparse.Namespace) -> int:
    import json

    from abm.scenario import ScenarioError, load_scenario

    from .experiments import compare as cmp
    from .experiments.ensemble import EnsembleError, atomic_write, execute, prepare_ensemble, write_summary
    from .experiments.executors import make_executor
    from .runio import stage_dir
    from .views.comparison_figures import draw_figures

    if len(args.scenarios) < 2:
        raise UserError("compare needs at least two scenarios (the first is the reference)")
    try:
        scns = [load_scenario(s, overrides=args.set or None, months=args.months) for s in args.scenarios]
    except ScenarioError as exc:
        raise UserError(_blame_flag(str(exc), args)) from None
    names = [s.name for s in scns]
    folders = [_folder_name(n) for n in names]
    if len(set(folders)) != len(folders):
        raise UserError(f"scenarios need distinct names (given {', '.join(names)}); set 'name' in the files")
    master = scns[0].run.seed if args.master_seed is None else args.master_seed
    months = scns[0].run.months  # the first scenario's (or --months) for all: pairs are month by month
    horizons = args.horizons
    within = [h for h in horizons if h <= months]
    if not within:
        raise UserError(f"--horizons {','.join(map(str, horizons))}: every horizon is beyond the run's "
                        f"{months} months")
    out = Path(args.out) if args.out else Path("runs") / f"compare-{'-vs-'.join(folders)}-{args.seeds}"
    if out.exists() or out.is_symlink():
        if out.is_symlink() or not out.is_dir():
            raise UserError(f"{out} exists and is not a directory; choose another --out")
        if any(out.iterdir()) and not (out / "compare.json").is_file():
            raise UserError(f"{out} exists and is not a comparison folder (no compare.json); "
                            "choose another --out")
    try:
        plans = [prepare_ensemble(s, args.seeds, master_seed=master, months=months, overrides=args.set,
                                  out=out / f, force=args.force, allow_model_change=args.allow_model_change,
                                  fmt=args.format)
                 for s, f in zip(args.scenarios, folders, strict=True)]
    except ScenarioError as exc:
        raise UserError(_blame_flag(str(exc), args)) from None
    except EnsembleError as exc:
        raise UserError(str(exc)) from None
    for p in plans:
        for w in p.warnings:
            print(f"abm: warning: {p.name}: {w}", file=sys.stderr)
    command = cmp.command_line(args.scenarios, args.seeds, master, months, horizons, args.set, out, args.format)
    info = {"scenarios": names, "sources": list(args.scenarios), "reference": names[0],
            "folders": folders, "n_seeds": args.seeds, "master_seed": master, "months": months,
            "overrides": list(args.set), "horizons": horizons, "command": command}
    info_text = json.dumps(info, indent=2) + "\n"

    t0 = time.perf_counter()
    created = False
    try:
        with make_executor(**_executor_kwargs(args)) as ex:
            if not (out.is_dir() and any(out.iterdir())):
                def populate(d: Path) -> None:
                    (d / "compare.json").write_text(info_text, encoding="utf-8")
                    for p, f in zip(plans, folders, strict=True):
                        p.populate(d / f)

                stage_dir(out, populate)
                created = True
                for p in plans:
                    p.state = "resume"
            computed = execute(plans, ex, progress=not args.quiet, desc="compare")
        data = {}
        for name, p in zip(names, plans, strict=True):
            data[name] = p.load()
            write_summary(p, data[name])
        rows = cmp.comparison_rows(names, data, within)
        cmp.write_csv(out / "comparison.csv", rows)
        md = cmp.markdown(rows, names, args.seeds, master, months, horizons, command)
        atomic_write(out / "comparison.md", md)
        draw_figures(out / "figures", names, data)
        atomic_write(out / "compare.json", info_text)
    except BaseException as exc:
        if created:
            _remove_if_empty_run(out, plans)
        else:
            for p in plans:
                if p.created_here:
                    _remove_if_empty_run(p.out, [p])
        _reraise_run_failure(exc, args)
        raise
    wall = time.perf_counter() - t0
    if not args.quiet:
        total = sum(p.n for p in plans)
        print(f"{out}: {len(plans)} scenarios x {args.seeds} seeds x {months} months ({computed} of {total} "
              f"runs computed) in {wall:.1f} s; comparison.csv, comparison.md, figures/")
    return 0


def _targets(path: str | None):
    from .experiments.moments import TARGETS_FILE, TargetError, load_targets

    try:
        return load_targets(path or TARGETS_FILE)
    except TargetError as exc:
        raise UserError(str(exc)) from None


def cmd_validate(args: argparse.Namespace) -> int:
    from abm.scenario import ScenarioError, load_scenario, to_toml

    from .experiments import validation as val
    from .experiments.ensemble import child_seeds
    from .experiments.executors import make_executor
    from .runio import OutputError, check_target, stage_dir

    targets = _targets(args.targets)
    try:
        cfg = load_scenario(args.scenario, overrides=args.set or None, months=args.months)
    except ScenarioError as exc:
        raise UserError(_blame_flag(str(exc), args)) from None
    chosen = val.scenario_targets(cfg, targets)
    if not chosen:
        raise UserError(f"{args.scenario}: no target applies to a run from {cfg.run.start} over {cfg.run.months} "
                        "months (targets are dated 2023-2026)")
    master = cfg.run.seed if args.master_seed is None else args.master_seed
    out = Path(args.out) if args.out else Path("runs") / f"validate-{_folder_name(cfg.name)}-{args.seeds}"
    try:  # before the runs: a file, a folder under a file or another kind of folder is refused now
        check_target(out, args.force, lambda d: (d / "validation.md").is_file(),
                     "a validation folder (no validation.md)")
    except OutputError as exc:
        raise UserError(str(exc)) from None
    seeds = child_seeds(master, args.seeds)
    outlook = val.outlook_targets(cfg)
    t0 = time.perf_counter()
    try:
        with make_executor(**_executor_kwargs(args)) as ex:
            per_seed = val.run_validation(to_toml(cfg), seeds, cfg.run.months, chosen + outlook, ex,
                                          progress=not args.quiet)
    except BaseException as exc:
        _reraise_run_failure(exc, args)
        raise
    rows = val.summarise(chosen, per_seed)
    md = val.markdown(rows, cfg.name, args.seeds, master) + "\n" + val.outlook_markdown(
        val.summarise(outlook, per_seed))

    def populate(d: Path) -> None:
        (d / "validation.csv").write_text(val.csv_text(rows), encoding="utf-8")
        (d / "validation.md").write_text(md, encoding="utf-8")

    try:
        stage_dir(out, populate, replace=args.force)
    except OutputError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    if not args.quiet:
        print(md)
        print(f"{out}: validation.md, validation.csv ({args.seeds} seeds in {time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .experiments import calibration as cal

    targets = _targets(args.targets)
    try:
        result = cal.run_calibration(args.scenario, targets, seeds=args.seeds, master_seed=args.seed,
                                     budget_s=args.budget * 60.0, tiny=args.tiny, executor_kwargs=_executor_kwargs(args),
                                     progress=not args.quiet, write=not args.dry_run, report=args.report,
                                     apply_to=args.apply_to, max_evals=args.max_evals, out=args.out,
                                     force=args.force, allow_model_change=args.allow_model_change,
                                     warn=lambda w: print(f"abm: warning: {w}", file=sys.stderr))
    except cal.CalibrationError as exc:
        raise UserError(str(exc)) from None
    except BaseException as exc:
        _reraise_run_failure(exc, args)
        raise
    if not args.quiet:
        print(result.summary())
    return 0


def _study_failure(exc: BaseException, args: argparse.Namespace, *errors: type[Exception]) -> None:
    """After a sweep, barriers or sensitivity study failed: its own user errors and those of ensembles,
    executors and scenarios become one line."""
    from abm.scenario import ScenarioError

    from .experiments.ensemble import TaskFailure

    if isinstance(exc, TaskFailure):
        raise RunFailure(str(exc)) from None
    if errors and isinstance(exc, errors):
        raise UserError(str(exc)) from None
    if isinstance(exc, ScenarioError):
        raise UserError(_blame_flag(str(exc), args)) from None
    _reraise_run_failure(exc, args)


def cmd_sweep(args: argparse.Namespace) -> int:
    from .experiments.executors import make_executor
    from .experiments.sweep import SweepError, prepare_sweep, run_sweep
    from .views.sweep_figures import draw_figures

    try:
        plan = prepare_sweep(args.scenario, args.param, args.seeds, master_seed=args.master_seed,
                             months=args.months, overrides=args.set, out=args.out, force=args.force,
                             metrics=args.metrics, at=args.at, allow_model_change=args.allow_model_change)
    except BaseException as exc:
        _study_failure(exc, args, SweepError)
        raise
    for w in plan.warnings:
        print(f"abm: warning: {w}", file=sys.stderr)
    t0 = time.perf_counter()
    try:
        with make_executor(**_executor_kwargs(args)) as ex:
            out = run_sweep(plan, ex, progress=not args.quiet, draw=draw_figures)
    except BaseException as exc:
        _study_failure(exc, args, SweepError)
        raise
    if not args.quiet:
        total = len(plan.cells) * plan.n
        print(f"{out}: {len(plan.cells)} cells x {plan.n} seeds x {plan.months} months ({plan.computed} of "
              f"{total} runs computed) in {time.perf_counter() - t0:.1f} s; sweep.csv, sweep.md, figures/")
    return 0


def cmd_barriers(args: argparse.Namespace) -> int:
    from .experiments import barriers as bar
    from .experiments.executors import make_executor
    from .views.barriers_figures import draw_figures

    try:
        plan = bar.prepare_barriers(args.scenario, args.seeds, compare=args.compare, master_seed=args.master_seed,
                                    months=args.months, overrides=args.set, entry_months=args.entry_months,
                                    follow=args.follow, gap=args.gap, out=args.out)
        study = bar.open_barriers(plan, force=args.force, allow_model_change=args.allow_model_change)
    except BaseException as exc:
        _study_failure(exc, args, bar.BarriersError)
        raise
    for w in study.warnings:
        print(f"abm: warning: {w}", file=sys.stderr)
    t0 = time.perf_counter()
    created = study.state != "resume"
    try:
        with make_executor(**_executor_kwargs(args)) as ex:
            results = bar.run_barriers(plan, ex, progress=not args.quiet)
        draw_figures(plan.out / "figures", results)
    except BaseException as exc:
        if created and not study.done and not any(p.completed() for p in plan.ensembles):
            shutil.rmtree(plan.out, ignore_errors=True)
        _study_failure(exc, args, bar.BarriersError)
        raise
    if not args.quiet:
        print((plan.out / "barriers.md").read_text(encoding="utf-8").split("## Survival and catch-up")[0].rstrip())
        print(f"\n{plan.out}: barriers.md, survival.csv, thresholds.csv, trajectory.csv, strategy.csv, "
              f"probe_effect.csv, figures/ ({time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_sensitivity(args: argparse.Namespace) -> int:
    from .experiments import sensitivity as sa
    from .experiments.ensemble import EnsembleError
    from .views.sensitivity_figures import draw_figures

    try:
        res = sa.run_sensitivity(args.scenario, args.outputs, method=args.method, n=args.n, seeds=args.seeds,
                                 master_seed=args.master_seed, months=args.months, horizons=args.horizons,
                                 overrides=args.set, bounds=args.bounds, out=args.out, force=args.force,
                                 executor_kwargs=_executor_kwargs(args), progress=not args.quiet,
                                 draw=draw_figures, allow_model_change=args.allow_model_change,
                                 warn=lambda w: print(f"abm: warning: {w}", file=sys.stderr))
    except BaseException as exc:
        _study_failure(exc, args, sa.SensitivityError, EnsembleError)
        raise
    if not args.quiet:
        print(res.summary())
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from abm.scale import scale_world
    from abm.scenario import ScenarioError, load_scenario

    from .bench import SCENARIO, BenchError, BenchSettings, check_out, run_bench, tables

    settings = BenchSettings.make(quick=args.quick, timeout=args.timeout, labs=args.labs,
                                  months=args.months, seeds=args.seeds, workers=args.workers,
                                  repeats=args.repeats, process_labs=args.process_labs)
    base = load_scenario(SCENARIO)
    for flag, counts in (("--labs", settings.labs), ("--process-labs", [settings.process_labs])):
        for n in counts:
            try:
                scale_world(base, n)
            except ScenarioError as exc:
                raise UserError(str(exc).replace(f"--labs {n}:", f"{flag}: {n} labs:", 1)) from None
    out = Path(args.out)
    try:
        check_out(out, args.force)
        results = run_bench(settings, out)
    except BenchError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"cannot write {exc.filename or out}: {exc.strerror or exc}") from None
    print(tables(results), end="")
    print(f"\n{out / 'bench.json'}, {out / 'bench.md'}")
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
    from .tables import has_table

    if not has_table(d, "timeseries"):
        raise UserError(f"{d}: no timeseries.csv or timeseries.parquet; give a folder written by 'abm run'")
    from .views.overview import FigureInputError, overview

    return _draw(lambda: [overview(d)], FigureInputError, d)


def _draw(make, input_error: type[Exception], where) -> int:
    """Run a drawing command: print the paths it wrote; its input errors and OS errors become one line."""
    try:
        paths = make()
    except input_error as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"cannot write {exc.filename or where}: {exc.strerror or exc}") from None
    for path in paths:
        print(path)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .views.report import ReportError, write_report

    return _draw(lambda: [write_report(Path(args.dir))[0]], ReportError, args.dir)


def cmd_animate(args: argparse.Namespace) -> int:
    from .views.animate import write_animation
    from .views.common import ReportError

    return _draw(lambda: list(write_animation(Path(args.dir), every=args.every, fps=args.fps)), ReportError,
                 args.dir)


def cmd_audit(args: argparse.Namespace) -> int:
    from .experiments.audit import AuditError, audit_run

    try:
        result = audit_run(Path(args.dir))
    except AuditError as exc:
        raise UserError(str(exc)) from None
    print(result.summary())
    for d in result.discrepancies[: args.show]:
        print(f"  {d}")
    if len(result.discrepancies) > args.show:
        print(f"  ... and {len(result.discrepancies) - args.show} more")
    return 0 if result.passed else 1


# ------------------------------------------------------------------------------------------------ parser
def _bounded_int(lo: int, hi: int | None = None, what: str = "a whole number"):
    """An argparse type: a whole number in [lo, hi], with a one-line message naming the range."""
    allowed = f"{what} {lo}-{hi}" if hi is not None else f"{what} >= {lo}"

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {allowed}, got {text!r}") from None
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"expected {allowed}, got {text!r}")
        return v

    return parse


_nonneg_int = _bounded_int(0)
_pos_int = _bounded_int(1)
_port = _bounded_int(1, 65535, "a port number")


def _int_list(lo: int, what: str):
    """An argparse type: comma-separated whole numbers >= lo, e.g. 100,1000,10000."""

    def parse(text: str) -> list[int]:
        try:
            values = [int(x) for x in text.split(",")]
        except ValueError:
            values = []
        if not values or any(v < lo for v in values):
            raise argparse.ArgumentTypeError(f"expected {what}, comma-separated whole numbers >= {lo}, "
                                             f"got {text!r}")
        return values

    return parse


def _pos_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return v


def _horizons(text: str) -> list[int]:
    from .experiments.compare import parse_horizons

    try:
        return parse_horizons(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _nonneg_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not (v >= 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return v


def _name_list(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",")]
    if not names or any(not x for x in names):
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def _sweep_param(text: str):
    from .experiments.sweep import SweepError, parse_param

    try:
        return parse_param(text)
    except SweepError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _outputs(text: str) -> list[str]:
    from .experiments.sensitivity import SensitivityError, parse_outputs

    try:
        return parse_outputs(text)
    except SensitivityError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _override(text: str) -> str:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected key.path=value, got {text!r}")
    return text


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors in the same ``abm: error: ...`` form as the rest (exit status 2)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"abm: error: {message}; see '{self.prog} --help'\n")


def _executor_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--workers", type=_pos_int, default=1, metavar="W",
                   help="local worker processes (default 1: run in this process)")
    g.add_argument("--scheduler", metavar="ADDRESS", help="run on a Dask cluster, e.g. tcp://host:8786")
    g.add_argument("--dask-local", type=_pos_int, metavar="W",
                   help="start a local Dask cluster of W worker processes for this run")


def _ensemble_args(p: argparse.ArgumentParser, default_out: str, seeds_default: int | None = None,
                   resumable: bool = True) -> None:
    if seeds_default is None:
        p.add_argument("--seeds", type=_pos_int, required=True, metavar="N", help="number of seeds (>= 1)")
    else:
        p.add_argument("--seeds", type=_pos_int, default=seeds_default, metavar="N",
                       help=f"number of seeds (default {seeds_default})")
    p.add_argument("--master-seed", type=_nonneg_int, metavar="S",
                   help="master seed of the child seeds (default: the (first) scenario's run.seed)")
    p.add_argument("--months", type=_pos_int, metavar="N", help="months to simulate (default: run.months)")
    p.add_argument("--out", metavar="DIR", help=f"output folder (default: {default_out})")
    p.add_argument("--set", action="append", type=_override, metavar="KEY.PATH=VALUE", default=[],
                   help="override a scenario value, e.g. --set capital.kappa=2 (repeatable)")
    _executor_args(p)
    p.add_argument("--force", action="store_true",
                   help="replace an existing folder made with other arguments or another version of the model")
    if resumable:
        p.add_argument("--allow-model-change", action="store_true",
                       help="resume a folder started by another version of the model (abm/), mixing the two; "
                            "without it such a folder is refused")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no final line")


def _format_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("csv", "parquet"), default="csv",
                   help="file format of each seed's timeseries (seeds/*/timeseries.csv or .parquet; default "
                        "csv); the summaries stay CSV")


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
                                   "events.csv, runs.csv, flows.csv, scenario.toml and run_info.json into a "
                                   "folder (with --format parquet the six tables as .parquet files).")
    r.add_argument("scenario", metavar="SCENARIO", help="a name in scenarios/ or a path to a .toml file")
    r.add_argument("--seed", type=_nonneg_int, metavar="N", help="master seed (default: the scenario's run.seed)")
    r.add_argument("--months", type=_pos_int, metavar="N", help="months to simulate (default: run.months)")
    r.add_argument("--labs", type=_pos_int, metavar="N",
                   help="labs at the start; clouds, vendors, demand, foundry, investor inflow and the "
                        "entrants' arrival rate scale in proportion (default: the scenario's own)")
    r.add_argument("--out", metavar="DIR",
                   help="output folder (default: runs/<scenario>-seed<N>/, with --labs "
                        "runs/<scenario>-labs<N>-seed<N>/)")
    r.add_argument("--set", action="append", type=_override, metavar="KEY.PATH=VALUE", default=[],
                   help="override a scenario value, e.g. --set capital.kappa=2 (repeatable)")
    r.add_argument("--format", choices=("csv", "parquet"), default="csv",
                   help="file format of the tables: csv (default; small runs, spreadsheets, diffs) or parquet "
                        "(typed columns, smaller and faster for large runs)")
    r.add_argument("--force", action="store_true", help="replace an existing run folder")
    r.add_argument("--quiet", action="store_true", help="print nothing on success")
    r.set_defaults(func=cmd_run)

    e = sub.add_parser(
        "ensemble", help="run a scenario with many seeds and summarise them month by month",
        description="Run SCENARIO with N child seeds of one master seed; keep each seed's timeseries and "
                    "write ensemble.csv (per month and column: mean, std, 2.5/50/97.5 percentiles, 95% CI "
                    "of the mean). Resumable: running the same command again computes only missing seeds.")
    e.add_argument("scenario", metavar="SCENARIO", help="a name in scenarios/ or a path to a .toml file")
    _ensemble_args(e, "runs/<scenario>-ensemble-<N>/")
    _format_arg(e)
    e.set_defaults(func=cmd_ensemble)

    c = sub.add_parser(
        "compare", help="compare scenarios with common random numbers at given horizons",
        description="Run every scenario's ensemble with the same seeds (common random numbers) and write "
                    "comparison.csv, comparison.md and figures/<metric>.png: paired differences to the "
                    "first scenario of the headline metrics at each horizon, with 95% CIs.")
    c.add_argument("scenarios", nargs="+", metavar="SCENARIO",
                   help="two or more scenarios (names or .toml paths); the first is the reference")
    c.add_argument("--horizons", type=_horizons, default=[12, 36, 60, 120], metavar="H1,H2,...",
                   help="months at which to compare (default 12,36,60,120; beyond the run: skipped)")
    _ensemble_args(c, "runs/compare-<A>-vs-<B>-<N>/")
    _format_arg(c)
    c.set_defaults(func=cmd_compare)

    b = sub.add_parser(
        "bench", help="measure speed, scaling with the number of labs, memory and ensembles",
        description="Benchmark: the baseline's 120 months in the model alone (median of --repeats) and as a "
                    "whole 'abm run baseline' process; 'abm run baseline --labs 10000' with every output "
                    "written, as CSV and as Parquet; the baseline grown to each of --labs labs (wall time, "
                    "time per agent-step against a bare Mesa agent-step in the same process, peak memory), "
                    "each in a fresh process; a --seeds ensemble on each of --workers; Mesa's Boltzmann "
                    "wealth model as shipped. Prints a table with each figure beside its target and writes "
                    "DIR/bench.json and DIR/bench.md.")
    b.add_argument("--labs", type=_int_list(1, "lab counts"), metavar="N[,N...]",
                   help="lab count, or comma-separated counts, of the scaling runs "
                        "(default 100,1000,10000,100000)")
    b.add_argument("--months", type=_pos_int, metavar="N", help="months of every run (default 120)")
    b.add_argument("--seeds", type=_pos_int, metavar="N", help="seeds of the ensemble (default 100)")
    b.add_argument("--workers", type=_int_list(1, "worker counts"), metavar="W1,W2,...",
                   help="worker processes of the ensemble runs (default 1,2)")
    b.add_argument("--repeats", type=_pos_int, metavar="N",
                   help="timed runs of the baseline in the model alone (default 5)")
    b.add_argument("--process-labs", type=_pos_int, metavar="N",
                   help="labs of the whole-process runs with every output written, CSV and Parquet "
                        "(default 10000)")
    b.add_argument("--timeout", type=_pos_float, metavar="S",
                   help="stop a scaling run after S seconds and skip larger ones (default 600)")
    b.add_argument("--quick", action="store_true",
                   help="tiny sizes for tests and CI (labs 40,80, 12 months, 4 seeds, 1 repeat, whole-process "
                        "runs of 80 labs); the targets are then not assessed")
    b.add_argument("--out", default="runs/bench", metavar="DIR", help="output folder (default runs/bench)")
    b.add_argument("--force", action="store_true", help="overwrite the bench.json of an earlier benchmark")
    b.set_defaults(func=cmd_bench)

    v = sub.add_parser(
        "validate", help="compare the model with the public figures the project ships",
        description="Run SCENARIO with N seeds and write validation.md and validation.csv: for every target of "
                    "abm/data/targets.csv that applies (its date inside the run), the data value, the model's "
                    "mean and 90%% interval over seeds, whether the data lie inside it, and whether the target "
                    "is used for fitting (dated 2024 or earlier).")
    v.add_argument("scenario", nargs="?", default="historical_2023", metavar="SCENARIO",
                   help="a name in scenarios/ or a path to a .toml file (default historical_2023)")
    _ensemble_args(v, "runs/validate-<scenario>-<N>/", seeds_default=30, resumable=False)
    v.add_argument("--targets", metavar="FILE", help="targets file (default abm/data/targets.csv)")
    v.set_defaults(func=cmd_validate)

    cb = sub.add_parser(
        "calibrate", help="fit the free parameters to the 2023-2024 targets (simulated method of moments)",
        description="Fit the free parameters (docs/CALIBRATION.md lists them with their bounds) to the fitting "
                    "targets of abm/data/targets.csv by the simulated method of moments: ensemble means over "
                    "--seeds seeds with common random numbers, log-scale distance weighted by each target's "
                    "uncertainty, scipy's bounded Nelder-Mead within --budget minutes; standard errors from the "
                    "moment Jacobian. Writes the fitted values into the scenario and the baseline (a readable "
                    "diff) and docs/CALIBRATION.md.")
    cb.add_argument("scenario", nargs="?", default="historical_2023", metavar="SCENARIO",
                    help="the scenario to fit (default historical_2023)")
    cb.add_argument("--seeds", type=_pos_int, default=8, metavar="N", help="seeds per evaluation (default 8)")
    cb.add_argument("--seed", type=_nonneg_int, default=1, metavar="S", help="master seed of the seeds (default 1)")
    cb.add_argument("--budget", type=_pos_float, default=30.0, metavar="MIN",
                    help="wall time for the search, in minutes (default 30); standard errors come after it")
    cb.add_argument("--tiny", action="store_true",
                    help="a few evaluations of 2 seeds over 24 months, for tests; writes nothing unless --report "
                         "and --apply-to are given")
    cb.add_argument("--report", metavar="FILE", help="the report to write (default docs/CALIBRATION.md)")
    cb.add_argument("--apply-to", action="append", metavar="SCENARIO", default=None,
                    help="scenario files to write the fitted values into (default: SCENARIO and baseline; "
                         "repeatable)")
    cb.add_argument("--max-evals", type=_pos_int, metavar="N",
                    help="stop the search after N evaluations (deterministic, unlike --budget)")
    cb.add_argument("--out", metavar="DIR",
                    help="folder keeping every evaluation, so that the same command resumes a killed "
                         "calibration (default runs/calibrate-<scenario>-<N>x<S>-<scenario hash>/)")
    cb.add_argument("--force", action="store_true", help="replace that folder if it holds another calibration")
    cb.add_argument("--allow-model-change", action="store_true",
                    help="resume a folder started by another version of the model (abm/)")
    cb.add_argument("--dry-run", action="store_true",
                    help="fit and print; write no report and no scenario (evaluations are still kept)")
    cb.add_argument("--targets", metavar="FILE", help="targets file (default abm/data/targets.csv)")
    _executor_args(cb)
    cb.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    cb.set_defaults(func=cmd_calibrate)

    sw = sub.add_parser(
        "sweep", help="run a grid of parameter values, an ensemble per cell, summarised per cell",
        description="Run SCENARIO over a grid of parameter values (--param, repeatable: one axis each), an "
                    "ensemble of N seeds per cell with the same seeds in every cell (common random numbers), and "
                    "write sweep.csv (per cell: mean and 95%% CI of each metric at month --at), sweep.md and "
                    "figures/ (a line with CI bands for one parameter, heatmaps for two). Resumable.")
    sw.add_argument("scenario", metavar="SCENARIO", help="a name in scenarios/ or a path to a .toml file")
    sw.add_argument("--param", action="append", type=_sweep_param, required=True, metavar="KEY.PATH=SPEC",
                    help="an axis: key.path=start:stop:n (linear), key.path=log:start:stop:n (geometric) or "
                         "key.path=a,b,c (a list, e.g. for switches); repeatable")
    _ensemble_args(sw, "runs/sweep-<scenario>-<keys>-<N>/", seeds_default=10)
    sw.add_argument("--at", type=_pos_int, metavar="MONTH", help="month whose values are summarised (default the last)")
    sw.add_argument("--metrics", type=_name_list, metavar="M1,M2,...",
                    help="timeseries columns to summarise (default the headline metrics)")
    sw.set_defaults(func=cmd_sweep)

    br = sub.add_parser(
        "barriers", help="the small-lab study: entrant survival maps, the entry barrier's parts, price gap, strategies",
        description="Probe entrants with seed capital $10M-$10B and starting efficiency 0.1-1.0 of the frontier's "
                    "enter copies of each seed's world and are followed --follow months: the chance to survive and "
                    "to catch up (within --gap of the frontier), the seed capital for a 50%% chance with bootstrap "
                    "CIs; the entry barrier's path split into compute, runway and contract terms; small against "
                    "frontier labs' contract prices; entrants that fix their R&D share against gamma. In SCENARIO "
                    "and the --compare scenarios. Writes barriers.md, CSV tables and figures/. Resumable.")
    br.add_argument("scenario", metavar="SCENARIO", help="a name in scenarios/ or a path to a .toml file")
    _ensemble_args(br, "runs/barriers-<scenario>-<N>/", seeds_default=20)
    br.add_argument("--compare", type=_name_list, metavar="S1,S2,...",
                    help="scenarios compared with SCENARIO (default: the other ones of baseline, mega_deal, "
                         "public_compute, antitrust, open_weights)")
    br.add_argument("--entry-months", type=_int_list(1, "months after the start"), default=[36], metavar="M1,M2,...",
                    help="when the probe entrants enter, months after the start (default 36)")
    br.add_argument("--follow", type=_pos_int, default=36, metavar="N", help="months a probe is followed (default 36)")
    br.add_argument("--gap", type=_nonneg_float, metavar="Q",
                    help="capability distance to the frontier that counts as caught up (default entry.viable_gap)")
    br.set_defaults(func=cmd_barriers)

    se = sub.add_parser(
        "sensitivity", help="global sensitivity analysis (Morris or Sobol, with SALib) of chosen outputs",
        description="Sample the parameters of a bounds file (default: the shipped analysis/experiments/"
                    "parameter_bounds.toml: the calibrated parameters within their uncertainty, the main "
                    "uncalibrated ones, and the modelling switches) with SALib, run SCENARIO at every point "
                    "(N seeds each, common random numbers) and write sensitivity.csv, sensitivity.md, "
                    "samples.csv and figures/: Morris mu* and sigma, or Sobol S1 and ST with 95%% CIs. "
                    "Resumable.")
    se.add_argument("scenario", metavar="SCENARIO", help="a name in scenarios/ or a path to a .toml file")
    se.add_argument("--outputs", type=_outputs, required=True, metavar="METRIC[,METRIC]",
                    help="timeseries columns, or delta:SCENARIO:COLUMN for a paired effect against SCENARIO")
    se.add_argument("--method", choices=("morris", "sobol"), default="morris",
                    help="morris (elementary effects; default) or sobol (variance shares)")
    se.add_argument("--n", type=_pos_int, metavar="N",
                    help="Morris trajectories (default 10) or Sobol base samples, a power of 2 (default 64)")
    se.add_argument("--horizons", type=_horizons, metavar="H1,H2,...",
                    help="months at which each output is analysed (default the last month)")
    se.add_argument("--bounds", metavar="FILE", help="parameter bounds TOML (default the shipped file)")
    _ensemble_args(se, "runs/sensitivity-<scenario>-<method>-<n>/", seeds_default=4)
    se.set_defaults(func=cmd_sensitivity)

    s = sub.add_parser("scenarios", help="list the scenarios in scenarios/",
                       description="List the scenarios in scenarios/ with their descriptions.")
    s.set_defaults(func=cmd_scenarios)

    o = sub.add_parser("overview", help="draw DIR/overview.png from a run folder",
                       description="Draw a 2x3 overview figure of a run folder into DIR/overview.png.")
    o.add_argument("dir", metavar="DIR", help="a folder written by 'abm run'")
    o.set_defaults(func=cmd_overview)

    rp = sub.add_parser(
        "report", help="write DIR/report.html: one self-contained page on a run, ensemble or comparison",
        description="Write DIR/report.html, one self-contained HTML file (figures embedded, no external "
                    "links) for a run folder (timeseries.csv or .parquet), an ensemble folder (ensemble.csv) or a "
                    "comparison folder (comparison.csv).")
    rp.add_argument("dir", metavar="DIR", help="a folder written by 'abm run', 'abm ensemble' or 'abm compare'")
    rp.set_defaults(func=cmd_report)

    an = sub.add_parser(
        "animate", help="write DIR/animation.gif (and .mp4 with ffmpeg): the run month by month",
        description="Animate a run folder month by month: the contract network and the labs' shares of "
                    "compute side by side. Writes DIR/animation.gif, and DIR/animation.mp4 when ffmpeg is "
                    "on the PATH.")
    an.add_argument("dir", metavar="DIR", help="a folder written by 'abm run'")
    an.add_argument("--every", type=_pos_int, default=2, metavar="N",
                    help="one frame every N months (default 2; the last month is always included)")
    an.add_argument("--fps", type=_pos_float, default=6.0, metavar="F", help="frames per second (default 6)")
    an.set_defaults(func=cmd_animate)

    au = sub.add_parser(
        "audit", help="check a run folder's money: every agent's cash rebuilt from its CSV or Parquet files",
        description="Rebuild every agent's cash in every month of a run folder from contracts.csv (what each "
                    "contract should have paid), events.csv (rounds, seeds, investments, exits) and flows.csv "
                    "(every other transfer), independently of the model's own accounting, and compare it with "
                    "agents.csv to 1e-9 relative (or the same tables as .parquet files); check that money is "
                    "conserved. Prints one line (agents, "
                    "months, checks, largest relative error); exit status 0 if every check passes, 1 with "
                    "the first discrepancies if not.")
    au.add_argument("dir", metavar="DIR", help="a folder written by 'abm run'")
    au.add_argument("--show", type=_nonneg_int, default=10, metavar="N",
                    help="discrepancies to list when the audit fails (default 10)")
    au.set_defaults(func=cmd_audit)

    d = sub.add_parser("dashboard", help="serve the interactive dashboard in a web browser",
                       description="Serve the interactive dashboard (a Solara page: scenario, parameters, "
                                   "Step/Play/Reset, live plots in months, the contract network, and a link to "
                                   "the report of the months run) at http://HOST:PORT/ until Ctrl-C. Works "
                                   "offline; each browser tab gets its own model.")
    d.add_argument("--port", type=_port, default=8765, metavar="N", help="port to listen on (default 8765)")
    d.add_argument("--host", default="127.0.0.1", metavar="H",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    d.add_argument("--open", action="store_true", help="also open the page in the default web browser")
    d.set_defaults(func=cmd_dashboard)
    return p


def cmd_dashboard(args: argparse.Namespace) -> int:
    from .views.dashboard_server import main_dashboard

    return main_dashboard(args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.error("a command is required: run, ensemble, compare, sweep, barriers, sensitivity, validate, "
                     "calibrate, bench, scenarios, overview, report, animate, audit or dashboard")
    try:
        return args.func(args)
    except UserError as exc:
        print("abm: error: " + " ".join(str(exc).split()), file=sys.stderr)
        return EXIT_USAGE
    except RunFailure as exc:
        print("abm: error: " + " ".join(str(exc).split()), file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("abm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
