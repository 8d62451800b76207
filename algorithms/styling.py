"""Styles applied when a result is loaded into the project (layer post-processors).

QGIS takes a post-processor by raw pointer, calls it when it loads the layer
(after the run, in the main thread) and then deletes it. So each
output of each run gets a new one, and this module keeps the Python object
alive until QGIS has deleted it: without the reference Python frees it and
QGIS calls a dangling pointer; with one shared instance only the first run
works ("wrapped C/C++ object ... has been deleted" from the second on). The
algorithm instance cannot be the keeper: a modeler child's instance is gone
before the model's outputs are loaded.
"""

from __future__ import annotations

import threading

from qgis.core import (
    QgsColorRampShader,
    QgsPalettedRasterRenderer,
    QgsProcessingLayerPostProcessorInterface,
    QgsRasterShader,
    QgsSingleBandPseudoColorRenderer,
    QgsStyle,
)
from qgis.PyQt import sip
from qgis.PyQt.QtGui import QColor

from .. import core


def mask_renderer(layer, binary: bool = False):
    names = core.BINARY_CATEGORY_NAMES if binary else core.CATEGORY_NAMES
    colours = core.BINARY_CATEGORY_COLOURS if binary else core.CATEGORY_COLOURS
    # Clear is transparent: the image shows through (a user may give it a colour).
    classes = [
        QgsPalettedRasterRenderer.Class(
            value, QColor(*colours[value][:3], 0 if value == core.CLEAR else colours[value][3]), names[value]
        )
        for value in sorted(names)
        if value != core.NODATA
    ]
    return QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes)


def source_renderer(layer):
    """The SOURCE output as a legend of its categories; clear transparent, as the mask's."""
    names, colours = core.SOURCE_NAMES, core.SOURCE_COLOURS
    classes = [
        QgsPalettedRasterRenderer.Class(
            value, QColor(*colours[value][:3], 0 if value == core.SOURCE_CLEAR else colours[value][3]), names[value]
        )
        for value in sorted(names)
        if value != core.SOURCE_NODATA
    ]
    return QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes)


def probability_renderer(layer):
    ramp = QgsStyle.defaultStyle().colorRamp("Blues") or QgsStyle.defaultStyle().colorRamp("Viridis")
    shader_fn = QgsColorRampShader(0.0, 1.0, ramp)
    shader_fn.classifyColorRamp(5, 1)
    shader = QgsRasterShader(0.0, 1.0)
    shader.setRasterShaderFunction(shader_fn)
    return QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader)


class MaskStyler(QgsProcessingLayerPostProcessorInterface):
    def __init__(self, binary: bool = False):
        super().__init__()
        self.binary = binary

    def postProcessLayer(self, layer, context, feedback):
        if layer is not None and layer.isValid():
            layer.setRenderer(mask_renderer(layer, self.binary))
            layer.triggerRepaint()


class SourceStyler(QgsProcessingLayerPostProcessorInterface):
    def postProcessLayer(self, layer, context, feedback):
        if layer is not None and layer.isValid():
            layer.setRenderer(source_renderer(layer))
            layer.triggerRepaint()


class ProbabilityStyler(QgsProcessingLayerPostProcessorInterface):
    def postProcessLayer(self, layer, context, feedback):
        if layer is not None and layer.isValid():
            layer.setRenderer(probability_renderer(layer))
            layer.triggerRepaint()


_pending: list[QgsProcessingLayerPostProcessorInterface] = []  # handed to QGIS, not yet deleted by it
_pending_lock = threading.Lock()  # runs started from dialogs call in from worker threads


def _keep(styler) -> None:
    with _pending_lock:
        _pending[:] = [p for p in _pending if not sip.isdeleted(p)]
        _pending.append(styler)


def pending_stylers() -> int:
    """How many post-processors QGIS still holds (for tests: it must fall back to 0)."""
    with _pending_lock:
        return sum(1 for p in _pending if not sip.isdeleted(p))


def style_on_load(context, destination: str, styler) -> None:
    """Style the layer QGIS will load from ``destination``; ``styler`` must be a new instance.

    Call it before the engine writes the output: a failed run then leaves nothing
    to load, and a run that wrote its output cannot fail afterwards.
    """
    if destination and context.willLoadLayerOnCompletion(destination):
        _keep(styler)
        context.layerToLoadOnCompletionDetails(destination).setPostProcessor(styler)
