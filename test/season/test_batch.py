"""Many products in one go (core, no QGIS).

Mixed good and bad inputs, names, resume, fractions within an area, and area-limited runs
equal to whole-scene runs inside the area. Products are built by test/s2_product.py from
the real sample scene."""

import csv
import json
import os
import shutil
from dataclasses import replace

import numpy as np
import pytest
from osgeo import gdal, ogr, osr
from s2_product import build_product
from samples import L1C_STACK, require

from cloud_mask_improver.core import area as areas
from cloud_mask_improver.core import merge, pipeline
from cloud_mask_improver.core.raster import GTIFF_OPTIONS
from cloud_mask_improver.core.season import batch, summary
from cloud_mask_improver.core.sentinel2 import product

L2A = batch.BatchOptions(batch.template(cloud_models=("ukis-6b-l2a",)))


@pytest.fixture(scope="module")
def products(tmp_path_factory):
    folder = tmp_path_factory.mktemp("season")
    new = build_product(folder, "L2A", "04.00")
    old = build_product(folder / "old", "L2A", "02.14", zipped=False)
    bad = folder / "S2A_MSIL2A_20230620T100559_N0500_R022_T33TUK_20230620T130000.zip"
    bad.write_bytes(b"PK\x03\x04 this download was interrupted")
    l1c = build_product(folder / "l1c", "L1C", "04.00", zipped=False)
    return {"new": new, "old": old, "bad": bad, "l1c": l1c, "folder": folder}


def test_plan_names_masks_by_tile_and_date_and_keeps_them_unique(products):
    items = batch.plan_items([str(products["new"].zip), str(products["old"].safe), str(products["bad"])])
    names = [i.name for i in items]
    assert names[0] == "T33TUK_20230615T100559_L2A"
    assert names[1] == "T33TUK_20230615T100559_L2A_2"  # the same tile and time, reprocessed
    assert names[2] == "T33TUK_20230620T100559_L2A"  # named from its file name though unreadable
    # A folder is searched with a pattern; a glob is expanded.
    assert [i.source for i in batch.plan_items([str(products["folder"])], "*.zip")] == sorted(
        str(p) for p in products["folder"].glob("*.zip")
    )
    assert len(batch.plan_items([str(products["folder"] / "*.zip")])) == 2


def test_mixed_good_and_bad_inputs_each_get_a_row_and_the_good_ones_their_mask(products, tmp_path):
    missing = tmp_path / "nowhere.zip"
    items = batch.plan_items([str(products["new"].zip), str(products["bad"]), str(missing), str(products["old"].safe)])
    rows = batch.run_sequential(items, L2A, str(tmp_path))
    status = {r.input: r for r in rows}
    assert status[str(products["new"].zip)].ok and status[str(products["old"].safe)].ok
    bad, gone = status[str(products["bad"])], status[str(missing)]
    assert not bad.ok and "damaged" in bad.error and "Download the product again" in bad.error
    assert not gone.ok and "does not exist" in gone.error
    good = status[str(products["new"].zip)]
    assert (good.tile, good.sensed, good.level, good.baseline) == ("T33TUK", "2023-06-15T10:05:59", "L2A", "04.00")
    assert abs(good.clear_fraction + good.cloud_fraction + good.shadow_fraction - 1) < 1e-9
    assert gdal.Open(good.mask) is not None and good.footprint.startswith("POLYGON")
    # Same pixels from the zip and from an old-baseline folder: the offset is applied.
    assert np.array_equal(
        gdal.Open(good.mask).ReadAsArray(), gdal.Open(status[str(products["old"].safe)].mask).ReadAsArray()
    )
    written = summary.write_all(rows, str(tmp_path))
    with open(written["csv"], newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [r["status"] for r in table].count("failed") == 2 and len(table) == 4
    gpkg = ogr.Open(written["gpkg"])  # kept referenced while its layer is read
    layer = gpkg.GetLayerByName("summary")
    assert layer.GetFeatureCount() == 4
    assert {f["status"] for f in layer} == {"ok", "failed"}
    assert not list(tmp_path.glob(".*partial*"))


def test_a_damaged_raster_in_the_season_gets_a_row_that_names_the_fix(products, tmp_path):
    """A GeoTIFF cut short (a copy interrupted) opens but fails when its blocks are read.

    Its row must say what is wrong and what to do, not only GDAL's 'IReadBlock failed'."""
    require(L1C_STACK)
    cut = tmp_path / "in" / "T33TUK_20230701T100559_stack.tif"
    cut.parent.mkdir()
    gdal.Translate(str(cut), str(L1C_STACK), srcWin=[0, 0, 300, 300], creationOptions=GTIFF_OPTIONS)
    cut.write_bytes(cut.read_bytes()[:5000])
    (tmp_path / "out").mkdir()
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        rows = batch.run_sequential(batch.plan_items([str(products["new"].zip), str(cut)]), L2A, str(tmp_path / "out"))
    finally:
        gdal.PopErrorHandler()
    good, damaged = rows
    assert good.ok and not damaged.ok
    assert "failed" in damaged.error and "damaged or incomplete" in damaged.error, damaged.error
    assert "copy or download it again" in damaged.error
    left = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert not [n for n in left if "20230701" in n or "partial" in n], left  # nothing of the damaged one


def test_masks_written_beside_the_products_are_not_taken_for_products(products, tmp_path):
    """Output folder = the products' folder: a rerun must not take the earlier masks for band stacks.

    Taken so, each one would be reported failed ('8-bit ... picture')."""
    folder = tmp_path / "season"
    folder.mkdir()
    shutil.copy(products["new"].zip, folder)
    first = batch.run_sequential(batch.plan_items([str(folder)]), L2A, str(folder))
    assert [r.ok for r in first] == [True]
    again = batch.plan_items([str(folder)])
    assert [i.source for i in again] == [str(folder / products["new"].zip.name)]
    second = batch.run_sequential(again, L2A, str(folder))
    assert [(r.ok, r.reused) for r in second] == [(True, True)]


def test_a_folder_of_prepared_stacks_leaves_their_product_masks_out(products, tmp_path):
    """Prepare Sentinel-2 product writes the stack and its product mask side by side.

    The masks must not be taken for products and reported failed; each stack uses its own."""
    folder = tmp_path / "stacks"
    folder.mkdir()
    product.prepare(str(products["new"].zip), str(folder / "stack.vrt"), str(folder / "stack_SCL.tif"), 60.0)
    items = batch.plan_items([str(folder)])
    assert [os.path.basename(i.source) for i in items] == ["stack.vrt"]
    (row,) = batch.run_sequential(items, L2A, str(tmp_path))
    assert row.ok, row.error


def test_resume_skips_unchanged_products_and_redoes_changed_ones(products, tmp_path):
    items = batch.plan_items([str(products["new"].zip)])
    first = batch.run_sequential(items, L2A, str(tmp_path))[0]
    record = json.loads((tmp_path / f"{items[0].name}.json").read_text())
    assert record["models"]["ukis-6b-l2a"] and record["input"]["size"] == products["new"].zip.stat().st_size
    assert record["parameters"]["cloud_threshold"] is None and record["plugin_version"]
    mtime = (tmp_path / f"{items[0].name}.tif").stat().st_mtime_ns

    again = batch.run_sequential(items, L2A, str(tmp_path))[0]
    assert again.reused and again.clear_fraction == first.clear_fraction
    assert (tmp_path / f"{items[0].name}.tif").stat().st_mtime_ns == mtime

    stricter = batch.BatchOptions(replace(L2A.request, cloud_threshold=0.9))
    redone = batch.run_sequential(items, stricter, str(tmp_path))[0]
    assert not redone.reused and redone.ok and redone.clear_fraction > first.clear_fraction
    assert json.loads((tmp_path / f"{items[0].name}.json").read_text())["parameters"]["cloud_threshold"] == 0.9

    forced = batch.run_sequential(items, stricter, str(tmp_path), force=True)[0]
    assert not forced.reused and forced.clear_fraction == redone.clear_fraction


def test_the_record_keeps_its_parameter_names_so_a_rerun_keeps_older_masks():
    """A product's record compares parameters by name: a plain run's names and values stay.

    They stay what records written before the options held a request have, or every mask is
    redone."""
    default = merge.MergeSettings()
    assert batch.BatchOptions().recorded() == {
        "cloud_models": [],
        "shadow_model": "",
        "ensemble": False,
        "cloud_threshold": None,
        "shadow_threshold": None,
        "bands": "",
        "resolution": None,
        "product_kind": default.product_kind,
        "dilation": default.dilation,
        "min_area": default.min_area,
        "output_mode": default.output_mode,
        "blank_outside": False,
    }
    given = batch.BatchOptions(
        replace(
            batch.template(cloud_models=("a", "b"), shadow_model="s", threads=3),
            ensemble=True,
            settings=merge.MergeSettings(dilation=2),
        ),
        masked=True,
    )
    recorded = given.recorded()
    assert recorded["cloud_models"] == ["a", "b"] and recorded["shadow_model"] == "s" and recorded["ensemble"]
    assert recorded["dilation"] == 2 and "threads" not in recorded and "masked" not in recorded


def test_a_changed_input_is_redone(products, tmp_path):
    source = tmp_path / "in" / products["new"].zip.name
    source.parent.mkdir()
    shutil.copy(products["new"].zip, source)
    items = batch.plan_items([str(source)])
    batch.run_sequential(items, L2A, str(tmp_path))
    source.write_bytes(source.read_bytes())  # same bytes, new time: another download
    assert not batch.run_sequential(items, L2A, str(tmp_path))[0].reused


# -- fractions within an area


def _utm(epsg=32633):
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    return srs.ExportToWkt()


def _square(x0, y0, size):
    return f"POLYGON (({x0} {y0},{x0 + size} {y0},{x0 + size} {y0 + size},{x0} {y0 + size},{x0} {y0}))"


def test_area_fractions_match_a_hand_count(tmp_path):
    # A 10 x 10 mask of 10 m pixels, origin (500000, 5000100).
    mask = np.zeros((10, 10), np.uint8)
    mask[0, 0:4] = merge.CLOUD  # 4 cloud in field A's first row
    mask[1, 0] = merge.SHADOW  # 1 shadow in field A
    mask[4, 4] = merge.NODATA  # 1 nodata in field A (not counted)
    mask[5:, 5:] = merge.CLOUD  # field B (rows 5-9, cols 5-9) entirely cloud but one pixel
    mask[9, 9] = merge.CLEAR
    path = tmp_path / "mask.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(path), 10, 10, 1, gdal.GDT_Byte, GTIFF_OPTIONS)
    ds.SetGeoTransform((500000, 10, 0, 5000100, 0, -10))
    ds.SetProjection(_utm())
    ds.GetRasterBand(1).WriteArray(mask)
    ds.GetRasterBand(1).SetNoDataValue(255)
    ds = None
    # Field A: rows 0-4, cols 0-4 (25 px); field B: rows 5-9, cols 5-9 (25 px).
    area = areas.Area((_square(500000, 5000050, 50), _square(500050, 5000000, 50)), _utm(), ("A", "B"))
    counted = areas.area_fractions(str(path), area)
    a, b = (f.as_dict() for f in counted.per_polygon)
    assert counted.per_polygon[0].valid == 24
    assert a["CLOUD_FRACTION"] == pytest.approx(4 / 24) and a["SHADOW_FRACTION"] == pytest.approx(1 / 24)
    assert a["CLEAR_FRACTION"] == pytest.approx(19 / 24)
    assert b["CLEAR_FRACTION"] == pytest.approx(1 / 25) and b["CLOUD_FRACTION"] == pytest.approx(24 / 25)
    assert counted.total.as_dict()["CLEAR_FRACTION"] == pytest.approx(20 / 49)
    # The same field given in lon/lat gives the same pixels.
    lonlat = areas.Area(tuple(g.ExportToWkt() for g in _to_wgs84(area)), _wgs84(), ("A", "B"))
    assert areas.area_fractions(str(path), lonlat).per_polygon[0].valid == 24


def _wgs84():
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    return srs.ExportToWkt()


def _to_wgs84(area):
    # Slightly inside the squares, so that reprojection wobble cannot move a pixel centre out.
    shrunk = []
    for geometry in area.geometries(_utm()):
        inner = geometry.Buffer(-1)
        srs = osr.SpatialReference()
        srs.ImportFromWkt(_utm())
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        inner.AssignSpatialReference(srs)
        target = osr.SpatialReference()
        target.ImportFromEPSG(4326)
        target.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        inner.TransformTo(target)
        shrunk.append(inner)
    return shrunk


def _fields_file(path, wkts, names, crs_wkt):
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    srs = osr.SpatialReference()
    srs.ImportFromWkt(crs_wkt)
    layer = ds.CreateLayer("fields", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("name", ogr.OFTString))
    for wkt, name in zip(wkts, names):
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("name", name)
        feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        layer.CreateFeature(feature)
    ds = None
    return path


def test_batch_with_an_area_writes_its_box_and_per_field_fractions(products, tmp_path):
    gt = products["new"].geotransform
    x0, y0 = gt[0] + 60 * 10, gt[3] - 180 * 10
    # A 40 x 40 px field (rows 140-179, cols 60-99) and a 20 x 20 px one (rows 60-79, cols 160-179).
    wkts = (_square(x0, y0, 400), _square(x0 + 1000, y0 + 1000, 200))
    fields = _fields_file(tmp_path / "fields.gpkg", wkts, ("north", "south"), _utm())
    area = areas.read_area(str(fields))
    assert area.names == ("north", "south")
    out = tmp_path / "out"
    out.mkdir()
    items = batch.plan_items([str(products["new"].zip)])
    row = batch.run_sequential(items, L2A, str(out), area)[0]
    assert row.ok, row.error
    mask = gdal.Open(row.mask)
    assert (mask.RasterXSize, mask.RasterYSize) == (120, 120)  # the two fields' bounding box
    values = mask.ReadAsArray()
    ids = areas.polygon_ids(area, row.mask)
    inside = values[(ids == 1) & (values != 255)]
    assert row.fields[0].name == "north" and row.fields[0].valid_pixels == inside.size == 40 * 40
    assert row.fields[0].clear_fraction == pytest.approx(np.mean(inside == 0))
    assert row.area_valid_pixels == ((ids > 0) & (values != 255)).sum()
    whole = batch.run_sequential(items, L2A, str(tmp_path))[0]  # the same product, whole scene
    full = gdal.Open(whole.mask).ReadAsArray()
    assert np.array_equal(values, full[60:180, 60:180])
    # The per-field table.
    written = summary.write_all([row], str(out))
    gpkg = ogr.Open(written["gpkg"])
    assert gpkg.GetLayerByName("fields").GetFeatureCount() == 2


def test_a_product_outside_the_area_fails_with_a_reason(products, tmp_path):
    far = areas.Area((_square(100000, 100000, 100),), _utm())
    row = batch.run_sequential(batch.plan_items([str(products["new"].zip)]), L2A, str(tmp_path), far)[0]
    assert not row.ok and "does not overlap the area" in row.error
    assert not list(tmp_path.glob("*.tif"))


# -- only the work the area needs


@pytest.mark.parametrize("min_area", [0, 40])
def test_area_limited_run_equals_the_whole_scene_inside_the_area(tmp_path, min_area):
    """A 1 km x 1 km field of the real sample scene: same mask and probabilities as the whole scene.

    Also when small patches are dropped: whether a patch is small is decided on the whole raster."""
    require(L1C_STACK)

    def request(mask):
        return pipeline.ImproveRequest(
            probability=pipeline.ProbabilityRequest(s2_raster=str(L1C_STACK), cloud_models=["ukis-6b-l1c"]),
            product_mask=None,
            settings=merge.MergeSettings(min_area=min_area),
            mask=str(mask),
            outputs=pipeline.ProbabilityOutputs(cloud=str(mask).replace(".tif", "_cloud.tif")),
        )

    pipeline.improve(request(tmp_path / "whole.tif"))
    gt = gdal.Open(str(L1C_STACK)).GetGeoTransform()
    x0, y1 = gt[0] + 300 * 10, gt[3] - 400 * 10  # columns 300-399, rows 400-499
    field = areas.Selection(bounds=(x0, y1 - 1000, x0 + 1000, y1), bounds_crs=_utm())
    report = pipeline.improve(request(tmp_path / "part.tif"), selection=field)
    window = (slice(400, 500), slice(300, 400))
    for name in ("", "_cloud"):
        whole = gdal.Open(str(tmp_path / f"whole{name}.tif")).ReadAsArray()[window]
        part = gdal.Open(str(tmp_path / f"part{name}.tif"))
        assert np.array_equal(part.ReadAsArray(), whole)
        assert part.GetGeoTransform()[0] == gdal.Open(str(tmp_path / "whole.tif")).GetGeoTransform()[0] + 3000
    assert report.valid_pixels == 100 * 100


@pytest.mark.parametrize("scheme", [("mirror-tukey", 256, 0.2), ("centre-crop", 512, 0.25), ("pixel", 512, 0.0)])
def test_work_window_keeps_every_tile_of_the_target_as_in_the_whole_plan(scheme):
    from cloud_mask_improver.core.tiling import plan_axis

    rng = np.random.default_rng(1)
    for _ in range(30):
        size = int(rng.integers(300, 3000))
        a0 = int(rng.integers(0, size - 1))
        a1 = int(rng.integers(a0 + 1, min(size, a0 + 300) + 1))
        lo, hi = areas._axis_cut(size, a0, a1, [scheme])
        full, cut = plan_axis(size, *scheme), plan_axis(hi - lo, *scheme)
        touching = [(s, w) for s, w in zip(full.starts, full.weights) if areas._touches(w, s, a0, a1)]
        mine = {s + lo: w for s, w in zip(cut.starts, cut.weights) if areas._touches(w, s + lo, a0, a1)}
        assert [s for s, _ in touching] == sorted(mine)
        assert all(np.array_equal(w, mine[s]) for s, w in touching)
        assert lo <= a0 and hi >= a1
        assert hi - lo < size or size < 4 * scheme[1]  # smaller than the whole axis on long axes
