"""Run the tutorial notebooks top to bottom, without Jupyter's front end.

    python examples/run_tutorials.py              # every notebook of examples/, in order
    python examples/run_tutorials.py 02 04        # the notebooks whose names start with 02 or 04
    python examples/run_tutorials.py --html       # also an HTML page of each executed notebook (nbconvert)
    python examples/run_tutorials.py --strip      # before committing: remove outputs and metadata in place

Each notebook runs in a fresh Python kernel started in examples/, as Jupyter would, and writes its files under
runs/tutorials/<notebook>/. The executed copy, with its outputs and figures, is saved as
runs/tutorials/executed/<notebook>.ipynb (and .html with --html); the notebooks in examples/ are left as they
are. Prints each notebook's wall time; exits 1 at the first notebook that fails, naming the cell.

With --strip nothing runs: the chosen notebooks of examples/ are rewritten without outputs, execution counts,
cell metadata or notebook metadata other than the kernel and the language's name, as they are committed (the
tests check it).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent
CELL_TIMEOUT = 900  # seconds a single cell may run
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def notebooks(prefixes: list[str] | None = None) -> list[Path]:
    """The notebooks of examples/ in name order, or those whose names start with one of ``prefixes``."""
    found = sorted(EXAMPLES.glob("*.ipynb"))
    if prefixes:
        found = [p for p in found if any(p.name.startswith(x) for x in prefixes)]
    return found


def execute(path: Path, timeout: int = CELL_TIMEOUT):
    """Execute the notebook at ``path`` in a new ``python3`` kernel whose working directory is the notebook's
    folder; return the executed notebook and the wall time in seconds. Raises nbclient's CellExecutionError
    (with the failing cell and its traceback) if a cell raises."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    client.execute()
    return nb, time.perf_counter() - t0


def strip(nb):
    """The notebook ``nb`` as committed: no outputs, no execution counts, no cell metadata, and notebook metadata
    reduced to the kernel and the language's name (no widget state, no versions). Changes ``nb`` and returns it."""
    nb.metadata = {"kernelspec": dict(KERNELSPEC),
                   "language_info": {"name": nb.metadata.get("language_info", {}).get("name", "python")}}
    for cell in nb.cells:
        cell.metadata = {}
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the tutorial notebooks of examples/ top to bottom.")
    parser.add_argument("prefixes", nargs="*", metavar="PREFIX", help="run only the notebooks starting with these")
    parser.add_argument("--out", type=Path, default=EXAMPLES.parent / "runs" / "tutorials" / "executed",
                        help="where the executed copies go (default runs/tutorials/executed)")
    parser.add_argument("--html", action="store_true", help="also write each executed notebook as HTML")
    parser.add_argument("--strip", action="store_true",
                        help="run nothing: remove outputs and metadata from the notebooks of examples/, in place")
    args = parser.parse_args(argv)

    import nbformat
    from nbclient.exceptions import CellExecutionError

    chosen = notebooks(args.prefixes)
    if not chosen:
        print(f"no notebook in {EXAMPLES} matches {' '.join(args.prefixes)}", file=sys.stderr)
        return 2
    if args.strip:
        for path in chosen:
            nbformat.write(strip(nbformat.read(path, as_version=4)), path)
            print(f"stripped {path.name}")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for path in chosen:
        print(f"{path.name} ...", end=" ", flush=True)
        try:
            nb, seconds = execute(path)
        except CellExecutionError as exc:
            print(f"failed:\n{exc}", file=sys.stderr)
            return 1
        target = args.out / path.name
        nbformat.write(nb, target)
        if args.html:
            from nbconvert import HTMLExporter

            body, _ = HTMLExporter().from_notebook_node(nb)
            target.with_suffix(".html").write_text(body, encoding="utf-8")
        print(f"{seconds:.0f} s -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
