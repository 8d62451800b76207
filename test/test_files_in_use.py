"""Windows file semantics: outputs that a program has open cannot be replaced or deleted there.

Such outputs are a layer loaded in the project, a CSV open in a spreadsheet. Every write path
either writes what it can or names the file in use and says what to do; never a traceback,
never half an output.

Emulated on Linux by ``windows_files`` (test/windows_files.py): a file loaded in
``QgsProject.instance()`` or held by the test refuses rename and delete as Windows does.
"""

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from log_feedback import LogFeedback
from osgeo import gdal
from qgis.core import QgsProcessingException, QgsRasterLayer, QgsVectorLayer
from rasters import write_raster
from s2_product import build_product
from samples import L1C_STACK, require
from windows_files import IN_USE_ENV, WINDOWS_MESSAGE

from cloud_mask_improver.core import staging
from cloud_mask_improver.core.season import batch, summary

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = {"CLOUD_MODEL": "ukis-6b-l1c", "SHADOW_MODEL": "ukis-6b-l1c"}
BATCH = {"CLOUD_MODEL": "ukis-6b-l2a", "SHADOW_MODEL": "ukis-6b-l2a"}
REMOVE_LAYER = "remove that layer from the project"


def load(project, source: str, provider: str = "gdal"):
    layer = QgsRasterLayer(source, "loaded") if provider == "gdal" else QgsVectorLayer(source, "loaded", "ogr")
    assert layer.isValid(), source
    project.addMapLayer(layer)
    return layer


def partials(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*") if "partial" in p.name or "probe" in p.name)


def test_the_emulation_refuses_what_windows_refuses(windows_files, project, tmp_path):
    """The fixture itself: a held file and a loaded layer refuse every way of replacing or deleting them.

    With Windows's message; a free file and a removed layer do not."""
    held, loaded, other = (tmp_path / n for n in ("held.csv", "loaded.tif", "other.txt"))
    held.write_text("a")
    other.write_text("b")
    write_raster(loaded, np.ones((1, 2, 2), dtype=np.uint16))
    windows_files.hold(held)
    layer = load(project, str(loaded))
    attempts = {
        "os.replace": lambda p: os.replace(other, p),
        "os.remove": os.remove,
        "os.unlink": os.unlink,
        "Path.unlink": lambda p: Path(p).unlink(),
        "Path.rename": lambda p: Path(p).rename(p.with_suffix(".x")),
        "shutil.move": lambda p: shutil.move(str(other), str(p)),
        "gdal.Unlink": lambda p: gdal.Unlink(str(p)),
        "Driver.Delete": lambda p: gdal.GetDriverByName("GTiff").Delete(str(p)),
        "open for writing": lambda p: open(p, "w").close(),
    }
    for path in (held, loaded):
        for name, attempt in attempts.items():
            with pytest.raises(PermissionError, match=WINDOWS_MESSAGE):
                attempt(path)
            assert path.exists(), name
    project.removeMapLayer(layer.id())
    windows_files.release(held)
    os.replace(other, loaded)
    os.remove(held)
    assert not held.exists() and loaded.read_text() == "b"


@pytest.fixture
def crop(tmp_path):
    """A 300 x 300 px L1C stack: big enough for the model's tiles, quick to run."""
    require(L1C_STACK)
    ds = gdal.Open(str(L1C_STACK))
    names = [ds.GetRasterBand(b + 1).GetDescription() for b in range(ds.RasterCount)]
    return write_raster(tmp_path / "crop.tif", ds.ReadAsArray(0, 0, 300, 300), descriptions=names)


def test_a_run_onto_a_loaded_mask_names_it_before_running(provider, windows_files, project, crop, tmp_path):
    import processing

    out = tmp_path / "out"
    out.mkdir()
    mask, probability = out / "mask.tif", out / "cloud.tif"
    processing.run("cloudmask:improvecloudmask", {"S2_RASTER": crop, **SAMPLE, "MASK": str(mask)})
    before = {p: p.read_bytes() for p in out.iterdir()}
    layer = load(project, str(mask))
    feedback = LogFeedback()
    with pytest.raises(QgsProcessingException) as refused:
        processing.run(
            "cloudmask:improvecloudmask",
            {"S2_RASTER": crop, **SAMPLE, "MASK": str(mask), "CLOUD_PROBABILITY": str(probability)},
            feedback=feedback,
        )
    message = str(refused.value)
    assert str(mask) in message and WINDOWS_MESSAGE in message and REMOVE_LAYER in message, message
    assert "Traceback" not in " ".join(feedback.lines)
    assert feedback.progress() == 0  # said before any pixel was processed
    assert {p: p.read_bytes() for p in out.iterdir()} == before  # no probability written either
    assert partials(out) == []
    project.removeMapLayer(layer.id())  # what the message says to do: then it runs
    processing.run(
        "cloudmask:improvecloudmask",
        {"S2_RASTER": crop, **SAMPLE, "MASK": str(mask), "CLOUD_PROBABILITY": str(probability)},
    )
    assert probability.exists() and partials(out) == []


def test_outputs_appear_together_or_not_at_all_when_one_is_taken_during_the_run(windows_files, tmp_path):
    """A file opened elsewhere while the run goes on: the run's other outputs are taken back."""
    first, second = tmp_path / "mask.tif", tmp_path / "cloud.tif"
    second.write_bytes(b"an earlier run's")
    with pytest.raises(staging.FileInUseError) as refused, staging.atomic_outputs() as pending:
        for final in (first, second):
            Path(staging.stage(pending, str(final))).write_bytes(b"new")
        windows_files.hold(second)
    assert refused.value.path == str(second) and "close it there" in str(refused.value)
    assert not first.exists() and second.read_bytes() == b"an earlier run's" and partials(tmp_path) == []


@pytest.fixture(scope="module")
def season(tmp_path_factory, provider):
    """One product and a copy of it (two masks), done once; each test works on a copy of the output."""
    folder = tmp_path_factory.mktemp("in_use")
    product = build_product(folder, "L2A", "04.00")
    copy = folder / "copy"
    copy.mkdir()
    shutil.copy(product.zip, copy / product.zip.name)
    inputs = [str(product.zip), str(copy / product.zip.name)]
    out = folder / "first"
    import processing

    processing.run("cloudmask:improvecloudmaskbatch", {"INPUTS": inputs, "OUTPUT_FOLDER": str(out), **BATCH})
    return inputs, out


@pytest.fixture
def rerun(season, tmp_path):
    inputs, first = season
    out = tmp_path / "out"
    shutil.copytree(first, out)
    masks = sorted(out.glob("T33TUK_*.tif"))
    assert [m.name for m in masks] == ["T33TUK_20230615T100559_L2A.tif", "T33TUK_20230615T100559_L2A_2.tif"]
    return inputs, out, masks


def test_a_batch_rerun_with_a_mask_loaded_fails_that_product_only(provider, windows_files, project, rerun):
    import processing

    inputs, out, (loaded, other) = rerun
    before = {p: p.read_bytes() for p in (loaded, Path(batch.record_path(str(loaded))))}
    load(project, str(loaded))
    feedback = LogFeedback()
    result = processing.run(
        "cloudmask:improvecloudmaskbatch",
        {"INPUTS": inputs, "OUTPUT_FOLDER": str(out), "FORCE": True, **BATCH},
        feedback=feedback,
    )
    rows = {f["mask"] or f["input"]: f for f in QgsVectorLayer(result["SUMMARY"], "s", "ogr").getFeatures()}
    assert rows[str(other)]["status"] == "ok" and rows[str(other)]["reused"] == 0
    failed = rows[inputs[0]]
    assert failed["status"] == "failed"
    assert str(loaded) in failed["error"] and REMOVE_LAYER in failed["error"], failed["error"]
    assert {p: p.read_bytes() for p in before} == before  # the loaded mask and its record as they were
    assert "Traceback" not in " ".join(feedback.lines) and partials(out) == []


def test_a_batch_rerun_keeps_an_up_to_date_mask_that_is_loaded(provider, windows_files, project, rerun):
    """The most common rerun on Windows: the masks of the last run are on the map.

    Those that are up to date are kept, not failed for being in use."""
    import processing

    inputs, out, (loaded, _other) = rerun
    before = loaded.read_bytes()
    load(project, str(loaded))
    result = processing.run(
        "cloudmask:improvecloudmaskbatch",
        {"INPUTS": inputs, "OUTPUT_FOLDER": str(out), **BATCH},
        feedback=LogFeedback(),
    )
    rows = [(f["status"], f["reused"], f["error"]) for f in QgsVectorLayer(result["SUMMARY"], "s", "ogr").getFeatures()]
    assert rows == [("ok", 1, ""), ("ok", 1, "")], rows
    assert loaded.read_bytes() == before and partials(out) == []


def test_a_batch_rerun_with_the_summary_loaded_says_so_before_any_product(provider, windows_files, project, rerun):
    import processing

    inputs, out, _ = rerun
    files = sorted(out.iterdir())
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files}
    load(project, f"{out / 'summary.gpkg'}|layername=summary", "ogr")
    feedback = LogFeedback()
    with pytest.raises(QgsProcessingException) as refused:
        processing.run(
            "cloudmask:improvecloudmaskbatch",
            {"INPUTS": inputs, "OUTPUT_FOLDER": str(out), "FORCE": True, **BATCH},
            feedback=feedback,
        )
    message = str(refused.value)
    assert str(out / "summary.gpkg") in message and REMOVE_LAYER in message, message
    assert not any("% clear" in line for line in feedback.lines)  # no product was run
    assert sorted(out.iterdir()) == files
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files} == before


def test_summary_files_in_use_do_not_keep_the_others_from_being_written(windows_files, rerun):
    """A summary opened while the products ran: the files that can be written are, the others named."""
    _, out, masks = rerun
    rows = [batch.Row.from_dict(batch._read_record(batch.record_path(str(m)))["row"]) for m in masks]
    rows[0].cloud_fraction = 0.5  # this run's numbers differ from the files' on disk
    old_csv = (out / "summary.csv").read_bytes()
    windows_files.hold(out / "summary.csv")
    with pytest.raises(summary.SummaryInUseError) as refused:
        summary.write_all(rows, str(out))
    assert refused.value.paths == [str(out / "summary.csv")]
    assert "close it there" in str(refused.value) and "masks already made are kept" in str(refused.value)
    assert (out / "summary.csv").read_bytes() == old_csv
    fresh = QgsVectorLayer(f"{out / 'summary.gpkg'}|layername=summary", "s", "ogr")
    assert max(f["cloud_fraction"] for f in fresh.getFeatures()) == 0.5  # this run's summary
    assert partials(out) == []


# The command in a Python without QGIS, as users run it, with the emulation installed first.
COMMAND = (
    "import sys; sys.modules['qgis'] = None; sys.path[:0] = [{plugins!r}, {test!r}]; "
    "import windows_files; windows_files.install(); "
    "from cloud_mask_improver.core import cli; sys.exit(cli.main(sys.argv[1:]))"
)


def _cloudmask(plugin_dir, *args, in_use=()):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", IN_USE_ENV: os.pathsep.join(map(str, in_use))}
    command = COMMAND.format(plugins=str(plugin_dir), test=str(ROOT / "test"))
    return subprocess.run(
        [sys.executable, "-c", command, *args], check=False, capture_output=True, text=True, env=env, timeout=600
    )


def test_cloudmask_batch_names_the_files_in_use(plugin_dir, rerun):
    inputs, out, (held, _) = rerun
    args = ("batch", *inputs, "--out", str(out), "--sequential", "--force", "--cloud-model", "ukis-6b-l2a")
    old_csv = (out / "summary.csv").read_bytes()
    # summary.csv open in a spreadsheet: said at once, nothing run.
    done = _cloudmask(plugin_dir, *args, in_use=[out / "summary.csv"])
    assert done.returncode == 2 and str(out / "summary.csv") in done.stderr, done.stderr
    assert "close it there" in done.stderr and "Traceback" not in done.stderr
    assert (out / "summary.csv").read_bytes() == old_csv
    # A mask open in a viewer: that product fails, named; the other is redone; the summary is written.
    before = held.read_bytes()
    done = _cloudmask(plugin_dir, *args, in_use=[held])
    assert done.returncode == 1 and "1 of 2 product(s) failed" in done.stderr, done.stderr
    assert str(held) in done.stderr and "Traceback" not in done.stderr
    assert held.read_bytes() == before
    with open(out / "summary.csv", newline="") as handle:
        rows = {r["input"]: r for r in csv.DictReader(handle)}
    assert rows[inputs[0]]["status"] == "failed" and WINDOWS_MESSAGE in rows[inputs[0]]["error"]
    assert rows[inputs[1]]["status"] == "ok" and rows[inputs[1]]["reused"] == "0"
    assert partials(out) == []


@pytest.mark.parametrize("extension", ["tif", "vrt"])
def test_prepare_onto_a_loaded_stack_names_it_and_writes_nothing(provider, windows_files, project, tmp_path, extension):
    import processing

    product = build_product(tmp_path / "products", "L1C", "04.00", zipped=False)
    out = tmp_path / "out"
    out.mkdir()
    stack, mask = out / f"stack.{extension}", out / f"mask.{extension}"
    params = {"INPUT": str(product.metadata), "RESOLUTION": 60, "S2_RASTER": str(stack), "PRODUCT_MASK": str(mask)}
    processing.run("cloudmask:prepares2product", params)
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted([stack.name, mask.name] + (["mask_classi.tif"] if extension == "vrt" else []))
    assert partials(out) == []
    load(project, str(stack))
    before = {p: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(QgsProcessingException) as refused:
        processing.run("cloudmask:prepares2product", {**params, "RESOLUTION": 20})
    assert str(stack) in str(refused.value) and REMOVE_LAYER in str(refused.value), str(refused.value)
    assert {p: p.read_bytes() for p in out.iterdir()} == before and partials(out) == []
    project.removeAllMapLayers()
    processing.run("cloudmask:prepares2product", {**params, "RESOLUTION": 20})
    assert gdal.Open(str(stack)).RasterXSize == gdal.Open(str(mask)).RasterXSize == 120  # 240 px at 10 m
    assert partials(out) == []
