"""Driver: the plugin's own "Improve cloud mask" dialog as a user opens and runs it.

Opens the dialog from the plugin's menu action on the harness's screen (1366x768),
checks that all of it is on the screen with its fold-outs closed and open, runs
it on the sample with the stack selected in the layer panel, and records where
the result went, its name, its style and what the message bar shows. Then opens
the ensemble dialog and records what it says will run.
"""

import driverlib
import processing
from qgis.core import QgsProject, QgsRasterLayer
from qgis.PyQt.QtWidgets import QApplication, QScrollArea
from qgis.utils import iface, plugins

try:
    from qgis.PyQt.QtGui import QAction  # Qt 6
except ImportError:
    from qgis.PyQt.QtWidgets import QAction  # Qt 5

PACKAGE = "cloud_mask_improver"


def on_screen(window) -> dict:
    frame = window.frameGeometry()
    area = QApplication.primaryScreen().availableGeometry()
    return {
        "frame": [frame.x(), frame.y(), frame.width(), frame.height()],
        "screen": [area.x(), area.y(), area.width(), area.height()],
        "inside": area.contains(frame),
    }


def trigger(name: str) -> None:
    action = next(a for a in iface.mainWindow().findChildren(QAction) if a.objectName() == name)
    action.trigger()


def open_dialog(d, key: str, action: str):
    trigger(action)
    d.pump(1.0)  # shown, folded, placed by the window manager
    return plugins[PACKAGE].dialogs[key]


def main(d):
    iface.mainWindow().showMaximized()
    project = QgsProject.instance()
    stack = QgsRasterLayer(d.args["sample"], "S2 L1C sample")
    mask = QgsRasterLayer(d.args["product_mask"], "product_mask")
    project.addMapLayer(stack)
    project.addMapLayer(mask)
    iface.setActiveLayer(stack)  # selected in the layer panel: QGIS inserts new layers above it
    iface.mapCanvas().setExtent(stack.extent())
    d.pump(0.5)

    dialog = open_dialog(d, "improve", "CloudMaskImproverImprove")
    d.fact("closed", on_screen(dialog))
    d.check("dialog on screen, fold-outs closed", on_screen(dialog)["inside"], on_screen(dialog))
    d.screenshot("dialog")
    form = dialog.form
    form.band_box.setCollapsed(False)
    form.advanced.setCollapsed(False)
    d.pump(1.0)
    d.fact("open", on_screen(dialog))
    d.check("dialog on screen, fold-outs open", on_screen(dialog)["inside"], on_screen(dialog))
    d.screenshot("dialog_open")
    form.band_box.setCollapsed(True)
    form.advanced.setCollapsed(True)

    form.cloud_models.setValue(d.args["model"])
    form.resolution.setValue(30)
    form.wanted["SOURCE"].setChecked(True)  # which source flagged each pixel: a layer under the mask
    d.fact("plan", form.plan_note.text())
    run = dialog.run()
    d.check("run starts", run is not None, dialog.message.text())
    d.wait_until(lambda: run.done, 240, "the dialog's run ends")
    d.pump(1.0)  # QGIS's own "Task complete" notice comes after the run's end
    d.check("run succeeds", run.ok, run.error)
    top = project.layerTreeRoot().children()[0].layer()
    d.fact("top_layer", top.name())
    d.fact("layer_order", [node.name() for node in project.layerTreeRoot().children()])
    d.check("mask on top", top is run.layers[0], [n.name() for n in project.layerTreeRoot().children()])
    classes = {c.label: c.color.alpha() for c in top.renderer().classes()}
    d.fact("mask_class_alpha", classes)
    bar = iface.messageBar().currentItem()
    d.fact("message_bar", bar.text() if bar else "")
    d.fact("dialog_message", dialog.message.text())
    d.fact("fraction_note", run.fraction_note())
    d.screenshot("after_run")
    dialog.grab().save(str(d.out / "dialog_window.png"))  # docs/dialog.png is a copy of it
    dialog.close()
    project.layerTreeRoot().findLayer(mask.id()).setItemVisibilityChecked(False)  # the image under the mask
    iface.mapCanvas().refreshAllLayers()
    d.pump(2.0)
    d.screenshot("map_after_run")  # the mask over the image: clear is transparent
    source = project.layerTreeRoot().children()[1].layer()
    d.fact("second_layer", source.name())
    d.fact("source_legend", [c.label for c in source.renderer().classes()])
    project.layerTreeRoot().findLayer(top.id()).setItemVisibilityChecked(False)  # the source layer shows
    iface.mapCanvas().refreshAllLayers()
    d.pump(2.0)
    d.screenshot("map_source")  # which source flagged each pixel, its legend in the layers panel

    toolbox = processing.createAlgorithmDialog("cloudmask:improvecloudmask")
    toolbox.show()
    d.pump(1.0)
    panels = [a for a in toolbox.findChildren(QScrollArea) if a.objectName() == "scrollArea" and a.isVisible()]
    d.check(
        "toolbox labels fit",
        bool(panels) and not panels[0].horizontalScrollBar().isVisible(),
        [a.widget().minimumSizeHint().width() for a in panels],
    )
    d.screenshot("toolbox")
    toolbox.close()

    ensemble = open_dialog(d, "ensemble", "CloudMaskImproverImproveEnsemble")
    d.check("ensemble dialog on screen", on_screen(ensemble)["inside"], on_screen(ensemble))
    d.fact("ensemble_plan", ensemble.form.plan_note.text())
    d.fact("ensemble_threshold_text", ensemble.form.cloud_thr.specialValueText())
    d.screenshot("ensemble")
    ensemble.close()


driverlib.start(main)
