"""MkDocs hooks for the documentation site (mkdocs.yml: ``hooks``).

* The README becomes the home page: it is added as the virtual page ``index.md``, so the guide has one source.
* Every notebook ``examples/*.ipynb`` becomes a page ``tutorials/<name>.ipynb`` (rendered by mkdocs-jupyter)
  and an entry of the Tutorials section of the navigation; the list is found when the site is built, so a
  notebook that is added or removed needs no change here. The Tutorials index page gets the list too.
* Links are rewritten for the site: in the README (whose links are relative to the repository's root) and
  in the pages of ``docs/``, a link to a page or image of ``docs/`` becomes a link inside the site, a link
  to ``README.md`` goes to the home page, a link to a notebook of ``examples/`` goes to its tutorial page,
  and a link to a file of the repository that is not part of the site (``scenarios/``, ``abm/``, ...)
  becomes its text. A link to a file that does not exist is left alone, so ``mkdocs build --strict``
  reports it.
* MkDocs-Jupyter's MathJax loader, which would fetch MathJax from a CDN, is taken out of every page: the
  site loads nothing from the network.
"""

from __future__ import annotations

import json
import posixpath
import re
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

README = "README.md"
NOTEBOOKS = "examples"  # folder of the tutorial notebooks, relative to the repository's root
TUTORIALS = "tutorials"  # their folder in the site
TUTORIALS_INDEX = f"{TUTORIALS}/index.md"
TUTORIALS_MARKER = "<!-- tutorials -->"  # replaced by the list of tutorials on the index page

_RAW = re.compile(r"<(script|style|pre)\b.*?</\1>", re.S | re.I)  # raw HTML blocks (a notebook's code, CSS)
_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
_LINK = re.compile(r"(!?)\[([^\]\n]*)\]\(\s*<?([^)\s>]*)>?(\s+\"[^\"]*\")?\s*\)")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_MATHJAX = re.compile(r"<script data-mkdocs-jupyter-mathjax=.*?</script>\s*", re.S)


def _root(config) -> Path:
    return Path(config["config_file_path"]).resolve().parent


def _docs_prefix(config) -> str:
    """docs_dir relative to the repository's root, as a posix path ('docs')."""
    return Path(config["docs_dir"]).resolve().relative_to(_root(config)).as_posix()


def notebooks(root: Path) -> list[Path]:
    """The tutorial notebooks, in the order of their names (01_..., 02_...)."""
    return sorted((root / NOTEBOOKS).glob("*.ipynb"))


def notebook_title(path: Path) -> str:
    """The notebook's first Markdown heading, else its file name."""
    try:
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError):
        cells = []
    for cell in cells:
        if cell.get("cell_type") != "markdown":
            continue
        source = cell.get("source", "")
        text = "".join(source) if isinstance(source, list) else source
        m = re.search(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M)
        if m:
            return m.group(1).strip()
    return path.stem.replace("_", " ")


def on_config(config):
    """Put one entry per notebook into the Tutorials section of the navigation; ``mkdocs serve`` watches the
    README and the notebooks too."""
    root = _root(config)
    for path in (root / README, root / NOTEBOOKS):
        if path.exists() and str(path) not in config["watch"]:
            config["watch"].append(str(path))
    entries = [{notebook_title(p): f"{TUTORIALS}/{p.name}"} for p in notebooks(root)]
    nav = config["nav"] or []
    for i, item in enumerate(nav):
        if isinstance(item, dict) and len(item) == 1:
            (title, value), = item.items()
            if value == TUTORIALS_INDEX or (isinstance(value, list) and TUTORIALS_INDEX in value):
                nav[i] = {title: [TUTORIALS_INDEX, *entries]}
    return config


@event_priority(100)  # before mkdocs-jupyter's on_files, which turns the notebooks into pages
def on_files(files: Files, config) -> Files:
    """Add the README as index.md and the notebooks as tutorials/*.ipynb."""
    root = _root(config)
    readme = File.generated(config, "index.md", abs_src_path=str(root / README))
    readme.edit_uri = None
    files.append(readme)
    for path in notebooks(root):
        files.append(File.generated(config, f"{TUTORIALS}/{path.name}", abs_src_path=str(path)))
    return files


def _code_blocks(markdown: str):
    """Yield (is_code, text) over the Markdown: raw script, style and pre blocks (a notebook's code and CSS)
    and fenced code blocks are code; the rest is prose."""
    pos = 0
    for m in _RAW.finditer(markdown):
        yield from _fenced(markdown[pos : m.start()])
        yield True, m.group(0)
        pos = m.end()
    yield from _fenced(markdown[pos:])


def _fenced(markdown: str):
    fence = None
    prose: list[str] = []
    for line in markdown.splitlines(keepends=True):
        m = _FENCE.match(line)
        if fence is None and m:
            if prose:
                yield False, "".join(prose)
                prose = []
            fence = m.group(2)
            yield True, line
        elif fence is not None:
            yield True, line
            if m and m.group(2)[0] == fence[0] and len(m.group(2)) >= len(fence) and not line[m.end() :].strip():
                fence = None
        else:
            prose.append(line)
    if prose:
        yield False, "".join(prose)


def _sub_links(text: str, replace) -> str:
    """``text`` with every Markdown link or image outside code spans passed through ``replace``.

    Code spans are masked (same length) before the links are found, so a link whose text is code, such as
    [`abm/`](abm/), is found, and a link written inside a code span is not.
    """
    masked = _CODE_SPAN.sub(lambda m: "\0" * len(m.group(0)), text)
    out, pos = [], 0
    for m in _LINK.finditer(masked):
        if "\0" in m.group(1) + m.group(3):
            continue
        out.append(text[pos : m.start()])
        original = _LINK.fullmatch(text[m.start() : m.end()])
        out.append(replace(original) if original else text[m.start() : m.end()])
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)


def rewrite_links(markdown: str, page_src: str, page_uri: str, root: Path, docs: str) -> str:
    """The page's Markdown with its links rewritten for the site (see the module's docstring).

    ``page_src`` is the page's source file relative to the repository's root ('README.md', 'docs/ODD.md'),
    ``page_uri`` its path in the site's sources ('index.md', 'ODD.md'), ``docs`` the docs folder ('docs').
    """
    src_dir = posixpath.dirname(page_src)
    uri_dir = posixpath.dirname(page_uri)

    def site_link(uri: str, anchor: str) -> str:
        return posixpath.relpath(uri, uri_dir or ".") + anchor

    def replace(m: re.Match) -> str:
        bang, text, target, title = m.group(1), m.group(2), m.group(3), m.group(4) or ""
        if not target or target.startswith("#") or _SCHEME.match(target) or target.startswith("/"):
            return m.group(0)
        path, sep, frag = target.partition("#")
        anchor = sep + frag
        resolved = posixpath.normpath(posixpath.join(src_dir, path))
        if resolved.startswith("../") or resolved == "..":
            return m.group(0)  # outside the repository: MkDocs decides
        if resolved == docs or resolved.startswith(docs + "/"):
            if page_src.startswith(docs + "/"):
                return m.group(0)  # a link inside docs/: MkDocs checks it as it is
            new = site_link(resolved[len(docs) + 1 :] or ".", anchor)
            return f"{bang}[{text}]({new}{title})"
        if resolved == README:
            return f"{bang}[{text}]({site_link('index.md', anchor)}{title})"
        if posixpath.dirname(resolved) == NOTEBOOKS and resolved.endswith(".ipynb") and (root / resolved).is_file():
            new = site_link(f"{TUTORIALS}/{posixpath.basename(resolved)}", anchor)
            return f"{bang}[{text}]({new}{title})"
        if (root / resolved).exists():
            # A file of the repository that is not part of the site: keep the words, drop the link.
            if text.strip("`") in (path, resolved, target) and not text.startswith("`"):
                return f"`{text}`"
            return text
        return m.group(0)  # no such file: left as a link, so the strict build reports it

    return "".join(part if is_code else _sub_links(part, replace) for is_code, part in _code_blocks(markdown))


def _tutorial_list(root: Path) -> str:
    items = [f"- [{notebook_title(p)}]({p.name})" for p in notebooks(root)]
    return "\n".join(items) if items else "*No tutorial notebooks in `examples/` yet.*"


def on_page_markdown(markdown: str, page, config, files):
    root = _root(config)
    docs = _docs_prefix(config)
    src = page.file.src_uri
    if src == "index.md" and page.file.abs_src_path and Path(page.file.abs_src_path).name == README:
        return rewrite_links(markdown, README, "index.md", root, docs)
    if page.file.abs_src_path is None:
        return markdown
    if src.startswith(f"{TUTORIALS}/") and src.endswith(".ipynb"):
        # A notebook's Markdown cells (mkdocs-jupyter's markdown_cell_processor: mkdocs), linked from examples/.
        return rewrite_links(markdown, f"{NOTEBOOKS}/{posixpath.basename(src)}", src, root, docs)
    if not src.endswith(".md"):
        return markdown
    if src == TUTORIALS_INDEX:
        markdown = markdown.replace(TUTORIALS_MARKER, _tutorial_list(root))
    return rewrite_links(markdown, f"{docs}/{src}", src, root, docs)


@event_priority(-100)  # after mkdocs-jupyter's on_post_page, which adds the loader
def on_post_page(output: str, page, config) -> str:
    return _MATHJAX.sub("", output)
