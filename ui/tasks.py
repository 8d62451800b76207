"""The plugin's long jobs as QgsTasks, so QGIS never freezes while they run.

Installing onnxruntime (pip) and installing a model (extracting, sometimes
converting) take seconds to minutes: they run in QGIS's task manager, with
progress and cancel, like any other QGIS task. ``EVENTS`` tells every open
dialog when onnxruntime or the installed models change, so none shows stale
state.
"""

from __future__ import annotations

import os
import queue
import shutil
import tempfile
import threading
from pathlib import Path

from qgis.core import QgsApplication, QgsTask
from qgis.PyQt.QtCore import QObject, pyqtSignal

from .. import core
from ..core import INSTALL_AGAIN, CardError, FetchError, FileInUseError, ModelCard, swap
from .proxy import proxy_url


class Events(QObject):
    """What changed underneath the dialogs."""

    runtime_started = pyqtSignal()
    runtime_finished = pyqtSignal(bool, str)  # ok, message in plain words
    models_changed = pyqtSignal()


EVENTS = Events()
# Tasks in flight, held so Python keeps them alive until QGIS has called finished().
_RUNNING: list[QgsTask] = []


def start(task: QgsTask) -> QgsTask:
    _RUNNING.append(task)
    QgsApplication.taskManager().addTask(task)
    return task


def _release(task: QgsTask) -> None:
    if task in _RUNNING:
        _RUNNING.remove(task)


# -- onnxruntime

# pip's lines that mark its progress (it prints no percentage when not on a terminal).
RUNTIME_CANCELLED = "Installing onnxruntime was cancelled; nothing was installed."
PIP_STEPS = (
    ("Looking in", 5),
    ("Collecting", 10),
    ("Downloading", 20),
    ("Installing collected", 80),
    ("Successfully installed", 100),
)


class RuntimeInstallTask(QgsTask):
    """``pip install --target`` of the pinned onnxruntime into the data home's private folder.

    pip runs without a console window (closing one would kill it) and through QGIS's proxy,
    read here on the main thread when the task is made."""

    def __init__(self, target: Path | None = None):
        super().__init__("Installing onnxruntime for Cloud Mask Improver", QgsTask.Flag.CanCancel)
        self.target = Path(target or core.python_dir())
        self.environment = core.process_environment(core.pip_environment(proxy_url()))
        self.ok = False
        self.message = ""

    def run(self) -> bool:
        if core.installed_version(self.target) == core.ONNXRUNTIME_VERSION:
            self.ok, self.message = True, f"onnxruntime {core.ONNXRUNTIME_VERSION} is installed."
            return True
        missing = core.no_wheel_reason(*core.this_platform())
        if missing:
            self.message = f"onnxruntime cannot be installed here: {missing}"
            return False
        self.target.mkdir(parents=True, exist_ok=True)
        before = set(os.listdir(self.target))
        command = core.install_command(self.target)
        code, output = self._pip(command)
        if self.isCanceled():
            _remove_new_entries(self.target, before)  # a cancelled install leaves nothing half-done
            self.message = RUNTIME_CANCELLED
            return False
        if code != 0:
            _remove_new_entries(self.target, before)
            tail = "\n".join(output[-15:])
            self.message = (
                f"Installing onnxruntime failed (pip exit code {code}). The command was:\n"
                f"{core.shown_command(command)}\n{tail}"
            )
            return False
        version = core.installed_version(self.target)
        self.ok, self.message = True, f"onnxruntime {version} installed in {self.target}."
        return True

    def _pip(self, command: list[str]) -> tuple[int, list[str]]:
        """Run pip, following its output for progress and stopping it on cancel."""
        process = core.start_process(command, env=self.environment)
        lines: queue.Queue = queue.Queue()
        reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True)
        reader.start()
        output: list[str] = []
        while process.poll() is None or not lines.empty() or reader.is_alive():
            if self.isCanceled() and process.poll() is None:
                process.terminate()
            try:
                line = lines.get(timeout=0.2).rstrip()
            except queue.Empty:
                continue
            output.append(line)
            for marker, percent in PIP_STEPS:
                if line.startswith(marker) and percent > self.progress():
                    self.setProgress(percent)
        return process.wait(), output

    def finished(self, result: bool) -> None:
        _release(self)
        if self.ok:
            core.ensure_on_path()
            status = core.runtime_status()
            self.ok = status.available
            if not status.available:
                self.message = status.problem
        EVENTS.runtime_finished.emit(self.ok, self.message or RUNTIME_CANCELLED)


def _remove_new_entries(folder: Path, before: set[str]) -> None:
    for name in set(os.listdir(folder)) - before:
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def runtime_install() -> RuntimeInstallTask | None:
    """The onnxruntime install in flight, if any."""
    return next((t for t in _RUNNING if isinstance(t, RuntimeInstallTask)), None)


def install_runtime(target: Path | None = None) -> RuntimeInstallTask:
    """Start installing onnxruntime (or return the install already running)."""
    task = runtime_install()
    if task is None:
        task = start(RuntimeInstallTask(target))
        EVENTS.runtime_started.emit()
    return task


# -- models


class ModelInstallTask(QgsTask):
    """Extract (and convert, when the card asks) a downloaded model, verify it, put it in place.

    The work happens in a staging folder beside the models: a cancelled or
    failed install leaves the models folder as it was.
    """

    def __init__(self, card: ModelCard, archive: Path, models_dir: Path, cache: Path, done=None):
        super().__init__(f"Installing model {card.title}", QgsTask.Flag.CanCancel)
        self.card, self.archive = card, archive
        self.models_dir, self.cache = Path(models_dir), Path(cache)
        self.done = done  # called on the main thread with (ok, message)
        self.ok = False
        self.message = ""

    def run(self) -> bool:
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self.setProgress(10)
        with tempfile.TemporaryDirectory(prefix=".installing-", dir=self.models_dir) as staging:
            try:
                staged = core.install_model(
                    self.card, Path(staging), self.cache, log=lambda _text: None, archive=self.archive
                )
            except (FetchError, CardError, OSError, ValueError) as err:
                self.message = f"Installing {self.card.title} failed: {err}"
                return False
            if self.isCanceled():
                self.message = f"Installing {self.card.title} was cancelled; nothing was installed."
                return False
            self.setProgress(90)
            try:
                swap(staged, self.models_dir / self.card.file, INSTALL_AGAIN)
            except FileInUseError as err:  # Windows: the model being replaced is open in a run
                self.message = f"Installing {self.card.title} failed: {err}"
                return False
        self.ok, self.message = True, f"Installed {self.card.title}."
        return True

    def finished(self, result: bool) -> None:
        _release(self)
        if not self.message:
            self.message = f"Installing {self.card.title} was cancelled; nothing was installed."
        if self.ok:
            EVENTS.models_changed.emit()
        if self.done is not None:
            self.done(self.ok, self.message)
