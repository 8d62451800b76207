"""Where to work, for the Improve cloud mask dialog: whole raster, map canvas extent or a polygon layer.

A small self-contained section: the dialog adds it and merges ``parameters()``
into the algorithm's parameters (EXTENT / AREA, as the toolbox would give them).
"""

from __future__ import annotations

from qgis.core import QgsMapLayerProxyModel, QgsProcessingFeatureSourceDefinition
from qgis.gui import QgsMapLayerComboBox
from qgis.PyQt.QtWidgets import QButtonGroup, QCheckBox, QGroupBox, QHBoxLayout, QRadioButton, QVBoxLayout

from ..core import choices

WHOLE, CANVAS, LAYER = range(3)


class AreaSection(QGroupBox):
    def __init__(self, canvas=None, parent=None):
        super().__init__("Area to process", parent)
        self.canvas = canvas
        self.choice = QButtonGroup(self)
        self.whole = QRadioButton("Whole raster", self)
        self.extent = QRadioButton("Map canvas extent", self)
        self.polygons = QRadioButton("Polygon layer", self)
        for index, button in enumerate((self.whole, self.extent, self.polygons)):
            self.choice.addButton(button, index)
        self.whole.setChecked(True)
        self.extent.setEnabled(canvas is not None)
        self.layer = QgsMapLayerComboBox(self)
        self.layer.setFilters(QgsMapLayerProxyModel.Filter.PolygonLayer)
        self.selected_only = QCheckBox("Selected features only", self)
        self.outside_nodata = QCheckBox("Nodata outside the polygons", self)
        self.setToolTip(
            "Process only the tiles an area needs: the pixels there are the same as for the whole "
            "scene, and the mask covers the area's bounding box."
        )
        buttons = QHBoxLayout()
        for button in (self.whole, self.extent, self.polygons):
            buttons.addWidget(button)
        buttons.addStretch(1)
        layer_row = QHBoxLayout()
        for widget in (self.layer, self.selected_only, self.outside_nodata):
            layer_row.addWidget(widget)
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addLayout(layer_row)
        self.choice.idToggled.connect(lambda *_: self._update())
        self._update()

    def _update(self) -> None:
        on_layer = self.choice.checkedId() == LAYER
        for widget in (self.layer, self.selected_only, self.outside_nodata):
            widget.setEnabled(on_layer)

    def problem(self) -> str:
        if self.choice.checkedId() == LAYER and self.layer.currentLayer() is None:
            return "Choose a polygon layer for the area (or process the whole raster)."
        return ""

    def parameters(self) -> dict:
        """EXTENT or AREA (and NODATA_OUTSIDE_AREA) as the algorithm takes them; {} for the whole raster."""
        choice = self.choice.checkedId()
        if choice == CANVAS and self.canvas is not None:
            extent = self.canvas.extent()
            crs = self.canvas.mapSettings().destinationCrs().authid()
            return {
                choices.EXTENT: f"{extent.xMinimum()},{extent.xMaximum()},{extent.yMinimum()},"
                f"{extent.yMaximum()} [{crs}]"
            }
        layer = self.layer.currentLayer()
        if choice == LAYER and layer is not None:
            return {
                choices.AREA: QgsProcessingFeatureSourceDefinition(layer.id(), self.selected_only.isChecked()),
                choices.NODATA_OUTSIDE_AREA: self.outside_nodata.isChecked(),
            }
        return {}
