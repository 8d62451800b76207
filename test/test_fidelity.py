"""Our engine against the ukis-csmask package's own output on the real scene."""

import numpy as np
import pytest
from osgeo import gdal
from rasters import read, write_raster
from samples import ARRAYS, L1C_STACK, model_file, require

from cloud_mask_improver.core import pipeline

UKIS_BANDS = [1, 2, 3, 7, 11, 12]  # B02 B03 B04 B08 B11 B12 of the 13-band stack


@pytest.fixture(scope="module")
def csmask_classes():
    """ukis-csmask's CSmask (installed in the test venv as the reference)."""
    from ukis_csmask.mask import CSmask
    require(L1C_STACK)
    reflectance = read(L1C_STACK).astype(np.float32) * np.float32(1e-4)
    image = np.moveaxis(reflectance[UKIS_BANDS], 0, -1)
    mask = CSmask(image, ["blue", "green", "red", "nir", "swir16", "swir22"],
                  product_level="l1c", invalid_buffer=0)
    return mask.csm[:, :, 0]


@pytest.mark.parametrize("window_rows", [4096, 200])
def test_ukis_6b_l1c_classes_agree_with_ukis_csmask(tmp_path, csmask_classes, window_rows):
    model_file("ukis-6b-l1c")
    cloud, shadow = tmp_path / "cloud.tif", tmp_path / "shadow.tif"
    request = pipeline.ProbabilityRequest(str(L1C_STACK), ["ukis-6b-l1c"], "ukis-6b-l1c",
                                          window_rows=window_rows)
    pipeline.probabilities(request, pipeline.ProbabilityOutputs(str(cloud), str(shadow)))
    c, s = read(cloud), read(shadow)
    ours = np.argmax(np.stack([1 - c - s, c, s]), axis=0)
    agreement = (ours == csmask_classes).mean()
    print(f"ukis-6b-l1c agreement with CSmask (window {window_rows} rows): {agreement:.6f}")
    assert agreement >= 0.999
    assert (np.bincount(ours.ravel(), minlength=3) > 1000).all()  # the scene has all three classes


def test_s2cloudless_path_reproduces_its_reference_probabilities(tmp_path):
    """The pixel model runs on the same streaming path with a tile's pixels flattened."""
    model_file("s2cloudless-l1c")
    require(ARRAYS)
    out = tmp_path / "cloud.tif"
    request = pipeline.ProbabilityRequest(str(L1C_STACK), ["s2cloudless-l1c"], window_rows=300)
    pipeline.probabilities(request, pipeline.ProbabilityOutputs(cloud=str(out)))
    reference = np.load(ARRAYS)["cl_probs"][0]
    difference = np.abs(read(out) - reference).max()
    print(f"s2cloudless max difference to cl_probs: {difference:.2e}")
    assert difference < 1e-4


def test_real_models_give_the_same_result_in_column_stripes(tmp_path):
    """The real networks (blended 256 px tiles) and s2cloudless (per pixel) on a scene
    wide enough to split: stripes change nothing, bit for bit."""
    for model in ("ukis-6b-l1c", "s2cloudless-l1c"):
        model_file(model)
    require(L1C_STACK)
    ds = gdal.Open(str(L1C_STACK))
    scene = ds.ReadAsArray()[:, :300]
    wide = np.concatenate([scene, scene[:, :, ::-1], scene[:, :, :300]], axis=2)  # 1324 px
    names = [ds.GetRasterBand(b + 1).GetDescription() for b in range(ds.RasterCount)]
    raster = write_raster(tmp_path / "wide.tif", wide, descriptions=names, metadata={"PROCESSING_LEVEL": "L1C"})
    results = []
    for stripe_cols in (100_000, 500):
        paths = pipeline.ProbabilityOutputs(*(str(tmp_path / f"{stripe_cols}_{k}.tif") for k in "csu"))
        request = pipeline.ProbabilityRequest(raster, ["ukis-6b-l1c", "s2cloudless-l1c"], "ukis-6b-l1c",
                                              stripe_cols=stripe_cols)
        pipeline.probabilities(request, paths)
        results.append([read(p) for p in paths.paths()])
    for one_pass, striped in zip(*results):
        assert np.array_equal(one_pass, striped)
