"""The report on a comparison folder (``abm report`` on the output of ``abm compare``): each scenario's
ensemble loaded, the headline numbers side by side, the scenarios' bands overlaid for the headline metrics,
and the tables of ``comparison.md`` converted to HTML.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .common import (
    HEADLINE,
    Doc,
    ReportError,
    _col_label,
    _read_json,
    col_info,
    esc,
    glossary_html,
    horizon_indices,
    new_figure,
    num,
    read_csv,
)
from .ensemble_report import Ens, _ens_cell, _finish_band, band_legend, band_panel, grid_shape, load_ensemble


# ------------------------------------------------------------------------------------------------ comparisons
def _inline_md(text: str) -> str:
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for p in parts:
        if len(p) >= 2 and p.startswith("`") and p.endswith("`"):
            out.append(f"<code>{esc(p[1:-1])}</code>")
        else:
            t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", esc(p))
            out.append(t.replace("✓", '<span class="sig" title="the 95% CI excludes zero">✓</span>'))
    return "".join(out)


def markdown_to_html(md: str, skip_title: bool = True) -> str:
    """The subset of Markdown that comparison.md uses: headings, paragraphs, fenced code and tables."""
    lines = md.splitlines()
    out: list[str] = []
    i = 0
    para: list[str] = []

    def flush():
        if para:
            out.append(f"<p>{_inline_md(' '.join(para))}</p>")
            para.clear()

    while i < len(lines):
        line = lines[i]
        s = line.strip()
        if s.startswith("```"):
            flush()
            j = i + 1
            body = []
            while j < len(lines) and not lines[j].strip().startswith("```"):
                body.append(lines[j])
                j += 1
            out.append(f"<pre>{esc(chr(10).join(body))}</pre>")
            i = j + 1
            continue
        if s.startswith("#"):
            flush()
            level = len(s) - len(s.lstrip("#"))
            text = s[level:].strip()
            if not (skip_title and level == 1):
                out.append(f"<h{min(level + 1, 4)}>{_inline_md(text)}</h{min(level + 1, 4)}>")
            i += 1
            continue
        if s.startswith("|"):
            flush()
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            aligns = []
            if len(rows) >= 2 and all(re.fullmatch(r":?-{3,}:?", c) for c in rows[1]):
                aligns = ["num" if c.endswith(":") else "" for c in rows[1]]
                rows = [rows[0]] + rows[2:]
            head = "".join(f'<th class="{aligns[k] if k < len(aligns) else ""}">{_inline_md(c)}</th>'
                           for k, c in enumerate(rows[0]))
            body = "".join("<tr>" + "".join(f'<td class="{aligns[k] if k < len(aligns) else ""}">'
                                            f"{_inline_md(c)}</td>" for k, c in enumerate(r)) + "</tr>"
                           for r in rows[1:])
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            continue
        if not s:
            flush()
        else:
            para.append(s)
        i += 1
    flush()
    return "\n".join(out)


def load_comparison(d: Path) -> tuple[list[Ens], dict, pd.DataFrame]:
    table = read_csv(d / "comparison.csv", ["scenario", "metric", "horizon"], dtype={"scenario": str})
    info = _read_json(d / "compare.json")
    names = [str(s) for s in info.get("scenarios", [])]
    folders = [str(f) for f in info.get("folders", [])]
    if not names or len(folders) != len(names):
        names = list(dict.fromkeys(table["scenario"].astype(str)))
        folders = [re.sub(r"[^A-Za-z0-9._-]", "_", nm).lstrip(".") or "scenario" for nm in names]
    ens = []
    for name, folder in zip(names, folders, strict=True):
        sub = d / folder
        if not (sub / "ensemble.csv").is_file():
            raise ReportError(f"{d}: scenario '{name}' has no {folder}/ensemble.csv; rerun 'abm compare' to "
                              "finish the comparison")
        ens.append(load_ensemble(sub, name))
    if not ens:
        raise ReportError(f"{d / 'comparison.csv'}: no scenarios")
    return ens, info, table


def fig_compare_group(ens: Sequence[Ens], cols: Sequence[str]) -> Figure:
    nrows, ncols = grid_shape(len(cols))
    fig, axes = new_figure(5.0 * ncols, 3.6 * nrows + 0.5, nrows, ncols)
    months = max((e.months for e in ens), key=len)
    for j, col in enumerate(cols):
        ax = axes[j // ncols, j % ncols]
        arrays = []
        for k, e in enumerate(ens):
            if f"{col}_mean" not in e.df.columns:
                continue
            mean, lo = band_panel(ax, e, col, f"C{k % 10}", label=f"{e.name} (mean)")
            arrays += [mean, lo, num(e.df, f"{col}_p97_5")]
        _finish_band(ax, col, arrays or [np.array([np.nan])], months)
    for j in range(len(cols), nrows * ncols):
        axes[j // ncols, j % ncols].set_visible(False)
    band_legend(fig, [(f"{e.name}: mean and 2.5-97.5 percentile band", f"C{k % 10}") for k, e in enumerate(ens)],
                any(col_info(c).kind == "hhi" for c in cols))
    return fig


def report_comparison(d: Path) -> Doc:
    from ..experiments.compare import HEADLINE_METRICS

    ens, info, _table = load_comparison(d)
    names = [e.name for e in ens]
    n = ens[0].n_seeds or info.get("n_seeds")
    title = f"Comparison report: {' vs '.join(names)}"
    months = ens[0].months
    sub = (f"{n} seeds per scenario, {len(months)} months from {esc(months[0])} to {esc(months[-1])}; reference "
           f"scenario: {esc(names[0])}.")
    doc = Doc(title, sub)
    doc.section("about", "About this report")
    descs = "".join(f"<li><b>{esc(e.name)}</b>: {esc(e.info.get('description') or '')}</li>" for e in ens)
    doc.p("This page compares scenarios of an agent-based model of the AI compute market (AI labs, cloud "
          "providers, chip vendors and investors contracting month by month). Every scenario was simulated "
          f"with the same {n} random seeds (common random numbers), so that differences come from the "
          "scenarios' rules rather than from luck, and are measured seed by seed.")
    doc.html(f"<ul>{descs}</ul>")
    doc.html(glossary_html())
    doc.end()

    idx = horizon_indices(len(months))
    doc.section("headline", "Headline numbers",
                "Mean over seeds (and below it the 2.5th to 97.5th percentile range) for each scenario at the end "
                "of the first month, after five years and after ten years (or the last month).")
    rows = []
    for metric, label, meaning in HEADLINE:
        for j, i in enumerate(idx):
            cells = "".join(f'<td class="num">{_ens_cell(e, metric, i) if i < len(e.months) else "n/a"}</td>'
                            for e in ens)
            first = (f'<td rowspan="{len(idx)}"><b>{esc(label)}</b><br><code>{esc(metric)}</code></td>'
                     if j == 0 else "")
            mean_cell = f'<td class="meaning" rowspan="{len(idx)}">{esc(meaning)}</td>' if j == 0 else ""
            rows.append(f"<tr>{first}<td>{esc(_col_label(months, i))}</td>{cells}{mean_cell}</tr>")
    head = "".join(f'<th class="num">{esc(nm)}</th>' for nm in names)
    doc.html(f"<table><thead><tr><th>metric</th><th>month</th>{head}<th>what it means</th></tr></thead>"
             f"<tbody>{''.join(rows)}</tbody></table>")
    doc.end()

    metrics = [m for m in HEADLINE_METRICS if any(f"{m}_mean" in e.df.columns for e in ens)]
    for k in range(0, len(metrics), 6):
        chunk = metrics[k:k + 6]
        doc.section(f"overlay-{k // 6}", "Scenarios over time" + (f" ({k // 6 + 1})" if len(metrics) > 6 else ""))
        doc.figure(fig_compare_group(ens, chunk),
                   "Each scenario's mean over seeds (line) and the band within which 95% of its seeds lie (2.5th "
                   "to 97.5th percentile, shaded), month by month. Where bands overlap, a single seed may not "
                   "show the difference, but the paired tests below can still find it.",
                   "scenario overlays: " + ", ".join(chunk))
        doc.end()

    md_path = d / "comparison.md"
    doc.section("tests", "Paired differences")
    if md_path.is_file():
        try:
            md = md_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ReportError(f"{md_path}: cannot read: {exc}") from None
        doc.html(markdown_to_html(md))
    else:
        doc.p("comparison.md is not in the folder.", "note")
    doc.end()
    doc.footer_note = (f"Generated by <code>abm report</code> from <code>{esc(d)}</code> (comparison.csv, "
                       "comparison.md and each scenario's ensemble.csv).")
    return doc
