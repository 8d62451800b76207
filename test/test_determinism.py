"""Same inputs, same mask: two runs give byte-identical files.

The result does not depend on how the work is cut (window rows, batch size, onnxruntime
threads)."""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal
from rasters import read
from reliability import collect_qgis_objects_fixture  # noqa: F401  (fixture)
from samples import L1C_STACK, PRODUCT_MASK, model_file, require

from cloud_mask_improver.core import merge as merge_rules
from cloud_mask_improver.core import pipeline

MODEL = "ukis-6b-l1c"


def test_two_runs_write_byte_identical_masks(provider, tmp_path):
    import processing

    require(L1C_STACK, PRODUCT_MASK)
    model_file(MODEL)
    files = []
    for run in ("first", "second"):
        folder = tmp_path / run
        folder.mkdir()
        processing.run(
            "cloudmask:improvecloudmask",
            {
                "S2_RASTER": str(L1C_STACK),
                "PRODUCT_MASK": str(PRODUCT_MASK),
                "CLOUD_MODEL": MODEL,
                "SHADOW_MODEL": MODEL,
                "MASK": str(folder / "mask.tif"),
                "CLOUD_PROBABILITY": str(folder / "cloud.tif"),
            },
        )
        files.append(folder)
    for name in ("mask.tif", "mask.tif.aux.xml", "cloud.tif"):
        assert (files[0] / name).read_bytes() == (files[1] / name).read_bytes(), name


@pytest.fixture(scope="module")
def crop(tmp_path_factory):
    """A 300 x 260 window of the real scene: several 256 px tiles each way."""
    require(L1C_STACK)
    path = str(tmp_path_factory.mktemp("crop") / "crop.tif")
    gdal.Translate(path, str(L1C_STACK), srcWin=[100, 200, 260, 300])
    return path


# (window rows, batch size, onnxruntime threads): the default, and cuts that differ in each.
CUTS = [(512, 4, 0), (37, 1, 1), (100, 3, 2), (300, 8, 1)]


def probabilities_and_mask(crop: str, folder, window_rows: int, batch_size: int, threads: int):
    folder.mkdir()
    request = pipeline.ProbabilityRequest(
        crop, [MODEL], MODEL, window_rows=window_rows, batch_size=batch_size, threads=threads
    )
    outputs = pipeline.ProbabilityOutputs(cloud=str(folder / "c.tif"), shadow=str(folder / "s.tif"))
    pipeline.probabilities(request, outputs)
    settings = merge_rules.MergeSettings(cloud_threshold=0.5, shadow_threshold=0.5)
    merge = pipeline.MergeRequest(outputs.cloud, outputs.shadow, None, settings, window_rows)
    pipeline.merge(merge, str(folder / "m.tif"))
    return read(outputs.cloud), read(outputs.shadow), read(folder / "m.tif")


def test_result_does_not_depend_on_window_batch_or_threads(crop, tmp_path):
    model_file(MODEL)
    results = [probabilities_and_mask(crop, tmp_path / f"cut{i}", *cut) for i, cut in enumerate(CUTS)]
    cloud, shadow, mask = results[0]
    assert 0.05 < (mask == 1).mean() < 0.95  # a scene with cloud and clear, so the masks mean something
    for cut, (c, s, m) in zip(CUTS[1:], results[1:]):
        assert np.abs(c - cloud).max() <= 1e-5, cut
        assert np.abs(s - shadow).max() <= 1e-5, cut
        assert np.array_equal(m, mask), cut
