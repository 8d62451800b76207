"""A Processing feedback that keeps what a run tells the user in its log."""

from qgis.core import QgsProcessingFeedback


class LogFeedback(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.lines = []

    def pushInfo(self, info):
        self.lines.append(info)
        super().pushInfo(info)
