"""Raster input and output with GDAL: windowed reads and tiled compressed GeoTIFFs
(written under temporary names: see ``staging.py``).

GDAL is used without ``gdal.UseExceptions()``: that switch is process-wide and
QGIS code in the same process expects the default, so we check results and
read ``gdal.GetLastErrorMsg()`` ourselves.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from osgeo import gdal, gdal_array

from .errors import CloudMaskError

GTIFF_OPTIONS = ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", "COMPRESS=DEFLATE",
                 "BIGTIFF=IF_SAFER", "NUM_THREADS=2"]
# Probabilities hardly compress (their low bits are noise): DEFLATE's fastest level with
# the floating-point predictor is 25 % cheaper than the default level and the files 17 %
# smaller (4096^2 of ukis output: 0.57 s CPU, 50 MB vs 0.76 s, 60 MB).
FLOAT_OPTIONS = GTIFF_OPTIONS + ["PREDICTOR=3", "ZLEVEL=1"]
PROBABILITY_NODATA = -1.0


class RasterError(CloudMaskError, ValueError):
    """A raster cannot be used as given; the message says why and what to do."""


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


def open_dataset(source: str, what: str = "raster") -> gdal.Dataset:
    gdal.ErrorReset()
    ds = gdal.OpenEx(str(source), gdal.OF_RASTER | gdal.OF_VERBOSE_ERROR) if source else None
    if ds is None:
        detail = gdal.GetLastErrorMsg() or "not a raster GDAL can read"
        raise RasterError(f"Cannot open the {what} '{source}': {detail}. Check the path "
                          "and that the file is a raster (GeoTIFF, JP2, VRT ...).")
    return ds


def raster_info(source: str, what: str = "raster") -> RasterInfo:
    ds = open_dataset(source, what)
    bands = [ds.GetRasterBand(i + 1) for i in range(ds.RasterCount)]
    info = RasterInfo(
        source=str(source), width=ds.RasterXSize, height=ds.RasterYSize,
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
            "(e.g. Raster > Projections > Assign Projection, or gdal_translate -a_srs -a_ullr).")


class RowSource:
    """Reads rows of selected bands through a cache of row blocks, so each source row
    is read about once. Rows span the column window set by ``window`` (the whole
    width until then): the engine works in column stripes so that no buffer is as
    wide as a full Sentinel-2 tile."""

    def __init__(self, source: str, bands: list[int], window_rows: int = 256,
                 in_memory: bool = False):
        self.ds = open_dataset(source)
        self.bands = bands
        self.width = self.ds.RasterXSize
        self.height = self.ds.RasterYSize
        self.window_rows = self.height if in_memory else max(1, window_rows)
        self.dtype = self._dtype()
        self.window(0, self.width)

    def _dtype(self):
        code = self.ds.GetRasterBand(1).DataType
        return np.dtype(gdal_array.GDALTypeCodeToNumericTypeCode(code))

    def window(self, first_col: int, end_col: int) -> None:
        """Read columns ``[first_col, end_col)`` from now on (drops the cached rows)."""
        self.first_col, self.cols = first_col, end_col - first_col
        self._lo = 0
        self._block = np.empty((len(self.bands), 0, self.cols), dtype=self.dtype)

    def _read(self, lo: int, hi: int) -> np.ndarray:
        # All bands in one call: pixel-interleaved files decompress each block once.
        gdal.ErrorReset()
        data = self.ds.ReadAsArray(self.first_col, lo, self.cols, hi - lo, band_list=self.bands)
        if data is None:
            raise RasterError(f"Reading rows {lo}-{hi} failed: {gdal.GetLastErrorMsg()}")
        return data.reshape(len(self.bands), hi - lo, self.cols)

    def rows(self, lo: int, hi: int) -> np.ndarray:
        """Real rows ``[lo, hi)`` (inside the raster) of the window, as ``[bands, rows, cols]``."""
        cached_hi = self._lo + self._block.shape[1]
        if lo < self._lo or hi > cached_hi:
            new_hi = min(self.height, max(hi, lo + self.window_rows))
            keep_lo, keep_hi = max(lo, self._lo), min(new_hi, cached_hi)
            if keep_lo < keep_hi and keep_lo == lo:
                block = np.empty((len(self.bands), new_hi - lo, self.cols), self.dtype)
                block[:, :keep_hi - lo] = self._block[:, keep_lo - self._lo:keep_hi - self._lo]
                self._block = None  # free the old rows before reading the new ones
                if keep_hi < new_hi:
                    block[:, keep_hi - lo:] = self._read(keep_hi, new_hi)
                self._block = block
            else:
                self._block = None
                self._block = self._read(lo, new_hi)
            self._lo = lo
        return self._block[:, lo - self._lo:hi - self._lo]

    def close(self) -> None:
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


def create_geotiff(path: str, like: RasterInfo, bands: int, data_type: int, nodata: float,
                   width: int | None = None, height: int | None = None,
                   geotransform: tuple | None = None) -> gdal.Dataset:
    driver = gdal.GetDriverByName("GTiff")
    gdal.ErrorReset()
    ds = driver.Create(path, width or like.width, height or like.height, bands, data_type,
                       options=FLOAT_OPTIONS if data_type == gdal.GDT_Float32 else GTIFF_OPTIONS)
    if ds is None:
        raise RasterError(f"Cannot create '{path}': {gdal.GetLastErrorMsg()}")
    ds.SetGeoTransform(geotransform or like.geotransform)
    if like.projection:
        ds.SetProjection(like.projection)
    for i in range(bands):
        ds.GetRasterBand(i + 1).SetNoDataValue(nodata)
    return ds


def set_categories(ds: gdal.Dataset, names: dict[int, str], colours: dict[int, tuple]) -> None:
    band = ds.GetRasterBand(1)
    table = gdal.ColorTable()
    for value, rgba in colours.items():
        table.SetColorEntry(int(value), tuple(int(c) for c in rgba))
    band.SetRasterColorTable(table)
    band.SetRasterColorInterpretation(gdal.GCI_PaletteIndex)
    top = max(names)
    band.SetRasterCategoryNames([names.get(i, "") for i in range(top + 1)])
