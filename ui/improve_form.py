"""The form of the "Improve cloud mask" dialog: inputs, models, thresholds, outputs.

The form knows what the algorithm will do with what it shows: which models
run when none is chosen, which thresholds "model default" stands for (the
same rules as the engine), and what is wrong before anything starts. Running
is the dialog's business (``improve_dialog``).
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from qgis.core import QgsMapLayerProxyModel, QgsRasterLayer, QgsSettings
from qgis.gui import QgsCollapsibleGroupBox, QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from .. import core
from ..core import (
    DEFAULTS,
    OUTPUT_MODES,
    PRODUCT_KINDS,
    PROVIDERS,
    ModelCard,
    RasterError,
    choices,
    choose_models,
    decide,
    optional_outputs,
    processing_level,
    raster_info,
    recommended,
)
from .area_widget import AreaSection
from .widgets import BandMapping, ModelChecklist, ModelCombo, card_tooltip

SETTINGS_PREFIX = "cloud_mask_improver/dialog/"
TEMPORARY = "TEMPORARY_OUTPUT"
# Set on the layers a run adds: an improved mask is not the product mask of the next run.
RESULT_PROPERTY = "cloud_mask_improver/result"
# Names that give a layer away as a product cloud mask, and the kind each implies.
MASK_NAME_KINDS = (
    ("scl", "scl"),
    ("qa60", "qa60"),
    ("cldprb", "probability"),
    ("probab", "probability"),
    ("msk", "nonzero"),
    ("mask", "nonzero"),
    ("cloud", "nonzero"),
)
PRODUCT_KIND_LABELS = {
    "nonzero": "Any non-zero value is cloud (rasterised mask)",
    "scl": "Scene classification (SCL)",
    "qa60": "QA60 bitmask",
    "probability": "Cloud probability (MSK_CLDPRB)",
}
MODE_LABELS = {"categorical": "Categories: clear, cloud, shadow", "binary": "Binary: clear, cloud or shadow"}
# The model cards' text never grows the dialog: it scrolls within this height.
FACTS_HEIGHT = 120
# What the dialog remembers between sessions: settings key -> the form's widget attribute.
# (The resolution's key is new with the models' own resolution as its default: a 0 kept
# under the old key was that old default, not a choice.)
# The optional outputs' check boxes are remembered too, under their own keys (``OptionalOutput.setting``).
REMEMBERED = (
    ("cloud_model", "cloud_models"),
    ("shadow_model", "shadow_model"),
    ("cloud_thr", "cloud_thr"),
    ("shadow_thr", "shadow_thr"),
    ("processing_resolution", "resolution"),
    ("dilation", "dilation"),
    ("min_area", "min_area"),
    ("output_mode", "output_mode"),
    ("provider", "provider"),
    ("in_memory", "in_memory"),
)


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
    rasters = [
        lyr
        for lyr in project.mapLayers().values()
        if isinstance(lyr, QgsRasterLayer) and not lyr.customProperty(RESULT_PROPERTY, False)
    ]  # our own results are no inputs
    masks = [lyr for lyr in rasters if lyr.bandCount() == 1 and guess_product_kind(lyr.name())]
    stacks = [lyr for lyr in rasters if lyr.bandCount() >= 4]
    # Prefer a stack whose descriptions name Sentinel-2 bands, then the one with most bands.
    stacks.sort(key=lambda lyr: (BandMapping.named(layer_bands(lyr)), lyr.bandCount()), reverse=True)
    return (stacks[0] if stacks else None), (masks[0] if masks else None)


@dataclass(frozen=True)
class Plan:
    """What a run will do with the form as it is: the models that run and the thresholds used."""

    cloud: tuple[str, ...]  # model ids or paths
    shadow: str | None
    cloud_threshold: float
    shadow_threshold: float
    cloud_chosen: bool  # False: the algorithm picks the models
    level: str
    most_likely_class: bool = False  # decided by the most likely class, not the thresholds

    def summary(self, titles: dict[str, str]) -> str:
        """One sentence on what Run will do, in the words the dialog uses."""

        def name(model: str) -> str:
            return titles.get(model, model)

        cloud = ", ".join(name(m) for m in self.cloud)
        if len(self.cloud) > 1 and not self.cloud_chosen:
            cloud = f"all {len(self.cloud)} installed {self.level} cloud models ({cloud})"
        if self.shadow is not None and self.cloud == (self.shadow,):
            models = f"{cloud} for cloud and shadow"
        elif self.shadow is None:
            models = f"{cloud} for cloud (no shadow model is installed)"
        else:
            models = f"{cloud} for cloud and {name(self.shadow)} for shadow"
        if not self.cloud_chosen and len(self.cloud) == 1:
            models += " (the best installed for this raster)"
        if self.most_likely_class:
            return (
                f"<b>Will run</b> {models}. Each pixel gets its most likely class (clear, cloud "
                "or shadow), as the model's authors decide; set a threshold to decide by "
                "thresholds instead."
            )
        mean = " (mean of the models' values)" if len(self.cloud) > 1 else ""
        return (
            f"<b>Will run</b> {models}. Thresholds: cloud {self.cloud_threshold:.4g}{mean}, "
            f"shadow {self.shadow_threshold:.4g}."
        )


def widget_value(widget):
    if isinstance(widget, (ModelCombo, ModelChecklist)):
        return widget.value()
    if isinstance(widget, QCheckBox):
        return widget.isChecked()
    if isinstance(widget, QComboBox):
        return widget.currentIndex()
    return widget.value()


def set_widget_value(widget, value) -> None:
    if isinstance(widget, (ModelCombo, ModelChecklist)):
        widget.setValue(str(value or ""))
    elif isinstance(widget, QCheckBox):
        widget.setChecked(value in (True, "true", "1", 1))
    elif isinstance(widget, QComboBox):
        widget.setCurrentIndex(int(value))
    elif isinstance(widget, QSpinBox):
        widget.setValue(int(float(value)))
    else:
        widget.setValue(float(value))


class ImproveForm(QWidget):
    """Every field of the algorithm, and what those fields will make it do."""

    changed = pyqtSignal()  # what will run has changed

    def __init__(self, ensemble: bool, models_dir: Path, project, parent=None, canvas=None):
        super().__init__(parent)
        self.ensemble = ensemble
        self.canvas = canvas  # for "Map canvas extent"; None outside the desktop
        self.models_dir = Path(models_dir)
        self.project = project
        self.cards: dict[str, ModelCard] = {}
        self._build_inputs()
        self._build_options()
        self._lay_out()
        self.s2_layer.layerChanged.connect(self._s2_changed)
        self.mask_layer.layerChanged.connect(self._mask_changed)
        self.bands.changed.connect(self.update_facts)
        self.refresh_models()
        self.choose_layers()
        self.restore_settings()
        self.update_facts()

    # -- building
    def _build_inputs(self) -> None:
        self.s2_layer = QgsMapLayerComboBox(self)
        self.s2_layer.setFilters(QgsMapLayerProxyModel.Filter.RasterLayer)
        self.mask_layer = QgsMapLayerComboBox(self)
        self.mask_layer.setFilters(QgsMapLayerProxyModel.Filter.RasterLayer)
        self.mask_layer.setAllowEmptyLayer(True)
        self.layer_note = QLabel(self)
        self.layer_note.setWordWrap(True)
        self.layer_note.setVisible(False)
        self.product_kind = QComboBox(self)
        for kind in PRODUCT_KINDS:
            self.product_kind.addItem(PRODUCT_KIND_LABELS[kind], kind)
        self.product_kind.setCurrentIndex(PRODUCT_KINDS.index(DEFAULTS.product_kind))
        self.bands = BandMapping(self)
        if self.ensemble:
            self.cloud_models = ModelChecklist(parent=self)
            self.cloud_models.setMaximumHeight(110)
            self.cloud_models.setToolTip(
                "Tick the ensemble's members; none ticked: every installed "
                "cloud model of the raster's processing level."
            )
            self.cloud_models.changed.connect(self.update_facts)
        else:
            self.cloud_models = ModelCombo(parent=self)
            self.cloud_models.currentTextChanged.connect(self.update_facts)
        self.shadow_model = ModelCombo(auto_label="(default: the cloud model when it gives shadow)", parent=self)
        self.shadow_model.currentTextChanged.connect(self.update_facts)
        self.plan_note = QLabel(self)
        self.plan_note.setWordWrap(True)
        self.plan_note.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.model_facts = QLabel(self)
        self.model_facts.setWordWrap(True)
        self.model_facts.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.model_facts.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.facts_area = QScrollArea(self)
        self.facts_area.setWidget(self.model_facts)
        self.facts_area.setWidgetResizable(True)
        self.facts_area.setMaximumHeight(FACTS_HEIGHT)
        self.facts_area.setFrameShape(QFrame.Shape.StyledPanel)
        self.facts_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.cloud_thr = self._threshold_box()
        self.shadow_thr = self._threshold_box()
        for box in (self.cloud_thr, self.shadow_thr):
            box.valueChanged.connect(self.update_facts)

    def _build_options(self) -> None:
        self.dilation = QSpinBox(self)
        self.dilation.setRange(0, 100)
        self.dilation.setValue(DEFAULTS.dilation)
        self.dilation.setSuffix(" px")
        self.min_area = QSpinBox(self)
        self.min_area.setRange(0, 1_000_000)
        self.min_area.setValue(DEFAULTS.min_area)
        self.min_area.setSuffix(" px")
        self.min_area.setToolTip(
            "After the dilation, patches of cloud and shadow smaller than this "
            "become clear and smaller clear gaps are filled (FarmVibes.AI's "
            "min_area). 0: off."
        )
        # The lowest value stands for "unset": the models' own resolution; one step up, 0,
        # is the raster's own.
        self.resolution = QDoubleSpinBox(self)
        self.resolution.setRange(-1, 1000)
        self.resolution.setDecimals(0)
        self.resolution.setSuffix(" m")
        self.resolution.setSpecialValueText("the models' own")
        self.resolution.setValue(self.resolution.minimum())
        self.resolution.setToolTip(
            "Empty: the resolution the models were made for (30 m for the UKIS models). "
            "0 m: the raster's own resolution. A coarser resolution is faster; each "
            "pixel then gets the decision of the coarser pixel it lies in."
        )
        self.resolution.valueChanged.connect(self._show_resolution)
        self.in_memory = QCheckBox("Load the whole raster in memory", self)
        self.provider = QComboBox(self)
        self.provider.addItems(list(PROVIDERS))
        self.output_mode = QComboBox(self)
        for mode in OUTPUT_MODES:
            self.output_mode.addItem(MODE_LABELS[mode], mode)
        self.output_mode.setCurrentIndex(OUTPUT_MODES.index(DEFAULTS.output_mode))
        self.output = QgsFileWidget(self)
        self.output.setStorageMode(QgsFileWidget.StorageMode.SaveFile)
        self.output.setFilter("GeoTIFF (*.tif *.tiff)")
        self.output.lineEdit().setPlaceholderText("[Save to temporary layer]")
        # The algorithm's optional outputs, by name; the probabilities first, as they are loaded.
        self.wanted: dict[str, QCheckBox] = {}
        for output in sorted(optional_outputs(self.ensemble), key=lambda o: not o.probability):
            box = self.wanted[output.name] = QCheckBox(output.label, self)
            box.setToolTip(output.tooltip)

    def _lay_out(self) -> None:
        inputs = QFormLayout()
        inputs.addRow("Sentinel-2 raster", self.s2_layer)
        inputs.addRow("Product cloud mask", self.mask_layer)
        inputs.addRow(self.layer_note)
        inputs.addRow("Product mask kind", self.product_kind)
        inputs.addRow("Cloud model" + ("s" if self.ensemble else ""), self.cloud_models)
        inputs.addRow("Shadow model", self.shadow_model)
        inputs.addRow("", self.facts_area)
        thresholds = QHBoxLayout()
        for label, box in (("cloud", self.cloud_thr), ("shadow", self.shadow_thr)):
            thresholds.addWidget(QLabel(label, self))
            thresholds.addWidget(box)
        inputs.addRow("Thresholds", thresholds)

        self.band_box = QgsCollapsibleGroupBox("Band mapping", self)
        QVBoxLayout(self.band_box).addWidget(self.bands)
        self.band_box.setCollapsed(True)  # opened when the mapping needs the user
        self.band_box.setSaveCollapsedState(False)  # folding follows the mapping, not last time
        self.advanced = QgsCollapsibleGroupBox("Advanced", self)
        form = QFormLayout(self.advanced)
        form.addRow("Dilation radius", self.dilation)
        form.addRow("Minimum area", self.min_area)
        form.addRow("Processing resolution", self.resolution)
        form.addRow("Output values", self.output_mode)
        form.addRow("Execution provider", self.provider)
        form.addRow("", self.in_memory)
        self.advanced.setCollapsed(True)
        self.advanced.setSaveCollapsedState(False)

        outputs = QGroupBox("Output", self)
        out_form = QFormLayout(outputs)
        out_form.addRow("Improved mask", self.output)
        extra = QHBoxLayout()
        for box in self.wanted.values():
            extra.addWidget(box)
        extra.addStretch(1)
        out_form.addRow("Also add", extra)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(inputs)
        layout.addWidget(self.plan_note)
        layout.addWidget(self.band_box)
        layout.addWidget(self.advanced)
        layout.addWidget(outputs)
        self.area = AreaSection(self.canvas, self)
        layout.addWidget(self.area)
        layout.addStretch(1)

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
        """List the models installed now (they change while the dialog is open)."""
        cards = core.installed_models(self.models_dir)
        self.cards = {c.id: c for c in cards}
        self.cloud_models.set_cards([c for c in cards if c.has_cloud])
        self.shadow_model.set_cards([c for c in cards if c.has_shadow])
        self.update_facts()

    def choose_layers(self) -> None:
        s2, mask = guess_layers(self.project)
        # Our own results are never the Sentinel-2 raster; with no stack in the project the
        # box stays empty ("Choose the Sentinel-2 raster.") rather than showing any raster.
        self.s2_layer.setExceptedLayerList(
            [lyr for lyr in self.project.mapLayers().values() if lyr.customProperty(RESULT_PROPERTY, False)]
        )
        self.s2_layer.setAllowEmptyLayer(s2 is None)
        self.s2_layer.setLayer(s2)
        self.mask_layer.setLayer(mask)
        self._s2_changed(self.s2_layer.currentLayer())
        self._mask_changed(mask)

    def _s2_changed(self, layer) -> None:
        self.bands.set_raster_bands(layer_bands(layer))
        self._fold_bands()
        self.update_facts()

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
        self.update_facts()

    # -- what will run
    def level(self) -> str:
        layer = self.s2_layer.currentLayer()
        try:
            return processing_level(raster_info(layer.source().split("|")[0])) if layer else "L2A"
        except RasterError:
            return "L2A"

    def plan(self) -> Plan:
        """The models and thresholds the algorithm will use, by its own rules.

        The rules are ``plan.choose_models`` and ``decision.decide``, which the run calls too."""
        level = self.level()
        chosen = [m for m in self.cloud_models.value().split(",") if m]
        try:
            cloud, shadow = choose_models(
                level, chosen, self.shadow_model.value() or None, self.ensemble, models_dir=self.models_dir
            )
        except core.ModelNotFound:  # no cloud model installed: problem() says so
            cloud, shadow = [], self.shadow_model.value() or None
        cloud_cards = [self.cards[m] for m in cloud if m in self.cards]
        decided = decide(
            self._threshold(self.cloud_thr),
            self._threshold(self.shadow_thr),
            recommended(cloud_cards, self.cards.get(shadow or "")),
        )
        return Plan(
            tuple(cloud),
            shadow,
            decided.cloud_threshold,
            decided.shadow_threshold,
            bool(chosen),
            level,
            decided.most_likely_class,
        )

    def chosen_cards(self, plan: Plan | None = None) -> list[ModelCard]:
        plan = plan or self.plan()
        ids = list(dict.fromkeys([*plan.cloud, plan.shadow]))
        return [self.cards[i] for i in ids if i in self.cards]

    def update_facts(self, *_) -> None:
        plan = self.plan()
        cards = self.chosen_cards(plan)
        if self.bands.show_problem(self._needed_bands(cards)):
            self.band_box.setCollapsed(False)
        self.model_facts.setText(
            "<br><br>".join(card_tooltip(c) for c in cards)
            if cards
            else "No model is installed: use Manage models… to install one."
        )
        cloud_default = self._threshold(self.cloud_thr) is None
        shadow_default = self._threshold(self.shadow_thr) is None
        for box, value, default in (
            (self.cloud_thr, plan.cloud_threshold, cloud_default),
            (self.shadow_thr, plan.shadow_threshold, shadow_default),
        ):
            shown = "most likely class" if plan.most_likely_class else f"{value:.4g}"
            box.setSpecialValueText(f"model default ({shown})" if default else "model default")
        self._show_resolution()
        same = self._same_layer()
        self.layer_note.setText(f"<span style='color:#b00020'>⚠ {same}</span>")
        self.layer_note.setVisible(bool(same))
        titles = {c.id: c.title for c in self.cards.values()}
        self.plan_note.setText(plan.summary(titles) if plan.cloud else "")
        self.changed.emit()

    def _needed_bands(self, cards: list[ModelCard] | None = None) -> list[str]:
        cards = self.chosen_cards() if cards is None else cards
        return sorted({b for c in cards for b in c.bands})

    # -- parameters
    def _resolution(self) -> float | None:
        return None if self.resolution.value() <= self.resolution.minimum() else float(self.resolution.value())

    def _show_resolution(self, *_) -> None:
        """Name what "the models' own" is for the models chosen, and what 0 m is."""
        own = [c.resolution for c in self.chosen_cards()]
        text = f"the models' own ({min(own):g} m)" if own and all(own) else "the models' own"
        self.resolution.setSpecialValueText(text)
        self.resolution.setSuffix(" m (the raster's own)" if self.resolution.value() == 0 else " m")

    @staticmethod
    def _threshold(box: QDoubleSpinBox):
        return None if box.value() <= box.minimum() else round(box.value(), 4)

    def parameters(self) -> dict:
        """Exactly the parameters of the algorithm this form is for."""
        s2 = self.s2_layer.currentLayer()
        mask = self.mask_layer.currentLayer()
        params = {
            choices.S2_RASTER: s2.source() if s2 else None,
            choices.PRODUCT_MASK: mask.source() if mask else None,
            choices.CLOUD_THR: self._threshold(self.cloud_thr),
            choices.SHADOW_THR: self._threshold(self.shadow_thr),
            choices.IN_MEMORY: self.in_memory.isChecked(),
            choices.CLOUD_MODELS if self.ensemble else choices.CLOUD_MODEL: self.cloud_models.value(),
            choices.SHADOW_MODEL: self.shadow_model.value(),
            choices.BANDS: self.bands.value(),
            choices.PRODUCT_MASK_KIND: self.product_kind.currentIndex(),
            choices.DILATION: self.dilation.value(),
            choices.MIN_AREA: self.min_area.value(),
            choices.OUTPUT_MODE: self.output_mode.currentIndex(),
            choices.RESOLUTION: self._resolution(),
            choices.EXECUTION_PROVIDER: self.provider.currentIndex(),
            choices.MASK: self.output.filePath().strip() or TEMPORARY,
        }
        for name, box in self.wanted.items():
            if box.isChecked():
                params[name] = TEMPORARY
        params.update(self.area.parameters())  # EXTENT or AREA: only where the user asks
        return params

    def problem(self) -> str:
        """What stops a run, in plain words, or ''."""
        s2 = self.s2_layer.currentLayer()
        if s2 is None:
            return "Choose the Sentinel-2 raster."
        if self._same_layer():
            return self._same_layer()
        plan = self.plan()
        if not plan.cloud:
            return "No cloud model is installed: open Manage models… and install one."
        return self.bands.problem(self._needed_bands(self.chosen_cards(plan))) or self.area.problem()

    def _same_layer(self) -> str:
        s2, mask = self.s2_layer.currentLayer(), self.mask_layer.currentLayer()
        if s2 is None or mask is None or mask.source() != s2.source():
            return ""
        return (
            "The same raster is chosen as the Sentinel-2 raster and as the product cloud mask: "
            "choose the product's own mask, or none."
        )

    # -- settings
    def _settings_key(self, key: str) -> str:
        # The ensemble's members and the single model are different choices.
        return SETTINGS_PREFIX + ("cloud_models" if key == "cloud_model" and self.ensemble else key)

    def remembered(self) -> list[tuple[str, QWidget]]:
        """What the dialog remembers between sessions: (settings key, widget)."""
        boxes = {o.name: o.setting for o in optional_outputs(self.ensemble)}
        return [(key, getattr(self, attribute)) for key, attribute in REMEMBERED] + [
            (boxes[name], box) for name, box in self.wanted.items()
        ]

    def save_settings(self) -> None:
        settings = QgsSettings()
        for key, widget in self.remembered():
            settings.setValue(self._settings_key(key), widget_value(widget))

    def restore_settings(self) -> None:
        settings = QgsSettings()
        for key, widget in self.remembered():
            value = settings.value(self._settings_key(key), None)
            if value is not None:
                with suppress(TypeError, ValueError):  # a setting from another version: keep the default
                    set_widget_value(widget, value)
