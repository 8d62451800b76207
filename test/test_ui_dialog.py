"""The plugin's "Improve cloud mask" dialog: defaults, parameters, a real run, cancelling."""

from __future__ import annotations

import pytest
from qgis.core import (
    Qgis,
    QgsApplication,
    QgsPalettedRasterRenderer,
    QgsProcessingContext,
    QgsProject,
    QgsRasterLayer,
    QgsSettings,
    QgsSingleBandPseudoColorRenderer,
)
from samples import L1C_STACK, PRODUCT_MASK, require

from cloud_mask_improver.core import models
from cloud_mask_improver.ui import improve_dialog
from cloud_mask_improver.ui.improve_dialog import ImproveDialog

S2_NAME = "S2 L1C sample"


@pytest.fixture(autouse=True)
def fresh_settings():
    QgsSettings().remove("cloud_mask_improver/dialog")
    yield
    QgsSettings().remove("cloud_mask_improver/dialog")


@pytest.fixture
def project(qgis_new_project):
    require(L1C_STACK, PRODUCT_MASK)
    project = QgsProject.instance()
    # A decoy first: a single-band raster that is no mask must not be picked as the S2 raster.
    for path, name in ((PRODUCT_MASK, "elevation"), (L1C_STACK, S2_NAME), (PRODUCT_MASK, "product_mask")):
        layer = QgsRasterLayer(str(path), name)
        assert layer.isValid()
        project.addMapLayer(layer)
    yield project
    project.removeAllMapLayers()


def wait_for(qtbot, run):
    qtbot.waitUntil(lambda: run.done, timeout=300_000)


def test_defaults_come_from_the_project(project, qgis_iface):
    dialog = ImproveDialog(qgis_iface)
    assert dialog.s2_layer.currentLayer().name() == S2_NAME
    assert dialog.mask_layer.currentLayer().name() == "product_mask"
    # The 13 band descriptions name the bands: detected, and the algorithm detects them alike.
    assert dialog.bands.names()[8] == "B8A" and dialog.bands.names()[10] == "B10"
    assert dialog.bands.value() == ""
    listed = [dialog.cloud_models.itemData(i) for i in range(1, dialog.cloud_models.count())]
    assert listed == [c.id for c in models.installed() if c.has_cloud]
    assert "ukis-4b-l1c" in listed
    # The tooltip carries the card facts a user chooses by.
    dialog.cloud_models.setValue("ukis-4b-l1c")
    assert "B02 B03 B04 B08" in dialog.cloud_models.toolTip() and "Apache-2.0" in dialog.cloud_models.toolTip()
    assert dialog.problem() == ""


def test_parameters_are_exactly_what_the_algorithm_takes(project, provider, qgis_iface, tmp_path):
    dialog = ImproveDialog(qgis_iface)
    dialog.cloud_models.setValue("ukis-4b-l1c")
    dialog.cloud_thr.setValue(0.4)
    dialog.resolution.setValue(30)
    dialog.dilation.setValue(2)
    dialog.want_cloud_p.setChecked(True)
    dialog.output.setFilePath(str(tmp_path / "mask.tif"))
    params = dialog.parameters()
    assert params == {
        "S2_RASTER": str(L1C_STACK), "PRODUCT_MASK": str(PRODUCT_MASK),
        "CLOUD_THR": 0.4, "SHADOW_THR": None, "IN_MEMORY": False,
        "CLOUD_MODEL": "ukis-4b-l1c", "SHADOW_MODEL": "", "BANDS": "",
        "PRODUCT_MASK_KIND": 0, "DILATION": 2, "MIN_AREA": 0, "OUTPUT_MODE": 0,
        "RESOLUTION": 30.0, "EXECUTION_PROVIDER": 0,
        "MASK": str(tmp_path / "mask.tif"), "CLOUD_PROBABILITY": "TEMPORARY_OUTPUT",
    }
    algorithm = QgsApplication.processingRegistry().algorithmById(improve_dialog.IMPROVE)
    names = {p.name() for p in algorithm.parameterDefinitions()}
    assert set(params) <= names
    ok, message = algorithm.checkParameterValues(params, QgsProcessingContext())
    assert ok, message


def test_ensemble_dialog_lists_checkable_models(project, provider, qgis_iface):
    dialog = ImproveDialog(qgis_iface, ensemble=True)
    assert dialog.cloud_models.ids() == [c.id for c in models.installed() if c.has_cloud]
    dialog.cloud_models.setValue("ukis-4b-l1c,ukis-6b-l1c")
    params = dialog.parameters()
    assert sorted(params["CLOUD_MODELS"].split(",")) == ["ukis-4b-l1c", "ukis-6b-l1c"]
    assert "CLOUD_MODEL" not in params
    algorithm = QgsApplication.processingRegistry().algorithmById(improve_dialog.IMPROVE_ENSEMBLE)
    assert set(params) <= {p.name() for p in algorithm.parameterDefinitions()}


def test_a_missing_band_is_a_clear_warning(project, qgis_iface):
    dialog = ImproveDialog(qgis_iface)
    dialog.cloud_models.setValue("ukis-4b-l1c")
    dialog.bands.table.cellWidget(7, 1).setCurrentText("")  # B08 no longer fed
    assert "B08" in dialog.problem()
    assert "B08" in dialog.bands.note.text()
    assert dialog.run() is None  # refuses to start
    assert "B08" in dialog.message.text()


def test_settings_are_remembered(project, provider, qgis_iface, qtbot, tmp_path):
    first = ImproveDialog(qgis_iface)
    first.cloud_models.setValue("ukis-4b-l1c")
    first.shadow_thr.setValue(0.35)
    first.resolution.setValue(30)
    first.min_area.setValue(7)
    first.save_settings()
    again = ImproveDialog(qgis_iface)
    assert again.cloud_models.value() == "ukis-4b-l1c"
    assert again.parameters()["SHADOW_THR"] == 0.35
    assert again.parameters()["RESOLUTION"] == 30.0
    assert again.parameters()["MIN_AREA"] == 7


def test_a_run_adds_a_styled_layer_and_reports_fractions(project, provider, qgis_iface, qtbot):
    qgis_iface.messageBar().clear_messages()
    dialog = ImproveDialog(qgis_iface)
    dialog.cloud_models.setValue("ukis-4b-l1c")
    dialog.resolution.setValue(30)  # the model's own resolution, and quick
    dialog.want_cloud_p.setChecked(True)
    before = set(project.mapLayers())
    run = dialog.run()
    assert run is not None
    wait_for(qtbot, run)
    assert run.ok, run.error
    assert dialog.progress.value() == 100
    added = [project.mapLayer(i) for i in set(project.mapLayers()) - before]
    mask = next(layer for layer in added if layer.name() == f"{S2_NAME} improved cloud mask")
    assert isinstance(mask.renderer(), QgsPalettedRasterRenderer)
    labels = {c.value: c.label for c in mask.renderer().classes()}
    assert labels[1].lower().startswith("cloud") and 2 in labels
    probability = next(layer for layer in added if layer.name() == f"{S2_NAME} cloud probability")
    assert isinstance(probability.renderer(), QgsSingleBandPseudoColorRenderer)
    notes = qgis_iface.messageBar().get_messages(Qgis.Success)
    assert any("clear" in n and "cloud" in n and "shadow" in n and "%" in n for n in notes), notes


def test_cancel_stops_the_run_and_leaves_nothing(project, provider, qgis_iface, qtbot, tmp_path):
    dialog = ImproveDialog(qgis_iface)
    dialog.cloud_models.setValue("ukis-6b-l1c")  # native resolution: many tiles, time to cancel
    target = tmp_path / "mask.tif"
    dialog.output.setFilePath(str(target))
    before = set(project.mapLayers())
    run = dialog.run()
    qtbot.waitUntil(lambda: run.feedback.progress() > 0 or run.done, timeout=120_000)
    assert not run.done, "the run ended before it could be cancelled"
    assert dialog.cancel_button.isEnabled()
    dialog.cancel_button.click()
    wait_for(qtbot, run)
    assert not run.ok
    assert "Cancelled" in dialog.message.text()
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []  # no partial file either
    assert set(project.mapLayers()) == before
    assert not dialog.cancel_button.isEnabled()


def test_an_engine_error_is_shown_in_plain_words(project, provider, qgis_iface, qtbot, tmp_path):
    qgis_iface.messageBar().clear_messages()
    dialog = ImproveDialog(qgis_iface)
    dialog.cloud_models.setValue(str(tmp_path / "nowhere.onnx"))
    run = dialog.run()
    wait_for(qtbot, run)
    assert not run.ok
    assert "nowhere.onnx" in run.error and "Traceback" not in run.error
    assert "nowhere.onnx" in dialog.message.text()
    assert any("nowhere.onnx" in m for m in qgis_iface.messageBar().get_messages(Qgis.Critical))


def test_without_the_algorithm_the_dialog_says_so(project, qgis_iface):
    QgsApplication.processingRegistry().removeProvider("cloudmask")
    dialog = ImproveDialog(qgis_iface)
    assert dialog.run() is None
    assert "cloudmask:improvecloudmask is not available" in dialog.message.text()
