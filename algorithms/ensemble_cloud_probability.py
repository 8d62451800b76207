"""Ensemble cloud probability: the seed workflow ``cloud_ensemble``."""

from __future__ import annotations

from qgis.core import QgsProcessingParameterString

from .cloud_probability import CloudProbability


class EnsembleCloudProbability(CloudProbability):
    def name(self):
        return "ensemblecloudprobability"

    def displayName(self):
        return "Ensemble cloud probability"

    def shortHelpString(self):
        return ("The unweighted mean of the cloud probabilities of several models, all run in "
                "one pass over the raster. Models: comma-separated ids or .onnx paths; empty: "
                "every installed cloud model of the raster's processing level.")

    def add_model_parameter(self):
        self.addParameter(QgsProcessingParameterString(
            "MODEL_PATHS", "Models",
            optional=True))

    def request(self, parameters, context):
        from ..core import models, pipeline
        request = super().request(parameters, context)
        text = self.parameterAsString(parameters, "MODEL_PATHS", context)
        request.cloud_models = [m.strip() for m in text.split(",") if m.strip()]
        if not request.cloud_models:
            info = pipeline.raster_info(request.s2_raster, "Sentinel-2 raster")
            request.cloud_models = models.default_cloud_models(pipeline.processing_level(info), True)
        return request
