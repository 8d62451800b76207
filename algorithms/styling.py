"""Styles applied when a result is loaded into the project (layer post-processors).

QGIS holds post-processors by raw pointer, so each kind keeps one Python
instance alive at class level (docs/architecture.md, platform facts).
"""

from __future__ import annotations

from typing import ClassVar

from qgis.core import (
    QgsColorRampShader,
    QgsPalettedRasterRenderer,
    QgsProcessingLayerPostProcessorInterface,
    QgsRasterShader,
    QgsSingleBandPseudoColorRenderer,
    QgsStyle,
)
from qgis.PyQt.QtGui import QColor

from ..core import merge as mg


def mask_renderer(layer, binary: bool = False):
    names = mg.BINARY_CATEGORY_NAMES if binary else mg.CATEGORY_NAMES
    colours = mg.BINARY_CATEGORY_COLOURS if binary else mg.CATEGORY_COLOURS
    classes = [QgsPalettedRasterRenderer.Class(value, QColor(*colours[value]), names[value])
               for value in sorted(names) if value != mg.NODATA]
    return QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes)


def probability_renderer(layer):
    ramp = QgsStyle.defaultStyle().colorRamp("Blues") or QgsStyle.defaultStyle().colorRamp("Viridis")
    shader_fn = QgsColorRampShader(0.0, 1.0, ramp)
    shader_fn.classifyColorRamp(5, 1)
    shader = QgsRasterShader(0.0, 1.0)
    shader.setRasterShaderFunction(shader_fn)
    return QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader)


class MaskStyler(QgsProcessingLayerPostProcessorInterface):
    instances: ClassVar[dict] = {}

    def __init__(self, binary: bool):
        super().__init__()
        self.binary = binary

    def postProcessLayer(self, layer, context, feedback):
        if layer is not None and layer.isValid():
            layer.setRenderer(mask_renderer(layer, self.binary))
            layer.triggerRepaint()

    @classmethod
    def get(cls, binary: bool = False) -> MaskStyler:
        if binary not in cls.instances:
            cls.instances[binary] = cls(binary)
        return cls.instances[binary]


class ProbabilityStyler(QgsProcessingLayerPostProcessorInterface):
    instance = None

    def postProcessLayer(self, layer, context, feedback):
        if layer is not None and layer.isValid():
            layer.setRenderer(probability_renderer(layer))
            layer.triggerRepaint()

    @classmethod
    def get(cls) -> ProbabilityStyler:
        if cls.instance is None:
            cls.instance = cls()
        return cls.instance


def style_on_load(context, destination: str, styler) -> None:
    if destination and context.willLoadLayerOnCompletion(destination):
        context.layerToLoadOnCompletionDetails(destination).setPostProcessor(styler)
