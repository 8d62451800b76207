"""Shadow probability: the seed op ``compute_shadow_prob``."""

from __future__ import annotations

from ..core import pipeline
from .cloud_probability import CloudProbability


class ShadowProbability(CloudProbability):
    output = "SHADOW_PROBABILITY"
    output_label = "Shadow probability"

    def name(self):
        return "shadowprobability"

    def displayName(self):
        return "Shadow probability"

    def shortHelpString(self):
        return ("Computes the cloud-shadow probability (0..1, float32, nodata -1) of a Sentinel-2 "
                "raster with one model that gives shadow. Model: an installed id or an .onnx path "
                "with its card; empty: the best installed shadow model for the raster's level.")

    def request(self, parameters, context):
        from ..core import models
        request = super().request(parameters, context)
        chosen = request.cloud_models[0] if request.cloud_models else None
        request.cloud_models = []
        if chosen is None:
            info = pipeline.raster_info(request.s2_raster, "Sentinel-2 raster")
            chosen = models.default_shadow_model(pipeline.processing_level(info), [])
            if chosen is None:
                raise models.ModelNotFound("No shadow model is installed. Install one with 'make setup' "
                                           "or Manage models….")
        request.shadow_model = chosen
        return request

    def outputs(self, path):
        return pipeline.ProbabilityOutputs(shadow=path)
