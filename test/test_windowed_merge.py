"""The merge streamed over a raster in row windows: exact, and bounded whatever MIN_AREA is."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from osgeo import gdal
from rasters import read, write_raster

from cloud_mask_improver.core import merge, pipeline


def merged(
    folder: Path, cloud_p: np.ndarray, s: merge.MergeSettings, window_rows: int, shadow_p: np.ndarray | None = None
) -> np.ndarray:
    cloud = write_raster(folder / "cloud.tif", cloud_p.astype(np.float32), nodata=-1)
    shadow = None if shadow_p is None else write_raster(folder / "shadow.tif", shadow_p.astype(np.float32), nodata=-1)
    request = pipeline.MergeRequest(cloud, shadow, None, s, window_rows=window_rows)
    pipeline.merge(request, str(folder / "mask.tif"))
    return read(folder / "mask.tif")


def test_a_patch_joined_only_far_below_counts_as_one(tmp_path):
    """A U of cloud: its two arms are separate in every window but the last.

    Only together are they bigger than MIN_AREA."""
    cloud_p = np.zeros((60, 20), np.float32)
    cloud_p[0:50, 2] = cloud_p[0:50, 12] = 1.0  # two arms of 50 px ...
    cloud_p[50, 2:13] = 1.0  # ... joined at the bottom: 111 px in all
    s = merge.MergeSettings(dilation=0, min_area=100)
    got = merged(tmp_path, cloud_p, s, window_rows=7)
    np.testing.assert_array_equal(got, merge.merge_block(cloud_p, None, np.ones(cloud_p.shape, bool), None, s))
    assert (got[cloud_p > 0] == merge.CLOUD).all()
    cloud_p[50, 7] = 0.0  # cut the bottom: two patches of 55 and 55 px, both dropped
    assert (merged(tmp_path, cloud_p, s, window_rows=7) == merge.CLEAR).all()


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(1, 90),
    width=st.integers(1, 30),
    window_rows=st.integers(1, 25),
    min_area=st.integers(0, 80),
    dilation=st.integers(0, 4),
    density=st.floats(0.3, 0.7),
    seed=st.integers(0, 2**16),
    mode=st.sampled_from(merge.OUTPUT_MODES),
)
def test_windowed_merge_equals_the_whole_raster(height, width, window_rows, min_area, dilation, density, seed, mode):
    rng = np.random.default_rng(seed)
    cloud_p = rng.random((height, width)).astype(np.float32)
    cloud_p[rng.random((height, width)) < 0.05] = -1  # nodata
    s = merge.MergeSettings(cloud_threshold=1 - density, dilation=dilation, min_area=min_area, output_mode=mode)
    with tempfile.TemporaryDirectory() as tmp:
        got = merged(Path(tmp), cloud_p, s, window_rows)
    valid = cloud_p != -1
    want = merge.merge_block(np.where(valid, cloud_p, np.nan), None, valid, None, s)
    np.testing.assert_array_equal(got, want)


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(1, 60),
    width=st.integers(1, 30),
    window_rows=st.integers(1, 12),
    min_area=st.integers(2, 40),
    dilation=st.integers(0, 2),
    seed=st.integers(0, 2**16),
)
def test_holes_filled_across_window_seams_take_the_class_around_them(
    height, width, window_rows, min_area, dilation, seed
):
    """MIN_AREA with cloud and shadow: a filled hole's class is decided as on the whole raster.

    Which class a filled hole shows is decided from its neighbours in every window it spans."""
    rng = np.random.default_rng(seed)
    cloud_p = (rng.random((height, width)) < 0.3).astype(np.float32)
    shadow_p = (rng.random((height, width)) < 0.4).astype(np.float32)
    cloud_p[rng.random((height, width)) < 0.05] = -1  # nodata
    s = merge.MergeSettings(dilation=dilation, min_area=min_area)
    with tempfile.TemporaryDirectory() as tmp:
        got = merged(Path(tmp), cloud_p, s, window_rows, shadow_p)
    valid = cloud_p != -1
    want = merge.merge_block(np.where(valid, cloud_p, np.nan), shadow_p, valid, None, s)
    np.testing.assert_array_equal(got, want)


def test_min_area_needs_no_more_rows_than_the_dilation(tmp_path, monkeypatch):
    """MIN_AREA of a million px on 128-row windows reads no more rows of context than the dilation needs.

    Not 2 million rows of context around each window (the whole raster, for every window)."""
    rows_read = []
    real = gdal.Band.ReadAsArray

    def spy(self, xoff=0, yoff=0, win_xsize=None, win_ysize=None, *args, **kwargs):
        rows_read.append(win_ysize)
        return real(self, xoff, yoff, win_xsize, win_ysize, *args, **kwargs)

    cloud_p = np.random.default_rng(0).random((400, 50)).astype(np.float32)
    monkeypatch.setattr(gdal.Band, "ReadAsArray", spy)
    merged(tmp_path, cloud_p, merge.MergeSettings(dilation=5, min_area=1_000_000), window_rows=32)
    assert rows_read and max(rows_read) <= 32 + 2 * 5


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(1, 90),
    width=st.integers(1, 30),
    window_rows=st.integers(1, 25),
    dilation=st.integers(0, 6),
    density=st.floats(0.3, 0.9),
    seed=st.integers(0, 2**16),
    mode=st.sampled_from(merge.OUTPUT_MODES),
)
def test_windows_read_on_threads_equal_the_whole_raster(height, width, window_rows, dilation, density, seed, mode):
    """Without MIN_AREA (one pass), windows read ahead on several threads.

    The mask is the whole raster's, and no reading thread is left."""
    rng = np.random.default_rng(seed)
    cloud_p = rng.random((height, width)).astype(np.float32)
    cloud_p[rng.random((height, width)) < 0.05] = -1  # nodata
    s = merge.MergeSettings(cloud_threshold=1 - density, dilation=dilation, min_area=0, output_mode=mode)
    with tempfile.TemporaryDirectory() as tmp:
        got = merged(Path(tmp), cloud_p, s, window_rows)
    valid = cloud_p != -1
    np.testing.assert_array_equal(got, merge.merge_block(np.where(valid, cloud_p, np.nan), None, valid, None, s))
    assert not [t for t in threading.enumerate() if t.name.startswith("cloudmask-merge")]
