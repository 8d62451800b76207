"""Driver: session paths a user takes beyond a single run (``args["steps"]`` picks them).

- ``reload``: the plugin disabled and enabled again, as the Plugin Manager does
  (``unloadPlugin``, then ``loadPlugin`` and ``startPlugin``), then reloaded as Plugin
  Reloader does (``reloadPlugin``); after each, one menu, one toolbar button, one provider,
  and the toolbox algorithm still runs and styles its mask.
- ``cancel``: the dialog's run cancelled from QGIS's task manager, then run again.
- ``extent``: the toolbox algorithm with its extent taken from a map canvas in another CRS
  than the raster's.
- ``save``: a toolbox run and a dialog run, then the project saved (``args["project"]``).
- ``reopen``: that project opened in a new QGIS session.
- ``fresh``: a profile without models or onnxruntime: the dialog and the toolbox say what to do.
"""

import os
import time

import driverlib
import processing
import qgis.utils
from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
)
from qgis.PyQt.QtCore import QCoreApplication, QEvent, QTimer
from qgis.PyQt.QtWidgets import QTextEdit
from qgis.utils import iface, plugins

try:
    from qgis.PyQt.QtGui import QAction  # Qt 6
except ImportError:
    from qgis.PyQt.QtWidgets import QAction  # Qt 5

PACKAGE = "cloud_mask_improver"
MENU = "Cloud Mask Improver"
IMPROVE = "cloudmask:improvecloudmask"


# -- what a user sees of the plugin


def wiring() -> dict:
    """How many of the plugin's menus, menu entries, toolbar buttons and providers QGIS shows."""
    # What the plugin handed to deleteLater goes when control returns to QGIS's event loop;
    # the driver runs inside one of its calls, so let those deletions happen now.
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    submenus = [a for a in iface.rasterMenu().actions() if a.text().replace("&", "") == MENU]
    entries = [a.text() for m in submenus if m.menu() for a in m.menu().actions()]
    buttons = [a for a in iface.pluginToolBar().actions() if a.objectName() == "CloudMaskImproverImprove"]
    actions = [a for a in iface.mainWindow().findChildren(QAction) if a.objectName().startswith("CloudMaskImprover")]
    providers = [p for p in QgsApplication.processingRegistry().providers() if p.id() == "cloudmask"]
    algorithms = [a.id() for p in providers for a in p.algorithms()]
    return {
        "submenus": len(submenus),
        "entries": entries,
        "toolbar_buttons": len(buttons),
        "live_actions": len(actions),
        "providers": len(providers),
        "algorithms": len(algorithms),
    }


def dialog_log(dialog) -> str:
    return "\n".join(w.toPlainText() for w in dialog.findChildren(QTextEdit))


def toolbox_run(d, algorithm_id, parameters, label, prepare=None, timeout=180):
    """The toolbox's dialog for ``algorithm_id``: Run pressed, the run waited for."""
    before = set(QgsProject.instance().mapLayers())
    errors_before = len(d.tracebacks())
    dialog = processing.createAlgorithmDialog(algorithm_id, parameters)
    dialog.show()
    d.pump(0.3)
    if prepare:
        prepare(dialog)
    finished = []
    dialog.algorithmFinished.connect(lambda ok, results: finished.append((ok, results)))
    dialog.runButton().click()
    d.wait_until(lambda: getattr(dialog, "feedback", None) is None, timeout, f"{label} ends")
    d.pump(0.3)
    d.screenshot(label)
    layers = QgsProject.instance().mapLayers()
    added = [layers[i] for i in layers if i not in before]
    log = dialog_log(dialog)
    dialog.close()
    dialog.deleteLater()
    d.pump(0.1)
    return {
        "ok": bool(finished and finished[0][0]),
        "results": {k: str(v) for k, v in (finished[0][1] if finished else {}).items()},
        "added": [(a.name(), a.renderer().type() if a.renderer() else "") for a in added],
        "log_tail": log[-2000:],
        "new_tracebacks": d.tracebacks()[errors_before:],
    }


def improve_parameters(d, output):
    return {
        "S2_RASTER": d.args["sample"],
        "PRODUCT_MASK": d.args["product_mask"],
        "CLOUD_MODEL": d.args["model"],
        "SHADOW_MODEL": d.args["model"],
        "RESOLUTION": 30,
        "MASK": output,
    }


def check_toolbox_run(d, label, run):
    d.check(f"{label}: succeeds", run["ok"], run["log_tail"])
    d.check(f"{label}: adds one styled mask", [r for _, r in run["added"]] == ["paletted"], run["added"])
    d.check(
        f"{label}: no traceback",
        "Traceback" not in run["log_tail"] and not run["new_tracebacks"],
        run["new_tracebacks"] or run["log_tail"],
    )


# -- steps


def step_reload(d):
    expected = wiring()
    d.fact("wiring_at_start", expected)
    d.check(
        "reload: one menu, one button, one provider at start",
        expected["submenus"] == 1 and expected["toolbar_buttons"] == 1 and expected["providers"] == 1,
        expected,
    )
    cycles = {}
    for cycle in ("disable_enable", "reload"):
        if cycle == "disable_enable":  # the Plugin Manager's check box, off then on
            qgis.utils.unloadPlugin(PACKAGE)
            d.pump(0.5)
            cycles["while_disabled"] = wiring()
            d.check(
                "reload: nothing left while disabled",
                cycles["while_disabled"]
                == {
                    "submenus": 0,
                    "entries": [],
                    "toolbar_buttons": 0,
                    "live_actions": 0,
                    "providers": 0,
                    "algorithms": 0,
                },
                cycles["while_disabled"],
            )
            d.screenshot("reload_disabled")
            qgis.utils.loadPlugin(PACKAGE)
            qgis.utils.startPlugin(PACKAGE)
        else:  # Plugin Reloader
            qgis.utils.reloadPlugin(PACKAGE)
        d.pump(0.5)
        cycles[cycle] = wiring()
        d.check(
            f"reload: after {cycle} as at start", cycles[cycle] == expected, {"now": cycles[cycle], "start": expected}
        )
        run = toolbox_run(d, IMPROVE, improve_parameters(d, str(d.out / f"{cycle}.tif")), f"reload_{cycle}_run")
        cycles[f"{cycle}_run"] = run
        check_toolbox_run(d, f"reload: {cycle} run", run)
        # The plugin's own dialog after the cycle (a dialog of the old plugin object must be gone).
        action = next(
            a for a in iface.mainWindow().findChildren(QAction) if a.objectName() == "CloudMaskImproverImprove"
        )
        action.trigger()
        d.pump(1.0)
        dialog = plugins[PACKAGE].dialogs.get("improve")
        d.check(f"reload: {cycle} dialog opens", dialog is not None and dialog.isVisible())
        d.screenshot(f"reload_{cycle}_dialog")
        if dialog is not None:
            dialog.close()
    d.fact("reload", cycles)


def step_reload_running(d):
    """Plugin Reloader pressed while the dialog's run goes on, with the model manager open."""
    project = QgsProject.instance()
    stack = QgsRasterLayer(d.args["large"], "large sample")
    project.addMapLayer(stack)
    iface.setActiveLayer(stack)
    plugins[PACKAGE].improve()
    plugins[PACKAGE].manage_models()
    d.pump(1.0)
    dialog = plugins[PACKAGE].dialogs["improve"]
    dialog.form.s2_layer.setLayer(stack)
    dialog.form.cloud_models.setValue(d.args["model"])
    dialog.form.resolution.setValue(10)
    layers_before = set(project.mapLayers())
    run = dialog.run()
    if not d.check("reload running: run starts", run is not None, dialog.message.text()):
        return
    output = run.parameters["MASK"]
    d.wait_until(lambda: dialog.progress.value() >= 5 or run.done, 120, "the run makes progress")
    d.fact("reload_running_progress", dialog.progress.value())
    qgis.utils.reloadPlugin(PACKAGE)
    d.wait_until(lambda: not QgsApplication.taskManager().activeTasks(), 60, "the run's task ends")
    d.pump(1.0)
    d.screenshot("reload_running_after")
    d.fact("reload_running_wiring", wiring())
    d.check("reload running: wired once", wiring()["providers"] == 1 and wiring()["toolbar_buttons"] == 1, wiring())
    d.check(
        "reload running: the old run adds nothing",
        set(project.mapLayers()) == layers_before,
        [lyr.name() for lyr in project.mapLayers().values()],
    )
    d.fact("reload_running_output_left", os.path.exists(output))
    d.check("reload running: no half-written mask left", not os.path.exists(output), output)
    plugins[PACKAGE].improve()
    d.pump(1.0)
    dialog = plugins[PACKAGE].dialogs["improve"]
    dialog.form.s2_layer.setLayer(stack)
    dialog.form.cloud_models.setValue(d.args["model"])
    dialog.form.resolution.setValue(30)
    again = dialog.run()
    if d.check("reload running: a new run starts", again is not None, dialog.message.text()):
        d.wait_until(lambda: again.done, 240, "the new run ends")
        d.check("reload running: the new run succeeds and adds its mask", again.ok and bool(again.layers), again.error)
    d.screenshot("reload_running_again")
    dialog.close()


def step_quit_running(d):
    """Project > Exit QGIS while the dialog's run goes on (QGIS asks to cancel the tasks: yes)."""
    from qgis.PyQt.QtWidgets import QApplication, QMessageBox

    project = QgsProject.instance()
    stack = QgsRasterLayer(d.args["large"], "large sample")
    project.addMapLayer(stack)
    plugins[PACKAGE].improve()
    d.pump(1.0)
    dialog = plugins[PACKAGE].dialogs["improve"]
    dialog.form.s2_layer.setLayer(stack)
    dialog.form.cloud_models.setValue(d.args["model"])
    dialog.form.resolution.setValue(10)
    run = dialog.run()
    if not d.check("quit running: run starts", run is not None, dialog.message.text()):
        return
    d.wait_until(lambda: dialog.progress.value() >= 5 or run.done, 120, "the run makes progress")
    d.fact("quit_running_progress", dialog.progress.value())
    project.setDirty(False)
    d.keep_modals = True
    asked = []

    def answer():
        box = next((w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox) and w.isVisible()), None)
        if box is None:
            QTimer.singleShot(200, answer)
            return
        asked.append(box.text())
        d.fact("quit_running_question", asked)
        d.write()
        d.screenshot("quit_running_question")
        box.button(QMessageBox.StandardButton.Yes).click() if box.button(
            QMessageBox.StandardButton.Yes
        ) else box.accept()

    QTimer.singleShot(300, answer)
    d.result["finished"] = True  # QGIS exits inside the next call: what follows is its shutdown
    d.write()
    iface.actionExit().trigger()


def step_new_project(d):
    """Project > New while the dialog is open (and while its run goes on), then Run again."""
    project = QgsProject.instance()
    stack = QgsRasterLayer(d.args["large"], "large sample")
    project.addMapLayer(stack)
    plugins[PACKAGE].improve()
    d.pump(1.0)
    dialog = plugins[PACKAGE].dialogs["improve"]
    dialog.form.s2_layer.setLayer(stack)
    dialog.form.cloud_models.setValue(d.args["model"])
    dialog.form.resolution.setValue(10)
    run = dialog.run()
    d.check("new project: run starts", run is not None, dialog.message.text())
    d.wait_until(lambda: dialog.progress.value() >= 5 or run.done, 120, "the run makes progress")
    project.setDirty(False)
    iface.newProject(False)
    d.pump(0.5)
    d.fact("new_project_layers_right_after", [lyr.name() for lyr in project.mapLayers().values()])
    d.wait_until(lambda: run.done, 240, "the run ends")
    d.pump(0.5)
    d.fact(
        "new_project_run",
        {
            "ok": run.ok,
            "cancelled": run.cancelled,
            "error": run.error,
            "layers": [lyr.name() for lyr in project.mapLayers().values()],
            "message": dialog.message.text(),
        },
    )
    d.screenshot("new_project_after_run")
    d.fact("new_project_s2_layer", str(dialog.form.s2_layer.currentLayer()))
    again = dialog.run()
    d.fact("new_project_run_again", [again is not None, dialog.message.text()])
    d.check(
        "new project: Run without a raster says what to do",
        again is None and dialog.message.text(),
        dialog.message.text(),
    )
    d.screenshot("new_project_run_again")
    if again is not None:
        d.wait_until(lambda: again.done, 120, "the run ends")
    dialog.close()


def step_cancel(d):
    project = QgsProject.instance()
    stack = QgsRasterLayer(d.args["large"], "large sample")
    project.addMapLayer(stack)
    iface.setActiveLayer(stack)
    iface.mapCanvas().setExtent(stack.extent())
    plugins[PACKAGE].improve()
    d.pump(1.0)
    dialog = plugins[PACKAGE].dialogs["improve"]
    dialog.form.s2_layer.setLayer(stack)
    dialog.form.cloud_models.setValue(d.args["model"])
    dialog.form.resolution.setValue(10)
    layers_before = set(project.mapLayers())
    first = dialog.run()
    if not d.check("cancel: first run starts", first is not None, dialog.message.text()):
        return
    output = first.parameters["MASK"]
    d.wait_until(lambda: dialog.progress.value() >= 5 or first.done, 120, "the first run makes progress")
    d.screenshot("cancel_running")
    active = QgsApplication.taskManager().activeTasks()
    d.fact("tasks_listed", [t.description() for t in active])
    # The task manager's cancel button (status bar > tasks > the x beside the task): QgsTask.cancel().
    for task in active:
        task.cancel()
    start = time.monotonic()
    d.wait_until(lambda: first.done, 60, "the cancelled run ends")
    d.fact("cancel_seconds", round(time.monotonic() - start, 2))
    d.pump(0.5)
    d.screenshot("cancel_cancelled")
    d.check(
        "cancel: the run stops as cancelled",
        first.done and first.cancelled and not first.ok,
        {"done": first.done, "cancelled": first.cancelled, "ok": first.ok, "error": first.error},
    )
    d.check("cancel: the dialog says so", "Cancelled" in dialog.message.text(), dialog.message.text())
    d.check(
        "cancel: no layer added",
        set(project.mapLayers()) == layers_before,
        [lyr.name() for lyr in project.mapLayers().values()],
    )
    d.check("cancel: no mask left on disk", not os.path.exists(output), output)
    d.check("cancel: the Cancel button is off again", not dialog.cancel_button.isEnabled())
    second = dialog.run()
    if not d.check("cancel: second run starts", second is not None, dialog.message.text()):
        return
    d.wait_until(lambda: second.done, 240, "the second run ends")
    d.pump(1.0)
    d.screenshot("cancel_second_run")
    d.check("cancel: second run succeeds", second.ok, second.error)
    d.check(
        "cancel: second run adds its mask",
        bool(second.layers) and second.layers[0].isValid(),
        [lyr.name() for lyr in project.mapLayers().values()],
    )
    d.fact("cancel_message", dialog.message.text())
    dialog.close()


def canvas_on_quarter(d, crs, label):
    """The sample in a project (and canvas) in ``crs``, zoomed to the raster's top-left quarter."""
    project = QgsProject.instance()
    stack = QgsRasterLayer(d.args["sample"], "S2 L1C sample")
    project.addMapLayer(stack)
    d.pump(0.3)  # the first layer sets the project's CRS: only then set the canvas's own
    project.setCrs(crs)
    d.pump(0.3)
    full = stack.extent()
    quarter = QgsRectangle(full.xMinimum(), full.center().y(), full.center().x(), full.yMaximum())
    to_canvas = QgsCoordinateTransform(stack.crs(), project.crs(), project)
    canvas = iface.mapCanvas()
    canvas.setExtent(to_canvas.transformBoundingBox(quarter))
    canvas.refresh()
    d.pump(1.0)
    d.fact(
        f"{label}_canvas_crs",
        [canvas.mapSettings().destinationCrs().authid(), canvas.mapSettings().destinationCrs().description()],
    )
    d.fact("raster_crs", stack.crs().authid())
    return stack, quarter


def check_written_area(d, label, path, quarter):
    """The mask's valid pixels cover the quarter (in the raster's CRS), and not far beyond it."""
    import numpy as np
    from osgeo import gdal

    ds = gdal.Open(path)
    if not d.check(f"{label}: mask written", ds is not None, path):
        return
    gt = ds.GetGeoTransform()
    data = ds.GetRasterBand(1).ReadAsArray()
    rows, cols = np.nonzero(data != 255)
    written = (
        [
            gt[0] + cols.min() * gt[1],
            gt[3] + (rows.max() + 1) * gt[5],
            gt[0] + (cols.max() + 1) * gt[1],
            gt[3] + rows.min() * gt[5],
        ]
        if rows.size
        else []
    )
    box = [quarter.xMinimum(), quarter.yMinimum(), quarter.xMaximum(), quarter.yMaximum()]
    d.fact(f"{label}_bounds", {"written": written, "quarter": box, "size": [ds.RasterXSize, ds.RasterYSize]})
    px, slack = abs(gt[1]), 3 * 256 * abs(gt[1])  # the tiles around the area, never the scene's far side
    ok = (
        bool(written)
        and written[0] <= box[0] + px
        and written[3] >= box[3] - px
        and written[2] >= box[2] - px
        and written[1] <= box[1] + px
        and written[2] <= box[2] + slack
        and written[1] >= box[1] - slack
    )
    d.check(
        f"{label}: the mask covers the canvas's area, in the raster's CRS", ok, {"written": written, "quarter": box}
    )


def canvas_crs(d):
    """The canvas's CRS: ``args["canvas_crs"]`` (an authid, or a PROJ string for a custom CRS)."""
    text = d.args.get("canvas_crs", "EPSG:4326")
    return QgsCoordinateReferenceSystem.fromProj(text) if text.startswith("+") else QgsCoordinateReferenceSystem(text)


def step_extent(d):
    """The canvas in another CRS than the raster: the extent the toolbox takes from the canvas."""
    _, quarter = canvas_on_quarter(d, canvas_crs(d), "extent")
    values = {}

    def from_canvas(dialog):
        wrapper = dialog.mainWidget().wrappers["EXTENT"]
        widget = wrapper.wrappedWidget()
        if hasattr(widget, "setOutputExtentFromCurrent"):  # QgsExtentWidget: "Use Current Map Canvas Extent"
            widget.setOutputExtentFromCurrent()
        else:  # processing's ExtentSelectionPanel
            widget.useCanvasExtent()
        d.pump(0.3)
        values["EXTENT"] = str(wrapper.parameterValue())
        d.screenshot("extent_dialog")

    output = str(d.out / "extent.tif")
    run = toolbox_run(d, IMPROVE, improve_parameters(d, output), "extent_run", prepare=from_canvas)
    d.fact("extent_value", values.get("EXTENT"))
    check_toolbox_run(d, "extent: run", run)
    check_written_area(d, "extent", output, quarter)


def step_extent_dialog(d):
    """The same with the plugin's dialog and its "Map canvas extent" choice."""
    stack, quarter = canvas_on_quarter(d, canvas_crs(d), "extent dialog")
    plugins[PACKAGE].improve()
    d.pump(1.0)
    dialog = plugins[PACKAGE].dialogs["improve"]
    dialog.form.s2_layer.setLayer(stack)
    dialog.form.cloud_models.setValue(d.args["model"])
    dialog.form.resolution.setValue(30)
    dialog.form.area.extent.setChecked(True)
    d.fact("extent_dialog_parameters", {k: str(v) for k, v in dialog.form.area.parameters().items()})
    run = dialog.run()
    if not d.check("extent dialog: run starts", run is not None, dialog.message.text()):
        return
    d.wait_until(lambda: run.done, 240, "the dialog run ends")
    d.pump(0.5)
    d.screenshot("extent_dialog_run")
    d.check("extent dialog: run succeeds", run.ok, run.error)
    if run.ok:
        check_written_area(d, "extent dialog", run.results["MASK"], quarter)
    dialog.close()


def step_save(d):
    project = QgsProject.instance()
    stack = QgsRasterLayer(d.args["sample"], "S2 L1C sample")
    project.addMapLayer(stack)
    iface.mapCanvas().setExtent(stack.extent())
    run = toolbox_run(d, IMPROVE, improve_parameters(d, d.args["saved_mask"]), "save_toolbox_run")
    check_toolbox_run(d, "save: toolbox run", run)
    plugins[PACKAGE].improve()
    d.pump(1.0)
    dialog = plugins[PACKAGE].dialogs["improve"]
    dialog.form.s2_layer.setLayer(stack)
    dialog.form.cloud_models.setValue(d.args["model"])
    dialog.form.resolution.setValue(30)
    if d.args.get("dialog_output"):
        dialog.form.output.setFilePath(d.args["dialog_output"])
    dialog_run = dialog.run()
    if d.check("save: dialog run starts", dialog_run is not None, dialog.message.text()):
        d.wait_until(lambda: dialog_run.done, 240, "the dialog run ends")
        d.check("save: dialog run succeeds", dialog_run.ok, dialog_run.error)
        d.fact("dialog_mask_source", dialog_run.results.get("MASK"))
    dialog.close()
    d.pump(0.5)
    d.fact("saved_layers", {lyr.name(): [lyr.source(), lyr.renderer().type()] for lyr in project.mapLayers().values()})
    d.screenshot("save_before_saving")
    d.check("save: project written", project.write(d.args["project"]), project.error())


def legend_of(layer) -> list:
    view = iface.layerTreeView()
    node = QgsProject.instance().layerTreeRoot().findLayer(layer.id())
    node.setExpanded(True)
    return [row.data(0) for row in view.layerTreeModel().layerLegendNodes(node)]


def step_reopen(d):
    project = QgsProject.instance()
    iface.addProject(d.args["project"])
    d.pump(2.0)
    layers = {lyr.name(): lyr for lyr in project.mapLayers().values()}
    d.fact(
        "reopened_layers",
        {
            n: [lyr.source(), lyr.isValid(), lyr.renderer().type() if lyr.renderer() else ""]
            for n, lyr in layers.items()
        },
    )
    masks = [lyr for lyr in layers.values() if "improved cloud mask" in lyr.name().lower()]  # toolbox's and dialog's
    d.check("reopen: the masks come back", len(masks) >= 1, list(layers))
    legends = {}
    for layer in masks:
        legends[layer.name()] = legend_of(layer)
        d.check(f"reopen: {layer.name()} valid", layer.isValid(), layer.source())
        d.check(
            f"reopen: {layer.name()} keeps its paletted style",
            layer.renderer() is not None and layer.renderer().type() == "paletted",
            layer.renderer().type() if layer.renderer() else None,
        )
        classes = [row for row in legends[layer.name()] if "Band" not in str(row)]
        d.check(
            f"reopen: {layer.name()} legend has the classes",
            {"clear", "cloud", "cloud shadow"} <= set(classes),
            legends[layer.name()],
        )
    d.fact("reopened_legends", legends)
    d.fact(
        "plugin_result_property", {lyr.name(): lyr.customProperty("cloud_mask_improver/result", None) for lyr in masks}
    )
    iface.mapCanvas().zoomToFullExtent()
    d.pump(2.0)
    d.screenshot("reopened")


def step_fresh(d):
    """No models and no onnxruntime in this profile's data home."""
    project = QgsProject.instance()
    stack = QgsRasterLayer(d.args["sample"], "S2 L1C sample")
    project.addMapLayer(stack)
    iface.mapCanvas().setExtent(stack.extent())
    plugins[PACKAGE].improve()
    d.pump(1.0)
    dialog = plugins[PACKAGE].dialogs["improve"]
    d.screenshot("fresh_dialog")
    d.fact("fresh_dialog_runtime_note", dialog.runtime_note.text() if not dialog.runtime_box.isHidden() else "")
    d.fact("fresh_dialog_plan", dialog.form.plan_note.text())
    d.fact("fresh_dialog_message", dialog.message.text())
    run = dialog.run()
    d.fact("fresh_dialog_run_message", dialog.message.text())
    d.check("fresh: the dialog does not start a run", run is None, dialog.message.text())
    d.screenshot("fresh_dialog_run")
    dialog.close()
    result = toolbox_run(
        d,
        IMPROVE,
        {"S2_RASTER": d.args["sample"], "CLOUD_MODEL": d.args.get("fresh_model", ""), "MASK": str(d.out / "fresh.tif")},
        "fresh_toolbox_run",
        prepare=lambda dialog: d.screenshot("fresh_toolbox_open"),
    )
    d.fact("fresh_toolbox", result)
    d.check(
        "fresh: the toolbox run fails without a traceback",
        not result["ok"] and "Traceback" not in result["log_tail"] and not result["new_tracebacks"],
        result["log_tail"],
    )
    # Where the message sends the user must be where the plugin's entry is.
    manager = menu_path("CloudMaskImproverManageModels")
    d.fact("manage_models_menu", manager)
    said = [m["text"] for m in d.result["messages"] if m["tag"] == "Processing" and m["level"] >= 1]
    d.fact("fresh_toolbox_message", said)
    d.check(
        "fresh: the toolbox message names the menu that holds Manage models…",
        len(manager) == 3 and any(" > ".join(manager) in text for text in said),
        {"menu": manager, "said": said},
    )


def menu_path(name: str) -> list:
    """The menu titles down to the action named ``name`` (e.g. Raster, Cloud Mask Improver, Manage models…)."""

    def walk(menu, trail):
        for action in menu.actions():
            if action.objectName() == name:
                return trail + [action.text()]
            if action.menu() is not None:
                found = walk(action.menu(), trail + [action.text().replace("&", "")])
                if found:
                    return found
        return None

    return walk(iface.mainWindow().menuBar(), []) or []


def step_profile(d):
    """What this profile's session uses: its own data home, models and onnxruntime, nothing of another's."""
    import sys

    from cloud_mask_improver.core.modelstore import catalogue
    from cloud_mask_improver.core.runtime import deps, home

    d.fact("profile_data_home", str(home.data_home()))
    d.fact("profile_plugin_paths", [p for p in sys.path if PACKAGE in p])
    status = deps.runtime_status()
    d.fact("profile_runtime", [status.available, status.version, status.problem])
    d.fact("profile_models", sorted(card.id for card in catalogue.installed()))
    plugins[PACKAGE].improve()
    d.pump(1.0)
    dialog = plugins[PACKAGE].dialogs["improve"]
    d.fact("profile_dialog_runtime_box", not dialog.runtime_box.isHidden())
    d.fact("profile_dialog_plan", dialog.form.plan_note.text())
    d.screenshot("profile_dialog")
    dialog.close()
    if d.args.get("profile_run"):
        stack = QgsRasterLayer(d.args["sample"], "S2 L1C sample")
        QgsProject.instance().addMapLayer(stack)
        run = toolbox_run(d, IMPROVE, improve_parameters(d, str(d.out / "profile.tif")), "profile_run")
        check_toolbox_run(d, "profile: run", run)


STEPS = {
    "new_project": step_new_project,
    "quit_running": step_quit_running,
    "profile": step_profile,
    "reload_running": step_reload_running,
    "reload": step_reload,
    "cancel": step_cancel,
    "extent": step_extent,
    "extent_dialog": step_extent_dialog,
    "save": step_save,
    "reopen": step_reopen,
    "fresh": step_fresh,
}


def main(d):
    iface.mainWindow().showMaximized()
    d.pump(0.5)
    d.fact("qgis_version", qgis.utils.Qgis.QGIS_VERSION)
    for step in d.args["steps"]:
        STEPS[step](d)
        d.write()
    d.fact("warnings", [m for m in d.result["messages"] if m["level"] >= 1])


driverlib.start(main)
