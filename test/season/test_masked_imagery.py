"""The batch's masked imagery (core, no QGIS).

Each product's bands with its mask applied, beside its mask, kept on a rerun, never taken
for a product; and the command line's ``apply`` and ``batch --masked``. Products are built
by test/s2_product.py from the real sample."""

import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
from osgeo import gdal

from cloud_mask_improver.core.season import batch
from cloud_mask_improver.core.sentinel2 import product as s2_product

MODEL = ("ukis-6b-l2a",)
PLAIN = batch.BatchOptions(batch.template(cloud_models=MODEL))
RGBN = replace(PLAIN, masked=True, masked_bands="B02,B03,B04,B08")
NO_QGIS = (
    "import sys; sys.modules['qgis'] = None; sys.path.insert(0, {plugins!r}); "
    "from cloud_mask_improver.core import cli; sys.exit(cli.main(sys.argv[1:]))"
)


def read(path) -> np.ndarray:
    ds = gdal.Open(str(path))
    return ds.ReadAsArray()


def band_names(path) -> list:
    ds = gdal.Open(str(path))  # kept referenced while its bands are read
    return [ds.GetRasterBand(i + 1).GetDescription() for i in range(ds.RasterCount)]


def stack_of(product_zip, folder) -> np.ndarray:
    """The band stack the batch reads from the product (all 12 bands, offset applied)."""
    stack = str(folder / "stack.vrt")
    s2_product.prepare(str(product_zip), stack, str(folder / "mask.vrt"), 10.0)
    return read(stack), band_names(stack)


def test_each_product_gets_its_masked_imagery_kept_on_a_rerun(product, tmp_path):
    folder = tmp_path / "season"  # the output folder is the products' folder
    folder.mkdir()
    (folder / product.zip.name).write_bytes(product.zip.read_bytes())
    (row,) = batch.run_sequential(batch.plan_items([str(folder)]), RGBN, str(folder))
    assert row.ok, row.error
    assert row.masked == str(folder / "T33TUK_20230615T100559_L2A_masked.tif")
    mask, masked = read(row.mask), read(row.masked)
    bands, names = stack_of(folder / product.zip.name, tmp_path)
    wanted = [names.index(b) for b in ("B02", "B03", "B04", "B08")]
    assert masked.shape == (4, *mask.shape)
    dropped = mask != 0
    assert (masked[:, dropped] == 0).all() and 0 < dropped.mean() < 1
    assert np.array_equal(masked[:, ~dropped], bands[wanted][:, ~dropped])
    assert band_names(row.masked) == ["B02", "B03", "B04", "B08"]

    # A rerun over the same folder: only the product is an input, and both files are kept.
    items = batch.plan_items([str(folder)])
    assert [i.source for i in items] == [str(folder / product.zip.name)]
    stamps = [os.stat(p).st_mtime_ns for p in (row.mask, row.masked)]
    (again,) = batch.run_sequential(items, RGBN, str(folder))
    assert again.reused and again.masked == row.masked
    assert [os.stat(p).st_mtime_ns for p in (row.mask, row.masked)] == stamps

    # Other bands: the mask is kept, the imagery is made again with all of them.
    every = replace(PLAIN, masked=True)
    (third,) = batch.run_sequential(items, every, str(folder))
    assert third.reused and os.stat(row.mask).st_mtime_ns == stamps[0]
    assert read(third.masked).shape == (12, *mask.shape)


def test_asking_for_it_later_keeps_the_mask_and_adds_the_imagery(product, tmp_path):
    items = batch.plan_items([str(product.zip)])
    (first,) = batch.run_sequential(items, PLAIN, str(tmp_path))
    assert first.masked == "" and not list(tmp_path.glob("*_masked.tif"))
    (second,) = batch.run_sequential(items, RGBN, str(tmp_path))
    assert second.reused and os.path.exists(second.masked)


def test_with_an_area_the_imagery_covers_the_masks_box(product, product_field, tmp_path):
    area = product_field
    (tmp_path / "out").mkdir()
    (row,) = batch.run_sequential(batch.plan_items([str(product.zip)]), RGBN, str(tmp_path / "out"), area)
    assert row.ok, row.error
    mask, masked = gdal.Open(row.mask), gdal.Open(row.masked)
    assert (masked.RasterXSize, masked.RasterYSize) == (mask.RasterXSize, mask.RasterYSize) == (70, 90)
    assert masked.GetGeoTransform() == mask.GetGeoTransform()


def test_a_band_the_product_lacks_fails_its_row_with_the_fix(product, tmp_path):
    options = replace(PLAIN, masked=True, masked_bands="B04,B10")
    (row,) = batch.run_sequential(batch.plan_items([str(product.zip)]), options, str(tmp_path))
    assert not row.ok and "no band B10" in row.error and "Leave those bands out" in row.error


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


def test_the_command_line_applies_a_mask_and_writes_masked_imagery(product, tmp_path, plugin_dir):
    out = tmp_path / "out"
    done = _command(
        plugin_dir,
        "batch",
        str(product.zip),
        "--out",
        str(out),
        "--sequential",
        "--cloud-model",
        MODEL[0],
        "--masked",
        "B04,B03,B02",
    )
    assert done.returncode == 0, done.stderr
    masked = out / "T33TUK_20230615T100559_L2A_masked.tif"
    assert gdal.Open(str(masked)).RasterCount == 3
    # cloudmask apply: the same pixels as the batch's, from the stack and its mask.
    stack = str(tmp_path / "stack.vrt")
    s2_product.prepare(str(product.zip), stack, str(tmp_path / "m.vrt"), 10.0)
    applied = tmp_path / "applied.tif"
    done = _command(plugin_dir, "apply", stack, str(out / "T33TUK_20230615T100559_L2A.tif"), str(applied))
    assert done.returncode == 0, done.stderr
    assert "Masked" in done.stderr
    names = band_names(stack)
    rgb = read(applied)[[names.index(b) for b in ("B04", "B03", "B02")]]
    assert np.array_equal(rgb, read(masked))


def test_the_command_line_refuses_bad_input_with_exit_2(product, tmp_path, plugin_dir):
    stack = str(tmp_path / "stack.vrt")
    s2_product.prepare(str(product.zip), stack, str(tmp_path / "m.vrt"), 10.0)
    done = _command(plugin_dir, "apply", stack, stack, str(tmp_path / "out.tif"))
    assert done.returncode == 2 and "is not a cloud mask" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out.tif").exists()
    typo = _command(plugin_dir, "batch", str(product.zip), "--out", str(tmp_path / "o"), "--masked", "B4,Bx")
    assert typo.returncode == 2 and "Unknown band name 'Bx'" in typo.stderr


def test_partial_files_a_killed_run_left_are_cleaned_for_the_imagery_too(tmp_path):
    item = batch.Item("product.zip", "T33TUK_20230615T100559_L2A")
    left = [
        tmp_path / ".T33TUK_20230615T100559_L2A.tif.partial-1a2b3c4d.tif",
        tmp_path / ".T33TUK_20230615T100559_L2A_masked.tif.partial-5e6f7a8b.tif",
    ]
    other = tmp_path / ".T33TUK_20230620T100559_L2A_masked.tif.partial-00000000.tif"  # another product's
    for path in (*left, other):
        path.write_bytes(b"half")
    batch.clean_partials(str(tmp_path), [item])
    assert [p.name for p in tmp_path.iterdir()] == [other.name]
