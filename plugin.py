"""The plugin object: the Processing provider, a Raster submenu and a toolbar button.

Everything runs through the Processing algorithms: the plugin's dialog only
collects parameters and runs them as a QgsTask. ``initProcessing`` needs no
GUI, so ``qgis_process`` can load the plugin with ``iface`` None. The dialogs'
modules are imported when the user first opens one: every QGIS start (and
every ``qgis_process`` run) loads the plugin, few open a dialog.
"""

import os

from qgis.core import Qgis, QgsApplication, QgsMessageLog
from qgis.PyQt.QtGui import QIcon

try:
    from qgis.PyQt.QtGui import QAction  # Qt 6
except ImportError:
    from qgis.PyQt.QtWidgets import QAction  # Qt 5

from .algorithms.base import LOG_TAG, stop_runs
from .algorithms.provider import CloudMaskProvider

# From its file: compiled Qt resources (pyrcc5) do not exist in PyQt6 (QGIS 4).
ICON = os.path.join(os.path.dirname(__file__), "icons", "icon.svg")

MENU = "Cloud Mask Improver"
# The shipped modeler models, opened from the Raster menu: QGIS's toolbox offers "Edit Model…"
# only for the user's own models.
SHIPPED_MODELS = {
    "cloudmask:improvecloudmaskmodel": "Improve cloud mask (model)",
    "cloudmask:improvefromproductmodel": "Improve cloud mask from product (model)",
}


class CloudMaskImproverPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider = None
        self.actions = []
        self.toolbar_action = None
        self.dialogs = {}  # one per kind, kept so a second click brings it back with its settings

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
        self._add_action("Improve cloud mask (ensemble)…", "CloudMaskImproverImproveEnsemble", self.improve_ensemble)
        self._add_action("Manage models…", "CloudMaskImproverManageModels", self.manage_models)
        for algorithm_id, title in SHIPPED_MODELS.items():
            self._add_action(
                f"Open “{title}” in the modeler…",
                f"CloudMaskImproverEdit_{algorithm_id[10:]}",
                lambda _=False, a=algorithm_id: self.edit_model(a),
            )
        self.toolbar_action = self.actions[0]
        self.iface.addToolBarIcon(self.toolbar_action)

    def unload(self):
        for dialog in self.dialogs.values():
            # Runs the dialogs queued must not outlive the plugin that would add their layers.
            if hasattr(dialog, "dispose"):
                dialog.dispose()
            dialog.close()
            dialog.deleteLater()
        self.dialogs = {}
        # No run of ours may still be executing once this returns: QGIS deletes the provider next,
        # and on Exit tears the process down while a task's thread could still be in our code
        # (QGIS 3.40 crashed there, signal 11). Cancelled runs return at their next tile.
        if not stop_runs(timeout=30.0):
            QgsMessageLog.logMessage(
                "A cancelled run had not ended after 30 s when the plugin was unloaded.",
                LOG_TAG,
                Qgis.MessageLevel.Warning,
            )
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
        from .ui.improve_dialog import ImproveDialog

        self._show("improve", lambda: ImproveDialog(self.iface, ensemble=False))

    def improve_ensemble(self):
        from .ui.improve_dialog import ImproveDialog

        self._show("ensemble", lambda: ImproveDialog(self.iface, ensemble=True))

    def manage_models(self):
        from .ui.model_manager import ModelManagerDialog

        self._show("models", lambda: ModelManagerDialog(self.iface.mainWindow()))

    def edit_model(self, algorithm_id):
        """A shipped model in QGIS's graphical modeler, to study, change and save as the user's own."""
        from processing.modeler.ModelerDialog import ModelerDialog

        model = QgsApplication.processingRegistry().createAlgorithmById(algorithm_id)
        model.setSourceFilePath("")  # "Save" asks where: never over the file the plugin ships
        dialog = ModelerDialog.create(model)
        provider = QgsApplication.processingRegistry().providerById("model")
        if provider is not None:  # a saved copy shows up under Models, as after QGIS's own Edit Model…
            dialog.update_model.connect(provider.refreshAlgorithms)
        dialog.show()
        dialog.activate()
        return dialog  # QGIS's modeler keeps its windows itself (ModelerDialog.dlgs)

    def _show(self, key, make):
        """Open (or raise) a dialog; modeless, so QGIS stays usable while a run goes on."""
        if key not in self.dialogs:
            self.dialogs[key] = make()
        dialog = self.dialogs[key]
        if hasattr(dialog, "refresh_models"):
            dialog.refresh_models()  # models may have been installed since it was opened
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()
        return dialog

    def _add_action(self, text, name, slot):
        action = QAction(QIcon(ICON), text, self.iface.mainWindow())
        action.setObjectName(name)
        action.triggered.connect(slot)
        self.iface.addPluginToRasterMenu(MENU, action)
        self.actions.append(action)
