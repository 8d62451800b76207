"""Our engine against the ukis-csmask package's own output on the real scene."""

import numpy as np
import pytest
from rasters import read
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
