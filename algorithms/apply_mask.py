"""Apply cloud mask: any raster with the chosen classes of an improved mask set to nodata."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputNumber,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProject,
)

from .. import core
from ..core import MASKED_CLASSES, choices
from .base import CloudMaskAlgorithm, run_engine, with_help, work_dir
from .styling import style_on_load

CLASS_LABELS = ("cloud", "cloud shadow", "nodata (no data in the mask, or outside it)")  # order of MASKED_CLASSES


class SourceStyler(QgsProcessingLayerPostProcessorInterface):
    """Gives the masked raster the look of the raster it came from (bands, stretch, colours).

    So the two compare at a glance. Looked up when QGIS loads the result (in the main thread)."""

    def __init__(self, layer_id: str):
        super().__init__()
        self.layer_id = layer_id

    def postProcessLayer(self, layer, context, feedback):
        source = (context.project() or QgsProject.instance()).mapLayer(self.layer_id)
        if layer is None or not layer.isValid() or source is None or source.renderer() is None:
            return
        if source.bandCount() != layer.bandCount():
            return
        renderer = source.renderer().clone()
        renderer.setInput(layer.dataProvider())
        layer.setRenderer(renderer)
        layer.triggerRepaint()


class ApplyMask(CloudMaskAlgorithm):
    def name(self):
        return "applymask"

    def displayName(self):
        return "Apply cloud mask"

    def shortHelpString(self):
        return (
            "Removes clouds from imagery: the pixels of the chosen classes of an improved cloud mask become "
            "nodata in a copy of the raster. Everything else is kept: all bands, the data type, band "
            "names, colours and metadata.\n\n"
            "Raster to mask: any raster: a Sentinel-2 stack, one band, an index such as NDVI. It may be on "
            "another grid, resolution or CRS than the mask: the mask is brought onto the raster's pixels, "
            "and a raster pixel is masked when any masked mask pixel overlaps it, so no cloudy pixel gets "
            "through a coarser raster.\n"
            "Cloud mask: the mask written by Improve cloud mask (0 clear, 1 cloud, 2 cloud shadow, 255 "
            "nodata), or its binary form (cloud or shadow in one class).\n"
            "Classes to mask: cloud, cloud shadow and nodata by default. Nodata covers the mask's own "
            "nodata and the parts of the raster the mask does not cover.\n"
            "Buffer: optional, in metres: cloud and shadow grow by this distance (rounded up to whole "
            "mask pixels) before masking, for the hazy edges around clouds.\n"
            "Output nodata: the raster's own nodata value; for a band without one, NaN for decimal numbers, "
            "the lowest value for signed whole numbers (-32768 for 16 bits) and the highest for unsigned "
            "ones (255 for bytes, 65535 for 16 bits). An alpha band becomes transparent instead."
        )

    def initAlgorithm(self, config=None):
        self.add_raster("INPUT", "Raster to mask")
        self.add_raster(choices.MASK, "Cloud mask (from Improve cloud mask)")
        self.addParameter(
            with_help(
                QgsProcessingParameterEnum(
                    "CLASSES",
                    "Classes to mask",
                    options=list(CLASS_LABELS),
                    allowMultiple=True,
                    defaultValue=list(range(len(MASKED_CLASSES))),
                ),
                "Pixels of these classes become nodata in the output.",
            )
        )
        self.addParameter(
            with_help(
                QgsProcessingParameterNumber(
                    "BUFFER",
                    "Buffer around clouds and shadows (metres)",
                    QgsProcessingParameterNumber.Type.Double,
                    defaultValue=0.0,
                    minValue=0.0,
                ),
                "Grow cloud and shadow by this distance before masking (0: as in the mask).",
            )
        )
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Masked raster"))
        self.addOutput(QgsProcessingOutputNumber("MASKED_FRACTION", "Masked fraction"))

    def processAlgorithm(self, parameters, context, feedback):
        raster = self.raster_source(parameters, "INPUT", context)
        mask = self.raster_source(parameters, choices.MASK, context)
        chosen = self.parameterAsEnums(parameters, "CLASSES", context)
        classes = tuple(core.MASKED_CLASSES[i] for i in sorted(chosen))
        buffer_m = self.parameterAsDouble(parameters, "BUFFER", context)
        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        layer = self.parameterAsRasterLayer(parameters, "INPUT", context)
        project = context.project()
        if layer is not None and project is not None and project.mapLayer(layer.id()) is not None:
            style_on_load(context, output, SourceStyler(layer.id()))  # a layer of the project: keep its look
        result = run_engine(
            lambda fb: core.apply_cloud_mask(raster, mask, output, classes, buffer_m, fb, work_dir()), feedback
        )
        feedback.pushInfo(core.describe_applied_mask(result))
        for warning in core.applied_mask_warnings(result):
            feedback.reportError(warning, fatalError=False)
        return {"OUTPUT": output, "MASKED_FRACTION": result.masked_fraction}
