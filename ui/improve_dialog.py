"""The "Improve cloud mask" dialog: a form filled in one pass, run as a QgsTask.

The dialog only collects parameters: it runs ``cloudmask:improvecloudmask``
(or the ensemble) through ``QgsProcessingAlgRunnerTask``, so the toolbox,
``qgis_process`` and this dialog share one execution path. It styles and adds
the result itself, because the algorithm runs without a project to load into.
"""

from __future__ import annotations

import re
from pathlib import Path

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsMapLayerProxyModel,
    QgsProcessingAlgRunnerTask,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingUtils,
    QgsProject,
    QgsRasterLayer,
    QgsSettings,
)
from qgis.gui import QgsCollapsibleGroupBox, QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt, QTimer
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from ..algorithms.styling import mask_renderer, probability_renderer
from ..core import home, models
from ..core.cards import ModelCard
from ..core.inference import PROVIDERS
from ..core.merge import OUTPUT_MODES, PRODUCT_KINDS
from ..core.pipeline import processing_level
from ..core.raster import RasterError, raster_info
from .widgets import BandMapping, ModelChecklist, ModelCombo, card_tooltip

IMPROVE = "cloudmask:improvecloudmask"
IMPROVE_ENSEMBLE = "cloudmask:improvecloudmaskensemble"
SETTINGS_PREFIX = "cloud_mask_improver/dialog/"
TEMPORARY = "TEMPORARY_OUTPUT"
# Names that give a layer away as a product cloud mask, and the kind each implies.
MASK_NAME_KINDS = (("scl", "scl"), ("qa60", "qa60"), ("cldprb", "probability"), ("probab", "probability"),
                   ("msk", "nonzero"), ("mask", "nonzero"), ("cloud", "nonzero"))
PRODUCT_KIND_LABELS = {"nonzero": "Any non-zero value is cloud (rasterised mask)",
                       "scl": "Scene classification (SCL)", "qa60": "QA60 bitmask",
                       "probability": "Cloud probability (MSK_CLDPRB)"}
MODE_LABELS = {"categorical": "Categories: clear, cloud, shadow", "binary": "Binary: clear, cloud or shadow"}


def layer_bands(layer) -> list[str]:
    """Band descriptions of a raster layer, read with GDAL like the algorithm does."""
    if layer is None:
        return []
    try:
        return list(raster_info(layer.source().split("|")[0]).descriptions)
    except RasterError:
        return [""] * layer.bandCount()


def guess_product_kind(name: str) -> str | None:
    text = name.lower()
    return next((kind for word, kind in MASK_NAME_KINDS if word in text), None)


def guess_layers(project) -> tuple:
    """The likely Sentinel-2 raster and product mask among the project's raster layers."""
    rasters = [lyr for lyr in project.mapLayers().values() if isinstance(lyr, QgsRasterLayer)]
    masks = [lyr for lyr in rasters if lyr.bandCount() == 1 and guess_product_kind(lyr.name())]
    stacks = [lyr for lyr in rasters if lyr.bandCount() >= 4]
    # Prefer a stack whose descriptions name Sentinel-2 bands, then the one with most bands.
    stacks.sort(key=lambda lyr: (BandMapping.named(layer_bands(lyr)), lyr.bandCount()), reverse=True)
    return (stacks[0] if stacks else None), (masks[0] if masks else None)


class _Run:
    """One queued or running task with what it needs to outlive the dialog call."""

    def __init__(self, task, context, feedback, parameters, name, ensemble):
        self.task, self.context, self.feedback = task, context, feedback
        self.parameters, self.name, self.ensemble = parameters, name, ensemble
        self.layers: list[QgsRasterLayer] = []
        self.done = False
        self.ok = False
        self.error = ""


class ImproveDialog(QDialog):
    def __init__(self, iface=None, ensemble: bool = False, models_dir: Path | None = None,
                 project=None, parent=None):
        super().__init__(parent or (iface.mainWindow() if iface else None))
        self.iface = iface
        self.ensemble = ensemble
        self.models_dir = models_dir or home.models_dir()
        self.project = project or QgsProject.instance()
        self.runs: list[_Run] = []
        self.cards: dict[str, ModelCard] = {}
        self.setWindowTitle("Improve cloud mask" + (" (ensemble)" if ensemble else ""))
        self._build()
        self.refresh_models()
        self._choose_layers()
        self.restore_settings()
        self._update_model_facts()
        self._fitted = False

    def showEvent(self, event):
        super().showEvent(event)
        if not self._fitted:
            # Collapsible boxes fold only once shown, after the dialog grew to hold them open:
            # take the spare height back once they have folded.
            self._fitted = True
            QTimer.singleShot(0, lambda: self.resize(max(self.width(), 640), self.sizeHint().height()))

    # -- building
    def _build(self) -> None:
        self.s2_layer = QgsMapLayerComboBox(self)
        self.s2_layer.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.mask_layer = QgsMapLayerComboBox(self)
        self.mask_layer.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.mask_layer.setAllowEmptyLayer(True)
        self.mask_layer.setAdditionalItems([])
        self.product_kind = QComboBox(self)
        for kind in PRODUCT_KINDS:
            self.product_kind.addItem(PRODUCT_KIND_LABELS[kind], kind)

        self.bands = BandMapping(self)
        if self.ensemble:
            self.cloud_models = ModelChecklist(parent=self)
            self.cloud_models.setMaximumHeight(110)
            self.cloud_models.changed.connect(self._update_model_facts)
        else:
            self.cloud_models = ModelCombo(parent=self)
            self.cloud_models.currentTextChanged.connect(self._update_model_facts)
        self.shadow_model = ModelCombo(auto_label="(default: the cloud model when it gives shadow)", parent=self)
        self.shadow_model.currentTextChanged.connect(self._update_model_facts)
        self.model_facts = QLabel(self)
        self.model_facts.setWordWrap(True)
        self.model_facts.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.model_facts.setStyleSheet("QLabel { background: palette(base); padding: 6px; }")
        self.cloud_thr = self._threshold_box()
        self.shadow_thr = self._threshold_box()

        self.dilation = QSpinBox(self)
        self.dilation.setRange(0, 100)
        self.dilation.setValue(5)
        self.dilation.setSuffix(" px")
        self.min_area = QSpinBox(self)
        self.min_area.setRange(0, 1_000_000)
        self.min_area.setSuffix(" px")
        self.resolution = QDoubleSpinBox(self)
        self.resolution.setRange(0, 1000)
        self.resolution.setDecimals(0)
        self.resolution.setSuffix(" m")
        self.resolution.setSpecialValueText("native")
        self.in_memory = QCheckBox("Load the whole raster in memory", self)
        self.provider = QComboBox(self)
        self.provider.addItems(list(PROVIDERS))
        self.output_mode = QComboBox(self)
        for mode in OUTPUT_MODES:
            self.output_mode.addItem(MODE_LABELS[mode], mode)

        self.output = QgsFileWidget(self)
        self.output.setStorageMode(QgsFileWidget.SaveFile)
        self.output.setFilter("GeoTIFF (*.tif *.tiff)")
        self.output.lineEdit().setPlaceholderText("[Save to temporary layer]")
        self.want_cloud_p = QCheckBox("Cloud probability", self)
        self.want_shadow_p = QCheckBox("Shadow probability", self)
        self.want_uncertainty = QCheckBox("Cloud uncertainty", self)
        self.want_uncertainty.setVisible(self.ensemble)

        self.progress = QProgressBar(self)
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.progress.setTextVisible(False)  # no "0%" before anything runs
        self.message = QLabel(self)
        self.message.setWordWrap(True)
        self.run_button = QPushButton("Run", self)
        self.run_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.addButton(self.run_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.addButton(self.cancel_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)

        inputs = QFormLayout()
        inputs.addRow("Sentinel-2 raster", self.s2_layer)
        inputs.addRow("Product cloud mask", self.mask_layer)
        inputs.addRow("Product mask kind", self.product_kind)
        inputs.addRow("Cloud model" + ("s" if self.ensemble else ""), self.cloud_models)
        inputs.addRow("Shadow model", self.shadow_model)
        inputs.addRow("", self.model_facts)
        thresholds = QHBoxLayout()
        thresholds.addWidget(QLabel("cloud", self))
        thresholds.addWidget(self.cloud_thr)
        thresholds.addWidget(QLabel("shadow", self))
        thresholds.addWidget(self.shadow_thr)
        inputs.addRow("Thresholds", thresholds)

        self.band_box = QgsCollapsibleGroupBox("Band mapping", self)
        QVBoxLayout(self.band_box).addWidget(self.bands)
        self.band_box.setCollapsed(True)  # opened when the mapping needs the user
        self.band_box.setSaveCollapsedState(False)  # folding follows the mapping, not last time
        advanced = QgsCollapsibleGroupBox("Advanced", self)
        form = QFormLayout(advanced)
        form.addRow("Dilation radius", self.dilation)
        form.addRow("Drop patches smaller than", self.min_area)
        form.addRow("Processing resolution", self.resolution)
        form.addRow("Output values", self.output_mode)
        form.addRow("Execution provider", self.provider)
        form.addRow("", self.in_memory)
        advanced.setCollapsed(True)
        advanced.setSaveCollapsedState(False)  # restoring it on show would stretch the dialog

        outputs = QGroupBox("Output", self)
        out_form = QFormLayout(outputs)
        out_form.addRow("Improved mask", self.output)
        extra = QHBoxLayout()
        for box in (self.want_cloud_p, self.want_shadow_p, self.want_uncertainty):
            extra.addWidget(box)
        extra.addStretch(1)
        out_form.addRow("Also add", extra)

        layout = QVBoxLayout(self)
        layout.addLayout(inputs)
        layout.addWidget(self.band_box)
        layout.addWidget(advanced)
        layout.addWidget(outputs)
        layout.addWidget(self.progress)
        layout.addWidget(self.message)
        layout.addStretch(1)  # spare height goes here, not into the boxes
        layout.addWidget(buttons)

        self.s2_layer.layerChanged.connect(self._s2_changed)
        self.mask_layer.layerChanged.connect(self._mask_changed)
        self.bands.changed.connect(self._update_model_facts)

    def _threshold_box(self) -> QDoubleSpinBox:
        # The lowest value stands for "unset": the model card's recommended threshold.
        box = QDoubleSpinBox(self)
        box.setRange(-0.05, 1.0)
        box.setSingleStep(0.05)
        box.setDecimals(2)
        box.setSpecialValueText("model default")
        box.setValue(box.minimum())
        return box

    # -- filling in
    def refresh_models(self) -> None:
        cards = models.installed(self.models_dir)
        self.cards = {c.id: c for c in cards}
        self.cloud_models.set_cards([c for c in cards if c.has_cloud])
        self.shadow_model.set_cards([c for c in cards if c.has_shadow])

    def _choose_layers(self) -> None:
        s2, mask = guess_layers(self.project)
        if s2 is not None:
            self.s2_layer.setLayer(s2)
        self.mask_layer.setLayer(mask)
        self._s2_changed(self.s2_layer.currentLayer())
        self._mask_changed(mask)

    def _s2_changed(self, layer) -> None:
        self.bands.set_raster_bands(layer_bands(layer))
        self._fold_bands()

    def _fold_bands(self) -> None:
        # A detected mapping needs no attention: keep it folded, open it when something is wrong.
        detected = self.bands.detected is not None and not self.bands.value()
        count = self.bands.table.rowCount()
        self.band_box.setTitle(f"Band mapping ({count} bands, detected)" if detected and count else "Band mapping")
        if self.bands.problem(self._needed_bands()):
            self.band_box.setCollapsed(False)
        elif detected:
            self.band_box.setCollapsed(True)

    def _mask_changed(self, layer) -> None:
        kind = guess_product_kind(layer.name()) if layer is not None else None
        if kind:
            self.product_kind.setCurrentIndex(PRODUCT_KINDS.index(kind))

    def chosen_cards(self) -> list[ModelCard]:
        ids = [m for m in self.cloud_models.value().split(",") if m] or self._default_cloud_ids()
        shadow = self.shadow_model.value()
        return [self.cards[i] for i in [*ids, shadow] if i in self.cards]

    def _default_cloud_ids(self) -> list[str]:
        # What the algorithm will pick when the choice is left empty, so facts and warnings match.
        layer = self.s2_layer.currentLayer()
        try:
            level = processing_level(raster_info(layer.source().split("|")[0])) if layer else "L2A"
            return models.default_cloud_models(level, self.ensemble, self.models_dir)
        except (models.ModelNotFound, RasterError):
            return []

    def _update_model_facts(self, *_) -> None:
        cards = self.chosen_cards()
        if self.bands.show_problem(self._needed_bands(cards)):
            self.band_box.setCollapsed(False)
        self.model_facts.setText("<br><br>".join(card_tooltip(c) for c in cards) if cards else
                                 "No model is installed: use Manage models… to install one.")
        first = cards[0] if cards else None
        for box, value in ((self.cloud_thr, first.cloud_threshold if first else None),
                           (self.shadow_thr, self._shadow_default(cards))):
            box.setSpecialValueText(f"model default ({value:g})" if value is not None else "model default")

    def _needed_bands(self, cards: list[ModelCard] | None = None) -> list[str]:
        cards = self.chosen_cards() if cards is None else cards
        return sorted({b for c in cards for b in c.bands})

    def _shadow_default(self, cards: list[ModelCard]) -> float | None:
        shadows = [c for c in cards if c.has_shadow]
        return shadows[-1].shadow_threshold if shadows else None

    # -- parameters
    def _threshold(self, box: QDoubleSpinBox):
        return None if box.value() <= box.minimum() else round(box.value(), 4)

    def parameters(self) -> dict:
        """Exactly the parameters of the algorithm this dialog runs."""
        s2 = self.s2_layer.currentLayer()
        mask = self.mask_layer.currentLayer()
        params = {
            "S2_RASTER": s2.source() if s2 else None,
            "PRODUCT_MASK": mask.source() if mask else None,
            "CLOUD_THR": self._threshold(self.cloud_thr),
            "SHADOW_THR": self._threshold(self.shadow_thr),
            "IN_MEMORY": self.in_memory.isChecked(),
            "CLOUD_MODELS" if self.ensemble else "CLOUD_MODEL": self.cloud_models.value(),
            "SHADOW_MODEL": self.shadow_model.value(),
            "BANDS": self.bands.value(),
            "PRODUCT_MASK_KIND": self.product_kind.currentIndex(),
            "DILATION": self.dilation.value(),
            "MIN_AREA": self.min_area.value(),
            "OUTPUT_MODE": self.output_mode.currentIndex(),
            "RESOLUTION": float(self.resolution.value()),
            "EXECUTION_PROVIDER": self.provider.currentIndex(),
            "MASK": self.output.filePath().strip() or TEMPORARY,
        }
        optional = [("CLOUD_PROBABILITY", self.want_cloud_p), ("SHADOW_PROBABILITY", self.want_shadow_p)]
        if self.ensemble:
            optional.append(("CLOUD_UNCERTAINTY", self.want_uncertainty))
        for name, box in optional:
            if box.isChecked():
                params[name] = TEMPORARY
        return params

    def problem(self) -> str:
        if self.s2_layer.currentLayer() is None:
            return "Choose the Sentinel-2 raster."
        cards = self.chosen_cards()
        if not cards and not self.cards:
            return "No model is installed: open Manage models… and install one."
        return self.bands.problem(self._needed_bands(cards))

    # -- settings
    def _remembered(self):
        return [("cloud_models" if self.ensemble else "cloud_model", self.cloud_models),
                ("shadow_model", self.shadow_model)]

    def save_settings(self) -> None:
        s = QgsSettings()
        for key, widget in self._remembered():
            s.setValue(SETTINGS_PREFIX + key, widget.value())
        for key, box in (("cloud_thr", self.cloud_thr), ("shadow_thr", self.shadow_thr),
                         ("resolution", self.resolution)):
            s.setValue(SETTINGS_PREFIX + key, box.value())
        for key, box in (("dilation", self.dilation), ("min_area", self.min_area)):
            s.setValue(SETTINGS_PREFIX + key, box.value())
        for key, combo in (("output_mode", self.output_mode), ("provider", self.provider)):
            s.setValue(SETTINGS_PREFIX + key, combo.currentIndex())
        for key, box in (("in_memory", self.in_memory), ("cloud_p", self.want_cloud_p),
                         ("shadow_p", self.want_shadow_p), ("uncertainty", self.want_uncertainty)):
            s.setValue(SETTINGS_PREFIX + key, box.isChecked())

    def restore_settings(self) -> None:
        s = QgsSettings()

        def get(key, default, kind):
            return s.value(SETTINGS_PREFIX + key, default, type=kind)
        for key, widget in self._remembered():
            widget.setValue(get(key, "", str))
        for key, box in (("cloud_thr", self.cloud_thr), ("shadow_thr", self.shadow_thr),
                         ("resolution", self.resolution)):
            box.setValue(get(key, box.value(), float))
        for key, box in (("dilation", self.dilation), ("min_area", self.min_area)):
            box.setValue(get(key, box.value(), int))
        for key, combo in (("output_mode", self.output_mode), ("provider", self.provider)):
            combo.setCurrentIndex(get(key, combo.currentIndex(), int))
        for key, box in (("in_memory", self.in_memory), ("cloud_p", self.want_cloud_p),
                         ("shadow_p", self.want_shadow_p), ("uncertainty", self.want_uncertainty)):
            box.setChecked(get(key, box.isChecked(), bool))

    # -- running
    def algorithm_id(self) -> str:
        return IMPROVE_ENSEMBLE if self.ensemble else IMPROVE

    def run(self) -> _Run | None:
        """Queue the algorithm as a task; several runs may be queued at once."""
        problem = self.problem()
        if problem:
            self.show_message(problem, error=True)
            return None
        algorithm = QgsApplication.processingRegistry().createAlgorithmById(self.algorithm_id())
        if algorithm is None:
            self.show_message(f"The algorithm {self.algorithm_id()} is not available: "
                              "enable the Cloud Mask Improver plugin.", error=True)
            return None
        self.save_settings()
        params = concrete_outputs(self.parameters())
        context = QgsProcessingContext()
        context.setProject(self.project)
        feedback = QgsProcessingFeedback()
        name = self.s2_layer.currentLayer().name()
        task = QgsProcessingAlgRunnerTask(algorithm, params, context, feedback)
        task.setDescription(f"{self.windowTitle()}: {name}")
        run = _Run(task, context, feedback, params, name, self.ensemble)
        feedback.progressChanged.connect(lambda value: self._progress(run, value))
        task.executed.connect(lambda ok, results: self._finished(run, ok, results))
        self.runs.append(run)
        QgsApplication.taskManager().addTask(task)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        self.show_message(f"Running on {name}…")
        return run

    def cancel(self) -> None:
        for run in self.runs:
            if not run.done:
                run.feedback.cancel()
                run.task.cancel()

    def dispose(self) -> None:
        """Cancel every run and forget their results (the plugin is being unloaded)."""
        for run in self.runs:
            if not run.done:
                run.task.executed.disconnect()
                run.feedback.progressChanged.disconnect()
        self.cancel()
        self.runs = []

    def _progress(self, run: _Run, value: float) -> None:
        if run is self.runs[-1]:
            self.progress.setValue(int(value))

    def _finished(self, run: _Run, ok: bool, results: dict) -> None:
        run.done, run.ok = True, ok
        self.cancel_button.setEnabled(any(not r.done for r in self.runs))
        if run.feedback.isCanceled():
            run.ok = False
            self.progress.setValue(0)
            self.show_message(f"Cancelled: no mask was written for {run.name}.")
            return
        if not ok:
            run.error = failure_text(run.feedback)
            self.show_message(run.error, error=True)
            self._bar("critical", f"Improving the cloud mask of {run.name} failed: {run.error}")
            return
        self.progress.setValue(100)
        run.layers = self._add_results(run, results)
        note = fraction_note(run.name, results)
        self.show_message(note)
        self._bar("success", note)

    def _add_results(self, run: _Run, results: dict) -> list[QgsRasterLayer]:
        binary = run.parameters.get("OUTPUT_MODE") == OUTPUT_MODES.index("binary")
        added = []
        mask = QgsRasterLayer(results["MASK"], f"{run.name} improved cloud mask")
        if mask.isValid():
            mask.setRenderer(mask_renderer(mask, binary))
            added.append(mask)
        for key, label in (("CLOUD_PROBABILITY", "cloud probability"),
                           ("SHADOW_PROBABILITY", "shadow probability"),
                           ("CLOUD_UNCERTAINTY", "cloud uncertainty")):
            if results.get(key):
                layer = QgsRasterLayer(results[key], f"{run.name} {label}")
                if layer.isValid():
                    layer.setRenderer(probability_renderer(layer))
                    added.append(layer)
        for layer in reversed(added):  # the mask ends up on top
            self.project.addMapLayer(layer)
        return added

    def show_message(self, text: str, error: bool = False) -> None:
        self.message.setText(f"<span style='color:#b00020'>{text}</span>" if error else text)

    def _bar(self, level: str, text: str) -> None:
        if self.iface is None:
            return
        bar = self.iface.messageBar()
        if level == "success":
            bar.pushMessage("Cloud Mask Improver", text, Qgis.Success, 10)
        else:
            bar.pushMessage("Cloud Mask Improver", text, Qgis.Critical, 0)


def concrete_outputs(params: dict) -> dict:
    """Temporary outputs as real file names, so the layers can be found and loaded afterwards."""
    out = dict(params)
    for key, value in params.items():
        if value == TEMPORARY:
            out[key] = QgsProcessingUtils.generateTempFilename(f"{key.lower()}.tif")
    return out


def failure_text(feedback: QgsProcessingFeedback) -> str:
    """The algorithm's own error message (it names the problem and the fix), without log noise."""
    lines = [line.strip() for line in feedback.textLog().splitlines() if line.strip()]
    useful = [line for line in lines if not re.match(r"^(Traceback|File |\s)", line)]
    return useful[-1] if useful else "The algorithm failed; see the Processing log for details."


def fraction_note(name: str, results: dict) -> str:
    parts = [f"{label} {100 * float(results.get(key, 0)):.1f} %" for label, key in
             (("clear", "CLEAR_FRACTION"), ("cloud", "CLOUD_FRACTION"), ("shadow", "SHADOW_FRACTION"))]
    return f"Improved cloud mask of {name}: " + ", ".join(parts) + " of valid pixels."
