"""Merge cloud masks: the seed op ``merge_cloud_masks_simple``."""

from __future__ import annotations

from qgis.core import QgsProcessingOutputNumber, QgsProcessingParameterNumber, QgsProcessingParameterRasterDestination

from ..core import pipeline
from .base import CloudMaskAlgorithm, run_engine, work_dir
from .improve_cloud_mask import FRACTIONS
from .styling import MaskStyler, style_on_load


class MergeCloudMasks(CloudMaskAlgorithm):
    def name(self):
        return "mergecloudmasks"

    def displayName(self):
        return "Merge cloud masks"

    def shortHelpString(self):
        return ("Thresholds cloud and shadow probabilities and merges them with the product's "
                "cloud mask: cloud where cloud probability > threshold or the product says cloud, "
                "shadow where shadow probability > threshold or the product says shadow, then a "
                "dilation by a disk (default 5 px). Nodata stays nodata (255) and never counts as "
                "cloud. The product mask may be in any CRS or resolution. Output: 0 clear, 1 cloud, "
                "2 shadow (or binary 0/1).")

    def initAlgorithm(self, config=None):
        self.add_raster("CLOUD_PROBABILITY", "Cloud probability")
        self.add_raster("SHADOW_PROBABILITY", "Shadow probability", optional=True)
        self.add_raster("PRODUCT_MASK", "Product cloud mask", optional=True)
        self.addParameter(QgsProcessingParameterNumber(
            "CLOUD_PROB_THRESHOLD", "Cloud probability threshold", QgsProcessingParameterNumber.Double,
            defaultValue=0.3, minValue=0.0, maxValue=1.0))
        self.addParameter(QgsProcessingParameterNumber(
            "SHADOW_PROB_THRESHOLD", "Shadow probability threshold", QgsProcessingParameterNumber.Double,
            defaultValue=0.2, minValue=0.0, maxValue=1.0))
        self.add_merge_options()
        self.addParameter(QgsProcessingParameterRasterDestination("MERGED_CLOUD_MASK", "Merged cloud mask"))
        for name in FRACTIONS:
            self.addOutput(QgsProcessingOutputNumber(name, name.replace("_", " ").capitalize()))

    def processAlgorithm(self, parameters, context, feedback):
        settings = self.merge_settings(
            parameters, context,
            self.parameterAsDouble(parameters, "CLOUD_PROB_THRESHOLD", context),
            self.parameterAsDouble(parameters, "SHADOW_PROB_THRESHOLD", context))
        request = pipeline.MergeRequest(
            self.raster_source(parameters, "CLOUD_PROBABILITY", context),
            self.raster_source(parameters, "SHADOW_PROBABILITY", context, required=False) or None,
            self.raster_source(parameters, "PRODUCT_MASK", context, required=False) or None,
            settings, work_dir=work_dir())
        mask = self.parameterAsOutputLayer(parameters, "MERGED_CLOUD_MASK", context)
        fractions = run_engine(lambda fb: pipeline.merge(request, mask, fb), feedback)
        style_on_load(context, mask, MaskStyler.get(settings.output_mode == "binary"))
        return {"MERGED_CLOUD_MASK": mask, **fractions.as_dict()}
