"""Footprints in another CRS: a grid's edges are curves there, and their extremes count."""

import numpy as np
from osgeo import gdal, osr
from rasters import write_raster

from cloud_mask_improver.core import regrid
from cloud_mask_improver.core.merge import decode_product_mask
from cloud_mask_improver.core.raster import raster_info


def test_a_utm_footprint_in_degrees_reaches_the_middle_of_its_curved_top_edge(tmp_path):
    """Across the central meridian the top edge of a UTM grid bulges north in degrees.

    Its northernmost point is in the middle of the edge, not at a corner."""
    info = raster_info(
        write_raster(
            tmp_path / "wide.tif",
            np.zeros((10, 400), np.uint8),
            transform=(300000.0, 1000.0, 0.0, 5000000.0, 0.0, -1000.0),
        )
    )
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


def test_a_product_mask_on_the_grid_is_taken_pixel_for_pixel(tmp_path):
    """Every value comes through, 254 and 255 included.

    A byte mask with no nodata has no value to spare for the pixels a resampling leaves
    outside, and on its own grid there are none."""
    values = np.random.default_rng(7).integers(0, 256, size=(37, 53), dtype=np.uint8)
    values[0, :2] = 254, 255
    grid = raster_info(write_raster(tmp_path / "s2.tif", np.zeros((37, 53), np.uint16)))
    product = write_raster(tmp_path / "mask.tif", values, nodata=None)
    path, nodata = regrid.product_mask_on_grid(product, grid, str(tmp_path))
    got = gdal.Open(path).ReadAsArray()
    np.testing.assert_array_equal(got, values)
    decoded = decode_product_mask(got, "nonzero", nodata)
    np.testing.assert_array_equal(decoded.cloud, values != 0)
    assert decoded.known.all()


def test_a_product_mask_off_the_grid_by_part_of_a_pixel_is_resampled(tmp_path):
    """Three quarters of a pixel east: each pixel of the grid takes the product pixel under its centre."""
    values = np.arange(12 * 9, dtype=np.uint8).reshape(12, 9) + 1
    grid = raster_info(write_raster(tmp_path / "s2.tif", np.zeros((12, 9), np.uint16)))
    product = write_raster(
        tmp_path / "mask.tif", values, nodata=0, transform=(500007.5, 10.0, 0.0, 5000000.0, 0.0, -10.0)
    )
    path, nodata = regrid.product_mask_on_grid(product, grid, str(tmp_path))
    got = gdal.Open(path).ReadAsArray()
    np.testing.assert_array_equal(got[:, 1:], values[:, :-1])
    assert (got[:, 0] == nodata).all()  # left of the product mask: unknown


def test_a_product_mask_on_the_grid_keeps_its_mask_file(tmp_path):
    """Pixels its own mask band marks invalid stay unknown (as the warper takes them).

    Never the cloud their values say."""
    grid = raster_info(write_raster(tmp_path / "s2.tif", np.zeros((8, 8), np.uint16)))
    product = write_raster(tmp_path / "mask.tif", np.ones((8, 8), np.uint8), nodata=None)
    ds = gdal.Open(product, gdal.GA_Update)
    ds.CreateMaskBand(gdal.GMF_PER_DATASET)
    invalid = np.zeros((8, 8), bool)
    invalid[:, :3] = True
    ds.GetRasterBand(1).GetMaskBand().WriteArray(np.where(invalid, 0, 255).astype(np.uint8))
    ds = None
    path, nodata = regrid.product_mask_on_grid(product, grid, str(tmp_path))
    decoded = decode_product_mask(gdal.Open(path).ReadAsArray(), "nonzero", nodata)
    np.testing.assert_array_equal(decoded.known, ~invalid)
    np.testing.assert_array_equal(decoded.cloud, ~invalid)


def test_the_coarse_grid_takes_the_pixel_at_each_centre_and_the_last_one_past_the_edge(tmp_path):
    """30 m from 10 m: each coarse pixel is the raster's pixel at its centre, as GDAL's nearest neighbour.

    Rows and columns 1, 4, ...; the last coarse column reaches past a raster 7 px wide and
    takes its last pixel instead of nodata."""
    data = np.arange(5 * 7, dtype=np.uint16).reshape(5, 7) + 1
    raster = write_raster(tmp_path / "r.tif", np.stack([data, data * 2]))
    info = raster_info(raster)
    coarse = regrid.sample_coarse(info, [2, 1], [0.0, 0.0], 30.0, str(tmp_path / "coarse.tif"))
    assert (coarse.width, coarse.height) == (3, 2)
    assert coarse.geotransform == (500000.0, 30.0, 0.0, 5000000.0, 0.0, -30.0)
    sampled = gdal.Open(str(tmp_path / "coarse.tif")).ReadAsArray()
    assert np.array_equal(sampled[1], data[[1, 4]][:, [1, 4, 6]])
    assert np.array_equal(sampled[0], 2 * data[[1, 4]][:, [1, 4, 6]])  # bands in the order asked


def test_each_pixel_gets_the_coarse_pixel_it_lies_in(tmp_path):
    coarse = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8)
    path = write_raster(tmp_path / "c.tif", coarse, transform=(500000.0, 30.0, 0.0, 5000000.0, 0.0, -30.0))
    grid = raster_info(write_raster(tmp_path / "g.tif", np.zeros((5, 7), np.uint8)))
    rows = regrid.NearestRows(gdal.Open(path), grid)
    expected = coarse[[0, 0, 0, 1, 1]][:, [0, 0, 0, 1, 1, 1, 2]]
    assert np.array_equal(rows.read(0, 5), expected)
    assert np.array_equal(rows.read(2, 4), expected[2:4])  # a window reads only its rows
