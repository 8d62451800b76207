"""A prepared stack, loaded into QGIS, shows in true colour (B04, B03, B02), not as bands 1-3."""

import pytest
from qgis.core import QgsMultiBandColorRenderer
from s2_product import build_product


@pytest.mark.parametrize(("level", "extension"), [("L2A", "tif"), ("L1C", "vrt")])
def test_the_prepared_stack_loads_in_true_colour(provider, project, tmp_path, level, extension):
    import processing

    product = build_product(tmp_path / "products", level, "04.00", zipped=False)
    for run in range(2):  # every run, not only the first
        result = processing.runAndLoadResults(
            "cloudmask:prepares2product",
            {"INPUT": str(product.metadata), "RESOLUTION": 60, "S2_RASTER": str(tmp_path / f"stack{run}.{extension}")},
        )
        (stack,) = [lyr for lyr in project.mapLayers().values() if lyr.source() == result["S2_RASTER"]]
        renderer = stack.renderer()
        assert isinstance(renderer, QgsMultiBandColorRenderer)
        names = [stack.dataProvider().generateBandName(i) for i in range(1, stack.bandCount() + 1)]
        assert (renderer.redBand(), renderer.greenBand(), renderer.blueBand()) == (4, 3, 2), names
        assert renderer.redContrastEnhancement() is not None


@pytest.fixture(scope="module")
def unusable_zips(tmp_path_factory):
    """A half-downloaded product zip, and a whole zip of another satellite's product."""
    import zipfile

    folder = tmp_path_factory.mktemp("unusable")
    product = build_product(folder, "L2A", "04.00")
    half = folder / "half" / product.zip.name
    half.parent.mkdir()
    half.write_bytes(product.zip.read_bytes()[: product.zip.stat().st_size // 2])
    other = folder / "S1A_IW_GRDH_1SDV_20230612T051234_20230612T051259_048954_05E321_ABCD.zip"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("S1A_IW_GRDH_1SDV.SAFE/manifest.safe", "<xfdu/>")
    return {
        "damaged": (str(half), "is damaged or incomplete", "Download the product again"),
        "other": (str(other), "is not a Sentinel-2 Level-1C or Level-2A product", "leave this file out"),
    }


@pytest.mark.parametrize("kind", ["damaged", "other"])
@pytest.mark.parametrize(
    ("algorithm", "parameter", "output"),
    [("cloudmask:prepares2product", "INPUT", "S2_RASTER"), ("cloudmask:improvecloudmask", "S2_RASTER", "MASK")],
)
def test_an_unusable_zip_is_named_for_what_it_is(provider, tmp_path, unusable_zips, kind, algorithm, parameter, output):
    """A half-downloaded zip is said to be damaged and to need downloading again.

    Not 'not a Sentinel-2 product: give the .zip' (to a user who gave it) nor 'cannot be opened
    as a raster'."""
    import processing
    from qgis.core import QgsProcessingException

    source, problem, fix = unusable_zips[kind]
    with pytest.raises(QgsProcessingException) as refused:
        processing.run(algorithm, {parameter: source, output: str(tmp_path / "out.tif")})
    assert problem in str(refused.value) and fix in str(refused.value)
    assert list(tmp_path.iterdir()) == []


def test_a_stack_named_for_another_format_is_refused(provider, tmp_path):
    """The stack is a VRT or a GeoTIFF: 'stack.gpkg' was a GeoTIFF under a GeoPackage name."""
    import os

    import processing
    from qgis.core import QgsProcessingException

    product = build_product(tmp_path / "products", "L2A", "04.00", zipped=False)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(QgsProcessingException) as err:
        processing.run(
            "cloudmask:prepares2product",
            {"INPUT": str(product.metadata), "RESOLUTION": 60, "S2_RASTER": str(out / "stack.gpkg")},
        )
    assert "GeoPackage" in str(err.value) and ".tif name" in str(err.value)
    assert os.listdir(out) == []
