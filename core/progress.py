"""Progress and cancellation, shared by every step of a run and by the batch.

A step reports a 0..1 fraction and asks whether to stop; the Processing
algorithms and the command line forward these to QGIS's feedback or a log.
"""

from __future__ import annotations


class Cancelled(RuntimeError):
    """The user cancelled the run."""


class Feedback:
    """Progress and cancellation; the Processing wrapper forwards QGIS feedback."""

    def progress(self, fraction: float) -> None:  # pragma: no cover - default is silent
        pass

    def cancelled(self) -> bool:
        return False


class Share(Feedback):
    """A stage's 0..1 progress as the slice [start, end] of its parent's; cancels with it."""

    def __init__(self, parent: Feedback, start: float, end: float):
        self.parent, self.start, self.end = parent, start, end

    def progress(self, fraction: float) -> None:
        self.parent.progress(self.start + (self.end - self.start) * fraction)

    def cancelled(self) -> bool:
        return self.parent.cancelled()
