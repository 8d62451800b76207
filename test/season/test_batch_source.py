"""The batch's SOURCE output (core, no QGIS).

Each product's SOURCE raster beside its mask, the same byte for byte as the single run's,
kept on a rerun, added later without redoing the mask, removed with a stale mask, never
taken for a product; its figures in the summary; and ``cloudmask batch --source``.
Products are built by test/s2_product.py from the real sample."""

import csv
import filecmp
import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest
from osgeo import gdal

from cloud_mask_improver.core import area as areas
from cloud_mask_improver.core import merge, pipeline
from cloud_mask_improver.core.season import batch, summary
from cloud_mask_improver.core.sentinel2 import product as s2_product

MODEL = ("ukis-6b-l2a",)
PLAIN = batch.BatchOptions(batch.template(cloud_models=MODEL))
SOURCE = replace(PLAIN, source=True)
NAME = "T33TUK_20230615T100559_L2A"
NO_QGIS = (
    "import sys; sys.modules['qgis'] = None; sys.path.insert(0, {plugins!r}); "
    "from cloud_mask_improver.core import cli; sys.exit(cli.main(sys.argv[1:]))"
)
FIGURE_COLUMNS = [
    "product_mask_fraction",
    "masked_fraction",
    "model_added_fraction",
    "dilation_fraction",
    "filled_fraction",
    "cleared_fraction",
]


@pytest.fixture(scope="module")
def single(product, tmp_path_factory):
    """Improve cloud mask's own run on the product, with its SOURCE output: the reference."""
    folder = tmp_path_factory.mktemp("single")
    stack, mask = str(folder / "stack.vrt"), str(folder / "product_mask.vrt")
    _, mask = s2_product.prepare(str(product.zip), stack, mask, 10.0)
    request = pipeline.ImproveRequest(
        pipeline.ProbabilityRequest(stack, cloud_models=MODEL),
        mask,
        merge.MergeSettings(),
        mask=str(folder / "mask.tif"),
        source=str(folder / "source.tif"),
    )
    report = pipeline.improve(request)
    return folder, report, stack


def stamp(path) -> int:
    return os.stat(path).st_mtime_ns


def summary_rows(folder) -> list:
    with open(os.path.join(folder, "summary.csv"), encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_the_source_is_the_single_runs_kept_on_a_rerun_and_never_a_product(product, single, tmp_path):
    folder = tmp_path / "season"  # the output folder is the products' folder
    folder.mkdir()
    (folder / product.zip.name).write_bytes(product.zip.read_bytes())
    (row,) = batch.run_sequential(batch.plan_items([str(folder)]), SOURCE, str(folder))
    assert row.ok, row.error
    assert row.source == str(folder / f"{NAME}_source.tif")
    assert filecmp.cmp(row.source, single[0] / "source.tif", shallow=False)
    assert filecmp.cmp(row.mask, single[0] / "mask.tif", shallow=False)  # the mask does not change
    figures = {k.lower(): v for k, v in single[1].provenance.items()}
    assert {k: getattr(row, k) for k in FIGURE_COLUMNS} == figures
    assert 0 < row.model_added_fraction < row.masked_fraction

    # A rerun over the same folder: only the product is an input; mask and source are kept.
    items = batch.plan_items([str(folder)])
    assert [i.source for i in items] == [str(folder / product.zip.name)]
    stamps = [stamp(row.mask), stamp(row.source)]
    (again,) = batch.run_sequential(items, SOURCE, str(folder))
    assert again.reused and again.source == row.source
    assert [stamp(row.mask), stamp(row.source)] == stamps
    assert {k: getattr(again, k) for k in FIGURE_COLUMNS} == figures

    # The summary: the figures at the end of the columns; empty when the option is off.
    summary.write_all([again], str(folder))
    (line,) = summary_rows(folder)
    assert list(line)[-len(FIGURE_COLUMNS) - 1 : -1] == FIGURE_COLUMNS  # then only the footprint
    assert [float(line[k]) for k in FIGURE_COLUMNS] == pytest.approx([figures[k] for k in FIGURE_COLUMNS], rel=1e-5)
    (off,) = batch.run_sequential(items, PLAIN, str(folder))
    assert off.reused and off.source == ""
    summary.write_all([off], str(folder))
    (line,) = summary_rows(folder)
    assert [line[k] for k in FIGURE_COLUMNS] == [""] * len(FIGURE_COLUMNS)


def test_asking_for_it_later_keeps_the_mask_and_adds_the_source(product, single, tmp_path):
    items = batch.plan_items([str(product.zip)])
    (first,) = batch.run_sequential(items, PLAIN, str(tmp_path))
    assert first.source == "" and not list(tmp_path.glob("*_source.tif"))
    before = stamp(first.mask)
    (second,) = batch.run_sequential(items, SOURCE, str(tmp_path))
    assert second.reused and stamp(first.mask) == before  # the mask was not made again
    assert filecmp.cmp(second.source, single[0] / "source.tif", shallow=False)
    assert second.model_added_fraction == single[1].provenance["MODEL_ADDED_FRACTION"]
    with open(batch.record_path(first.mask), encoding="utf-8") as handle:
        record = json.load(handle)
    assert record["source"]["path"] == second.source
    # The record says it is up to date: a third run keeps it.
    made = stamp(second.source)
    (third,) = batch.run_sequential(items, SOURCE, str(tmp_path))
    assert third.reused and stamp(second.source) == made
    assert third.model_added_fraction == second.model_added_fraction


def test_a_stale_mask_takes_its_source_with_it(product, tmp_path):
    items = batch.plan_items([str(product.zip)])
    (row,) = batch.run_sequential(items, SOURCE, str(tmp_path))
    assert os.path.exists(row.source)
    # Other settings, without the source: the mask is made again and the old source is gone.
    wider = batch.BatchOptions(replace(PLAIN.request, settings=merge.MergeSettings(dilation=2)))
    (new,) = batch.run_sequential(items, wider, str(tmp_path))
    assert new.ok and not new.reused, new.error
    assert not os.path.exists(row.source)


def test_with_an_area_the_source_covers_the_masks_box(product, product_field, tmp_path):
    area = product_field
    (tmp_path / "out").mkdir()
    (row,) = batch.run_sequential(batch.plan_items([str(product.zip)]), SOURCE, str(tmp_path / "out"), area)
    assert row.ok, row.error
    mask, source = gdal.Open(row.mask), gdal.Open(row.source)
    assert (source.RasterXSize, source.RasterYSize) == (mask.RasterXSize, mask.RasterYSize) == (70, 90)
    assert source.GetGeoTransform() == mask.GetGeoTransform()
    figures = areas.source_figures(row.source, area)
    assert row.masked_fraction == figures["MASKED_FRACTION"]


def _command(plugin_dir, *args):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run(
        [sys.executable, "-c", NO_QGIS.format(plugins=str(plugin_dir)), *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_the_command_line_writes_the_source(product, single, tmp_path, plugin_dir):
    out = tmp_path / "out"
    done = _command(
        plugin_dir, "batch", str(product.zip), "--out", str(out), "--sequential", "--cloud-model", MODEL[0], "--source"
    )
    assert done.returncode == 0, done.stderr
    assert filecmp.cmp(out / f"{NAME}_source.tif", single[0] / "source.tif", shallow=False)
    (line,) = summary_rows(out)
    assert float(line["model_added_fraction"]) == pytest.approx(single[1].provenance["MODEL_ADDED_FRACTION"], rel=1e-5)


def test_partial_files_a_killed_run_left_are_cleaned_for_the_source_too(tmp_path):
    item = batch.Item("product.zip", NAME)
    left = tmp_path / f".{NAME}_source.tif.partial-1a2b3c4d.tif"
    left.write_bytes(b"half")
    batch.clean_partials(str(tmp_path), [item])
    assert not left.exists()
