"""The merge step of a run: stream the probabilities and the product mask (brought
onto their grid) through ``merge.py``'s rules in full-width row windows, and
write the mask.

Memory and time stay bounded whatever the settings: the dilation needs
``dilation`` rows of context around each window, and dropping small patches
(``MIN_AREA``) needs no context at all, because the patches' sizes come from a
first pass that labels window by window and joins labels across the seams
(``patches.py``). Without ``MIN_AREA`` there is one pass.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import numpy as np
from osgeo import gdal

from . import merge as mg
from .engine import Cancelled, Feedback, Share
from .patches import PatchAreas
from .plan import MergePlan
from .raster import (
    PROBABILITY_NODATA,
    create_geotiff,
    limited_block_cache,
    list_only_the_classes,
    open_dataset,
    read_array,
    set_categories,
    write_array,
)
from .regrid import product_mask_on_grid


def _probabilities(block: np.ndarray | None) -> np.ndarray | None:
    """Probability nodata as NaN, which thresholds to False."""
    if block is None:
        return None
    return np.where(block == PROBABILITY_NODATA, np.nan, block).astype(np.float32)


class _Flags:
    """Reads row windows of the inputs and flags cloud and shadow (thresholds, product mask,
    validity), window by window in a fixed order."""

    def __init__(self, plan: MergePlan, readers: dict, product_nodata: float | None):
        self.plan, self.readers, self.product_nodata = plan, readers, product_nodata
        self.step = max(1, plan.window_rows)

    def windows(self) -> Iterator[tuple[int, int]]:
        height = self.plan.grid.height
        for lo in range(0, height, self.step):
            yield lo, min(height, lo + self.step)

    def read(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(cloud, shadow, valid) flags of rows [lo, hi)."""
        width, settings = self.plan.grid.width, self.plan.settings
        block = {k: (read_array(ds, 0, lo, width, hi - lo) if ds else None)
                 for k, ds in self.readers.items()}
        cloud_p, shadow_p = _probabilities(block["cloud"]), _probabilities(block["shadow"])
        valid = np.isfinite(cloud_p if cloud_p is not None else shadow_p)
        product = None
        if block["product"] is not None:
            product = mg.decode_product_mask(block["product"], settings.product_kind, self.product_nodata,
                                             settings.product_probability_threshold)
        cloud, shadow = mg.flags(cloud_p, shadow_p, valid, product, settings)
        return cloud, shadow, valid


def _patch_areas(flags: _Flags, min_area: int, feedback: Feedback) -> tuple[PatchAreas, PatchAreas]:
    """First pass: every cloud and shadow patch's size over the whole raster."""
    areas = PatchAreas(), PatchAreas()
    height = flags.plan.grid.height
    for lo, hi in flags.windows():
        for area, mask in zip(areas, flags.read(lo, hi)[:2]):
            area.add(mask)
        _step(feedback, hi / height)
    for area in areas:
        area.finish(min_area)
    return areas


def _step(feedback: Feedback, fraction: float) -> None:
    feedback.progress(fraction)
    if feedback.cancelled():
        raise Cancelled("Cancelled by the user.")


@limited_block_cache()  # bounded memory on a full tile: see core/raster.py
def merge_to_mask(plan: MergePlan, cloud: str | None, shadow: str | None, mask_path: str,
                  feedback: Feedback | None = None) -> mg.Fractions:
    """Stream the merge in row windows: flags, small patches dropped, dilation, categories."""
    feedback = feedback or Feedback()
    grid, settings = plan.grid, plan.settings
    fractions = mg.Fractions()
    with tempfile.TemporaryDirectory(prefix="cloudmask-") as tmp:
        product, product_nodata = None, None
        if plan.product_mask:
            product, product_nodata = product_mask_on_grid(plan.product_mask, grid, tmp)
        readers = {k: open_dataset(p) if p else None for k, p in (
            ("cloud", cloud), ("shadow", shadow), ("product", product))}
        flags = _Flags(plan, readers, product_nodata)
        areas = None
        first = 0.0
        if settings.min_area > 1:
            areas = _patch_areas(flags, settings.min_area, Share(feedback, 0.0, 0.5))
            first = 0.5
        out = create_geotiff(mask_path, grid, 1, gdal.GDT_Byte, mg.NODATA)
        # Before any block is written: on a wide raster GDAL has flushed blocks by the end,
        # and a GeoTIFF's palette tags can no longer be set then.
        binary = settings.output_mode == "binary"
        set_categories(out, mg.BINARY_CATEGORY_NAMES if binary else mg.CATEGORY_NAMES,
                       mg.BINARY_CATEGORY_COLOURS if binary else mg.CATEGORY_COLOURS)
        rows = _Rows(grid.width)
        halo = settings.dilation
        written = 0
        for index, (lo, hi) in enumerate(flags.windows()):
            cloud_f, shadow_f, valid = flags.read(lo, hi)
            if areas is not None:
                cloud_f, shadow_f = areas[0].kept(cloud_f, index), areas[1].kept(shadow_f, index)
            rows.append(cloud_f, shadow_f, valid)
            # Rows [written, ready) now have all the context their dilation needs.
            ready = grid.height if hi == grid.height else max(written, hi - halo)
            if ready > written:
                mask = rows.finish(written, ready, halo, settings, grid.height)
                write_array(out, mask, 0, written)
                fractions.add(mask, settings.output_mode)
                written = ready
            _step(feedback, first + (1 - first) * hi / grid.height)
        out.FlushCache()
        out = None
        readers = None
        list_only_the_classes(mask_path, mg.BINARY_CATEGORY_COLOURS if binary else mg.CATEGORY_COLOURS)
    return fractions


class _Rows:
    """The flagged rows still needed as dilation context, from row ``lo`` on."""

    def __init__(self, width: int):
        self.lo = 0
        self.cloud = np.zeros((0, width), bool)
        self.shadow = np.zeros((0, width), bool)
        self.valid = np.zeros((0, width), bool)

    def append(self, cloud: np.ndarray, shadow: np.ndarray, valid: np.ndarray) -> None:
        self.cloud = np.concatenate([self.cloud, cloud])
        self.shadow = np.concatenate([self.shadow, shadow])
        self.valid = np.concatenate([self.valid, valid])

    def finish(self, lo: int, hi: int, halo: int, settings: mg.MergeSettings, height: int) -> np.ndarray:
        """The mask of rows [lo, hi); then forget the rows no later window needs."""
        a = max(self.lo, lo - halo)
        b = self.lo + len(self.valid)
        rows = slice(a - self.lo, b - self.lo)
        core = slice(lo - a, hi - a)
        mask = mg.finish(self.cloud[rows], self.shadow[rows], self.valid[rows][core], settings,
                         (core, slice(None)))
        keep = max(0, hi - halo - self.lo)
        self.cloud, self.shadow, self.valid = self.cloud[keep:], self.shadow[keep:], self.valid[keep:]
        self.lo += keep
        return mask
