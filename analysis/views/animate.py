"""``abm animate DIR``: a run month by month, as an animated GIF (and an MP4 when ffmpeg is installed).

Each frame shows, side by side, the contract network in force that month (the layout of
:func:`analysis.views.network.stable_layout`, so every agent keeps its place) and the labs' shares of
compute up to that month (stacked areas, the same labs and colours as in ``abm report``). Frames are every
``every`` months (the last month is always included), played at ``fps`` frames per second.

Files are written to a temporary name in DIR and renamed into place when complete, so an interrupted or
failed call leaves no partial ``animation.gif`` or ``animation.mp4``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from matplotlib.animation import FFMpegWriter, FuncAnimation, PillowWriter
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..tables import has_table, table_format
from . import network as nw
from .common import ReportError, fmt_metric, num, year_axis
from .run_data import REST_COLOR, lab_colors, lab_compute_shares, load_run, top_labs

GIF_NAME = "animation.gif"
MP4_NAME = "animation.mp4"
DPI = 70


def frame_steps(n: int, every: int) -> list[int]:
    """Row indices of the frames: 0, every, 2*every, ... and always the last month."""
    if n <= 0:
        return []
    out = list(range(0, n, max(int(every), 1)))
    if out[-1] != n - 1:
        out.append(n - 1)
    return out


def _replace_atomic(write, final: Path, suffix: str) -> None:
    tmp = final.with_name(f".{final.stem}.tmp-{os.getpid()}{suffix}")
    try:
        write(tmp)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def build_animation(d: Path, every: int = 2):
    """(figure, FuncAnimation, number of frames) for run folder ``d``; nothing is written."""
    r = load_run(d)
    suffix = ".parquet" if table_format(d) == "parquet" else ".csv"
    missing = [f"{f}{suffix}" for f, df in (("agents", r.agents), ("contracts", r.contracts)) if df is None]
    if missing:
        raise ReportError(f"{d}: no {' or '.join(missing)}; give a folder written by 'abm run'")
    n = r.n
    idx = frame_steps(n, every)
    steps = [int(s) for s in r.ts["step"].to_numpy()]
    graphs = [nw.contract_graph(r.contracts, r.agents, steps[i]) for i in idx]
    pos = nw.stable_layout(graphs)
    scale = nw.size_scale(graphs)
    vmax = nw.max_edge_value(graphs)

    shares = lab_compute_shares(r.agents, n)
    top = top_labs(shares)
    colors = lab_colors(top)
    ys = [100 * shares[c].to_numpy() for c in top]
    cs = [colors[c] for c in top]
    labels = list(top)
    if len(shares.columns) > len(top):
        ys.append(100 * shares.drop(columns=top).sum(axis=1).to_numpy())
        cs.append(REST_COLOR)
        labels.append(f"rest ({len(shares.columns) - len(top)} labs)")
    ys = np.array(ys) if ys else np.zeros((0, n))
    x = np.arange(n)
    hhi = num(r.ts, "lab_hhi_compute")
    active = num(r.ts, "labs_active")
    spot = num(r.ts, "spot_price_usd_per_h100e_hour")
    name = r.info.get("scenario") or d.resolve().name
    seed = r.info.get("seed")
    head = f"Scenario '{name}'" + (f", seed {seed}" if seed is not None else "")

    fig = Figure(figsize=(12.5, 6.2), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax_net, ax_sh = fig.subplots(1, 2, width_ratios=[1.15, 1])
    fig.legend(handles=nw.legend_handles(), loc="outside lower left", ncol=5, fontsize=8, frameon=False)

    def draw(k: int):
        i = idx[k]
        g = graphs[k]
        ax_net.clear()
        n_c = sum(dd["n_contracts"] for *_, dd in g.edges(data=True))
        nw.draw_network(ax_net, g, pos, scale, vmax, title=f"Contracts in force: {n_c:,} between "
                                                             f"{g.number_of_nodes()} agents", fontsize=7)
        ax_sh.clear()
        if len(ys):
            ax_sh.stackplot(x[: i + 1], ys[:, : i + 1], colors=cs, labels=labels, lw=0)
        ax_sh.set_ylim(0, 100)
        year_axis(ax_sh, r.months)
        ax_sh.set_ylabel("% of all lab compute (H100e)", fontsize=9)
        ax_sh.set_title(f"Labs' shares of compute: HHI {fmt_metric('lab_hhi_compute', hhi[i])}, "
                        f"{fmt_metric('labs_active', active[i])} labs active", fontsize=10)
        ax_sh.tick_params(labelsize=8)
        ax_sh.grid(True, alpha=0.25, lw=0.5)
        if labels:
            ax_sh.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False,
                         reverse=True, borderaxespad=0.3)
        fig.suptitle(f"{head}: {r.months[i]} (month {i + 1} of {n}); spot price "
                     f"${spot[i]:.2f} per H100e-hour", fontsize=12)
        return []

    # Lay the figure out once (on the last frame, the fullest), then keep that layout: constrained layout on
    # every frame would triple the time to write the animation.
    draw(len(idx) - 1)
    fig.canvas.draw()
    fig.set_layout_engine("none")
    anim = FuncAnimation(fig, draw, frames=len(idx), init_func=lambda: [], blit=False, repeat=False,
                         cache_frame_data=False)
    return fig, anim, len(idx)


def write_animation(d: str | Path, every: int = 2, fps: float = 6.0, mp4: bool | None = None) -> list[Path]:
    """Write ``d/animation.gif`` (and ``d/animation.mp4`` if ffmpeg is found, or ``mp4`` is True).

    Returns the paths written. Raises ReportError for a folder that is not a complete run folder. If
    ffmpeg fails, the MP4 is skipped with a warning on stderr and the GIF is kept.
    """
    d = Path(d)
    if not d.exists():
        raise ReportError(f"{d}: folder not found")
    if not d.is_dir():
        raise ReportError(f"{d}: not a directory")
    if not has_table(d, "timeseries"):
        raise ReportError(f"{d}: no timeseries.csv or timeseries.parquet; give a folder written by 'abm run'")
    if every < 1:
        raise ReportError(f"--every {every}: expected a whole number >= 1")
    if not fps > 0:
        raise ReportError(f"--fps {fps}: expected a number > 0")
    fig, anim, _ = build_animation(d, every)
    out = []
    gif = d / GIF_NAME
    _replace_atomic(lambda p: anim.save(p, writer=PillowWriter(fps=fps), dpi=DPI), gif, ".gif")
    out.append(gif)
    if mp4 is None:
        mp4 = shutil.which("ffmpeg") is not None
    if mp4:
        path = d / MP4_NAME
        writer = FFMpegWriter(fps=fps, codec="h264", extra_args=["-pix_fmt", "yuv420p"])
        try:
            _replace_atomic(lambda p: anim.save(p, writer=writer, dpi=DPI), path, ".mp4")
        except (OSError, subprocess.SubprocessError, RuntimeError) as exc:  # ffmpeg broken: keep the GIF
            msg = " ".join(str(exc).split())[:300] or type(exc).__name__
            print(f"abm: warning: {path} not written, ffmpeg failed: {msg}", file=sys.stderr)
        else:
            out.append(path)
    return out
