"""Sizes of connected patches over a whole raster, labelled one row window at a time.

``MIN_AREA`` (clearing small flagged components, filling small holes) needs each
patch's full size, and a patch may span any number of windows. Reading enough context around each window
to see whole patches would cost ``min_area`` rows on each side (slow and memory-
hungry for large values); instead each window is labelled on its own (scipy's
``ndimage.label``, 8-connectivity) and the labels that touch across a window
seam are joined with a union-find. A first pass finds every patch's area; the
second labels the same windows again (labelling is deterministic, so the same
global ids come out) and keeps the pixels of patches big enough. A patch can also
record whether it touches (8-connectivity) pixels of other masks, e.g. whether a
hole borders cloud, across seams too. Memory is one window plus a few numbers per
patch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

EIGHT = np.ones((3, 3), dtype=bool)


class PatchAreas:
    """Global patch ids and areas, built window by window from the top of the raster."""

    def __init__(self, touch_masks: int = 0):
        self.parent = np.zeros(1, dtype=np.int64)  # id 0: background
        self.area = np.zeros(1, dtype=np.int64)
        self.touch = np.zeros((1, touch_masks), dtype=bool)  # per id: touches each other mask
        self.offsets: list[int] = []  # first global id - 1, per window in order
        self._last_row: np.ndarray | None = None
        self._last_touch: list[np.ndarray] = []
        self._keep: np.ndarray | None = None
        self._touches: np.ndarray | None = None

    def add(self, mask: np.ndarray, touch: Sequence[np.ndarray] = ()) -> None:
        """Label the next window (rows right below the previous one) and join it to it.

        ``touch``: the window's rows of each other mask whose touching is recorded."""
        labels = self._label(mask, len(self.offsets), register=True)
        for k, other in enumerate(touch):
            from scipy import ndimage  # only runs with a minimum area need it (see merge.py)

            near = ndimage.binary_dilation(np.asarray(other, dtype=bool), structure=EIGHT)
            self.touch[labels[near], k] = True
            if self._last_row is not None:  # across the seam, both ways
                self.touch[self._last_row[_widen(other[0])], k] = True
                self.touch[labels[0][_widen(self._last_touch[k])], k] = True
        if self._last_row is not None:
            self._join(self._last_row, labels[0])
        self._last_row = labels[-1].copy()
        self._last_touch = [np.asarray(other[-1], dtype=bool).copy() for other in touch]

    def _label(self, mask: np.ndarray, window: int, register: bool) -> np.ndarray:
        from scipy import ndimage  # only runs that drop small patches need it (see merge.py)

        local, count = ndimage.label(mask, structure=EIGHT)
        if register:
            self.offsets.append(len(self.parent) - 1)
            self.parent = np.concatenate([self.parent, np.arange(len(self.parent), len(self.parent) + count)])
            self.area = np.concatenate([self.area, np.bincount(local.ravel(), minlength=count + 1)[1:]])
            self.touch = np.concatenate([self.touch, np.zeros((count, self.touch.shape[1]), dtype=bool)])
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
        touches = np.zeros(self.touch.shape, dtype=bool)
        for k in range(self.touch.shape[1]):
            touches[:, k] = (np.bincount(roots, weights=self.touch[:, k], minlength=len(roots)) > 0)[roots]
        self._touches = touches

    def kept(self, mask: np.ndarray, window: int) -> np.ndarray:
        """The window's pixels that belong to patches of at least ``min_area`` pixels.

        The same window, in the same order, as given to :meth:`add`."""
        if self._keep is None:
            raise RuntimeError("kept() before finish()")
        return self._keep[self._label(mask, window, register=False)]

    def small(self, mask: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
        """The window's pixels in patches of fewer than ``min_area`` pixels, and what their patches touch.

        For each pixel, whether its patch touches each of the other masks ([rows, cols, masks])."""
        if self._keep is None or self._touches is None:
            raise RuntimeError("small() before finish()")
        labels = self._label(mask, window, register=False)
        return ~self._keep[labels] & (labels > 0), self._touches[labels]


def _widen(row: np.ndarray) -> np.ndarray:
    """A row's pixels and their left and right neighbours: what touches it from the next row."""
    row = np.asarray(row, dtype=bool)
    out = row.copy()
    out[1:] |= row[:-1]
    out[:-1] |= row[1:]
    return out
