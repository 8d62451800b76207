"""The merge step of a run: stream the probabilities and the product mask (brought
onto their grid) through ``merge.py``'s rules in full-width row windows, and
write the mask.

Memory and time stay bounded whatever the settings: the dilation needs
``dilation`` rows of context around each window, and dropping small patches
(``MIN_AREA``) needs no context at all, because the patches' sizes come from a
first pass that labels window by window and joins labels across the seams
(``patches.py``). Without ``MIN_AREA`` there is one pass.

In a whole run the probabilities need not be read back at all: a
:class:`FlagRecorder` flags them (thresholds, product mask, validity) as the
probability step hands them over, into a byte raster of flags, and the merge
reads that instead. Reading back and decompressing about 1 GB of float32 on a
full tile was most of the merge's time, and when the probabilities are not kept
they are then never written.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from osgeo import gdal

from . import merge as mg
from .inference import available_cores
from .patches import PatchAreas
from .plan import MergePlan
from .progress import Cancelled, Feedback, Share
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
from .regrid import NearestRows, product_mask_on_grid


def _probabilities(block: np.ndarray | None) -> np.ndarray | None:
    """Probability nodata as NaN, which thresholds to False."""
    if block is None:
        return None
    return np.where(block == PROBABILITY_NODATA, np.float32(np.nan), block).astype(np.float32, copy=False)


# Threads that read and flag windows ahead of the merge. Reading back the probabilities
# (decompressing them) is most of the merge's time; GDAL does it without Python's lock.
MERGE_READERS = 8


def flag_block(plan: MergePlan, cloud: np.ndarray | None, shadow: np.ndarray | None,
               product: np.ndarray | None, product_nodata: float | None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cloud, shadow, valid) flags of a block of probabilities as written (nodata
    ``PROBABILITY_NODATA``) and of the product mask on their grid (None: no mask)."""
    settings = plan.settings
    cloud_p, shadow_p = _probabilities(cloud), _probabilities(shadow)
    valid = np.isfinite(cloud_p if cloud_p is not None else shadow_p)
    decoded = None
    if product is not None:
        decoded = mg.decode_product_mask(product, settings.product_kind, product_nodata,
                                         settings.product_probability_threshold)
    cloud_f, shadow_f = mg.flags(cloud_p, shadow_p, valid, decoded, settings)
    return cloud_f, shadow_f, valid


# The flags in one byte per pixel (FlagRecorder's raster).
CLOUD_BIT, SHADOW_BIT, VALID_BIT = 1, 2, 4
# Uncompressed: a temporary file read once or twice, written in pieces out of order
# (bands of rows at once), where compressing would cost more than it saves.
FLAG_OPTIONS = ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", "BIGTIFF=IF_SAFER"]


class FlagRecorder:
    """Flags probabilities while they are still in memory, for :func:`merge_to_mask`'s
    ``flags``: called with each block the probability step writes (its ``flags`` sink),
    from one thread. The product mask is brought onto the grid once, here."""

    def __init__(self, plan: MergePlan, folder: str):
        self.plan = plan
        self.path = os.path.join(folder, "flags.tif")
        self.product, self.product_nodata = None, None
        if plan.product_mask:
            path, self.product_nodata = product_mask_on_grid(plan.product_mask, plan.grid, folder)
            self.product = open_dataset(path, "product mask")
        self.out = create_geotiff(self.path, plan.grid, 1, gdal.GDT_Byte, 0, options=FLAG_OPTIONS)

    def __call__(self, row: int, col: int, blocks: dict[str, np.ndarray | None]) -> None:
        cloud, shadow = blocks.get("cloud"), blocks.get("shadow")
        rows, cols = (cloud if cloud is not None else shadow).shape
        product = read_array(self.product, col, row, cols, rows) if self.product else None
        cloud_f, shadow_f, valid = flag_block(self.plan, cloud, shadow, product, self.product_nodata)
        # numpy's booleans are the bytes 0 and 1: their views times the bits pack them.
        packed = valid.view(np.uint8) * np.uint8(VALID_BIT)
        packed |= cloud_f.view(np.uint8) * np.uint8(CLOUD_BIT)
        packed |= shadow_f.view(np.uint8) * np.uint8(SHADOW_BIT)
        write_array(self.out, packed, col, row)

    def close(self) -> None:
        """Every flag on disk; call before the merge reads ``path``."""
        if self.out is not None:
            self.out.FlushCache()
        self.out, self.product = None, None


class _Flags:
    """Reads row windows of the inputs and flags cloud and shadow (thresholds, product mask,
    validity), or reads the flags a :class:`FlagRecorder` made. Several threads read
    ahead, each with its own GDAL datasets (one dataset must not be read from two
    threads); the windows come out in order."""

    def __init__(self, plan: MergePlan, paths: dict[str, str | None], product_nodata: float | None):
        self.plan, self.paths, self.product_nodata = plan, paths, product_nodata
        self.step = max(1, plan.window_rows)
        self.workers = max(1, min(MERGE_READERS, available_cores()))
        self._local = threading.local()
        self._opened: list[dict] = []  # every thread's datasets, dropped by close()
        self._lock = threading.Lock()

    def windows(self) -> Iterator[tuple[int, int]]:
        height = self.plan.grid.height
        for lo in range(0, height, self.step):
            yield lo, min(height, lo + self.step)

    def in_order(self) -> Iterator[tuple[int, int, tuple[np.ndarray, np.ndarray, np.ndarray]]]:
        """Every window with its flags, in order, read by a pool of threads a few windows
        ahead (so memory stays bounded); none are left running when this stops."""
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="cloudmask-merge")
        pending: deque = deque()
        try:
            for lo, hi in self.windows():
                pending.append((lo, hi, pool.submit(self.read, lo, hi)))
                if len(pending) > 2 * self.workers:
                    lo, hi, future = pending.popleft()
                    yield lo, hi, future.result()
            while pending:
                lo, hi, future = pending.popleft()
                yield lo, hi, future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _readers(self) -> dict:
        readers = getattr(self._local, "readers", None)
        if readers is None:
            readers = {k: self._open(k, p) if p else None for k, p in self.paths.items()}
            self._local.readers = readers
            with self._lock:
                self._opened.append(readers)
        return readers

    def _open(self, key: str, path: str):
        ds = open_dataset(path)
        if key == "flags" and (ds.RasterXSize, ds.RasterYSize) != (self.plan.grid.width, self.plan.grid.height):
            return NearestRows(ds, self.plan.grid)  # a processing resolution's decisions
        return ds

    def close(self) -> None:
        with self._lock:
            self._opened.clear()
        self._local = threading.local()

    def read(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(cloud, shadow, valid) flags of rows [lo, hi)."""
        width = self.plan.grid.width
        block = {k: (ds.read(lo, hi) if isinstance(ds, NearestRows) else read_array(ds, 0, lo, width, hi - lo))
                 if ds else None for k, ds in self._readers().items()}
        if "flags" in block:
            packed = block["flags"]
            cloud, shadow, valid = (packed & CLOUD_BIT) != 0, (packed & SHADOW_BIT) != 0, (packed & VALID_BIT) != 0
            if block.get("product") is not None:  # coarse decisions: the product mask joins here
                settings = self.plan.settings
                product = mg.decode_product_mask(block["product"], settings.product_kind, self.product_nodata,
                                                 settings.product_probability_threshold)
                cloud |= product.cloud & valid
                shadow |= product.shadow & valid
            return cloud, shadow, valid
        return flag_block(self.plan, block["cloud"], block["shadow"], block["product"], self.product_nodata)


def _patch_areas(flags: _Flags, min_area: int, feedback: Feedback) -> tuple[PatchAreas, PatchAreas]:
    """First pass: every cloud and shadow patch's size over the whole raster."""
    areas = PatchAreas(), PatchAreas()
    height = flags.plan.grid.height
    for lo, hi, flagged in flags.in_order():
        for area, mask in zip(areas, flagged[:2]):
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
                  feedback: Feedback | None = None, flags: str | None = None) -> mg.Fractions:
    """Stream the merge in row windows: flags, small patches dropped, dilation, categories.
    ``flags``: a :class:`FlagRecorder`'s raster, read instead of the probabilities."""
    feedback = feedback or Feedback()
    coarse = bool(flags) and not _on_grid(flags, plan.grid)
    if flags and not coarse:
        return _merge(plan, {"flags": flags}, None, mask_path, feedback)
    with tempfile.TemporaryDirectory(prefix="cloudmask-") as tmp:
        product, product_nodata = None, None
        if plan.product_mask:
            product, product_nodata = product_mask_on_grid(plan.product_mask, plan.grid, tmp)
        inputs = {"flags": flags} if coarse else {"cloud": cloud, "shadow": shadow}
        return _merge(plan, {**inputs, "product": product}, product_nodata, mask_path, feedback)


def _on_grid(flags: str, grid) -> bool:
    """Whether a FlagRecorder's raster is on the grid (it then holds the product mask too),
    or on a processing resolution's coarser grid (the models' decisions only)."""
    ds = open_dataset(flags)
    return (ds.RasterXSize, ds.RasterYSize) == (grid.width, grid.height)


def _merge(plan: MergePlan, paths: dict[str, str | None], product_nodata: float | None, mask_path: str,
           feedback: Feedback) -> mg.Fractions:
    flags = _Flags(plan, paths, product_nodata)
    try:
        return _write_mask(plan, flags, mask_path, feedback)
    finally:
        flags.close()


def _write_mask(plan: MergePlan, flags: _Flags, mask_path: str, feedback: Feedback) -> mg.Fractions:
    grid, settings = plan.grid, plan.settings
    fractions = mg.Fractions()
    areas = None
    if settings.min_area > 1:
        areas = _patch_areas(flags, settings.min_area, Share(feedback, 0.0, 0.5))
    out = create_geotiff(mask_path, grid, 1, gdal.GDT_Byte, mg.NODATA)
    # Before any block is written: on a wide raster GDAL has flushed blocks by the end,
    # and a GeoTIFF's palette tags can no longer be set then.
    binary = settings.output_mode == "binary"
    set_categories(out, mg.BINARY_CATEGORY_NAMES if binary else mg.CATEGORY_NAMES,
                   mg.BINARY_CATEGORY_COLOURS if binary else mg.CATEGORY_COLOURS)
    _write_windows(flags, areas, out, fractions, feedback)
    out.FlushCache()
    out = None
    list_only_the_classes(mask_path, mg.BINARY_CATEGORY_COLOURS if binary else mg.CATEGORY_COLOURS)
    return fractions


def _write_windows(flags: _Flags, areas: tuple[PatchAreas, PatchAreas] | None, out: gdal.Dataset,
                   fractions: mg.Fractions, feedback: Feedback) -> None:
    """Finish the windows in order (dilation, categories), keeping the rows the next
    window's dilation reaches. Only the reading is on the pool's threads: dilating the
    windows there too made a full tile's merge slower (5.1 s against 2.8 s on 16 cores,
    scripts/gpu_check.py), its many small steps taking turns on Python's lock."""
    grid, settings = flags.plan.grid, flags.plan.settings
    first = 0.5 if areas is not None else 0.0
    rows = _Rows(grid.width)
    halo = settings.dilation
    written = 0
    for index, (lo, hi, (cloud_f, shadow_f, valid)) in enumerate(flags.in_order()):
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
