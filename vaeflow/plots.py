"""Figures for the report. Matplotlib's Agg backend, written atomically through vaeflow.io."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from vaeflow.io import save_figure


def pyplot():  # also used by vaeflow.tuning.report
    """pyplot on the Agg backend, imported on first use: ~1 s that a process drawing nothing (a Ray trial,
    a stage reading this module's neighbours) should not pay."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _to_hwc(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img, dtype=np.float32)
    if img.ndim == 3:  # C,H,W
        img = img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0))
    return np.clip(img, 0, 1)


def latent_scatter(z2: np.ndarray, labels: np.ndarray, domains: np.ndarray, path: Path, title: str) -> None:
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.4))
    sc = a.scatter(z2[:, 0], z2[:, 1], c=labels, cmap="tab10", s=6, alpha=0.8)
    a.legend(*sc.legend_elements(), fontsize=6, title="class", loc="best", markerscale=0.7)
    a.set_title("coloured by class")
    for d, (name, col) in enumerate([("source", "tab:blue"), ("target", "tab:orange")]):
        m = domains == d
        b.scatter(z2[m, 0], z2[m, 1], c=col, s=6, alpha=0.6, label=name)
    b.legend(fontsize=8)
    b.set_title("coloured by domain")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)
    plt.close(fig)


def curves(series: dict[str, tuple[Sequence[float], Sequence[float]]], path: Path, xlabel: str, ylabel: str,
           title: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for name, (x, y) in series.items():
        ax.plot(x, y, label=name)
    ax.set_xlabel(xlabel), ax.set_ylabel(ylabel), ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)
    plt.close(fig)


def dots(values: dict[str, float], path: Path, xlabel: str, title: str, *, errors: dict | None = None,
         lower_is_better: bool = False, groups: dict[str, str] | None = None, ref: str | None = None,
         fmt: str = "{:.3f}", relative: str | None = None) -> None:
    """A Cleveland dot plot: one row per item, best at the top, a horizontal error bar where `errors` gives
    one (std over seeds, s.e., ...), and the value printed at the right margin.

    Why not bars: names sit on the y axis, so any number of long names stays readable; the x axis is fitted
    to the values and their error bars rather than starting at 0, so a 3-nat difference between two
    likelihoods near −65 is visible (a bar from 0 would hide it, and a bar cut short of 0 would lie about
    its length). `groups` colours rows by a category (e.g. which labels a variant used), with a legend; `ref`
    draws a dashed line at that item's value; `relative` adds each item's difference to the best ("+3.52")."""
    plt = pyplot()
    errors = {k: e for k, e in (errors or {}).items() if e is not None and np.isfinite(e)}
    names = sorted(values, key=lambda k: values[k], reverse=not lower_is_better)  # best first
    n, best = len(names), values[names[0]] if names else 0.0
    height = 0.42 * n + 1.4
    fig, ax = plt.subplots(figsize=(7.2, height))
    cats = list(dict.fromkeys((groups or {}).get(k, "") for k in names))
    colour = {c: plt.get_cmap("tab10")(i) for i, c in enumerate(cats)}
    ys = np.arange(n)[::-1]  # the first name on top
    for y, k in zip(ys, names):
        c = (groups or {}).get(k, "")
        ax.errorbar(values[k], y, xerr=errors.get(k), fmt="o", color=colour[c], ecolor=colour[c], capsize=3,
                    markersize=6, label=c or None)
    if ref in values:
        ax.axvline(values[ref], color="grey", linestyle="--", linewidth=1, zorder=0)
        ax.annotate(ref, (values[ref], 1.0), xycoords=("data", "axes fraction"), xytext=(2, -10),
                    textcoords="offset points", fontsize=7, color="grey")
    lo = min(values[k] - errors.get(k, 0.0) for k in names) if names else 0.0
    hi = max(values[k] + errors.get(k, 0.0) for k in names) if names else 1.0
    pad = 0.08 * (hi - lo) or 0.05 * max(abs(hi), 1e-9)
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_yticks(ys, names, fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_title(title, fontsize=10)

    def text(k: str) -> str:
        t = fmt.format(values[k]) + (f" ± {fmt.format(errors[k])}" if k in errors else "")
        if relative and k != names[0]:
            t += f"  ({values[k] - best:+.{_decimals(fmt)}f} {relative})".replace("-", "−")
        return t.replace("-", "−")

    right = ax.twinx()  # the values as right-hand tick labels: they never collide with points or each other
    right.set_ylim(ax.get_ylim())
    right.set_yticks(ys, [text(k) for k in names], fontsize=8)
    right.tick_params(length=0)
    if len(cats) > 1:
        handles, labels = ax.get_legend_handles_labels()
        uniq = dict(zip(labels, handles))
        # below the x label: ~0.6 inch under the axes, whatever the figure's height
        ax.legend(uniq.values(), uniq.keys(), fontsize=7, loc="upper center", frameon=False,
                  bbox_to_anchor=(0.5, -0.6 / (0.8 * height)), ncol=min(len(uniq), 5))
    save_figure(fig, path)
    plt.close(fig)


def _decimals(fmt: str) -> int:
    """The number of decimals a format like '{:.3f}' prints (0 when it names none)."""
    import re

    hit = re.search(r"\.(\d+)f", fmt)
    return int(hit.group(1)) if hit else 0


def image_rows(rows: Sequence[tuple[str, np.ndarray]], path: Path, title: str = "", ncol: int = 16,
               scale: float = 0.45) -> None:
    """One labelled row of images per entry (N×C×H×W in [0,1]), as ONE image on one Axes: tiles are pasted
    into an array with a 1-pixel grey gap. Matplotlib spends ~20-50 ms per Axes, so a grid of 16 Axes a row
    took 0.3-0.7 s a figure (prepare, gmm and pretrain each draw one or two, on the flow's critical path);
    this takes one imshow."""
    first = np.asarray(rows[0][1])
    c, h, w = first.shape[1:]
    grid = np.full((len(rows) * (h + 1) - 1, ncol * (w + 1) - 1, 3), 0.5, dtype=np.float32)
    for r, (_, imgs) in enumerate(rows):
        for j, img in enumerate(np.asarray(imgs)[:ncol]):
            tile = _to_hwc(img)
            grid[r * (h + 1):r * (h + 1) + h, j * (w + 1):j * (w + 1) + w] = tile[..., None] if tile.ndim == 2 else tile
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(ncol * scale + 1.2, len(rows) * scale * h / w + 0.6))
    ax.imshow(grid, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([r * (h + 1) + h / 2 for r in range(len(rows))], [label for label, _ in rows], fontsize=7)
    ax.tick_params(length=0)
    if title:
        ax.set_title(title, fontsize=9)
    save_figure(fig, path)
    plt.close(fig)
