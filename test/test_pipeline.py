"""A whole run's outputs, as a user opens them."""

import numpy as np
from osgeo import gdal
from rasters import write_raster

from cloud_mask_improver.core import merge as mg
from cloud_mask_improver.core import pipeline


def test_a_mask_too_big_for_the_block_cache_keeps_its_palette_and_logs_no_error(tmp_path, capfd):
    """On a full tile GDAL writes blocks out before the run ends; the palette and class
    names must be set before that, or the GeoTIFF refuses them with an error."""
    rng = np.random.default_rng(5)
    cloud = write_raster(tmp_path / "cloud.tif", rng.random((1200, 1200), dtype=np.float32), nodata=-1)
    before = gdal.GetCacheMax()
    gdal.SetCacheMax(256 << 10)  # 256 KB: far less than the mask (1.4 MB)
    try:
        request = pipeline.MergeRequest(cloud, None, None, mg.MergeSettings(dilation=0))
        pipeline.merge(request, str(tmp_path / "mask.tif"))
    finally:
        gdal.SetCacheMax(before)
    assert "ERROR" not in capfd.readouterr().err  # GDAL prints its errors on stderr
    ds = gdal.Open(str(tmp_path / "mask.tif"))
    band = ds.GetRasterBand(1)
    assert band.GetColorInterpretation() == gdal.GCI_PaletteIndex
    assert band.GetColorTable().GetColorEntry(mg.CLOUD) == mg.CATEGORY_COLOURS[mg.CLOUD]
    assert band.GetCategoryNames()[:3] == [mg.CATEGORY_NAMES[k] for k in range(3)]


def test_a_saved_mask_lists_only_its_classes(tmp_path):
    """QGIS builds a saved mask's legend from its colour table: one row per entry. The
    table holds the classes only (nodata is declared, not coloured); byte values stay."""
    probabilities = np.zeros((64, 64), dtype=np.float32)
    probabilities[10:30, 10:30] = 0.9
    probabilities[50:, 50:] = -1  # nodata
    cloud = write_raster(tmp_path / "cloud.tif", probabilities, nodata=-1)
    for mode, classes in (("categorical", ["clear", "cloud", "cloud shadow"]), ("binary", ["clear", "cloud or shadow"])):
        mask = str(tmp_path / f"{mode}.tif")
        pipeline.merge(pipeline.MergeRequest(cloud, None, None, mg.MergeSettings(dilation=0, output_mode=mode)), mask)
        ds = gdal.Open(mask)
        band = ds.GetRasterBand(1)
        assert band.GetColorTable().GetCount() == len(classes)
        assert band.GetCategoryNames() == classes
        assert band.GetNoDataValue() == mg.NODATA
        assert set(np.unique(band.ReadAsArray())) == {mg.CLEAR, mg.CLOUD, mg.NODATA}
