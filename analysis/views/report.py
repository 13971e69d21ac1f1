"""``abm report DIR``: one self-contained HTML page about a run, an ensemble or a comparison folder.

The kind of folder is recognised by its files: ``timeseries.csv`` or ``timeseries.parquet`` (a run, from ``abm run``),
``ensemble.csv`` (an ensemble, from ``abm ensemble``) or ``comparison.csv`` (a comparison, from
``abm compare``). :func:`write_report` writes ``DIR/report.html`` atomically (a temporary file renamed into
place) and returns its path and the number of figures. Every figure is a PNG embedded as base64, the CSS is
inline and there is no external reference, so the file can be mailed or archived on its own.

A run's report (:mod:`.run_report`): headline numbers at the start, after 5 and after 10 years; market shares
of labs, clouds and chip vendors; concentration (HHI) and the vendors' Lerner index; capability against
effective compute and the split of frontier progress into physical compute and algorithmic efficiency;
prices, costs, utilization and money flows; the entry barrier, entries, exits and survival; the contract
network at several dates. An ensemble's report (:mod:`.ensemble_report`): every timeseries column with its
2.5-97.5 percentile band over seeds. A comparison's report (:mod:`.comparison_report`): the scenarios
overlaid for the headline metrics, and the tables of comparison.md. A study's report (:mod:`.study_report`,
for ``abm barriers``, ``abm sweep`` and ``abm sensitivity``): its markdown and every figure it drew. What
they share is in :mod:`.common`.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..tables import has_table
from .common import ReportError
from .comparison_report import report_comparison
from .ensemble_report import report_ensemble
from .run_report import report_run
from .study_report import report_study, study_kind

REPORT_NAME = "report.html"


def detect_kind(d: Path) -> str:
    """``"run"``, ``"ensemble"``, ``"comparison"``, or a study (``"barriers"``, ``"sweep"``,
    ``"sensitivity"``) from the files in ``d``; ReportError otherwise."""
    if not d.exists():
        raise ReportError(f"{d}: folder not found")
    if not d.is_dir():
        raise ReportError(f"{d}: not a directory")
    if has_table(d, "timeseries"):
        return "run"
    if (d / "ensemble.csv").is_file():
        return "ensemble"
    if (d / "comparison.csv").is_file():
        return "comparison"
    kind = study_kind(d)
    if kind is not None:
        return kind
    raise ReportError(f"{d}: no timeseries.csv, ensemble.csv, comparison.csv, barriers.md, sweep.md or "
                      "sensitivity.md; give a folder written by 'abm run', 'abm ensemble', 'abm compare', "
                      "'abm barriers', 'abm sweep' or 'abm sensitivity'")


# ------------------------------------------------------------------------------------------------ entry point
def build_report(d: str | Path) -> tuple[str, str, int]:
    """(kind, HTML text, number of figures) of the report on folder ``d``; writes nothing."""
    d = Path(d)
    kind = detect_kind(d)
    make = {"run": report_run, "ensemble": report_ensemble, "comparison": report_comparison}.get(kind, report_study)
    doc = make(d)
    return kind, doc.render(doc.footer_note), doc.n_figures


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_report(d: str | Path) -> tuple[Path, str, int]:
    """Write ``d/report.html`` atomically; return (path, kind, number of figures)."""
    d = Path(d)
    kind, text, n = build_report(d)
    out = d / REPORT_NAME
    atomic_write_text(out, text)
    return out, kind, n
