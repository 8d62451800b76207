"""Rasters brought onto the Sentinel-2 raster's grid, and onto the coarser grid of a processing resolution.

The product mask comes onto the raster's grid by nearest, from any CRS, resolution or extent;
the coarser grid of a processing resolution is crossed both ways, by nearest.

At a processing resolution each coarse pixel takes the raster's pixel at its centre
(the nearest neighbour: how ukis-csmask's README resamples to 30 m, so that its models
decide on the coarse grid exactly as there), and each of the raster's pixels gets the
decision of the coarse pixel it lies in: the honest answer at that resolution, with no
blending that would invent detail the models never saw."""

from __future__ import annotations

import math
import os
from dataclasses import replace

import numpy as np
from osgeo import gdal, gdal_array, osr

from .raster import (
    FLOAT_OPTIONS,
    RasterError,
    RasterInfo,
    RowSource,
    gdal_try,
    raster_info,
    read_array,
    require_georeference,
)

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
        raise RasterError(
            f"The product mask '{product}' does not overlap the Sentinel-2 raster. "
            "Use the product mask of the same scene (or leave it empty)."
        )
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
    done, detail = gdal_try(
        gdal.Warp,
        path,
        product,
        format="VRT",
        outputBounds=grid.bounds,
        width=grid.width,
        height=grid.height,
        dstSRS=grid.projection,
        resampleAlg="near",
        srcNodata=nodata,
        dstNodata=fill,
    )
    if done is None:
        raise RasterError(f"Could not resample the product mask: {detail}")
    done = None
    return path, fill


def on_the_grid(info: RasterInfo, grid: RasterInfo) -> bool:
    """Whether ``info``'s pixels are the grid's.

    Same size, same geotransform (to a millionth of a pixel) and the same CRS."""
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
    """Whether band 1 marks its invalid pixels only by its nodata value (or has none).

    An alpha band or a mask file, which the warper honours, would be lost when the
    values are read as they are."""
    ds = gdal.OpenEx(path, gdal.OF_RASTER)
    flags = ds.GetRasterBand(1).GetMaskFlags() if ds is not None else None
    return flags in (gdal.GMF_ALL_VALID, gdal.GMF_NODATA)


def coarse_grid(info: RasterInfo, resolution: float) -> tuple[tuple[float, float, float, float], int, int]:
    """Bounds, width and height of the grid of ``resolution`` metres the models run on.

    The grid is anchored at the raster's top left corner and covers the whole raster, its last
    coarse pixels reaching past the edge. GDAL's own choice rounds the size, which would leave the
    last 10 m rows or columns uncovered (nodata in the mask) and a raster smaller than half
    a coarse pixel with no grid at all."""
    min_x, min_y, max_x, max_y = info.bounds
    # Rounded first: 2570 m / 10 m pixels must stay 257, not become 258.
    width = max(1, math.ceil(round((max_x - min_x) / resolution, 6)))
    height = max(1, math.ceil(round((max_y - min_y) / resolution, 6)))
    return (min_x, max_y - height * resolution, min_x + width * resolution, max_y), width, height


def in_metres(info: RasterInfo) -> bool:
    """Whether the raster's grid is in metres (a processing resolution is given in metres).

    A raster without a CRS is taken to be: its pixel size is all there is to go by."""
    if not info.projection:
        return True
    srs = osr.SpatialReference()
    srs.ImportFromWkt(info.projection)
    return bool(srs.IsProjected()) and abs(srs.GetLinearUnits() - 1.0) < 1e-9


def coarse_info(info: RasterInfo, resolution: float) -> RasterInfo:
    """The coarse grid of ``resolution`` metres (see :func:`coarse_grid`) as a grid to write on."""
    (min_x, _, _, max_y), width, height = coarse_grid(info, resolution)
    return replace(
        info, source="", width=width, height=height, geotransform=(min_x, resolution, 0.0, max_y, 0.0, -resolution)
    )


def centre_pixels(coarse_size: int, resolution: float, pixel: float, size: int) -> np.ndarray:
    """Along one axis, the raster's pixel at the centre of each coarse pixel (GDAL's nearest neighbour).

    A last coarse pixel reaching past the edge takes the last pixel, so that it
    is not nodata where the raster has data."""
    centres = np.floor((np.arange(coarse_size) + 0.5) * (resolution / pixel)).astype(np.int64)
    return np.minimum(centres, size - 1)


def containing_pixels(size: int, pixel: float, resolution: float) -> np.ndarray:
    """Along one axis, the coarse pixel each of the raster's pixels lies in.

    That is the coarse pixel its centre falls in."""
    return np.floor((np.arange(size) + 0.5) * (pixel / resolution)).astype(np.int64)


# Coarse rows sampled per read: the raster's rows under them are read at once.
SAMPLE_ROWS = 64
SAMPLE_OPTIONS = ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", "BIGTIFF=IF_SAFER"]


def sample_coarse(
    info: RasterInfo, bands: list[int], fill: list[float | None], resolution: float, path: str
) -> RasterInfo:
    """Write ``bands`` of the raster on the coarse grid as a GeoTIFF at ``path``.

    Each coarse pixel is the raster's pixel at its centre (band k is ``bands[k]``; each band's
    nodata ``fill``). Uncompressed: written once and read once, by the models.

    Done here with numpy rather than by GDAL's warper, which leaves the coarse pixels past the
    raster's edge empty (their centre is outside) and costs several times the reading."""
    grid = coarse_info(info, resolution)
    rows = centre_pixels(grid.height, resolution, abs(info.geotransform[5]), info.height)
    cols = centre_pixels(grid.width, resolution, abs(info.geotransform[1]), info.width)
    source = RowSource(info.source, bands, window_rows=1, fill=fill)
    out = _create_stack(path, grid, source.dtype, fill)
    try:
        for lo in range(0, grid.height, SAMPLE_ROWS):
            wanted = rows[lo : lo + SAMPLE_ROWS]
            first = int(wanted[0])
            block = source.rows(first, int(wanted[-1]) + 1)
            sampled = block[:, wanted - first][:, :, cols]
            done, detail = gdal_try(
                out.WriteRaster,
                0,
                lo,
                grid.width,
                len(wanted),
                sampled.tobytes(),
                band_list=list(range(1, len(bands) + 1)),
            )
            if done is None:
                raise RasterError(f"Could not write the raster at {resolution:g} m: {detail}")
        out.FlushCache()
    finally:
        source.close()
        out = None
    return raster_info(path)


def _create_stack(path: str, grid: RasterInfo, dtype: np.dtype, fill: list[float | None]):
    code = gdal_array.NumericTypeCodeToGDALTypeCode(dtype)
    ds, detail = gdal_try(
        gdal.GetDriverByName("GTiff").Create, path, grid.width, grid.height, len(fill), code, options=SAMPLE_OPTIONS
    )
    if ds is None:
        raise RasterError(f"Cannot create '{path}': {detail}")
    ds.SetGeoTransform(grid.geotransform)
    if grid.projection:
        ds.SetProjection(grid.projection)
    for k, value in enumerate(fill):
        if value is not None:
            ds.GetRasterBand(k + 1).SetNoDataValue(value)
    return ds


class NearestRows:
    """Rows of a coarse byte raster on the raster's grid: each pixel the coarse pixel it lies in.

    Reads only the coarse rows a window needs."""

    def __init__(self, ds: gdal.Dataset, grid: RasterInfo):
        self.ds = ds
        self.rows = containing_pixels(grid.height, abs(grid.geotransform[5]), abs(ds.GetGeoTransform()[5]))
        self.cols = containing_pixels(grid.width, abs(grid.geotransform[1]), ds.GetGeoTransform()[1])
        self.cols = np.minimum(self.cols, ds.RasterXSize - 1)
        self.rows = np.minimum(self.rows, ds.RasterYSize - 1)

    def read(self, lo: int, hi: int) -> np.ndarray:
        wanted = self.rows[lo:hi]
        first = int(wanted[0])
        coarse = read_array(self.ds, 0, first, self.ds.RasterXSize, int(wanted[-1]) + 1 - first)
        return coarse[wanted - first][:, self.cols]


def to_grid(path: str, info: RasterInfo, out_path: str, resample: str) -> None:
    """Bring a probability raster onto the Sentinel-2 raster's grid."""
    fmt = "VRT" if out_path.endswith(".vrt") else "GTiff"
    options = [] if fmt == "VRT" else FLOAT_OPTIONS
    done, detail = gdal_try(
        gdal.Warp,
        out_path,
        path,
        format=fmt,
        outputBounds=info.bounds,
        width=info.width,
        height=info.height,
        dstSRS=info.projection or None,
        resampleAlg=resample,
        creationOptions=options,
        multithread=True,
    )
    if done is None:
        raise RasterError(f"Could not resample {path} onto the Sentinel-2 grid: {detail}")
    done = None
