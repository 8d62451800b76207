"""One run of the dialog: the algorithm as a QgsTask, then its results on the map.

The algorithm runs through ``QgsProcessingAlgRunnerTask``, so the toolbox,
``qgis_process`` and the dialog share one execution path. The run adds and
styles the results itself (the algorithm runs without a project to load
into): on top of the layer list, so the result is seen whatever layer was
selected, and named after the models and the time, so runs tell apart.
"""

from __future__ import annotations

import re
import time

from qgis.core import (
    QgsApplication,
    QgsProcessingAlgRunnerTask,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingUtils,
    QgsRasterLayer,
)

from ..algorithms.styling import mask_renderer, probability_renderer, source_renderer
from ..core import FIGURES, MASK, OPTIONAL_OUTPUTS, OUTPUT_MODE, OUTPUT_MODES, figures_summary
from .improve_form import RESULT_PROPERTY, TEMPORARY

# The optional outputs a run loads: the SOURCE raster first (under the mask), then the probabilities.
LOADED = sorted(OPTIONAL_OUTPUTS, key=lambda o: o.probability)

# Every run whose task has not ended. QgsProcessingAlgRunnerTask keeps only raw pointers to the
# context and the feedback, which this Python object owns: a run dropped by its dialog (the plugin
# unloaded, QGIS exiting) must not be freed while its task can still use them.
_UNFINISHED: set = set()


class ImproveRun:
    """One queued or running task, with what it needs to outlive the dialog call.

    ``finished`` is called with the run once it has ended, whatever the outcome.
    """

    def __init__(self, algorithm, parameters: dict, project, name: str, models_label: str, finished):
        self.parameters = concrete_outputs(parameters)
        self.project = project
        self.name = name
        self.label = f"{models_label}, {time.strftime('%H:%M:%S')}"
        self.context = QgsProcessingContext()
        self.context.setProject(project)
        self.feedback = QgsProcessingFeedback()
        self.task = QgsProcessingAlgRunnerTask(algorithm, self.parameters, self.context, self.feedback)
        self.task.executed.connect(self._executed)
        self.task.taskCompleted.connect(self._ended)
        self.task.taskTerminated.connect(self._ended)
        self._finished = finished
        self.layers: list[QgsRasterLayer] = []
        self.results: dict = {}
        self.done = False
        self.ok = False
        self.cancelled = False
        self.error = ""

    def start(self, description: str) -> None:
        self.task.setDescription(description)
        _UNFINISHED.add(self)
        QgsApplication.taskManager().addTask(self.task)

    def _ended(self) -> None:
        _UNFINISHED.discard(self)

    def cancel(self) -> None:
        if not self.done:
            self.feedback.cancel()
            self.task.cancel()

    def forget(self) -> None:
        """Cancel, and add nothing when it ends (the plugin is being unloaded).

        The run stays referenced (``_UNFINISHED``) until its task has ended."""
        if not self.done:
            self.task.executed.disconnect(self._executed)
            self.cancel()

    def _executed(self, ok: bool, results: dict) -> None:
        self.done = True
        self.cancelled = self.feedback.isCanceled()
        self.ok = ok and not self.cancelled
        self.results = results or {}
        if self.ok:
            self.layers = self.add_results()
        elif not self.cancelled:
            self.error = failure_text(self.feedback)
        self._finished(self)

    def add_results(self) -> list[QgsRasterLayer]:
        """Load the mask (styled) and the probabilities, the mask on top of every layer."""
        binary = self.parameters.get(OUTPUT_MODE) == OUTPUT_MODES.index("binary")
        taken = {layer.name() for layer in self.project.mapLayers().values()}
        base, count = self.label, 2
        while f"{self.name} improved cloud mask ({self.label})" in taken:  # two runs in one second
            self.label, count = f"{base} #{count}", count + 1
        added = []
        mask = QgsRasterLayer(self.results[MASK], f"{self.name} improved cloud mask ({self.label})")
        if mask.isValid():
            mask.setRenderer(mask_renderer(mask, binary))
            added.append(mask)
        for output in LOADED:
            if self.results.get(output.name):
                layer = QgsRasterLayer(self.results[output.name], f"{self.name} {output.label.lower()} ({self.label})")
                if layer.isValid():
                    layer.setRenderer(probability_renderer(layer) if output.probability else source_renderer(layer))
                    added.append(layer)
        root = self.project.layerTreeRoot()
        for layer in added:
            layer.setCustomProperty(RESULT_PROPERTY, True)  # never guessed as an input later
        for layer in reversed(added):  # inserted at the top one by one: the mask ends up first
            self.project.addMapLayer(layer, False)
            root.insertLayer(0, layer)
        return added

    def fraction_note(self) -> str:
        return fraction_note(self.name, self.results)


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
    parts = [
        f"{label} {100 * float(results.get(key, 0)):.1f} %"
        for label, key in (("clear", "CLEAR_FRACTION"), ("cloud", "CLOUD_FRACTION"), ("shadow", "SHADOW_FRACTION"))
    ]
    note = f"Improved cloud mask of {name}: " + ", ".join(parts) + " of valid pixels."
    if results.get("MASKED_FRACTION") is not None:  # with SOURCE: what the improvement was
        note += " " + figures_summary({key: float(results[key]) for key in FIGURES})
    return note
