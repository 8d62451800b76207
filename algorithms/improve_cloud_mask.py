"""Improve cloud mask: FarmVibes.AI's workflow ``improve_cloud_mask`` as one algorithm."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
)

from .. import core
from ..core import MASK, OptionalOutput, choices, optional_outputs
from .area_parameters import add_area_parameters, selection
from .base import CloudMaskAlgorithm, run_engine, work_dir
from .styling import MaskStyler, ProbabilityStyler, SourceStyler, style_on_load
from .widgets import use_widgets

FRACTIONS = ("CLOUD_FRACTION", "SHADOW_FRACTION", "CLEAR_FRACTION")
# With a SOURCE output: what each source contributed (fractions of valid pixels).
SOURCE_FIGURES = {
    "PRODUCT_MASK_FRACTION": "Product mask fraction (what the product mask flags)",
    "MASKED_FRACTION": "Masked fraction (what the improved mask flags)",
    "MODEL_ADDED_FRACTION": "Added by the models (the product mask missed it)",
    "DILATION_FRACTION": "Added by the dilation",
    "FILLED_FRACTION": "Filled by the minimum area",
    "CLEARED_FRACTION": "Cleared by the minimum area",
}


class ImproveCloudMask(CloudMaskAlgorithm):
    ensemble = False

    def name(self):
        return "improvecloudmask"

    def displayName(self):
        return "Improve cloud mask"

    def shortHelpString(self):
        return (
            "Runs a cloud and a cloud-shadow segmentation model over a Sentinel-2 raster, "
            "thresholds their probabilities and merges them with the product's own cloud mask "
            "into one improved mask: 0 clear, 1 cloud, 2 cloud shadow, 255 nodata.\n\n"
            "Sentinel-2 raster: a band stack (the 12-band L2A stack B01-B12 without B10, all 13 "
            "bands, or any bands named in their descriptions or in the advanced band list).\n"
            "Product mask: optional; the scene's own mask (rasterised cloud mask, SCL, QA60 or "
            "cloud probability: choose its kind under advanced parameters). Any CRS or "
            "resolution; it is resampled onto the raster's grid.\n"
            "Models: an installed model id (see Manage models…) or the path to an .onnx with its "
            "card beside it. Empty: the best installed model for the raster's processing level; "
            "the shadow model defaults to the cloud model when that gives shadow too.\n"
            "Thresholds: empty uses the model's own rule. The UKIS models decide each pixel by "
            "its most likely class, as their authors do: cloud where the cloud probability is "
            "higher than both the shadow and the clear probability, shadow likewise (so a pixel "
            "can be cloud at a probability under 0.5). Set a threshold to decide by thresholds "
            "instead (cloud where its probability is over the cloud threshold, shadow likewise; "
            "the other threshold then takes the model's recommended value). Other models use "
            "their recommended thresholds.\n"
            "Processing resolution (advanced): empty runs the models at the resolution they "
            "were made for (30 m for the UKIS models: faster, and as their authors run them; "
            "10 m for FarmVibes.AI's models and s2cloudless; with models of different "
            "resolutions, the finest); 0 runs them on the raster's own pixels. Each pixel gets "
            "the decision of the coarser pixel it lies in; the product mask is applied at the "
            "raster's own resolution.\n"
            "Minimum area (advanced): FarmVibes.AI's min_area, after the dilation: patches of "
            "cloud and shadow together smaller than it are cleared, smaller clear gaps filled.\n"
            "Extent / Area: optional; process only there (an extent, polygons such as your fields, or "
            "both: their intersection; 'selected features only' is honoured). Only the tiles the area "
            "needs are run, the pixels there are the same as for the whole scene, and the outputs "
            "cover the area's bounding box (nodata outside the polygons if asked); with an area the "
            "fractions are those within its polygons.\n"
            "Which source flagged each pixel (optional output): 0 clear, 1 product mask and model, "
            "2 cloud model only (the product mask missed it), 3 product mask only, 4 shadow model only "
            "(the product mask missed it), 5 dilation, 6 small clear gap filled and 7 small patch "
            "cleared (minimum area; 7 is clear in the mask), 255 nodata; it is flagged exactly where "
            "the mask is cloud or shadow. With it the log and the outputs give what the product mask "
            "flags, what the improved mask flags, and how much of that the models and the dilation "
            "added.\n"
            "Fractions are of valid (not nodata) pixels."
        )

    def initAlgorithm(self, config=None):
        self.add_raster(choices.S2_RASTER, "Sentinel-2 raster")
        self.add_raster(choices.PRODUCT_MASK, "Product cloud mask", optional=True)
        self.add_threshold(choices.CLOUD_THR, "Cloud probability threshold")
        self.add_threshold(choices.SHADOW_THR, "Shadow probability threshold")
        self.add_in_memory()
        self.add_model_parameters()
        self.add_bands()
        self.add_merge_options()
        self.add_resolution()
        self.add_provider()
        add_area_parameters(self)
        self.addParameter(QgsProcessingParameterRasterDestination(MASK, "Improved cloud mask"))
        for output in self.optional_outputs():
            self.addParameter(
                QgsProcessingParameterRasterDestination(output.name, output.label, optional=True, createByDefault=False)
            )
        for name in FRACTIONS:
            self.addOutput(QgsProcessingOutputNumber(name, name.replace("_", " ").capitalize()))
        for name, label in SOURCE_FIGURES.items():
            self.addOutput(QgsProcessingOutputNumber(name, label))
        use_widgets(self)  # the model and band pickers in the Processing dialogs

    def add_model_parameters(self):
        self.addParameter(QgsProcessingParameterString(choices.CLOUD_MODEL, "Cloud model", optional=True))
        self.addParameter(QgsProcessingParameterString(choices.SHADOW_MODEL, "Shadow model", optional=True))

    def optional_outputs(self) -> tuple[OptionalOutput, ...]:
        return optional_outputs(self.ensemble)

    def cloud_models(self, parameters, context) -> list[str]:
        model = self.parameterAsString(parameters, choices.CLOUD_MODEL, context).strip()
        return [model] if model else []

    def processAlgorithm(self, parameters, context, feedback):
        mask = self.parameterAsOutputLayer(parameters, MASK, context)
        wanted = {o: self.optional_output(parameters, o.name, context) for o in self.optional_outputs()}
        fields = {o.field: path for o, path in wanted.items()}
        request = core.ImproveRequest(
            probability=core.ProbabilityRequest(
                s2_raster=self.raster_source(parameters, choices.S2_RASTER, context),
                cloud_models=self.cloud_models(parameters, context),
                shadow_model=self.parameterAsString(parameters, choices.SHADOW_MODEL, context).strip() or None,
                bands=self.parameterAsString(parameters, choices.BANDS, context),
                resolution=self.optional_number(parameters, choices.RESOLUTION, context),
                provider=self.provider_choice(parameters, context),
                in_memory=self.parameterAsBool(parameters, choices.IN_MEMORY, context),
                work_dir=work_dir(),
            ),
            product_mask=self.raster_source(parameters, choices.PRODUCT_MASK, context, required=False) or None,
            settings=self.merge_settings(parameters, context),
            cloud_threshold=self.optional_number(parameters, choices.CLOUD_THR, context),
            shadow_threshold=self.optional_number(parameters, choices.SHADOW_THR, context),
            mask=mask,
            ensemble=self.ensemble,
            source=fields.pop("source", None),
            outputs=core.ProbabilityOutputs(**fields),
        )
        written = {o.name: path for o, path in wanted.items() if path}
        style_on_load(context, mask, MaskStyler(request.settings.output_mode == "binary"))
        for output, path in wanted.items():
            if path:
                style_on_load(context, path, ProbabilityStyler() if output.probability else SourceStyler())
        where = selection(self, parameters, context)
        # With an area: only the tiles it needs; its pixels equal a whole-scene run's.
        report = run_engine(lambda fb: core.improve(request, fb, where), feedback)
        feedback.pushInfo(
            f"Cloud models: {', '.join(report.cloud_models)}; shadow model: "
            f"{report.shadow_model or 'none'}. " + " ".join(report.notes)
        )
        if report.valid_pixels == 0:
            feedback.reportError(
                "The raster has no valid pixel: the mask is all nodata and the fractions are 0.", fatalError=False
            )
        return {MASK: mask, **report.fractions, **written, **report.provenance}
