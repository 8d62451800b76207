"""The sample GeoTIFFs are the s2cloudless test scene, exactly, as a user would have it.

Every real-data test and the demo read these files, so a wrong band order,
an off-by-one quantisation or a missing nodata value here would silently
skew all of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, osr
from samples import load_fetch_sample

from cloud_mask_improver.core.modelstore.fetch import FetchError

fetch_sample = load_fetch_sample()


@pytest.fixture(scope="module")
def sample() -> dict[str, Path]:
    try:
        return fetch_sample.ensure_sample()
    except FetchError as err:
        pytest.skip(f"sample scene unavailable (no network and no cache?): {err}")


@pytest.fixture(scope="module")
def reference(sample: dict[str, Path]) -> dict[str, np.ndarray]:
    with np.load(sample["npz"]) as arrays:
        return {key: arrays[key] for key in arrays.files}


def _open(path: Path) -> gdal.Dataset:
    dataset = gdal.Open(str(path))
    assert dataset is not None, gdal.GetLastErrorMsg()
    return dataset


def _epsg(dataset: gdal.Dataset) -> str | None:
    srs = osr.SpatialReference(wkt=dataset.GetProjection())
    return srs.GetAuthorityCode(None)


def _check_layout(dataset: gdal.Dataset, names: tuple[str, ...], gdal_type: int, nodata: int) -> None:
    assert (dataset.RasterXSize, dataset.RasterYSize) == (512, 856)
    assert dataset.RasterCount == len(names)
    assert _epsg(dataset) == "32633"
    assert dataset.GetGeoTransform() == pytest.approx(fetch_sample.geotransform())
    assert dataset.GetMetadataItem("COMPRESSION", "IMAGE_STRUCTURE") == "DEFLATE"
    assert dataset.GetMetadataItem("CREDIT") == "Contains modified Copernicus Sentinel data"
    for index, name in enumerate(names):
        band = dataset.GetRasterBand(index + 1)
        assert band.GetDescription() == name
        assert band.DataType == gdal_type
        assert band.GetNoDataValue() == nodata
        assert band.GetBlockSize() == [256, 256]


def test_npz_is_the_pinned_reference(reference: dict[str, np.ndarray]) -> None:
    assert reference["s2_im"].shape == (1, 856, 512, 13)
    assert reference["s2_im"].dtype == np.float32
    assert reference["cl_probs"].shape == reference["cl_mask"].shape == (1, 856, 512)


@pytest.mark.parametrize(
    ("key", "names"),
    [
        ("l1c_13band", fetch_sample.S2_BANDS),
        ("farmvibes_12band", fetch_sample.FARMVIBES_BANDS),
    ],
)
def test_s2_stack(sample: dict[str, Path], reference: dict[str, np.ndarray], key: str, names: tuple[str, ...]) -> None:
    dataset = _open(sample[key])
    _check_layout(dataset, names, gdal.GDT_UInt16, 0)
    assert dataset.GetMetadataItem("PROCESSING_LEVEL") == "L1C"
    columns = [fetch_sample.S2_BANDS.index(name) for name in names]
    expected = np.maximum(1, np.rint(reference["s2_im"][0][..., columns] * 1e4))
    got = np.moveaxis(dataset.ReadAsArray(), 0, -1)
    np.testing.assert_array_equal(got, expected.astype(np.uint16))


def test_seed_stack_has_no_b10(sample: dict[str, Path]) -> None:
    dataset = _open(sample["farmvibes_12band"])
    names = [dataset.GetRasterBand(i + 1).GetDescription() for i in range(dataset.RasterCount)]
    assert "B10" not in names and names.index("B8A") == names.index("B08") + 1


def test_quantisation_is_lossless_except_zeros(reference: dict[str, np.ndarray]) -> None:
    """The scene is float32(DN / 10000) already: DN / 10000 gives it back bit for bit."""
    reflectance = reference["s2_im"]
    dn = fetch_sample.quantise(reflectance)
    back = dn.astype(np.float32) / np.float32(10000)
    changed = back != reflectance
    assert changed.sum() == 6
    assert np.all(reflectance[changed] == 0) and np.all(dn[changed] == 1)


def test_product_mask(sample: dict[str, Path], reference: dict[str, np.ndarray]) -> None:
    dataset = _open(sample["product_mask"])
    _check_layout(dataset, ("cloud",), gdal.GDT_Byte, 100)
    np.testing.assert_array_equal(dataset.ReadAsArray(), reference["cl_mask"][0])


def test_second_call_changes_nothing(sample: dict[str, Path]) -> None:
    before = {key: path.stat().st_mtime_ns for key, path in sample.items()}
    again = fetch_sample.ensure_sample()
    assert again == sample
    assert {key: path.stat().st_mtime_ns for key, path in again.items()} == before


def test_fresh_folder_is_written_without_leftovers(sample: dict[str, Path], tmp_path: Path) -> None:
    paths = fetch_sample.ensure_sample(tmp_path / "sample")
    assert sorted(p.name for p in (tmp_path / "sample").iterdir()) == sorted(p.name for p in paths.values())
    for key in ("l1c_13band", "farmvibes_12band", "product_mask"):
        assert paths[key].read_bytes() == sample[key].read_bytes()


def test_damaged_file_is_rebuilt(sample: dict[str, Path], tmp_path: Path) -> None:
    paths = fetch_sample.ensure_sample(tmp_path)
    paths["farmvibes_12band"].write_bytes(b"not a tiff")
    fetch_sample.ensure_sample(tmp_path)
    assert _open(paths["farmvibes_12band"]).RasterCount == 12
