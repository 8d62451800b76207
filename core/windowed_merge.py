"""The merge step of a run: stream the probabilities and the product mask (brought
onto their grid) through ``merge.merge_block`` in full-width row windows, and
write the mask."""

from __future__ import annotations

import tempfile

import numpy as np
from osgeo import gdal

from . import merge as mg
from .engine import Cancelled, Feedback
from .plan import MergePlan
from .raster import PROBABILITY_NODATA, create_geotiff, limited_block_cache, open_dataset, set_categories
from .regrid import product_mask_on_grid


def _probabilities(block: np.ndarray | None) -> np.ndarray | None:
    """Probability nodata as NaN, which thresholds to False."""
    if block is None:
        return None
    return np.where(block == PROBABILITY_NODATA, np.nan, block).astype(np.float32)


@limited_block_cache()  # bounded memory on a full tile: see core/raster.py
def merge_to_mask(plan: MergePlan, cloud: str | None, shadow: str | None, mask_path: str,
                  feedback: Feedback | None = None) -> mg.Fractions:
    """Stream the merge in row windows with the halo the morphology needs."""
    feedback = feedback or Feedback()
    grid, settings = plan.grid, plan.settings
    fractions = mg.Fractions()
    with tempfile.TemporaryDirectory(prefix="cloudmask-") as tmp:
        product, product_nodata = None, None
        if plan.product_mask:
            product, product_nodata = product_mask_on_grid(plan.product_mask, grid, tmp)
        readers = {k: open_dataset(p) if p else None for k, p in (
            ("cloud", cloud), ("shadow", shadow), ("product", product))}
        out = create_geotiff(mask_path, grid, 1, gdal.GDT_Byte, mg.NODATA)
        # Before any block is written: on a wide raster GDAL has flushed blocks by the end,
        # and a GeoTIFF's palette tags can no longer be set then.
        binary = settings.output_mode == "binary"
        set_categories(out, mg.BINARY_CATEGORY_NAMES if binary else mg.CATEGORY_NAMES,
                       mg.BINARY_CATEGORY_COLOURS if binary else mg.CATEGORY_COLOURS)
        halo = settings.halo()
        step = max(1, plan.window_rows)
        for lo in range(0, grid.height, step):
            hi = min(grid.height, lo + step)
            a, b = max(0, lo - halo), min(grid.height, hi + halo)
            block = {k: (ds.GetRasterBand(1).ReadAsArray(0, a, grid.width, b - a) if ds else None)
                     for k, ds in readers.items()}
            probs = {k: _probabilities(block[k]) for k in ("cloud", "shadow")}
            first = probs["cloud"] if probs["cloud"] is not None else probs["shadow"]
            valid = np.isfinite(first)
            decoded = None
            if block["product"] is not None:
                decoded = mg.decode_product_mask(block["product"], settings.product_kind,
                                                 product_nodata, settings.product_probability_threshold)
            core = (slice(lo - a, hi - a), slice(0, grid.width))
            edges = (a == 0, b == grid.height, True, True)
            mask = mg.merge_block(probs["cloud"], probs["shadow"], valid, decoded, settings, core, edges)
            out.GetRasterBand(1).WriteArray(mask, 0, lo)
            fractions.add(mask, settings.output_mode)
            feedback.progress(hi / grid.height)
            if feedback.cancelled():
                raise Cancelled("Cancelled by the user.")
        out.FlushCache()
        out = None
        readers = None
    return fractions
