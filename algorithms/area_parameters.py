"""Only the area that matters: the EXTENT and AREA parameters of the improve algorithms.

EXTENT is the usual Processing extent (typed, from a layer or the map canvas);
AREA a polygon layer ("selected features only" honoured). Both given: their
intersection. The run then covers only the tiles the area needs (the pixels
there equal a whole-scene run) and the outputs cover the area's bounding box.
"""

from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
)

from .. import core
from ..core import choices
from .base import with_help


def add_area_parameters(algorithm) -> None:
    algorithm.addParameter(
        with_help(
            QgsProcessingParameterExtent(choices.EXTENT, "Extent to process", optional=True), "Empty: the whole raster."
        )
    )
    algorithm.addParameter(
        with_help(
            QgsProcessingParameterFeatureSource(
                choices.AREA, "Area to process", [QgsProcessing.SourceType.TypeVectorPolygon], optional=True
            ),
            "Polygons (selected features only where asked); empty: the whole raster. With an extent too: "
            "the part of the polygons inside the extent.",
        )
    )
    algorithm.add_advanced(
        QgsProcessingParameterBoolean(
            choices.NODATA_OUTSIDE_AREA, "Nodata outside the area's polygons", defaultValue=False
        )
    )


def area_from_source(source, what: str = choices.AREA) -> core.Area | None:
    """The polygons of a feature source (selected ones when the user asked), labelled by their first text field."""
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
        raise QgsProcessingException(
            f"{what}: the layer holds no polygon (or none is selected). Choose a "
            "polygon layer, or turn off 'Selected features only'."
        )
    return core.Area(tuple(wkts), source.sourceCrs().toWkt(), tuple(names), what)


def selection(algorithm, parameters, context) -> core.Selection | None:
    """What EXTENT, AREA and NODATA_OUTSIDE_AREA ask for; None: the whole raster."""
    area = area_from_source(algorithm.parameterAsSource(parameters, choices.AREA, context))
    bounds, crs = None, ""
    if parameters.get(choices.EXTENT) not in (None, ""):
        extent = algorithm.parameterAsExtent(parameters, choices.EXTENT, context)
        extent_crs = algorithm.parameterAsExtentCrs(parameters, choices.EXTENT, context)
        if not extent.isNull():
            bounds = (extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum())
            crs = extent_crs.toWkt() if extent_crs.isValid() else ""
    if area is None and bounds is None:
        return None
    blank = algorithm.parameterAsBool(parameters, choices.NODATA_OUTSIDE_AREA, context)
    return core.Selection(area, bounds, crs, blank)
