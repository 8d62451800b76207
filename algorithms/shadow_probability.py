"""Shadow probability: FarmVibes.AI's op ``compute_shadow_prob``."""

from __future__ import annotations

from .. import core
from ..core import choices
from .cloud_probability import CloudProbability


class ShadowProbability(CloudProbability):
    output = choices.SHADOW_PROBABILITY
    output_label = "Shadow probability"

    def name(self):
        return "shadowprobability"

    def displayName(self):
        return "Shadow probability"

    def shortHelpString(self):
        return (
            "Computes the cloud-shadow probability (0..1, float32, nodata -1) of a Sentinel-2 "
            "raster with one model that gives shadow. Model: an installed id or an .onnx path "
            "with its card; empty: the best installed shadow model for the raster's level."
        )

    def models(self, parameters, context) -> dict:
        model = self.parameterAsString(parameters, "MODEL_PATH", context).strip()
        return {"shadow_model": model or None}

    def outputs(self, path):
        return core.ProbabilityOutputs(shadow=path)
