"""The "Improve cloud mask" dialog: the form, and the runs it starts as QgsTasks.

The form (``improve_form``) collects the parameters and says what will run;
each run (``improve_run``) is the algorithm in a QgsTask. This window ties
them together: it checks before anything starts that onnxruntime is there
(and installs it on request), keeps itself on the screen, and reports each
run's outcome in place of the last one.
"""

from __future__ import annotations

from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsProject
from qgis.PyQt.QtCore import Qt, QTimer
from qgis.PyQt.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
)

from .. import core
from . import tasks
from .improve_form import ImproveForm
from .improve_run import ImproveRun
from .widgets import fit_on_screen

IMPROVE = "cloudmask:improvecloudmask"
IMPROVE_ENSEMBLE = "cloudmask:improvecloudmaskensemble"
MIN_WIDTH = 680
RUNTIME_MISSING = (
    "The models run with <b>onnxruntime</b>, which QGIS's Python does not have yet. "
    "Install it here (about 15 MB, into this profile's plugin data; no admin rights needed)."
)


class ImproveDialog(QDialog):
    def __init__(self, iface=None, ensemble: bool = False, models_dir: Path | None = None, project=None, parent=None):
        super().__init__(parent or (iface.mainWindow() if iface else None))
        self.iface = iface
        self.ensemble = ensemble
        self.project = project or QgsProject.instance()
        self.runs: list[ImproveRun] = []
        self.manager = None
        self.setWindowTitle("Improve cloud mask" + (" (ensemble)" if ensemble else ""))
        canvas = iface.mapCanvas() if iface else None
        self.form = ImproveForm(ensemble, Path(models_dir or core.models_dir()), self.project, self, canvas)
        self._build()
        tasks.EVENTS.models_changed.connect(self.refresh_models)
        tasks.EVENTS.runtime_started.connect(self._runtime_started)
        tasks.EVENTS.runtime_finished.connect(self._runtime_finished)
        self.check_runtime()
        self._fit()

    # -- building
    def _build(self) -> None:
        self.runtime_note = QLabel(RUNTIME_MISSING, self)
        self.runtime_note.setWordWrap(True)
        self.runtime_button = QPushButton("Install onnxruntime", self)
        self.runtime_button.clicked.connect(self.install_runtime)
        self.runtime_box = QFrame(self)
        self.runtime_box.setFrameShape(QFrame.Shape.StyledPanel)
        banner = QHBoxLayout(self.runtime_box)
        banner.addWidget(self.runtime_note, 1)
        banner.addWidget(self.runtime_button)

        # Everything that can grow scrolls: the dialog fits a 1366x768 screen with every fold-out open.
        self.scroll = QScrollArea(self)
        self.scroll.setWidget(self.form)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        for box in (self.form.band_box, self.form.advanced):
            box.collapsedStateChanged.connect(lambda _collapsed: QTimer.singleShot(0, self._fit))

        self.progress = QProgressBar(self)
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.progress.setVisible(False)  # shown while something runs
        self.message = QLabel(self)
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.run_button = QPushButton("Run", self)
        self.run_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        self.models_button = QPushButton("Manage models…", self)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.addButton(self.models_button, QDialogButtonBox.ButtonRole.ResetRole)
        buttons.addButton(self.run_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.addButton(self.cancel_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.models_button.clicked.connect(self.manage_models)

        layout = QVBoxLayout(self)
        layout.addWidget(self.runtime_box)
        layout.addWidget(self.scroll, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.message)
        layout.addWidget(buttons)

    def _fit(self) -> None:
        """As tall as the form wants, no taller than the screen; fully on the screen."""
        layout = self.layout()
        layout.activate()
        chrome = self.sizeHint().height() - self.scroll.sizeHint().height()
        height = chrome + self.form.sizeHint().height() + 2 * self.scroll.frameWidth()
        width = max(self.width() if self.isVisible() else 0, MIN_WIDTH, self.form.sizeHint().width() + 40)
        self.resize(width, height)
        fit_on_screen(self)

    def showEvent(self, event):
        super().showEvent(event)
        # The fold-outs fold, and the window manager adds its frame, only once shown: fit again then.
        QTimer.singleShot(0, self._fit)
        QTimer.singleShot(300, self._keep_on_screen)

    def _keep_on_screen(self) -> None:
        fit_on_screen(self)

    # -- onnxruntime and models
    def check_runtime(self) -> core.RuntimeStatus:
        """Say now, not at Run, when the models cannot run; offer the install."""
        status = core.runtime_status()
        installing = tasks.runtime_install() is not None
        self.runtime_box.setVisible(not status.available or installing)
        self.runtime_button.setEnabled(not installing)
        self.runtime_button.setVisible(status.installable or installing)
        if not status.available and not status.installable:
            self.runtime_note.setText(status.problem)  # installing again would not help: the fix instead
        elif not status.available and status.version:
            self.runtime_note.setText(
                f"<b>onnxruntime {status.version}</b> is too old for the models. "
                "Install the version they need here (into this profile's plugin data)."
            )
        return status

    def install_runtime(self) -> tasks.RuntimeInstallTask:
        return tasks.install_runtime()

    def _runtime_started(self) -> None:
        task = tasks.runtime_install()
        self.runtime_button.setEnabled(False)
        self.runtime_note.setText("Installing onnxruntime… QGIS stays usable meanwhile; Cancel stops it.")
        self.cancel_button.setEnabled(True)
        self.progress.setVisible(True)
        self.progress.setValue(0)
        if task is not None:
            task.progressChanged.connect(lambda value: self.progress.setValue(int(value)))

    def _runtime_finished(self, ok: bool, message: str) -> None:
        self.runtime_note.setText(RUNTIME_MISSING)
        self.cancel_button.setEnabled(any(not r.done for r in self.runs))
        self.progress.setVisible(False)
        self.show_message(message + (" Ready to run." if ok else ""), error=not ok)
        self.check_runtime()

    def refresh_models(self) -> None:
        """Models may have been installed or removed since the dialog opened."""
        self.form.refresh_models()

    def manage_models(self) -> None:
        from .model_manager import ModelManagerDialog

        if self.manager is None:
            self.manager = ModelManagerDialog(self, models_dir=self.form.models_dir)
        self.manager.show()
        self.manager.raise_()
        self.manager.activateWindow()

    # -- running
    def algorithm_id(self) -> str:
        return IMPROVE_ENSEMBLE if self.ensemble else IMPROVE

    def run(self) -> ImproveRun | None:
        """Queue the algorithm as a task; several runs may be queued at once."""
        problem = self.form.problem()
        if not problem and not self.check_runtime().available:
            problem = "onnxruntime is missing: click Install onnxruntime above, then Run."
        if problem:
            self._reset_progress()
            self.show_message(problem, error=True)
            return None
        algorithm = QgsApplication.processingRegistry().createAlgorithmById(self.algorithm_id())
        if algorithm is None:
            self._reset_progress()
            self.show_message(
                f"The algorithm {self.algorithm_id()} is not available: enable the Cloud Mask Improver plugin.",
                error=True,
            )
            return None
        self.form.save_settings()
        plan = self.form.plan()
        first = plan.cloud[0]
        models = (
            (Path(first).stem if first.lower().endswith(".onnx") else first)
            if len(plan.cloud) == 1
            else f"ensemble of {len(plan.cloud)}"
        )
        name = self.form.s2_layer.currentLayer().name()
        run = ImproveRun(algorithm, self.form.parameters(), self.project, name, models, self._finished)
        run.feedback.progressChanged.connect(lambda value: self._progress(run, value))
        self.runs.append(run)
        run.start(f"{self.windowTitle()}: {name}")
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.show_message(f"Running on {name}…")
        return run

    def cancel(self) -> None:
        for run in self.runs:
            run.cancel()
        runtime = tasks.runtime_install()
        if runtime is not None:
            runtime.cancel()

    def dispose(self) -> None:
        """Cancel every run and forget their results (the plugin is being unloaded)."""
        for run in self.runs:
            run.forget()
        self.runs = []

    def _progress(self, run: ImproveRun, value: float) -> None:
        if self.runs and run is self.runs[-1] and not run.done:
            self.progress.setValue(int(value))

    def _reset_progress(self) -> None:
        # An error must not sit under the previous run's full bar.
        self.progress.setValue(0)
        self.progress.setVisible(False)

    def _finished(self, run: ImproveRun) -> None:
        self.cancel_button.setEnabled(any(not r.done for r in self.runs) or tasks.runtime_install() is not None)
        if run.cancelled:
            self._reset_progress()
            self.show_message(f"Cancelled: no mask was written for {run.name}.")
            return
        if not run.ok:
            self._reset_progress()
            self.show_message(run.error, error=True)
            self._bar(Qgis.MessageLevel.Critical, f"Improving the cloud mask of {run.name} failed: {run.error}")
            if "onnxruntime" in run.error:
                self.check_runtime()
            return
        self.progress.setValue(100)
        note = run.fraction_note()
        self.show_message(note)
        # QGIS announces "Task complete" in the message bar right after this call: say the
        # fractions after it, so they are what the user sees on top.
        QTimer.singleShot(0, lambda: self._bar(Qgis.MessageLevel.Success, note))

    def show_message(self, text: str, error: bool = False) -> None:
        self.message.setText(f"<span style='color:#b00020'>{text}</span>" if error else text)

    def _bar(self, level, text: str) -> None:
        if self.iface is None:
            return
        duration = 15 if level == Qgis.MessageLevel.Success else 0
        self.iface.messageBar().pushMessage("Cloud Mask Improver", text, level, duration)
