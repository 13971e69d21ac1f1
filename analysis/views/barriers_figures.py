"""``abm barriers``'s figures, from the study's results (:class:`analysis.experiments.barriers.Results`):

- ``survival_map.png`` and ``reach_map.png``: per scenario, the share of seeds in which a probe entrant
  survived (caught up) by seed capital and starting efficiency, with the 50% contour;
- ``barrier_trajectory.png``: ``entry_barrier_usd`` over months, mean and 95% CI band per scenario;
- ``barrier_parts.png``: the barrier's parts (compute, runway, terms and risk), mean over seeds, per scenario;
- ``price_gap.png``: small and frontier labs' reserved prices, 12-month means of the ensemble means;
- ``strategy.png``: survival and gap to the frontier against a fixed R&D share, one line per gamma;
- ``comparison.png``: the scenarios side by side: seed capital for a 50% chance, the barrier, the price
  ratio, and the chance to catch up with $1B.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from ..experiments import barriers as B
from ..experiments.ensemble import summary_stats


def _figure(w: float, h: float, nrows: int = 1, ncols: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _save(fig, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    return path


def _usd_tick(v: float, _pos=None) -> str:
    if v >= 1e9:
        return f"${v / 1e9:.3g}B"
    if v >= 1e6:
        return f"${v / 1e6:.3g}M"
    return f"${v:.3g}"


def _map(folder: Path, r: B.Results, which: str) -> Path:
    data = r.alive if which == "survival" else r.reach
    e0 = r.plan.entry_months[0]
    names = [s.name for s in r.plan.scenarios]
    fig, axes = _figure(3.2 * len(names), 3.3, 1, len(names))
    x = np.array(B.EFFICIENCY_GRID)
    y = np.log10(B.SEED_GRID)
    im = None
    for ax, name in zip(axes[0], names, strict=True):
        p = data[name, e0].mean(axis=0)
        im = ax.pcolormesh(np.arange(x.size + 1) - 0.5, np.arange(y.size + 1) - 0.5, p, vmin=0, vmax=1,
                           cmap="viridis", shading="flat")
        if 0 < p.min() < 0.5 <= p.max() or p.min() < 0.5 < p.max():
            ax.contour(np.arange(x.size), np.arange(y.size), p, levels=[0.5], colors="white", linewidths=2)
        ax.set_xticks(range(x.size), [f"{v:g}" for v in x])
        ax.set_yticks(range(y.size), [_usd_tick(10 ** v) for v in y])
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("starting efficiency / frontier")
    axes[0][0].set_ylabel("seed capital")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.9,
                 label="share alive after 36 months" if which == "survival" else "share caught up")
    fig.suptitle(("Probe entrants alive " if which == "survival" else "Probe entrants within the viable gap ")
                 + f"{r.plan.follow} months after entry (white: 50%)", fontsize=11)
    return _save(fig, folder / f"{'survival' if which == 'survival' else 'reach'}_map.png")


def _months_axis(ax, labels: list[str]) -> None:
    ticks = [k for k, m in enumerate(labels) if m.endswith("-01")][::2]
    ax.set_xticks(ticks, [labels[k][:4] for k in ticks])


def _trajectory(folder: Path, r: B.Results) -> Path:
    fig, axes = _figure(7.5, 4.2)
    ax = axes[0][0]
    for k, (name, data) in enumerate(r.ensembles.items()):
        j = data.columns.index("entry_barrier_usd")
        s = summary_stats(data.values[:, :, j])
        t = np.arange(len(data.months))
        ax.plot(t, s["mean"], color=f"C{k}", label=name)
        ax.fill_between(t, np.maximum(s["ci_lo"], 1.0), s["ci_hi"], color=f"C{k}", alpha=0.2, lw=0)
        labels = data.months
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(_usd_tick)
    ax.yaxis.set_minor_formatter(_usd_tick)
    _months_axis(ax, labels)
    ax.set_title("Entry barrier: capital to reach a viable capability (mean, 95% CI)", fontsize=11)
    ax.legend(fontsize=8)
    return _save(fig, folder / "barrier_trajectory.png")


def _parts(folder: Path, r: B.Results) -> Path:
    names = list(r.ensembles)
    fig, axes = _figure(3.2 * len(names), 3.4, 1, len(names))
    for ax, name in zip(axes[0], names, strict=True):
        data = r.ensembles[name]
        means = [np.nanmean(data.values[:, :, data.columns.index(c)], axis=0) for c in B.PARTS]
        t = np.arange(len(data.months))
        pos = [np.maximum(m, 0) for m in means]
        ax.stackplot(t, *pos, labels=["compute (final run)", "runway", "terms and risk"],
                     colors=["C0", "C1", "C3"], alpha=0.8)
        ax.yaxis.set_major_formatter(_usd_tick)
        _months_axis(ax, data.months)
        ax.set_title(name, fontsize=10)
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.suptitle("Parts of the entry barrier (mean over seeds)", fontsize=11)
    return _save(fig, folder / "barrier_parts.png")


def _rolling(y: np.ndarray, w: int = 12) -> np.ndarray:
    out = np.full(y.shape, np.nan)
    for k in range(y.size):
        seg = y[max(0, k - w + 1): k + 1]
        if np.isfinite(seg).any():
            out[k] = np.nanmean(seg)
    return out


def _price_gap(folder: Path, r: B.Results) -> Path:
    names = list(r.ensembles)
    fig, axes = _figure(3.2 * len(names), 3.4, 1, len(names))
    for ax, name in zip(axes[0], names, strict=True):
        data = r.ensembles[name]
        t = np.arange(len(data.months))
        for c, label, color in zip(B.PRICES, ("small labs", "3 largest labs"), ("C3", "C0"), strict=True):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                y = np.nanmean(data.values[:, :, data.columns.index(c)], axis=0)
            ax.plot(t, _rolling(y), color=color, label=label)
        _months_axis(ax, data.months)
        ax.set_title(name, fontsize=10)
        ax.set_ylim(bottom=0)
    axes[0][0].set_ylabel("$ per H100e-hour (12-month mean)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Reserved contract prices signed by small and by frontier labs", fontsize=11)
    return _save(fig, folder / "price_gap.png")


def _strategy(folder: Path, r: B.Results) -> Path:
    fig, axes = _figure(9, 3.6, 1, 2)
    rows = B.strategy_rows(r)
    for k, f in enumerate(B.GAMMA_FACTORS):
        sub = [x for x in rows if x[0] == f]
        x = [s[2] for s in sub]
        label = f"gamma {sub[0][1]:.3g} (x{f:g})"
        axes[0][0].errorbar(x, [s[4] for s in sub], yerr=[[s[4] - s[5] for s in sub], [s[6] - s[4] for s in sub]],
                            color=f"C{k}", marker="o", capsize=3, label=label)
        axes[0][1].errorbar(x, [s[7] for s in sub], yerr=[[s[7] - s[8] for s in sub], [s[9] - s[7] for s in sub]],
                            color=f"C{k}", marker="o", capsize=3, label=label)
    axes[0][0].set_title("Alive after 36 months", fontsize=10)
    axes[0][0].set_ylim(-0.05, 1.05)
    axes[0][1].set_title("Capability gap to the frontier (smaller is better)", fontsize=10)
    axes[0][1].axhline(r.plan.gap, color="grey", ls=":", lw=1)
    for ax in axes[0]:
        ax.set_xlabel("R&D share (fixed)")
    axes[0][1].legend(fontsize=8)
    fig.suptitle(f"Efficiency or compute? Entrants with {_usd_tick(B.STRATEGY_SEED_USD)} and "
                 f"{B.HEADLINE_EFFICIENCY:g} of the frontier's efficiency", fontsize=11)
    return _save(fig, folder / "strategy.png")


def _comparison(folder: Path, r: B.Results) -> Path:
    names = [s.name for s in r.plan.scenarios]
    e0 = r.plan.entry_months[0]
    fig, axes = _figure(10, 7, 2, 2)
    xs = np.arange(len(names))
    trows = B.threshold_rows(r)
    ax = axes[0][0]
    for k, outcome in enumerate(("survive", "reach")):
        est, lo, hi = [], [], []
        for n in names:
            row = next(x for x in trows if x[0] == n and x[1] == e0 and x[2] == B.HEADLINE_EFFICIENCY
                       and x[3] == outcome)
            clip = [min(max(v, B.SEED_GRID[0] / 2), B.SEED_GRID[-1] * 2) for v in row[4:]]
            est.append(clip[0])
            lo.append(clip[0] - clip[1])
            hi.append(clip[2] - clip[0])
        ax.errorbar(xs + (k - 0.5) * 0.2, est, yerr=[lo, hi], fmt="o", capsize=3, color=f"C{k}",
                    label={"survive": "survive 36 months", "reach": "catch up"}[outcome])
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(_usd_tick)
    ax.axhspan(B.SEED_GRID[0] / 2.5, B.SEED_GRID[0], color="grey", alpha=0.15)
    ax.axhspan(B.SEED_GRID[-1], B.SEED_GRID[-1] * 2.5, color="grey", alpha=0.15)
    ax.set_title("Seed capital for a 50% chance (95% CI; grey: off the grid)", fontsize=10)
    ax.legend(fontsize=8)
    ax = axes[0][1]
    for k, h in enumerate((60, r.plan.months)):
        vals = []
        for n in names:
            data = r.ensembles[n]
            v = data.values[:, min(h, len(data.months)) - 1, data.columns.index("entry_barrier_usd")]
            vals.append(B.mean_ci(v))
        ax.errorbar(xs + (k - 0.5) * 0.2, [v[0] for v in vals], yerr=[[v[0] - v[1] for v in vals],
                                                                       [v[2] - v[0] for v in vals]],
                    fmt="o", capsize=3, color=f"C{k}", label=f"month {h}")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(_usd_tick)
    ax.yaxis.set_minor_formatter(_usd_tick)
    ax.set_title("Entry barrier (mean, 95% CI)", fontsize=10)
    ax.legend(fontsize=8)
    ax = axes[1][0]
    ratios = []
    for n in names:
        data = r.ensembles[n]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ps = np.nanmean(data.values[:, :, data.columns.index(B.PRICES[0])], axis=1)
            pf = np.nanmean(data.values[:, :, data.columns.index(B.PRICES[1])], axis=1)
        ok = np.isfinite(ps) & np.isfinite(pf) & (pf > 0)
        ratios.append(B.mean_ci(ps[ok] / pf[ok]) if ok.sum() >= 2 else (math.nan,) * 4)
    ax.errorbar(xs, [v[0] for v in ratios], yerr=[[v[0] - v[1] for v in ratios], [v[2] - v[0] for v in ratios]],
                fmt="o", capsize=3, color="C3")
    ax.axhline(1.0, color="grey", ls=":", lw=1)
    ax.set_title("Small / frontier labs' reserved price, whole run (mean, 95% CI)", fontsize=10)
    ax = axes[1][1]
    i = int(np.argmin(np.abs(np.array(B.SEED_GRID) - B.STRATEGY_SEED_USD)))
    j = B.EFFICIENCY_GRID.index(B.HEADLINE_EFFICIENCY)
    for k, (what, d) in enumerate((("survive", r.alive), ("catch up", r.reach))):
        vals = [B.mean_ci(d[n, e0][:, i, j].astype(float)) for n in names]
        ax.errorbar(xs + (k - 0.5) * 0.2, [v[0] for v in vals], yerr=[[v[0] - v[1] for v in vals],
                                                                       [v[2] - v[0] for v in vals]],
                    fmt="o", capsize=3, color=f"C{k}", label=what)
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(f"Chance with {_usd_tick(B.SEED_GRID[i])} seed, efficiency {B.HEADLINE_EFFICIENCY:g}", fontsize=10)
    ax.legend(fontsize=8)
    for row in axes:
        for ax in row:
            ax.set_xticks(xs, names, rotation=20, fontsize=8)
    fig.suptitle("Barriers for small labs across scenarios", fontsize=12)
    return _save(fig, folder / "comparison.png")


def draw_figures(folder: Path, r: B.Results) -> list[Path]:
    """Write every figure of the study into ``folder``; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    return [_map(folder, r, "survival"), _map(folder, r, "reach"), _trajectory(folder, r), _parts(folder, r),
            _price_gap(folder, r), _strategy(folder, r), _comparison(folder, r)]
