"""A whole run's outputs, as a user opens them."""

import importlib.util
import os
import threading
from collections import Counter
from dataclasses import FrozenInstanceError, replace
from pathlib import Path

import numpy as np
import pytest
from onnx_models import conv1x1_model, write_card
from osgeo import gdal
from rasters import read, write_raster
from reliability import (  # noqa: F401 - system_tmp_fixture: a fixture
    TINY_BANDS,
    TINY_BIAS,
    TINY_WEIGHTS,
    leftovers,
    system_tmp_fixture,
    tiny_model,
    tiny_scene,
)

from cloud_mask_improver.core import area, merge, pipeline, probability, provenance, windowed_merge
from cloud_mask_improver.core.raster import RasterError


def test_a_mask_too_big_for_the_block_cache_keeps_its_palette_and_logs_no_error(tmp_path, capfd):
    """On a full tile GDAL writes blocks out before the run ends.

    The palette and class names must be set before that, or the GeoTIFF refuses them with an
    error."""
    rng = np.random.default_rng(5)
    cloud = write_raster(tmp_path / "cloud.tif", rng.random((1200, 1200), dtype=np.float32), nodata=-1)
    before = gdal.GetCacheMax()
    gdal.SetCacheMax(256 << 10)  # 256 KB: far less than the mask (1.4 MB)
    try:
        request = pipeline.MergeRequest(cloud, None, None, merge.MergeSettings(dilation=0))
        pipeline.merge(request, str(tmp_path / "mask.tif"))
    finally:
        gdal.SetCacheMax(before)
    assert "ERROR" not in capfd.readouterr().err  # GDAL prints its errors on stderr
    ds = gdal.Open(str(tmp_path / "mask.tif"))
    band = ds.GetRasterBand(1)
    assert band.GetColorInterpretation() == gdal.GCI_PaletteIndex
    assert band.GetColorTable().GetColorEntry(merge.CLOUD) == merge.CATEGORY_COLOURS[merge.CLOUD]
    assert band.GetCategoryNames()[:3] == [merge.CATEGORY_NAMES[k] for k in range(3)]


def test_a_saved_mask_lists_only_its_classes(tmp_path):
    """QGIS builds a saved mask's legend from its colour table: one row per entry.

    The table holds the classes only (nodata is declared, not coloured); byte values stay."""
    probabilities = np.zeros((64, 64), dtype=np.float32)
    probabilities[10:30, 10:30] = 0.9
    probabilities[50:, 50:] = -1  # nodata
    cloud = write_raster(tmp_path / "cloud.tif", probabilities, nodata=-1)
    for mode, classes in (
        ("categorical", ["clear", "cloud", "cloud shadow"]),
        ("binary", ["clear", "cloud or shadow"]),
    ):
        mask = str(tmp_path / f"{mode}.tif")
        settings = merge.MergeSettings(dilation=0, output_mode=mode)
        pipeline.merge(pipeline.MergeRequest(cloud, None, None, settings), mask)
        ds = gdal.Open(mask)
        band = ds.GetRasterBand(1)
        assert band.GetColorTable().GetCount() == len(classes)
        assert band.GetCategoryNames() == classes
        assert band.GetNoDataValue() == merge.NODATA
        assert set(np.unique(band.ReadAsArray())) == {merge.CLEAR, merge.CLOUD, merge.NODATA}


# -- a whole run flags the probabilities as it computes them (windowed_merge.FlagRecorder)


def _scene_and_masks(folder, kind: str):
    """A 4-band scene with a nodata corner, and a product mask of ``kind`` with a nodata strip."""
    # Patches of 5 x 5 px, every other pixel of the even rows from another patch: patches
    # of many sizes, and clear pixels that outlast the dilation.
    blocks = tiny_scene(60, 52, seed=7)
    scene = np.kron(blocks, np.ones((1, 5, 5), np.uint16))
    scene[:, ::2, ::2] = np.kron(blocks[:, :30, :26], np.ones((1, 5, 5), np.uint16))[:, :150, :130]
    scene[:, 250:, 200:] = 0
    s2 = write_raster(folder / "s2.tif", scene, descriptions=TINY_BANDS, nodata=0)
    rng = np.random.default_rng(8)
    values = {"nonzero": [0, 0, 0, 1], "scl": [1, 3, 4, 5, 8, 9, 10]}[kind]
    product = np.kron(rng.choice(values, size=(30, 26)), np.ones((10, 10), int)).astype(np.uint8)
    product[:, :15] = 255
    return s2, write_raster(folder / "product.tif", product, nodata=255)


# (merge settings, product mask kind or None, engine cuts, a second cloud model)
RUNS = {
    "defaults": (merge.MergeSettings(), "nonzero", {}, False),
    "patches, binary, SCL": (
        merge.MergeSettings(min_area=6, dilation=2, product_kind="scl", output_mode="binary"),
        "scl",
        {},
        False,
    ),
    "bands, stripes, ensemble": (
        merge.MergeSettings(min_area=3, dilation=1),
        None,
        {"workers": 3, "stripe_cols": 100, "window_rows": 37},
        True,
    ),
}


@pytest.mark.parametrize("name", RUNS)
def test_a_whole_run_gives_the_mask_of_its_steps_run_one_by_one(name, tmp_path):
    """A whole run flags the probabilities while they are in memory and never reads them back.

    The mask must be the modeler chain's (probabilities saved, then merged) byte for byte,
    whatever the merge settings and however the work is cut."""
    settings, kind, cuts, ensemble = RUNS[name]
    s2, product = _scene_and_masks(tmp_path, kind or "nonzero")
    product = product if kind else None
    model = str(tiny_model(tmp_path / "model"))
    clouds = [model]
    if ensemble:
        other = conv1x1_model(tmp_path / "model" / "other.onnx", TINY_WEIGHTS * 0.8, TINY_BIAS + 0.5, tile=64)
        write_card(tmp_path / "model" / "other.json", id="other-test")
        clouds.append(str(other))
    request = pipeline.ProbabilityRequest(s2, clouds, model, **cuts)
    report = pipeline.improve(
        pipeline.ImproveRequest(request, product, settings, 0.5, 0.4, mask=str(tmp_path / "whole.tif"))
    )

    kept = pipeline.ProbabilityOutputs(cloud=str(tmp_path / "cloud.tif"), shadow=str(tmp_path / "shadow.tif"))
    pipeline.probabilities(request, kept)
    steps = replace(settings, cloud_threshold=0.5, shadow_threshold=0.4)
    pipeline.merge(pipeline.MergeRequest(kept.cloud, kept.shadow, product, steps), str(tmp_path / "steps.tif"))

    whole, by_steps = read(tmp_path / "whole.tif"), read(tmp_path / "steps.tif")
    assert np.array_equal(whole, by_steps)
    classes = {merge.CLEAR, merge.CLOUD, merge.NODATA} | ({merge.SHADOW} if settings.output_mode != "binary" else set())
    assert set(np.unique(whole)) == classes  # every class present: the comparison means something
    assert report.valid_pixels == int((whole != merge.NODATA).sum())


def test_probabilities_not_kept_are_never_written(tmp_path, monkeypatch):
    """Without probability outputs a run writes no float rasters at all, only the mask.

    Float rasters would be about 1 GB on a full tile."""
    s2, product = _scene_and_masks(tmp_path, "nonzero")
    model = str(tiny_model(tmp_path / "model"))
    created = []
    real = probability.create_geotiff

    def spy(path, *args, **kwargs):
        created.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(probability, "create_geotiff", spy)
    request = pipeline.ProbabilityRequest(s2, [model], model)
    pipeline.improve(pipeline.ImproveRequest(request, product, merge.MergeSettings(), mask=str(tmp_path / "m.tif")))
    assert created == []
    assert (read(tmp_path / "m.tif") == merge.CLOUD).any()


def test_a_failure_while_flagging_fails_the_run_and_leaves_nothing(tmp_path, monkeypatch, system_tmp):
    """An error on the flagging thread stops the run with that error.

    Here the product mask is unreadable half way: no mask, no kept probabilities, no thread
    left running."""
    s2, product = _scene_and_masks(tmp_path, "nonzero")
    model = str(tiny_model(tmp_path / "model"))
    calls = []
    real = windowed_merge.read_array

    def failing(ds, *args):
        calls.append(1)
        if len(calls) == 3:
            raise RasterError("Reading 'product.tif' failed: the disk went away")
        return real(ds, *args)

    monkeypatch.setattr(windowed_merge, "read_array", failing)
    out = tmp_path / "out"
    out.mkdir()
    request = pipeline.ProbabilityRequest(s2, [model], model, window_rows=64)
    kept = pipeline.ProbabilityOutputs(cloud=str(out / "cloud.tif"))
    with pytest.raises(RasterError, match="disk went away"):
        pipeline.improve(
            pipeline.ImproveRequest(request, product, merge.MergeSettings(), mask=str(out / "m.tif"), outputs=kept)
        )
    assert len(calls) >= 3  # rows already handed to the flag thread may still be read
    assert os.listdir(out) == []
    assert not leftovers(out, system_tmp)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("cloudmask-")]


# -- the pipeline owns the run: an area through the same entry point, one report


def test_an_area_runs_through_improve_and_its_report_speaks_of_the_area(tmp_path):
    """``improve`` with a selection runs only the tiles the box needs; the mask there is the whole scene's.

    The report (built once, frozen) counts the box, not the cut-out the models ran on: its
    fractions, its SOURCE figures and their summary, then the area's note."""
    s2, product = _scene_and_masks(tmp_path, "nonzero")
    model = str(tiny_model(tmp_path / "model"))

    def request(name):
        return pipeline.ImproveRequest(
            pipeline.ProbabilityRequest(s2, [model], model),
            product,
            merge.MergeSettings(min_area=3),
            mask=str(tmp_path / f"{name}.tif"),
            source=str(tmp_path / f"{name}_source.tif"),
        )

    pipeline.improve(request("whole"))
    box = area.Selection(bounds=(501000.0, 4998600.0, 501600.0, 4999200.0))  # columns 100-160, rows 80-140
    report = pipeline.improve(request("part"), selection=box)

    part = read(tmp_path / "part.tif")
    assert np.array_equal(part, read(tmp_path / "whole.tif")[80:140, 100:160])
    assert report.fractions == area.mask_fractions(str(tmp_path / "part.tif")).as_dict()
    assert report.valid_pixels == int((part != merge.NODATA).sum())
    assert report.provenance == area.source_figures(str(tmp_path / "part_source.tif"), None)
    assert report.notes[-2] == provenance.summary(report.provenance)
    assert report.notes[-1].startswith("Area: 60 x 60 pixels from column 100, row 80;")
    with pytest.raises(FrozenInstanceError):
        report.notes = ()


def test_the_probability_step_records_the_thresholds_it_was_run_for(tmp_path):
    """The step that writes a probability raster also records the card's recommended threshold in it.

    So a merge run later on its own decides as one run would."""
    s2, _ = _scene_and_masks(tmp_path, "nonzero")
    model = str(tiny_model(tmp_path / "model", thresholds={"cloud": 0.45, "shadow": 0.35}))
    outputs = pipeline.ProbabilityOutputs(cloud=str(tmp_path / "cloud.tif"), shadow=str(tmp_path / "shadow.tif"))
    plan = pipeline.plan_probabilities(pipeline.ProbabilityRequest(s2, [model], model), outputs)
    notes = probability.compute_probabilities(plan, outputs)
    assert isinstance(notes, tuple)
    assert pipeline.recorded_thresholds(outputs.cloud, outputs.shadow) == (0.45, 0.35)


# -- the run's journey (issue 26): how often it goes back to a file it left


def test_a_run_returns_to_a_file_it_left_at_most_15_times(tmp_path):
    """scripts/journey.py's count for its small run (SOURCE output, MIN_AREA).

    The plan asks each module once and the merge's loops read, compute and write in one place
    each."""
    path = Path(__file__).resolve().parent.parent / "scripts" / "journey.py"
    spec = importlib.util.spec_from_file_location("journey", path)
    journey = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(journey)
    stops = journey.stops(journey.trace(journey._request(tmp_path), depth=2))
    visits = Counter(file for file, _ in stops)
    assert sum(n - 1 for n in visits.values()) <= 15, stops
