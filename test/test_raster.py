"""GDAL calls answer the same with GDAL's exceptions off (QGIS 3.22) and on (QGIS >= 3.40).

QGIS >= 3.40's Processing calls ``gdal.UseExceptions()`` for the whole process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from rasters import gdal_exceptions_fixture, write_raster  # noqa: F401  (fixture)
from samples import load_fetch_sample

from cloud_mask_improver.core.raster import (
    RasterError,
    create_geotiff,
    gdal_try,
    open_dataset,
    raster_info,
    read_array,
    write_array,
)
from cloud_mask_improver.core.sentinel2 import product


def not_a_raster(tmp_path: Path) -> str:
    path = tmp_path / "notes.tif"
    path.write_text("not a raster")
    return str(path)


def test_gdal_try_gives_the_result_or_none_and_the_message(gdal_exceptions, tmp_path):
    raster = write_raster(tmp_path / "ok.tif", np.ones((3, 4), np.uint8))
    ds, message = gdal_try(gdal.Open, raster)
    assert ds is not None and ds.RasterXSize == 4 and message == ""
    ds, message = gdal_try(gdal.Open, str(tmp_path / "missing.tif"))
    assert ds is None and "missing.tif" in message
    assert gdal.GetUseExceptions() == gdal_exceptions  # the mode is the caller's, never switched


def test_open_refuses_what_is_not_a_raster_with_our_message(gdal_exceptions, tmp_path):
    for source, detail in ((not_a_raster(tmp_path), "not recognized"), (str(tmp_path / "gone.tif"), "gone.tif")):
        with pytest.raises(RasterError) as err:
            open_dataset(source, "Sentinel-2 raster")
        assert "Cannot open the Sentinel-2 raster" in str(err.value) and "Check the path" in str(err.value)
        assert detail in str(err.value)
        assert ".. Check" not in str(err.value)  # GDAL's 'not recognized as a supported file format.' + ours


def test_creating_in_a_missing_folder_is_our_error(gdal_exceptions, tmp_path):
    like = raster_info(write_raster(tmp_path / "like.tif", np.ones((3, 4), np.uint8)))
    with pytest.raises(RasterError, match="Cannot create"):
        create_geotiff(str(tmp_path / "nowhere" / "out.tif"), like, 1, gdal.GDT_Byte, 255)


def test_product_helpers_answer_the_same(gdal_exceptions, tmp_path):
    junk = not_a_raster(tmp_path)
    with pytest.raises(product.ProductError, match="Is the product complete"):
        product._open(junk, "band B02")
    assert product.is_scl_coded(junk) is False and product.is_scl_coded(str(tmp_path / "gone.tif")) is False
    assert product.product_mask_of(junk) is None
    with pytest.raises(product.ProductError, match="Cannot read the product metadata"):
        product._read_text(str(tmp_path / "gone.xml"))


def test_a_damaged_sample_file_is_rebuilt_not_a_crash(gdal_exceptions, tmp_path):
    assert load_fetch_sample()._is_valid("l1c_13band", Path(not_a_raster(tmp_path))) is False


def test_failed_block_writes_and_reads_are_our_error(gdal_exceptions, tmp_path):
    read_only = gdal.Open(write_raster(tmp_path / "ro.tif", np.ones((3, 4), np.uint8)))
    with pytest.raises(RasterError, match="Writing .*ro.tif' failed"):
        write_array(read_only, np.zeros((3, 4), np.uint8))
    with pytest.raises(RasterError, match="Reading .*ro.tif' failed"):
        read_array(read_only, 0, 2, 4, 5)  # past the last row
    assert read_array(read_only, 0, 0, 4, 3).sum() == 12
