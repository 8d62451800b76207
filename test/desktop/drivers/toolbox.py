"""Driver: the plugin's algorithms and shipped models as a user runs them from the Processing toolbox.

Runs Improve cloud mask three times and Cloud probability twice through the
toolbox's own algorithm dialog (``processing.createAlgorithmDialog(...).runButton()``),
then the shipped model; validates both shipped models; opens a saved mask as a
new layer and counts its legend rows; runs Improve cloud mask as QGIS's batch
process. Each run must add exactly its styled layers and log no traceback.
"""

import sys
import time

import driverlib
import processing
from qgis.core import QgsApplication, QgsProject
from qgis.PyQt.QtWidgets import QTextEdit
from qgis.utils import iface, plugins

PACKAGE = "cloud_mask_improver"


def project_layers():
    return {layer.id(): layer for layer in QgsProject.instance().mapLayers().values()}


def describe(layer):
    renderer = layer.renderer()
    classes = len(renderer.classes()) if hasattr(renderer, "classes") else None
    return {
        "name": layer.name(),
        "source": layer.source(),
        "renderer": renderer.type() if renderer else "",
        "classes": classes,
    }


def dialog_log(dialog):
    """The text of the dialog's Log tab."""
    logs = [w.toPlainText() for w in dialog.findChildren(QTextEdit)]
    return "\n".join(logs)


def run_in_dialog(d, algorithm_id, parameters, label, timeout=120):
    """Open the toolbox dialog, press Run, wait for the run to end; what it added and logged."""
    before = project_layers()
    errors_before = len(d.tracebacks())
    dialog = processing.createAlgorithmDialog(algorithm_id, parameters)
    dialog.show()
    finished = []
    dialog.algorithmFinished.connect(lambda ok, results: finished.append((ok, results)))
    start = time.monotonic()
    dialog.runButton().click()
    # A run has ended when the dialog dropped its feedback object (success or failure).
    d.wait_until(lambda: getattr(dialog, "feedback", None) is None, timeout, f"{label} ends")
    seconds = time.monotonic() - start
    d.pump(0.3)
    d.screenshot(label)
    after = project_layers()
    added = [describe(after[i]) for i in after if i not in before]
    log = dialog_log(dialog)
    dialog.close()
    dialog.deleteLater()
    d.pump(0.1)
    return {
        "ok": bool(finished and finished[0][0]),
        "results": {k: str(v) for k, v in (finished[0][1] if finished else {}).items()},
        "added": added,
        "seconds": round(seconds, 2),
        "log_has_traceback": "Traceback" in log,
        "log_tail": log[-1500:],
        "new_tracebacks": d.tracebacks()[errors_before:],
    }


def check_run(d, label, run, expected):
    """``expected``: renderer type of each layer the run must add, in any order."""
    got = sorted(layer["renderer"] for layer in run["added"])
    d.check(f"{label}: succeeded", run["ok"], run["log_tail"])
    d.check(
        f"{label}: adds exactly its styled layers",
        got == sorted(expected),
        {"added": run["added"], "expected": expected},
    )
    d.check(
        f"{label}: no traceback",
        not run["log_has_traceback"] and not run["new_tracebacks"],
        run["new_tracebacks"] or run["log_tail"],
    )


def toolbox_runs(d, out):
    sample, product_mask = d.args["sample"], d.args["product_mask"]
    runs = {}
    for i in (1, 2, 3):
        label = f"improve_{i}"
        runs[label] = run_in_dialog(
            d,
            "cloudmask:improvecloudmask",
            {
                "S2_RASTER": sample,
                "PRODUCT_MASK": product_mask,
                "CLOUD_MODEL": d.args["model"],
                "SHADOW_MODEL": d.args["model"],
                "MASK": str(out / f"{label}.tif"),
            },
            label,
        )
        check_run(d, label, runs[label], ["paletted"])
    for i in (1, 2):
        label = f"cloud_probability_{i}"
        runs[label] = run_in_dialog(
            d,
            "cloudmask:cloudprobability",
            {"SENTINEL_RASTER": sample, "MODEL_PATH": d.args["model"], "CLOUD_PROBABILITY": str(out / f"{label}.tif")},
            label,
        )
        check_run(d, label, runs[label], ["singlebandpseudocolor"])
    # The shipped model after the toolbox runs (its merge step used to fail then).
    label = "shipped_model"
    runs[label] = run_in_dialog(
        d,
        "cloudmask:improvecloudmaskmodel",
        {
            "S2_RASTER": sample,
            "PRODUCT_MASK": product_mask,
            "CLOUD_MODEL": d.args["model"],
            "SHADOW_MODEL": d.args["model"],
            "merge:MASK": str(out / f"{label}.tif"),
        },
        label,
    )
    check_run(d, label, runs[label], ["paletted"])
    # A run that fails (a model that is not installed) must load nothing.
    label = "failing_run"
    runs[label] = run_in_dialog(
        d,
        "cloudmask:improvecloudmask",
        {"S2_RASTER": sample, "CLOUD_MODEL": "no-such-model", "MASK": str(out / f"{label}.tif")},
        label,
    )
    d.check(f"{label}: fails and adds nothing", not runs[label]["ok"] and not runs[label]["added"], runs[label])
    d.fact("runs", runs)


def batch_run(d, out):
    """QGIS's own "Run as Batch Process…" of Improve cloud mask: two rows, each a styled mask."""
    from processing.gui.BatchAlgorithmDialog import BatchAlgorithmDialog
    from qgis.PyQt.QtCore import QTimer
    from qgis.PyQt.QtWidgets import QApplication

    before = project_layers()
    errors_before = len(d.tracebacks())
    dialog = processing.createAlgorithmDialog("cloudmask:improvecloudmask", {})
    dialog.show()
    d.pump(0.3)
    done = {}

    def drive():  # runs inside the batch dialog's own modal loop (runAsBatch calls exec_)
        # (not activeModalWidget: without focus under Xvfb the dialog need not be the active window)
        batch = next(
            (w for w in QApplication.topLevelWidgets() if isinstance(w, BatchAlgorithmDialog) and w.isVisible()), None
        )
        if not isinstance(batch, BatchAlgorithmDialog):
            done["tries"] = done.get("tries", 0) + 1
            if done["tries"] < 100:  # not shown yet: look again shortly
                QTimer.singleShot(100, drive)
            else:
                done["dialog"] = type(batch).__name__
                if batch is not None:
                    batch.close()
            return
        done["dialog"] = type(batch).__name__
        try:
            panel = batch.mainWidget()
            context = processing.tools.dataobjects.createContext()
            while panel.batchRowCount() < 2:
                panel.addRow()
            columns = panel.parameter_to_column
            for row in range(2):
                for name, value in (
                    ("S2_RASTER", d.args["sample"]),
                    ("PRODUCT_MASK", d.args["product_mask"]),
                    ("CLOUD_MODEL", d.args["model"]),
                    ("SHADOW_MODEL", d.args["model"]),
                ):
                    panel.wrappers[row][columns[name]].setParameterValue(value, context)
                panel.tblParameters.cellWidget(row + 1, columns["MASK"]).setValue(str(out / f"batch_{row + 1}.tif"))
            panel.checkLoadLayersOnCompletion.setChecked(True)  # off by default: a user wanting the layers ticks it
            d.screenshot("batch_filled")
            batch.runButton().click()  # runs the rows one after the other
            # QGIS 3.22 runs the rows inside click(); from 3.24 on they run as background tasks
            # and click() returns at once, so wait, as a user watching the log does, for the
            # end (checked earlier, the rows still run; QGIS then also quits under them).
            d.wait_until(lambda: "Batch execution completed" in dialog_log(batch), 240, "the batch run ends")
            d.pump(0.5)
            d.screenshot("batch_done")
            done["log"] = dialog_log(batch)
        except Exception:  # noqa: BLE001 (recorded; the modal dialog must close or QGIS waits forever)
            import traceback

            done["error"] = traceback.format_exc()
        finally:
            batch.close()

    d.keep_modals = True  # the batch dialog is modal: driven from inside its loop
    try:
        QTimer.singleShot(200, drive)
        dialog.runAsBatchButton.click()  # "Run as Batch Process…"
    finally:
        d.keep_modals = False
    d.pump(0.3)
    after = project_layers()
    added = [describe(after[i]) for i in after if i not in before]
    run = {
        "dialog": done.get("dialog"),
        "added": added,
        "log_tail": done.get("log", "")[-1500:],
        "new_tracebacks": d.tracebacks()[errors_before:],
    }
    d.fact("batch", run)
    d.check(
        "batch: QGIS's batch dialog opens and runs",
        done.get("dialog") == "BatchAlgorithmDialog" and not done.get("error"),
        done,
    )
    d.check("batch: each row adds its styled mask", sorted(a["renderer"] for a in added) == ["paletted"] * 2, added)
    d.check(
        "batch: no traceback",
        "Traceback" not in done.get("log", "") and not run["new_tracebacks"],
        run["new_tracebacks"] or run["log_tail"],
    )


def validate_models(d):
    registry = QgsApplication.processingRegistry()
    found = {}
    for model_id in ("cloudmask:improvecloudmaskmodel", "cloudmask:improvefromproductmodel"):
        model = registry.createAlgorithmById(model_id)  # as the toolbox and modeler make it
        if not d.check(f"{model_id}: listed in the toolbox", model is not None):
            continue
        ok, issues = model.validate()
        found[model_id] = {"valid": ok, "issues": issues}
        d.check(f"{model_id}: valid in the modeler", ok, issues)
    d.fact("models", found)


def open_in_modeler(d):
    """The plugin's Raster menu entry opens a shipped model in QGIS's modeler, all steps valid."""
    from processing.modeler.ModelerDialog import ModelerDialog

    plugin = plugins[PACKAGE]
    actions = [a for a in plugin.actions if "in the modeler" in a.text()]
    d.check("modeler: one menu entry per shipped model", len(actions) == 2, [a.text() for a in plugin.actions])
    if not actions:
        return
    actions[0].trigger()
    d.wait_until(lambda: any(w.isVisible() for w in ModelerDialog.dlgs), 20, "the modeler opens")
    windows = [w for w in ModelerDialog.dlgs if w.isVisible()]
    if not d.check("modeler: opens", bool(windows)):
        return
    window = windows[-1]
    window.showMaximized()
    d.pump(1.0)
    d.screenshot("modeler")
    ok, issues = window.model().validate()
    d.fact(
        "modeler",
        {"model": window.model().displayName(), "valid": ok, "issues": issues, "file": window.model().sourceFilePath()},
    )
    d.check("modeler: the model is valid there", ok, issues)
    d.check(
        "modeler: saving never overwrites the shipped file",
        not window.model().sourceFilePath(),
        window.model().sourceFilePath(),
    )
    window.close()
    d.pump(0.3)


def saved_mask_legend(d, path):
    """Open a saved mask as a user does later (Layer > Add Raster Layer) and count its legend rows."""
    layer = iface.addRasterLayer(path, "saved mask")
    d.pump(0.5)
    if not d.check("saved mask opens", layer is not None and layer.isValid(), path):
        return
    view = iface.layerTreeView()
    node = QgsProject.instance().layerTreeRoot().findLayer(layer.id())
    rows = view.layerTreeModel().layerLegendNodes(node)
    labels = [row.data(0) for row in rows]
    d.fact("saved_mask_legend", labels)
    node.setExpanded(True)
    d.pump(0.3)
    d.screenshot("saved_mask_legend")
    d.check("saved mask: a legend row per class", 3 <= len([row for row in labels if "Band 1" not in row]) <= 4, labels)


def main(d):
    out = d.out
    iface.mainWindow().showMaximized()
    d.pump(0.5)
    d.fact("plugin_loaded", PACKAGE in plugins)
    plugin_paths = [p for p in sys.path if PACKAGE in p]
    d.fact("plugin_paths_on_sys_path", plugin_paths)
    from cloud_mask_improver.core.runtime import home

    d.fact("data_home", str(home.data_home()))
    d.screenshot("started")
    only = d.args.get("only")  # a subset of the steps, while working on one
    if not only:
        toolbox_runs(d, out)
    if not only or "batch" in only:
        batch_run(d, out)
    from cloud_mask_improver.algorithms import styling

    d.fact("stylers_still_held", styling.pending_stylers())
    if not only:
        validate_models(d)
        open_in_modeler(d)
        saved_mask_legend(d, str(out / "improve_1.tif"))


driverlib.start(main)
