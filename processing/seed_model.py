"""The seed workflow as a graphical-modeler model (built by scripts/build_model.py).

Exposed by the provider so users can run it, or open it in the modeler to edit
and save their own copy.
"""

import os

from qgis.core import QgsProcessingModelAlgorithm

MODEL_FILE = os.path.join(os.path.dirname(__file__), "models", "improve_cloud_mask.model3")


class SeedWorkflowModel(QgsProcessingModelAlgorithm):
    def __init__(self):
        super().__init__()
        self.fromFile(MODEL_FILE)

    def name(self):
        return "improvecloudmaskmodel"

    def displayName(self):
        return "Improve cloud mask (model)"

    def createInstance(self):
        return SeedWorkflowModel()
