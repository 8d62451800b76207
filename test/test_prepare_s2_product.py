"""A prepared stack, loaded into QGIS, shows in true colour (B04, B03, B02), not as bands 1-3."""

import pytest
from qgis.core import QgsMultiBandColorRenderer, QgsProject
from s2_product import build_product


@pytest.fixture
def project():
    yield QgsProject.instance()
    QgsProject.instance().removeAllMapLayers()


@pytest.mark.parametrize(("level", "extension"), [("L2A", "tif"), ("L1C", "vrt")])
def test_the_prepared_stack_loads_in_true_colour(provider, project, tmp_path, level, extension):
    import processing
    product = build_product(tmp_path / "products", level, "04.00", zipped=False)
    for run in range(2):  # every run, not only the first
        result = processing.runAndLoadResults("cloudmask:prepares2product", {
            "INPUT": str(product.metadata), "RESOLUTION": 60,
            "S2_RASTER": str(tmp_path / f"stack{run}.{extension}")})
        (stack,) = [lyr for lyr in project.mapLayers().values() if lyr.source() == result["S2_RASTER"]]
        renderer = stack.renderer()
        assert isinstance(renderer, QgsMultiBandColorRenderer)
        names = [stack.dataProvider().generateBandName(i) for i in range(1, stack.bandCount() + 1)]
        assert (renderer.redBand(), renderer.greenBand(), renderer.blueBand()) == (4, 3, 2), names
        assert renderer.redContrastEnhancement() is not None
