"""Only the area that matters: EXTENT and AREA on Improve cloud mask (and its ensemble).

They give the area's bounding box with the same pixels as a whole-scene run of the real
sample scene."""

import numpy as np
import processing
import pytest
from osgeo import gdal
from qgis.core import (
    QgsFeature,
    QgsGeometry,
    QgsProcessingException,
    QgsProcessingFeatureSourceDefinition,
    QgsProject,
    QgsRectangle,
    QgsVectorLayer,
)
from samples import L1C_STACK, PRODUCT_MASK, require

ORIGIN_X, ORIGIN_Y = 290040.0, 4985040.0  # the sample's upper-left corner (EPSG:32633, 10 m)
BASE = {"CLOUD_MODEL": "ukis-6b-l1c", "SHADOW_MODEL": "ukis-6b-l1c"}


def _rect(col, row, width, height):
    x0, y1 = ORIGIN_X + col * 10, ORIGIN_Y - row * 10
    return QgsRectangle(x0, y1 - height * 10, x0 + width * 10, y1)


@pytest.fixture(scope="module")
def whole(provider, tmp_path_factory):
    require(L1C_STACK, PRODUCT_MASK)
    out = tmp_path_factory.mktemp("whole") / "mask.tif"
    processing.run(
        "cloudmask:improvecloudmask",
        {"S2_RASTER": str(L1C_STACK), "PRODUCT_MASK": str(PRODUCT_MASK), "MASK": str(out), **BASE},
    )
    return gdal.Open(str(out)).ReadAsArray()


def test_extent_of_one_square_kilometre_equals_the_whole_scene_there(whole, tmp_path):
    out = tmp_path / "field.tif"
    r = _rect(300, 400, 100, 100)
    extent = f"{r.xMinimum()},{r.xMaximum()},{r.yMinimum()},{r.yMaximum()} [EPSG:32633]"
    result = processing.run(
        "cloudmask:improvecloudmask",
        {"S2_RASTER": str(L1C_STACK), "PRODUCT_MASK": str(PRODUCT_MASK), "EXTENT": extent, "MASK": str(out), **BASE},
    )
    mask = gdal.Open(str(out))
    assert mask.GetGeoTransform()[:4] == (r.xMinimum(), 10.0, 0.0, r.yMaximum())
    part = mask.ReadAsArray()
    assert part.shape == (100, 100) and np.array_equal(part, whole[400:500, 300:400])
    valid = part[part != 255]
    assert result["CLEAR_FRACTION"] == pytest.approx(np.mean(valid == 0))


def test_selected_polygon_with_nodata_outside_gives_its_fractions(whole, tmp_path):
    layer = QgsVectorLayer("Polygon?crs=EPSG:32633&field=name:string", "fields", "memory")
    features = []
    for name, rect in (("a", _rect(100, 100, 40, 30)), ("b", _rect(400, 700, 20, 20))):
        feature = QgsFeature(layer.fields())
        feature.setAttributes([name])
        feature.setGeometry(QgsGeometry.fromRect(rect))
        features.append(feature)
    layer.dataProvider().addFeatures(features)
    QgsProject.instance().addMapLayer(layer)
    try:
        layer.selectByIds([f.id() for f in layer.getFeatures() if f["name"] == "a"])
        out = tmp_path / "a.tif"
        result = processing.run(
            "cloudmask:improvecloudmaskensemble",
            {
                "S2_RASTER": str(L1C_STACK),
                "PRODUCT_MASK": str(PRODUCT_MASK),
                "CLOUD_MODELS": "ukis-6b-l1c",
                "SHADOW_MODEL": "ukis-6b-l1c",
                "MASK": str(out),
                "NODATA_OUTSIDE_AREA": True,
                "AREA": QgsProcessingFeatureSourceDefinition(layer.id(), selectedFeaturesOnly=True),
            },
        )
    finally:
        QgsProject.instance().removeMapLayer(layer.id())
    part = gdal.Open(str(out)).ReadAsArray()
    expected = whole[100:130, 100:140]
    assert part.shape == (30, 40) and np.array_equal(part, expected)  # the polygon is its own box here
    valid = expected[expected != 255]
    assert result["CLOUD_FRACTION"] == pytest.approx(np.mean(valid == 1))


def test_an_extent_outside_the_raster_is_refused_with_a_reason(provider, tmp_path):
    require(L1C_STACK)
    with pytest.raises(QgsProcessingException, match="does not overlap the Sentinel-2 raster"):
        processing.run(
            "cloudmask:improvecloudmask",
            {"S2_RASTER": str(L1C_STACK), "EXTENT": "0,10,0,10 [EPSG:32633]", "MASK": str(tmp_path / "m.tif"), **BASE},
        )
    assert not list(tmp_path.iterdir())
