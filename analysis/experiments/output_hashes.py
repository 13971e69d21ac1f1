"""SHA-256 of every output file of a fixed set of runs: the check that a refactoring keeps outputs byte-identical.

The set: every scenario in ``scenarios/`` with seeds 1, 2 and 3 over 120 months, and the baseline grown to
1,000 labs (``abm run baseline --labs 1000``). Each run is written exactly as ``abm run`` writes it; the
only field that is not a function of scenario and seed, ``wall_time_s`` in ``run_info.json``, is removed
before hashing.

    python -m analysis.experiments.output_hashes record hashes.txt   # before the change
    python -m analysis.experiments.output_hashes check hashes.txt    # after it: exit 0 only if all match

A hash file has one line per file, ``<sha256>  <scenario>-seed<N>/<file>``, sorted. ``--workers`` runs the
runs in parallel (the hashes do not depend on it); ``--only NAME`` restricts to runs whose label contains NAME.
A check fails when a file of the reference differs or is missing; a file the reference does not have (a new
output, such as ``flows.csv`` against hashes recorded before it existed) is listed as new but does not fail it.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

SEEDS = (1, 2, 3)
MONTHS = 120
SCALED = ("baseline", 1000)


def run_specs() -> list[tuple[str, str, int, int | None]]:
    """(label, scenario, seed, labs) of every run in the set, in a fixed order."""
    from abm.scenario import available_scenarios

    specs = [(f"{name}-seed{seed}", name, seed, None) for name in available_scenarios() for seed in SEEDS]
    name, labs = SCALED
    specs.append((f"{name}-labs{labs}-seed1", name, 1, labs))
    return specs


def _file_hash(path: Path) -> str:
    data = path.read_bytes()
    if path.name == "run_info.json":
        info = json.loads(data)
        info.pop("wall_time_s", None)
        data = json.dumps(info, indent=2, sort_keys=True).encode()
    return hashlib.sha256(data).hexdigest()


def hash_run(spec: tuple[str, str, int, int | None]) -> dict[str, str]:
    """Run one spec as ``abm run`` does, write its folder into a temporary directory, hash every file."""
    from abm.scale import scale_world
    from abm.scenario import load_scenario
    from analysis.runio import run_scenario, write_run

    label, name, seed, labs = spec
    scn = load_scenario(name, seed=seed, months=MONTHS)
    if labs is not None:
        scn = scale_world(scn, labs)
    model = run_scenario(scn)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / label
        write_run(model, out, 0.0)
        return {f"{label}/{p.name}": _file_hash(p) for p in sorted(out.iterdir())}


def compute(workers: int = 1, only: str | None = None, log=None) -> dict[str, str]:
    """Hashes of every file of every run in the set (or of the runs whose label contains ``only``)."""
    specs = [s for s in run_specs() if only is None or only in s[0]]
    out: dict[str, str] = {}
    t0 = time.perf_counter()
    if workers > 1:
        with cf.ProcessPoolExecutor(workers) as ex:
            for k, h in enumerate(ex.map(hash_run, specs), 1):
                out.update(h)
                if log:
                    log(f"{k}/{len(specs)} runs hashed ({time.perf_counter() - t0:.0f} s)")
    else:
        for k, s in enumerate(specs, 1):
            out.update(hash_run(s))
            if log:
                log(f"{k}/{len(specs)} runs hashed ({time.perf_counter() - t0:.0f} s)")
    return dict(sorted(out.items()))


def read_hashes(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            out[name] = digest
    return out


def compare(reference: dict[str, str], now: dict[str, str]) -> tuple[int, list[str], list[str]]:
    """(count of files whose hash matches, lines describing every difference, lines naming the files that
    are new: not in the reference, so nothing to compare them with)."""
    same = sum(1 for k, v in now.items() if reference.get(k) == v)
    diff = [f"differs: {k}" for k in now if k in reference and reference[k] != now[k]]
    diff += [f"missing now: {k}" for k in reference if k not in now]
    new = [f"new: {k}" for k in now if k not in reference]
    return same, diff, new


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.experiments.output_hashes",
                                description="Record or check SHA-256 of every output file of a fixed set of runs.")
    p.add_argument("action", choices=("record", "check"))
    p.add_argument("file", type=Path, help="hash file to write (record) or to compare against (check)")
    p.add_argument("--workers", type=int, default=2, help="parallel processes (default 2)")
    p.add_argument("--only", help="only the runs whose label contains this text")
    a = p.parse_args(argv)
    if a.workers < 1:
        p.error("--workers must be at least 1")
    if a.action == "check" and not a.file.is_file():
        print(f"output_hashes: error: {a.file}: no such hash file", file=sys.stderr)
        return 2
    now = compute(a.workers, a.only, log=lambda s: print(s, file=sys.stderr))
    if a.action == "record":
        a.file.parent.mkdir(parents=True, exist_ok=True)
        a.file.write_text("".join(f"{v}  {k}\n" for k, v in now.items()), encoding="utf-8")
        print(f"{len(now)} files hashed into {a.file}")
        return 0
    ref = read_hashes(a.file)
    if a.only:
        ref = {k: v for k, v in ref.items() if a.only in k.split("/")[0]}
    same, diff, new = compare(ref, now)
    for line in diff + new:
        print(line)
    print(f"{same} of {len(ref)} files identical" + ("" if not diff else f"; {len(diff)} differences")
          + ("" if not new else f"; {len(new)} new files, not in the reference"))
    return 0 if not diff else 1


if __name__ == "__main__":
    sys.exit(main())
