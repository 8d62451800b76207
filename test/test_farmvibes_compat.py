"""Compatibility with FarmVibes.AI: its published behaviour against our algorithms run as users run them.

Its behaviour is written out here in plain numpy and scipy (not its code).

What FarmVibes.AI does (its ops compute_cloud_prob, compute_shadow_prob and
merge_cloud_masks_simple, and vibe_lib's chipping):
- chips of ``chip`` px with step ``step`` along each axis: ``n = ceil((size - chip) /
  step) + 1`` chips (at least 2 when the axis is longer than a chip) starting at
  ``round(linspace(0, size - chip, n))``; each chip writes from the middle of its
  overlap with the previous chip to the middle of its overlap with the next;
- merge: ``(cloud > 0.3) | (shadow > 0.2) | (product != 0)``, dilated by a disk of
  radius ``closing_size``, then, if ``min_area`` > 0, 8-connected flagged components
  smaller than ``min_area`` cleared and 8-connected clear components smaller than it
  filled; output 0/1.

docs/farmvibes.md lists where we differ on purpose (nodata is never cloud, three
classes by default, rasters smaller than a chip); those differences are checked here
as documented.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from onnx_models import tile_mean_expected, tile_mean_model, write_card
from osgeo import gdal
from qgis.core import QgsProcessingException
from rasters import random_scene, read, write_raster
from scipy import ndimage

from cloud_mask_improver.core.bands import FARMVIBES_BANDS
from cloud_mask_improver.core.tiling import plan_axis

MODELS = Path(__file__).resolve().parent.parent / "models"
EIGHT = np.ones((3, 3), dtype=bool)


def run(alg, params):
    import processing

    return processing.run(f"cloudmask:{alg}", params)


# -- FarmVibes.AI's behaviour, written out ------------------------------------------------


def fv_chips(size: int, chip: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Chip starts along an axis and the edges of what each chip writes."""
    if size < chip:
        raise ValueError("FarmVibes.AI refuses an axis shorter than a chip")
    count = math.ceil((size - chip) / step) + 1
    if size > chip:
        count = max(count, 2)
    starts = np.round(np.linspace(0, size - chip, count)).astype(int)
    ends = starts + chip
    edges = np.concatenate([[0], (ends[:-1] + starts[1:]) // 2, [size]])
    return starts, edges


def fv_predict(x: np.ndarray, chip: int, step: int, network) -> np.ndarray:
    """Run ``network`` ([C, chip, chip] -> [chip, chip]) chip by chip.

    Keep each chip's part between its write edges."""
    _, height, width = x.shape
    row_starts, row_edges = fv_chips(height, chip, step)
    col_starts, col_edges = fv_chips(width, chip, step)
    out = np.full((height, width), np.nan)
    for i, r in enumerate(row_starts):
        for j, c in enumerate(col_starts):
            y = network(x[:, r : r + chip, c : c + chip])
            rows = slice(row_edges[i] - r, row_edges[i + 1] - r)
            cols = slice(col_edges[j] - c, col_edges[j + 1] - c)
            out[row_edges[i] : row_edges[i + 1], col_edges[j] : col_edges[j + 1]] = y[rows, cols]
    return out


def disk(radius: int) -> np.ndarray:
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return y * y + x * x <= radius * radius


def small(mask: np.ndarray, min_area: int) -> np.ndarray:
    labels, _ = ndimage.label(mask, structure=EIGHT)
    return (np.bincount(labels.ravel()) < min_area)[labels] & (labels > 0)


def fv_merge(cloud_p, shadow_p, product, closing=5, min_area=0, cloud_thr=0.3, shadow_thr=0.2):
    """merge_cloud_masks_simple: every value as read (its nodata 100 included)."""
    merged = (cloud_p > cloud_thr) | (shadow_p > shadow_thr) | (product != 0)
    if closing:
        merged = ndimage.binary_dilation(merged, structure=disk(closing))
    if min_area > 0:
        merged = merged & ~small(merged, min_area)
        merged = merged | small(~merged, min_area)
    return merged.astype(np.uint8)


def our_rule(cloud_p, shadow_p, product, valid, product_known, closing=5, min_area=0):
    """FarmVibes.AI's merge with our nodata rule (docs/farmvibes.md).

    Pixels without data are 255, never flagged, never grown, and separate components; where
    only the product mask has no data, the probabilities decide."""
    with np.errstate(invalid="ignore"):
        merged = ((cloud_p > 0.3) | (shadow_p > 0.2) | ((product != 0) & product_known)) & valid
    if closing:
        merged = ndimage.binary_dilation(merged, structure=disk(closing)) & valid
    if min_area > 0:
        merged = merged & ~small(merged, min_area)
        merged = merged | small(valid & ~merged, min_area)
    out = merged.astype(np.uint8)
    out[~valid] = 255
    return out


# -- chips ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [513, 600, 896, 1000, 1300, 1830, 2000, 5490, 10980])
def test_chip_starts_are_farmvibes_on_full_size_chips(size):
    """The committed FarmVibes.AI cards (512 px, 25 % overlap): every chip where theirs is.

    And each keeps exactly what theirs writes."""
    plan = plan_axis(size, "centre-crop", 512, 0.25)
    starts, edges = fv_chips(size, 512, 384)
    assert plan.starts == tuple(starts)
    for k, (start, weights) in enumerate(zip(plan.starts, plan.weights)):
        kept = np.flatnonzero(weights > 0) + start
        assert (kept.min(), kept.max() + 1) == (edges[k], edges[k + 1])


def test_chip_starts_are_farmvibes_on_every_size_up_to_3000():
    for size in range(512, 3001):
        assert plan_axis(size, "centre-crop", 512, 0.25).starts == tuple(fv_chips(size, 512, 384)[0]), size


@pytest.fixture(scope="module")
def context_model(tmp_path_factory):
    """A 4-band network of 32 px chips, 25 % overlap, FarmVibes.AI's scheme, that sees the whole chip.

    Its output depends on the whole chip: a pixel kept from another chip has another value."""
    folder = tmp_path_factory.mktemp("fv_model")
    rng = np.random.default_rng(3)
    weights, context, bias = rng.normal(size=(1, 4)), rng.normal(scale=4.0, size=(1, 4)), rng.normal(size=1)
    path = tile_mean_model(folder / "context.onnx", weights, context, bias, tile=32)
    write_card(
        folder / "context.json",
        id="context-test",
        tiling={"scheme": "centre-crop", "tile": 32, "overlap": 0.25},
        output={"activation": "sigmoid", "channels": 1, "cloud": [0], "shadow": []},
        thresholds={"cloud": 0.3, "shadow": None},
    )

    def network(chip):
        return 1 / (1 + np.exp(-tile_mean_expected(weights, context, bias, chip)[0]))

    return str(path), network


@pytest.mark.parametrize("shape", [(32, 32), (33, 57), (56, 100), (81, 64), (131, 75), (200, 47)])
def test_probabilities_of_a_context_model_are_farmvibes_chip_by_chip(provider, context_model, tmp_path, shape):
    model, network = context_model
    scene = random_scene(*shape, bands=4, seed=shape[0])
    raster = write_raster(tmp_path / "s2.tif", scene, descriptions=["B02", "B03", "B04", "B08"])
    out = tmp_path / "cloud.tif"
    run("cloudprobability", {"SENTINEL_RASTER": raster, "MODEL_PATH": model, "CLOUD_PROBABILITY": str(out)})
    want = fv_predict(scene.astype(np.float64) * 1e-4, 32, 24, network)
    assert np.abs(read(out) - want).max() < 1e-5


def test_a_raster_smaller_than_a_chip_runs(provider, context_model, tmp_path):
    """FarmVibes.AI refuses an axis shorter than a chip; we run it, as docs/farmvibes.md says.

    One chip, mirrored beyond the edge."""
    model, _ = context_model
    with pytest.raises(ValueError):
        fv_chips(20, 32, 24)
    raster = write_raster(tmp_path / "s2.tif", random_scene(20, 70, bands=4), descriptions=["B02", "B03", "B04", "B08"])
    out = tmp_path / "cloud.tif"
    run("cloudprobability", {"SENTINEL_RASTER": raster, "MODEL_PATH": model, "CLOUD_PROBABILITY": str(out)})
    got = read(out)
    assert got.shape == (20, 70) and ((got >= 0) & (got <= 1)).all()


def test_the_committed_farmvibes_card_places_512_px_chips_as_farmvibes(provider, tmp_path):
    """FarmVibes.AI's own cloud card (raw digital numbers, 2-class softmax) on a 1000 px raster.

    There the middle chip starts at 244 (0, 244, 488), where another grid would put it at 384."""
    rng = np.random.default_rng(5)
    weights, context = rng.normal(scale=1e-4, size=(2, 12)), rng.normal(scale=1e-3, size=(2, 12))
    bias = rng.normal(size=2)
    model = tile_mean_model(tmp_path / "cloud_model2_cpu.onnx", weights, context, bias, tile=512)
    card = json.loads((MODELS / "farmvibes-cloud-2.json").read_text())
    assert card["tiling"] == {"scheme": "centre-crop", "tile": 512, "overlap": 0.25}
    shutil.copy(MODELS / "farmvibes-cloud-2.json", tmp_path / "cloud_model2_cpu.json")
    scene = random_scene(1000, 600, bands=12)
    raster = write_raster(tmp_path / "s2.tif", scene, descriptions=list(FARMVIBES_BANDS))
    out = tmp_path / "cloud.tif"
    run("cloudprobability", {"SENTINEL_RASTER": raster, "MODEL_PATH": str(model), "CLOUD_PROBABILITY": str(out)})

    def network(chip):
        logits = tile_mean_expected(weights, context, bias, chip)
        e = np.exp(logits - logits.max(axis=0))
        return (e / e.sum(axis=0))[1]

    want = fv_predict(scene.astype(np.float64), 512, 384, network)
    assert np.abs(read(out) - want).max() < 1e-5


# -- merge ----------------------------------------------------------------------------------


def blobs(shape, count, size, seed):
    """Probabilities 0.05 with ``count`` squares of 0.9, up to ``size`` px a side."""
    rng = np.random.default_rng(seed)
    p = np.full(shape, 0.05, np.float32)
    for _ in range(count):
        h, w = rng.integers(1, size + 1, 2)
        r, c = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        p[r : r + h, c : c + w] = 0.9
    return p


def scene(seed=0, shape=(90, 110)):
    cloud = blobs(shape, 25, 6, seed)
    shadow = blobs(shape, 25, 5, seed + 1)
    product = (blobs(shape, 6, 4, seed + 2) > 0.5).astype(np.uint8)
    return cloud, shadow, product


def merge(
    tmp_path,
    cloud,
    shadow,
    product,
    dilation,
    min_area,
    binary=True,
    cloud_nodata=-1.0,
    shadow_nodata=-1.0,
    product_nodata=None,
    name="m",
):
    paths = {}
    for key, values, nodata in (("c", cloud, cloud_nodata), ("s", shadow, shadow_nodata)):
        paths[key] = (
            values
            if isinstance(values, str)
            else write_raster(tmp_path / f"{name}_{key}.tif", values.astype(np.float32), nodata=nodata)
        )
    paths["p"] = write_raster(tmp_path / f"{name}_p.tif", product, nodata=product_nodata)
    out = tmp_path / f"{name}_mask.tif"
    result = run(
        "mergecloudmasks",
        {
            "CLOUD_PROBABILITY": paths["c"],
            "SHADOW_PROBABILITY": paths["s"],
            "PRODUCT_MASK": paths["p"],
            "CLOUD_PROB_THRESHOLD": 0.3,
            "SHADOW_PROB_THRESHOLD": 0.2,
            "PRODUCT_MASK_KIND": 0,
            "DILATION": dilation,
            "MIN_AREA": min_area,
            "OUTPUT_MODE": 1 if binary else 0,
            "MERGED_CLOUD_MASK": str(out),
        },
    )
    return read(out), result


@pytest.mark.parametrize(("dilation", "min_area"), [(5, 0), (5, 30), (5, 150), (2, 20), (0, 6), (3, 400)])
def test_binary_merge_is_farmvibes(provider, tmp_path, dilation, min_area):
    cloud, shadow, product = scene(seed=dilation * 7 + min_area)
    got, result = merge(tmp_path, cloud, shadow, product, dilation, min_area)
    want = fv_merge(cloud, shadow, product, dilation, min_area)
    np.testing.assert_array_equal(got, want)
    assert result["CLOUD_FRACTION"] == pytest.approx(want.mean())


@pytest.mark.parametrize(("dilation", "min_area"), [(5, 0), (2, 40), (0, 12)])
def test_categorical_merge_flags_what_farmvibes_flags(provider, tmp_path, dilation, min_area):
    """Three classes, but cloud or shadow exactly where FarmVibes.AI's binary mask is 1."""
    cloud, shadow, product = scene(seed=11 + min_area)
    got, _ = merge(tmp_path, cloud, shadow, product, dilation, min_area, binary=False)
    assert set(np.unique(got)) <= {0, 1, 2}
    np.testing.assert_array_equal((got != 0).astype(np.uint8), fv_merge(cloud, shadow, product, dilation, min_area))


def test_min_area_keeps_what_farmvibes_keeps_and_fills_its_holes(provider, tmp_path):
    """The issue's cases of dilation, MIN_AREA and filled holes.

    A 2x2 blob grown by 5 px (104 px) outlives MIN_AREA 30; a 4x4 cloud beside a 4x4 shadow is
    one 32 px component; small holes are filled, with the class around them."""
    cloud = np.full((60, 80), 0.05, np.float32)
    shadow = np.full((60, 80), 0.05, np.float32)
    cloud[10:12, 10:12] = 0.9  # 2x2 blob
    cloud[40:44, 10:14] = 0.9  # 4x4 cloud ...
    shadow[40:44, 14:18] = 0.9  # ... beside a 4x4 shadow
    cloud[5:15, 40:50] = 0.9
    cloud[9:11, 44:46] = 0.05  # a 4 px hole in cloud
    shadow[35:45, 50:60] = 0.9
    shadow[39:41, 54:56] = 0.05  # a 4 px hole in shadow
    product = np.zeros((60, 80), np.uint8)
    got, _ = merge(tmp_path, cloud, shadow, product, 5, 30, binary=True, name="b")
    np.testing.assert_array_equal(got, fv_merge(cloud, shadow, product, 5, 30))
    assert got[10, 10] == 1
    got, _ = merge(tmp_path, cloud, shadow, product, 0, 30, binary=False, name="c")
    np.testing.assert_array_equal((got != 0).astype(np.uint8), fv_merge(cloud, shadow, product, 0, 30))
    assert (got[40:44, 10:14] == 1).all() and (got[40:44, 14:18] == 2).all()  # kept, classes kept
    assert (got[9:11, 44:46] == 1).all() and (got[39:41, 54:56] == 2).all()  # holes filled
    assert (got[10:12, 10:12] == 0).all()  # the 2x2 blob alone is 4 px: cleared


def test_nodata_of_every_input_is_nodata_and_the_rest_is_farmvibes(provider, tmp_path):
    """FarmVibes.AI's nodata values in the probabilities and the product mask, and NaN.

    Nodata 100 in the cloud probability, -9999 in the shadow probability, NaN in both, the
    product mask's nodata 100: 255 where a probability has no data, never cloud, never grown;
    elsewhere FarmVibes.AI's rule; and FarmVibes.AI's own mask wherever no nodata is within
    the dilation."""
    cloud, shadow, product = scene(seed=4)
    rng = np.random.default_rng(9)
    cloud_hole = np.zeros(cloud.shape, bool)
    cloud_hole[:, :12] = True  # the scene's edge
    cloud_hole |= rng.random(cloud.shape) < 0.01
    shadow_hole = rng.random(cloud.shape) < 0.01
    nan_hole = rng.random(cloud.shape) < 0.01
    product_hole = rng.random(cloud.shape) < 0.02
    cloud_file, shadow_file = cloud.copy(), shadow.copy()
    cloud_file[cloud_hole] = 100
    shadow_file[shadow_hole] = -9999
    cloud_file[nan_hole] = np.nan
    product_file = product.copy()
    product_file[product_hole] = 100
    valid = ~(cloud_hole | shadow_hole | nan_hole)
    for min_area, binary in ((0, True), (25, True), (25, False)):
        got, result = merge(
            tmp_path,
            cloud_file,
            shadow_file,
            product_file,
            5,
            min_area,
            binary=binary,
            cloud_nodata=100,
            shadow_nodata=-9999,
            product_nodata=100,
            name=f"n{min_area}{binary}",
        )
        assert (got[~valid] == 255).all() and (got[valid] != 255).all()
        want = our_rule(cloud, shadow, product, valid, ~product_hole, 5, min_area)
        np.testing.assert_array_equal(np.where(got == 255, 255, got != 0).astype(np.uint8), want)
        flagged = (got == 1).sum() if binary else ((got == 1) | (got == 2)).sum()
        assert result["CLOUD_FRACTION"] + result["SHADOW_FRACTION"] == pytest.approx(flagged / valid.sum())
    # FarmVibes.AI itself, fed the files as they are: 100 is cloud, -9999 and NaN are not.
    farmvibes = fv_merge(cloud_file, shadow_file, product_file, 5, 0)
    got, _ = merge(
        tmp_path,
        cloud_file,
        shadow_file,
        product_file,
        5,
        0,
        cloud_nodata=100,
        shadow_nodata=-9999,
        product_nodata=100,
        name="far",
    )
    far = ~ndimage.binary_dilation(~valid | product_hole, structure=disk(5))
    np.testing.assert_array_equal(got[far], farmvibes[far])
    assert (farmvibes[cloud_hole] == 1).all()  # FarmVibes.AI's own defect: no data is cloud


def test_a_mask_band_marks_nodata_of_a_probability(provider, tmp_path):
    cloud, shadow, product = scene(seed=6, shape=(40, 50))
    hidden = np.zeros(cloud.shape, bool)
    hidden[10:20, 10:30] = True
    path = str(tmp_path / "masked.tif")
    ds = gdal.GetDriverByName("GTiff").Create(path, 50, 40, 1, gdal.GDT_Float32)
    ds.SetGeoTransform((500000.0, 10.0, 0.0, 5000000.0, 0.0, -10.0))
    ds.SetProjection(gdal.Open(write_raster(tmp_path / "ref.tif", cloud)).GetProjection())
    ds.GetRasterBand(1).WriteArray(np.where(hidden, 7.5, cloud))  # hidden values outside 0..1
    ds.CreateMaskBand(gdal.GMF_PER_DATASET)
    ds.GetRasterBand(1).GetMaskBand().WriteArray(np.where(hidden, 0, 255).astype(np.uint8))
    ds = None
    got, _ = merge(tmp_path, path, shadow, product, 2, 0)
    want = our_rule(cloud, shadow, product, ~hidden, np.ones(cloud.shape, bool), 2, 0)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("nodata", [None, -1.0])
def test_probabilities_outside_0_1_that_are_not_nodata_are_refused(provider, tmp_path, nodata):
    cloud, shadow, product = scene(seed=8, shape=(30, 30))
    cloud[3, 3] = 100.0  # FarmVibes.AI's nodata, not declared
    with pytest.raises(QgsProcessingException) as err:
        merge(tmp_path, cloud, shadow, product, 5, 0, cloud_nodata=nodata, name="bad")
    message = str(err.value)
    assert "outside 0..1 (100)" in message and "nodata" in message and "bad_c.tif" in message
    assert not (tmp_path / "bad_mask.tif").exists()
