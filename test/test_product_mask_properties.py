"""Property tests (hypothesis) for what test_tiling.py and test_merge.py leave open:

- the tile grid as the engine uses it: every pixel covered and the blend
  normalised (an identity network gives back its input exactly, whatever the
  raster size, tile, overlap or window), the blend of a network that sees the
  whole tile equal to an independent Tukey-window reference, and the result
  independent of the window size;
- the product-mask decoders: each kind against a value-by-value reference,
  decoding commutes with cutting windows, and resampling onto the raster's
  grid puts every class on the right pixels.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper
from onnx_models import conv1x1_model, write_card
from rasters import read, write_raster

from cloud_mask_improver.core import merge, pipeline, regrid
from cloud_mask_improver.core.raster import raster_info

# -- the tile grid through the engine -----------------------------------------------------

grids = st.one_of(
    st.tuples(st.just("mirror-tukey"), st.integers(8, 48), st.sampled_from([0.0, 0.1, 0.2, 0.25, 0.4])),
    st.tuples(st.just("centre-crop"), st.integers(8, 48), st.sampled_from([0.0, 0.25, 0.4])),
)


def usable(grid) -> bool:
    """Cards refuse a Tukey blend with under 2 px of overlap (see the test below)."""
    scheme, tile, overlap = grid
    return not (scheme == "mirror-tukey" and 0 < tile * overlap < 2)


def test_cards_refuse_an_overlap_too_small_to_blend(tmp_path):
    from cloud_mask_improver.core.modelstore.cards import CardError, load_card

    card = write_card(tmp_path / "c.json", tiling={"scheme": "mirror-tukey", "tile": 8, "overlap": 0.1})
    with pytest.raises(CardError, match="under 2 px"):
        load_card(card)


def identity_model(folder: Path, grid) -> Path:
    """Cloud 'probability' = the first band's value, at any tile size."""
    scheme, tile, overlap = grid
    path = conv1x1_model(folder / "identity.onnx", np.array([[1.0]]), np.zeros(1), tile=None)
    write_card(
        folder / "identity.json",
        id="identity",
        bands=["B02"],
        scaling={"factor": 1.0},
        tiling={"scheme": scheme, "tile": tile, "overlap": overlap},
        output={"activation": "probabilities", "cloud": [0]},
    )
    return path


def tile_mean_model(folder: Path, grid) -> Path:
    """Output = input + the mean of the whole tile: depends on where tiles fall."""
    scheme, tile, overlap = grid
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 1, "h", "w"])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 1, "h", "w"])
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["mean"], axes=[2, 3], keepdims=1),
        helper.make_node("Add", ["input", "mean"], ["output"]),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "tile_mean", [x], [y]), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    onnx.save(model, str(folder / "mean.onnx"))
    write_card(
        folder / "mean.json",
        id="tile-mean",
        bands=["B02"],
        scaling={"factor": 1.0},
        tiling={"scheme": scheme, "tile": tile, "overlap": overlap},
        output={"activation": "probabilities", "cloud": [0]},
    )
    return folder / "mean.onnx"


def cloud_of(folder: Path, raster: str, model: Path, window_rows: int, batch_size: int = 4) -> np.ndarray:
    out = folder / f"cloud-{window_rows}-{batch_size}.tif"
    request = pipeline.ProbabilityRequest(
        raster, [str(model)], bands="B02", window_rows=window_rows, batch_size=batch_size
    )
    pipeline.probabilities(request, pipeline.ProbabilityOutputs(cloud=str(out)))
    return read(out)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.integers(1, 90), cols=st.integers(1, 90), grid=grids, window=st.integers(1, 100), seed=st.integers(0, 2**16)
)
def test_blending_is_normalised_so_an_identity_network_gives_its_input_back(rows, cols, grid, window, seed):
    """Whatever the weights, each pixel is divided by the sum of its weights.

    What the weights themselves are is checked by the next test."""
    assume(usable(grid))
    scene = np.random.default_rng(seed).integers(1, 1000, size=(rows, cols), dtype=np.uint16)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        raster = write_raster(folder / "s2.tif", scene, descriptions=["B02"])
        cloud = cloud_of(folder, raster, identity_model(folder, grid), window)
    np.testing.assert_allclose(cloud, scene, rtol=2e-6)


def tukey_blend_reference(scene: np.ndarray, tile: int, overlap: float) -> np.ndarray:
    """The ukis authors' blending, written out independently of core.tiling.

    Tiles from -margin every tile - margin px over the mirror-padded scene, each tile's output
    (input + the tile's mean) weighted by the outer product of scipy's Tukey window."""
    from scipy.signal.windows import tukey

    margin, step = int(tile * overlap), int(tile - tile * overlap)
    window = tukey(tile, 2 * overlap)
    rows, cols = scene.shape
    pad = 2 * tile + max(rows, cols)
    padded = np.pad(scene.astype(np.float32), pad, mode="symmetric")
    total, weights = np.zeros(scene.shape), np.zeros(scene.shape)
    for r in range(-margin, rows, step):
        for c in range(-margin, cols, step):
            x = padded[pad + r : pad + r + tile, pad + c : pad + c + tile]
            y = x + x.mean(dtype=np.float32)
            w = np.outer(window, window)
            r0, c0 = max(r, 0), max(c, 0)
            r1, c1 = min(r + tile, rows), min(c + tile, cols)
            part = (slice(r0 - r, r1 - r), slice(c0 - c, c1 - c))
            total[r0:r1, c0:c1] += (w * y)[part]
            weights[r0:r1, c0:c1] += w[part]
    return total / weights


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.integers(1, 70),
    cols=st.integers(1, 70),
    tile=st.integers(10, 40),
    overlap=st.sampled_from([0.1, 0.2, 0.25, 0.4]),
    window=st.integers(1, 80),
    seed=st.integers(0, 2**16),
)
def test_blending_weights_are_the_tukey_window_of_the_authors(rows, cols, tile, overlap, window, seed):
    """A network that sees the whole tile: every pixel is the Tukey-weighted mean of the tiles over it.

    A wrong window (e.g. scaled unevenly) moves the result."""
    assume(usable(("mirror-tukey", tile, overlap)))
    scene = np.random.default_rng(seed).integers(1, 1000, size=(rows, cols), dtype=np.uint16)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        raster = write_raster(folder / "s2.tif", scene, descriptions=["B02"])
        cloud = cloud_of(folder, raster, tile_mean_model(folder, ("mirror-tukey", tile, overlap)), window)
    np.testing.assert_allclose(cloud, tukey_blend_reference(scene, tile, overlap), rtol=1e-5)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.integers(1, 90),
    cols=st.integers(1, 60),
    grid=grids,
    windows=st.tuples(st.integers(1, 100), st.integers(1, 100)),
    batches=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    seed=st.integers(0, 2**16),
)
def test_context_sensitive_result_is_independent_of_window_and_batch(rows, cols, grid, windows, batches, seed):
    assume(usable(grid))
    scene = np.random.default_rng(seed).integers(1, 1000, size=(rows, cols), dtype=np.uint16)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        raster = write_raster(folder / "s2.tif", scene, descriptions=["B02"])
        model = tile_mean_model(folder, grid)
        first = cloud_of(folder, raster, model, windows[0], batches[0])
        second = cloud_of(folder, raster, model, windows[1], batches[1])
    assert first.shape == scene.shape
    np.testing.assert_allclose(first, second, rtol=1e-6)


# -- product-mask decoders ----------------------------------------------------------------


def reference_decode(value, kind: str, nodata, threshold: float) -> tuple[bool, bool, bool]:
    """(cloud, shadow, known) of one value, straight from the documented product mask kinds."""
    value = float(value)
    if np.isnan(value) or (nodata is not None and value == nodata):
        return False, False, False
    if kind == "nonzero":
        return value != 0, False, True
    if kind == "scl":
        if value in (0, 1):
            return False, False, False
        return value in (8, 9, 10), value == 3, True
    if kind == "qa60":
        bits = int(value)
        return bool(bits & (1 << 10) or bits & (1 << 11)), False, True
    return value >= threshold, False, True


@st.composite
def product_values(draw):
    dtype = draw(st.sampled_from(["uint8", "uint16", "float32"]))
    kind = draw(st.sampled_from(merge.PRODUCT_KINDS))
    shape = (draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if kind == "qa60" and dtype != "uint8":
        pool = np.array([0, 1024, 2048, 3072, 1, 1025, 4096], dtype=np.float64)
    else:
        pool = np.array([0, 1, 2, 3, 4, 8, 9, 10, 11, 49, 50, 51, 100, 255], dtype=np.float64)
    values = rng.choice(pool, size=shape).astype(dtype)
    if dtype == "float32":
        values[rng.random(shape) < 0.1] = np.nan
    nodata = draw(st.one_of(st.none(), st.sampled_from([0.0, 100.0, 255.0])))
    threshold = draw(st.sampled_from([0.0, 10.0, 50.0, 100.0]))
    return values, kind, nodata, threshold


@settings(max_examples=200, deadline=None)
@given(product_values())
def test_decoders_agree_with_the_value_by_value_reference(case):
    values, kind, nodata, threshold = case
    decoded = merge.decode_product_mask(values, kind, nodata, threshold)
    want = np.array([reference_decode(v, kind, nodata, threshold) for v in values.ravel()]).reshape(values.shape + (3,))
    np.testing.assert_array_equal(decoded.cloud, want[..., 0])
    np.testing.assert_array_equal(decoded.shadow, want[..., 1])
    np.testing.assert_array_equal(decoded.known, want[..., 2])
    assert not (decoded.cloud & decoded.shadow).any()


@settings(max_examples=100, deadline=None)
@given(product_values(), st.data())
def test_decoding_a_window_is_the_window_of_the_decoding(case, data):
    """What lets the merge decode the product mask one window at a time."""
    values, kind, nodata, threshold = case
    rows, cols = values.shape
    r0 = data.draw(st.integers(0, rows - 1))
    c0 = data.draw(st.integers(0, cols - 1))
    window = (slice(r0, data.draw(st.integers(r0 + 1, rows))), slice(c0, data.draw(st.integers(c0 + 1, cols))))
    whole = merge.decode_product_mask(values, kind, nodata, threshold)
    part = merge.decode_product_mask(values[window], kind, nodata, threshold)
    for name in ("cloud", "shadow", "known"):
        np.testing.assert_array_equal(getattr(part, name), getattr(whole, name)[window])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    factor=st.integers(1, 4),
    offset=st.tuples(st.integers(-3, 3), st.integers(-3, 3)),
    shape=st.tuples(st.integers(1, 15), st.integers(1, 15)),
    seed=st.integers(0, 2**16),
)
def test_a_coarser_shifted_product_mask_lands_on_the_right_pixels(factor, offset, shape, seed):
    """An SCL at ``factor`` x the pixel size, shifted by whole coarse pixels.

    On the raster's grid each class covers exactly the fine pixels under its coarse pixel,
    and pixels outside the product mask are unknown (never cloud)."""
    rng = np.random.default_rng(seed)
    scl = rng.choice(np.array([0, 3, 4, 8, 9, 10], np.uint8), size=shape)
    size = 10.0 * factor
    x0, y0 = 500000.0 + offset[1] * size, 5000000.0 - offset[0] * size
    with tempfile.TemporaryDirectory() as tmp:
        grid_path = write_raster(Path(tmp) / "grid.tif", np.zeros((20, 20), np.uint16))
        product = write_raster(Path(tmp) / "scl.tif", scl, nodata=0, transform=(x0, size, 0.0, y0, 0.0, -size))
        grid = raster_info(grid_path)
        try:
            on_grid, fill = regrid.product_mask_on_grid(product, grid, tmp)
        except regrid.RasterError as err:  # refused only when it does not overlap at all
            assert "does not overlap" in str(err)
            return
        values = read(on_grid)
    # The expected values: the coarse pixel over each fine pixel, or unknown outside.
    fine = np.arange(20)
    rows, cols = fine // factor - offset[0], fine // factor - offset[1]
    inside = (rows[:, None] >= 0) & (rows[:, None] < shape[0]) & (cols >= 0) & (cols < shape[1])
    want = np.zeros((20, 20), np.uint8)
    want[inside] = scl[np.clip(rows, 0, shape[0] - 1)[:, None], np.clip(cols, 0, shape[1] - 1)][inside]
    got = merge.decode_product_mask(values, "scl", fill)
    expected = merge.decode_product_mask(want, "scl", 0)
    for name in ("cloud", "shadow", "known"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name))
