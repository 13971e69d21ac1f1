"""The code's layout: no import circles, the model never imports the analysis layer, and every ODD submodel
of a market has one home in ``abm/markets/`` that names it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("abm", "analysis")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> nx.DiGraph:
    """Every import between the project's modules, at module level or inside functions."""
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    names = {_module_name(p) for p in files}
    g = nx.DiGraph()
    for path in files:
        mod = _module_name(path)
        g.add_node(mod)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, path.name == "__init__.py", node)
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            for tgt in targets:
                # The longest project module that the imported name lies in.
                while tgt and tgt not in names:
                    tgt = tgt.rpartition(".")[0]
                if tgt and tgt != mod and not mod.startswith(tgt + "."):
                    g.add_edge(mod, tgt)
    return g


def test_import_graph_sees_known_edges():
    g = import_graph()
    assert g.has_edge("abm.model", "abm.world")
    assert g.has_edge("abm.markets.capital", "abm.markets.contracting")
    assert g.has_edge("analysis.cli", "analysis.runio")  # an import inside a function counts


def test_no_import_circles():
    cycles = list(nx.simple_cycles(import_graph()))
    assert cycles == [], f"import circles: {cycles}"


def test_model_does_not_import_analysis():
    g = import_graph()
    bad = [(a, b) for a, b in g.edges if a.startswith("abm") and b.startswith("analysis")]
    assert bad == []


MARKETS = {"chips": "S4", "capital": "S8", "contracting": "S6", "spot": "S7", "settlement": "S3", "entry": "S9"}


@pytest.mark.parametrize("name,submodel", sorted(MARKETS.items()))
def test_each_market_module_names_its_odd_submodel(name, submodel):
    doc = ast.get_docstring(ast.parse((ROOT / "abm" / "markets" / f"{name}.py").read_text(encoding="utf-8")))
    assert doc and re.search(rf"\bODD\b.*\b{submodel}\b", doc.split("\n\n")[0]), doc


def test_markets_do_not_call_each_others_private_helpers():
    for path in (ROOT / "abm" / "markets").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 1:
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert private == [], f"{path.name} imports private {private} from {node.module}"
