"""Pickers shared by the plugin dialog and the Processing dialogs.

Every widget's value is the plain string the algorithm parameter takes (a
model id or path, comma-separated ids, a comma-separated band list), so the
same values work in the toolbox, the modeler and ``qgis_process``.
"""

from __future__ import annotations

from collections.abc import Sequence

from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QGuiApplication
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core import ALL_BANDS, BandError, ModelCard, detect_bands, normalise_band

AUTO_LABEL = "(best installed for the raster)"
# Title bar and borders a window manager adds around a window not yet shown.
FRAME_ALLOWANCE = 40


def available_area(window: QWidget):
    """The free area (no panels or task bars) of the screen a window is on, or will open on."""
    anchor = window.parentWidget() or window
    screen = QGuiApplication.screenAt(anchor.mapToGlobal(anchor.rect().center())) if anchor.isVisible() else None
    return (screen or QGuiApplication.primaryScreen()).availableGeometry()


def fit_on_screen(window: QWidget) -> None:
    """Shrink a window to its screen's free area and move it, title bar included, onto it.

    A laptop screen (1366x768) leaves about 700 px of height: a window taller
    than that would open with its title bar above the screen, out of reach.
    """
    area = available_area(window)
    frame = window.frameGeometry()
    extra_w = frame.width() - window.width()
    extra_h = frame.height() - window.height()
    if extra_h == 0:  # not decorated yet (or never will be): leave room for a title bar
        extra_h = FRAME_ALLOWANCE
    width = min(window.width(), area.width() - extra_w)
    height = min(window.height(), area.height() - extra_h)
    if (width, height) != (window.width(), window.height()):
        window.resize(width, height)
    if not window.isVisible():
        return  # placed when shown; fit_on_screen runs again then
    frame = window.frameGeometry()
    x = min(max(frame.x(), area.x()), area.x() + area.width() - frame.width())
    y = min(max(frame.y(), area.y()), area.y() + area.height() - frame.height())
    if (x, y) != (frame.x(), frame.y()):
        window.move(x, y)  # a window's position is its frame's


def card_tooltip(card: ModelCard) -> str:
    """The card facts a user chooses a model by: level, bands, outputs, tiling, source, licence."""
    outputs = " + ".join(n for n, on in (("cloud", card.has_cloud), ("shadow", card.has_shadow)) if on)
    tiling = "per pixel" if card.is_pixel_model else f"{card.tile} px tiles, {card.overlap:.0%} overlap"
    thresholds = ", ".join(
        f"{name} {value:g}"
        for name, value in (("cloud", card.cloud_threshold), ("shadow", card.shadow_threshold))
        if value is not None
    )
    lines = [
        f"<b>{card.title}</b> <code>{card.id}</code>",
        f"Level: {card.level} &nbsp; Outputs: {outputs}",
        f"Bands: {' '.join(card.bands)}",
        f"Tiling: {tiling}" + (f"; runs best at {card.resolution:g} m" if card.resolution else ""),
        f"Recommended thresholds: {thresholds or 'none'}",
        f"Source: {card.credit or 'user model'}; licence {card.licence}",
    ]
    return "<br>".join(lines)


class ModelCombo(QComboBox):
    """Installed models by title (card facts as tooltips); editable for an ``.onnx`` path."""

    def __init__(self, cards: Sequence[ModelCard] = (), auto_label: str = AUTO_LABEL, parent=None):
        super().__init__(parent)
        self.auto_label = auto_label
        self.setEditable(True)  # a path to a user's .onnx is a legal value too
        self.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(18)
        self.currentIndexChanged.connect(self._update_tooltip)
        self.set_cards(cards)

    def set_cards(self, cards: Sequence[ModelCard]) -> None:
        keep = self.value()
        self.blockSignals(True)
        self.clear()
        self.addItem(self.auto_label, "")
        for card in cards:
            self.addItem(card.title, card.id)
            self.setItemData(self.count() - 1, card_tooltip(card), Qt.ItemDataRole.ToolTipRole)
        self.blockSignals(False)
        self.setValue(keep)

    def value(self) -> str:
        """The model id, the typed path, or '' for the algorithm's default."""
        index = self.findText(self.currentText())
        if index >= 0:
            return str(self.itemData(index) or "")
        return self.currentText().strip()

    def setValue(self, value: str | None) -> None:
        index = self.findData(value or "")
        if index >= 0:
            self.setCurrentIndex(index)
        else:
            self.setEditText(value or "")
        self._update_tooltip()

    def _update_tooltip(self, *_):
        tip = self.itemData(self.currentIndex(), Qt.ItemDataRole.ToolTipRole)
        self.setToolTip(tip or "An installed model, or the path to an .onnx with its card (.json) beside it.")


class ModelChecklist(QListWidget):
    """A checkable list of installed models (the ensemble's members)."""

    changed = pyqtSignal()

    def __init__(self, cards: Sequence[ModelCard] = (), parent=None):
        super().__init__(parent)
        self.itemChanged.connect(lambda _item: self.changed.emit())
        self.set_cards(cards)

    def set_cards(self, cards: Sequence[ModelCard]) -> None:
        keep = self.value()
        self.blockSignals(True)
        self.clear()
        for card in cards:
            item = QListWidgetItem(card.title, self)
            item.setData(Qt.ItemDataRole.UserRole, card.id)
            item.setToolTip(card_tooltip(card))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked)
        self.blockSignals(False)
        self.setValue(keep)

    def ids(self) -> list[str]:
        return [str(self.item(i).data(Qt.ItemDataRole.UserRole)) for i in range(self.count())]

    def value(self) -> str:
        """Comma-separated ids of the checked models; '' (all installed) when none is checked."""
        checked = [self.item(i) for i in range(self.count()) if self.item(i).checkState() == Qt.CheckState.Checked]
        return ",".join(str(item.data(Qt.ItemDataRole.UserRole)) for item in checked)

    def setValue(self, value: str | None) -> None:
        wanted = {part.strip() for part in (value or "").split(",") if part.strip()}
        self.blockSignals(True)
        for i in range(self.count()):
            item = self.item(i)
            on = item.data(Qt.ItemDataRole.UserRole) in wanted
            item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
        self.blockSignals(False)
        self.changed.emit()


class BandMapping(QWidget):
    """Which raster band feeds which Sentinel-2 band: detected when possible, editable always.

    The value is '' while the mapping is the detected one (the algorithm
    detects it the same way), else the full comma-separated band list.
    """

    changed = pyqtSignal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.detected: list[str] | None = None
        self.pending = ""
        self.table = QTableWidget(0, 2, self)
        self.table.setHorizontalHeaderLabels(["Raster band", "Sentinel-2 band"])
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(24)
        self.table.setMinimumHeight(120)
        self.note = QLabel(self)
        self.note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table)
        layout.addWidget(self.note)
        self.set_raster_bands([])

    @staticmethod
    def named(descriptions: Sequence[str]) -> bool:
        """Whether every band description names a Sentinel-2 band (the surest sign of an S2 stack)."""
        return bool(descriptions) and all(d and normalise_band(d) for d in descriptions)

    def set_raster_bands(self, descriptions: Sequence[str]) -> None:
        """Show one row per raster band, filled in from the detection when it succeeds."""
        try:
            self.detected = detect_bands(list(descriptions)) if descriptions else None
        except BandError:
            self.detected = None
        names = self.detected or [normalise_band(d) if d else None for d in descriptions]
        pending = [normalise_band(p) for p in self.pending.split(",") if p.strip()]
        if len(pending) == len(descriptions) and all(pending):
            names = pending  # a list given before the raster was known
        self.table.setRowCount(0)
        for row, description in enumerate(descriptions):
            self.table.insertRow(row)
            label = QTableWidgetItem(f"{row + 1}: {description}" if description else f"Band {row + 1}")
            label.setFlags(label.flags() & ~Qt.ItemFlag.ItemIsEditable)
            self.table.setItem(row, 0, label)
            combo = QComboBox(self.table)
            combo.addItems(["", *ALL_BANDS])
            combo.setCurrentText(names[row] or "")
            combo.currentIndexChanged.connect(self._edited)
            self.table.setCellWidget(row, 1, combo)
        if descriptions:
            self.pending = ""
        self._edited()

    def names(self) -> list[str]:
        return [self.table.cellWidget(row, 1).currentText() for row in range(self.table.rowCount())]

    def value(self) -> str:
        if self.table.rowCount() == 0:
            return self.pending  # no raster yet: keep what was given
        names = self.names()
        if self.detected is not None and names == self.detected:
            return ""
        return ",".join(names)

    def setValue(self, value: str | None) -> None:
        """Apply a band list (one name per raster band); '' keeps the detected mapping.

        A list that does not fit the raster shown (or given before any raster) is
        kept and applied when a raster with that many bands is chosen.
        """
        self.pending = (value or "").strip()
        given = [normalise_band(p) or "" for p in self.pending.split(",") if p.strip()]
        if not given:
            given = list(self.detected or self.names())
        if len(given) == self.table.rowCount() and self.table.rowCount():
            for row, name in enumerate(given):
                self.table.cellWidget(row, 1).setCurrentText(name)
            self.pending = ""
        self._edited()

    def missing(self, needed: Sequence[str]) -> list[str]:
        """Bands a model reads that no raster band is mapped to."""
        names = set(self.names())
        return [b for b in needed if b not in names]

    def problem(self, needed: Sequence[str] = ()) -> str:
        """A warning in plain words, or '' when the mapping can feed the models."""
        names = [n for n in self.names() if n]
        if self.table.rowCount() == 0:
            return ""
        missing = self.missing(needed)
        if missing:
            return f"The chosen model needs band {', '.join(missing)}, which this raster lacks."
        if len(set(names)) != len(names):
            return "A Sentinel-2 band is given to two raster bands."
        if len(names) != self.table.rowCount():
            return "Give every raster band its Sentinel-2 name."
        return ""

    def show_problem(self, needed: Sequence[str] = ()) -> str:
        text = self.problem(needed)
        if text:
            self.note.setText(f"<span style='color:#b00020'>⚠ {text}</span>")
        elif self.table.rowCount() and self.detected is not None and not self.value():
            self.note.setText("Detected from the raster's band descriptions or band count.")
        else:
            self.note.setText("")
        return text

    def _edited(self, *_):
        self.show_problem()
        self.changed.emit()
