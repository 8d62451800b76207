"""The plugin's "Improve cloud mask" dialog: defaults, parameters, a real run, cancelling."""

from __future__ import annotations

import re

import numpy as np
import pytest
from qgis.core import (
    Qgis,
    QgsApplication,
    QgsLayerTreeRegistryBridge,
    QgsPalettedRasterRenderer,
    QgsProcessingContext,
    QgsProject,
    QgsRasterLayer,
    QgsSettings,
    QgsSingleBandPseudoColorRenderer,
    QgsTask,
)
from qgis.PyQt.QtGui import QGuiApplication
from samples import L1C_STACK, PRODUCT_MASK, require

from cloud_mask_improver.core.choices import optional_outputs
from cloud_mask_improver.core.modelstore import catalogue
from cloud_mask_improver.core.runtime import deps
from cloud_mask_improver.ui import improve_dialog, improve_form, tasks
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
    assert dialog.form.s2_layer.currentLayer().name() == S2_NAME
    assert dialog.form.mask_layer.currentLayer().name() == "product_mask"
    # The 13 band descriptions name the bands: detected, and the algorithm detects them alike.
    assert dialog.form.bands.names()[8] == "B8A" and dialog.form.bands.names()[10] == "B10"
    assert dialog.form.bands.value() == ""
    listed = [dialog.form.cloud_models.itemData(i) for i in range(1, dialog.form.cloud_models.count())]
    assert listed == [c.id for c in catalogue.installed() if c.has_cloud]
    assert "ukis-4b-l1c" in listed
    # The tooltip carries the card facts a user chooses by.
    dialog.form.cloud_models.setValue("ukis-4b-l1c")
    tooltip = dialog.form.cloud_models.toolTip()
    assert "B02 B03 B04 B08" in tooltip and "Apache-2.0" in tooltip
    assert dialog.form.problem() == ""


def test_parameters_are_exactly_what_the_algorithm_takes(project, provider, qgis_iface, tmp_path):
    dialog = ImproveDialog(qgis_iface)
    dialog.form.cloud_models.setValue("ukis-4b-l1c")
    dialog.form.cloud_thr.setValue(0.4)
    dialog.form.resolution.setValue(30)
    dialog.form.dilation.setValue(2)
    dialog.form.wanted["CLOUD_PROBABILITY"].setChecked(True)
    dialog.form.output.setFilePath(str(tmp_path / "mask.tif"))
    params = dialog.form.parameters()
    assert params == {
        "S2_RASTER": str(L1C_STACK),
        "PRODUCT_MASK": str(PRODUCT_MASK),
        "CLOUD_THR": 0.4,
        "SHADOW_THR": None,
        "IN_MEMORY": False,
        "CLOUD_MODEL": "ukis-4b-l1c",
        "SHADOW_MODEL": "",
        "BANDS": "",
        "PRODUCT_MASK_KIND": 0,
        "DILATION": 2,
        "MIN_AREA": 0,
        "OUTPUT_MODE": 0,
        "RESOLUTION": 30.0,
        "EXECUTION_PROVIDER": 0,
        "MASK": str(tmp_path / "mask.tif"),
        "CLOUD_PROBABILITY": "TEMPORARY_OUTPUT",
    }
    algorithm = QgsApplication.processingRegistry().algorithmById(improve_dialog.IMPROVE)
    names = {p.name() for p in algorithm.parameterDefinitions()}
    assert set(params) <= names
    ok, message = algorithm.checkParameterValues(params, QgsProcessingContext())
    assert ok, message


@pytest.mark.parametrize("ensemble", [False, True])
def test_the_dialog_shows_the_models_and_defaults_the_run_uses(project, provider, qgis_iface, ensemble, tmp_path):
    """One function picks the default models (``plan.choose_models``): the dialog says what the plan runs.

    What the dialog says will run is what the plan runs; its merge defaults are the algorithm's."""
    from cloud_mask_improver.core import pipeline
    from cloud_mask_improver.core.merge import MergeSettings

    form = ImproveDialog(qgis_iface, ensemble=ensemble).form
    shown = form.plan()
    request = pipeline.ImproveRequest(
        pipeline.ProbabilityRequest(str(L1C_STACK)), ensemble=ensemble, mask=str(tmp_path / "mask.tif")
    )
    planned = pipeline.plan(request).probability
    assert shown.cloud == planned.cloud_models and shown.shadow == planned.shadow_model
    assert len(shown.cloud) == (
        len([c for c in catalogue.installed() if c.has_cloud and c.level == "L1C"]) if ensemble else 1
    )
    params = form.parameters()
    settings = MergeSettings()
    assert (params["DILATION"], params["MIN_AREA"]) == (settings.dilation, settings.min_area)
    assert list(form.wanted) == [o.name for o in sorted(optional_outputs(ensemble), key=lambda o: not o.probability)]


def test_ukis_decides_by_the_most_likely_class_at_its_own_resolution_by_default(project, qgis_iface):
    """What Run will do is said before it runs.

    The UKIS model's own rule and resolution, with the raster's own resolution one step away
    and a threshold switching to thresholds."""
    form = ImproveDialog(qgis_iface).form
    form.cloud_models.setValue("ukis-6b-l1c")
    form.update_facts()
    assert "most likely class" in form.plan_note.text()
    assert form.cloud_thr.specialValueText() == "model default (most likely class)"
    assert form.resolution.specialValueText() == "the models' own (30 m)"
    assert form.parameters()["RESOLUTION"] is None
    form.resolution.stepUp()
    assert form.parameters()["RESOLUTION"] == 0.0 and "raster's own" in form.resolution.suffix()
    form.shadow_thr.setValue(0.3)
    assert "Thresholds: cloud 0.5, shadow 0.3" in form.plan_note.text()
    assert form.cloud_thr.specialValueText() == "model default (0.5)"


def test_ensemble_dialog_lists_checkable_models(project, provider, qgis_iface):
    dialog = ImproveDialog(qgis_iface, ensemble=True)
    assert dialog.form.cloud_models.ids() == [c.id for c in catalogue.installed() if c.has_cloud]
    dialog.form.cloud_models.setValue("ukis-4b-l1c,ukis-6b-l1c")
    params = dialog.form.parameters()
    assert sorted(params["CLOUD_MODELS"].split(",")) == ["ukis-4b-l1c", "ukis-6b-l1c"]
    assert "CLOUD_MODEL" not in params
    algorithm = QgsApplication.processingRegistry().algorithmById(improve_dialog.IMPROVE_ENSEMBLE)
    assert set(params) <= {p.name() for p in algorithm.parameterDefinitions()}


def test_a_missing_band_is_a_clear_warning(project, qgis_iface):
    dialog = ImproveDialog(qgis_iface)
    dialog.form.cloud_models.setValue("ukis-4b-l1c")
    dialog.form.bands.table.cellWidget(7, 1).setCurrentText("")  # B08 no longer fed
    assert "B08" in dialog.form.problem()
    assert "B08" in dialog.form.bands.note.text()
    assert dialog.run() is None  # refuses to start
    assert "B08" in dialog.message.text()


def test_settings_are_remembered(project, provider, qgis_iface, qtbot, tmp_path):
    first = ImproveDialog(qgis_iface)
    first.form.cloud_models.setValue("ukis-4b-l1c")
    first.form.shadow_thr.setValue(0.35)
    first.form.resolution.setValue(30)
    first.form.min_area.setValue(7)
    first.form.save_settings()
    again = ImproveDialog(qgis_iface)
    assert again.form.cloud_models.value() == "ukis-4b-l1c"
    assert again.form.parameters()["SHADOW_THR"] == 0.35
    assert again.form.parameters()["RESOLUTION"] == 30.0
    assert again.form.parameters()["MIN_AREA"] == 7


def quick_run(dialog, qtbot, model="ukis-4b-l1c"):
    dialog.form.cloud_models.setValue(model)
    dialog.form.resolution.setValue(30)  # the model's own resolution, and quick
    run = dialog.run()
    assert run is not None, dialog.message.text()
    wait_for(qtbot, run)
    assert run.ok, run.error
    return run


def test_a_run_adds_the_mask_on_top_styled_and_named(project, provider, qgis_iface, qtbot, monkeypatch):
    root = project.layerTreeRoot()
    s2_node = next(n for n in root.children() if n.name() == S2_NAME)
    # The S2 stack is selected in the layer panel: QGIS would insert new layers above it, under the
    # product mask. The result must come out on top all the same.
    project.layerTreeRegistryBridge().setLayerInsertionPoint(
        QgsLayerTreeRegistryBridge.InsertionPoint(root, root.children().index(s2_node))
    )
    pushed = []
    bar = qgis_iface.messageBar()
    real_push = bar.pushMessage
    monkeypatch.setattr(bar, "pushMessage", lambda *args, **kw: pushed.append(args) or real_push(*args, **kw))

    def task_complete_notice(_task_id, status):  # what QGIS does when a task of 5 s or more ends
        if status == QgsTask.TaskStatus.Complete:
            bar.pushMessage("Task complete", "Improve cloud mask", Qgis.MessageLevel.Info, 5)

    QgsApplication.taskManager().statusChanged.connect(task_complete_notice)
    dialog = ImproveDialog(qgis_iface)
    dialog.form.wanted["CLOUD_PROBABILITY"].setChecked(True)
    dialog.form.wanted["SOURCE"].setChecked(True)
    before = set(project.mapLayers())
    try:
        run = quick_run(dialog, qtbot)
        qtbot.waitUntil(lambda: any(a[0] == "Task complete" for a in pushed))
        qtbot.wait(50)
    finally:
        QgsApplication.taskManager().statusChanged.disconnect(task_complete_notice)
    assert dialog.progress.value() == 100
    added = [project.mapLayer(i) for i in set(project.mapLayers()) - before]
    mask = root.children()[0].layer()
    assert mask in added and "improved cloud mask" in mask.name()
    assert mask.name().startswith(S2_NAME) and "ukis-4b-l1c" in mask.name()
    assert re.search(r"\d\d:\d\d:\d\d", mask.name()), mask.name()
    assert isinstance(mask.renderer(), QgsPalettedRasterRenderer)
    colours = {c.value: c.color for c in mask.renderer().classes()}
    labels = {c.value: c.label for c in mask.renderer().classes()}
    assert labels[0] == "clear" and colours[0].alpha() == 0  # the image shows through
    assert labels[1].lower().startswith("cloud") and colours[1].alpha() == 255 and 2 in labels
    source = root.children()[1].layer()  # which source flagged each pixel, under the mask
    assert source in added and "which source flagged each pixel" in source.name()
    assert isinstance(source.renderer(), QgsPalettedRasterRenderer)
    assert {c.label for c in source.renderer().classes()} >= {"product mask and model", "product mask only"}
    probability = root.children()[2].layer()
    assert probability in added and "cloud probability" in probability.name()
    assert isinstance(probability.renderer(), QgsSingleBandPseudoColorRenderer)
    # The fractions are the last word in the message bar, above QGIS's "Task complete".
    last = pushed[-1]
    assert last[0] == "Cloud Mask Improver" and all(w in last[1] for w in ("clear", "cloud", "shadow", "%"))
    assert last[1] == run.fraction_note() == dialog.message.text()
    assert "points were added by the models" in last[1]

    again = quick_run(dialog, qtbot)
    assert again.layers[0].name() != mask.name()  # two runs, two names
    assert root.children()[0].layer() is again.layers[0]
    # The results are named like masks, yet the next dialog still picks the product's own mask.
    assert ImproveDialog(qgis_iface).form.mask_layer.currentLayer().name() == "product_mask"


def test_cancel_stops_the_run_and_leaves_nothing(project, provider, qgis_iface, qtbot, tmp_path):
    dialog = ImproveDialog(qgis_iface)
    dialog.form.cloud_models.setValue("ukis-6b-l1c")
    dialog.form.resolution.setValue(0)  # the raster's own resolution: many tiles, time to cancel
    target = tmp_path / "mask.tif"
    dialog.form.output.setFilePath(str(target))
    before = set(project.mapLayers())
    logged = []
    log = QgsApplication.messageLog()

    def record(text, tag, level):
        logged.append((text, tag, level))

    log.messageReceived.connect(record)
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
    qtbot.wait(100)
    log.messageReceived.disconnect(record)
    # Cancelling is what the user asked for: said once, as information, never as an error.
    cancelled = [(text, level) for text, _tag, level in logged if "ancel" in text or level != Qgis.MessageLevel.Info]
    assert cancelled == [("Cancelled: no output was written.", Qgis.MessageLevel.Info)], logged


def test_an_engine_error_is_shown_in_plain_words(project, provider, qgis_iface, qtbot, tmp_path):
    qgis_iface.messageBar().clear_messages()
    dialog = ImproveDialog(qgis_iface)
    dialog.form.cloud_models.setValue(str(tmp_path / "nowhere.onnx"))
    run = dialog.run()
    wait_for(qtbot, run)
    assert not run.ok
    assert "nowhere.onnx" in run.error and "Traceback" not in run.error
    assert "nowhere.onnx" in dialog.message.text()
    assert any("nowhere.onnx" in m for m in qgis_iface.messageBar().get_messages(Qgis.Critical))


def test_the_same_layer_as_raster_and_mask_is_a_warning(project, qgis_iface):
    dialog = ImproveDialog(qgis_iface)
    assert dialog.form.layer_note.isHidden()
    dialog.form.mask_layer.setLayer(dialog.form.s2_layer.currentLayer())
    assert not dialog.form.layer_note.isHidden()
    assert "same raster" in dialog.form.layer_note.text()
    assert dialog.run() is None
    assert "same raster" in dialog.message.text()


def test_the_dialog_fits_the_screen_with_every_fold_out_open(project, qgis_iface, qtbot):
    """A laptop leaves ~700 px of height; the offscreen screen here is smaller still (800x600)."""
    area = QGuiApplication.primaryScreen().availableGeometry()
    for ensemble in (False, True):
        dialog = ImproveDialog(qgis_iface, ensemble=ensemble)
        dialog.move(area.x() + 10, area.y() - 300)  # asked to open with its title bar above the screen
        dialog.show()
        qtbot.waitExposed(dialog)
        qtbot.wait(350)
        assert area.contains(dialog.frameGeometry()), (dialog.frameGeometry(), area)
        dialog.form.band_box.setCollapsed(False)
        dialog.form.advanced.setCollapsed(False)
        qtbot.wait(350)
        assert area.contains(dialog.frameGeometry()), (dialog.frameGeometry(), area)
        assert dialog.form.facts_area.height() <= improve_form.FACTS_HEIGHT  # the cards scroll
        assert dialog.scroll.verticalScrollBar().maximum() > 0  # the form scrolls instead of growing
        dialog.close()


def test_the_ensemble_dialog_shows_what_will_run_before_it_runs(project, provider, qgis_iface, qtbot):
    dialog = ImproveDialog(qgis_iface, ensemble=True)
    form = dialog.form
    assert form.cloud_models.value() == ""  # none ticked: the algorithm runs every L1C cloud model
    expected = catalogue.default_cloud_models("L1C", ensemble=True)
    assert len(expected) > 1
    plan = form.plan()
    assert plan.cloud == tuple(expected)
    titles = [form.cards[m].title for m in expected]
    assert f"all {len(expected)} installed L1C cloud models" in form.plan_note.text()
    assert all(t in form.plan_note.text() for t in titles)
    thresholds = [form.cards[m].cloud_threshold for m in expected]
    mean = sum(thresholds) / len(thresholds)
    assert form.cloud_thr.specialValueText() == f"model default ({mean:.4g})"
    form.resolution.setValue(30)
    run = dialog.run()
    wait_for(qtbot, run)
    assert run.ok, run.error
    log = run.feedback.textLog()
    used = float(re.search(r"Thresholds: cloud ([0-9.]+)", log).group(1))
    assert used == pytest.approx(plan.cloud_threshold, abs=1e-5)
    assert f"Cloud models: {', '.join(expected)};" in log


def test_a_model_installed_while_the_dialog_is_open_is_offered_at_once(qgis_iface, tmp_path, qgis_new_project):
    from onnx_models import conv1x1_model, write_card

    from cloud_mask_improver.ui.model_manager import ModelManagerDialog

    models_dir = tmp_path / "models"
    dialog = ImproveDialog(qgis_iface, models_dir=models_dir)
    assert "No model is installed" in dialog.form.model_facts.text()
    onnx_file = conv1x1_model(tmp_path / "mine.onnx", np.eye(3, 4), np.zeros(3), tile=64)
    write_card(tmp_path / "mine.json", id="my-model", title="My model", level="L1C")
    manager = ModelManagerDialog(models_dir=models_dir, cache=tmp_path / "cache")
    assert manager.import_file(onnx_file) is not None
    listed = [dialog.form.cloud_models.itemData(i) for i in range(dialog.form.cloud_models.count())]
    assert "my-model" in listed
    assert "My model" in dialog.form.model_facts.text()
    assert "No model is installed" not in dialog.form.model_facts.text()


def test_an_error_does_not_sit_under_the_last_runs_full_bar(project, provider, qgis_iface, qtbot, tmp_path):
    dialog = ImproveDialog(qgis_iface)
    quick_run(dialog, qtbot)
    assert dialog.progress.value() == 100 and not dialog.progress.isHidden()
    dialog.form.cloud_models.setValue(str(tmp_path / "nowhere.onnx"))
    run = dialog.run()
    wait_for(qtbot, run)
    assert not run.ok and "nowhere.onnx" in dialog.message.text()
    assert dialog.progress.isHidden()


def test_missing_onnxruntime_is_said_when_the_dialog_opens(project, qgis_iface, monkeypatch):
    missing = deps.RuntimeStatus(False, problem="onnxruntime is not installed for QGIS's Python.")
    monkeypatch.setattr(deps, "runtime_status", lambda: missing)
    started = []
    monkeypatch.setattr(tasks, "install_runtime", lambda: started.append(1))
    dialog = ImproveDialog(qgis_iface)
    assert not dialog.runtime_box.isHidden()
    assert "onnxruntime" in dialog.runtime_note.text()
    assert dialog.runtime_button.text() == "Install onnxruntime" and dialog.runtime_button.isEnabled()
    assert dialog.run() is None  # refused before anything starts, with the way out
    assert "Install onnxruntime" in dialog.message.text()
    dialog.runtime_button.click()
    assert started == [1]
    monkeypatch.setattr(deps, "runtime_status", lambda: deps.RuntimeStatus(True, "1.32.0"))
    tasks.EVENTS.runtime_finished.emit(True, "onnxruntime 1.32.0 installed.")
    assert dialog.runtime_box.isHidden()
    assert "Ready to run" in dialog.message.text()


def test_a_runtime_that_does_not_load_gets_its_fix_not_the_install_button(project, qgis_iface, monkeypatch):
    """Installing again cannot fix a library that does not load (Windows' VC++ runtime): no button."""
    broken = deps.RuntimeStatus(
        False,
        "1.20.1",
        "onnxruntime 1.20.1 is installed but Windows could not load its "
        "library (…). Install the latest Microsoft Visual C++ Redistributable (x64)…",
        installable=False,
    )
    monkeypatch.setattr(deps, "runtime_status", lambda: broken)
    dialog = ImproveDialog(qgis_iface)
    assert not dialog.runtime_box.isHidden() and dialog.runtime_button.isHidden()
    assert "Visual C++ Redistributable" in dialog.runtime_note.text()


def test_without_the_algorithm_the_dialog_says_so(project, qgis_iface):
    # Last in the module: it unregisters the module's provider.
    QgsApplication.processingRegistry().removeProvider("cloudmask")
    dialog = ImproveDialog(qgis_iface)
    assert dialog.run() is None
    assert "cloudmask:improvecloudmask is not available" in dialog.message.text()


def test_with_no_sentinel2_stack_in_the_project_the_raster_box_stays_empty(qgis_new_project, qgis_iface):
    """After Project > New with only our own mask and a one-band raster, the raster box stays empty.

    The dialog asks for the Sentinel-2 raster instead of offering either (a run would then fail
    on missing bands)."""
    require(PRODUCT_MASK)
    project = QgsProject.instance()
    for name in ("elevation", "Improved cloud mask"):
        layer = QgsRasterLayer(str(PRODUCT_MASK), name)
        project.addMapLayer(layer)
    layer.setCustomProperty(improve_form.RESULT_PROPERTY, True)
    try:
        form = ImproveDialog(qgis_iface).form
        assert form.s2_layer.currentLayer() is None
        assert form.problem() == "Choose the Sentinel-2 raster."
        assert form.s2_layer.exceptedLayerList() == [layer]
    finally:
        project.removeAllMapLayers()
