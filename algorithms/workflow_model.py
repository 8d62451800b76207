"""The shipped graphical-modeler models.

They are built by scripts/build_model.py and scripts/build_product_model.py.
Exposed by the provider so users can run them, or open them in the modeler to
edit and save their own copy.
"""

import os

from qgis.core import QgsProcessingModelAlgorithm

from .. import core
from ..core import CloudMaskError

MODELS_DIR = os.path.join(os.path.dirname(__file__), "models")


class ShippedModel(QgsProcessingModelAlgorithm):
    """A .model3 from algorithms/models with a stable id and title."""

    file = ""
    model_id = ""
    title = ""

    def __init__(self):
        super().__init__()
        self.fromFile(os.path.join(MODELS_DIR, self.file))

    def name(self):
        return self.model_id

    def displayName(self):
        return self.title

    def createInstance(self):
        return type(self)()

    def checkParameterValues(self, parameters, context):
        """An output named for another format (mask.gpkg) is refused before the steps run.

        Refused here, not by the last step only after the probabilities are computed.

        Read from the steps' model outputs, not the parameter definitions: qgis_process asks
        the registry's instance, whose destination parameters are not set up."""
        for child_id, child in self.childAlgorithms().items():
            for output in child.modelOutputs():
                value = parameters.get(f"{child_id}:{output}")
                sink = getattr(value, "sink", None)  # a QgsProcessingOutputLayerDefinition
                path = str(sink.staticValue() if sink is not None else value or "")
                try:
                    core.require_geotiff_name(path)
                except CloudMaskError as err:
                    return False, f"{child_id}:{output}: {err}"
        return super().checkParameterValues(parameters, context)


class WorkflowModel(ShippedModel):
    """FarmVibes.AI's workflow improve_cloud_mask, from the atomic algorithms."""

    file = "improve_cloud_mask.model3"
    model_id = "improvecloudmaskmodel"
    title = "Improve cloud mask (model)"
