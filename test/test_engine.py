"""The streaming engine against models whose exact output is known."""

import threading
from pathlib import Path

import numpy as np
import pytest
from onnx_models import conv1x1_model, expected, write_card
from osgeo import gdal
from rasters import random_scene, read, write_raster
from samples import L1C_STACK, model_file, require

from cloud_mask_improver.core import engine, pipeline, progress
from cloud_mask_improver.core.bands import FARMVIBES_BANDS
from cloud_mask_improver.core.modelstore.cards import SCHEMES
from cloud_mask_improver.core.raster import RowSource


def softmax(x, axis=0):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.fixture
def pixel_model(tmp_path):
    """A 4-band, 3-class per-pixel network with the ukis-style card (64 px tiles)."""
    rng = np.random.default_rng(1)
    weights, bias = rng.normal(size=(3, 4)), rng.normal(size=3)
    onnx_path = conv1x1_model(tmp_path / "pixel.onnx", weights, bias, tile=64)
    write_card(
        tmp_path / "pixel.json",
        id="pixel-test",
        scaling={"factor": 0.0001, "mean": [0.1, 0.2, 0.3, 0.4], "std": [0.5, 0.6, 0.7, 0.8]},
    )
    return onnx_path, weights, bias


def reference(scene, weights, bias):
    x = scene[[1, 2, 3, 7]].astype(np.float64) * 1e-4
    x = (x - np.array([0.1, 0.2, 0.3, 0.4])[:, None, None]) / np.array([0.5, 0.6, 0.7, 0.8])[:, None, None]
    return softmax(expected(weights, bias, x))


def run_probabilities(tmp_path, raster, model, window_rows=512, batch_size=4, name="p"):
    cloud, shadow = tmp_path / f"{name}_cloud.tif", tmp_path / f"{name}_shadow.tif"
    request = pipeline.ProbabilityRequest(
        raster, [str(model)], str(model), window_rows=window_rows, batch_size=batch_size
    )
    pipeline.probabilities(request, pipeline.ProbabilityOutputs(cloud=str(cloud), shadow=str(shadow)))
    return read(cloud), read(shadow)


@pytest.mark.parametrize("shape", [(1, 1), (100, 700), (203, 97), (64, 64), (300, 301)])
def test_blended_tiles_equal_whole_image_inference(tmp_path, pixel_model, shape):
    model, weights, bias = pixel_model
    scene = random_scene(*shape)
    raster = write_raster(tmp_path / "s2.tif", scene)
    cloud, shadow = run_probabilities(tmp_path, raster, model)
    probs = reference(scene, weights, bias)
    assert cloud.shape == shape
    assert np.abs(cloud - probs[1]).max() < 1e-6
    assert np.abs(shadow - probs[2]).max() < 1e-6


def test_result_does_not_depend_on_window_or_batch(tmp_path, pixel_model):
    model = pixel_model[0]
    raster = write_raster(tmp_path / "s2.tif", random_scene(333, 250))
    first = run_probabilities(tmp_path, raster, model, window_rows=10_000, batch_size=8, name="a")
    second = run_probabilities(tmp_path, raster, model, window_rows=37, batch_size=1, name="b")
    for a, b in zip(first, second):
        assert np.array_equal(a, b)


def test_nodata_pixels_come_out_as_nodata(tmp_path, pixel_model):
    scene = random_scene(90, 80)
    scene[3, 10:20, 5:9] = 0  # one band's nodata is enough
    scene[:, 50:, :] = 0  # a whole nodata region
    raster = write_raster(tmp_path / "s2.tif", scene)
    cloud, _ = run_probabilities(tmp_path, raster, pixel_model[0])
    assert (cloud[10:20, 5:9] == -1).all() and (cloud[50:] == -1).all()
    assert (cloud[:50][cloud[:50] != -1] >= 0).all()
    assert (cloud != -1).sum() == 90 * 80 - 40 - 40 * 80


@pytest.mark.parametrize(
    "encoding", ["float32 NaN, no nodata value", "uint16 nodata 65535", "uint16 0, no nodata value"]
)
def test_nodata_gives_the_same_probabilities_whatever_marks_it(tmp_path, encoding):
    """The same scene and the same holes as the product stores them and as other tools leave them.

    The holes are a swath edge and a hole; the product stores them as uint16, nodata 0; other
    tools leave float32 with NaN (gdalwarp, the raster calculator), another nodata value, or 0
    with no nodata declared (a stack of the JP2 files). The real network gives the same
    probabilities, and nodata exactly at the holes: otherwise NaN would spread through its
    convolutions over whole tiles, 65535 would look like bright cloud, and undeclared zeros
    would be classified."""
    model_file("ukis-6b-l1c")
    require(L1C_STACK)
    stack = gdal.Open(str(L1C_STACK))
    scene = stack.ReadAsArray(100, 200, 200, 180)
    descriptions = [stack.GetRasterBand(i + 1).GetDescription() for i in range(stack.RasterCount)]
    holes = np.zeros(scene.shape[1:], dtype=bool)
    holes[:, :30] = True
    holes[90:100, 120:140] = True
    stored = {
        "float32 NaN, no nodata value": (np.float32(np.nan), None),
        "uint16 nodata 65535": (np.uint16(65535), 65535),
        "uint16 0, no nodata value": (np.uint16(0), None),
    }
    fill, nodata = stored[encoding]
    results = []
    for name, value, declared in (("product", np.uint16(0), 0), ("other", fill, nodata)):
        data = np.where(holes, value, scene.astype(type(value))).astype(type(value))
        raster = write_raster(
            tmp_path / f"{name}.tif",
            data,
            descriptions=descriptions,
            nodata=declared,
            metadata={"PROCESSING_LEVEL": "L1C"},
        )
        results.append(run_probabilities(tmp_path, raster, "ukis-6b-l1c", name=name))
    for as_product, as_other in zip(*results):
        assert np.array_equal(as_other == -1, holes)
        assert np.array_equal(as_other, as_product)


@pytest.mark.parametrize("marking", ["alpha band", "mask"])
def test_pixels_an_alpha_band_or_a_mask_hides_are_nodata(tmp_path, pixel_model, marking):
    """An alpha band (gdalwarp -dstalpha) or a GeoTIFF's mask instead of a nodata value.

    The raster is usable (an alpha band is not a Sentinel-2 band) and its hidden pixels are
    nodata, as they would be with a nodata value."""
    scene = random_scene(50, 40)
    hidden = np.zeros((50, 40), dtype=bool)
    hidden[:, :12] = True
    hidden[30:35, 20:30] = True
    path = str(tmp_path / "s2.tif")
    descriptions = [FARMVIBES_BANDS[i] for i in range(12)]
    if marking == "alpha band":
        plain = write_raster(tmp_path / "plain.tif", scene, descriptions=descriptions, nodata=None)
        gdal.Warp(path, plain, dstAlpha=True)  # a 13th band, alpha, as uint16
        ds = gdal.Open(path, gdal.GA_Update)
        ds.GetRasterBand(13).WriteArray(np.where(hidden, 0, 65535).astype(np.uint16))
    else:
        write_raster(path, scene, descriptions=descriptions, nodata=None)
        ds = gdal.Open(path, gdal.GA_Update)
        ds.CreateMaskBand(gdal.GMF_PER_DATASET)
        ds.GetRasterBand(1).GetMaskBand().WriteArray(np.where(hidden, 0, 255).astype(np.uint8))
    ds = None
    cloud, shadow = run_probabilities(tmp_path, path, pixel_model[0])
    for probability in (cloud, shadow):
        assert np.array_equal(probability == -1, hidden)


def seed_card_model(folder: Path, kind: str):
    """A generated model with the seed's shapes, saved under the seed's file name.

    So the committed farmvibes card applies."""
    rng = np.random.default_rng(7)
    if kind == "cloud":
        weights, bias = rng.normal(scale=1e-4, size=(2, 12)), rng.normal(size=2)
        path = conv1x1_model(folder / "cloud_model2_cpu.onnx", weights, bias, tile=512)
    else:
        weights, bias = rng.normal(size=(1, 12)), rng.normal(size=1)
        path = conv1x1_model(folder / "shadow.onnx", weights, bias, tile=512)
    return path, weights, bias


def test_seed_contract_cloud_and_shadow(tmp_path):
    """Cloud: raw DN, 2-class softmax, channel 1. Shadow: DN x 1e-4, sigmoid."""
    scene = random_scene(700, 530)
    raster = write_raster(tmp_path / "s2.tif", scene, descriptions=list(FARMVIBES_BANDS))
    cloud_model, wc, bc = seed_card_model(tmp_path, "cloud")
    shadow_model, ws, bs = seed_card_model(tmp_path, "shadow")
    cloud_path, shadow_path = tmp_path / "c.tif", tmp_path / "s.tif"
    request = pipeline.ProbabilityRequest(raster, [str(cloud_model)], str(shadow_model))
    pipeline.probabilities(request, pipeline.ProbabilityOutputs(str(cloud_path), str(shadow_path)))
    want_cloud = softmax(expected(wc, bc, scene.astype(np.float64)))[1]
    want_shadow = 1 / (1 + np.exp(-expected(ws, bs, scene.astype(np.float64) * 1e-4)[0]))
    assert np.abs(read(cloud_path) - want_cloud).max() < 1e-5
    assert np.abs(read(shadow_path) - want_shadow).max() < 1e-5


def test_farmvibes_models_work_on_rasters_smaller_than_a_chip(tmp_path):
    scene = random_scene(40, 700)
    raster = write_raster(tmp_path / "s2.tif", scene)
    model, w, b = seed_card_model(tmp_path, "cloud")
    out = tmp_path / "c.tif"
    pipeline.probabilities(
        pipeline.ProbabilityRequest(raster, [str(model)]), pipeline.ProbabilityOutputs(cloud=str(out))
    )
    assert np.abs(read(out) - softmax(expected(w, b, scene.astype(np.float64)))[1]).max() < 1e-5


def test_processing_resolution_runs_coarse_and_returns_to_the_grid(tmp_path, pixel_model):
    scene = np.repeat(np.repeat(random_scene(30, 20), 3, axis=1), 3, axis=2)  # 3x3 blocks
    raster = write_raster(tmp_path / "s2.tif", scene)
    cloud_path = tmp_path / "c.tif"
    request = pipeline.ProbabilityRequest(raster, [str(pixel_model[0])], resolution=30.0)
    pipeline.probabilities(request, pipeline.ProbabilityOutputs(cloud=str(cloud_path)))
    cloud = read(cloud_path)
    assert cloud.shape == (90, 60)
    want = reference(scene, *pixel_model[1:])[1]
    # Block centres are exact; in between, bilinear interpolation of coarse values.
    assert np.abs(cloud[1::3, 1::3] - want[1::3, 1::3]).max() < 1e-5


@pytest.mark.parametrize("shape, resolution", [((31, 22), 30.0), ((1, 1), 60.0), ((257, 259), 20.0)])
def test_a_processing_resolution_covers_the_whole_raster(tmp_path, pixel_model, shape, resolution):
    """Sizes that are no multiple of the coarse pixel: the last rows and columns have probabilities too.

    And a raster smaller than a coarse pixel runs."""
    raster = write_raster(tmp_path / "s2.tif", random_scene(*shape))
    cloud_path = tmp_path / "c.tif"
    request = pipeline.ProbabilityRequest(raster, [str(pixel_model[0])], resolution=resolution)
    pipeline.probabilities(request, pipeline.ProbabilityOutputs(cloud=str(cloud_path)))
    cloud = read(cloud_path)
    assert cloud.shape == shape
    assert ((cloud >= 0) & (cloud <= 1)).all()


def test_a_processing_resolution_leaves_undeclared_zeros_out_of_the_average(tmp_path, pixel_model):
    """Digital numbers of 0 with no nodata declared are nodata at a coarser resolution too.

    The coarse pixels are not darkened by averaging them in."""
    scene = random_scene(90, 60)
    scene[:, :, :20] = 0
    results = []
    for name, nodata in (("declared", 0), ("undeclared", None)):
        raster = write_raster(tmp_path / f"{name}.tif", scene, nodata=nodata)
        cloud_path = tmp_path / f"{name}_c.tif"
        request = pipeline.ProbabilityRequest(raster, [str(pixel_model[0])], resolution=30.0)
        pipeline.probabilities(request, pipeline.ProbabilityOutputs(cloud=str(cloud_path)))
        results.append(read(cloud_path))
    assert np.array_equal(results[0], results[1])


def _stripes_seen(monkeypatch) -> list[tuple[int, int]]:
    """Record the column windows the engine reads from, one per stripe."""
    seen = []
    real = RowSource._read

    def read_rows(self, lo, hi):
        window = (self.first_col, self.first_col + self.cols)
        if not seen or seen[-1] != window:
            seen.append(window)
        return real(self, lo, hi)

    monkeypatch.setattr(RowSource, "_read", read_rows)
    return seen


def _probabilities(tmp_path, raster, clouds, shadow, name, **settings):
    paths = pipeline.ProbabilityOutputs(*(str(tmp_path / f"{name}_{k}.tif") for k in ("c", "s", "u")))
    request = pipeline.ProbabilityRequest(raster, clouds, shadow, **settings)
    pipeline.probabilities(request, paths)
    return [read(p) for p in paths.paths()]


def test_column_stripes_give_the_same_probabilities_as_one_pass(tmp_path, pixel_model, monkeypatch):
    """Two tile grids at once, nodata across the splits: the stripes equal the unsplit run bit for bit.

    The grids are 64 px blended tiles and the seed's 512 px chips."""
    scene = random_scene(150, 1400)
    scene[:, 20:90, 400:1000] = 0
    raster = write_raster(tmp_path / "s2.tif", scene, descriptions=list(FARMVIBES_BANDS))
    seed_cloud, _, _ = seed_card_model(tmp_path, "cloud")
    seed_shadow, _, _ = seed_card_model(tmp_path, "shadow")
    clouds = [str(pixel_model[0]), str(seed_cloud)]
    whole = _probabilities(tmp_path, raster, clouds, str(seed_shadow), "whole", stripe_cols=100_000)
    seen = _stripes_seen(monkeypatch)
    striped = _probabilities(tmp_path, raster, clouds, str(seed_shadow), "striped", stripe_cols=300)
    assert len(seen) >= 2  # it did split
    for a, b in zip(whole, striped):
        assert np.array_equal(a, b, equal_nan=True)


def test_a_wide_raster_is_read_a_stripe_at_a_time(tmp_path, pixel_model, monkeypatch):
    """What keeps a full tile's memory near a small raster's: no buffer spans the width."""
    raster = write_raster(tmp_path / "s2.tif", random_scene(70, 2000))
    seen = _stripes_seen(monkeypatch)
    cloud, _ = run_probabilities(tmp_path, raster, pixel_model[0])  # default stripes
    assert len(seen) == 1  # narrower than a stripe: one pass
    seen.clear()
    request = pipeline.ProbabilityRequest(raster, [str(pixel_model[0])], stripe_cols=500)
    pipeline.probabilities(request, pipeline.ProbabilityOutputs(cloud=str(tmp_path / "s.tif")))
    widths = [end - first for first, end in seen]
    assert len(seen) == 4 and max(widths) <= 500 + 64
    assert seen[0][0] == 0 and seen[-1][1] == 2000
    assert np.array_equal(read(tmp_path / "s.tif"), cloud)


def blended_model(folder: Path, name: str, tile: int, overlap: float, seed: int) -> str:
    """A 1x1 model on a blended (Tukey) grid of its own."""
    rng = np.random.default_rng(seed)
    conv1x1_model(folder / f"{name}.onnx", rng.normal(size=(3, 4)), rng.normal(size=3), None)
    write_card(folder / f"{name}.json", id=name, tiling={"scheme": "mirror-tukey", "tile": tile, "overlap": overlap})
    return str(folder / f"{name}.onnx")


@pytest.mark.parametrize("stripe_cols", [700, 450])
def test_column_stripes_are_exact_with_two_blended_grids(tmp_path, monkeypatch, stripe_cols):
    """Two blended grids whose tiles start at different columns (256 px / 0.2 and 512 px / 0.4).

    Where a split falls, two tiles of the second grid reach across it, and their sum must be
    added in the order an unsplit run adds it, or the last bit differs."""
    raster = write_raster(
        tmp_path / "s2.tif", random_scene(600, 2000, bands=4, seed=3), descriptions=["B02", "B03", "B04", "B08"]
    )
    clouds = [blended_model(tmp_path, "small", 256, 0.2, 1), blended_model(tmp_path, "large", 512, 0.4, 2)]
    whole = _probabilities(tmp_path, raster, clouds, clouds[1], "whole", stripe_cols=100_000)
    seen = _stripes_seen(monkeypatch)
    striped = _probabilities(tmp_path, raster, clouds, clouds[1], f"striped{stripe_cols}", stripe_cols=stripe_cols)
    assert len(seen) >= 2  # it did split
    for a, b in zip(whole, striped):
        assert np.array_equal(a, b, equal_nan=True), f"{np.count_nonzero(a != b)} pixels differ"


def test_an_engine_is_freed_when_its_run_ends(tmp_path, monkeypatch):
    """Without the cycle collector: an engine kept alive by a reference cycle is freed later.

    At any moment and on any thread, with its models' buffers and its rows (QGIS's Python can
    crash so, now and then, in a later test's teardown)."""
    import gc
    import weakref

    engines = []
    real_run = engine.Engine.run

    def run(self, sink):
        engines.append(weakref.ref(self))
        real_run(self, sink)

    monkeypatch.setattr(engine.Engine, "run", run)
    raster = write_raster(
        tmp_path / "s2.tif", random_scene(300, 300, bands=4, seed=5), descriptions=["B02", "B03", "B04", "B08"]
    )
    model = blended_model(tmp_path, "small", 256, 0.2, 1)
    gc.disable()
    try:
        _probabilities(tmp_path, raster, [model], model, "freed")
        assert engines and all(ref() is None for ref in engines)
    finally:
        gc.enable()


# -- blocks of rows at once (the GPU's way of keeping the network fed) ---------------------
def test_every_tiling_scheme_a_card_may_name_has_a_kind_of_grid():
    assert set(engine.GRID_KINDS) == set(SCHEMES)


def test_row_blocks_split_at_output_block_rows():
    bands = engine.row_blocks(10980, 8)
    assert len(bands) == 8 and bands[0][0] == 0 and bands[-1][1] == 10980
    assert all(a[1] == b[0] for a, b in zip(bands, bands[1:]))
    assert all(lo % 256 == 0 for lo, _ in bands)
    assert engine.row_blocks(300, 4) == [(0, 256), (256, 300)]
    assert engine.row_blocks(200, 4) == [(0, 200)]
    assert engine.row_blocks(10980, 1) == engine.row_blocks(10980, 0) == [(0, 10980)]
    assert engine.row_blocks(600, 1) == [(0, 600)]  # one block is the whole raster, whatever its height
    assert engine.row_blocks(700, 2) == [(0, 256), (256, 700)]


def _readers(monkeypatch) -> set[int]:
    """The threads that read the raster."""
    names = set()
    real = RowSource._read

    def read_rows(self, lo, hi):
        names.add(threading.get_ident())
        return real(self, lo, hi)

    monkeypatch.setattr(RowSource, "_read", read_rows)
    return names


@pytest.mark.parametrize("workers,stripe_cols", [(2, 100_000), (3, 700), (5, 450)])
def test_bands_of_rows_give_the_same_probabilities_as_one_pass(
    tmp_path, monkeypatch, pixel_model, workers, stripe_cols
):
    """Three tile grids and a pixel model: every band size gives the one-block result bit for bit.

    Two blended grids and one of centre-cropped chips, nodata across the seams between bands,
    with and without column stripes."""
    scene = random_scene(1200, 1100, bands=len(FARMVIBES_BANDS), seed=5)
    scene[:, 230:300, 100:700] = 0  # across the first seam (row 256)
    raster = write_raster(tmp_path / "s2.tif", scene, descriptions=list(FARMVIBES_BANDS))
    seed_shadow, _, _ = seed_card_model(tmp_path, "shadow")
    clouds = [
        blended_model(tmp_path, "small", 256, 0.2, 1),
        blended_model(tmp_path, "large", 512, 0.4, 2),
        str(pixel_model[0]),
    ]
    one = _probabilities(tmp_path, raster, clouds, str(seed_shadow), "one", stripe_cols=stripe_cols, workers=1)
    readers = _readers(monkeypatch)
    banded = _probabilities(
        tmp_path, raster, clouds, str(seed_shadow), f"bands{workers}", stripe_cols=stripe_cols, workers=workers
    )
    assert len(readers) >= 2  # the bands read on threads of their own
    for a, b in zip(one, banded):
        differ = np.count_nonzero(~((a == b) | (np.isnan(a) & np.isnan(b))))
        assert np.array_equal(a, b, equal_nan=True), f"{differ} pixels differ"


def _band_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(("cloudmask-rows", "cloudmask-reader"))]


def test_a_failing_band_fails_the_run_and_leaves_no_output(tmp_path, monkeypatch, pixel_model):
    raster = write_raster(
        tmp_path / "s2.tif", random_scene(1200, 300, bands=len(FARMVIBES_BANDS)), descriptions=list(FARMVIBES_BANDS)
    )
    real = RowSource._read

    def failing(self, lo, hi):
        if lo >= 768:
            raise OSError("Read error on the disk")
        return real(self, lo, hi)

    monkeypatch.setattr(RowSource, "_read", failing)
    out = tmp_path / "cloud.tif"
    request = pipeline.ProbabilityRequest(raster, [str(pixel_model[0])], workers=4, window_rows=32)
    with pytest.raises(OSError, match="Read error"):
        pipeline.probabilities(request, pipeline.ProbabilityOutputs(cloud=str(out)))
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.suffix not in (".onnx", ".json") and p.name != "s2.tif"]
    assert _band_threads() == []


def test_cancel_stops_every_band(tmp_path, pixel_model):
    raster = write_raster(
        tmp_path / "s2.tif", random_scene(1200, 300, bands=len(FARMVIBES_BANDS)), descriptions=list(FARMVIBES_BANDS)
    )

    class CancelSoon(progress.Feedback):
        calls = 0

        def progress(self, fraction):
            self.calls += 1

        def cancelled(self):
            return self.calls >= 3

    feedback = CancelSoon()
    out = tmp_path / "cloud.tif"
    request = pipeline.ProbabilityRequest(raster, [str(pixel_model[0])], workers=4)
    with pytest.raises(progress.Cancelled):
        pipeline.probabilities(request, pipeline.ProbabilityOutputs(cloud=str(out)), feedback)
    assert feedback.calls < 3 + 4  # each band stops at its next tile
    assert not out.exists() and _band_threads() == []
