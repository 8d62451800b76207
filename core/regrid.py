"""Rasters brought onto the Sentinel-2 raster's grid: the product mask (nearest,
from any CRS, resolution or extent) and probabilities computed at a coarser
processing resolution (bilinear)."""

from __future__ import annotations

import math
import os

from osgeo import gdal, osr

from .raster import FLOAT_OPTIONS, RasterError, RasterInfo, gdal_try, raster_info, require_georeference

# Points per edge when a footprint is carried into another CRS: edges of a UTM grid are
# curves in EPSG:4326, and their extreme may lie between the corners.
DENSIFY_POINTS = 21


def footprint(info: RasterInfo, to_wkt: str) -> tuple[float, float, float, float]:
    """(min x, min y, max x, max y) of the raster in the CRS ``to_wkt`` (its own when empty)."""
    if not (info.projection and to_wkt):
        return info.bounds
    src, dst = osr.SpatialReference(), osr.SpatialReference()
    src.ImportFromWkt(info.projection)
    dst.ImportFromWkt(to_wkt)
    for sr in (src, dst):
        sr.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    if src.IsSame(dst):
        return info.bounds
    return tuple(osr.CoordinateTransformation(src, dst).TransformBounds(*info.bounds, DENSIFY_POINTS))


def check_product_mask(product: str, grid: RasterInfo) -> RasterInfo:
    """Refuse, before any work, a product mask that cannot be placed on the grid."""
    info = raster_info(product, "product mask")
    require_georeference(info, "product mask")
    a = footprint(info, grid.projection)
    b = grid.bounds
    if a[0] >= b[2] or a[2] <= b[0] or a[1] >= b[3] or a[3] <= b[1]:
        raise RasterError(f"The product mask '{product}' does not overlap the Sentinel-2 raster. "
                          "Use the product mask of the same scene (or leave it empty).")
    return info


def product_mask_on_grid(product: str, grid: RasterInfo, folder: str) -> tuple[str, float | None]:
    """The product mask resampled (nearest) onto the grid, as a VRT; and its nodata.
    Band 1 is read from what this returns."""
    info = check_product_mask(product, grid)
    nodata = info.nodata[0]
    if on_the_grid(info, grid) and _validity_is_its_nodata(product):
        # Nearest resampling onto its own grid copies every pixel: read the file itself.
        # Through GDAL's warper each block cost as much as flagging it (1.7 s on a full tile).
        return product, nodata
    fill = nodata if nodata is not None else (65535 if info.data_type not in ("Byte",) else 254)
    path = os.path.join(folder, "product_on_grid.vrt")
    if info.band_count > 1:  # GDAL 3.6's Warp has no band selection: take band 1 first
        first = os.path.join(folder, "product_band1.vrt")
        done, detail = gdal_try(gdal.Translate, first, product, format="VRT", bandList=[1])
        if done is None:
            raise RasterError(f"Could not read the product mask: {detail}")
        product, done = first, None
    done, detail = gdal_try(gdal.Warp, path, product, format="VRT", outputBounds=grid.bounds, width=grid.width,
                            height=grid.height, dstSRS=grid.projection, resampleAlg="near",
                            srcNodata=nodata, dstNodata=fill)
    if done is None:
        raise RasterError(f"Could not resample the product mask: {detail}")
    done = None
    return path, fill


def on_the_grid(info: RasterInfo, grid: RasterInfo) -> bool:
    """Whether ``info``'s pixels are the grid's: same size, same geotransform (to a
    millionth of a pixel) and the same CRS."""
    if (info.width, info.height) != (grid.width, grid.height):
        return False
    pixel = max(abs(grid.geotransform[1]), abs(grid.geotransform[5]))
    if any(abs(a - b) > 1e-6 * pixel for a, b in zip(info.geotransform, grid.geotransform)):
        return False
    if not (info.projection and grid.projection):
        return info.projection == grid.projection
    a, b = osr.SpatialReference(), osr.SpatialReference()
    a.ImportFromWkt(info.projection)
    b.ImportFromWkt(grid.projection)
    return bool(a.IsSame(b))


def _validity_is_its_nodata(path: str) -> bool:
    """Whether band 1 marks its invalid pixels only by its nodata value (or has none):
    an alpha band or a mask file, which the warper honours, would be lost when the
    values are read as they are."""
    ds = gdal.OpenEx(path, gdal.OF_RASTER)
    flags = ds.GetRasterBand(1).GetMaskFlags() if ds is not None else None
    return flags in (gdal.GMF_ALL_VALID, gdal.GMF_NODATA)


def coarse_grid(info: RasterInfo, resolution: float) -> tuple[tuple[float, float, float, float], int, int]:
    """Bounds, width and height of the grid of ``resolution`` metres the models run on:
    anchored at the raster's top left corner and covering the whole raster, its last
    coarse pixels reaching past the edge. GDAL's own choice rounds the size, which left the
    last 10 m rows or columns uncovered (nodata in the mask) and a raster smaller than half
    a coarse pixel with no grid at all."""
    min_x, min_y, max_x, max_y = info.bounds
    # Rounded first: 2570 m / 10 m pixels must stay 257, not become 258.
    width = max(1, math.ceil(round((max_x - min_x) / resolution, 6)))
    height = max(1, math.ceil(round((max_y - min_y) / resolution, 6)))
    return (min_x, max_y - height * resolution, min_x + width * resolution, max_y), width, height


def to_grid(path: str, info: RasterInfo, out_path: str, resample: str) -> None:
    """Bring a probability raster onto the Sentinel-2 raster's grid."""
    fmt = "VRT" if out_path.endswith(".vrt") else "GTiff"
    options = [] if fmt == "VRT" else FLOAT_OPTIONS
    done, detail = gdal_try(gdal.Warp, out_path, path, format=fmt, outputBounds=info.bounds, width=info.width,
                            height=info.height, dstSRS=info.projection or None, resampleAlg=resample,
                            creationOptions=options, multithread=True)
    if done is None:
        raise RasterError(f"Could not resample {path} onto the Sentinel-2 grid: {detail}")
    done = None
