"""The interactive dashboard (analysis/views/dashboard.py): its model wrapper and drawing, and, in a real
browser, the served page (Debian's /usr/bin/chromium driven by playwright, offline).

The browser test never skips: without chromium it fails and says how to install it. Set
UPDATE_SCREENSHOTS=1 to also write docs/img/dashboard.png (after 24 months, for the README).
"""

from __future__ import annotations

import inspect
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from abm.scenario import available_scenarios, load_scenario

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ROOT = Path(__file__).resolve().parent.parent
TIME_RE = re.compile(r"Time:\s*(\d+)")


@pytest.fixture(scope="module")
def dash():
    from analysis.views import dashboard

    return dashboard


def test_defaults_are_the_baseline_values_and_add_no_overrides(dash):
    m = dash.DashboardMarket()
    assert m.dashboard_overrides == {}
    base = load_scenario("baseline")
    for key in ("capital.kappa", "efficiency.diffusion", "capital.inflow_usd_month",
                "entry.seed_capital_median_usd", "policy.exclusivity_allowed", "policy.equity_for_compute_allowed"):
        sec, name = key.split(".")
        assert getattr(getattr(m.cfg, sec), name) == getattr(getattr(base, sec), name)
    assert m.cfg.gamma == pytest.approx(base.gamma)  # the slider's rounded default leaves the derived gamma
    assert m.cfg.run.seed == base.run.seed


def test_moved_sliders_become_scenario_overrides_in_model_units(dash):
    m = dash.DashboardMarket(scenario_name="mega_deal", seed=7, kappa=2.5, gamma=0.25, diffusion=0.1,
                             inflow_busd_month=5.0, seed_capital_musd=300.0, exclusivity_allowed=False,
                             equity_for_compute_allowed=False)
    assert m.dashboard_overrides == {
        "capital.kappa": 2.5, "scaling.gamma": 0.25, "efficiency.diffusion": 0.1,
        "capital.inflow_usd_month": 5e9, "entry.seed_capital_median_usd": 3e8,
        "policy.exclusivity_allowed": False, "policy.equity_for_compute_allowed": False}
    c = m.cfg
    assert (c.capital.kappa, c.gamma, c.efficiency.diffusion) == (2.5, 0.25, 0.1)
    assert (c.capital.inflow_usd_month, c.entry.seed_capital_median_usd) == (5e9, 3e8)
    assert not c.policy.exclusivity_allowed and not c.policy.equity_for_compute_allowed
    assert c.run.seed == 7 and m.scenario_name == "mega_deal"


def test_model_params_match_the_model_signature(dash):
    """SolaraViz re-creates the model on Reset as type(model)(**params): every input must be an argument."""
    from mesa.visualization.solara_viz import _check_model_params

    sig = inspect.signature(dash.DashboardMarket.__init__).parameters
    assert set(dash.MODEL_PARAMS) == set(sig) - {"self"}
    assert "scenario" not in sig and not any(p.kind == p.VAR_KEYWORD for p in sig.values())
    _check_model_params(dash.DashboardMarket(), dash.MODEL_PARAMS)
    assert dash.MODEL_PARAMS["scenario_name"]["values"] == available_scenarios()
    for name, spec in dash.MODEL_PARAMS.items():
        if spec["type"].startswith("Slider"):
            assert spec["min"] <= spec["value"] <= spec["max"], name
    assert (dash.MODEL_PARAMS["gamma"]["min"], dash.MODEL_PARAMS["gamma"]["max"]) == (0.1, 0.3)


def test_network_layout_is_fixed_and_drawing_works(dash):
    m = dash.DashboardMarket()
    dash.draw_network(m)
    before = dict(m.node_pos)
    assert set(before) == set(m.network.nodes)
    for _ in range(6):
        m.step()
    fig = dash.draw_network(m)
    assert fig.axes and fig.axes[0].collections  # nodes and edges drawn
    assert all(m.node_pos[n] == p for n, p in before.items())  # nobody moved
    assert set(m.node_pos) == set(m.network.nodes)


def _step_counter(page) -> int:
    m = TIME_RE.search(page.get_by_text("Time:").first.inner_text())
    assert m, "no 'Time: N' step counter on the page"
    return int(m.group(1))


def _wait_counter(page, value: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while _step_counter(page) != value:
        assert time.monotonic() < deadline, f"step counter stuck at {_step_counter(page)}, expected {value}"
        time.sleep(0.1)


@pytest.mark.slow
def test_dashboard_in_a_real_browser(tmp_path):
    chromium = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if not chromium:
        pytest.fail("chromium not installed: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    from analysis.views.dashboard_server import free_port, serve, stop

    t0 = time.monotonic()
    proc = serve(port=free_port(), log=tmp_path / "server.log")
    ready_s = time.monotonic() - t0
    try:
        assert ready_s < 30, f"server took {ready_s:.1f} s to answer"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                failed: list[str] = []  # offline: every front-end file must come from the server itself
                page.on("requestfailed", lambda r: failed.append(f"{r.url} ({r.failure})"))
                page.on("response", lambda r: r.status >= 400 and failed.append(f"{r.url} ({r.status})"))
                page.goto(proc.url)
                page.get_by_text("Time:").first.wait_for(timeout=30_000)
                for name in ("Reset", "▶", "Step"):
                    assert page.get_by_role("button", name=name).count() == 1, f"no {name} button"
                for text in ("Scenario", "κ investors", "γ scaling", "Exclusive deals allowed"):
                    assert page.get_by_text(text).count() >= 1, f"no {text!r} control"
                imgs = page.locator("img.widget-image")
                imgs.first.wait_for(timeout=30_000)
                deadline = time.monotonic() + 20
                while imgs.count() < 5:  # four time series and the network
                    assert time.monotonic() < deadline, f"only {imgs.count()} plot images"
                    time.sleep(0.2)
                start = _step_counter(page)
                plot = imgs.first
                src_before = plot.get_attribute("src")
                shot_before = plot.screenshot()

                for k in range(3):
                    page.get_by_role("button", name="Step").click()
                    _wait_counter(page, start + k + 1)
                assert _step_counter(page) == start + 3

                deadline = time.monotonic() + 15
                while plot.get_attribute("src") == src_before or plot.screenshot() == shot_before:
                    assert time.monotonic() < deadline, "the concentration plot did not change after 3 steps"
                    time.sleep(0.2)
                assert not failed, "requests failed (a CDN file missing offline?): " + "; ".join(failed)
                page.screenshot(path=str(tmp_path / "dashboard.png"))
                assert (tmp_path / "dashboard.png").stat().st_size > 10_000

                if os.environ.get("UPDATE_SCREENSHOTS") == "1":
                    for k in range(start + 3, 24):
                        page.get_by_role("button", name="Step").click()
                        _wait_counter(page, k + 1)
                    time.sleep(2.0)  # let the last images arrive
                    out = ROOT / "docs" / "img" / "dashboard.png"
                    out.parent.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(out))
            finally:
                browser.close()
    finally:
        stop(proc)
    assert proc.returncode is not None
    log = (tmp_path / "server.log").read_text(errors="replace")
    assert "Could not load URL" not in log, "the server tried to fetch a front-end file from a CDN:\n" + log[-2000:]
    assert "Traceback" not in log, log[-3000:]
