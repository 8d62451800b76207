"""What a driver script needs inside the real QGIS window (imported by drivers, never by pytest).

The harness starts ``qgis --code <driver>``; QGIS runs the driver once it has loaded
its plugins, before its event loop starts. A driver defines ``main(d)`` and ends
with ``driverlib.start(main)``; ``main`` then runs inside the event loop with a
:class:`Driver` that records checks, screenshots and facts into ``result.json``,
and QGIS quits when ``main`` returns or raises (the error is recorded).

Everything QGIS reports while the driver runs is captured: the message log (every
tab) and the Python errors QGIS would show in its error dialog, so a test can say
"no traceback" for a whole session.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

from qgis.core import QgsApplication, QgsProject
from qgis.PyQt.QtCore import QCoreApplication, QTimer
from qgis.PyQt.QtWidgets import QApplication, QLabel

# Modal windows that belong to a run in progress (Processing runs a model in the main thread
# behind one): they close themselves.
RUN_PROGRESS = ("QgsProcessingAlgorithmProgressDialog", "QProgressDialog")
OUT = Path(os.environ["CMI_DESKTOP_OUT"])
ARGS = json.loads(os.environ.get("CMI_DESKTOP_ARGS", "{}"))


class Driver:
    """The driver's side of a desktop run: ``args`` from the test, ``result`` for the test."""

    def __init__(self):
        self.args = ARGS
        self.out = OUT
        self.result = {
            "checks": {},
            "facts": {},
            "messages": [],
            "python_errors": [],
            "screenshots": [],
            "finished": False,
            "error": "",
        }
        self.keep_modals = False  # True: leave modal dialogs open (the driver handles them itself)
        QgsApplication.messageLog().messageReceived.connect(self._message)
        self._hook_python_errors()
        # A modal question (QMessageBox.warning, a stack-trace dialog) would block the driver
        # until the harness kills QGIS: record its text and close it instead.
        self._modal_timer = QTimer()
        self._modal_timer.timeout.connect(self._close_modals)
        self._modal_timer.start(300)

    # -- recording
    def check(self, name: str, ok: bool, detail="") -> bool:
        """A named pass/fail with the detail that explains a failure."""
        self.result["checks"][name] = {
            "ok": bool(ok),
            "detail": detail if isinstance(detail, (str, int, float, list, dict)) else str(detail),
        }
        self.write()  # a session killed later still tells what it had checked
        return bool(ok)

    def fact(self, name: str, value) -> None:
        """A value the test asserts on (layer names, counts, timings)."""
        self.result["facts"][name] = value

    def screenshot(self, name: str) -> Path:
        """The whole X screen as ``<out>/<name>.png`` (window manager decorations included)."""
        self.pump(0.2)  # let pending paints land
        path = self.out / f"{name}.png"
        QApplication.primaryScreen().grabWindow(0).save(str(path))
        self.result["screenshots"].append(path.name)
        return path

    def tracebacks(self) -> list[str]:
        """Every traceback QGIS received so far: Python errors and message-log entries."""
        found = list(self.result["python_errors"])
        found += [m["text"] for m in self.result["messages"] if "Traceback" in m["text"]]
        return found

    # -- waiting
    @staticmethod
    def pump(seconds: float = 0.0) -> None:
        """Process events for ``seconds`` (tasks finish, signals arrive, windows paint)."""
        end = time.monotonic() + seconds
        while True:
            QCoreApplication.processEvents()
            if time.monotonic() >= end:
                return
            time.sleep(0.02)

    def wait_until(self, condition, timeout: float, what: str = "condition") -> bool:
        """Pump events until ``condition()`` is true; False (and recorded) after ``timeout`` s."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if condition():
                return True
            self.pump(0.05)
        self.result.setdefault("timeouts", []).append(what)
        return bool(condition())

    # -- internals
    def _message(self, text, tag, level):
        self.result["messages"].append({"tag": tag, "level": int(level), "text": text})

    def _hook_python_errors(self):
        """Record the errors QGIS would show; never open its modal stack-trace dialog.

        That dialog would block the driver until the harness's timeout."""
        import qgis.utils

        errors = self.result["python_errors"]

        def record(type_, value, tb, msg=None, messagebar=False, level=None):
            text = "".join(traceback.format_exception(type_, value, tb))
            errors.append(text)
            print(text, file=sys.stderr, flush=True)  # into qgis.log too

        qgis.utils.showException = record

    def _close_modals(self):
        # Under Xvfb a modal dialog need not be the active window: look at all of them.
        modal = QApplication.activeModalWidget() or next(
            (w for w in QApplication.topLevelWidgets() if w.isModal() and w.isVisible()), None
        )
        if modal is None or self.keep_modals or modal.metaObject().className() in RUN_PROGRESS:
            return
        texts = [w.text() for w in modal.findChildren(QLabel) if w.text()]
        self.result.setdefault("modal_dialogs", []).append({"title": modal.windowTitle(), "text": texts})
        try:
            self.screenshot(f"modal_{len(self.result['modal_dialogs'])}")
        finally:
            modal.reject() if hasattr(modal, "reject") else modal.close()

    def write(self) -> None:
        (self.out / "result.json").write_text(json.dumps(self.result, indent=1, default=str))


def start(main) -> None:
    """Run ``main(driver)`` once QGIS's event loop runs, then write the result and quit QGIS."""
    driver = Driver()

    def run():
        try:
            driver.pump(0.5)  # the main window shows and the plugins settle
            main(driver)
            driver.result["finished"] = True
        except Exception:  # noqa: BLE001 (any failure of the driver goes into the result)
            driver.result["error"] = traceback.format_exc()
            driver.screenshot("error")
        # Background tasks still running when the driver is done (a run it did not wait for).
        driver.result["tasks_at_exit"] = [t.description() for t in QgsApplication.taskManager().activeTasks()]
        driver.write()
        quit_qgis()

    QTimer.singleShot(0, run)


def quit_qgis() -> None:
    """Close the project, then quit, as Project > Exit QGIS does.

    Not ``QApplication.exit()`` alone: with layers still in the project, QGIS 3.40 and
    3.44 then die on the way out (signal 11 in the main window's destructor, which
    removes the layers after their layer tree view is gone); 3.22 does not.
    """
    QgsProject.instance().setDirty(False)  # no "save the project?" question on the way out
    QgsProject.instance().clear()
    QApplication.exit(0)
