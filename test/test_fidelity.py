"""Our engine against the ukis-csmask package's own output on the real scene."""

import numpy as np
import pytest
from osgeo import gdal
from rasters import read, write_raster
from samples import ARRAYS, L1C_STACK, model_file, require

from cloud_mask_improver.core import merge, pipeline

pytestmark = pytest.mark.slow  # left out of make test-fast

UKIS_BANDS = [1, 2, 3, 7, 11, 12]  # B02 B03 B04 B08 B11 B12 of the 13-band stack
UKIS_BAND_ORDER = ["blue", "green", "red", "nir", "swir16", "swir22"]


def csmask_of(stack) -> np.ndarray:
    """ukis-csmask's CSmask classes (0 clear, 1 cloud, 2 shadow) of a 13-band L1C stack file."""
    from ukis_csmask.mask import CSmask

    reflectance = read(stack).astype(np.float32) * np.float32(1e-4)
    image = np.moveaxis(reflectance[UKIS_BANDS], 0, -1)
    return CSmask(image, UKIS_BAND_ORDER, product_level="l1c", invalid_buffer=0).csm[:, :, 0]


def second_scene(folder) -> str:
    """A scene of our own from the sample, so that clouds, edges and tiles fall elsewhere.

    Mirrored into 2 x 2, then cut 37 rows and 11 columns in (1674 x 1011 px, multiples of 3
    for the 30 m grid)."""
    require(L1C_STACK)
    ds = gdal.Open(str(L1C_STACK))
    scene = ds.ReadAsArray()
    top = np.concatenate([scene, scene[:, :, ::-1]], axis=2)
    whole = np.concatenate([top, top[:, ::-1, :]], axis=1)[:, 37 : 37 + 1674, 11 : 11 + 1011]
    names = [ds.GetRasterBand(b + 1).GetDescription() for b in range(ds.RasterCount)]
    return write_raster(folder / "second.tif", whole, descriptions=names, metadata={"PROCESSING_LEVEL": "L1C"})


def default_ukis_mask(stack, folder, resolution) -> tuple[np.ndarray, list[str]]:
    """ukis-6b-l1c's mask with the thresholds left at the model's default, and the run's notes.

    Nothing added: no product mask, no dilation."""
    model_file("ukis-6b-l1c")
    request = pipeline.ImproveRequest(
        pipeline.ProbabilityRequest(str(stack), ["ukis-6b-l1c"], resolution=resolution),
        None,
        merge.MergeSettings(dilation=0),
        mask=str(folder / "mask.tif"),
    )
    report = pipeline.improve(request)
    return read(folder / "mask.tif"), report.notes


@pytest.mark.parametrize("scene", ["sample", "second"])
def test_ukis_default_mask_is_csmasks_on_every_pixel(tmp_path, scene):
    """With the thresholds at the model's default, ukis models decide by the most likely class.

    As ukis-csmask does: at 0.5 thresholds 1.2 % of the pixels that CSmask calls cloud or
    shadow come out clear."""
    require(L1C_STACK)
    stack = L1C_STACK if scene == "sample" else second_scene(tmp_path)
    mask, _ = default_ukis_mask(stack, tmp_path, resolution=0)
    reference = csmask_of(stack)
    differ = int((mask != reference).sum())
    print(f"{scene}: {mask.size} px, {differ} differ from CSmask; classes {np.bincount(mask.ravel())}")
    assert differ == 0
    assert (np.bincount(mask.ravel(), minlength=3)[:3] > 1000).all()  # clear, cloud and shadow all there


@pytest.mark.parametrize("scene", ["sample", "second"])
def test_ukis_default_decides_at_30_m_as_csmask_on_the_stack_resampled_to_30_m(tmp_path, scene):
    """By default the ukis models run at their own 30 m.

    The reference is ukis-csmask's README recipe: the stack resampled to 30 m by nearest
    neighbour, then CSmask. Each 10 m pixel has the decision of the 30 m pixel it lies in."""
    if scene == "sample":
        require(L1C_STACK)
        ds = gdal.Open(str(L1C_STACK))
        names = [ds.GetRasterBand(b + 1).GetDescription() for b in range(ds.RasterCount)]
        stack = write_raster(
            tmp_path / "sample.tif",
            ds.ReadAsArray()[:, :855, :510],
            descriptions=names,
            metadata={"PROCESSING_LEVEL": "L1C"},
        )  # 285 x 170 at 30 m
    else:
        stack = second_scene(tmp_path)
    coarse = str(tmp_path / "coarse.tif")
    assert gdal.Warp(coarse, stack, xRes=30, yRes=30, resampleAlg="near") is not None
    reference = csmask_of(coarse)
    mask, notes = default_ukis_mask(stack, tmp_path, resolution=None)
    assert any("Processing resolution: 30 m" in n for n in notes)
    assert mask.shape == (reference.shape[0] * 3, reference.shape[1] * 3)
    blocks = mask.reshape(reference.shape[0], 3, reference.shape[1], 3)
    assert (blocks == blocks[:, :1, :, :1]).all()  # nearest: one decision per 30 m pixel
    differ = int((blocks[:, 0, :, 0] != reference).sum())
    print(f"{scene} at 30 m: {reference.size} px, {differ} differ from CSmask")
    assert differ == 0
    assert (np.bincount(reference.ravel(), minlength=3) > 100).all()


@pytest.fixture(scope="module")
def csmask_classes():
    """ukis-csmask's CSmask (installed in the test venv as the reference)."""
    from ukis_csmask.mask import CSmask

    require(L1C_STACK)
    reflectance = read(L1C_STACK).astype(np.float32) * np.float32(1e-4)
    image = np.moveaxis(reflectance[UKIS_BANDS], 0, -1)
    mask = CSmask(image, ["blue", "green", "red", "nir", "swir16", "swir22"], product_level="l1c", invalid_buffer=0)
    return mask.csm[:, :, 0]


@pytest.mark.parametrize("window_rows", [4096, 200])
def test_ukis_6b_l1c_classes_agree_with_ukis_csmask(tmp_path, csmask_classes, window_rows):
    model_file("ukis-6b-l1c")
    cloud, shadow = tmp_path / "cloud.tif", tmp_path / "shadow.tif"
    request = pipeline.ProbabilityRequest(str(L1C_STACK), ["ukis-6b-l1c"], "ukis-6b-l1c", window_rows=window_rows)
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
    """The real networks (blended 256 px tiles) and s2cloudless (per pixel) on a scene wide enough to split.

    Stripes change nothing, bit for bit."""
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
        request = pipeline.ProbabilityRequest(
            raster, ["ukis-6b-l1c", "s2cloudless-l1c"], "ukis-6b-l1c", stripe_cols=stripe_cols
        )
        pipeline.probabilities(request, paths)
        results.append([read(p) for p in paths.paths()])
    for one_pass, striped in zip(*results):
        assert np.array_equal(one_pass, striped)
