"""The report on a study folder (``abm report`` on the output of ``abm barriers``, ``abm sweep`` or
``abm sensitivity``): the study's markdown (``barriers.md``, ``sweep.md`` or ``sensitivity.md``) as HTML, then
every figure of its ``figures/`` folder embedded, each with the caption its file name gives.
"""

from __future__ import annotations

import base64
from pathlib import Path

from .common import Doc, ReportError, esc
from .comparison_report import markdown_to_html

# The markdown file of each kind of study, and a caption for each figure it draws (others: the file name).
STUDIES = {"barriers": "barriers.md", "sweep": "sweep.md", "sensitivity": "sensitivity.md"}
CAPTIONS = {
    "survival_map.png": "Share of seeds in which a probe entrant is alive after the follow-up, by seed capital "
                        "and starting efficiency; white line: 50%.",
    "reach_map.png": "Share of seeds in which a probe entrant caught up (alive and within the viable gap of the "
                     "frontier); white line: 50%.",
    "barrier_trajectory.png": "The entry barrier over time, mean and 95% CI over seeds, per scenario.",
    "barrier_parts.png": "The entry barrier's parts: the final run's compute, the runway, and contract terms "
                         "and default risk.",
    "price_gap.png": "Reserved prices signed by small labs and by the three largest labs (12-month means).",
    "strategy.png": "Entrants with a fixed R&D share: survival and gap to the frontier, by gamma.",
    "comparison.png": "The scenarios side by side.",
}


def study_kind(d: Path) -> str | None:
    """``"barriers"``, ``"sweep"`` or ``"sensitivity"`` if ``d`` holds that study's markdown, else None."""
    for kind, name in STUDIES.items():
        if (d / name).is_file():
            return kind
    return None


def _image(doc: Doc, path: Path, caption: str) -> None:
    doc.n_figures += 1
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    doc.html(f'<figure><img alt="{esc(path.stem)}" src="data:image/png;base64,{data}">'
             f"<figcaption><b>Figure {doc.n_figures}.</b> {esc(caption)}</figcaption></figure>")


def report_study(d: Path) -> Doc:
    kind = study_kind(d)
    if kind is None:
        raise ReportError(f"{d}: no barriers.md, sweep.md or sensitivity.md")
    try:
        md = (d / STUDIES[kind]).read_text(encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot read {d / STUDIES[kind]}: {exc.strerror or exc}") from None
    first = next((ln for ln in md.splitlines() if ln.startswith("# ")), f"# {kind}")
    doc = Doc(title=first[2:].strip(), subtitle=f"abm {kind}: {esc(str(d))}",
              footer_note=f"Written by abm report from {esc(STUDIES[kind])} and figures/ of {esc(str(d))}.")
    doc.section("results", "Results")
    doc.html(markdown_to_html(md))
    doc.end()
    figures = sorted((d / "figures").glob("*.png")) if (d / "figures").is_dir() else []
    if figures:
        doc.section("figures", "Figures")
        for path in figures:
            _image(doc, path, CAPTIONS.get(path.name, path.stem.replace("_", " ").replace("-", " ")))
        doc.end()
    return doc
