"""Apply cloud mask (core, no QGIS): the sample scene masked with its real improved mask.

On its own grid and on others (20 m, EPSG:4326), every data type, the buffer, cancel and bad
inputs."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from osgeo import gdal, gdal_array, osr
from rasters import write_raster
from samples import L1C_STACK, PRODUCT_MASK, require

from cloud_mask_improver.core import apply_mask, merge, pipeline
from cloud_mask_improver.core.errors import CloudMaskError
from cloud_mask_improver.core.progress import Cancelled, Feedback

MODEL = "ukis-6b-l1c"


@pytest.fixture(scope="module")
def real_mask(tmp_path_factory):
    """The sample scene's improved mask, made by the real model (cloud, shadow and a nodata corner)."""
    require(L1C_STACK, PRODUCT_MASK)
    folder = tmp_path_factory.mktemp("real_mask")
    stack = str(folder / "stack.tif")
    data = gdal.Open(str(L1C_STACK)).ReadAsArray()
    data[:, :40, :60] = 0  # a corner without data, so the mask has its nodata class
    source = gdal.Open(str(L1C_STACK))
    copy = gdal.GetDriverByName("GTiff").CreateCopy(stack, source)
    copy.WriteArray(data)
    copy.SetMetadataItem("BOA_ADD_OFFSET", "-1000")  # metadata the masked copy must keep
    copy = None
    mask = str(folder / "mask.tif")
    request = pipeline.ImproveRequest(
        pipeline.ProbabilityRequest(stack, (MODEL,), MODEL), str(PRODUCT_MASK), merge.MergeSettings(), mask=mask
    )
    pipeline.run(pipeline.plan(request))
    values = gdal.Open(mask).ReadAsArray()
    assert {0, 1, 2, 255} <= set(np.unique(values))  # every class is there to be tested
    return stack, mask, values


def read(path) -> np.ndarray:
    ds = gdal.Open(str(path))
    return ds.ReadAsArray()


def test_the_sample_on_its_own_grid_loses_exactly_the_masked_classes(real_mask, tmp_path):
    stack, mask, values = real_mask
    out = tmp_path / "masked.tif"
    result = apply_mask.apply_mask(stack, mask, str(out))
    before, after = read(stack), read(out)
    dropped = values != merge.CLEAR
    assert after.dtype == before.dtype and after.shape == before.shape
    assert (after[:, dropped] == 0).all()  # the stack's own nodata
    assert np.array_equal(after[:, ~dropped], before[:, ~dropped])
    assert result.masked_pixels == dropped.sum() and not result.warped
    ds, src = gdal.Open(str(out)), gdal.Open(stack)
    assert [ds.GetRasterBand(i + 1).GetDescription() for i in range(13)] == [
        src.GetRasterBand(i + 1).GetDescription() for i in range(13)
    ]
    assert ds.GetRasterBand(1).GetNoDataValue() == 0
    assert ds.GetMetadataItem("BOA_ADD_OFFSET") == "-1000"
    assert ds.GetMetadataItem(apply_mask.APPLIED_KEY) == "mask.tif: cloud, shadow, nodata; buffer 0 m"
    assert ds.GetGeoTransform() == src.GetGeoTransform()


def test_only_the_chosen_classes_are_masked(real_mask, tmp_path):
    stack, mask, values = real_mask
    out = tmp_path / "cloud_only.tif"
    apply_mask.apply_mask(stack, mask, str(out), ("cloud",))
    before, after = read(stack), read(out)
    assert (after[:, values == merge.CLOUD] == 0).all()
    kept = values != merge.CLOUD
    assert np.array_equal(after[:, kept], before[:, kept])  # shadow and the nodata corner as they were


def test_a_coarser_raster_on_an_aligned_grid_is_masked_where_any_of_its_mask_pixels_is(real_mask, tmp_path):
    stack, mask, values = real_mask
    coarse = str(tmp_path / "20m.tif")
    gdal.Translate(coarse, stack, xRes=20, yRes=20, resampleAlg="average", bandList=[2, 3, 4])
    out = tmp_path / "masked20.tif"
    result = apply_mask.apply_mask(coarse, mask, str(out), ("cloud", "shadow"))
    blocks = (values != merge.CLEAR) & (values != merge.NODATA)
    expected = blocks.reshape(values.shape[0] // 2, 2, values.shape[1] // 2, 2).any(axis=(1, 3))
    after = read(out)
    assert result.warped and after.shape == (3, *expected.shape)
    assert np.array_equal(after[0] == 0, expected | (read(coarse)[0] == 0))


def test_a_raster_in_another_crs_lets_no_cloudy_pixel_through(real_mask, tmp_path):
    """The sample warped to EPSG:4326 (pixels about 13 x 9 m, turned against the mask's).

    Every raster pixel that holds the centre of a cloud or shadow pixel of the mask must be nodata."""
    stack, mask, values = real_mask
    geographic = str(tmp_path / "wgs84.tif")
    gdal.Warp(geographic, stack, dstSRS="EPSG:4326", resampleAlg="near")
    out = tmp_path / "masked_wgs84.tif"
    apply_mask.apply_mask(geographic, mask, str(out), ("cloud", "shadow"))
    after = gdal.Open(str(out))
    rows, cols = np.nonzero((values == merge.CLOUD) | (values == merge.SHADOW))
    gt = gdal.Open(mask).GetGeoTransform()
    xs, ys = gt[0] + (cols + 0.5) * gt[1], gt[3] + (rows + 0.5) * gt[5]
    utm, wgs84 = osr.SpatialReference(), osr.SpatialReference()
    utm.ImportFromWkt(gdal.Open(mask).GetProjection())
    wgs84.ImportFromEPSG(4326)
    for srs in (utm, wgs84):
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    points = np.array(osr.CoordinateTransformation(utm, wgs84).TransformPoints(np.column_stack([xs, ys])))
    g = after.GetGeoTransform()
    col = ((points[:, 0] - g[0]) / g[1]).astype(int)
    row = ((points[:, 1] - g[3]) / g[5]).astype(int)
    band = after.ReadAsArray()[1]
    assert (band[row, col] == 0).all()
    # ... and it is not all nodata: the clear part of the scene is still there.
    assert (band != 0).mean() > 0.1


def test_pixels_outside_the_mask_are_nodata_only_when_nodata_is_chosen(tmp_path):
    mask = write_raster(tmp_path / "mask.tif", np.zeros((10, 10), np.uint8), nodata=255)
    bigger = write_raster(
        tmp_path / "big.tif",
        np.full((20, 20), 7, np.uint16),
        nodata=0,
        transform=(499950.0, 10.0, 0.0, 5000050.0, 0.0, -10.0),
    )
    apply_mask.apply_mask(bigger, mask, str(tmp_path / "all.tif"))
    apply_mask.apply_mask(bigger, mask, str(tmp_path / "cloud.tif"), ("cloud", "shadow"))
    inside = np.zeros((20, 20), bool)
    inside[5:15, 5:15] = True
    assert np.array_equal(read(tmp_path / "all.tif") == 7, inside)
    assert (read(tmp_path / "cloud.tif") == 7).all()


def test_the_buffer_grows_cloud_and_shadow_by_a_disk_but_not_nodata(tmp_path):
    values = np.zeros((41, 41), np.uint8)
    values[20, 20] = merge.CLOUD
    values[:, :3] = merge.NODATA
    mask = write_raster(tmp_path / "mask.tif", values, nodata=255)
    raster = write_raster(tmp_path / "r.tif", np.full((41, 41), 5.0, np.float32), nodata=None)
    result = apply_mask.apply_mask(raster, mask, str(tmp_path / "out.tif"), buffer_m=25.0)  # 10 m pixels: 3 px
    masked = np.isnan(read(tmp_path / "out.tif"))
    expected = np.zeros_like(masked)
    for dy, dx in merge.disk_offsets(3):
        expected[20 + dy, 20 + dx] = True
    expected[:, :3] = True
    assert result.radius_px == 3 and np.array_equal(masked, expected)


TYPES = [
    ("Byte", None, 255),
    ("UInt16", None, 65535),
    ("Int16", None, -32768),
    ("UInt32", None, 4294967295),
    ("Int32", None, -2147483648),
    ("Float32", None, math.nan),
    ("Float64", None, math.nan),
    ("Float32", -9999.0, -9999.0),
    ("Int16", 0, 0),
]
if hasattr(gdal, "GDT_Int64"):  # GDAL >= 3.5
    TYPES += [("Int64", None, -(2**63)), ("UInt64", None, 2**64 - 1)]


@pytest.mark.parametrize("type_name, declared, expected", TYPES)
def test_every_data_type_is_kept_and_its_nodata_declared(tmp_path, type_name, declared, expected):
    values = np.zeros((30, 30), np.uint8)
    values[5:10, 5:10] = merge.CLOUD
    mask = write_raster(tmp_path / "mask.tif", values, nodata=255)
    code = gdal.GetDataTypeByName(type_name)
    data = (np.arange(2 * 30 * 30).reshape(2, 30, 30) % 200 + 1).astype(gdal_array.GDALTypeCodeToNumericTypeCode(code))
    ds = gdal.GetDriverByName("GTiff").Create(str(tmp_path / "r.tif"), 30, 30, 2, code)
    ds.SetGeoTransform((500000.0, 10.0, 0.0, 5000000.0, 0.0, -10.0))
    ds.SetProjection(gdal.Open(mask).GetProjection())
    for i in range(2):
        if declared is not None:
            ds.GetRasterBand(i + 1).SetNoDataValue(declared)
        ds.GetRasterBand(i + 1).WriteArray(data[i])
    ds = None
    apply_mask.apply_mask(str(tmp_path / "r.tif"), mask, str(tmp_path / "out.tif"))
    out = gdal.Open(str(tmp_path / "out.tif"))
    after = out.ReadAsArray()
    assert gdal.GetDataTypeName(out.GetRasterBand(2).DataType) == type_name
    nodata = out.GetRasterBand(2).GetNoDataValue()
    assert (math.isnan(nodata) and math.isnan(expected)) or nodata == expected
    hole = after[:, 5:10, 5:10]
    assert np.isnan(hole).all() if math.isnan(expected) else (hole == expected).all()
    keep = values == 0
    assert np.array_equal(after[:, keep], data[:, keep])


def test_a_kept_value_equal_to_the_chosen_nodata_is_reported(tmp_path):
    mask = write_raster(tmp_path / "mask.tif", np.ones((10, 10), np.uint8) * np.eye(10, dtype=np.uint8), nodata=255)
    picture = write_raster(tmp_path / "p.tif", np.full((10, 10), 255, np.uint8), nodata=None)
    result = apply_mask.apply_mask(picture, mask, str(tmp_path / "out.tif"))
    assert result.nodata_clashes == 90
    assert "90 kept pixel value(s)" in " ".join(apply_mask.warnings(result))


def test_an_rgba_picture_gets_transparent_holes_and_keeps_its_colours(tmp_path):
    values = np.zeros((20, 20), np.uint8)
    values[:10] = merge.CLOUD
    mask = write_raster(tmp_path / "mask.tif", values, nodata=255)
    rgba = np.full((4, 20, 20), 255, np.uint8)
    path = write_raster(tmp_path / "rgba.tif", rgba, nodata=None)
    ds = gdal.Open(path, gdal.GA_Update)
    for i, interp in enumerate((gdal.GCI_RedBand, gdal.GCI_GreenBand, gdal.GCI_BlueBand, gdal.GCI_AlphaBand)):
        ds.GetRasterBand(i + 1).SetColorInterpretation(interp)
    ds = None
    result = apply_mask.apply_mask(path, mask, str(tmp_path / "out.tif"))
    out = gdal.Open(str(tmp_path / "out.tif"))
    after = out.ReadAsArray()
    assert (after[3, :10] == 0).all() and (after[3, 10:] == 255).all()
    assert (after[:3] == 255).all()  # white stays white: the alpha band says what is empty
    assert out.GetRasterBand(4).GetColorInterpretation() == gdal.GCI_AlphaBand
    assert out.GetRasterBand(1).GetColorInterpretation() == gdal.GCI_RedBand
    assert out.GetRasterBand(1).GetNoDataValue() is None and result.nodata_clashes == 0


def test_a_binary_mask_is_read_from_its_class_names(tmp_path):
    values = np.zeros((10, 10), np.uint8)
    values[2, 2] = 1
    path = write_raster(tmp_path / "binary.tif", values, nodata=255)
    ds = gdal.Open(path, gdal.GA_Update)
    ds.GetRasterBand(1).SetCategoryNames(["clear", "cloud or shadow"])
    ds = None
    raster = write_raster(tmp_path / "r.tif", np.full((10, 10), 9, np.uint16), nodata=0)
    result = apply_mask.apply_mask(raster, path, str(tmp_path / "out.tif"), ("shadow",))
    assert result.binary_mask and read(tmp_path / "out.tif")[2, 2] == 0  # cloud or shadow: shadow asked
    assert (read(tmp_path / "out.tif") == 9).sum() == 99


def test_a_cancelled_run_leaves_nothing(real_mask, tmp_path, monkeypatch):
    stack, mask, _ = real_mask
    monkeypatch.setattr(apply_mask, "WINDOW", 128)  # several windows on the sample

    class CancelMidway(Feedback):
        def __init__(self):
            self.calls = 0

        def progress(self, fraction):
            self.calls += 1

        def cancelled(self):
            return self.calls >= 3

    feedback = CancelMidway()
    with pytest.raises(Cancelled) as caught:  # kept, as a caller keeps the error to report it
        apply_mask.apply_mask(stack, mask, str(tmp_path / "out.tif"), feedback=feedback)
    assert feedback.calls == 3  # stopped at the first check after the request
    assert list(tmp_path.iterdir()) == []
    # ... and no file is kept open (Windows could not remove it; Linux shows it in /proc).
    if os.path.isdir("/proc/self/fd"):
        held = [
            os.readlink(f"/proc/self/fd/{fd}")
            for fd in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{fd}")
        ]
        assert not [h for h in held if str(tmp_path) in h or "cloudmask-apply-" in h], held
    assert caught.value.__traceback__ is not None


def _refused(tmp_path, raster, mask, *words, **kwargs):
    out = tmp_path / "out.tif"
    with pytest.raises(CloudMaskError) as err:
        apply_mask.apply_mask(str(raster), str(mask), str(kwargs.pop("output", out)), **kwargs)
    for word in words:
        assert word in str(err.value), str(err.value)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(("out", ".out"))]
    return str(err.value)


def test_bad_inputs_are_refused_with_the_fix_and_nothing_written(real_mask, tmp_path):
    stack, mask, _ = real_mask
    # The stack given as the mask.
    _refused(tmp_path, stack, stack, "is not a cloud mask", "13 band(s) of type UInt16")
    # A scene classification (SCL) given as the mask: bytes, but classes 3..11.
    scl = write_raster(
        tmp_path / "scl.tif",
        (np.arange(100).reshape(10, 10) % 12).astype(np.uint8),
        nodata=0,
        transform=(290040.0, 20.0, 0.0, 4985040.0, 0.0, -20.0),
    )
    _refused(tmp_path, stack, scl, "not a cloud mask made by Improve cloud mask", "run Improve cloud mask")
    # A mask elsewhere.
    far = write_raster(tmp_path / "far.tif", np.zeros((10, 10), np.uint8), nodata=255)
    _refused(tmp_path, stack, far, "does not overlap")
    # A raster without a CRS.
    bare = write_raster(tmp_path / "bare.tif", np.ones((10, 10), np.uint16), epsg=None)
    _refused(tmp_path, bare, mask, "no coordinate reference system", "Assign Projection")
    # A buffer in metres on a mask in degrees.
    degrees = str(tmp_path / "mask4326.tif")
    gdal.Warp(degrees, mask, dstSRS="EPSG:4326")
    _refused(tmp_path, stack, degrees, "geographic CRS", buffer_m=20.0)
    # Nothing chosen; an output named for another format.
    _refused(tmp_path, stack, mask, "Choose at least one class", classes=())
    _refused(tmp_path, stack, mask, "Give it a .tif name", output=tmp_path / "out.png")
