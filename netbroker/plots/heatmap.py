"""A readable heatmap of a network matrix: site names, clouds grouped, a colour bar with units."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["plot_matrix"]


def plot_matrix(matrix: pd.DataFrame, clouds: Mapping[str, str], unit: str, title: str,
                path: str | Path) -> Path:
    """Draw ``matrix`` (rows src, columns dst) to a PNG at ``path``.

    Rows and columns keep the matrix's order (by cloud, then name); lines
    separate clouds and each block is labelled with its cloud. Unknown links
    are drawn grey, not as zero.
    """
    n = max(len(matrix.index), len(matrix.columns), 1)
    size = min(4 + n * 0.12, 40)
    # A bare Figure (no pyplot): no global state, safe in a server thread, no display needed.
    fig = Figure(figsize=(size + 2, size))
    ax = fig.subplots()
    data = np.ma.masked_invalid(matrix.to_numpy(dtype=float))
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#d9d9d9")
    image = ax.imshow(data, cmap=cmap, aspect="auto", interpolation="nearest")
    fontsize = max(3, min(9, 400 / n))
    ax.set_xticks(range(len(matrix.columns)), matrix.columns, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(len(matrix.index)), matrix.index, fontsize=fontsize)
    ax.set_xlabel("destination site")
    ax.set_ylabel("source site")
    _cloud_blocks(ax, list(matrix.index), list(matrix.columns), clouds)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.13).set_label(unit)
    ax.set_title(title, pad=22)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    return out


def _blocks(labels: list[str], clouds: Mapping[str, str]) -> list[tuple[int, int, str]]:
    """Runs of consecutive labels in one cloud: (first index, last index, cloud)."""
    runs: list[tuple[int, int, str]] = []
    for i, label in enumerate(labels):
        cloud = clouds.get(label, "?")
        if runs and runs[-1][2] == cloud:
            runs[-1] = (runs[-1][0], i, cloud)
        else:
            runs.append((i, i, cloud))
    return runs


def _cloud_blocks(ax: Axes, rows: list[str], cols: list[str],
                  clouds: Mapping[str, str]) -> None:
    """Separate clouds with white lines; name them on a second axis (top and right)."""
    row_runs, col_runs = _blocks(rows, clouds), _blocks(cols, clouds)
    for first, _, _ in row_runs[1:]:
        ax.axhline(first - 0.5, color="white", linewidth=1.5)
    for first, _, _ in col_runs[1:]:
        ax.axvline(first - 0.5, color="white", linewidth=1.5)
    top = ax.secondary_xaxis("top")
    top.set_xticks([(a + b) / 2 for a, b, _ in col_runs], [c for _, _, c in col_runs],
                   fontsize=8, fontweight="bold")
    right = ax.secondary_yaxis("right")
    right.set_yticks([(a + b) / 2 for a, b, _ in row_runs], [c for _, _, c in row_runs],
                     fontsize=8, fontweight="bold")
