"""Soak test: many long runs in one process, measuring resident memory (RSS) as they go.

    python -m analysis.soak                      # 20 seeds x 300 months of the baseline (about 1.5 minutes)
    python -m analysis.soak --seeds 5 --months 120 --scenario mega_deal --out runs/soak-mega

For every seed the baseline is stepped month by month; RSS is sampled every ``--every`` months, then the
run's outputs are written (to a temporary folder, whose CSV size is recorded: what the outputs need) and
the model is dropped. Two figures say whether memory leaks:

* within a run, RSS growth from month 1 to the end, beside the size of the outputs the run keeps (its
  timeseries, agent rows, contracts and events, measured as the CSV bytes written);
* across runs, RSS after each seed once its model is gone: a leak shows as a rising line, reported as the
  least-squares slope in MiB per seed over the seeds after the first (which pays for imports and caches).

Prints a table and writes ``soak.json`` into ``--out``. Measurement only: nothing here asserts a limit.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MIB = 1024.0 * 1024.0


def rss_mib() -> float:
    """Resident set size of this process now, in MiB (Linux /proc; else the peak from getrusage)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / MIB
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def soak(scenario: str = "baseline", seeds: int = 20, months: int = 300, every: int = 25,
         progress=None) -> dict:
    """Run ``seeds`` seeds of ``months`` months in this process and return the memory figures (see module)."""
    from abm.model import ComputeMarket
    from abm.scenario import load_scenario

    from .experiments.ensemble import child_seeds
    from .runio import write_run

    base = load_scenario(scenario, months=months)
    runs = []
    gc.collect()
    start_rss = rss_mib()
    for k, seed in enumerate(child_seeds(base.run.seed, seeds)):
        scn = load_scenario(base, seed=seed)
        t0 = time.perf_counter()
        model = ComputeMarket(scn)
        model.initial_cfg = scn.model_copy(deep=True)
        samples = []
        for m in range(1, months + 1):
            model.step()
            if m == 1 or m % every == 0 or m == months:
                samples.append((m, round(rss_mib(), 2)))
        wall = time.perf_counter() - t0
        tmp = Path(tempfile.mkdtemp(prefix="soak-"))
        try:
            write_run(model, tmp / "run", wall)
            out_bytes = sum(p.stat().st_size for p in (tmp / "run").glob("*.csv"))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        del model
        gc.collect()
        after = round(rss_mib(), 2)
        runs.append({"seed": int(seed), "wall_s": round(wall, 3), "rss_samples_mib": samples,
                     "growth_in_run_mib": round(samples[-1][1] - samples[0][1], 2),
                     "outputs_csv_mib": round(out_bytes / MIB, 3), "rss_after_mib": after})
        if progress is not None:
            progress(k + 1, seeds, runs[-1])
    after = np.array([r["rss_after_mib"] for r in runs])
    tail = after[1:]
    slope = float(np.polyfit(np.arange(tail.size), tail, 1)[0]) if tail.size >= 2 else float("nan")
    return {"scenario": scenario, "seeds": seeds, "months": months, "rss_start_mib": round(start_rss, 2),
            "rss_peak_mib": round(max(max(v for _, v in r["rss_samples_mib"]) for r in runs), 2),
            "rss_after_first_mib": float(after[0]), "rss_after_last_mib": float(after[-1]),
            "slope_mib_per_seed": round(slope, 4),
            "growth_in_run_mib_mean": round(float(np.mean([r["growth_in_run_mib"] for r in runs])), 2),
            "outputs_csv_mib_mean": round(float(np.mean([r["outputs_csv_mib"] for r in runs])), 3),
            "wall_s_mean": round(float(np.mean([r["wall_s"] for r in runs])), 3),
            "python": sys.version.split()[0], "runs": runs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", default="baseline")
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--months", type=int, default=300)
    p.add_argument("--every", type=int, default=25, help="sample RSS every N months (default 25)")
    p.add_argument("--out", type=Path, default=Path("runs/soak"), help="folder for soak.json (default runs/soak)")
    args = p.parse_args(argv)
    if args.seeds < 1 or args.months < 1 or args.every < 1:
        p.error("--seeds, --months and --every must be >= 1")

    def show(k, n, r):
        print(f"seed {k:>3}/{n}  {r['wall_s']:7.2f} s  RSS {r['rss_samples_mib'][0][1]:8.1f} -> "
              f"{r['rss_samples_mib'][-1][1]:8.1f} MiB in the run (outputs {r['outputs_csv_mib']:.1f} MiB CSV), "
              f"{r['rss_after_mib']:8.1f} MiB after it", flush=True)

    res = soak(args.scenario, args.seeds, args.months, args.every, progress=show)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    print(f"{args.scenario}: {args.seeds} seeds x {args.months} months, {res['wall_s_mean']:.2f} s a run; RSS "
          f"start {res['rss_start_mib']:.1f} MiB, peak {res['rss_peak_mib']:.1f} MiB; after each run "
          f"{res['rss_after_first_mib']:.1f} -> {res['rss_after_last_mib']:.1f} MiB (slope "
          f"{res['slope_mib_per_seed']:+.3f} MiB/seed); growth within a run {res['growth_in_run_mib_mean']:.1f} "
          f"MiB for {res['outputs_csv_mib_mean']:.1f} MiB of outputs; {args.out / 'soak.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
