"""Small rasters written into a temp dir for tests."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, ogr, osr

TYPES = {
    np.dtype("uint16"): gdal.GDT_UInt16,
    np.dtype("uint8"): gdal.GDT_Byte,
    np.dtype("float32"): gdal.GDT_Float32,
    np.dtype("int16"): gdal.GDT_Int16,
}


def write_raster(
    path: Path,
    data: np.ndarray,
    descriptions=None,
    nodata=0,
    epsg: int | None = 32633,
    transform=(500000.0, 10.0, 0.0, 5000000.0, 0.0, -10.0),
    metadata=None,
) -> str:
    """``data`` is [bands, rows, cols] (or [rows, cols])."""
    if data.ndim == 2:
        data = data[None]
    bands, rows, cols = data.shape
    ds = gdal.GetDriverByName("GTiff").Create(str(path), cols, rows, bands, TYPES[data.dtype])
    if transform is not None:
        ds.SetGeoTransform(transform)
    if epsg is not None:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
        ds.SetProjection(srs.ExportToWkt())
    for i in range(bands):
        band = ds.GetRasterBand(i + 1)
        # Nodata first: GDAL >= 3.10 does not write blocks that hold only the nodata
        # value, so setting it after the data made all-zero blocks read back as nodata.
        if nodata is not None:
            band.SetNoDataValue(nodata)
        band.WriteArray(data[i])
        if descriptions:
            band.SetDescription(descriptions[i])
    for key, value in (metadata or {}).items():
        ds.SetMetadataItem(key, value)
    ds = None
    return str(path)


def read(path) -> np.ndarray:
    ds = gdal.Open(str(path))
    return ds.ReadAsArray()


def random_scene(rows: int, cols: int, bands: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(1, 10000, size=(bands, rows, cols), dtype=np.uint16)


@pytest.fixture(name="gdal_exceptions", params=["gdal-exceptions-off", "gdal-exceptions-on"])
def gdal_exceptions_fixture(request):
    """GDAL's process-wide exception mode both ways; yields True when exceptions are on.

    Off, as QGIS 3.22 leaves it, and on, as QGIS >= 3.40's Processing sets it when it loads
    (gdal, ogr and osr; GDAL 4 by default). The plugin must answer the same in both."""
    on = request.param.endswith("-on")
    before = [module.GetUseExceptions() for module in EXCEPTION_MODULES]
    _use_exceptions([on] * len(EXCEPTION_MODULES))
    try:
        yield on
    finally:
        _use_exceptions(before)


EXCEPTION_MODULES = (gdal, ogr, osr)


def _use_exceptions(wanted: list[bool]) -> None:
    """Set each module's mode.

    Each one that is on has an error handler on GDAL's stack and
    can only be turned off while on top of it, so turn them all off first, top down."""
    for _ in EXCEPTION_MODULES:
        for module in EXCEPTION_MODULES:
            if module.GetUseExceptions():
                with contextlib.suppress(RuntimeError):  # not on top yet
                    module.DontUseExceptions()
    for module, on in zip(EXCEPTION_MODULES, wanted):
        if on:
            module.UseExceptions()
