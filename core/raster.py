"""Raster input and output with GDAL: windowed reads and tiled compressed GeoTIFFs.

The GeoTIFFs are written under temporary names: see ``staging.py``.

GDAL's exception mode is not ours to choose: ``gdal.UseExceptions()`` is
process-wide, QGIS >= 3.40's Processing turns it on when it loads (GDAL 4 makes it
the default) and 3.22 leaves it off. Calls that can fail go through
``gdal_try``, which gives the same answer either way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
from osgeo import gdal, gdal_array

from .errors import RasterError

# Blocks are compressed on every core: a full tile's two probability rasters are about a
# gigabyte of float32, which one thread compresses slower than a GPU computes them. The
# files stay the same byte for byte (measured: a full tile's mask with 2 and 8 threads).
GTIFF_OPTIONS = [
    "TILED=YES",
    "BLOCKXSIZE=256",
    "BLOCKYSIZE=256",
    "COMPRESS=DEFLATE",
    "BIGTIFF=IF_SAFER",
    "NUM_THREADS=ALL_CPUS",
]
# Probabilities hardly compress (their low bits are noise): DEFLATE's fastest level with
# the floating-point predictor is 25 % cheaper than the default level and the files 17 %
# smaller (4096^2 of ukis output: 0.57 s CPU, 50 MB vs 0.76 s, 60 MB).
FLOAT_OPTIONS = GTIFF_OPTIONS + ["PREDICTOR=3", "ZLEVEL=1"]
PROBABILITY_NODATA = -1.0


@dataclass(frozen=True)
class RasterInfo:
    source: str
    width: int
    height: int
    band_count: int
    descriptions: tuple[str, ...]
    nodata: tuple[float | None, ...]
    geotransform: tuple[float, ...]
    projection: str
    data_type: str
    metadata: dict = field(default_factory=dict, compare=False)

    @property
    def has_geotransform(self) -> bool:
        return self.geotransform != (0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    @property
    def pixel_size(self) -> float:
        return abs(self.geotransform[1])

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(min x, min y, max x, max y) of the raster in its own CRS (north-up grids)."""
        x0, dx, _, y0, _, dy = self.geotransform
        xs, ys = (x0, x0 + dx * self.width), (y0, y0 + dy * self.height)
        return min(xs), min(ys), max(xs), max(ys)


_Result = TypeVar("_Result")


def gdal_try(call: Callable[..., _Result], *args, **kwargs) -> tuple[_Result | None, str]:
    """Run one GDAL call; return ``(result, "")``, or ``(None, GDAL's message)`` when it failed.

    The same with GDAL's exceptions on (a failure raises RuntimeError) or off (it
    returns None and leaves the message in ``GetLastErrorMsg``). We never switch the
    mode, not even for a moment: it is process-wide and QGIS runs algorithms in threads.
    """
    gdal.ErrorReset()
    try:
        result = call(*args, **kwargs)
    except RuntimeError as err:
        return None, str(err) or gdal.GetLastErrorMsg()
    return result, (gdal.GetLastErrorMsg() if result is None else "")


def opens_as_raster(source: str) -> bool:
    """True when GDAL opens ``source`` as a raster: a file, or a source with GDAL's own syntax.

    Such as ``/vsizip/archive.zip/scene.tif``, ``GPKG:file.gpkg:table``, a subdataset."""
    gdal.PushErrorHandler("CPLQuietErrorHandler")  # a "no" is an answer here, not an error
    try:
        ds, _ = gdal_try(gdal.OpenEx, source, gdal.OF_RASTER)
    finally:
        gdal.PopErrorHandler()
    return ds is not None


def read_failed(what: str, detail: str) -> RasterError:
    """A failed read as a user reads it: GDAL names the file and the block, not the cause or the fix."""
    return RasterError(
        f"Reading {what} failed: {(detail or 'unknown GDAL error').rstrip('. ')}. The file is "
        "damaged or incomplete (an interrupted copy or download?), or its disk went away: "
        "copy or download it again."
    )


def write_array(ds: gdal.Dataset, data: np.ndarray, col: int = 0, row: int = 0) -> None:
    """Write a block into band 1.

    A failed write (a full disk, a lost network drive) is a RasterError with exceptions on
    or off; off, GDAL would only return an error code."""
    code, detail = gdal_try(ds.GetRasterBand(1).WriteArray, data, col, row)
    if code is None or code != gdal.CE_None:
        raise RasterError(
            f"Writing '{ds.GetDescription()}' failed: {detail or gdal.GetLastErrorMsg()}. "
            "Check that the disk has free space and the output folder is still there."
        )


def read_array(ds: gdal.Dataset, col: int, row: int, width: int, height: int) -> np.ndarray:
    """Read a block of band 1; a failed read is a RasterError with exceptions on or off."""
    data, detail = gdal_try(ds.GetRasterBand(1).ReadAsArray, col, row, width, height)
    if data is None:
        raise read_failed(f"'{ds.GetDescription()}'", detail)
    return data


def read_array_of(band: gdal.Band, col: int, row: int, width: int, height: int) -> np.ndarray:
    data, detail = gdal_try(band.ReadAsArray, col, row, width, height)
    if data is None:
        raise read_failed(f"the mask of rows {row}-{row + height}", detail)
    return data


def validity_band(ds: gdal.Dataset, band: int = 1) -> gdal.Band | None:
    """The band whose 0 marks the band's pixels without data, where a nodata value does not.

    GDAL's mask (a .msk file, a GeoTIFF's internal mask, a byte alpha band), or a last band
    that is alpha of another type (gdalwarp -dstalpha makes it uint16 for uint16 bands,
    which GDAL does not take as a mask). None: nothing but nodata values marks them."""
    flags = ds.GetRasterBand(band).GetMaskFlags()
    if not flags & (gdal.GMF_ALL_VALID | gdal.GMF_NODATA):
        return ds.GetRasterBand(band).GetMaskBand()
    if ds.RasterCount > 1 and is_alpha(ds, ds.RasterCount):
        return ds.GetRasterBand(ds.RasterCount)
    return None


def is_alpha(ds: gdal.Dataset, band: int) -> bool:
    return ds.GetRasterBand(band).GetColorInterpretation() == gdal.GCI_AlphaBand


def open_dataset(source: str, what: str = "raster") -> gdal.Dataset:
    flags = gdal.OF_RASTER | gdal.OF_VERBOSE_ERROR
    ds, detail = gdal_try(gdal.OpenEx, str(source), flags) if source else (None, "")
    if ds is None:
        detail = (detail or "not a raster GDAL can read").rstrip(". ")  # GDAL's own text may end in a full stop
        raise RasterError(
            f"Cannot open the {what} '{source}': {detail}. Check the path "
            "and that the file is a raster (GeoTIFF, JP2, VRT ...)."
        )
    return ds


def raster_info(source: str, what: str = "raster") -> RasterInfo:
    ds = open_dataset(source, what)
    bands = [ds.GetRasterBand(i + 1) for i in range(ds.RasterCount)]
    info = RasterInfo(
        source=str(source),
        width=ds.RasterXSize,
        height=ds.RasterYSize,
        band_count=ds.RasterCount,
        descriptions=tuple(b.GetDescription() or "" for b in bands),
        nodata=tuple(b.GetNoDataValue() for b in bands),
        geotransform=tuple(ds.GetGeoTransform(can_return_null=True) or (0.0, 1.0, 0.0, 0.0, 0.0, 1.0)),
        projection=ds.GetProjection() or "",
        data_type=gdal.GetDataTypeName(bands[0].DataType) if bands else "",
        metadata=ds.GetMetadata() or {},
    )
    return info


def require_georeference(info: RasterInfo, what: str) -> None:
    if not info.has_geotransform or not info.projection:
        missing = "coordinate reference system" if info.has_geotransform else "georeference (geotransform)"
        raise RasterError(
            f"The {what} '{info.source}' has no {missing}, so its pixels cannot be placed on "
            "the map or matched with the other inputs. Assign a CRS and georeference "
            "(e.g. Raster > Projections > Assign Projection, or gdal_translate -a_srs -a_ullr)."
        )


def require_geotiff_name(path: str) -> None:
    """Refuse an output named for another format (mask.gpkg, mask.png, mask.vrt).

    Masks, probabilities and band stacks are written as GeoTIFF: under such a name the file
    would be a GeoTIFF that says it is something else (a GeoPackage no GeoPackage tool
    can open, a PNG no image viewer shows). A name without an extension, or one no GDAL
    format claims, stays a GeoTIFF.
    """
    extension = os.path.splitext(path)[1].lower().lstrip(".")
    if extension in ("", "tif", "tiff"):
        return
    for i in range(gdal.GetDriverCount()):
        driver = gdal.GetDriver(i)
        claimed = (driver.GetMetadataItem(gdal.DMD_EXTENSIONS) or "").lower().split()
        if driver.ShortName != "GTiff" and driver.GetMetadataItem(gdal.DCAP_RASTER) == "YES" and extension in claimed:
            raise RasterError(
                f"The output '{path}' has the extension of another format ({driver.LongName}), but "
                "it is written as GeoTIFF. Give it a .tif name (Raster > "
                "Conversion > Translate converts the result to another format)."
            )


def require_north_up(info: RasterInfo, what: str) -> None:
    """Refuse a grid that is rotated or whose rows run south to north (or columns east to west).

    Sentinel-2 grids are north-up; the product mask, the extent and a processing
    resolution are warped onto a north-up grid, so on any other they would come out
    shifted or upside down."""
    _, dx, row_rotation, _, column_rotation, dy = info.geotransform
    if not info.has_geotransform:
        return  # nothing to place: require_georeference says what is missing where it matters
    if row_rotation or column_rotation or dx <= 0 or dy >= 0:
        how = "rotated" if row_rotation or column_rotation else "flipped (rows from south to north)"
        raise RasterError(
            f"The {what} '{info.source}' is not north-up: its grid is {how}, so the other inputs "
            "cannot be placed on it. Make a north-up copy first (Raster > Projections > Warp, or "
            f'gdalwarp "{info.source}" north_up.tif) and use that.'
        )


class RowSource:
    """Reads rows of selected bands through a cache of row blocks, so each source row is read about once.

    Rows span the column window set by ``window`` (the whole
    width until then): the engine works in column stripes so that no buffer is as
    wide as a full Sentinel-2 tile."""

    def __init__(
        self,
        source: str,
        bands: list[int],
        window_rows: int = 256,
        in_memory: bool = False,
        fill: list[float | None] | None = None,
    ):
        self.ds = open_dataset(source)
        self.bands = bands
        self.width: int = self.ds.RasterXSize
        self.height: int = self.ds.RasterYSize
        self.window_rows = self.height if in_memory else max(1, window_rows)
        self.dtype = self._dtype()
        # Where an alpha band or a mask says "no data", each band reads as its ``fill``
        # (its nodata; NaN in float bands), so that the engine sees nodata there.
        self.validity = validity_band(self.ds, bands[0]) if fill is not None else None
        self.fill = fill
        self.window(0, self.width)

    def _dtype(self):
        code = self.ds.GetRasterBand(1).DataType
        return np.dtype(gdal_array.GDALTypeCodeToNumericTypeCode(code))

    def window(self, first_col: int, end_col: int) -> None:
        """Read columns ``[first_col, end_col)`` from now on (drops the cached rows)."""
        self.first_col, self.cols = first_col, end_col - first_col
        self._lo = 0
        # None only while rows() swaps blocks (so the old rows are freed first) and after close().
        self._block: np.ndarray | None = np.empty((len(self.bands), 0, self.cols), dtype=self.dtype)

    def _read(self, lo: int, hi: int) -> np.ndarray:
        # All bands in one call: pixel-interleaved files decompress each block once.
        data, detail = gdal_try(self.ds.ReadAsArray, self.first_col, lo, self.cols, hi - lo, band_list=self.bands)
        if data is None:
            raise read_failed(f"rows {lo}-{hi}", detail)
        data = data.reshape(len(self.bands), hi - lo, self.cols)
        if self.validity is not None:
            self._fill_hidden(data, lo, hi)
        return data

    def _fill_hidden(self, data: np.ndarray, lo: int, hi: int) -> None:
        if self.fill is None:
            raise RuntimeError("a validity band without fill values")
        hidden = read_array_of(self.validity, self.first_col, lo, self.cols, hi - lo) == 0
        if hidden.any():
            for plane, value in zip(data, self.fill):
                if value is not None or data.dtype.kind == "f":
                    plane[hidden] = np.nan if value is None else value

    def rows(self, lo: int, hi: int) -> np.ndarray:
        """Real rows ``[lo, hi)`` (inside the raster) of the window, as ``[bands, rows, cols]``."""
        if self._block is None:
            raise RuntimeError("rows() after close()")
        cached_hi = self._lo + self._block.shape[1]
        if lo < self._lo or hi > cached_hi:
            new_hi = min(self.height, max(hi, lo + self.window_rows))
            keep_lo, keep_hi = max(lo, self._lo), min(new_hi, cached_hi)
            if keep_lo < keep_hi and keep_lo == lo:
                block = np.empty((len(self.bands), new_hi - lo, self.cols), self.dtype)
                block[:, : keep_hi - lo] = self._block[:, keep_lo - self._lo : keep_hi - self._lo]
                self._block = None  # free the old rows before reading the new ones
                if keep_hi < new_hi:
                    block[:, keep_hi - lo :] = self._read(keep_hi, new_hi)
                self._block = block
            else:
                self._block = None
                self._block = self._read(lo, new_hi)
            self._lo = lo
        return self._block[:, lo - self._lo : hi - self._lo]

    def close(self) -> None:
        self.validity = None
        self.ds = None
        self._block = None


BLOCK_CACHE_BYTES = 48 << 20


@contextmanager
def limited_block_cache(limit: int = BLOCK_CACHE_BYTES):
    """Cap GDAL's block cache while a run streams, restoring it afterwards.

    GDAL keeps written and read blocks in a process-wide cache of 5 % of RAM by
    default (1.2 GB on 24 GB): on a full Sentinel-2 tile the probability outputs
    (480 MB each) would sit there until the end. With a cap, finished blocks are
    written out as newer ones arrive. 48 MB holds a row of blocks of every output
    (11 MB each on a full tile); measured on a full tile it cut the peak by 60 MB
    at no cost in time. Only ever lowers the cap (a user's smaller GDAL_CACHEMAX
    stays). Usable as a decorator.
    """
    before = gdal.GetCacheMax()
    if before > limit:
        gdal.SetCacheMax(limit)
    try:
        yield
    finally:
        if before > limit:
            gdal.SetCacheMax(before)


def create_geotiff(
    path: str,
    like: RasterInfo,
    bands: int,
    data_type: int,
    nodata: float,
    width: int | None = None,
    height: int | None = None,
    geotransform: tuple | None = None,
    options: list[str] | None = None,
) -> gdal.Dataset:
    """A tiled GeoTIFF on ``like``'s grid; compressed as our outputs are, unless ``options``."""
    if options is None:
        options = FLOAT_OPTIONS if data_type == gdal.GDT_Float32 else GTIFF_OPTIONS
    driver = gdal.GetDriverByName("GTiff")
    ds, detail = gdal_try(
        driver.Create, path, width or like.width, height or like.height, bands, data_type, options=options
    )
    if ds is None:
        raise RasterError(f"Cannot create '{path}': {detail}")
    ds.SetGeoTransform(geotransform or like.geotransform)
    if like.projection:
        ds.SetProjection(like.projection)
    for i in range(bands):
        ds.GetRasterBand(i + 1).SetNoDataValue(nodata)
    return ds


def set_categories(ds: gdal.Dataset, names: dict[int, str], colours: dict[int, tuple]) -> None:
    """Colour table and class names for the classes, not for the band's nodata value.

    A byte GeoTIFF's own colour map always has 256 entries (the TIFF format), which
    QGIS lists as 256 legend rows when the file is opened later: call
    :func:`list_only_the_classes` once the file is closed.
    """
    band = ds.GetRasterBand(1)
    band.SetRasterColorTable(_class_table(band, colours))
    band.SetRasterColorInterpretation(gdal.GCI_PaletteIndex)
    top = max(value for value in names if value != band.GetNoDataValue())
    band.SetRasterCategoryNames([names.get(i, "") for i in range(top + 1)])


def list_only_the_classes(path: str, colours: dict[int, tuple]) -> None:
    """Give a closed mask a colour table of its classes only, in its GDAL sidecar (.aux.xml).

    GDAL reads the sidecar's table before the TIFF's 256-entry map, so QGIS shows one
    legend row per class; the TIFF keeps its own map for tools that read the .tif alone.
    A dataset opened read-only stores what is set in the sidecar.
    """
    ds = gdal.Open(path)
    band = ds.GetRasterBand(1)
    band.SetRasterColorTable(_class_table(band, colours))
    ds = None


def _class_table(band, colours: dict[int, tuple]) -> gdal.ColorTable:
    table = gdal.ColorTable()
    for value in sorted(v for v in colours if v != band.GetNoDataValue()):
        table.SetColorEntry(int(value), tuple(int(c) for c in colours[value]))
    return table


@dataclass(frozen=True)
class Classes:
    """The classes of a category raster: their names and colours (see :func:`set_categories`)."""

    names: dict[int, str]
    colours: dict[int, tuple]


class RowRasters:
    """One-band byte rasters on one grid, written together one full-width row window at a time.

    A windowed step writes several rasters window by window (the merge: the mask and its
    SOURCE raster, or the dilated mask and its source bits for later passes to read back):
    here they are created, written, read back and closed, in one place. A raster with
    ``Classes`` gets them before any block is written (on a wide raster GDAL has flushed
    blocks by the end, and a GeoTIFF's palette tags can no longer be set then) and, once
    closed, a table of only those classes (:func:`list_only_the_classes`).
    """

    def __init__(
        self,
        grid: RasterInfo,
        paths: Sequence[str],
        nodata: Sequence[float],
        classes: Sequence[Classes | None] = (),
        options: list[str] | None = None,
    ):
        self.paths = paths
        self.classes = classes or [None] * len(paths)
        self.datasets = [
            create_geotiff(path, grid, 1, gdal.GDT_Byte, value, options=options) for path, value in zip(paths, nodata)
        ]
        self.width = grid.width
        for ds, found in zip(self.datasets, self.classes):
            if found is not None:
                set_categories(ds, found.names, found.colours)

    def write(self, row: int, *windows: np.ndarray) -> None:
        """A window of each raster, in the order of their paths, from ``row`` down."""
        for ds, values in zip(self.datasets, windows):
            write_array(ds, values, 0, row)

    def read(self, lo: int, hi: int) -> list[np.ndarray]:
        """Rows ``lo:hi`` of each raster, as written so far."""
        return [read_array(ds, 0, lo, self.width, hi - lo) for ds in self.datasets]

    def close(self, listed: bool = True) -> None:
        """Every window on disk and the rasters closed; then the classes of each category raster listed.

        The classes are not listed when ``listed`` is False (a run that failed)."""
        for ds in self.datasets:
            ds.FlushCache()
        self.datasets = []
        if listed:
            for path, found in zip(self.paths, self.classes):
                if found is not None:
                    list_only_the_classes(path, found.colours)
