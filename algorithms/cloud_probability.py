"""Cloud probability: FarmVibes.AI's op ``compute_cloud_prob``."""

from __future__ import annotations

from qgis.core import QgsProcessingParameterRasterDestination, QgsProcessingParameterString

from .. import core
from ..core import choices
from .base import CloudMaskAlgorithm, run_engine, work_dir
from .styling import ProbabilityStyler, style_on_load
from .widgets import use_widgets


class CloudProbability(CloudMaskAlgorithm):
    output = choices.CLOUD_PROBABILITY
    output_label = "Cloud probability"

    def name(self):
        return "cloudprobability"

    def displayName(self):
        return "Cloud probability"

    def shortHelpString(self):
        return (
            "Computes the cloud probability (0..1, float32, nodata -1) of a Sentinel-2 raster "
            "with one segmentation model, in tiles streamed from the raster. Model: an "
            "installed model id or an .onnx path with its card beside it; empty: the best "
            "installed cloud model for the raster's processing level."
        )

    def initAlgorithm(self, config=None):
        self.add_raster("SENTINEL_RASTER", "Sentinel-2 raster")
        self.add_model_parameter()
        self.add_in_memory()
        self.add_bands()
        self.add_provider()
        self.addParameter(QgsProcessingParameterRasterDestination(self.output, self.output_label))
        use_widgets(self)  # the model and band pickers in the Processing dialogs

    def add_model_parameter(self):
        self.addParameter(QgsProcessingParameterString("MODEL_PATH", "Model", optional=True))

    def models(self, parameters, context) -> dict:
        """The model fields of the request (empty: core picks the default for the raster)."""
        model = self.parameterAsString(parameters, "MODEL_PATH", context).strip()
        return {"cloud_models": [model] if model else []}

    def request(self, parameters, context) -> core.ProbabilityRequest:
        return core.ProbabilityRequest(
            s2_raster=self.raster_source(parameters, "SENTINEL_RASTER", context),
            bands=self.parameterAsString(parameters, choices.BANDS, context),
            provider=self.provider_choice(parameters, context),
            in_memory=self.parameterAsBool(parameters, choices.IN_MEMORY, context),
            work_dir=work_dir(),
            **self.models(parameters, context),
        )

    def outputs(self, path: str) -> core.ProbabilityOutputs:
        return core.ProbabilityOutputs(cloud=path)

    def processAlgorithm(self, parameters, context, feedback):
        path = self.parameterAsOutputLayer(parameters, self.output, context)

        def work(fb):
            request = self.request(parameters, context)
            return core.probabilities(request, self.outputs(path), fb)

        style_on_load(context, path, ProbabilityStyler())
        report = run_engine(work, feedback)
        feedback.pushInfo(f"Models: {', '.join(report.cloud_models) or report.shadow_model}")
        for note in report.notes:  # e.g. CUDA requested but not available: ran on the CPU
            feedback.pushInfo(note)
        return {self.output: path}
