"""The dialog's "Area to process" section: whole raster, map canvas extent or a polygon layer.

Polygons of selected features only, turned into the EXTENT / AREA parameters and honoured by
a real run."""

import pytest
from osgeo import gdal
from qgis.core import QgsFeature, QgsGeometry, QgsProject, QgsRasterLayer, QgsRectangle, QgsVectorLayer
from samples import L1C_STACK, PRODUCT_MASK, require

from cloud_mask_improver.ui.improve_dialog import ImproveDialog

ORIGIN_X, ORIGIN_Y = 290040.0, 4985040.0  # the sample's upper-left corner (EPSG:32633, 10 m)


@pytest.fixture
def project(qgis_new_project):
    require(L1C_STACK, PRODUCT_MASK)
    project = QgsProject.instance()
    project.addMapLayer(QgsRasterLayer(str(L1C_STACK), "S2 L1C sample"))
    fields = QgsVectorLayer("Polygon?crs=EPSG:32633&field=name:string", "fields", "memory")
    features = []
    for name, (col, row, size) in (("a", (100, 100, 30)), ("b", (300, 600, 50))):
        feature = QgsFeature(fields.fields())
        feature.setAttributes([name])
        x0, y1 = ORIGIN_X + col * 10, ORIGIN_Y - row * 10
        feature.setGeometry(QgsGeometry.fromRect(QgsRectangle(x0, y1 - size * 10, x0 + size * 10, y1)))
        features.append(feature)
    fields.dataProvider().addFeatures(features)
    project.addMapLayer(fields)
    yield project, fields
    project.removeAllMapLayers()


def test_whole_raster_adds_no_parameter_and_a_layer_is_required(project, qgis_iface):
    dialog = ImproveDialog(qgis_iface)
    assert "AREA" not in dialog.form.parameters() and "EXTENT" not in dialog.form.parameters()
    dialog.form.area.polygons.setChecked(True)
    dialog.form.area.layer.setLayer(None)
    assert "polygon layer" in dialog.form.problem()


def test_selected_polygon_limits_the_run(project, provider, qgis_iface, qtbot, tmp_path):
    _, fields = project
    fields.selectByIds([f.id() for f in fields.getFeatures() if f["name"] == "b"])
    dialog = ImproveDialog(qgis_iface)
    dialog.form.cloud_models.setValue("ukis-6b-l1c")
    dialog.form.area.polygons.setChecked(True)
    dialog.form.area.layer.setLayer(fields)
    dialog.form.area.selected_only.setChecked(True)
    dialog.form.output.setFilePath(str(tmp_path / "b.tif"))
    params = dialog.form.parameters()
    assert params["AREA"].selectedFeaturesOnly and "EXTENT" not in params
    run = dialog.run()
    assert run is not None
    qtbot.waitUntil(lambda: run.done, timeout=300_000)
    assert run.ok, run.error
    mask = gdal.Open(str(tmp_path / "b.tif"))
    assert (mask.RasterXSize, mask.RasterYSize) == (50, 50)
    assert mask.GetGeoTransform()[0] == ORIGIN_X + 3000
