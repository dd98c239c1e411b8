"""Coarse maps over an image (the classifier's heatmap, the opacity map): block means, the hottest cell and the
densest region."""

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


#: The densest region is the connected part of the map at or above this share of its maximum.
REGION_SHARE = 0.5


def densest_region(values: np.ndarray, share: float = REGION_SHARE) -> tuple[float, float, float]:
    """(row, col, value) of the middle of a map's densest region, row/col as fractions like :func:`peak`; value
    is the map's maximum.

    The region is the 4-connected set of cells at or above ``share`` of the maximum that holds the most of the
    map's mass; its point is the region cell nearest the region's mass centre (so it always lies in the region,
    even when the region is a crescent). One hot cell is noise more often than a region is: on the 36 NIH boxes
    of held-out patients this point fell in 22, the single hottest cell in 21 (BENCHMARKS.md)."""
    from scipy import ndimage

    grid = np.asarray(values, dtype=np.float64)
    top = float(grid.max()) if grid.size else 0.0
    if top <= 0 or not np.isfinite(top):
        return peak(grid)
    labels, count = ndimage.label(grid >= share * top)
    masses = ndimage.sum(grid, labels, range(1, count + 1))
    region = labels == int(np.argmax(masses)) + 1
    centre = np.asarray(ndimage.center_of_mass(np.where(region, grid, 0.0)))
    cells = np.argwhere(region)
    row, col = cells[int(np.argmin(((cells - centre) ** 2).sum(axis=1)))]
    return (row + 0.5) / grid.shape[0], (col + 0.5) / grid.shape[1], top


__all__ = ["REGION_SHARE", "block_mean", "densest_region", "peak"]
