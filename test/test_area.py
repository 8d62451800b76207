"""The work an area needs at a processing resolution: the real model on the real sample scene.

At a processing resolution (the ukis models' own 30 m is the default) the models run on a coarse
grid laid from the raster's corner. An extent or polygons must still give the whole scene's
pixels there, and cost only the coarse tiles they need."""

import numpy as np
import pytest
from osgeo import gdal
from rasters import read, write_raster
from samples import L1C_STACK, require

from cloud_mask_improver.core import area, merge, pipeline
from cloud_mask_improver.core.plan import ImproveRequest, ProbabilityRequest

MODEL = "ukis-6b-l1c"
# (column, row, width, height): inside at odd offsets, on the last row and column, at the
# corner, one pixel, and a wide strip along the left edge.
BOXES = [(301, 457, 97, 83), (974, 1671, 50, 41), (0, 0, 33, 70), (700, 900, 1, 1), (10, 1500, 400, 200)]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """The sample four times (1024 x 1712 px): large enough for tiles to be left out."""
    require(L1C_STACK)
    ds = gdal.Open(str(L1C_STACK))
    data = ds.ReadAsArray()
    wide = np.concatenate([data, data[:, :, ::-1]], axis=2)
    names = [ds.GetRasterBand(k + 1).GetDescription() for k in range(ds.RasterCount)]
    path = tmp_path_factory.mktemp("scene") / "four.tif"
    return write_raster(path, np.concatenate([wide, wide], axis=1), names, transform=ds.GetGeoTransform())


def _improve(scene, mask, resolution, selection=None):
    request = ImproveRequest(
        ProbabilityRequest(scene, [MODEL], MODEL, resolution=resolution), None, merge.MergeSettings(), mask=str(mask)
    )
    return pipeline.improve(request, selection=selection)


def _ran_on(report) -> tuple[int, int]:
    """The pixels the models ran on, as the area's note gives them."""
    width, height = report.notes[-1].rsplit("ran on ", 1)[1].split(" pixels")[0].split(" x ")
    return int(width), int(height)


@pytest.mark.parametrize("resolution", [20.0, 30.0, 25.0])
def test_an_extent_at_a_processing_resolution_is_the_whole_scene_there(scene, tmp_path, resolution):
    """20 and 30 m are whole numbers of the raster's 10 m pixels: only the tiles the box needs run.

    A 25 m pixel is not (its edges fall differently in every cut-out): the whole scene runs."""
    _improve(scene, tmp_path / "whole.tif", resolution)
    whole = read(tmp_path / "whole.tif")
    x0, _, _, y1, _, _ = gdal.Open(scene).GetGeoTransform()
    smaller = 0
    for k, (col, row, width, height) in enumerate(BOXES):
        box = (x0 + col * 10, y1 - (row + height) * 10, x0 + (col + width) * 10, y1 - row * 10)
        report = _improve(scene, tmp_path / f"part{k}.tif", resolution, area.Selection(bounds=box))
        part = read(tmp_path / f"part{k}.tif").reshape(height, width)
        assert np.array_equal(part, whole[row : row + height, col : col + width]), (resolution, k)
        ran = _ran_on(report)
        smaller += ran[0] * ran[1] < whole.size
    assert smaller == (0 if resolution == 25.0 else len(BOXES))
