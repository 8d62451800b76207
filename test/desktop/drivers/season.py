"""Driver: Improve cloud masks of many products from the Processing toolbox with a season report.

Then the report in the Results Viewer and the season layers on the map.

Runs the batch on the band stacks the test made, from QGIS's own algorithm dialog (as a
user presses Run), with REPORT set. The dialog lists the report in Processing's Results
Viewer; the driver shows that dock, selects the report and double-clicks it, as a user
does. QGIS then asks the desktop to open the file (``QDesktopServices.openUrl``): there
is no web browser under Xvfb, so the driver takes that request and shows the file in a
window of QGIS's own Qt: QtWebKit's browser where QGIS has it, else Qt's rich-text viewer
(the widget the Results Viewer itself uses). Screenshots: the Results Viewer with the report open, and the map with the
season layers QGIS loaded.
"""

import re
import time

import driverlib
import processing
from qgis.core import QgsProject
from qgis.PyQt.QtCore import QObject, QUrl, pyqtSlot
from qgis.PyQt.QtGui import QDesktopServices, QTextDocument
from qgis.PyQt.QtWidgets import QDialog, QTextBrowser, QTextEdit, QVBoxLayout
from qgis.utils import iface, plugins

try:
    from qgis.PyQt.QtWebKitWidgets import QWebView
except ImportError:  # QGIS built without QtWebKit
    QWebView = None

ALG = "cloudmask:improvecloudmaskbatch"


class Opened(QObject):
    """Stands in for the desktop's web browser: records the files QGIS asks it to open."""

    def __init__(self):
        super().__init__()
        self.urls = []

    @pyqtSlot(QUrl)
    def open(self, url):
        self.urls.append(url)


class ReportViewer(QDialog):
    """The report as a browser shows it: QtWebKit where QGIS's PyQt has it, else Qt's rich-text viewer.

    QGIS 3.22 on Debian 12 has QtWebKit; QGIS 3.40 and 3.44 on Debian come without it."""

    def __init__(self, parent, url):
        super().__init__(parent)
        self.setWindowTitle("Season report")
        self.loaded = False
        if QWebView is not None:
            self.engine = "QtWebKit"
            self.view = QWebView(self)
            self.view.loadFinished.connect(self._done)
            self.view.load(url)
        else:
            self.engine = "QTextBrowser"
            self.view = QTextBrowser(self)
            self.view.setSource(url)
            self.loaded = True
        QVBoxLayout(self).addWidget(self.view)

    def _done(self, ok):
        self.loaded = True

    def html(self):
        return self.view.page().mainFrame().toHtml() if self.engine == "QtWebKit" else self.view.toHtml()

    def text(self):
        return self.view.page().mainFrame().toPlainText() if self.engine == "QtWebKit" else self.view.toPlainText()

    def images(self):
        """Width in pixels of each image as shown (0: not decoded), the chart first."""
        if self.engine == "QtWebKit":
            found = (
                self.view.page()
                .mainFrame()
                .evaluateJavaScript(
                    "Array.prototype.map.call(document.images, function (i) { return i.naturalWidth; })"
                )
            )
            return [int(w) for w in found or []]
        document = self.view.document()
        sources = re.findall(r'<img[^>]* src="([^"]+)"', self.view.toHtml())
        return [document.resource(QTextDocument.ResourceType.ImageResource, QUrl(src)).width() for src in sources]

    def scroll_to(self, heading):
        """Scroll so that ``heading`` is at the top, as a reader does."""
        if self.engine == "QtWebKit":
            self.view.page().mainFrame().evaluateJavaScript(
                "Array.prototype.forEach.call(document.getElementsByTagName('h2'), function (h) {"
                f" if (h.textContent.indexOf({heading!r}) === 0) h.scrollIntoView(); }});"
            )
        else:
            found = self.view.document().find(heading)
            self.view.verticalScrollBar().setValue(
                int(self.view.document().documentLayout().blockBoundingRect(found.block()).top())
            )


def colours(image, step=8):
    """How many different colours a grid of the image's pixels has: 1 for an empty map."""
    return len({image.pixel(x, y) for x in range(0, image.width(), step) for y in range(0, image.height(), step)})


def run_batch(d, parameters, timeout):
    """Open the toolbox dialog, press Run, wait for the run to end; (ok, results, log)."""
    dialog = processing.createAlgorithmDialog(ALG, parameters)
    dialog.show()
    finished = []
    dialog.algorithmFinished.connect(lambda ok, results: finished.append((ok, results)))
    start = time.monotonic()
    dialog.runButton().click()
    d.wait_until(lambda: getattr(dialog, "feedback", None) is None, timeout, "the batch ends")
    d.fact("seconds", round(time.monotonic() - start, 1))
    d.pump(0.5)
    d.screenshot("batch_dialog")
    log = "\n".join(w.toPlainText() for w in dialog.findChildren(QTextEdit))
    dialog.close()
    dialog.deleteLater()
    d.pump(0.2)
    ok, results = finished[0] if finished else (False, {})
    return ok, {k: str(v) for k, v in results.items()}, log


def show_report(d, report):
    """The Results Viewer as a user opens it, the report selected and double-clicked."""
    processing_plugin = plugins["processing"]
    dock = processing_plugin.resultsDock
    d.fact("results_viewer_open_after_run", dock.isVisible())  # QGIS opens it when a run made a report
    if not dock.isVisible():
        processing_plugin.resultsAction.trigger()  # Processing > Results Viewer
    d.pump(0.5)
    d.check("results viewer shown", dock.isVisible())
    tree = dock.treeResults
    items = [tree.topLevelItem(i) for i in range(tree.topLevelItemCount())]
    d.fact("results_listed", [{"text": item.text(0), "file": item.filename} for item in items])
    listed = [item for item in items if item.filename == report]
    d.check("results viewer lists the report", bool(listed), [item.filename for item in items])
    if not listed:
        return
    tree.setCurrentItem(listed[0])
    d.fact("results_description", dock.txtDescription.toPlainText())
    opened = Opened()
    QDesktopServices.setUrlHandler("file", opened, "open")
    try:
        dock.openResult(listed[0], 0)  # what a double-click on the item does
        d.pump(0.2)
    finally:
        QDesktopServices.unsetUrlHandler("file")
    files = [url.toLocalFile() for url in opened.urls]
    d.check("double-click opens the report", files == [report], files)
    if files != [report]:
        return
    viewer = ReportViewer(iface.mainWindow(), opened.urls[0])
    viewer.resize(1040, 670)
    viewer.move(10, 60)
    viewer.show()
    d.wait_until(lambda: viewer.loaded, 30, "the report loads")
    d.pump(1.0)
    d.fact("viewer", viewer.engine)
    d.fact("report_text", viewer.text())
    d.fact("report_images", viewer.images())
    d.fact("report_tables", viewer.html().count("<table"))
    d.screenshot("results_viewer_report")
    viewer.scroll_to("Dates ranked by clear fraction")
    d.pump(1.0)
    d.screenshot("results_viewer_table")
    viewer.close()
    d.pump(0.2)


def main(d):
    iface.mainWindow().showMaximized()
    d.pump(0.5)
    parameters = {
        "INPUTS": d.args["stacks"],
        "OUTPUT_FOLDER": d.args["out_folder"],
        "CLOUD_MODEL": d.args["model"],
        "REPORT": d.args["report"],
    }
    ok, results, log = run_batch(d, parameters, timeout=d.args.get("timeout", 240))
    d.check("batch succeeds", ok, log[-1500:])
    d.fact("results", results)
    d.fact("log_has_traceback", "Traceback" in log)
    project = QgsProject.instance()
    d.fact("layers", [layer.name() for layer in project.mapLayers().values()])
    show_report(d, d.args["report"])
    season = [layer for layer in project.mapLayers().values() if "cloud frequency" in layer.name()]
    summary = [layer for layer in project.mapLayers().values() if layer.name() == "Cloud mask summary"]
    for layer in summary:  # its polygon covers the scene: hidden, the season layers show under it
        project.layerTreeRoot().findLayer(layer.id()).setItemVisibilityChecked(False)
    if season:
        iface.setActiveLayer(season[0])
        iface.zoomToActiveLayer()  # the project's CRS is the summary's, not the layer's
        iface.mapCanvas().refreshAllLayers()
        d.wait_until(lambda: not iface.mapCanvas().isDrawing(), 30, "the map draws")
        d.pump(1.0)
    d.fact("map_colours", colours(iface.mapCanvas().grab().toImage()))
    d.screenshot("season_layers")


driverlib.start(main)
