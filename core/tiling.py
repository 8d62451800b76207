"""Where tiles fall and how much each one counts, along one axis.

The tile scheme is a model card property because these networks are
context-sensitive: the ukis models agree with their authors' output only when
tiles are placed exactly as the authors place them. Grids are anchored to the
whole raster, so streaming in windows never moves a tile. A 2-D tile's weight
is the outer product of its row and column weights.

Schemes:
- ``mirror-tukey`` (ukis): mirror-pad by the margin ``int(tile * overlap)``,
  tiles start at ``-margin`` and step by ``int(tile * (1 - overlap))`` until
  the raster is covered; overlaps are blended with a Tukey window of
  ``alpha = 2 * overlap`` (normalised by the sum of weights).
- ``centre-crop`` (FarmVibes.AI's tiling; cards may still give its earlier name):
  FarmVibes.AI's chip starts (spread evenly, the last one at the edge) and crop
  seams (the middle of each overlap); no padding, except a raster smaller than a
  tile, which FarmVibes.AI refuses.
- ``pixel``: pixel-wise models; tiles are just blocks, cropped at the edges.

``EngineSettings`` sizes the rest of the cutting: rows per window, columns per
stripe (``stripe_bounds``) and tiles per network call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AxisPlan:
    """Tile starts along one axis and each tile's weight over its ``tile`` pixels."""

    size: int
    tile: int
    starts: tuple[int, ...]
    weights: tuple[np.ndarray, ...]
    mirror: bool

    def __len__(self) -> int:
        return len(self.starts)

    def final_row(self, index: int) -> int:
        """First pixel that tiles after ``index`` may still change (pixels before it are done)."""
        if index + 1 >= len(self.starts):
            return self.size
        nxt = index + 1
        first_nonzero = self.starts[nxt] + int(np.argmax(self.weights[nxt] > 0))
        return min(max(first_nonzero, 0), self.size)

    def span(self, index: int) -> tuple[int, int]:
        """Pixels of the raster that tile ``index`` touches (clipped to the raster)."""
        start = self.starts[index]
        return max(start, 0), min(start + self.tile, self.size)


def plan_axis(size: int, scheme: str, tile: int, overlap: float) -> AxisPlan:
    if size < 1:
        raise ValueError("A raster axis must have at least one pixel.")
    if scheme == "mirror-tukey":
        return _mirror_tukey(size, tile, overlap)
    if scheme == "centre-crop":
        return _centre_crop(size, tile, overlap)
    if scheme == "pixel":
        starts = tuple(range(0, size, tile))
        return AxisPlan(size, tile, starts, tuple(np.ones(tile) for _ in starts), mirror=False)
    raise ValueError(f"Unknown tiling scheme '{scheme}'.")


def _mirror_tukey(size: int, tile: int, overlap: float) -> AxisPlan:
    margin = int(tile * overlap)
    step = int(tile - tile * overlap)
    starts = tuple(range(-margin, size, step))
    window = tukey(tile, 2 * overlap)
    return AxisPlan(size, tile, starts, tuple(window for _ in starts), mirror=True)


def tukey(length: int, alpha: float) -> np.ndarray:
    """The symmetric Tukey window the ukis authors blend with (SciPy's ``windows.tukey``).

    Computed here, not by SciPy: ``scipy.signal`` takes 0.2-0.4 s to import, which
    every run would pay for these few values. Flat in the middle, a raised cosine over the
    ``alpha / 2`` of the length at each end; ``alpha`` 0 is all ones, 1 (or more) a
    Hann window. The cards allow ``alpha`` in [0, 1) and tiles of 5 px or more.
    """
    if alpha <= 0 or length < 2:
        return np.ones(length)
    alpha = min(alpha, 1.0)
    n = np.arange(length, dtype=np.float64)
    ramp = int(np.floor(alpha * (length - 1) / 2.0))  # last index of the rising cosine
    window = np.ones(length)
    left, right = n[: ramp + 1], n[length - ramp - 1 :]
    window[: ramp + 1] = 0.5 * (1 + np.cos(np.pi * (-1 + 2.0 * left / alpha / (length - 1))))
    window[length - ramp - 1 :] = 0.5 * (1 + np.cos(np.pi * (-2.0 / alpha + 1 + 2.0 * right / alpha / (length - 1))))
    return window


def _centre_crop(size: int, tile: int, overlap: float) -> AxisPlan:
    """FarmVibes.AI's chips (:func:`chip_starts`), each owning the pixels between its seams."""
    starts, bounds = chip_starts(size, tile, max(1, int(tile * (1 - overlap))))
    weights = []
    for k, start in enumerate(starts):
        w = np.zeros(tile)
        w[bounds[k] - start : bounds[k + 1] - start] = 1.0
        weights.append(w)
    return AxisPlan(size, tile, tuple(starts), tuple(weights), mirror=True)


def chip_starts(size: int, tile: int, step: int) -> tuple[list[int], list[int]]:
    """Chip starts along an axis and the seams between the chips' outputs, as FarmVibes.AI.

    As its ``get_read_intervals``: ``n = ceil((size - tile) / step) + 1`` chips (at
    least two when the axis is longer than a chip) at ``round(linspace(0, size - tile,
    n))``, so no step is longer than ``step`` and the last chip ends at the edge.
    numpy's rounding (half to even) is kept on purpose: it is what places their chips.
    As its ``get_write_intervals``: chip k writes ``[seams[k], seams[k + 1])``, each
    inner seam the middle of an overlap. An axis no longer than a chip gets one chip,
    padded beyond the edge (FarmVibes.AI refuses such a raster).
    """
    if size <= tile:
        starts = [0]
    else:
        count = max(2, -(-(size - tile) // step) + 1)
        starts = [int(s) for s in np.round(np.linspace(0, size - tile, count))]
    seams = [0] + [(a + tile + b) // 2 for a, b in zip(starts, starts[1:])] + [size]
    return starts, seams


def reflect(indices: np.ndarray, size: int) -> np.ndarray:
    """Map indices outside ``[0, size)`` by mirror reflection that repeats the edge pixel.

    That is numpy's ``symmetric`` padding, for any distance from the raster."""
    period = 2 * size
    k = np.mod(indices, period)
    return np.where(k < size, k, period - 1 - k)


def count_tiles(rows: int, cols: int, scheme: str, tile: int, overlap: float) -> int:
    return len(plan_axis(rows, scheme, tile, overlap)) * len(plan_axis(cols, scheme, tile, overlap))


def stripe_bounds(width: int, widest: int, candidates: list[int], narrowest: int) -> list[int]:
    """Column boundaries ``[0, ..., width]`` of the fewest stripes about ``widest`` px wide.

    The engine processes one stripe at a time so that its buffers are a stripe
    wide, not a raster wide. Each inner boundary is the candidate nearest an even
    split: the engine passes the start of a tile column, so only the overlap of
    one tile reaches across (the least carried over). Stripes narrower than
    ``narrowest`` are not made: what a tile carries across a split must end
    inside the next stripe.
    """
    count = -(-width // max(1, widest))
    bounds = [0]
    for k in range(1, count):
        ideal = k * width / count
        best = min(candidates, key=lambda c: abs(c - ideal), default=None)
        if best is not None and best - bounds[-1] >= narrowest and width - best >= narrowest:
            bounds.append(best)
    return bounds + [width]


@dataclass(frozen=True)
class EngineSettings:
    """How the engine cuts and batches a run: rows per window, columns per stripe, tiles per call.

    Kept beside the tile grids it sizes, so that a plan can carry it without importing the engine."""

    window_rows: int = 256
    # Tiles per onnxruntime call. On CPU the time per tile hardly changes from 1 to 8
    # (measured: scripts/bench.py); 4 keeps the batch (4 x 6 x 256 x 256 float32, 6 MB)
    # small and a tile row of the ukis grid (54 tiles on a full S2 tile) evenly split.
    batch_size: int = 4
    pixel_batch: int = 1 << 18
    in_memory: bool = False
    # Columns per stripe. Peak memory grows with it (about 30 KB per column with the
    # default model): with 4096 a full tile (three stripes) peaks 8 % above a 2745 px
    # square (scripts/bench.py, figure 3); the cost is reading the source blocks under
    # each split twice, unmeasurable in time. IN_MEMORY runs are one stripe.
    stripe_cols: int = 4096
    # Blocks of rows run at once (see engine.run_in_row_blocks); 0: what suits the device (see
    # probability.device_settings).
    workers: int = 1
