"""Ensemble cloud probability: FarmVibes.AI's workflow ``cloud_ensemble``."""

from __future__ import annotations

from qgis.core import QgsProcessingParameterString

from .cloud_probability import CloudProbability


class EnsembleCloudProbability(CloudProbability):
    def name(self):
        return "ensemblecloudprobability"

    def displayName(self):
        return "Ensemble cloud probability"

    def shortHelpString(self):
        return (
            "The unweighted mean of the cloud probabilities of several models, all run in "
            "one pass over the raster. Models: comma-separated ids or .onnx paths; empty: "
            "every installed cloud model of the raster's processing level."
        )

    def add_model_parameter(self):
        self.addParameter(QgsProcessingParameterString("MODEL_PATHS", "Models", optional=True))

    def models(self, parameters, context) -> dict:
        text = self.parameterAsString(parameters, "MODEL_PATHS", context)
        return {"cloud_models": [m.strip() for m in text.split(",") if m.strip()], "ensemble": True}
