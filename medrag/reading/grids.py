"""Coarse maps over an image (the classifier's heatmap, the opacity map): block means and the hottest cell."""

from __future__ import annotations

import numpy as np


def block_mean(values: np.ndarray, cells: int) -> np.ndarray:
    """``values`` averaged into ``cells`` x ``cells`` blocks (float32); a map smaller than ``cells`` repeats rows."""
    grid = np.asarray(values, dtype=np.float32)
    rows = np.linspace(0, grid.shape[0], cells + 1).astype(int)
    cols = np.linspace(0, grid.shape[1], cells + 1).astype(int)
    # reduceat sums [rows[i], rows[i+1]); where two boundaries coincide it takes the one row at rows[i].
    sums = np.add.reduceat(np.add.reduceat(grid, rows[:-1], axis=0), cols[:-1], axis=1)
    counts = np.outer(np.maximum(np.diff(rows), 1), np.maximum(np.diff(cols), 1))
    return (sums / counts).astype(np.float32)


def peak(values: np.ndarray) -> tuple[float, float, float]:
    """(row, col, value) of a map's hottest cell, row/col as fractions of its height/width (cell centres)."""
    grid = np.asarray(values)
    row, col = np.unravel_index(int(np.argmax(grid)), grid.shape)
    return (row + 0.5) / grid.shape[0], (col + 0.5) / grid.shape[1], float(grid[row, col])


__all__ = ["block_mean", "peak"]
