"""The merge step of a run: stream the probabilities and the product mask through ``merge.py``'s rules.

The product mask is brought onto the probabilities' grid, the rules run in full-width
row windows, and the mask is written.

Memory and time stay bounded whatever the settings: the dilation needs
``dilation`` rows of context around each window, and ``MIN_AREA`` (FarmVibes.AI's
``min_area``, on the dilated mask) needs no context at all: the dilated mask is
written to a temporary byte raster, and passes over it label window by window and
join labels across the seams (``patches.py``) to learn every component's size.
Without ``MIN_AREA`` there is one pass.

In a whole run the probabilities need not be read back at all: a
:class:`FlagRecorder` flags them (thresholds, product mask, validity) as the
probability step hands them over, into a byte raster of flags, and the merge
reads that instead. Reading back and decompressing about 1 GB of float32 on a
full tile would be most of the merge's time, and when the probabilities are not kept
they are then never written.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional

import numpy as np
from osgeo import gdal

from . import merge, provenance
from .patches import PatchAreas
from .progress import Cancelled, Feedback, Share
from .raster import (
    PROBABILITY_NODATA,
    Classes,
    RasterError,
    RasterInfo,
    RowRasters,
    create_geotiff,
    limited_block_cache,
    open_dataset,
    raster_info,
    read_array,
    read_array_of,
    validity_band,
    write_array,
)
from .regrid import NearestRows, product_mask_on_grid
from .runtime.cpu import available_cores


@dataclass(frozen=True)
class MergePlan:
    """What the merge reads and how it decides: the plan's part for this step (``plan.plan_merge``)."""

    grid: RasterInfo  # the grid of the probabilities and of the mask
    product_mask: str | None  # the raster to read (a product's mask already made)
    settings: merge.MergeSettings  # final: thresholds and product kind decided
    window_rows: int = 128
    provenance: bool = False  # the flags carry who flagged each pixel, for a SOURCE output


def _probabilities(
    block: np.ndarray | None,
    nodata: float | None = PROBABILITY_NODATA,
    hidden: np.ndarray | None = None,
    name: str = "probability",
    check: bool = True,
) -> np.ndarray | None:
    """A probability block with every kind of nodata as NaN (which thresholds to False).

    ``nodata`` is the raster's declared value (ours is ``PROBABILITY_NODATA``;
    FarmVibes.AI writes 100, other tools -9999), ``hidden`` where its mask or alpha
    band says no data. Any other value outside 0..1 is refused: thresholding it would
    make nonsense (100 would be cloud, -9999 clear) without a word; ``check`` False
    skips that for the run's own probabilities, which its models made.
    """
    if block is None:
        return None
    block = np.array(block, dtype=np.float32)  # a copy: the reader's buffer stays as read
    if nodata is not None and not np.isnan(nodata):
        block[block == np.float32(nodata)] = np.nan
    if hidden is not None:
        block[hidden] = np.nan
    if not check:
        return block
    with np.errstate(invalid="ignore"):
        outside = (block < 0) | (block > 1)
    if check and outside.any():
        raise out_of_range(name, block[outside], nodata)
    return block


def out_of_range(name: str, values: np.ndarray, nodata: float | None) -> RasterError:
    """The error for probabilities outside 0..1 that are not nodata: what was found and the fixes."""
    low, high = float(values.min()), float(values.max())
    found = f"{low:g}" if low == high else f"{low:g} to {high:g}"
    declared = "declares no nodata value" if nodata is None or np.isnan(nodata) else f"its nodata is {nodata:g}"
    return RasterError(
        f"The {name} holds values outside 0..1 ({found}), and {declared}. A probability must be "
        "between 0 and 1. If such a value marks pixels without data, declare it as the raster's "
        "nodata (Raster > Conversion > Translate, 'Assign a specified nodata value to output "
        "bands', or gdal_edit.py -a_nodata VALUE); if the raster holds percentages, divide it by "
        "100 (Raster calculator) first."
    )


# Threads that read and flag windows ahead of the merge. Reading back the probabilities
# (decompressing them) is most of the merge's time; GDAL does it without Python's lock.
MERGE_READERS = 8


# (cloud, shadow, valid, sources) of a block: see flag_block.
Flagged = tuple[np.ndarray, np.ndarray, np.ndarray, Optional[np.ndarray]]


def flag_block(
    plan: MergePlan,
    cloud: np.ndarray | None,
    shadow: np.ndarray | None,
    product: np.ndarray | None,
    product_nodata: float | None,
    probabilities_ready: bool = False,
) -> Flagged:
    """(cloud, shadow, valid, sources) flags of a block of probabilities and of the product mask.

    The probabilities as written (nodata ``PROBABILITY_NODATA``; ``probabilities_ready``: already
    with NaN for nodata), the product mask on their grid (None: no mask). ``sources``:
    provenance.py's bits of who flagged each pixel where the plan asks for them, else None."""
    settings = plan.settings
    if not probabilities_ready:
        cloud, shadow = _probabilities(cloud, check=False), _probabilities(shadow, check=False)
    cloud_p, shadow_p = cloud, shadow
    # A pixel either probability has no data for is nodata: nothing says it is clear.
    either = cloud_p if cloud_p is not None else shadow_p
    if either is None:
        raise ValueError("flag_block needs a cloud or a shadow probability block")
    valid = np.ones(either.shape, dtype=bool)
    for p in (cloud_p, shadow_p):
        if p is not None:
            valid &= np.isfinite(p)
    decoded = None
    if product is not None:
        decoded = merge.decode_product_mask(
            product, settings.product_kind, product_nodata, settings.product_probability_threshold
        )
    cloud_f, shadow_f = merge.flags(cloud_p, shadow_p, valid, decoded, settings)
    sources = None
    if plan.provenance:
        # The models' own flags: the same rule as above without the product mask.
        sources = provenance.source_bits(valid, decoded, *merge.flags(cloud_p, shadow_p, valid, None, settings))
    return cloud_f, shadow_f, valid, sources


PROBABILITY_KEYS = ("cloud", "shadow")

# The flags in one byte per pixel (FlagRecorder's raster).
CLOUD_BIT, SHADOW_BIT, VALID_BIT = 1, 2, 4
SOURCE_BITS = provenance.PRODUCT_BIT | provenance.CLOUD_MODEL_BIT | provenance.SHADOW_MODEL_BIT
# Uncompressed: a temporary file read once or twice, written in pieces out of order
# (blocks of rows at once), where compressing would cost more than it saves.
FLAG_OPTIONS = ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", "BIGTIFF=IF_SAFER"]


class FlagRecorder:
    """Flags probabilities while they are still in memory, for :func:`merge_to_mask`'s ``flags``.

    Called with each block the probability step writes (its ``flags`` sink),
    from one thread. The product mask is brought onto the grid once, here."""

    def __init__(self, plan: MergePlan, folder: str):
        self.plan = plan
        self.path = os.path.join(folder, "flags.tif")
        self.product, self.product_nodata = None, None
        if plan.product_mask:
            path, self.product_nodata = product_mask_on_grid(plan.product_mask, plan.grid, folder)
            self.product = open_dataset(path, "product mask")
        self.out = create_geotiff(self.path, plan.grid, 1, gdal.GDT_Byte, 0, options=FLAG_OPTIONS)

    def __call__(self, row: int, col: int, blocks: dict[str, np.ndarray]) -> None:
        cloud, shadow = blocks.get("cloud"), blocks.get("shadow")
        either = cloud if cloud is not None else shadow
        if either is None:
            raise ValueError("the flags need a cloud or a shadow probability block")
        rows, cols = either.shape
        product = read_array(self.product, col, row, cols, rows) if self.product else None
        cloud_f, shadow_f, valid, sources = flag_block(self.plan, cloud, shadow, product, self.product_nodata)
        # numpy's booleans are the bytes 0 and 1: their views times the bits pack them.
        packed = valid.view(np.uint8) * np.uint8(VALID_BIT)
        packed |= cloud_f.view(np.uint8) * np.uint8(CLOUD_BIT)
        packed |= shadow_f.view(np.uint8) * np.uint8(SHADOW_BIT)
        if sources is not None:  # provenance.py's bits are above these three
            packed |= sources
        write_array(self.out, packed, col, row)

    def close(self) -> None:
        """Every flag on disk; call before the merge reads ``path``."""
        if self.out is not None:
            self.out.FlushCache()
        self.out, self.product = None, None


class _Flags:
    """Reads row windows of the inputs and flags cloud and shadow, or reads a :class:`FlagRecorder`'s flags.

    The flags come from the thresholds, the product mask and validity. Several threads read
    ahead, each with its own GDAL datasets (one dataset must not be read from two
    threads); the windows come out in order."""

    def __init__(self, plan: MergePlan, paths: dict[str, str | None], product_nodata: float | None):
        self.plan, self.paths, self.product_nodata = plan, paths, product_nodata
        # Each probability raster's own declared nodata (ours -1, FarmVibes.AI's 100, ...).
        self.nodata = {k: raster_info(path).nodata[0] for k in PROBABILITY_KEYS if (path := paths.get(k))}
        self.step = max(1, plan.window_rows)
        self._local = threading.local()
        self._opened: list[dict] = []  # every thread's datasets, dropped by close()
        self._lock = threading.Lock()

    def windows(self) -> Iterator[tuple[int, int]]:
        height = self.plan.grid.height
        for lo in range(0, height, self.step):
            yield lo, min(height, lo + self.step)

    def in_order(self) -> Iterator[tuple[int, int, Flagged]]:
        """Every window with its flags, in order, read by a pool of threads a few windows ahead.

        Only a few ahead, so memory stays bounded; none are left running when this stops."""
        workers = max(1, min(MERGE_READERS, available_cores()))
        pool = ThreadPoolExecutor(workers, thread_name_prefix="cloudmask-merge")
        pending: deque = deque()
        try:
            for lo, hi in self.windows():
                pending.append((lo, hi, pool.submit(self.read, lo, hi)))
                if len(pending) > 2 * workers:
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
            # A probability raster's mask or alpha band, where it has one, marks nodata too.
            readers.update(
                {f"{k} validity": validity_band(readers[k]) for k in PROBABILITY_KEYS if readers.get(k) is not None}
            )
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

    def read(self, lo: int, hi: int) -> Flagged:
        """(cloud, shadow, valid, sources) flags of rows [lo, hi)."""
        width = self.plan.grid.width
        readers = self._readers()
        block = {k: (_read_rows(readers[k], lo, hi, width) if readers[k] else None) for k in self.paths}
        if "flags" in block:
            packed = block["flags"]
            if packed is None:
                raise RuntimeError("the flags raster was not read")
            cloud, shadow, valid = (packed & CLOUD_BIT) != 0, (packed & SHADOW_BIT) != 0, (packed & VALID_BIT) != 0
            sources = packed & SOURCE_BITS if self.plan.provenance else None
            product_rows = block.get("product")
            if product_rows is not None:  # coarse decisions: the product mask joins here
                settings = self.plan.settings
                product = merge.decode_product_mask(
                    product_rows, settings.product_kind, self.product_nodata, settings.product_probability_threshold
                )
                cloud |= product.cloud & valid
                shadow |= product.shadow & valid
                if sources is not None:  # the models' bits came with the flags; the product's join here
                    no_model = np.zeros_like(valid)
                    sources |= provenance.source_bits(valid, product, no_model, no_model)
            return cloud, shadow, valid, sources
        for key in PROBABILITY_KEYS:
            mask_band = readers.get(f"{key} validity")
            hidden = None if mask_band is None else read_array_of(mask_band, 0, lo, width, hi - lo) == 0
            block[key] = _probabilities(
                block[key], self.nodata.get(key), hidden, f"{key} probability raster '{self.paths[key]}'"
            )
        return flag_block(
            self.plan, block["cloud"], block["shadow"], block["product"], self.product_nodata, probabilities_ready=True
        )


def _read_rows(ds, lo: int, hi: int, width: int) -> np.ndarray:
    """Rows ``lo:hi`` of a raster on the grid, or of a coarse one brought onto it (nearest)."""
    return ds.read(lo, hi) if isinstance(ds, NearestRows) else read_array(ds, 0, lo, width, hi - lo)


def _step(feedback: Feedback, fraction: float) -> None:
    feedback.progress(fraction)
    if feedback.cancelled():
        raise Cancelled("Cancelled by the user.")


class SourceOutput:
    """The ``SOURCE`` raster of a merge (provenance.py) and its category counts.

    Written window by window with the mask, from the source bits the flags carry; with
    ``MIN_AREA`` the first pass keeps the bits with the dilated mask in temporary byte
    rasters and the last pass settles the categories against the final mask. No extra
    pass over the probabilities, and memory bounded as the mask's."""

    def __init__(self, path: str):
        self.path = path
        self.counts = provenance.SourceCounts()


@limited_block_cache()  # bounded memory on a full tile: see core/raster.py
def merge_to_mask(
    plan: MergePlan,
    cloud: str | None,
    shadow: str | None,
    mask_path: str,
    feedback: Feedback | None = None,
    flags: str | None = None,
    source: SourceOutput | None = None,
) -> merge.Fractions:
    """Stream the merge in row windows: flags, dilation, categories, ``MIN_AREA``.

    ``flags``: a :class:`FlagRecorder`'s raster, read instead of the probabilities;
    ``source``: also write which source flagged each pixel (the plan must have
    ``provenance``, so that the flags carry the source bits)."""
    feedback = feedback or Feedback()
    if source is not None and not plan.provenance:
        raise ValueError("a SOURCE output needs a plan with provenance")
    coarse = bool(flags and not _on_grid(flags, plan.grid))
    if flags and not coarse:
        return _merge(plan, {"flags": flags}, None, mask_path, feedback, source)
    with tempfile.TemporaryDirectory(prefix="cloudmask-") as tmp:
        product, product_nodata = None, None
        if plan.product_mask:
            product, product_nodata = product_mask_on_grid(plan.product_mask, plan.grid, tmp)
        inputs = {"flags": flags} if coarse else {"cloud": cloud, "shadow": shadow}
        return _merge(plan, {**inputs, "product": product}, product_nodata, mask_path, feedback, source)


def _on_grid(flags: str, grid) -> bool:
    """Whether a FlagRecorder's raster is on the grid, or on a processing resolution's coarser grid.

    On the grid it holds the product mask too; on the coarser grid, the models' decisions only."""
    ds = open_dataset(flags)
    return (ds.RasterXSize, ds.RasterYSize) == (grid.width, grid.height)


def _merge(
    plan: MergePlan,
    paths: dict[str, str | None],
    product_nodata: float | None,
    mask_path: str,
    feedback: Feedback,
    source: SourceOutput | None,
) -> merge.Fractions:
    flags = _Flags(plan, paths, product_nodata)
    try:
        return _write_mask(plan, flags, mask_path, feedback, source)
    finally:
        flags.close()


def _write_mask(
    plan: MergePlan, flags: _Flags, mask_path: str, feedback: Feedback, source: SourceOutput | None
) -> merge.Fractions:
    """The windows the flags give, finished into the mask and SOURCE (:class:`_Final`).

    With ``MIN_AREA`` they go through the dilated mask first (:class:`_MinArea`), as it acts on that."""
    final = _Final(plan, mask_path, source)
    done = False
    try:
        if plan.settings.min_area <= 1:
            _write_windows(flags, final, feedback)
        else:
            with tempfile.TemporaryDirectory(prefix="cloudmask-") as tmp:
                min_area = _MinArea(plan, tmp)
                try:
                    _write_windows(flags, min_area, Share(feedback, 0.0, 0.5))
                    min_area.apply(final, Share(feedback, 0.5, 1.0))
                finally:
                    min_area.dilated.close(listed=False)
        done = True
    finally:
        final.rasters.close(listed=done)  # a failed run's outputs are discarded: nothing to list
    return final.fractions


class _Final:
    """The mask and, with ``SOURCE``, its source categories: written window by window and counted.

    What is counted: the mask's fractions, the SOURCE categories' pixels."""

    def __init__(self, plan: MergePlan, mask_path: str, source: SourceOutput | None):
        self.mode = plan.settings.output_mode
        self.fractions = merge.Fractions()
        self.source = source
        binary = self.mode == "binary"
        mask = Classes(
            merge.BINARY_CATEGORY_NAMES if binary else merge.CATEGORY_NAMES,
            merge.BINARY_CATEGORY_COLOURS if binary else merge.CATEGORY_COLOURS,
        )
        if source is None:
            self.rasters = RowRasters(plan.grid, [mask_path], [merge.NODATA], [mask])
        else:
            self.rasters = RowRasters(
                plan.grid,
                [mask_path, source.path],
                [merge.NODATA, provenance.NODATA],
                [mask, Classes(provenance.NAMES, provenance.COLOURS)],
            )

    def write(self, row: int, mask: np.ndarray, bits: np.ndarray | None, dilated: np.ndarray | None = None) -> None:
        """A window of the final mask from ``row`` down.

        ``bits``: its source bits (None: no SOURCE), ``dilated``: the mask before the minimum area
        (None: the same)."""
        self.fractions.add(mask, self.mode)
        if self.source is None:
            self.rasters.write(row, mask)
            return
        if bits is None:  # merge_to_mask refuses a SOURCE output without provenance
            raise RuntimeError("a SOURCE output without the flags' source bits")
        categories = (
            provenance.categories(bits, mask) if dilated is None else provenance.categories(bits, dilated, mask)
        )
        self.source.counts.add(categories)
        self.rasters.write(row, mask, categories)


class _MinArea:
    """FarmVibes.AI's ``min_area`` (``merge.apply_min_area``) on the dilated mask, read in row windows.

    The first pass writes the dilated mask here (with its source bits, for SOURCE) and :meth:`apply`
    reads it back in row windows: the flagged components' sizes (pass 1), then the sizes of the clear
    ones left after the small flagged ones are cleared, and what they touch (pass 2), then the final
    windows (pass 3). Components are joined across window seams (``patches.py``)."""

    def __init__(self, plan: MergePlan, folder: str):
        self.plan = plan
        paths, nodata = [os.path.join(folder, "dilated.tif")], [float(merge.NODATA)]
        if plan.provenance:  # the source bits as the flags carry them (0: none)
            paths.append(os.path.join(folder, "source_bits.tif"))
            nodata.append(0)
        self.dilated = RowRasters(plan.grid, paths, nodata, options=FLAG_OPTIONS)
        self.flagged = PatchAreas()
        self.holes = PatchAreas(touch_masks=2)

    def write(self, row: int, mask: np.ndarray, bits: np.ndarray | None) -> None:
        """A window of the dilated mask from ``row`` down, and its source bits (None: no SOURCE)."""
        if bits is None:
            self.dilated.write(row, mask)
        else:
            self.dilated.write(row, mask, bits)

    def apply(self, final: _Final, feedback: Feedback) -> None:
        """The three passes over the dilated mask, the last writing ``final``."""
        settings = self.plan.settings
        grid, min_area = self.plan.grid, settings.min_area
        binary = settings.output_mode == "binary"
        step = max(1, self.plan.window_rows)
        windows = [(lo, min(grid.height, lo + step)) for lo in range(0, grid.height, step)]
        flagged, holes = self.flagged, self.holes
        for k, (lo, hi) in enumerate(windows):
            flagged.add(_flagged(self._read(lo, hi)[0]))
            _step(feedback, (k + 1) / (3 * len(windows)))
        flagged.finish(min_area)
        for k, (lo, hi) in enumerate(windows):
            values = _cleared(self._read(lo, hi)[0], flagged, k)
            holes.add(values == merge.CLEAR, [values == merge.CLOUD, values == merge.SHADOW])
            _step(feedback, (len(windows) + k + 1) / (3 * len(windows)))
        holes.finish(min_area)
        for k, (lo, hi) in enumerate(windows):
            dilated, bits = self._read(lo, hi)
            values = _cleared(dilated.copy(), flagged, k)
            small, touches = holes.small(values == merge.CLEAR, k)
            values[small] = merge.fill_value(touches[..., 0][small], touches[..., 1][small], binary)
            final.write(lo, values, bits, dilated)
            _step(feedback, (2 * len(windows) + k + 1) / (3 * len(windows)))

    def _read(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Rows ``lo:hi`` of the dilated mask, and their source bits (None without SOURCE)."""
        dilated, *bits = self.dilated.read(lo, hi)
        return dilated, bits[0] if bits else None


def _flagged(values: np.ndarray) -> np.ndarray:
    return (values == merge.CLOUD) | (values == merge.SHADOW)


def _cleared(values: np.ndarray, flagged: PatchAreas, window: int) -> np.ndarray:
    """A window of the dilated mask with its small flagged components made clear."""
    mask = _flagged(values)
    values[mask & ~flagged.kept(mask, window)] = merge.CLEAR
    return values


def _write_windows(flags: _Flags, out: _Final | _MinArea, feedback: Feedback) -> None:
    """Finish the windows in order (dilation, categories) and hand each to ``out`` with its source bits.

    The rows the next window's dilation reaches are kept. ``out`` gets the final
    mask, or (with ``MIN_AREA``) the dilated mask for :class:`_MinArea`. Only the
    reading is on the pool's threads: dilating the windows there too made a full tile's
    merge slower (5.1 s against 2.8 s on 16 cores, scripts/gpu_check.py), its many small
    steps taking turns on Python's lock."""
    grid, settings = flags.plan.grid, flags.plan.settings
    rows = _Rows(grid.width)
    halo = settings.dilation
    written = 0
    for _lo, hi, (cloud_f, shadow_f, valid, sources) in flags.in_order():
        rows.append(cloud_f, shadow_f, valid, sources)
        # Rows [written, ready) now have all the context their dilation needs.
        ready = grid.height if hi == grid.height else max(written, hi - halo)
        if ready > written:
            mask, bits = rows.finish(written, ready, halo, settings, grid.height)
            out.write(written, mask, bits)
            written = ready
        _step(feedback, hi / grid.height)


class _Rows:
    """The flagged rows still needed as dilation context, from row ``lo`` on.

    And their source bits, where the merge writes ``SOURCE``."""

    def __init__(self, width: int):
        self.lo = 0
        self.cloud = np.zeros((0, width), bool)
        self.shadow = np.zeros((0, width), bool)
        self.valid = np.zeros((0, width), bool)
        self.sources = np.zeros((0, width), np.uint8)

    def append(
        self, cloud: np.ndarray, shadow: np.ndarray, valid: np.ndarray, sources: np.ndarray | None = None
    ) -> None:
        self.cloud = np.concatenate([self.cloud, cloud])
        self.shadow = np.concatenate([self.shadow, shadow])
        self.valid = np.concatenate([self.valid, valid])
        if sources is not None:
            self.sources = np.concatenate([self.sources, sources])

    def finish(
        self, lo: int, hi: int, halo: int, settings: merge.MergeSettings, height: int
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The mask of rows [lo, hi) and their source bits (None: not recorded).

        Then forget the rows no later window needs."""
        a = max(self.lo, lo - halo)
        b = self.lo + len(self.valid)
        rows = slice(a - self.lo, b - self.lo)
        core = slice(lo - a, hi - a)
        mask = merge.finish(self.cloud[rows], self.shadow[rows], self.valid[rows][core], settings, (core, slice(None)))
        bits = self.sources[rows][core] if len(self.sources) else None
        keep = max(0, hi - halo - self.lo)
        self.cloud, self.shadow, self.valid = self.cloud[keep:], self.shadow[keep:], self.valid[keep:]
        self.sources = self.sources[keep:]
        self.lo += keep
        return mask, bits
