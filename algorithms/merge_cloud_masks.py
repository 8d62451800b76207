"""Merge cloud masks: FarmVibes.AI's op ``merge_cloud_masks_simple``."""

from __future__ import annotations

from dataclasses import replace

from qgis.core import QgsProcessingOutputNumber, QgsProcessingParameterRasterDestination

from .. import core
from ..core import choices
from .base import CloudMaskAlgorithm, run_engine, work_dir
from .improve_cloud_mask import FRACTIONS
from .styling import MaskStyler, style_on_load


class MergeCloudMasks(CloudMaskAlgorithm):
    def name(self):
        return "mergecloudmasks"

    def displayName(self):
        return "Merge cloud masks"

    def shortHelpString(self):
        return (
            "Thresholds cloud and shadow probabilities and merges them with the product's "
            "cloud mask: cloud where cloud probability > threshold or the product says cloud, "
            "shadow where shadow probability > threshold or the product says shadow, then a "
            f"dilation by a disk (default {choices.DEFAULTS.dilation} px), then the minimum area "
            "(advanced: small patches cleared, small gaps filled, as FarmVibes.AI's min_area). "
            "Nodata stays nodata (255) "
            "and never counts as cloud: the nodata value each probability raster declares "
            "(e.g. FarmVibes.AI's 100), NaN, or a mask band; where only the product mask has "
            "no data, the probabilities decide. Other "
            "probabilities outside 0..1 are refused with a message. The product mask may be in "
            "any CRS or resolution. Output: 0 clear, 1 cloud, 2 shadow (or binary 0/1, "
            "FarmVibes.AI's output; see docs/farmvibes.md for how to reproduce it exactly).\n\n"
            "Thresholds: empty uses the value recommended for the model "
            "that computed the probability raster (recorded in it by this plugin's probability "
            "algorithms), else 0.3 for cloud and 0.2 for shadow, FarmVibes.AI's defaults. When both "
            "rasters come from one model that decides by the most likely class (the UKIS models: "
            "a pixel is cloud when its cloud probability is higher than both its shadow and its "
            "clear probability), both empty thresholds decide that way; setting either threshold "
            "decides by thresholds instead."
        )

    def initAlgorithm(self, config=None):
        self.add_raster(choices.CLOUD_PROBABILITY, "Cloud probability")
        self.add_raster(choices.SHADOW_PROBABILITY, "Shadow probability", optional=True)
        self.add_raster(choices.PRODUCT_MASK, "Product cloud mask", optional=True)
        self.add_threshold("CLOUD_PROB_THRESHOLD", "Cloud probability threshold")
        self.add_threshold("SHADOW_PROB_THRESHOLD", "Shadow probability threshold")
        self.add_merge_options()
        self.addParameter(QgsProcessingParameterRasterDestination("MERGED_CLOUD_MASK", "Merged cloud mask"))
        for name in FRACTIONS:
            self.addOutput(QgsProcessingOutputNumber(name, name.replace("_", " ").capitalize()))

    def processAlgorithm(self, parameters, context, feedback):
        cloud = self.raster_source(parameters, choices.CLOUD_PROBABILITY, context)
        shadow = self.raster_source(parameters, choices.SHADOW_PROBABILITY, context, required=False) or None
        # Unset: what the models that made the probabilities recommend (as 'Improve cloud mask'
        # does: the same rule decides), else FarmVibes.AI's 0.3 / 0.2.
        recorded = run_engine(lambda _: core.recorded(cloud, shadow), None)
        decided = core.decide(
            self.optional_number(parameters, "CLOUD_PROB_THRESHOLD", context),
            self.optional_number(parameters, "SHADOW_PROB_THRESHOLD", context),
            recorded,
        )
        feedback.pushInfo(decided.note())
        settings = replace(
            self.merge_settings(parameters, context, decided.cloud_threshold, decided.shadow_threshold),
            most_likely_class=decided.most_likely_class,
        )
        request = core.MergeRequest(
            cloud,
            shadow,
            self.raster_source(parameters, choices.PRODUCT_MASK, context, required=False) or None,
            settings,
            work_dir=work_dir(),
        )
        mask = self.parameterAsOutputLayer(parameters, "MERGED_CLOUD_MASK", context)
        style_on_load(context, mask, MaskStyler(settings.output_mode == "binary"))
        fractions = run_engine(lambda fb: core.merge_masks(request, mask, fb), feedback)
        return {"MERGED_CLOUD_MASK": mask, **fractions.as_dict()}
