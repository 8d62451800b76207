"""Improve cloud mask (ensemble): FarmVibes.AI's workflow ``improve_cloud_mask_ensemble``."""

from __future__ import annotations

from qgis.core import QgsProcessingParameterString

from ..core import choices
from .improve_cloud_mask import ImproveCloudMask


class ImproveCloudMaskEnsemble(ImproveCloudMask):
    ensemble = True

    def name(self):
        return "improvecloudmaskensemble"

    def displayName(self):
        return "Improve cloud mask (ensemble)"

    def shortHelpString(self):
        return (
            "As 'Improve cloud mask', with the cloud probability taken as the unweighted mean "
            "of several cloud models, all run in one pass over the raster. Cloud models: "
            "comma-separated ids or .onnx paths; empty: every installed cloud model of the "
            "raster's processing level. Optional output: the cloud uncertainty (standard "
            "deviation of the members' probabilities).\n\n" + super().shortHelpString()
        )

    def add_model_parameters(self):
        self.addParameter(QgsProcessingParameterString(choices.CLOUD_MODELS, "Cloud models", optional=True))
        self.addParameter(QgsProcessingParameterString(choices.SHADOW_MODEL, "Shadow model", optional=True))

    def cloud_models(self, parameters, context) -> list[str]:
        text = self.parameterAsString(parameters, choices.CLOUD_MODELS, context)
        return [m.strip() for m in text.split(",") if m.strip()]
