"""The interactive dashboard (analysis/views/dashboard.py): its model wrapper, parameters, month axes, the
session's step queue and drawing, and, in a real browser, the served page (Debian's /usr/bin/chromium driven
by playwright, offline): its name, month-dated axes and status, slider values, N fast clicks on Step giving
N months, the run's report and its link.

The browser test never skips: without chromium it fails and says how to install it. Set
UPDATE_SCREENSHOTS=1 to also write docs/img/dashboard.png (after 24 months, for the README).
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import threading
import time
from pathlib import Path
from urllib.parse import urljoin

import pytest

from abm.scenario import available_scenarios, load_scenario
from abm.timeline import month_label

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ROOT = Path(__file__).resolve().parent.parent
MONTH_RE = re.compile(r"Month: (\d{4}-\d{2}|—) \(step (\d+) of (\d+)")
LABEL_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
N_CLICKS = 12


@pytest.fixture(scope="module")
def dash():
    from analysis.views import dashboard

    return dashboard


def test_defaults_are_the_baseline_values_and_add_no_overrides(dash):
    m = dash.DashboardMarket()
    assert m.dashboard_overrides == {}
    assert dash.DashboardMarket(**dash.DEFAULTS).dashboard_overrides == {}  # what the page starts with
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




def test_a_scenarios_own_values_are_what_the_sliders_show_and_override_nothing(dash):
    """Choosing a scenario sets the sliders to its values (not the baseline's), which add no override."""
    hist = load_scenario("historical_2023")
    shown = dash.scenario_values("historical_2023")
    assert shown["inflow_busd_month"] == pytest.approx(hist.capital.inflow_usd_month / 1e9)
    assert shown["seed_capital_musd"] == pytest.approx(hist.entry.seed_capital_median_usd / 1e6)
    assert shown["inflow_busd_month"] != dash.DEFAULTS["inflow_busd_month"]  # else this test shows nothing
    assert shown["seed"] == hist.run.seed
    m = dash.DashboardMarket(scenario_name="historical_2023", **shown)
    assert m.dashboard_overrides == {}
    assert m.cfg.capital.inflow_usd_month == hist.capital.inflow_usd_month
    moved = dash.DashboardMarket(scenario_name="historical_2023", **{**shown, "inflow_busd_month": 2.0})
    assert moved.dashboard_overrides == {"capital.inflow_usd_month": 2e9}
    for name, spec in dash.MODEL_PARAMS.items():  # every scenario's values fit its sliders
        if spec["type"].startswith("Slider"):
            for scn in available_scenarios():
                assert spec["min"] <= dash.scenario_values(scn)[name] <= spec["max"], (scn, name)


def test_every_slider_caption_shows_its_value_and_unit(dash):
    sliders = {n: s for n, s in dash.MODEL_PARAMS.items() if s["type"].startswith("Slider")}
    sliders["play_interval"] = dash.PLAY_SLIDER
    assert len(sliders) == 7
    for name, spec in sliders.items():
        assert spec.get("unit"), f"slider {name} has no unit"
        text = dash.slider_text(spec, spec["value"])
        assert text.startswith(spec["label"] + ": ") and text.endswith(spec["unit"]), text
    assert dash.slider_text(dash.MODEL_PARAMS["inflow_busd_month"], 5.0) == "Inflow: 5.00 $B/month"
    assert dash.slider_text(dash.MODEL_PARAMS["gamma"], 0.178) == "γ scaling: 0.178 (compute exponent)"
    assert dash.slider_text(dash.MODEL_PARAMS["seed_capital_musd"], 1000.0) == "Entrant seed: 1000 $M (at 2024 inflow)"
    assert dash.slider_text(dash.MODEL_PARAMS["seed"], 7) == "Seed: 7 (random stream)"
    assert dash.slider_text(dash.PLAY_SLIDER, 150) == "Play interval: 150 ms between months"


def test_time_axes_and_status_are_in_the_models_months(dash):
    m = dash.DashboardMarket()
    start = m.cfg.run.start
    assert dash.month_status(m) == f"Month: — (step 0 of {m.cfg.run.months}; the run starts in {start})"
    for _ in range(N_CLICKS):
        m.step()
    last = month_label(start, N_CLICKS - 1)
    assert dash.month_status(m) == f"Month: {last} (step {N_CLICKS} of {m.cfg.run.months})"
    for series in dash.SERIES:
        fig = dash.draw_series(m.rows, start, series)
        ax = fig.axes[0]
        labels = [t.get_text() for t in ax.get_xticklabels()]
        ticks = [round(x) for x in ax.get_xticks()]
        assert labels == [month_label(start, k) for k in ticks] and len(labels) >= 2, labels
        assert ax.get_xlabel() == "month"
        lo, hi = ax.get_xlim()
        assert lo < 0 < N_CLICKS - 1 < hi < N_CLICKS  # the months run, and only those
        caption = dash.series_caption(fig, m.rows, start, series)
        assert f"{start} to {last}" in caption and ", ".join(labels) in caption
    assert "Contract network, " + last in dash.draw_network(m).axes[0].get_title()
    # ticks on calendar boundaries, at most five, for short and long runs and another start
    for begin, n, expected in (("2024-01", 1, ["2024-01"]), ("2024-01", 3, ["2024-01", "2024-02", "2024-03"]),
                               ("2024-01", 12, ["2024-01", "2024-04", "2024-07", "2024-10"]),
                               ("2023-01", 48, ["2023-01", "2024-01", "2025-01", "2026-01"]),
                               ("2024-01", 120, ["2024-01", "2026-01", "2028-01", "2030-01", "2032-01"])):
        assert [month_label(begin, k) for k in dash.month_ticks(begin, n)] == expected


def test_step_clicks_are_queued_counted_and_drawn_together(dash):
    """Clicks that arrive while the page is being redrawn all count; a burst is drawn in few redraws."""
    runner = dash.Runner()
    redraws: list[int] = []

    def slow_redraw(version):
        redraws.append(runner.model.t)
        time.sleep(0.3)  # the page's redraw of five figures ...
        runner.drawn(version)  # ... after which the main view's effect tells the worker

    worker = threading.Thread(target=runner.work, args=(slow_redraw,), daemon=True)
    worker.start()
    try:
        for _ in range(N_CLICKS):
            runner.request_step()
            time.sleep(0.02)
        deadline = time.monotonic() + 30
        while not (runner.idle() and runner.model.t == N_CLICKS and len(redraws) and redraws[-1] == N_CLICKS):
            assert time.monotonic() < deadline, f"{runner.model.t} months run, {runner.pending} queued"
            time.sleep(0.05)
        time.sleep(0.4)
        assert runner.model.t == N_CLICKS  # every click is one month, none lost, none doubled
        assert len(redraws) < N_CLICKS / 2, redraws  # months clicked during a redraw are drawn together
        assert runner.step_seconds > 0
        runner.set_playing(True)  # play runs months on its own ...
        deadline = time.monotonic() + 30
        while runner.model.t < N_CLICKS + 3:
            assert time.monotonic() < deadline, "play did not run"
            time.sleep(0.05)
        runner.reset(dict(dash.DEFAULTS))  # ... until Reset, which empties the queue and stops play
        time.sleep(0.5)
        assert runner.model.t == 0 and runner.idle() and not runner.playing
    finally:
        runner.stop()
        worker.join(timeout=10)
    assert not worker.is_alive()


def _month_status(page) -> tuple[str, int]:
    m = MONTH_RE.search(page.locator(".abm-month").first.inner_text())
    assert m, "no 'Month: YYYY-MM (step N of M)' line on the page"
    return m.group(1), int(m.group(2))


def _wait_steps(page, value: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while _month_status(page)[1] != value:
        assert time.monotonic() < deadline, f"step counter at {_month_status(page)[1]}, expected {value}"
        time.sleep(0.1)


def _click_fast(page, name: str, n: int) -> None:
    """``n`` clicks on a button as fast as a mouse can, without waiting for the page in between."""
    box = page.get_by_role("button", name=name).bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    for _ in range(n):
        page.mouse.click(x, y)


def _check_axes(page, start: str, months: int) -> None:
    """Every plot's tooltip (read back from its axes) says it covers the months run, with month ticks."""
    last = month_label(start, months - 1)
    plots = page.locator(".abm-series")
    assert plots.count() == 4
    for i in range(4):
        title = plots.nth(i).get_attribute("title")
        m = re.search(r": (\S+) to (\S+); x axis: month \(ticks ([^)]*)\)", title or "")
        assert m and (m.group(1), m.group(2)) == (start, last), title
        ticks = m.group(3).split(", ")
        assert len(ticks) >= 2 and all(LABEL_RE.match(t) and start <= t <= last for t in ticks), title
    assert f"Contract network, {last}:" in page.locator(".abm-network").get_attribute("title")


@pytest.mark.slow
def test_dashboard_in_a_real_browser(tmp_path):
    chromium = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if not chromium:
        pytest.fail("chromium not installed: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    from analysis.views import dashboard as dash
    from analysis.views.dashboard_server import free_port, serve, stop

    start = load_scenario("baseline").run.start
    runs = tmp_path / "runs"
    t0 = time.monotonic()
    proc = serve(port=free_port(), log=tmp_path / "server.log", runs_dir=runs)
    ready_s = time.monotonic() - t0
    try:
        assert ready_s < 30, f"server took {ready_s:.1f} s to answer"
        assert proc.runs_dir == runs
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                failed: list[str] = []  # offline: every front-end file must come from the server itself
                page.on("requestfailed", lambda r: failed.append(f"{r.url} ({r.failure})"))
                page.on("response", lambda r: r.status >= 400 and failed.append(f"{r.url} ({r.status})"))
                page.goto(proc.url)
                page.locator(".abm-month").first.wait_for(timeout=30_000)

                # a named page: the browser tab and the heading, no "Page 0" tab
                assert page.title() == "AI compute market"
                assert page.locator(".v-toolbar__title", has_text="AI compute market").count() == 1
                assert page.get_by_text(re.compile("page 0", re.I)).count() == 0
                for name in ("Reset", "▶", "Step", "Write run and report"):
                    assert page.get_by_role("button", name=name).count() == 1, f"no {name} button"
                for text in ("Scenario", "Exclusive deals allowed", "Equity-for-compute allowed"):
                    assert page.get_by_text(text).count() >= 1, f"no {text!r} control"

                # every slider shows its value and unit
                captions = page.locator(".abm-slider-value")
                sliders = {n: s for n, s in dash.MODEL_PARAMS.items() if s["type"].startswith("Slider")}
                expected = [dash.slider_text(dash.PLAY_SLIDER, dash.PLAY_INTERVAL_MS)]
                expected += [dash.slider_text(spec, dash.DEFAULTS[n]) for n, spec in sliders.items()]
                assert [captions.nth(i).inner_text() for i in range(captions.count())] == expected
                assert page.locator(".v-slider").count() == len(expected)  # no slider without a caption

                imgs = page.locator("img.widget-image")
                imgs.first.wait_for(timeout=30_000)
                deadline = time.monotonic() + 20
                while imgs.count() < 5:  # four time series and the network
                    assert time.monotonic() < deadline, f"only {imgs.count()} plot images"
                    time.sleep(0.2)
                assert _month_status(page) == ("—", 0)
                plot = imgs.first
                src_before = plot.get_attribute("src")
                shot_before = plot.screenshot()

                # N fast clicks (no wait between them, many land while the page redraws) give N months
                _click_fast(page, "Step", N_CLICKS)
                _wait_steps(page, N_CLICKS)
                time.sleep(1.5)  # nothing more arrives: no click was counted twice
                assert _month_status(page) == (month_label(start, N_CLICKS - 1), N_CLICKS)
                assert page.locator(".abm-queued").count() == 0
                status = page.locator(".abm-status").inner_text()
                assert f"Month: {month_label(start, N_CLICKS - 1)} (step {N_CLICKS} of 120)" in status
                deadline = time.monotonic() + 15
                while plot.get_attribute("src") == src_before or plot.screenshot() == shot_before:
                    assert time.monotonic() < deadline, "the concentration plot did not change"
                    time.sleep(0.2)
                _check_axes(page, start, N_CLICKS)
                assert not failed, "requests failed (a CDN file missing offline?): " + "; ".join(failed)
                page.screenshot(path=str(tmp_path / "dashboard.png"))
                assert (tmp_path / "dashboard.png").stat().st_size > 10_000

                months = N_CLICKS
                if os.environ.get("UPDATE_SCREENSHOTS") == "1":
                    months = 24
                    _click_fast(page, "Step", months - N_CLICKS)
                    _wait_steps(page, months)
                    time.sleep(3.0)  # let the last images arrive
                    _check_axes(page, start, months)
                    out = ROOT / "docs" / "img" / "dashboard.png"
                    out.parent.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(out))

                # the run's folder and report, and a link that opens the report
                page.get_by_role("button", name="Write run and report").click()
                link = page.locator("a.abm-report-link")
                link.wait_for(timeout=180_000)
                last = month_label(start, months - 1)
                folder = runs / f"baseline-seed1-{last}"
                assert link.get_attribute("href") == f"/runs/{folder.name}/report.html"
                assert last in link.inner_text()
                info = json.loads((folder / "run_info.json").read_text())
                assert (info["months"], info["start"], info["scenario"]) == (months, start, "baseline")
                assert len((folder / "timeseries.csv").read_text().splitlines()) == months + 1
                assert (folder / "report.html").stat().st_size > 10_000
                resp = page.request.get(urljoin(proc.url, link.get_attribute("href")))
                assert resp.status == 200 and resp.headers["content-type"].startswith("text/html")
                assert resp.body() == (folder / "report.html").read_bytes()
                with page.context.expect_page() as opened:
                    link.click()
                report_page = opened.value
                report_page.wait_for_load_state()
                assert report_page.title().startswith("Run report: scenario 'baseline'")
                report_page.close()

                # a moved slider shows its new value, and Reset puts it into effect
                inflow = page.locator(".abm-slider-value", has_text="Inflow:")
                thumb = inflow.locator("xpath=following-sibling::*[1]").locator("[role=slider]")
                thumb.focus()
                page.keyboard.press("ArrowRight")
                deadline = time.monotonic() + 10
                while inflow.inner_text() != "Inflow: 2.75 $B/month":
                    assert time.monotonic() < deadline, inflow.inner_text()
                    time.sleep(0.1)
                assert "inflow $2.5B/month" in page.locator(".abm-status").inner_text()  # not before Reset
                page.get_by_role("button", name="Reset").click()
                _wait_steps(page, 0)
                deadline = time.monotonic() + 10
                while "inflow $2.75B/month" not in page.locator(".abm-status").inner_text():
                    assert time.monotonic() < deadline, page.locator(".abm-status").inner_text()
                    time.sleep(0.1)
                assert "capital.inflow_usd_month=2.75e+09" in page.locator(".abm-status").inner_text()

                # ▶ plays month after month until ❚❚
                page.get_by_role("button", name="▶").click()
                deadline = time.monotonic() + 60
                while _month_status(page)[1] < 3:
                    assert time.monotonic() < deadline, "▶ did not play"
                    time.sleep(0.2)
                page.get_by_role("button", name="❚❚").click()
                page.get_by_role("button", name="▶").wait_for(timeout=20_000)
                time.sleep(1.0)
                paused = _month_status(page)[1]
                time.sleep(1.5)
                assert _month_status(page)[1] == paused, "❚❚ did not pause"
                assert "Traceback" not in page.locator("body").inner_text()
                assert not failed, "requests failed: " + "; ".join(failed)
            finally:
                browser.close()
    finally:
        stop(proc)
    assert proc.returncode is not None
    log = (tmp_path / "server.log").read_text(errors="replace")
    assert "Could not load URL" not in log, "the server tried to fetch a front-end file from a CDN:\n" + log[-2000:]
    assert "Traceback" not in log, log[-3000:]
