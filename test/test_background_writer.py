"""Writing in its own thread (probability.BackgroundWriter).

Rows still arrive whole and in order, memory stays bounded, writing overlaps the network,
and a failure while writing stops the run with that error, no partial output and no thread
left behind."""

import threading
import time

import numpy as np
import pytest
from rasters import random_scene, read, write_raster

from cloud_mask_improver.core import engine, pipeline, probability
from cloud_mask_improver.core.probability import BackgroundWriter


def writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("cloudmask-writer")]


def test_rows_arrive_in_order_with_a_bounded_queue():
    seen, waiting, most = [], [0], [0]
    lock = threading.Lock()

    def slow_sink(row, col, strips):
        time.sleep(0.01)
        with lock:
            seen.append(row)
            waiting[0] -= 1

    background = BackgroundWriter(slow_sink, depth=2)
    for row in range(20):
        with lock:
            waiting[0] += 1
            most[0] = max(most[0], waiting[0])
        background(row, 0, {"x": np.zeros((2, 2))})
    background.close()
    assert seen == list(range(20))
    assert most[0] <= 3  # the depth, plus the one being handed over
    assert writer_threads() == []


def test_a_writer_error_is_raised_in_the_engine_thread():
    def failing(row, col, strips):
        if row == 1:
            raise OSError("No space left on device")

    background = BackgroundWriter(failing, depth=1)
    with pytest.raises(OSError, match="No space left"):
        for row in range(10):
            background(row, 0, {})
        background.close()
    background.close(drop=True)
    assert writer_threads() == []


def test_writing_overlaps_the_network(tmp_path, tiny_model, monkeypatch):
    """The first rows' writing is still going on when the network runs again."""
    raster = write_raster(tmp_path / "s2.tif", random_scene(400, 100))
    writing = threading.Event()
    overlapped = []
    original = probability.ProbabilityWriter.__call__

    def slow_write(self, row, col, strips):
        writing.set()
        time.sleep(0.3)
        original(self, row, col, strips)
        writing.clear()

    real_run = engine.TiledGrid._run_batch

    def run_batch(self, *args):
        overlapped.append(writing.is_set())
        return real_run(self, *args)

    monkeypatch.setattr(probability.ProbabilityWriter, "__call__", slow_write)
    monkeypatch.setattr(engine.TiledGrid, "_run_batch", run_batch)
    out = tmp_path / "cloud.tif"
    request = pipeline.ProbabilityRequest(raster, [str(tiny_model)], window_rows=64)
    pipeline.probabilities(request, pipeline.ProbabilityOutputs(cloud=str(out)))
    assert any(overlapped)
    assert read(out).shape == (400, 100)
    assert writer_threads() == []


def test_a_failed_write_fails_the_run_cleanly(tmp_path, tiny_model, monkeypatch):
    raster = write_raster(tmp_path / "s2.tif", random_scene(400, 100))
    calls = []
    original = probability.ProbabilityWriter.__call__

    def failing(self, row, col, strips):
        calls.append(row)
        if len(calls) == 2:
            raise OSError("No space left on device")
        original(self, row, col, strips)

    monkeypatch.setattr(probability.ProbabilityWriter, "__call__", failing)
    out = tmp_path / "cloud.tif"
    request = pipeline.ProbabilityRequest(raster, [str(tiny_model)], window_rows=64)
    with pytest.raises(OSError, match="No space left"):
        pipeline.probabilities(request, pipeline.ProbabilityOutputs(cloud=str(out)))
    assert not out.exists()
    assert list(tmp_path.glob("*partial*")) == []
    assert writer_threads() == []
