"""Nothing half-written survives a run that fails or is cancelled at any point.

Such a run leaves no output (an older file at the destination stays as it was) and no
temporary file beside the destination or in the system temp folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from qgis.core import QgsProcessingException, QgsProcessingFeedback
from rasters import read, write_raster
from reliability import (  # noqa: F401  (fixtures)
    TINY_BANDS,
    assert_tiny_mask,
    collect_qgis_objects_fixture,
    leftovers,
    system_tmp_fixture,
    tiny_model,
    tiny_scene,
)

from cloud_mask_improver.core import engine, probability, raster, staging, windowed_merge


class CancelWhen(QgsProcessingFeedback):
    """Feedback whose user presses Cancel once ``when(progress, calls)`` is true."""

    def __init__(self, when):
        super().__init__()
        self.when, self.calls, self.seen = when, 0, []

    def setProgress(self, progress):
        self.calls += 1
        self.seen.append(progress)
        if self.when(progress, self.calls):
            self.cancel()
        super().setProgress(progress)


@pytest.fixture
def job(tmp_path, provider):
    """improvecloudmask on a 600 x 60 scene (many tiles, two merge windows).

    Writing the mask and both probabilities."""
    scene = tiny_scene(600, 60, seed=5)
    s2 = write_raster(tmp_path / "s2.tif", scene, descriptions=TINY_BANDS)
    model = str(tiny_model(tmp_path / "model"))
    out = tmp_path / "out"
    out.mkdir()
    params = {
        "S2_RASTER": s2,
        "CLOUD_MODEL": model,
        "SHADOW_MODEL": model,
        "DILATION": 0,
        "MASK": str(out / "mask.tif"),
        "CLOUD_PROBABILITY": str(out / "cloud.tif"),
        "SHADOW_PROBABILITY": str(out / "shadow.tif"),
    }
    return params, scene, out


def run(params, feedback=None):
    import processing

    return processing.run("cloudmask:improvecloudmask", params, feedback=feedback)


def assert_nothing_left(out: Path, system_tmp: Path, params: dict) -> None:
    for name in ("MASK", "CLOUD_PROBABILITY", "SHADOW_PROBABILITY"):
        assert not Path(params[name]).exists(), f"{name} was left"
    assert os.listdir(out) == []
    assert not leftovers(out, system_tmp)


def refused(params, feedback=None, words=()) -> str:
    with pytest.raises(QgsProcessingException) as err:
        run(params, feedback)
    for word in words:
        assert word.lower() in str(err.value).lower(), str(err.value)
    return str(err.value)


def test_a_complete_run_leaves_exactly_its_outputs(job, system_tmp):
    params, scene, out = job
    run(params)
    # The mask's category names live in its .aux.xml sidecar (GDAL keeps them there).
    assert sorted(os.listdir(out)) == ["cloud.tif", "mask.tif", "mask.tif.aux.xml", "shadow.tif"]
    assert_tiny_mask(read(params["MASK"]), scene, np.ones(scene.shape[1:], dtype=bool))
    assert not leftovers(out, system_tmp)


def test_cancel_during_inference(job, system_tmp):
    params, _, out = job
    feedback = CancelWhen(lambda progress, calls: calls == 3)
    refused(params, feedback, ["Cancelled", "no output was written"])
    assert max(feedback.seen) < 90  # it stopped among the tiles, before the merge
    assert_nothing_left(out, system_tmp, params)


def test_cancel_during_merge(job, system_tmp):
    params, _, out = job
    feedback = CancelWhen(lambda progress, calls: progress > 90)
    refused(params, feedback, ["Cancelled"])
    assert 90 < max(feedback.seen) < 100  # in the merge, with windows still to write
    assert_nothing_left(out, system_tmp, params)


def test_model_failing_during_inference(job, system_tmp, monkeypatch):
    params, _, out = job
    calls = []

    def failing(model, batch):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("simulated: the network crashed")
        return real(model, batch)

    real = engine.infer
    monkeypatch.setattr(engine, "infer", failing)
    message = refused(params, words=["simulated: the network crashed", "no output was written"])
    assert "Traceback" not in message
    assert_nothing_left(out, system_tmp, params)


def test_failure_during_merge(job, system_tmp, monkeypatch):
    params, _, out = job
    real = windowed_merge.merge.finish
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise MemoryError
        return real(*args, **kwargs)

    monkeypatch.setattr(windowed_merge.merge, "finish", failing)
    refused(params, words=["Out of memory", "no output was written"])
    assert_nothing_left(out, system_tmp, params)


def test_failure_while_writing_probabilities(job, system_tmp, monkeypatch):
    params, _, out = job
    real = probability.ProbabilityWriter.__call__
    calls = []

    def failing(self, lo, hi, strips):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(self, lo, hi, strips)

    monkeypatch.setattr(probability.ProbabilityWriter, "__call__", failing)
    refused(params, words=["No space left on device", "no output was written"])
    assert_nothing_left(out, system_tmp, params)


def test_failure_while_writing_the_mask(job, system_tmp, monkeypatch):
    def failing(*args):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(raster, "set_categories", failing)  # the mask's classes: raster.RowRasters
    params, _, out = job
    refused(params, words=["Input/output error"])
    assert_nothing_left(out, system_tmp, params)


def test_failure_while_renaming_removes_the_outputs_already_renamed(job, system_tmp, monkeypatch):
    """All outputs or none: the second rename fails, so the first output goes too."""
    real = os.replace
    renames = []

    def failing(src, dst):
        renames.append(dst)
        if len(renames) == 2:
            raise PermissionError(13, "Permission denied")
        return real(src, dst)

    monkeypatch.setattr(staging.os, "replace", failing)
    params, _, out = job
    refused(params, words=["Cannot write the output", "Permission denied", "close it"])
    assert len(renames) == 2
    assert_nothing_left(out, system_tmp, params)


def test_an_older_output_survives_a_failed_run_untouched(job, system_tmp):
    params, _, out = job
    run(params)
    before = {p: p.read_bytes() for p in out.iterdir()}
    refused(params, CancelWhen(lambda progress, calls: calls == 2), ["Cancelled"])
    assert {p: p.read_bytes() for p in out.iterdir()} == before
    assert not leftovers(out, system_tmp)


def test_a_new_run_replaces_the_old_output_and_its_stale_sidecar(job, system_tmp):
    params, scene, _ = job
    Path(params["MASK"]).write_bytes(b"old")
    Path(params["MASK"] + ".aux.xml").write_text("<PAMDataset>stale statistics</PAMDataset>")
    run(params)
    assert_tiny_mask(read(params["MASK"]), scene, np.ones(scene.shape[1:], dtype=bool))
    assert (
        not Path(params["MASK"] + ".aux.xml").exists() or "stale" not in Path(params["MASK"] + ".aux.xml").read_text()
    )


def test_merge_alone_is_atomic_too(provider, tmp_path, system_tmp):
    """mergecloudmasks cancelled in its second window leaves nothing."""
    import processing

    cloud = write_raster(tmp_path / "c.tif", np.full((1100, 30), 0.9, np.float32), nodata=-1.0)
    out = tmp_path / "out"
    out.mkdir()
    params = {"CLOUD_PROBABILITY": cloud, "MERGED_CLOUD_MASK": str(out / "m.tif")}
    with pytest.raises(QgsProcessingException, match="Cancelled"):
        processing.run("cloudmask:mergecloudmasks", params, feedback=CancelWhen(lambda p, calls: calls == 1))
    assert os.listdir(out) == [] and not leftovers(out, system_tmp)
