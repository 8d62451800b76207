"""Prepare Sentinel-2 product: a downloaded product becomes the band stack and the product mask."""

from __future__ import annotations

from qgis.core import (
    QgsContrastEnhancement,
    QgsCoordinateReferenceSystem,
    QgsMultiBandColorRenderer,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsRasterMinMaxOrigin,
)

from .. import core
from ..core import choices
from .base import CloudMaskAlgorithm, run_engine
from .styling import style_on_load

TRUE_COLOUR = ("B04", "B03", "B02")


class TrueColourStyler(QgsProcessingLayerPostProcessorInterface):
    """Show a loaded stack as a user expects a Sentinel-2 image: red, green, blue = B04, B03, B02.

    QGIS's default would be bands 1, 2, 3: B01, B02, B03. Stretched 2-98 %."""

    def postProcessLayer(self, layer, context, feedback):
        if layer is None or not layer.isValid():
            return
        try:
            descriptions = list(core.raster_info(layer.source().split("|")[0]).descriptions)
        except core.RasterError:
            return
        if not all(band in descriptions for band in TRUE_COLOUR):
            return  # not a stack we can tell the colours of: leave QGIS's default
        bands = [descriptions.index(band) + 1 for band in TRUE_COLOUR]
        layer.setRenderer(QgsMultiBandColorRenderer(layer.dataProvider(), *bands))
        layer.setContrastEnhancement(
            QgsContrastEnhancement.ContrastEnhancementAlgorithm.StretchToMinimumMaximum,
            QgsRasterMinMaxOrigin.Limits.CumulativeCut,
        )
        layer.triggerRepaint()


class PrepareS2Product(CloudMaskAlgorithm):
    def name(self):
        return "prepares2product"

    def displayName(self):
        return "Prepare Sentinel-2 product"

    def shortHelpString(self):
        return (
            "Turns a downloaded Sentinel-2 L2A or L1C product into what 'Improve cloud mask' reads: "
            "a band stack (the 12 L2A bands B01-B12 without B10, or the 13 L1C bands, in that order, "
            "band descriptions = band names) and the product's own mask on the same grid.\n\n"
            "Product: the .zip as downloaded (read in place, not unpacked), the MTD_MSIL2A.xml or "
            "MTD_MSIL1C.xml inside the .SAFE folder, or the .SAFE folder itself (type or paste its "
            "path: the file picker selects files only).\n"
            "Resolution: the grid of the outputs, 10, 20 or 60 m. Bands made by ESA at that "
            "resolution are used as they are; others are averaged down or bilinearly resampled "
            "up; the mask is resampled nearest.\n"
            "Extent: optional; cut the outputs to it (snapped outward to whole pixels).\n"
            "The processing baseline and the radiometric offset (BOA_ADD_OFFSET / RADIO_ADD_OFFSET, "
            "-1000 since baseline 04.00) are recorded in the stack's metadata; the models then use "
            "(DN + offset) / 10000, so old and new products give the same result.\n"
            "Product mask: the scene classification (SCL, 20 m) for L2A; for L1C the MSK_CLASSI "
            "mask coded like SCL (9 opaque cloud, 10 cirrus, 11 snow, 7 nothing flagged); L1C "
            "products before baseline 04.00 have no raster mask and this output is skipped. "
            "Use product mask kind 'scl' with it (the improve algorithms pick that by themselves).\n"
            "Output format follows the extension: .vrt is instant and small but refers to the "
            "product's files (keep the product where it is); .tif is a self-contained copy."
        )

    def initAlgorithm(self, config=None):
        # A File parameter (not Folder): a product is usually a .zip or picked by its MTD
        # file, and the value is only a string, so a typed .SAFE folder path works too.
        self.addParameter(
            QgsProcessingParameterFile(
                "INPUT",
                "Sentinel-2 product",
                behavior=QgsProcessingParameterFile.Behavior.File,
                fileFilter="Sentinel-2 product (*.zip *.ZIP MTD_MSIL2A.xml MTD_MSIL1C.xml);;All files (*)",
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                choices.RESOLUTION,
                "Resolution in metres (10, 20 or 60)",
                QgsProcessingParameterNumber.Type.Double,
                defaultValue=10.0,
                minValue=10.0,
            )
        )
        self.addParameter(
            QgsProcessingParameterExtent(choices.EXTENT, "Extent to cut (empty: whole tile)", optional=True)
        )
        self.addParameter(QgsProcessingParameterRasterDestination(choices.S2_RASTER, "Sentinel-2 band stack"))
        self.addParameter(
            QgsProcessingParameterRasterDestination(
                choices.PRODUCT_MASK, "Product mask (SCL)", optional=True, createByDefault=True
            )
        )

    def processAlgorithm(self, parameters, context, feedback):
        source = self.parameterAsFile(parameters, "INPUT", context)
        if not core.is_product(source):
            raise QgsProcessingException(
                core.zip_problem(source)
                or (
                    f"'{source}' is not a Sentinel-2 product: give the .zip, the .SAFE folder or the "
                    "MTD_MSIL2A.xml / MTD_MSIL1C.xml in it."
                )
            )
        resolution = self.parameterAsDouble(parameters, choices.RESOLUTION, context)
        bounds = None
        if parameters.get(choices.EXTENT):
            crs = QgsCoordinateReferenceSystem.fromWkt(run_engine(lambda _: core.product_crs(source), feedback))
            extent = self.parameterAsExtent(parameters, choices.EXTENT, context, crs)
            if not extent.isNull() and not extent.isEmpty():
                bounds = (extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum())
        stack = self.parameterAsOutputLayer(parameters, choices.S2_RASTER, context)
        style_on_load(context, stack, TrueColourStyler())
        mask = self.optional_output(parameters, choices.PRODUCT_MASK, context)
        product, mask = run_engine(lambda _: core.prepare_product(source, stack, mask, resolution, bounds), feedback)
        offset = core.stack_metadata(product, source).get(product.offset_key, "none")
        feedback.pushInfo(
            f"{product.level} product, baseline {product.baseline}, radiometric offset "
            f"{offset}, {len(product.bands)} bands at {resolution:g} m."
        )
        results = {choices.S2_RASTER: stack}
        if mask:
            results[choices.PRODUCT_MASK] = mask
        elif self.optional_output(parameters, choices.PRODUCT_MASK, context):
            feedback.reportError(
                "The product has no raster cloud mask (L1C before baseline 04.00): no product mask was written.",
                fatalError=False,
            )
        return results
