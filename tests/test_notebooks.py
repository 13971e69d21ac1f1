"""The tutorials of examples/: every notebook runs top to bottom, and the committed files carry no outputs.

The executions (marked slow; CI runs them) use examples/run_tutorials.py, the runner the README documents: each
notebook runs in a fresh ``python3`` kernel whose working directory is examples/, as in Jupyter, with
ABM_TUTORIALS_DIR set to a temporary folder, so nothing is written into the repository. Every notebook found in
examples/ is executed, not only the five tutorials, so none can rot unnoticed.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TUTORIALS = ("01_first_run", "02_mega_deal", "03_your_own_scenario", "04_barriers_for_small_labs",
             "05_calibration")
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
METADATA_KEYS = {"kernelspec", "language_info"}  # all a committed notebook's metadata may hold
ABSOLUTE_PATH = re.compile(r"(/home/|/Users/|/tmp/|[A-Z]:\\Users)")


def _runner():
    spec = importlib.util.spec_from_file_location("run_tutorials", EXAMPLES / "run_tutorials.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _files(folder: Path) -> set[Path]:
    return {p.relative_to(folder) for p in folder.rglob("*") if "__pycache__" not in p.parts}


# ------------------------------------------------------------------------------------------------ fast
def test_the_five_tutorials_are_there():
    names = [p.stem for p in NOTEBOOKS]
    missing = [t for t in TUTORIALS if t not in names]
    assert not missing, f"tutorials missing from examples/: {missing}"


def test_the_runner_finds_every_notebook():
    runner = _runner()
    assert runner.notebooks() == NOTEBOOKS
    assert runner.notebooks(["02"]) == [EXAMPLES / "02_mega_deal.ipynb"]
    assert runner.main(["no-such-notebook"]) == 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_clean(path):
    """nbformat 4, kernel python3, no outputs, no execution counts, no widget state or other metadata, and the
    JSON exactly as nbformat writes it (what Jupyter saves), so that diffs show only real changes."""
    text = path.read_text(encoding="utf-8")
    nb = nbformat.reads(text, as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    assert set(nb.metadata) <= METADATA_KEYS, f"extra notebook metadata: {sorted(set(nb.metadata) - METADATA_KEYS)}"
    assert text == nbformat.writes(nb) + "\n", "not in nbformat's own layout: save it with nbformat or Jupyter"
    assert nbformat.writes(_runner().strip(nb)) + "\n" == text, "run 'python examples/run_tutorials.py --strip'"
    assert nb.cells and nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    for i, cell in enumerate(nb.cells):
        assert not cell.metadata, f"cell {i} has metadata {dict(cell.metadata)}"
        assert not ABSOLUTE_PATH.search(cell.source), f"cell {i} names an absolute path"
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {i} has outputs: strip them before committing"
            assert cell.execution_count is None, f"cell {i} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_writes_into_its_own_folder(path):
    """Each notebook sends its files to ABM_TUTORIALS_DIR (default runs/tutorials)/<its own name>."""
    code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    assert '"ABM_TUTORIALS_DIR"' in code and f'"{path.stem}"' in code


# ------------------------------------------------------------------------------------------------ slow
@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
    """The notebook runs top to bottom without an error (a failing cell raises, naming the cell), prints no
    warning, writes its files under ABM_TUTORIALS_DIR/<notebook> and nothing into examples/; stripping the
    executed notebook (run_tutorials.py --strip) gives back the committed file exactly."""
    runner = _runner()
    monkeypatch.setenv("ABM_TUTORIALS_DIR", str(tmp_path))
    before = _files(EXAMPLES)
    nb, seconds = runner.execute(path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "not every code cell ran"
    stderr = "".join(o.get("text", "") for c in code for o in c.outputs
                     if o.output_type == "stream" and o.name == "stderr")
    assert "Warning" not in stderr, f"the notebook printed a warning:\n{stderr}"
    assert any((tmp_path / path.stem).iterdir()), f"nothing written under ABM_TUTORIALS_DIR/{path.stem}"
    assert _files(EXAMPLES) == before, f"the notebook wrote into examples/: {sorted(_files(EXAMPLES) - before)}"
    assert any(o for c in code for o in c.outputs), "the notebook showed nothing"
    assert nbformat.writes(runner.strip(nb)) + "\n" == path.read_text(encoding="utf-8"), \
        "stripping the executed notebook does not give back the committed file"
    print(f"{path.name}: {seconds:.0f} s")
