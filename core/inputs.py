"""The Sentinel-2 raster as a run sees it.

It is checked once, with its processing level, radiometric offset and band names."""

from __future__ import annotations

import numpy as np
from osgeo import gdal

from . import bands as band_names
from .raster import (
    RasterError,
    RasterInfo,
    is_alpha,
    open_dataset,
    raster_info,
    require_georeference,
    require_north_up,
)

LEVEL_KEYS = ("PROCESSING_LEVEL", "PRODUCT_TYPE")
OFFSET_KEYS = ("BOA_ADD_OFFSET", "RADIO_ADD_OFFSET")

# Reflectance rarely exceeds 1 (bright cloud, snow: up to about 1.5); digital numbers
# of any real scene go far beyond this.
REFLECTANCE_CEILING = 3.0


def processing_level(info: RasterInfo, names: list[str] | None = None) -> str:
    """L1C or L2A from the raster's metadata.

    When it does not say: L1C if the raster has B10 (L2A products have none, so a stack of all
    13 bands is L1C), else L2A (FarmVibes.AI's input). ``names``: the raster's band names
    (None: detected from the raster)."""
    for key in LEVEL_KEYS:
        value = str(info.metadata.get(key, "")).upper()
        if "1C" in value:
            return "L1C"
        if "2A" in value:
            return "L2A"
    if names is None:
        try:
            names = band_names.detect_bands(info.descriptions)
        except band_names.BandError:
            names = []
    return "L1C" if "B10" in names else "L2A"


def radiometric_offset(info: RasterInfo) -> float:
    """The offset added to digital numbers since processing baseline 04.00 (0 when not recorded)."""
    for key in OFFSET_KEYS:
        if key in info.metadata:
            try:
                return float(info.metadata[key])
            except ValueError:
                pass
    return 0.0


def read_sentinel2(source: str, bands: str = "") -> tuple[RasterInfo, list[str]]:
    """Open and check the Sentinel-2 raster; its band names (given, else detected)."""
    info = raster_info(source, "Sentinel-2 raster")
    require_georeference(info, "Sentinel-2 raster")
    require_north_up(info, "Sentinel-2 raster")
    require_measurements(info)
    descriptions = info.descriptions
    if info.band_count > 1 and is_alpha(open_dataset(source), info.band_count):
        descriptions = descriptions[:-1]  # an alpha band (gdalwarp -dstalpha) marks nodata: not a Sentinel-2 band
    return info, band_names.detect_bands(descriptions, bands)


def require_measurements(info: RasterInfo) -> None:
    """Refuse 8-bit rasters and reflectance (0..1).

    Sentinel-2 values (0..10000 and more) do not fit in a byte, so an 8-bit raster is a picture
    (an RGB rendering, a quicklook) and any mask from it would be silently wrong. Reflectance is
    refused because the models read digital numbers."""
    if info.data_type == "Byte":
        raise RasterError(
            f"The Sentinel-2 raster '{info.source}' is 8-bit ({info.band_count} bands of Byte): that is a "
            "picture such as an RGB rendering, not Sentinel-2 measurements, and the models would give a "
            "wrong mask. Use the Sentinel-2 bands themselves: digital numbers (uint16, as in the .SAFE "
            "product)."
        )
    if info.data_type.startswith("Float") and _largest_value(info.source) <= REFLECTANCE_CEILING:
        raise RasterError(
            f"The Sentinel-2 raster '{info.source}' holds values of at most {REFLECTANCE_CEILING:g}: that "
            "is reflectance (0..1), but the models read Sentinel-2 digital numbers (reflectance x 10000), "
            "so the mask would be wrong. Multiply the bands by 10000 (e.g. Raster Calculator or "
            "gdal_calc.py) and run again."
        )


def _largest_value(source: str) -> float:
    """The first band's largest value, from GDAL's quick sample (inf when unknown).

    Unknown is not an error: an all-nodata raster is valid and gets an all-nodata mask."""
    ds = open_dataset(source)  # kept referenced while its band is used
    gdal.PushErrorHandler("CPLQuietErrorHandler")  # "no valid pixels" is an answer here, not an error
    try:
        low_high = ds.GetRasterBand(1).ComputeRasterMinMax(True)
    except RuntimeError:
        low_high = None
    finally:
        gdal.PopErrorHandler()
    if not low_high or not np.isfinite(low_high[1]):
        return float("inf")
    return float(low_high[1])
