"""The plugin object: the Processing provider, a Raster submenu and a toolbar button.

Everything runs through the Processing algorithms; the menu actions only open
their dialogs. ``initProcessing`` needs no GUI, so ``qgis_process`` can load
the plugin with ``iface`` None.
"""

import os

from qgis.core import QgsApplication
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QMessageBox

try:
    from qgis.PyQt.QtGui import QAction  # Qt 6
except ImportError:
    from qgis.PyQt.QtWidgets import QAction  # Qt 5

from . import data_home
from .core import home
from .processing.provider import CloudMaskProvider

try:
    from . import resources_rc  # noqa: F401 (compiled by scripts/setup.sh; registers the icon)

    ICON = ":/plugins/cloud_mask_improver/icons/icon.svg"
except ImportError:
    ICON = os.path.join(os.path.dirname(__file__), "icons", "icon.svg")

MENU = "Cloud Mask Improver"
IMPROVE = "cloudmask:improvecloudmask"
IMPROVE_ENSEMBLE = "cloudmask:improvecloudmaskensemble"


class CloudMaskImproverPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider = None
        self.actions = []
        self.toolbar_action = None

    def initProcessing(self):
        if self.provider is None:
            provider = CloudMaskProvider()
            # The registry owns it from here on. It refuses (and deletes) a provider
            # whose id is taken or that fails to load: then there is none of ours to remove.
            # Keep the reference while registered, or Python frees its methods.
            if QgsApplication.processingRegistry().addProvider(provider):
                self.provider = provider

    def initGui(self):
        self.initProcessing()
        self._add_action("Improve cloud mask…", "CloudMaskImproverImprove", self.improve)
        self._add_action("Improve cloud mask (ensemble)…", "CloudMaskImproverImproveEnsemble",
                         self.improve_ensemble)
        self._add_action("Manage models…", "CloudMaskImproverManageModels", self.manage_models)
        self.toolbar_action = self.actions[0]
        self.iface.addToolBarIcon(self.toolbar_action)

    def unload(self):
        if self.toolbar_action is not None:
            self.iface.removeToolBarIcon(self.toolbar_action)
            self.toolbar_action = None
        for action in self.actions:
            self.iface.removePluginRasterMenu(MENU, action)
            action.deleteLater()
        self.actions = []
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None

    def improve(self):
        self._open_algorithm(IMPROVE)

    def improve_ensemble(self):
        self._open_algorithm(IMPROVE_ENSEMBLE)

    def manage_models(self):
        QMessageBox.information(
            self.iface.mainWindow(), "Cloud Mask Improver",
            f"Installed models are kept in:\n{home.models_dir(data_home())}")

    def _add_action(self, text, name, slot):
        action = QAction(QIcon(ICON), text, self.iface.mainWindow())
        action.setObjectName(name)
        action.triggered.connect(slot)
        self.iface.addPluginToRasterMenu(MENU, action)
        self.actions.append(action)

    def _open_algorithm(self, algorithm_id):
        if QgsApplication.processingRegistry().algorithmById(algorithm_id) is None:
            self.iface.messageBar().pushWarning(
                MENU, f"The algorithm {algorithm_id} is not available.")
            return
        import processing  # QGIS's Processing plugin, not our .processing package

        processing.execAlgorithmDialog(algorithm_id)
