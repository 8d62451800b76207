"""Downloaded Sentinel-2 products in: .SAFE folders and their zips become the stack and the product mask.

The baseline's radiometric offset is applied. The products are built by test/s2_product.py
from the real sample scene (no download)."""

import time

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsProcessingException, QgsRasterLayer
from rasters import read
from s2_product import OFFSET, build_product, downsample, scl_20m
from samples import model_file

from cloud_mask_improver.core.bands import ALL_BANDS, FARMVIBES_BANDS
from cloud_mask_improver.core.sentinel2 import product as s2_product

L2A_PARAMS = {"CLOUD_MODEL": "ukis-6b-l2a", "SHADOW_MODEL": "ukis-6b-l2a"}


@pytest.fixture(scope="module")
def products(tmp_path_factory):
    folder = tmp_path_factory.mktemp("products")
    return {
        "new": build_product(folder, "L2A", "04.00"),
        "old": build_product(folder, "L2A", "02.14", zipped=False),
        "l1c": build_product(folder, "L1C", "04.00", zipped=False),
        "l1c_old": build_product(folder, "L1C", "02.14", zipped=False),
    }


def run(alg, params):
    import processing

    return processing.run(f"cloudmask:{alg}", params)


def metadata(path) -> dict:
    return gdal.Open(str(path)).GetMetadata()


def test_product_is_found_from_folder_zip_metadata_file_and_uri(products):
    new = products["new"]
    uri = f"SENTINEL2_L2A:/vsizip/{new.zip}/{new.safe.name}/MTD_MSIL2A.xml:20m:EPSG_32633"
    for source in (new.safe, new.zip, new.metadata, uri):
        product = s2_product.read_product(str(source))
        assert product.level == "L2A" and product.baseline == "04.00"
        assert product.bands == FARMVIBES_BANDS
        assert set(product.offsets.values()) == {-OFFSET}
    assert s2_product.read_product(str(products["old"].safe)).offsets == {}
    assert s2_product.parse_uri(uri)[1] == 20.0
    assert not s2_product.is_product(str(new.safe / "GRANULE"))


def test_gdal_sentinel2_driver_reads_the_fixture_as_a_product(products):
    """The fixture is faithful enough for GDAL's own SENTINEL2 driver, zip included."""
    names = [name for name, _ in gdal.Open(str(products["new"].zip)).GetSubDatasets()]
    assert any(n.startswith("SENTINEL2_L2A:/vsizip/") and n.endswith(":10m:EPSG_32633") for n in names)


@pytest.mark.parametrize("resolution", [10, 20, 60])
def test_prepared_stack_matches_the_product_pixels_band_for_band(products, tmp_path, resolution):
    new = products["new"]
    stack = tmp_path / "stack.tif"
    s2_product.prepare(str(new.zip), str(stack), None, resolution)
    ds = gdal.Open(str(stack))
    assert [ds.GetRasterBand(i + 1).GetDescription() for i in range(ds.RasterCount)] == list(FARMVIBES_BANDS)
    gt = ds.GetGeoTransform()
    assert (gt[0], gt[3], gt[1]) == (new.geotransform[0], new.geotransform[3], resolution)
    data = ds.ReadAsArray()
    assert data.shape == (12, 240 * 10 // resolution, 240 * 10 // resolution)
    exact = 0
    for i, band in enumerate(FARMVIBES_BANDS):
        if (band, resolution) in new.pixels:  # a file made for this resolution: taken as is
            assert np.array_equal(data[i], new.pixels[(band, resolution)]), band
            exact += 1
    assert exact == {10: 4, 20: 10, 60: 11}[resolution]  # no B08 at 20/60 m, no B09 at 20 m
    if resolution == 20:  # B08 averaged down from 10 m (rounding aside)
        expected = downsample(new.pixels[("B08", 10)].astype(np.float64), 2)
        assert np.abs(data[FARMVIBES_BANDS.index("B08")] - expected).max() <= 1
    if resolution == 10:  # 20 m bands bilinear up (the seed's way), aligned on the 10 m grid
        for band in ("B05", "B11", "B8A"):
            expected = bilinear_up2(new.pixels[(band, 20)].astype(np.float64))
            got = data[FARMVIBES_BANDS.index(band)].astype(np.float64)
            assert np.abs(got - expected)[2:-2, 2:-2].max() <= 1, band


def bilinear_up2(x: np.ndarray) -> np.ndarray:
    """2x bilinear upsampling between pixel centres.

    10 m pixel 2i sits at 20 m coordinate i - 0.25, pixel 2i + 1 at i + 0.25 (edges left out
    by the caller)."""

    def axis0(a):
        up = np.empty((a.shape[0] * 2,) + a.shape[1:])
        before, after = np.roll(a, 1, axis=0), np.roll(a, -1, axis=0)
        up[0::2], up[1::2] = 0.75 * a + 0.25 * before, 0.75 * a + 0.25 * after
        return up

    return axis0(axis0(x).T).T


def test_offset_recorded_for_baseline_04_and_not_for_02(products, tmp_path):
    s2_product.prepare(str(products["new"].zip), str(tmp_path / "new.vrt"))
    s2_product.prepare(str(products["old"].safe), str(tmp_path / "old.vrt"))
    new, old = metadata(tmp_path / "new.vrt"), metadata(tmp_path / "old.vrt")
    assert new["BOA_ADD_OFFSET"] == "-1000" and new["PROCESSING_BASELINE"] == "04.00"
    assert "BOA_ADD_OFFSET" not in old and old["PROCESSING_BASELINE"] == "02.14"
    assert new["PROCESSING_LEVEL"] == old["PROCESSING_LEVEL"] == "L2A"
    # Same reflectance, stored 1000 higher from 04.00 on (nodata 0 stays 0).
    a, b = read(tmp_path / "new.vrt").astype(np.int32), read(tmp_path / "old.vrt").astype(np.int32)
    assert np.array_equal(np.where(b > 0, b + OFFSET, 0), a)


def test_scl_lands_on_the_right_pixels(products, tmp_path):
    new = products["new"]
    for resolution, expected in (
        (10, np.kron(scl_20m(), np.ones((2, 2), np.uint8))),
        (20, scl_20m()),
        (60, new.pixels[("SCL", 60)]),
    ):
        mask = tmp_path / f"scl{resolution}.tif"
        s2_product.prepare(str(new.zip), str(tmp_path / f"stack{resolution}.vrt"), str(mask), resolution)
        assert np.array_equal(read(mask), expected), resolution
        assert metadata(mask)["PRODUCT_MASK_KIND"] == "scl"
        stack = gdal.Open(str(tmp_path / f"stack{resolution}.vrt"))
        assert gdal.Open(str(mask)).GetGeoTransform() == stack.GetGeoTransform()


def test_zip_and_folder_give_identical_results(products, tmp_path):
    new = products["new"]
    for name, source in (("zip", new.zip), ("folder", new.safe)):
        s2_product.prepare(str(source), str(tmp_path / f"{name}.tif"), str(tmp_path / f"{name}_scl.tif"), 20)
    assert np.array_equal(read(tmp_path / "zip.tif"), read(tmp_path / "folder.tif"))
    assert np.array_equal(read(tmp_path / "zip_scl.tif"), read(tmp_path / "folder_scl.tif"))
    # The zip is read in place: its VRT points into it, nothing was unpacked beside it.
    s2_product.prepare(str(new.zip), str(tmp_path / "zip.vrt"))
    assert "/vsizip/" in (tmp_path / "zip.vrt").read_text()


def test_l1c_product_gives_13_bands_radio_offset_and_its_cloud_mask(products, tmp_path):
    l1c = products["l1c"]
    _, mask = s2_product.prepare(str(l1c.safe), str(tmp_path / "l1c.tif"), str(tmp_path / "mask.tif"), 60)
    ds = gdal.Open(str(tmp_path / "l1c.tif"))
    assert [ds.GetRasterBand(i + 1).GetDescription() for i in range(ds.RasterCount)] == list(ALL_BANDS)
    assert ds.GetMetadataItem("RADIO_ADD_OFFSET") == "-1000" and ds.GetMetadataItem("PROCESSING_LEVEL") == "L1C"
    classi = l1c.pixels[("MSK_CLASSI", 60)]
    coded = read(mask)
    assert np.array_equal(coded == s2_product.SCL_CLOUD_HIGH, classi[0] == 1)
    assert np.array_equal(coded == s2_product.SCL_CIRRUS, (classi[1] == 1) & (classi[0] == 0))
    assert set(np.unique(coded)) <= {s2_product.SCL_UNCLASSIFIED, s2_product.SCL_CLOUD_HIGH, s2_product.SCL_CIRRUS}


def test_old_l1c_without_raster_mask_still_gives_the_stack(products, tmp_path):
    _, mask = s2_product.prepare(str(products["l1c_old"].safe), str(tmp_path / "s.vrt"), str(tmp_path / "m.vrt"))
    assert mask is None and not (tmp_path / "m.vrt").exists()
    assert "RADIO_ADD_OFFSET" not in metadata(tmp_path / "s.vrt")
    assert s2_product.product_mask_of(str(tmp_path / "s.vrt")) is None


def test_improve_on_an_l1c_product_uses_its_cloud_mask(provider, products, tmp_path):
    model_file("ukis-6b-l1c")
    out = tmp_path / "mask.tif"
    run(
        "improvecloudmask",
        {
            "S2_RASTER": str(products["l1c"].safe),
            "MASK": str(out),
            "CLOUD_MODEL": "ukis-6b-l1c",
            "SHADOW_MODEL": "ukis-6b-l1c",
        },
    )
    assert np.all(read(out)[:24] == 1)  # MSK_CLASSI's cirrus strip (top 4 rows at 60 m) is cloud


@pytest.fixture(scope="module")
def improved(provider, products, tmp_path_factory):
    """The improve algorithm on the 04.00 zip, the 04.00 folder and the 02.14 folder."""
    model_file("ukis-6b-l2a")
    out = tmp_path_factory.mktemp("improved")
    results = {}
    for name, source in (("zip", products["new"].zip), ("folder", products["new"].safe), ("old", products["old"].safe)):
        mask, cloud = out / f"{name}.tif", out / f"{name}_cloud.tif"
        run(
            "improvecloudmask",
            {"S2_RASTER": str(source), "MASK": str(mask), "CLOUD_PROBABILITY": str(cloud), **L2A_PARAMS},
        )
        results[name] = (read(mask), read(cloud))
    return results


def test_offset_is_applied_so_old_and_new_baselines_give_the_same_mask(improved, provider, products, tmp_path):
    mask, cloud = improved["zip"]
    assert np.array_equal(mask, improved["old"][0])
    assert np.allclose(cloud, improved["old"][1], atol=1e-5)
    assert 0.05 < np.mean(mask == 1) < 0.95
    # Without the recorded offset the same stack reads 0.1 brighter: the result changes.
    stack = tmp_path / "stack.vrt"
    s2_product.prepare(str(products["new"].zip), str(stack))
    stack.write_text(stack.read_text().replace('<MDI key="BOA_ADD_OFFSET">-1000</MDI>', ""))
    run(
        "improvecloudmask",
        {
            "S2_RASTER": str(stack),
            "MASK": str(tmp_path / "m.tif"),
            "CLOUD_PROBABILITY": str(tmp_path / "c.tif"),
            **L2A_PARAMS,
        },
    )
    assert np.abs(read(tmp_path / "c.tif") - cloud).max() > 0.05


def test_improve_reads_zip_and_folder_alike_and_defaults_to_the_scl(improved):
    assert np.array_equal(improved["zip"][0], improved["folder"][0])
    mask = improved["zip"][0]
    # The SCL's shadow block (20 m rows 90-110, cols 60-100) is flagged, though no model saw it.
    block = mask[180:220, 120:200]
    assert np.mean(block != 0) > 0.99 and np.mean(block == 2) > 0.3


def test_improve_accepts_a_sentinel2_subdataset_layer(improved, provider, products, tmp_path):
    new = products["new"]
    layer = QgsRasterLayer(f"SENTINEL2_L2A:/vsizip/{new.zip}/{new.safe.name}/MTD_MSIL2A.xml:10m:EPSG_32633", "product")
    assert layer.isValid()
    out = tmp_path / "mask.tif"
    run("improvecloudmask", {"S2_RASTER": layer, "MASK": str(out), **L2A_PARAMS})
    assert np.array_equal(read(out), improved["zip"][0])


def test_prepare_algorithm_cuts_to_the_extent_and_writes_vrt(provider, products, tmp_path):
    new = products["new"]
    x0, y0 = new.geotransform[0], new.geotransform[3]
    # 600 m x 400 m starting 1 km in, given a little off the 20 m grid: snapped outward.
    extent = f"{x0 + 1005},{x0 + 1600},{y0 - 1400},{y0 - 1005} [EPSG:32633]"
    result = run(
        "prepares2product",
        {
            "INPUT": str(new.metadata),
            "RESOLUTION": 20,
            "EXTENT": extent,
            "S2_RASTER": str(tmp_path / "cut.vrt"),
            "PRODUCT_MASK": str(tmp_path / "cut_scl.vrt"),
        },
    )
    stack, mask = gdal.Open(result["S2_RASTER"]), read(result["PRODUCT_MASK"])
    assert (stack.RasterXSize, stack.RasterYSize) == (30, 20)
    assert stack.GetGeoTransform()[0] == x0 + 1000 and stack.GetGeoTransform()[3] == y0 - 1000
    assert np.array_equal(mask, scl_20m()[50:70, 50:80])
    full = new.pixels[("B05", 20)]
    assert np.array_equal(stack.GetRasterBand(FARMVIBES_BANDS.index("B05") + 1).ReadAsArray(), full[50:70, 50:80])


def test_prepare_algorithm_refuses_what_is_not_a_product(provider, tmp_path):
    with pytest.raises(QgsProcessingException, match="not a Sentinel-2 product"):
        run("prepares2product", {"INPUT": str(tmp_path), "S2_RASTER": str(tmp_path / "s.tif")})


def test_product_chain_model_runs_end_to_end(improved, provider, products, tmp_path):
    assert "cloudmask:improvefromproductmodel" in {a.id() for a in provider.algorithms()}
    out = tmp_path / "model.tif"
    run(
        "improvefromproductmodel",
        {"INPUT": str(products["new"].zip), "RESOLUTION": 10, "improve:MASK": str(out), **L2A_PARAMS},
    )
    assert np.array_equal(read(out), improved["zip"][0])


def billion_laughs(levels: int = 12) -> str:
    """A metadata file whose entities expand 10**levels times (a few hundred bytes on disk)."""
    entities = ['<!ENTITY lol0 "lol">'] + [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, levels + 1)]
    return (
        '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n' + "\n".join(entities) + "\n]>\n"
        f'<n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd">'
        f"<PROCESSING_BASELINE>&lol{levels};</PROCESSING_BASELINE></n1:Level-2A_User_Product>"
    )


def external_entity(target) -> str:
    """A metadata file that asks the parser to paste another local file into it."""
    return (
        '<?xml version="1.0"?>\n'
        f'<!DOCTYPE product [<!ENTITY secret SYSTEM "file://{target}">]>\n'
        "<Level-2A_User_Product><PROCESSING_BASELINE>&secret;</PROCESSING_BASELINE>"
        "</Level-2A_User_Product>"
    )


@pytest.mark.parametrize("hostile", ["billion laughs", "external entity"])
def test_hostile_metadata_is_refused_at_once_with_a_clear_message(provider, tmp_path, hostile):
    """ESA's MTD files have no DTD; one that declares entities is refused before they expand."""
    secret = tmp_path / "secret.txt"
    secret.write_text("04.00 private words")
    folder = tmp_path / "S2A_MSIL2A_20240101T000000_N0400_R000_T33UUU_20240101T000000.SAFE"
    folder.mkdir()
    text = billion_laughs() if hostile == "billion laughs" else external_entity(secret)
    (folder / "MTD_MSIL2A.xml").write_text(text)
    out = tmp_path / "stack.tif"
    started = time.monotonic()
    with pytest.raises(QgsProcessingException, match="declares a document type") as refused:
        run("prepares2product", {"INPUT": str(folder), "S2_RASTER": str(out)})
    assert time.monotonic() - started < 5
    assert "Download the product again" in str(refused.value)
    assert "private words" not in str(refused.value)
    assert sorted(tmp_path.iterdir()) == sorted([secret, folder])  # no output, no leftovers


def test_metadata_parser_keeps_namespaced_tags_as_elementtree_spells_them(products):
    """The safe parser builds the same tree ElementTree's own parser would (tags, text, attributes)."""
    import xml.etree.ElementTree as ET  # the reference parser, on a trusted test file

    data = products["new"].metadata.read_bytes()
    ours = s2_product.parse_metadata_xml(data, "MTD_MSIL2A.xml")
    reference = ET.fromstring(data)  # nosec B314 - test fixture built by the test itself
    assert [(e.tag, (e.text or "").strip(), e.attrib) for e in ours.iter()] == [
        (e.tag, (e.text or "").strip(), e.attrib) for e in reference.iter()
    ]
