"""Only the area that matters: the EXTENT and AREA parameters of the improve algorithms.

EXTENT is the usual Processing extent (typed, from a layer or the map canvas);
AREA a polygon layer ("selected features only" honoured). Both given: their
intersection. The run then covers only the tiles the area needs (the pixels
there equal a whole-scene run) and the outputs cover the area's bounding box.
"""

from __future__ import annotations

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
)

from ..core import area as area_mod
from ..core.raster import raster_info
from .base import run_engine


def add_area_parameters(algorithm) -> None:
    algorithm.addParameter(QgsProcessingParameterExtent(
        "EXTENT", "Extent to process (empty: the whole raster)", optional=True))
    algorithm.addParameter(QgsProcessingParameterFeatureSource(
        "AREA", "Area to process (polygons; empty: the whole raster)", [QgsProcessing.TypeVectorPolygon],
        optional=True))
    algorithm.add_advanced(QgsProcessingParameterBoolean(
        "NODATA_OUTSIDE_AREA", "Nodata outside the area's polygons", defaultValue=False))


def area_from_source(source, what: str = "AREA") -> area_mod.Area | None:
    """The polygons of a feature source (selected ones when the user asked), labelled by their
    first text field."""
    if source is None:
        return None
    label = next((f.name() for f in source.fields() if f.typeName().lower() in ("string", "text")), None)
    wkts, names = [], []
    for feature in source.getFeatures():
        if not feature.hasGeometry() or feature.geometry().isEmpty():
            continue
        wkts.append(feature.geometry().asWkt())
        value = feature[label] if label else None
        names.append(str(value) if value not in (None, "") else str(feature.id()))
    if not wkts:
        raise QgsProcessingException(f"{what}: the layer holds no polygon (or none is selected). Choose a "
                                     "polygon layer, or turn off 'Selected features only'.")
    return area_mod.Area(tuple(wkts), source.sourceCrs().toWkt(), tuple(names), what)


def target_window(algorithm, parameters, context, raster: str):
    """(window, area): the raster pixels to produce, or (None, None) for the whole raster."""
    area = area_from_source(algorithm.parameterAsSource(parameters, "AREA", context))
    has_extent = parameters.get("EXTENT") not in (None, "")
    if area is None and not has_extent:
        return None, None
    info = run_engine(lambda _: raster_info(raster, "Sentinel-2 raster"), None)
    window = area_mod.Window(0, 0, info.width, info.height)
    if has_extent:
        crs = QgsCoordinateReferenceSystem.fromWkt(info.projection)
        extent = algorithm.parameterAsExtent(parameters, "EXTENT", context, crs)
        bounds = (extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum())
        window = area_mod.bounds_window(bounds, info.geotransform, info.width, info.height)
        if window is None:
            raise QgsProcessingException("The extent does not overlap the Sentinel-2 raster. Choose an extent "
                                         "inside the scene (any CRS: it is reprojected to the raster's).")
    if area is not None:
        box = run_engine(lambda _: area_mod.area_window(area, raster), None)
        window = _intersection(window, box) if box else None
        if window is None:
            raise QgsProcessingException("The area does not overlap the Sentinel-2 raster" +
                                         (" within the extent" if has_extent else "") +
                                         ". Check that both cover the same place.")
    return window, area


def _intersection(a: area_mod.Window, b: area_mod.Window) -> area_mod.Window | None:
    c0, c1 = max(a.col, b.col), min(a.col + a.width, b.col + b.width)
    r0, r1 = max(a.row, b.row), min(a.row + a.height, b.row + b.height)
    return area_mod.Window(c0, r0, c1 - c0, r1 - r0) if c0 < c1 and r0 < r1 else None
