"""Footprints in another CRS: a grid's edges are curves there, and their extremes count."""

import numpy as np
from osgeo import osr
from rasters import write_raster

from cloud_mask_improver.core import regrid
from cloud_mask_improver.core.raster import raster_info


def test_a_utm_footprint_in_degrees_reaches_the_middle_of_its_curved_top_edge(tmp_path):
    """Across the central meridian the top edge of a UTM grid bulges north in degrees:
    its northernmost point is in the middle of the edge, not at a corner."""
    info = raster_info(write_raster(tmp_path / "wide.tif", np.zeros((10, 400), np.uint8),
                                    transform=(300000.0, 1000.0, 0.0, 5000000.0, 0.0, -1000.0)))
    wgs84 = osr.SpatialReference()
    wgs84.ImportFromEPSG(4326)
    utm = osr.SpatialReference()
    utm.ImportFromWkt(info.projection)
    for sr in (wgs84, utm):
        sr.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    to_degrees = osr.CoordinateTransformation(utm, wgs84)
    middle_top = to_degrees.TransformPoint(500000.0, 5000000.0)[1]
    corner_top = max(to_degrees.TransformPoint(x, 5000000.0)[1] for x in (300000.0, 700000.0))
    assert middle_top > corner_top + 0.01  # the bulge is real (about 0.04 degrees here)
    bounds = regrid.footprint(info, wgs84.ExportToWkt())
    assert np.isfinite(bounds).all()
    assert middle_top - 1e-9 <= bounds[3] < middle_top + 0.01
