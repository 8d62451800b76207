"""Driver: a profile whose data home has models but no onnxruntime, as a new user's has.

Opens the plugin's dialog (which must say at once that onnxruntime is missing and
offer to install it), installs onnxruntime with the model manager's button while
counting how often the event loop turns (a frozen GUI would not), then runs the
dialog on the sample.
"""

import driverlib
from qgis.core import QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QTimer
from qgis.utils import iface, plugins

from cloud_mask_improver.core.runtime import deps, home
from cloud_mask_improver.ui import tasks

try:
    from qgis.PyQt.QtGui import QAction  # Qt 6
except ImportError:
    from qgis.PyQt.QtWidgets import QAction  # Qt 5

PACKAGE = "cloud_mask_improver"


def open_dialog(d, key: str, action: str):
    found = next(a for a in iface.mainWindow().findChildren(QAction) if a.objectName() == action)
    found.trigger()
    d.pump(1.0)
    return plugins[PACKAGE].dialogs[key]


def main(d):
    iface.mainWindow().showMaximized()
    project = QgsProject.instance()
    stack = QgsRasterLayer(d.args["sample"], "S2 L1C sample")
    project.addMapLayer(stack)
    project.addMapLayer(QgsRasterLayer(d.args["product_mask"], "product_mask"))
    iface.mapCanvas().setExtent(stack.extent())
    d.fact("status_at_start", deps.runtime_status().problem)
    d.fact("python_dir", str(home.python_dir()))

    dialog = open_dialog(d, "improve", "CloudMaskImproverImprove")
    d.check("dialog says onnxruntime is missing at open", not dialog.runtime_box.isHidden(), dialog.runtime_note.text())
    d.screenshot("dialog_without_onnxruntime")
    manager = open_dialog(d, "models", "CloudMaskImproverManageModels")
    d.check("manager says onnxruntime is missing", not manager.runtime_box.isHidden(), manager.runtime_note.text())
    d.screenshot("manager_without_onnxruntime")

    finished = []
    tasks.EVENTS.runtime_finished.connect(lambda ok, text: finished.append((ok, text)))
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(100)
    manager.runtime_button.click()
    d.pump(1.5)
    d.screenshot("installing")
    d.wait_until(lambda: finished, 300, "onnxruntime installed")
    timer.stop()
    d.fact("install", finished)
    d.fact("event_loop_ticks_during_install", len(ticks))
    d.check("onnxruntime installed", bool(finished) and finished[0][0], finished)
    d.check("manager banner gone", manager.runtime_box.isHidden(), manager.message.text())
    d.screenshot("manager_after_install")
    manager.select("ukis-4b-l1c")
    d.pump(0.3)
    manager.grab().save(str(d.out / "manager_window.png"))  # docs/model_manager.png is a copy of it
    manager.close()
    d.check("dialog banner gone", dialog.runtime_box.isHidden(), dialog.message.text())
    d.fact("status_after_install", [deps.runtime_status().available, deps.runtime_status().version])

    dialog.form.cloud_models.setValue(d.args["model"])
    dialog.form.resolution.setValue(30)
    run = dialog.run()
    d.check("run starts", run is not None, dialog.message.text())
    d.wait_until(lambda: run.done, 240, "the dialog's run ends")
    d.check("run succeeds", run.ok, run.error)
    d.fact("message", dialog.message.text())
    d.screenshot("after_run")


driverlib.start(main)
