"""Sizes of connected patches over a whole raster, labelled one row window at a time.

Dropping patches smaller than ``min_area`` needs each patch's full size, and a
patch may span any number of windows. Reading enough context around each window
to see whole patches would cost ``min_area`` rows on each side (slow and memory-
hungry for large values); instead each window is labelled on its own (scipy's
``ndimage.label``, 8-connectivity) and the labels that touch across a window
seam are joined with a union-find. A first pass finds every patch's area; the
second labels the same windows again (labelling is deterministic, so the same
global ids come out) and keeps the pixels of patches big enough. Memory is one
window plus an array of one integer per patch.
"""

from __future__ import annotations

import numpy as np

EIGHT = np.ones((3, 3), dtype=bool)


class PatchAreas:
    """Global patch ids and areas, built window by window from the top of the raster."""

    def __init__(self):
        self.parent = np.zeros(1, dtype=np.int64)  # id 0: background
        self.area = np.zeros(1, dtype=np.int64)
        self.offsets: list[int] = []  # first global id - 1, per window in order
        self._last_row: np.ndarray | None = None
        self._keep: np.ndarray | None = None

    def add(self, mask: np.ndarray) -> None:
        """Label the next window (rows right below the previous one) and join it to it."""
        labels = self._label(mask, len(self.offsets), register=True)
        if self._last_row is not None:
            self._join(self._last_row, labels[0])
        self._last_row = labels[-1].copy()

    def _label(self, mask: np.ndarray, window: int, register: bool) -> np.ndarray:
        from scipy import ndimage  # only runs that drop small patches need it (see merge.py)
        local, count = ndimage.label(mask, structure=EIGHT)
        if register:
            self.offsets.append(len(self.parent) - 1)
            self.parent = np.concatenate([self.parent, np.arange(len(self.parent), len(self.parent) + count)])
            self.area = np.concatenate([self.area, np.bincount(local.ravel(), minlength=count + 1)[1:]])
        offset = self.offsets[window]
        return np.where(local > 0, local + offset, 0)

    def _find(self, node: int) -> int:
        root = node
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[node] != root:  # path compression
            self.parent[node], node = root, self.parent[node]
        return int(root)

    def _join(self, above: np.ndarray, below: np.ndarray) -> None:
        """Union the patches of two touching rows (8-connectivity: also diagonally)."""
        pairs = [np.stack([above, below], axis=1)]
        if len(above) > 1:
            pairs.append(np.stack([above[:-1], below[1:]], axis=1))
            pairs.append(np.stack([above[1:], below[:-1]], axis=1))
        pairs = np.concatenate(pairs)
        pairs = np.unique(pairs[(pairs[:, 0] > 0) & (pairs[:, 1] > 0)], axis=0)
        for a, b in pairs:
            ra, rb = self._find(int(a)), self._find(int(b))
            if ra != rb:
                self.parent[max(ra, rb)] = min(ra, rb)

    def finish(self, min_area: int) -> None:
        """Sum the areas over each joined patch: which ids belong to patches to keep."""
        roots = self.parent.copy()
        while True:  # pointer jumping: every id straight to its root
            nxt = roots[roots]
            if np.array_equal(nxt, roots):
                break
            roots = nxt
        total = np.bincount(roots, weights=self.area, minlength=len(roots))
        self._keep = total[roots] >= min_area
        self._keep[0] = False

    def kept(self, mask: np.ndarray, window: int) -> np.ndarray:
        """The window's pixels that belong to patches of at least ``min_area`` pixels
        (the same window, in the same order, as given to :meth:`add`)."""
        return self._keep[self._label(mask, window, register=False)]
