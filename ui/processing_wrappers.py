"""Widget wrappers for the cloudmask algorithms' own Processing dialogs.

The toolbox, batch and modeler dialogs show the plugin's pickers instead of
bare text fields: a drop-down of installed models with their card facts, a
checkable list for an ensemble, and the band-mapping table. Each still yields
the plain string the parameter takes, so ``qgis_process`` and saved models
see no difference. The algorithms name these classes in parameter metadata
(``algorithms/widgets.py``); QGIS's Processing plugin imports this module
only when it builds a dialog, so ``qgis_process`` never needs its GUI.
"""

from __future__ import annotations

from processing.gui.wrappers import DIALOG_BATCH, DIALOG_MODELER, WidgetWrapper
from qgis.core import QgsMapLayer, QgsProject
from qgis.PyQt.QtWidgets import QLineEdit

from .. import core
from ..core import RasterError, choices, raster_info
from .widgets import BandMapping, ModelChecklist, ModelCombo

RASTER_PARAMETERS = (choices.S2_RASTER, "SENTINEL_RASTER")


def installed_cards(shadow: bool):
    """Installed models that give what the parameter asks for (cloud, or shadow)."""
    try:
        cards = core.installed_models()
    except Exception:  # noqa: BLE001 - a broken user card must not stop the dialog from opening
        return []
    return [c for c in cards if (c.has_shadow if shadow else c.has_cloud)]


def _text(value) -> str:
    # The modeler hands over only static values to Python wrappers; anything else reads as unset.
    return value if isinstance(value, str) else ""


class ModelWrapper(WidgetWrapper):
    """CLOUD_MODEL, SHADOW_MODEL, MODEL_PATH: one installed model by title, or a typed path."""

    def createWidget(self, shadow=False, **kwargs):
        auto = "(default: the cloud model when it gives shadow)" if shadow else "(best installed for the raster)"
        return ModelCombo(installed_cards(shadow), auto_label=auto)

    def setValue(self, value):
        self.widget.setValue(_text(value))

    def value(self):
        return self.widget.value()


class _TextFallbackWrapper(WidgetWrapper):
    """A picker that falls back to a plain text field where it cannot work (the batch table, the modeler).

    Either way the value is a plain string."""

    def setValue(self, value):
        if isinstance(self.widget, QLineEdit):
            self.widget.setText(_text(value))
        else:
            self.widget.setValue(_text(value))

    def value(self):
        return self.widget.text() if isinstance(self.widget, QLineEdit) else self.widget.value()


class ModelListWrapper(_TextFallbackWrapper):
    """CLOUD_MODELS, MODEL_PATHS: a checkable list (a text field in the batch table)."""

    def createWidget(self, **kwargs):
        if self.dialogType == DIALOG_BATCH:
            return QLineEdit()
        widget = ModelChecklist(installed_cards(shadow=False))
        widget.setMaximumHeight(120)
        widget.setToolTip(
            "Tick the ensemble's members; none ticked: every installed cloud model of the raster's processing level."
        )
        return widget


class BandsWrapper(_TextFallbackWrapper):
    """BANDS: the band-mapping table, filled from the raster chosen in the same dialog."""

    def createWidget(self, **kwargs):
        # The batch table and the modeler have no single raster to read the bands from.
        if self.dialogType in (DIALOG_BATCH, DIALOG_MODELER):
            widget = QLineEdit()
            widget.setPlaceholderText("detect (or e.g. B02,B03,B04,B08)")
            return widget
        return BandMapping()

    def postInitialize(self, wrappers):
        for wrapper in wrappers:
            if wrapper.parameterDefinition().name() in RASTER_PARAMETERS:
                wrapper.widgetValueHasChanged.connect(self._raster_changed)
                self._raster_changed(wrapper)

    def _raster_changed(self, wrapper):
        if isinstance(self.widget, BandMapping):
            self.widget.set_raster_bands(raster_descriptions(wrapper.parameterValue()))


def raster_descriptions(value) -> list[str]:
    """Band descriptions of a raster parameter value: a layer, a layer id or a path."""
    if isinstance(value, str) and QgsProject.instance().mapLayer(value) is not None:
        value = QgsProject.instance().mapLayer(value)
    source = value.source() if isinstance(value, QgsMapLayer) else value
    if not isinstance(source, str) or not source:
        return []
    try:
        return list(raster_info(source.split("|")[0]).descriptions)
    except RasterError:
        return []
