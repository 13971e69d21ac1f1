"""``abm report`` and ``abm animate``: self-contained HTML with non-blank figures, the contract network's
stable layout and active edges, the animated GIF, and one-line errors with exit status 2."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from analysis.cli import main
from analysis.views import network as nw
from analysis.views.animate import frame_steps
from analysis.views.common import horizon_indices
from analysis.views.comparison_report import markdown_to_html
from analysis.views.report import REPORT_NAME
from analysis.views.run_figures import network_dates

IMG = re.compile(r'<img[^>]*\bsrc="data:image/png;base64,([A-Za-z0-9+/=]+)"')


# ------------------------------------------------------------------------------------------------ helpers
def _report(folder: Path) -> str:
    assert main(["report", str(folder)]) == 0
    path = folder / REPORT_NAME
    assert path.is_file()
    assert not list(folder.glob(".*tmp*")), "temporary file left behind"
    return path.read_text(encoding="utf-8")


def _check_html(text: str, min_figures: int) -> list[np.ndarray]:
    """Self-contained, figure count as announced, every figure a sane, non-blank PNG. Returns the images."""
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    # No external reference: no http(s) or protocol-relative URL in src/href, no CSS url(), no @import.
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", text, re.I)
    assert not re.search(r"url\(|@import", text, re.I)
    assert "http://" not in text and "https://" not in text
    for ref in re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", text):
        assert ref.startswith(("#", "data:image/png;base64,")), ref[:60]
    blobs = IMG.findall(text)
    announced = int(re.search(r'<meta name="abm-figure-count" content="(\d+)">', text).group(1))
    assert len(blobs) == announced >= min_figures
    assert f"This report contains {announced} figure" in text
    assert text.count("<img") == announced
    images = []
    for k, b in enumerate(blobs):
        img = imread(io.BytesIO(base64.b64decode(b)), format="png")
        h, w = img.shape[:2]
        assert 300 <= w <= 3000 and 200 <= h <= 3000, (k, img.shape)
        rgb = img[..., :3].astype(float)
        assert rgb.std() > 0.05, f"figure {k + 1} looks blank (pixel std {rgb.std():.3f})"
        # Not mostly empty: a fair share of pixels differ from the white background.
        assert (rgb.mean(axis=2) < 0.95).mean() > 0.03, f"figure {k + 1} is almost empty"
        images.append(img)
    return images


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def run30(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "run30"
    assert main(["run", "baseline", "--months", "30", "--seed", "3", "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def run12(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "run12"
    assert main(["run", "baseline", "--months", "12", "--seed", "2", "--out", str(out), "--quiet"]) == 0
    return out


# ------------------------------------------------------------------------------------------------ reports
def test_run_report_is_self_contained_with_every_section(run30):
    """A 30-month run: headline table, every section, 7 non-blank figures, nothing external."""
    text = _report(run30)
    _check_html(text, min_figures=7)
    for anchor in ("headline", "shares", "concentration", "returns", "prices", "entry", "network"):
        assert f'id="{anchor}"' in text, anchor
    for metric in ("lab_hhi_compute", "lab_top3_share_compute", "entry_barrier_usd", "frontier_capability",
                   "efficiency_share_of_progress", "marginal_capability_per_usd",
                   "spot_price_usd_per_h100e_hour", "labs_active", "cloud_hhi_capacity"):
        assert f"<code>{metric}</code>" in text, metric
    # Headline columns: month 1 and the last month (a 30-month run has no 5- or 10-year column).
    assert "2024-01 (start, month 1)" in text and "month 30)" in text and "month 60)" not in text


@pytest.mark.slow
def test_ensemble_report_bands_every_column(tmp_path):
    """3 seeds x 24 months: every timeseries column is drawn with its band; agent panels are said missing."""
    out = tmp_path / "ens"
    assert main(["ensemble", "baseline", "--seeds", "3", "--months", "24", "--out", str(out), "--quiet"]) == 0
    text = _report(out)
    _check_html(text, min_figures=4)
    assert "not available" in text
    head = pd.read_csv(out / "ensemble.csv", nrows=0).columns
    cols = [c[: -len("_mean")] for c in head if c.endswith("_mean")]
    from analysis.views.ensemble_report import ensemble_groups

    drawn = [c for _, group in ensemble_groups(cols) for c in group]
    assert sorted(drawn) == sorted(cols)


@pytest.mark.slow
def test_comparison_report_overlays_and_tables(tmp_path):
    """2 scenarios x 2 seeds x 30 months: overlays of the headline metrics and comparison.md as tables."""
    out = tmp_path / "cmp"
    assert main(["compare", "baseline", "mega_deal", "--seeds", "2", "--months", "30", "--horizons", "12,24",
                 "--out", str(out), "--quiet"]) == 0
    text = _report(out)
    _check_html(text, min_figures=2)
    assert "Horizon 12 months" in text and "Horizon 24 months" in text
    assert text.count("<table>") >= 3  # headline table + one per horizon
    assert "mega_deal − baseline" in text
    assert "<pre>abm compare baseline mega_deal" in text


def test_markdown_tables_and_code():
    html = markdown_to_html("# T\n\nSome `x` text.\n\n```\ncmd --a\n```\n\n## H\n\n| a | b |\n|---|---:|\n"
                            "| `m` | 1 |\n")
    assert "<h1>" not in html and "<h3>H</h3>" in html
    assert "<p>Some <code>x</code> text.</p>" in html and "<pre>cmd --a</pre>" in html
    assert '<td class="num">1</td>' in html and "<td class=\"\"><code>m</code></td>" in html


def test_headline_months_and_network_dates():
    assert horizon_indices(120) == [0, 59, 119]
    assert horizon_indices(200) == [0, 59, 119]
    assert horizon_indices(30) == [0, 29]
    assert horizon_indices(1) == [0]
    months = [f"{2024 + k // 12}-{k % 12 + 1:02d}" for k in range(120)]
    assert [months[i] for i in network_dates(months)] == ["2024-12", "2026-12", "2028-12", "2033-12"]
    assert [months[i] for i in network_dates(months[:30])] == ["2024-12", "2026-06"]
    assert frame_steps(12, 2) == [0, 2, 4, 6, 8, 10, 11]
    assert frame_steps(1, 2) == [0]


# ------------------------------------------------------------------------------------------------ network
def _agents(step: int) -> pd.DataFrame:
    rows = [("L1", "lab", "small", 20, 0.0, 5e8), ("L2", "lab", "frontier", 21, 0.0, 9e9),
            ("C1", "cloud", "hyperscaler", 1, 3e9, 0.0), ("V1", "vendor", "merchant", 7, 1e10, 0.0)]
    return pd.DataFrame([{"month": "x", "step": step, "agent_id": a, "name": n, "type": t, "kind": k,
                          "alive": True, "cash_usd": cash, "capital_raised_usd": cap, "h100e": 1.0}
                         for n, t, k, a, cash, cap in rows])


def _contracts() -> pd.DataFrame:
    rows = [  # buyer, seller, kind, start, end, status, closed
        ("L1", "C1", "reserved", 3, 10, "active", None),        # in force in months 3..9
        ("L2", "C1", "reserved", 0, 4, "completed", 4),         # ended before month 4
        ("C1", "V1", "chip_order", 5, 9, "completed", 9),       # in delivery in months 5..8
        ("L2", "C1", "spot", 6, 7, "completed", 6),             # one month: 6
        ("L1", "C1", "equity_for_compute", 2, 30, "defaulted", 4),  # defaulted in month 4
    ]
    return pd.DataFrame([{"contract_id": i, "buyer": b, "seller": s, "kind": k, "volume_h100e": 100.0,
                          "start": st, "end": en, "unit_price_usd": 1000.0, "status": status,
                          "closed": np.nan if closed is None else closed}
                         for i, (b, s, k, st, en, status, closed) in enumerate(rows)])


def test_contract_graph_edges_follow_active_contracts():
    c = _contracts()
    g3 = nw.contract_graph(c, _agents(3), 3)
    assert g3.has_edge("L1", "C1") and g3.has_edge("L2", "C1") and not g3.has_edge("C1", "V1")
    assert g3.edges["L1", "C1"]["kinds"] == "equity_for_compute,reserved"
    g4 = nw.contract_graph(c, _agents(4), 4)  # L2's contract ended (end 4); the defaulted one runs in 4
    assert not g4.has_edge("L2", "C1")
    assert g4.edges["L1", "C1"]["n_contracts"] == 2
    g5 = nw.contract_graph(c, _agents(5), 5)  # the default closed it in month 4
    assert g5.edges["L1", "C1"]["n_contracts"] == 1 and g5.has_edge("C1", "V1")
    assert g5.edges["L1", "C1"]["value_usd"] == pytest.approx(100 * 1000 * 7)  # 7 months of a reserved deal
    assert g5.edges["C1", "V1"]["value_usd"] == pytest.approx(100 * 1000)      # chips: price per H100e
    assert not g5.has_edge("L2", "C1")
    assert nw.contract_graph(c, _agents(6), 6).has_edge("L2", "C1")  # the spot month
    assert set(g5.nodes) == {"L1", "L2", "C1", "V1"}  # agents without contracts are nodes too
    assert g5.nodes["L2"]["size_usd"] == 9e9 and g5.nodes["C1"]["size_usd"] == 3e9


def test_network_on_a_run(run30):
    """Real run: an edge for a contract in force at the date, none for one that ended; stable positions."""
    contracts = pd.read_csv(run30 / "contracts.csv")
    agents = pd.read_csv(run30 / "agents.csv")
    steps = [5, 17, 29]
    graphs = [nw.contract_graph(contracts, agents, s) for s in steps]
    n_ended = 0
    for s, g in zip(steps, graphs, strict=True):
        act = nw.active_contracts(contracts, s)
        assert len(act) > 0
        for r in act.itertuples():
            assert g.has_edge(r.buyer, r.seller)
        linked = {frozenset((r.buyer, r.seller)) for r in act.itertuples()}
        assert {frozenset(e) for e in g.edges} == linked
        ended = contracts[contracts["end"] <= s]
        ended = [r for r in ended.itertuples() if frozenset((r.buyer, r.seller)) not in linked]
        for r in ended:  # every contract between the pair has ended: no edge
            assert not g.has_edge(r.buyer, r.seller)
        n_ended += len(ended)
    assert n_ended > 0, "expected some pair whose contracts all ended"
    pos = nw.stable_layout(graphs)
    assert set(pos) == set().union(*(g.nodes for g in graphs))
    assert len(set(pos.values())) == len(pos), "two nodes share a position"
    # One position per node whatever the dates' order, and the same again when recomputed.
    assert pos == nw.stable_layout(list(reversed(graphs)))
    assert pos == nw.stable_layout([nw.contract_graph(contracts, agents, s) for s in steps])
    # Clouds and vendors exist from the start: their places do not depend on which dates are laid out.
    for name in ("Azure", "Nvidia"):
        assert all(name in g for g in graphs)
        assert pos[name] == nw.stable_layout(graphs[:1])[name]


# ------------------------------------------------------------------------------------------------ animate
def test_animate_writes_a_multi_frame_gif(run12, capsys):
    from PIL import Image

    assert main(["animate", str(run12), "--every", "2", "--fps", "5"]) == 0
    gif = run12 / "animation.gif"
    assert gif.is_file()
    printed = capsys.readouterr().out.split()
    assert str(gif) in printed
    with Image.open(gif) as im:
        assert im.n_frames == len(frame_steps(12, 2)) > 1
        assert 400 <= im.size[0] <= 1500 and 200 <= im.size[1] <= 900
        im.seek(im.n_frames - 1)
        frame = np.asarray(im.convert("RGB"), dtype=float) / 255
        assert frame.std() > 0.05
    assert not list(run12.glob(".*tmp*"))


# ------------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("case", ["missing", "empty", "file", "ensemble_for_animate", "broken_csv"])
def test_user_errors_exit_2_one_line(tmp_path, capsys, case):
    d = tmp_path / "d"
    cmd = "report"
    if case == "empty":
        d.mkdir()
    elif case == "file":
        d.write_text("x")
    elif case == "ensemble_for_animate":
        d.mkdir()
        (d / "ensemble.csv").write_text("month,step\n")
        cmd = "animate"
    elif case == "broken_csv":
        d.mkdir()
        (d / "timeseries.csv").write_text("month,step\n2024-01,0\n")
        (d / "agents.csv").write_text("a,b\n1,2\n")
    assert main([cmd, str(d)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("abm: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    if d.is_dir():
        assert not (d / REPORT_NAME).exists() and not (d / "animation.gif").exists()
        assert not list(d.glob(".*tmp*"))
