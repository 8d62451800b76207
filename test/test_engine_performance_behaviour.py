"""What the speed work must not change for users.

A run that reads ahead in a background thread still stops when cancelled, reports read
errors, leaves no thread behind, never runs the model on tiles with nothing to predict, and
a CUDA request without CUDA still runs (on the CPU) and says so."""

import threading

import numpy as np
import pytest
from rasters import random_scene, read, write_raster

from cloud_mask_improver.core import pipeline
from cloud_mask_improver.core.engine import Engine, Job, TiledGrid
from cloud_mask_improver.core.inference import LoadedModel, load_model
from cloud_mask_improver.core.modelstore import catalogue
from cloud_mask_improver.core.progress import Cancelled, Feedback
from cloud_mask_improver.core.raster import RasterError, RowSource


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("cloudmask-reader")]


class CancelAfter(Feedback):
    def __init__(self, ticks: int):
        self.ticks = ticks
        self.calls = 0

    def progress(self, fraction: float) -> None:
        self.calls += 1

    def cancelled(self) -> bool:
        return self.calls >= self.ticks


def test_cancelling_stops_soon_leaves_no_output_and_no_thread(tmp_path, tiny_model):
    raster = write_raster(tmp_path / "s2.tif", random_scene(600, 200))
    out = tmp_path / "cloud.tif"
    feedback = CancelAfter(ticks=5)
    request = pipeline.ProbabilityRequest(raster, [str(tiny_model)], window_rows=64)
    with pytest.raises(Cancelled):
        pipeline.probabilities(request, pipeline.ProbabilityOutputs(cloud=str(out)), feedback)
    assert feedback.calls == 5  # stopped at the first check after the request, not at the end
    assert not out.exists()
    assert list(tmp_path.glob("*partial*")) == []
    assert reader_threads() == []


class FailingSource(RowSource):
    """Reading fails once the run gets past a given row, as a truncated file does."""

    def __init__(self, *args, fail_at: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.fail_at = fail_at

    def rows(self, lo: int, hi: int) -> np.ndarray:
        if hi > self.fail_at:
            raise RasterError(f"Reading rows {lo}-{hi} failed: simulated read error")
        return super().rows(lo, hi)


def _job(model_path) -> Job:
    card, path = catalogue.resolve(str(model_path))
    return Job(load_model(card, path, "cpu"), [0, 1, 2, 3], cloud=True, shadow=True)


def test_a_read_error_in_the_reader_reaches_the_caller(tmp_path, tiny_model):
    raster = write_raster(tmp_path / "s2.tif", random_scene(400, 100, bands=4))
    source = FailingSource(raster, [1, 2, 3, 4], window_rows=64, fail_at=200)
    written = []
    with pytest.raises(RasterError, match="simulated read error"):
        Engine(source, [_job(tiny_model)], [0, 0, 0, 0]).run(
            lambda row, col, strips: written.append(row + len(strips["tiny-test:cloud"]))
        )
    assert written and max(written) < 200  # rows before the error were delivered
    assert reader_threads() == []


class CountingSession:
    """Wraps an onnxruntime session and counts the tiles it is given."""

    def __init__(self, session):
        self.session = session
        self.tiles = 0

    def run(self, outputs, feeds):
        self.tiles += len(next(iter(feeds.values())))
        return self.session.run(outputs, feeds)

    def __getattr__(self, name):
        return getattr(self.session, name)


def test_tiles_with_only_nodata_are_not_given_to_the_model(tmp_path, tiny_model):
    scene = random_scene(100, 600, bands=4)
    scene[:, :, 200:] = 0  # two thirds of the raster is nodata
    raster = write_raster(tmp_path / "s2.tif", scene)
    job = _job(tiny_model)
    counting = CountingSession(job.model.session)
    model = LoadedModel(job.model.card, job.model.path, counting, job.model.input_name, "cpu")
    engine = Engine(RowSource(raster, [1, 2, 3, 4]), [Job(model, job.bands, True, True)], [0, 0, 0, 0])
    strips = []
    engine.run(lambda row, col, out: strips.append(out["tiny-test:cloud"]))
    cloud = np.concatenate(strips)
    touching = [j for j in range(len(engine.grids[0].cols)) if engine.grids[0].cols.span(j)[0] < 200]
    assert counting.tiles == len(engine.grids[0].rows) * len(touching)
    assert np.isnan(cloud[:, 200:]).all() and np.isfinite(cloud[:, :200]).all()


def test_the_reader_reads_the_next_row_while_the_model_runs(tmp_path, tiny_model, monkeypatch):
    """Each model call on tile row i waits (up to 10 s) for row i + 1 to be started in the reader thread.

    A run that did not read ahead would fail here."""
    raster = write_raster(tmp_path / "s2.tif", random_scene(300, 100, bands=4))
    started = {}
    threads = set()
    original = TiledGrid.prepare

    def prepare(self, index):
        threads.add(threading.current_thread().name)
        started.setdefault(index, threading.Event()).set()
        return original(self, index)

    monkeypatch.setattr(TiledGrid, "prepare", prepare)
    job = _job(tiny_model)
    waited = []

    class Waiting(CountingSession):
        def run(self, outputs, feeds):
            grid = engine.grids[0]
            following = grid.next_row + 1
            if following < len(grid.rows):
                waited.append(started.setdefault(following, threading.Event()).wait(10))
            return super().run(outputs, feeds)

    model = LoadedModel(job.model.card, job.model.path, Waiting(job.model.session), job.model.input_name, "cpu")
    engine = Engine(RowSource(raster, [1, 2, 3, 4]), [Job(model, job.bands, True, False)], [0, 0, 0, 0])
    engine.run(lambda *a: None)
    assert waited and all(waited)
    assert all(name.startswith("cloudmask-reader") for name in threads)
    assert reader_threads() == []


def test_cuda_request_without_cuda_runs_on_cpu_and_says_so(tmp_path, tiny_model):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: nothing falls back")
    raster = write_raster(tmp_path / "s2.tif", random_scene(70, 90))
    out = tmp_path / "cloud.tif"
    request = pipeline.ProbabilityRequest(raster, [str(tiny_model)], provider="cuda")
    report = pipeline.probabilities(request, pipeline.ProbabilityOutputs(cloud=str(out)))
    assert any("CUDA" in note and "CPU" in note for note in report.notes)
    assert read(out).shape == (70, 90)


def test_cuda_fallback_note_reaches_processing_feedback(tmp_path, tiny_model, qgis_app, qgis_processing):
    import onnxruntime
    import processing
    from log_feedback import LogFeedback
    from qgis.core import QgsApplication

    from cloud_mask_improver.algorithms.provider import CloudMaskProvider

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: nothing falls back")

    registry = QgsApplication.processingRegistry()
    added = registry.providerById("cloudmask") is None
    provider = CloudMaskProvider()
    if added:
        registry.addProvider(provider)
    try:
        raster = write_raster(tmp_path / "s2.tif", random_scene(70, 90))
        feedback = LogFeedback()
        result = processing.run(
            "cloudmask:cloudprobability",
            {
                "SENTINEL_RASTER": raster,
                "MODEL_PATH": str(tiny_model),
                "EXECUTION_PROVIDER": 2,
                "CLOUD_PROBABILITY": str(tmp_path / "cloud.tif"),
            },
            feedback=feedback,
        )
    finally:
        if added:
            registry.removeProvider("cloudmask")
    assert read(result["CLOUD_PROBABILITY"]).shape == (70, 90)
    assert any("CUDA" in line and "CPU" in line for line in feedback.lines)


def test_gdal_block_cache_is_capped_during_a_run_and_restored_after(tmp_path, tiny_model):
    """Finished output blocks go to disk instead of piling up in GDAL's cache (5 % of RAM by default).

    And the user's setting is back once the run ends, even on failure."""
    from osgeo import gdal

    from cloud_mask_improver.core.raster import BLOCK_CACHE_BYTES

    class Watch(Feedback):
        def __init__(self):
            self.seen = []

        def progress(self, fraction: float) -> None:
            self.seen.append(gdal.GetCacheMax())

    before = gdal.GetCacheMax()
    gdal.SetCacheMax(max(before, 2 * BLOCK_CACHE_BYTES))
    try:
        raster = write_raster(tmp_path / "s2.tif", random_scene(150, 120))
        watch = Watch()
        request = pipeline.ProbabilityRequest(raster, [str(tiny_model)])
        pipeline.probabilities(request, pipeline.ProbabilityOutputs(cloud=str(tmp_path / "c.tif")), watch)
        assert watch.seen and max(watch.seen) <= BLOCK_CACHE_BYTES
        assert gdal.GetCacheMax() == max(before, 2 * BLOCK_CACHE_BYTES)
        with pytest.raises(Cancelled):
            pipeline.probabilities(
                request, pipeline.ProbabilityOutputs(cloud=str(tmp_path / "d.tif")), CancelAfter(ticks=1)
            )
        assert gdal.GetCacheMax() == max(before, 2 * BLOCK_CACHE_BYTES)
    finally:
        gdal.SetCacheMax(before)
