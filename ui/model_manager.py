"""Manage models: see installed and available models, install, remove, import.

Downloads go through QGIS's network stack (``ReleaseDownload``), so proxy
settings apply; the installer then extracts, converts when the card asks for
it, and checks the model's sha256, in a QgsTask so QGIS stays responsive. The
dialog also says plainly when onnxruntime is missing or too old, with a button
that installs it (also a QgsTask) and the command for those who prefer a shell.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy
from qgis.PyQt.QtCore import Qt, QTimer
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .. import core
from ..core import (
    MODEL_LEVELS,
    BandError,
    CardError,
    FileInUseError,
    ModelCard,
    all_cards,
    card_to_json,
    parse_band_list,
    parse_card,
    sha256_of,
)
from . import tasks
from .download import ReleaseDownload
from .gpu_support import GpuSupportBox
from .widgets import card_tooltip, fit_on_screen

CONVERTERS = ("onnxmltools", "lightgbm")
COLUMNS = ("Model", "Id", "Level", "Outputs", "Status")


def missing_converters(card: ModelCard) -> list[str]:
    """Python packages a card's install-time conversion needs that this Python lacks."""
    if not card.source or card.source.convert != "lightgbm":
        return []
    return [name for name in CONVERTERS if importlib.util.find_spec(name) is None]


def converter_command(names: list[str]) -> str:
    # numpy stays the one QGIS's GDAL bindings were built against (1.x or 2.x; docs/architecture.md).
    return core.shown_command(
        [core.python_executable(), "-m", "pip", "install", "--user", *names, f"numpy=={numpy.__version__}"]
    )


def status_text(card: ModelCard, models_dir: Path) -> str:
    if core.is_installed(card, models_dir):
        return "Installed"
    if (models_dir / card.file).exists():
        return "Damaged (reinstall)"
    if card.source is None:
        return "Your own file (Import…)"
    if missing_converters(card):
        return "Needs " + " + ".join(missing_converters(card))
    return "Available"


class ModelManagerDialog(QDialog):
    def __init__(self, parent=None, models_dir: Path | None = None, cache: Path | None = None):
        super().__init__(parent)
        self.models_dir = Path(models_dir or core.models_dir())
        self.cache = Path(cache or core.cache_dir())
        self.download: ReleaseDownload | None = None
        self.install_task: tasks.ModelInstallTask | None = None
        self.cards: list[ModelCard] = []
        self.setWindowTitle("Cloud Mask Improver: models")
        self._build()
        tasks.EVENTS.runtime_started.connect(self._runtime_started)
        tasks.EVENTS.runtime_finished.connect(self._runtime_finished)
        tasks.EVENTS.models_changed.connect(self.refresh)
        self.refresh()

    def showEvent(self, event):
        super().showEvent(event)
        QTimer.singleShot(0, self._keep_on_screen)

    def _keep_on_screen(self) -> None:
        fit_on_screen(self)

    def _build(self) -> None:
        self.runtime_note = QLabel(self)
        self.runtime_note.setWordWrap(True)
        self.runtime_command = QLineEdit(self)
        self.runtime_command.setReadOnly(True)
        self.runtime_command.setToolTip("The same install from a shell, for those who prefer one.")
        self.runtime_button = QPushButton("Install onnxruntime", self)
        self.runtime_button.clicked.connect(self.install_runtime)
        self.runtime_box = QWidget(self)
        runtime = QVBoxLayout(self.runtime_box)
        runtime.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(self.runtime_note, 1)
        row.addWidget(self.runtime_button)
        runtime.addLayout(row)
        runtime.addWidget(self.runtime_command)

        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, len(COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setMinimumHeight(280)
        self.table.itemSelectionChanged.connect(self._selected)
        self.details = QLabel(self)
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details.setMinimumHeight(110)
        self.details.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)

        self.progress = QProgressBar(self)
        self.progress.setVisible(False)
        self.message = QLabel(self)
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.install_button = QPushButton("Install", self)
        self.remove_button = QPushButton("Remove", self)
        self.import_button = QPushButton("Import .onnx…", self)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        self.install_button.clicked.connect(self.install_selected)
        self.remove_button.clicked.connect(self.remove_selected)
        self.import_button.clicked.connect(self.import_model)
        self.cancel_button.clicked.connect(self.cancel)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        for button in (self.install_button, self.remove_button, self.import_button, self.cancel_button):
            buttons.addButton(button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(self.runtime_box)
        self.gpu_box = GpuSupportBox(self)  # Install GPU support / Use CPU only
        layout.addWidget(self.gpu_box)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.details)
        layout.addWidget(self.progress)
        layout.addWidget(self.message)
        layout.addWidget(buttons)
        layout.addWidget(QLabel(f"Models folder: {self.models_dir}", self))
        self.resize(1040, 640)
        fit_on_screen(self)

    # -- listing
    def refresh(self) -> None:
        self._show_runtime(core.runtime_status())
        self.cards = sorted(all_cards(self.models_dir).values(), key=lambda c: (c.rank, c.id))
        keep = self.selected_card().id if self.selected_card() else None
        self.table.setRowCount(0)
        for row, card in enumerate(self.cards):
            self.table.insertRow(row)
            outputs = " + ".join(n for n, on in (("cloud", card.has_cloud), ("shadow", card.has_shadow)) if on)
            for column, text in enumerate(
                (card.title, card.id, card.level, outputs, status_text(card, self.models_dir))
            ):
                item = QTableWidgetItem(text)
                item.setToolTip(card_tooltip(card))
                self.table.setItem(row, column, item)
            if card.id == keep:
                self.table.selectRow(row)
        self._selected()

    def listed(self) -> dict[str, str]:
        """Model id -> status as the table shows it."""
        return {self.table.item(r, 1).text(): self.table.item(r, 4).text() for r in range(self.table.rowCount())}

    def selected_card(self) -> ModelCard | None:
        rows = {index.row() for index in self.table.selectedIndexes()}
        return self.cards[rows.pop()] if len(rows) == 1 and self.cards else None

    def select(self, model_id: str) -> None:
        for row, card in enumerate(self.cards):
            if card.id == model_id:
                self.table.selectRow(row)

    def _selected(self) -> None:
        card = self.selected_card()
        installed = card is not None and (self.models_dir / card.file).exists()
        self.install_button.setEnabled(
            card is not None and card.source is not None and not installed and not self.busy()
        )
        self.remove_button.setEnabled(installed and not self.busy())
        if card is None:
            self.details.setText("Select a model to see its card.")
            return
        text = card_tooltip(card)
        if card.description:
            text += "<br><br>" + card.description
        missing = missing_converters(card)
        if missing and not installed:
            text += (
                "<br><br><b>Installing this model converts it to ONNX, which needs "
                f"{' and '.join(missing)} in QGIS's Python.</b> Install them with:<br>"
                f"<code>{converter_command(missing)}</code>"
            )
        self.details.setText(text)

    def _show_runtime(self, status: core.RuntimeStatus) -> None:
        self.runtime_box.setVisible(not status.available)
        # When installing cannot help (its library does not load, or no build exists for this
        # computer) the note says what to do instead, and no button invites a useless retry.
        self.runtime_button.setVisible(status.installable)
        self.runtime_command.setVisible(status.installable)
        if not status.available and not status.installable:
            self.runtime_note.setText(f"<b style='color:#b00020'>Models cannot run:</b> {status.problem}")
        elif not status.available:
            what = (
                f"onnxruntime {status.version} is too old for the models."
                if status.version
                else "onnxruntime, which runs the models, is not installed for QGIS's Python."
            )
            self.runtime_note.setText(
                f"<b style='color:#b00020'>Models cannot run yet:</b> {what} "
                "Install it with the button (about 15 MB, into this profile's plugin "
                "data; no admin rights needed), or run the command below in a shell."
            )
            self.runtime_command.setText(core.shown_command(core.install_command()))
        self.runtime_button.setEnabled(tasks.runtime_install() is None)

    def busy(self) -> bool:
        """A download or an install is in flight (one at a time)."""
        return self.download is not None or self.install_task is not None

    # -- actions
    def install_runtime(self) -> tasks.RuntimeInstallTask:
        """Install onnxruntime as a QgsTask; the dialog follows its progress and can cancel it."""
        return tasks.install_runtime()

    def _runtime_started(self) -> None:
        task = tasks.runtime_install()
        self.runtime_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.progress.setVisible(True)
        if task is not None:
            task.progressChanged.connect(lambda value: self.progress.setValue(int(value)))
        self.show_message(f"Installing onnxruntime {core.ONNXRUNTIME_VERSION} (a download of about 15 MB)…")

    def _runtime_finished(self, ok: bool, message: str) -> None:
        self.progress.setVisible(False)
        self.cancel_button.setEnabled(self.busy())
        self.show_message(message, error=not ok)
        self._show_runtime(core.runtime_status())

    def install_selected(self) -> ReleaseDownload | None:
        card = self.selected_card()
        return self.install(card) if card else None

    def install(self, card: ModelCard) -> ReleaseDownload | None:
        """Start downloading a model's pinned release; installing follows when it verifies."""
        missing = missing_converters(card)
        if missing:
            self.show_message(
                f"{card.title} is converted to ONNX when installed, which needs "
                f"{' and '.join(missing)} in QGIS's Python. Install them with: "
                f"{converter_command(missing)}",
                error=True,
            )
            return None
        if card.source is None:
            self.show_message(f"{card.title} cannot be downloaded: import its .onnx file.", error=True)
            return None
        self.download = ReleaseDownload(card.source, self.cache, self)
        self.download.progress.connect(self._progress)
        self.download.finished.connect(lambda path: self._downloaded(card, Path(path)))
        self.download.failed.connect(self._download_failed)
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self.install_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.show_message(f"Downloading {card.source.package} {card.source.version}…")
        self.download.start()
        return self.download

    def _progress(self, received: int, total: int) -> None:
        if total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(received)

    def _downloaded(self, card: ModelCard, archive: Path) -> None:
        self.download = None
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.show_message(f"Installing {card.title}…")
        self.install_task = tasks.ModelInstallTask(card, archive, self.models_dir, self.cache, done=self._installed)
        self.install_task.progressChanged.connect(lambda value: self.progress.setValue(int(value)))
        tasks.start(self.install_task)

    def _installed(self, ok: bool, message: str) -> None:
        self.install_task = None
        self.progress.setVisible(False)
        self.cancel_button.setEnabled(tasks.runtime_install() is not None)
        self.show_message(message, error=not ok)
        self.refresh()

    def _download_failed(self, message: str) -> None:
        self.download = None
        self.progress.setVisible(False)
        self.cancel_button.setEnabled(tasks.runtime_install() is not None)
        self.show_message(message, error=True)
        self.refresh()

    def cancel(self) -> None:
        """Stop what is in flight: a download, a model install, an onnxruntime install."""
        if self.download is not None:
            download, self.download = self.download, None
            download.failed.disconnect()
            download.finished.disconnect()
            download.cancel()
            self.progress.setVisible(False)
            self.show_message("Download cancelled; nothing was installed.")
            self.refresh()
        if self.install_task is not None:
            self.install_task.cancel()
        runtime = tasks.runtime_install()
        if runtime is not None:
            runtime.cancel()
        self.cancel_button.setEnabled(False)

    def remove_selected(self) -> None:
        card = self.selected_card()
        if card is None:
            return
        try:
            core.remove_model(card, self.models_dir)
        except FileInUseError as err:  # Windows: a run has the model file open
            self.show_message(str(err), error=True)
            return
        self.show_message(f"Removed {card.title}.")
        tasks.EVENTS.models_changed.emit()

    def import_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import an ONNX model", "", "ONNX models (*.onnx)")
        if path:
            self.import_file(Path(path))

    def import_file(self, onnx_path: Path, card: ModelCard | None = None) -> ModelCard | None:
        """Copy a model and its card into the models folder; ask for the card when there is none."""
        beside = onnx_path.with_suffix(".json")
        try:
            if card is None and beside.exists():
                card = parse_card(json.loads(beside.read_text(encoding="utf-8")), str(beside))
            if card is None:
                form = CardForm(onnx_path, self)
                if form.exec() != QDialog.DialogCode.Accepted:
                    return None
                card = form.card()
            card = write_imported(card, onnx_path, self.models_dir)
        except (CardError, OSError, ValueError) as err:
            self.show_message(f"Cannot import {onnx_path.name}: {err}", error=True)
            return None
        self.show_message(f"Imported {card.title} as '{card.id}'.")
        tasks.EVENTS.models_changed.emit()
        self.select(card.id)
        return card

    def show_message(self, text: str, error: bool = False) -> None:
        self.message.setText(f"<span style='color:#b00020'>{text}</span>" if error else text)


def write_imported(card: ModelCard, onnx_path: Path, models_dir: Path) -> ModelCard:
    """Place ``<id>.onnx`` and ``<id>.json`` in the models folder, the card pinning the file's sha256."""
    from dataclasses import replace

    card = replace(card, file=f"{card.id}.onnx", sha256=sha256_of(onnx_path), source=None)
    models_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_path, models_dir / card.file)
    (models_dir / f"{card.id}.json").write_text(json.dumps(card_to_json(card), indent=2), encoding="utf-8")
    return card


class CardForm(QDialog):
    """A guided form for the card of a model that came without one."""

    def __init__(self, onnx_path: Path, parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"Describe {onnx_path.name}")
        stem = onnx_path.stem.lower().replace(" ", "-")
        self.model_id = QLineEdit(stem, self)
        self.title = QLineEdit(onnx_path.stem, self)
        self.licence = QLineEdit("unknown", self)
        self.level = QComboBox(self)
        self.level.addItems(list(MODEL_LEVELS))
        self.bands = QLineEdit("B02,B03,B04,B08", self)
        self.scale = QDoubleSpinBox(self)
        self.scale.setDecimals(6)
        self.scale.setRange(0, 10)
        self.scale.setValue(1e-4)
        self.tile = QSpinBox(self)
        self.tile.setRange(1, 4096)
        self.tile.setValue(256)
        self.activation = QComboBox(self)
        self.activation.addItems(["softmax", "sigmoid", "probabilities"])
        self.cloud = QLineEdit("1", self)
        self.shadow = QLineEdit("", self)
        form = QFormLayout(self)
        for label, widget in (
            ("Id", self.model_id),
            ("Title", self.title),
            ("Licence", self.licence),
            ("Processing level", self.level),
            ("Bands, in model order", self.bands),
            ("Input scaling (DN ×)", self.scale),
            ("Tile size (px)", self.tile),
            ("Output activation", self.activation),
            ("Cloud channel(s)", self.cloud),
            ("Shadow channel(s)", self.shadow),
        ):
            form.addRow(label, widget)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def card(self) -> ModelCard:
        """The card as the form describes it; invalid entries raise CardError in plain words."""
        try:
            bands = parse_band_list(self.bands.text())
        except BandError as err:
            raise CardError(str(err)) from err

        def channels(text: str) -> list[int]:
            return [int(part) for part in text.replace(" ", "").split(",") if part]

        data = {
            "id": self.model_id.text().strip(),
            "title": self.title.text().strip(),
            "licence": self.licence.text().strip(),
            "level": self.level.currentText(),
            "bands": bands,
            "scaling": {"factor": self.scale.value()},
            "tiling": {"scheme": "mirror-tukey", "tile": self.tile.value(), "overlap": 0.2},
            "output": {
                "activation": self.activation.currentText(),
                "cloud": channels(self.cloud.text()),
                "shadow": channels(self.shadow.text()),
            },
        }
        return parse_card(data, "(import form)")
