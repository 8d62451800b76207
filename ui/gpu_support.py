"""The model manager's GPU row: "Install GPU support" and "Use CPU only", one click each.

Installing downloads about 1.5 GB (onnxruntime-gpu and NVIDIA's CUDA and cuDNN
libraries), so it runs as a QgsTask: QGIS stays usable and shows it in its task
list. Before offering the button the row checks what the install needs (an NVIDIA
driver, a supported Python and platform, disk space) and says plainly what is
missing. A switch takes effect when QGIS restarts: the running QGIS keeps the
onnxruntime it has loaded.

Asking the driver starts ``nvidia-smi``, which takes a moment: the first time (the
answer is kept for the session) it runs in a thread of its own while the row says
it is checking, so opening the model manager never waits for it.
"""

from __future__ import annotations

import threading
from contextlib import suppress
from pathlib import Path

from qgis.core import QgsApplication, QgsTask
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

from .. import core
from .proxy import proxy_url

CHECKING = "Checking this computer for an NVIDIA GPU…"


class GpuSupportBox(QWidget):
    # From the driver-check thread to the main thread: the driver is known now.
    _driver_checked = pyqtSignal()

    def __init__(self, parent=None, folder: Path | None = None, index_url: str | None = None):
        super().__init__(parent)
        self._driver_checked.connect(self.refresh)
        self.folder = Path(folder or core.python_dir())
        self.index_url = index_url  # another package index (tests)
        self.task: QgsTask | None = None
        self.status = QLabel(self)
        self.status.setWordWrap(True)
        self.install_button = QPushButton("Install GPU support", self)
        self.cpu_button = QPushButton("Use CPU only", self)
        self.install_button.clicked.connect(self.install_gpu)
        self.cpu_button.clicked.connect(self.use_cpu)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.status, 1)
        row.addWidget(self.install_button)
        row.addWidget(self.cpu_button)
        self.refresh()

    def _check_driver(self) -> None:
        """Ask the driver in a thread (it starts nvidia-smi), then refresh on the main thread."""

        def check():
            core.driver_description()
            with suppress(RuntimeError):  # the dialog was closed meanwhile
                self._driver_checked.emit()

        threading.Thread(target=check, name="cloudmask-gpu-check", daemon=True).start()

    def refresh(self, message: str = "") -> None:
        current = core.installed_runtime(self.folder)
        busy = self.task is not None
        gpu_installed = current.kind == "gpu"
        self.cpu_button.setVisible(gpu_installed)
        self.install_button.setVisible(not gpu_installed)
        if gpu_installed:
            text = (
                f"GPU support is installed (onnxruntime-gpu {current.version}): models run on the NVIDIA "
                "GPU when there is one, else on the CPU."
            )
            self.cpu_button.setEnabled(not busy)
        elif not core.driver_known():
            self.install_button.setEnabled(False)
            self._check_driver()
            text = CHECKING
        else:
            problems = core.gpu_install_problems(self.folder)
            self.install_button.setEnabled(not problems and not busy)
            if problems:
                text = "Models run on the CPU. GPU support cannot be installed here: " + " ".join(problems)
            else:
                text = (
                    "Models run on the CPU. This computer has an NVIDIA GPU: installing GPU support "
                    "(a download of about 1.5 GB) makes runs much faster."
                )
        self.status.setText(f"{message} {text}".strip() if message else text)

    def install_gpu(self) -> QgsTask:
        return self._start("Installing GPU support for Cloud Mask Improver", core.install_gpu_runtime)

    def use_cpu(self) -> QgsTask:
        return self._start("Cloud Mask Improver: back to the CPU", core.install_cpu_runtime)

    def _start(self, description: str, work) -> QgsTask:
        # The task is held here until QGIS has called on_finished (Python must keep it alive).
        proxy = proxy_url()  # read here: the task's thread has no network settings
        self.task = QgsTask.fromFunction(
            description, lambda _task: work(self.folder, self.index_url, proxy=proxy), on_finished=self._finished
        )
        self.install_button.setEnabled(False)
        self.cpu_button.setEnabled(False)
        self.status.setText(f"{description}… (this can take several minutes; QGIS stays usable)")
        QgsApplication.taskManager().addTask(self.task)
        return self.task

    def _finished(self, exception, status: core.RuntimeStatus | None = None) -> None:
        self.task = None
        if exception is not None or status is None:
            self.refresh(f"<b style='color:#b00020'>It failed:</b> {exception}.")
        elif not status.available:
            self.refresh(f"<b style='color:#b00020'>It failed:</b> {status.problem}")
        else:
            self.refresh("<b>Done: restart QGIS to use it.</b>")
