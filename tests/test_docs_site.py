"""The documentation site (mkdocs.yml, docs/hooks.py, ``make docs``).

The site builds with ``mkdocs build --strict`` from the repository as it is: the README as the home page, the
ODD, the findings, the calibration report, one page per tutorial notebook ``examples/*.ipynb`` and the API
reference from the docstrings; it loads nothing from the network, and every link between its pages resolves
on disk. A copy of the sources with broken links, a missing cross-reference, a page left out of the
navigation and a new notebook with a broken link must fail the strict build, naming each of them. The link
rewriting of docs/hooks.py is tested on its own too.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
NOTEBOOKS = sorted((ROOT / "examples").glob("*.ipynb"))
API_PAGES = sorted(p.stem for p in (DOCS / "api").glob("*.md") if p.stem != "index")
KEY_MODULES = ("abm.model", "abm.world", "abm.agents", "abm.economics", "abm.scenario", "abm.scale",
               "abm.markets.contracting", "analysis.runio", "analysis.experiments.ensemble", "analysis.bench")

slow = pytest.mark.slow  # the tests that build the site: about 20 s a build


@functools.cache
def _hooks():
    spec = importlib.util.spec_from_file_location("docs_site_hooks", DOCS / "hooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build(config: Path, site: Path, cwd: Path) -> subprocess.CompletedProcess:
    """``mkdocs build --strict`` of ``config`` into ``site``, as ``make docs`` runs it (notebooks not run)."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "DOCS_EXECUTE": "false"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "--site-dir", str(site)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("docs-site")
    out = tmp / "site"
    proc = build(ROOT / "mkdocs.yml", out, cwd=tmp)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr
    return out


def _title(nb: Path) -> str:
    return _hooks().notebook_title(nb)


@slow
def test_key_pages_exist(site):
    for page in ("index.html", "ODD.html", "FINDINGS.html", "CALIBRATION.html", "tutorials/index.html",
                 "api/index.html", "404.html", "search/search_index.js"):
        assert (site / page).is_file(), page
    assert set(KEY_MODULES) <= set(API_PAGES)
    for module in API_PAGES:
        assert (site / "api" / f"{module}.html").is_file(), module
    # The build's own files stay out of the site.
    assert not list(site.rglob("*.py"))
    assert (site / "img" / "overview.png").is_file()


@slow
def test_home_page_is_the_readme_with_site_links(site):
    html = (site / "index.html").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "<h1" in html and readme.splitlines()[0].lstrip("# ").strip() in html
    # A sentence of the README's first paragraph.
    assert "agent-based model of the AI compute market" in html
    # Its links to docs/*.md and its images point into the site, and nothing links to docs/ any more.
    assert 'href="ODD.html"' in html and 'href="FINDINGS.html"' in html
    assert 'src="img/overview.png"' in html
    assert not re.search(r'(href|src)="docs/', html)


@slow
def test_model_findings_and_calibration_pages(site):
    odd = (site / "ODD.html").read_text(encoding="utf-8")
    assert "ODD protocol" in odd
    assert "\\$" not in odd  # docs/ODD.md's \$ (for GitHub) shows as a plain dollar
    assert "$100B" in odd
    findings = (site / "FINDINGS.html").read_text(encoding="utf-8")
    assert 'href="ODD.html"' in findings and 'href="CALIBRATION.html"' in findings
    assert "<table>" in (site / "CALIBRATION.html").read_text(encoding="utf-8")


@slow
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_notebook_is_a_tutorial_page(site, nb):
    page = site / "tutorials" / f"{nb.stem}.html"
    assert page.is_file()
    assert "jupyter-wrapper" in page.read_text(encoding="utf-8")
    assert (site / "tutorials" / nb.name).is_file()  # the notebook itself, to download
    index = (site / "tutorials" / "index.html").read_text(encoding="utf-8")
    assert f'href="{nb.stem}.html"' in index


@slow
def test_tutorials_index_lists_exactly_the_notebooks(site):
    index = (site / "tutorials" / "index.html").read_text(encoding="utf-8")
    listed = set(re.findall(r'<li><a href="([^"/]+)\.html">', index))
    assert listed == {nb.stem for nb in NOTEBOOKS}
    assert "<!-- tutorials -->" not in index


def _documented_functions(module: str) -> list[str]:
    path = ROOT.joinpath(*module.split(".")).with_suffix(".py")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)
            and not n.name.startswith("_") and ast.get_docstring(n)]


@slow
@pytest.mark.parametrize("module", ["abm.economics", "abm.scale", "analysis.runio", "abm.markets.spot"])
def test_api_page_documents_the_module(site, module):
    html = (site / "api" / f"{module}.html").read_text(encoding="utf-8")
    names = _documented_functions(module)
    assert names
    for name in names:
        assert f'id="{module}.{name}"' in html, name
    # The module's docstring is the page's introduction.
    doc = ast.get_docstring(ast.parse(ROOT.joinpath(*module.split(".")).with_suffix(".py").read_text()))
    assert " ".join(doc.split()[:3]) in html


@slow
def test_api_shows_a_class_and_its_docstring(site):
    html = (site / "api" / "abm.model.html").read_text(encoding="utf-8")
    assert 'id="abm.model.ComputeMarket"' in html
    assert 'id="abm.model.ComputeMarket.step"' in html


@slow
def test_docstring_brackets_are_not_links(site):
    html = (site / "api" / "analysis.experiments.barriers.html").read_text(encoding="utf-8")
    assert "[scenario][entry]" in html


@slow
def test_nothing_is_loaded_from_the_network(site):
    bad = []
    for page in site.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        for tag in re.findall(r"<(?:script|link|img|iframe|source)\b[^>]*>", html):
            if re.search(r'\b(?:src|href)="(?:https?:)?//', tag):
                bad.append((page.relative_to(site).as_posix(), tag))
        if "fonts.googleapis" in html or "data-mkdocs-jupyter-mathjax" in html:
            bad.append((page.relative_to(site).as_posix(), "fonts or MathJax loader"))
    assert bad == []


@slow
def test_every_local_link_resolves_on_disk(site):
    """Opened from disk (file://) every relative link and resource of every page exists (404.html, for a web
    server, links from the site's root)."""
    missing = []
    for page in site.rglob("*.html"):
        if page.name == "404.html":
            continue
        html = page.read_text(encoding="utf-8")
        for url in re.findall(r'\b(?:href|src)="([^"]*)"', html):
            parts = urlsplit(url)
            if parts.scheme or parts.netloc or not parts.path:
                continue
            target = (page.parent / unquote(parts.path)).resolve()
            if not target.exists():
                missing.append((page.relative_to(site).as_posix(), url))
    assert missing == []


# ---------------------------------------------------------------------------------------------- strict build
def _copy_sources(dest: Path) -> None:
    for name in ("mkdocs.yml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(DOCS, dest / "docs", ignore=shutil.ignore_patterns("__pycache__"))
    if (ROOT / "examples").is_dir():
        shutil.copytree(ROOT / "examples", dest / "examples")
    (dest / "examples").mkdir(exist_ok=True)
    for pkg in ("abm", "analysis"):
        (dest / pkg).symlink_to(ROOT / pkg, target_is_directory=True)


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + "\n\n" + text + "\n", encoding="utf-8")


def _notebook(path: Path, title: str, markdown: str) -> None:
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": f"# {title}\n\n{markdown}"},
                    {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                     "source": "1 + 1"}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb), encoding="utf-8")


@slow
def test_strict_build_fails_on_broken_links_and_missing_references(tmp_path):
    src = tmp_path / "repo"
    src.mkdir()
    _copy_sources(src)
    _append(src / "docs" / "FINDINGS.md", "See [the lost page](NO_SUCH_PAGE.md).")
    _append(src / "README.md", "The [lost guide](docs/NO_SUCH_GUIDE.md) and a [lost section](#no-such-section).")
    _append(src / "docs" / "api" / "abm.model.md", "See also [abm.model.NoSuchThing][].")
    (src / "docs" / "ORPHAN.md").write_text("# Not in the navigation\n", encoding="utf-8")
    _notebook(src / "examples" / "99_added.ipynb", "An added notebook", "Read [this](../docs/NO_SUCH_NOTE.md).")
    proc = build(src / "mkdocs.yml", tmp_path / "site", cwd=tmp_path)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log
    assert "in strict mode" in log
    expected = [
        r"FINDINGS\.md' contains a link 'NO_SUCH_PAGE\.md'",
        r"index\.md' contains a link 'NO_SUCH_GUIDE\.md'",  # the README's docs/ link, kept as a link
        r"index\.md' contains a link '#no-such-section'",
        r"Could not find cross-reference target 'abm\.model\.NoSuchThing'",
        r"ORPHAN\.md",
        r"tutorials/99_added\.ipynb' contains a link '\.\./NO_SUCH_NOTE\.md'",  # the glob found it
    ]
    missing = [pattern for pattern in expected if not re.search(pattern, log)]
    assert missing == [], log


@slow
def test_copy_with_an_added_notebook_builds(tmp_path):
    """A notebook added to examples/ becomes a page and an entry of the navigation, with no configuration."""
    src = tmp_path / "repo"
    src.mkdir()
    _copy_sources(src)
    _notebook(src / "examples" / "99_added.ipynb", "An added notebook",
              "The [model](../docs/ODD.md#1-overview), the [guide](../README.md) and [`abm/`](../abm/).")
    proc = build(src / "mkdocs.yml", tmp_path / "site", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    page = (tmp_path / "site" / "tutorials" / "99_added.html").read_text(encoding="utf-8")
    assert 'href="../ODD.html#1-overview"' in page and 'href="../index.html"' in page
    assert "<code>abm/</code>" in page and 'href="../abm' not in page
    home = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert 'href="tutorials/99_added.html"' in home  # in the navigation of every page
    assert "An added notebook" in home


# ---------------------------------------------------------------------------------------------- link rewriting
@pytest.mark.parametrize("source,page_src,page_uri,expected", [
    ("[ODD](docs/ODD.md)", "README.md", "index.md", "[ODD](ODD.md)"),
    ("[S6](docs/ODD.md#s6-contracting)", "README.md", "index.md", "[S6](ODD.md#s6-contracting)"),
    ("![fig](docs/img/overview.png)", "README.md", "index.md", "![fig](img/overview.png)"),
    ("[up](#performance)", "README.md", "index.md", "[up](#performance)"),
    ("[web](https://example.org/x.md)", "README.md", "index.md", "[web](https://example.org/x.md)"),
    ("[the baseline](scenarios/baseline.toml)", "README.md", "index.md", "the baseline"),
    ("[scenarios/baseline.toml](scenarios/baseline.toml)", "README.md", "index.md", "`scenarios/baseline.toml`"),
    ("[gone](docs/GONE.md)", "README.md", "index.md", "[gone](GONE.md)"),
    ("[gone](nowhere/GONE.md)", "README.md", "index.md", "[gone](nowhere/GONE.md)"),
    ("`[ODD](docs/ODD.md)`", "README.md", "index.md", "`[ODD](docs/ODD.md)`"),
    ("```\n[ODD](docs/ODD.md)\n```\n", "README.md", "index.md", "```\n[ODD](docs/ODD.md)\n```\n"),
    ("[guide](../README.md#layout)", "docs/ODD.md", "ODD.md", "[guide](index.md#layout)"),
    ("[code](../abm/model.py)", "docs/ODD.md", "ODD.md", "code"),
    ("[f](FINDINGS.md)", "docs/ODD.md", "ODD.md", "[f](FINDINGS.md)"),
    ("[ODD](../docs/ODD.md)", "examples/x.ipynb", "tutorials/x.ipynb", "[ODD](../ODD.md)"),
    ("[api](../docs/api/abm.model.md)", "examples/x.ipynb", "tutorials/x.ipynb", "[api](../api/abm.model.md)"),
])
def test_rewrite_links(source, page_src, page_uri, expected):
    assert _hooks().rewrite_links(source, page_src, page_uri, ROOT, "docs") == expected


def test_rewrite_links_to_notebooks(tmp_path):
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "01_intro.ipynb").write_text("{}", encoding="utf-8")
    out = _hooks().rewrite_links("[intro](examples/01_intro.ipynb)", "README.md", "index.md", tmp_path, "docs")
    assert out == "[intro](tutorials/01_intro.ipynb)"


def test_rewrite_links_leaves_notebook_code_alone():
    html = '<pre><span>x</span>[a](docs/ODD.md)</pre>\n<script>var s = "[a](docs/ODD.md)";</script>'
    assert _hooks().rewrite_links(html, "README.md", "index.md", ROOT, "docs") == html
