"""The pickers: shared widgets, and the same pickers inside the real Processing dialogs."""

from __future__ import annotations

import pytest
from qgis.core import QgsApplication, QgsProcessingContext, QgsProject, QgsRasterLayer
from samples import L1C_STACK, require

from cloud_mask_improver.core.modelstore import catalogue
from cloud_mask_improver.ui.processing_wrappers import BandsWrapper, ModelListWrapper, ModelWrapper
from cloud_mask_improver.ui.widgets import BandMapping, ModelChecklist, ModelCombo

PICKERS = {
    "cloudmask:improvecloudmask": {"CLOUD_MODEL": ModelWrapper, "SHADOW_MODEL": ModelWrapper, "BANDS": BandsWrapper},
    "cloudmask:improvecloudmaskensemble": {
        "CLOUD_MODELS": ModelListWrapper,
        "SHADOW_MODEL": ModelWrapper,
        "BANDS": BandsWrapper,
    },
    "cloudmask:cloudprobability": {"MODEL_PATH": ModelWrapper, "BANDS": BandsWrapper},
    "cloudmask:ensemblecloudprobability": {"MODEL_PATHS": ModelListWrapper, "BANDS": BandsWrapper},
    "cloudmask:shadowprobability": {"MODEL_PATH": ModelWrapper, "BANDS": BandsWrapper},
}


@pytest.fixture
def s2_layer(qgis_new_project):
    require(L1C_STACK)
    layer = QgsRasterLayer(str(L1C_STACK), "S2")
    QgsProject.instance().addMapLayer(layer)
    yield layer
    QgsProject.instance().removeAllMapLayers()


@pytest.fixture
def toolbox_iface(qgis_iface, monkeypatch):
    """The stub iface, with the real browser model the Processing dialog asks it for."""
    from qgis.gui import QgsBrowserGuiModel

    model = QgsBrowserGuiModel()
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: model)
    return qgis_iface


def test_model_combo_gives_ids_and_paths(qgis_app):
    cards = catalogue.installed()
    combo = ModelCombo(cards)
    assert combo.value() == ""
    combo.setValue(cards[0].id)
    assert combo.value() == cards[0].id
    assert cards[0].licence in combo.toolTip()
    combo.setValue("/data/my model.onnx")
    assert combo.value() == "/data/my model.onnx"


def test_checklist_round_trips_a_comma_list(qgis_app):
    cards = [c for c in catalogue.installed() if c.has_cloud]
    checklist = ModelChecklist(cards)
    assert checklist.value() == ""  # none ticked: the algorithm takes all installed
    checklist.setValue(f" {cards[1].id} ,{cards[0].id}")
    assert set(checklist.value().split(",")) == {cards[0].id, cards[1].id}


def test_band_mapping_detects_and_takes_edits(qgis_app):
    mapping = BandMapping()
    mapping.set_raster_bands(["Band 1", "Band 2", "Band 3", "Band 4"])
    assert mapping.detected is None and "every raster band" in mapping.problem()
    mapping.setValue("blue,green,red,nir")
    assert mapping.value() == "B02,B03,B04,B08"
    assert mapping.problem(["B02", "B11"]).startswith("The chosen model needs band B11")
    mapping.set_raster_bands([""] * 12)  # the seed's stack, known by its count
    assert mapping.value() == "" and mapping.names()[-1] == "B12"


@pytest.mark.parametrize("algorithm_id", sorted(PICKERS))
def test_algorithms_name_the_pickers(provider, algorithm_id):
    algorithm = QgsApplication.processingRegistry().algorithmById(algorithm_id)
    for name, wrapper in PICKERS[algorithm_id].items():
        spec = algorithm.parameterDefinition(name).metadata()["widget_wrapper"]
        assert spec["class"] == f"{wrapper.__module__}.{wrapper.__name__}"
    shadow = algorithm.parameterDefinition("SHADOW_MODEL") or (
        algorithm.parameterDefinition("MODEL_PATH") if algorithm_id.endswith("shadowprobability") else None
    )
    if shadow is not None:
        assert shadow.metadata()["widget_wrapper"]["shadow"] is True


def test_the_toolbox_dialog_shows_the_pickers_and_runs_plain_strings(provider, s2_layer, toolbox_iface):
    from processing.gui.AlgorithmDialog import AlgorithmDialog

    algorithm = QgsApplication.processingRegistry().createAlgorithmById("cloudmask:improvecloudmask")
    dialog = AlgorithmDialog(algorithm)
    panel = dialog.mainWidget()
    wrappers = panel.wrappers
    assert isinstance(wrappers["CLOUD_MODEL"], ModelWrapper)
    assert isinstance(wrappers["CLOUD_MODEL"].widget, ModelCombo)
    shadow_combo = wrappers["SHADOW_MODEL"].widget
    shadow_ids = [shadow_combo.itemData(i) for i in range(1, shadow_combo.count())]
    assert shadow_ids == [c.id for c in catalogue.installed() if c.has_shadow]
    wrappers["S2_RASTER"].setParameterValue(s2_layer, QgsProcessingContext())
    bands = wrappers["BANDS"].widget
    assert isinstance(bands, BandMapping) and bands.names()[8] == "B8A"  # filled from the chosen raster
    wrappers["CLOUD_MODEL"].setValue("ukis-4b-l1c")
    params = panel.createProcessingParameters()
    assert params["CLOUD_MODEL"] == "ukis-4b-l1c"
    assert params["SHADOW_MODEL"] == "" and params["BANDS"] == ""
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())  # the dialog hands over the layer by id
    ok, message = algorithm.checkParameterValues(params, context)
    assert ok, message
    dialog.close()


def test_the_ensemble_dialog_has_a_checklist(provider, toolbox_iface):
    from processing.gui.AlgorithmDialog import AlgorithmDialog

    algorithm = QgsApplication.processingRegistry().createAlgorithmById("cloudmask:ensemblecloudprobability")
    dialog = AlgorithmDialog(algorithm)
    wrapper = dialog.mainWidget().wrappers["MODEL_PATHS"]
    assert isinstance(wrapper.widget, ModelChecklist)
    wrapper.setValue("ukis-6b-l2a,ukis-4b-l2a")
    wrapper.widget.setValue(wrapper.widget.value())
    assert set(wrapper.value().split(",")) == {"ukis-6b-l2a", "ukis-4b-l2a"}
    dialog.close()


def test_a_band_list_given_before_the_raster_is_kept(qgis_app):
    mapping = BandMapping()
    mapping.setValue("B02,B03,B04,B08")  # e.g. the dialog's last-used values, set before the layer
    assert mapping.value() == "B02,B03,B04,B08"
    mapping.set_raster_bands(["Band 1", "Band 2", "Band 3", "Band 4"])
    assert mapping.names() == ["B02", "B03", "B04", "B08"] and mapping.problem() == ""


def test_the_modeler_keeps_plain_strings(provider):
    class ModelerParametersDialog:  # the Processing plugin tells dialog kinds apart by class name
        pass

    algorithm = QgsApplication.processingRegistry().algorithmById("cloudmask:improvecloudmaskensemble")
    values = {
        "CLOUD_MODELS": "ukis-4b-l2a,ukis-6b-l2a",
        "SHADOW_MODEL": "/models/shadow.onnx",
        "BANDS": "B02,B03,B04,B08,B11,B12",
    }
    for name, value in values.items():
        wrapper_class = PICKERS["cloudmask:improvecloudmaskensemble"][name]
        wrapper = wrapper_class(algorithm.parameterDefinition(name), ModelerParametersDialog())
        wrapper.setValue(value)
        got = wrapper.value()
        assert sorted(got.split(",")) == sorted(value.split(",")), name


@pytest.mark.parametrize("algorithm_id", [*PICKERS, "cloudmask:mergecloudmasks", "cloudmask:prepares2product"])
def test_toolbox_labels_and_pickers_are_no_wider_than_qgis_own(provider, toolbox_iface, qtbot, algorithm_id):
    """QGIS does not wrap parameter labels, so none may be longer than QGIS's own widest row.

    One longer than that row ("Open output file after running algorithm") widens the panel,
    truncates every label and adds a horizontal scroll bar at the dialog's usual size."""
    from processing.gui.AlgorithmDialog import AlgorithmDialog
    from qgis.PyQt.QtWidgets import QCheckBox

    dialog = AlgorithmDialog(QgsApplication.processingRegistry().createAlgorithmById(algorithm_id))
    dialog.show()
    qtbot.waitExposed(dialog)
    own = max(
        box.minimumSizeHint().width()
        for box in dialog.findChildren(QCheckBox)
        if box.text().startswith("Open output file")
    )
    widths = {}
    for name, wrapper in dialog.mainWidget().wrappers.items():
        for part, widget in (("label", wrapper.wrappedLabel()), ("widget", wrapper.wrappedWidget())):
            if widget is not None:
                widths[f"{name} {part}"] = widget.minimumSizeHint().width()
    too_wide = {key: width for key, width in widths.items() if width > own}
    assert not too_wide, f"wider than {own} px: {too_wide}"
    dialog.close()
