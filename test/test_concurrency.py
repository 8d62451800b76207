"""Two algorithms at once, as the Processing GUI allows (each in its own task).

Both give the result they give alone, and model sessions are shared safely."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsApplication, QgsProcessingAlgRunnerTask, QgsProcessingContext, QgsProcessingFeedback
from qgis.PyQt.QtCore import QCoreApplication, QThreadPool
from rasters import read
from reliability import collect_qgis_objects_fixture  # noqa: F401  (fixture)
from samples import L1C_STACK, model_file, require

from cloud_mask_improver.core import engine, inference, pipeline

MODEL = "ukis-6b-l1c"
WAIT_S = 600  # a safety net for a hung task, not a speed requirement


@pytest.fixture(scope="module")
def crop(tmp_path_factory):
    require(L1C_STACK)
    model_file(MODEL)
    path = str(tmp_path_factory.mktemp("crop") / "crop.tif")
    gdal.Translate(path, str(L1C_STACK), srcWin=[0, 0, 300, 280])
    return path


def jobs(crop, folder):
    """Two different algorithms on the same model: the mask, and the cloud probability."""
    return [
        (
            "cloudmask:improvecloudmask",
            {
                "S2_RASTER": crop,
                "CLOUD_MODEL": MODEL,
                "SHADOW_MODEL": MODEL,
                "CLOUD_THR": 0.5,
                "SHADOW_THR": 0.5,
                "MASK": str(folder / "mask.tif"),
            },
            "MASK",
        ),
        (
            "cloudmask:cloudprobability",
            {"SENTINEL_RASTER": crop, "MODEL_PATH": MODEL, "CLOUD_PROBABILITY": str(folder / "cloud.tif")},
            "CLOUD_PROBABILITY",
        ),
    ]


def run_in_tasks(work):
    """Start every (algorithm, parameters) in its own QgsProcessingAlgRunnerTask, then wait."""
    registry = QgsApplication.processingRegistry()
    running = []
    for alg_id, params, _ in work:
        context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
        task = QgsProcessingAlgRunnerTask(registry.createAlgorithmById(alg_id), params, context, feedback)
        outcome = {}
        task.executed.connect(lambda ok, results, outcome=outcome: outcome.update(ok=ok, results=results))
        running.append((task, context, feedback, outcome))  # kept referenced while they run
        QgsApplication.taskManager().addTask(task)
    deadline = time.monotonic() + WAIT_S
    while not all("ok" in r[3] for r in running) and time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.02)
    return [r[3] for r in running]


def test_two_algorithms_in_parallel_tasks_give_their_sequential_results(provider, crop, tmp_path, monkeypatch):
    import processing

    alone = tmp_path / "alone"
    alone.mkdir()
    for alg_id, params, _ in jobs(crop, alone):
        processing.run(alg_id, params)
    together = tmp_path / "together"
    together.mkdir()
    work = jobs(crop, together)
    # Both runs must be inside the engine at the same moment: a barrier makes the
    # overlap certain instead of a matter of timing (a run alone would time out).
    meeting = threading.Barrier(len(work), timeout=120)
    engine_run = engine.Engine.run

    def run_together(self, sink):
        meeting.wait()
        return engine_run(self, sink)

    monkeypatch.setattr(engine.Engine, "run", run_together)
    pool = QThreadPool.globalInstance()  # the task manager's threads: one per core
    threads = pool.maxThreadCount()
    pool.setMaxThreadCount(max(2, threads))  # so that a one-core machine runs both at once too
    try:
        outcomes = run_in_tasks(work)
    finally:
        pool.setMaxThreadCount(threads)
    assert all(o.get("ok") for o in outcomes), outcomes  # a broken barrier fails a task
    mask, cloud = read(together / "mask.tif"), read(together / "cloud.tif")
    assert np.array_equal(mask, read(alone / "mask.tif"))
    assert np.abs(cloud - read(alone / "cloud.tif")).max() <= 1e-5
    assert {0, 1} <= set(np.unique(mask))


def test_threads_share_one_session_and_get_the_same_probabilities(crop, tmp_path):
    """Four runs at once on one model: one cached session, four identical results."""
    inference._SESSIONS.clear()

    def one(i):
        out = str(tmp_path / f"c{i}.tif")
        pipeline.probabilities(
            pipeline.ProbabilityRequest(crop, [MODEL], window_rows=64 + 50 * i), pipeline.ProbabilityOutputs(cloud=out)
        )
        return read(out)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(one, range(4)))
    assert len(inference._SESSIONS) == 1
    for other in results[1:]:
        assert np.abs(other - results[0]).max() <= 1e-5
