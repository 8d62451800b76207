"""Improve cloud masks of many products: a season in one go, one summary row per product."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qgis.core import (
    QgsClassificationRange,
    QgsFillSymbol,
    QgsGraduatedSymbolRenderer,
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsRendererRange,
)
from qgis.PyQt import sip

from ..core.progress import Cancelled
from .base import CloudMaskAlgorithm, QgisFeedback, run_engine
from .widgets import use_widgets

if TYPE_CHECKING:  # the engine is imported when a run needs it (see base.py)
    from ..core.season import batch

# Clear fraction classes: the clear dates stand out in green.
CLASSES = ((0.0, 0.25, "#d7191c", "mostly cloudy (< 25 % clear)"), (0.25, 0.5, "#fdae61", "25-50 % clear"),
           (0.5, 0.75, "#a6d96a", "50-75 % clear"), (0.75, 1.0, "#1a9641", "clear (> 75 %)"))


def summary_renderer(field: str) -> QgsGraduatedSymbolRenderer:
    ranges = []
    for low, high, colour, label in CLASSES:
        symbol = QgsFillSymbol.createSimple({"color": colour, "outline_color": "#333333", "outline_width": "0.3"})
        symbol.setOpacity(0.6)
        ranges.append(QgsRendererRange(QgsClassificationRange(label, low, high), symbol))
    return QgsGraduatedSymbolRenderer(field, ranges)


# QGIS takes a post-processor by raw pointer and deletes it after use (docs/architecture.md, platform facts): each run gets a
# new one, kept alive here until QGIS has deleted it (the algorithm instance may go first).
_pending: list = []


def _keep(styler) -> None:
    _pending[:] = [p for p in _pending if not sip.isdeleted(p)]
    _pending.append(styler)


class SummaryStyler(QgsProcessingLayerPostProcessorInterface):
    """Styles the summary by clear fraction."""

    def __init__(self, field: str):
        super().__init__()
        self.field = field

    def postProcessLayer(self, layer, context, feedback):
        if layer is not None and layer.isValid():
            layer.setRenderer(summary_renderer(self.field))
            layer.triggerRepaint()


class ImproveCloudMaskBatch(CloudMaskAlgorithm):
    def name(self):
        return "improvecloudmaskbatch"

    def displayName(self):
        return "Improve cloud masks of many products"

    def shortHelpString(self):
        return (
            "Runs 'Improve cloud mask' on many Sentinel-2 products and tells which dates are clear.\n\n"
            "Products: .zip files as downloaded, .SAFE folders, MTD_MSIL2A.xml / MTD_MSIL1C.xml files or "
            "band stacks; a folder (searched for the file pattern under advanced parameters) or a pattern "
            "such as /data/2025/*.zip is accepted too.\n"
            "Area: optional polygons (your fields; 'selected features only' is honoured). Only the part of "
            "each product around them is processed (the pixels are the same as for the whole scene), "
            "the masks cover the fields' bounding box, and the summary gives the fractions within the "
            "fields, and per field when there are several.\n"
            "Output folder: one mask per product, named <tile>_<sensing time>_<level>.tif, and the summary "
            "(summary.gpkg, summary.csv): one row per product with its footprint, date, tile, level, "
            "baseline, clear/cloud/shadow fractions of its valid pixels (and within the area), the mask's "
            "path and a status. A product that cannot be used (damaged zip, outside the area...) gets its "
            "row with the reason; the others go on. Products already done with the same parameters are "
            "kept, so a second run only does what is new or failed. In a folder, the masks of an earlier run "
            "and the product mask beside a prepared stack are not taken for products.\n"
            "The summary is styled by clear fraction: green dates are clear.")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterMultipleLayers(
            "INPUTS", "Sentinel-2 products (.zip, .SAFE, MTD files or band stacks)", QgsProcessing.SourceType.TypeFile))
        self.addParameter(QgsProcessingParameterFeatureSource(
            "AREA", "Area (polygons, e.g. your fields)", [QgsProcessing.SourceType.TypeVectorPolygon], optional=True))
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT_FOLDER", "Output folder"))
        self.add_threshold("CLOUD_THR", "Cloud probability threshold")
        self.add_threshold("SHADOW_THR", "Shadow probability threshold")
        self.add_in_memory()
        self.addParameter(QgsProcessingParameterString(
            "CLOUD_MODEL", "Cloud model (id or .onnx path; empty: best installed)", optional=True))
        self.addParameter(QgsProcessingParameterString(
            "SHADOW_MODEL", "Shadow model (id or .onnx path; empty: default)", optional=True))
        self.add_bands()
        self.add_merge_options()
        self.add_advanced(QgsProcessingParameterNumber(
            "RESOLUTION", "Processing resolution in metres (0: native)",
            QgsProcessingParameterNumber.Type.Double, defaultValue=0.0, minValue=0.0))
        self.add_provider()
        self.add_advanced(QgsProcessingParameterString(
            "PATTERN", "File pattern for folders given as products (comma-separated)",
            defaultValue="*.zip,*.SAFE,*.tif,*.tiff,*.vrt", optional=True))
        self.add_advanced(QgsProcessingParameterBoolean(
            "NODATA_OUTSIDE_AREA", "Nodata outside the area's polygons", defaultValue=False))
        self.add_advanced(QgsProcessingParameterBoolean(
            "FORCE", "Redo products already done with the same parameters", defaultValue=False))
        self.addOutput(QgsProcessingOutputVectorLayer("SUMMARY", "Summary", QgsProcessing.SourceType.TypeVectorPolygon))
        use_widgets(self)  # the model and band pickers in the Processing dialogs

    def _area(self, parameters, context):
        from ..core import area as area_mod
        source = self.parameterAsSource(parameters, "AREA", context)
        if source is None:
            return None
        fields = source.fields()
        label = next((f.name() for f in fields if f.typeName().lower() in ("string", "text")), None)
        wkts, names = [], []
        for feature in source.getFeatures():
            if not feature.hasGeometry():
                continue
            wkts.append(feature.geometry().asWkt())
            value = feature[label] if label else None
            names.append(str(value) if value not in (None, "") else str(feature.id()))
        if not wkts:
            raise QgsProcessingException("The area holds no polygon (or none is selected). Choose a polygon "
                                         "layer, or turn off 'Selected features only'.")
        return area_mod.Area(tuple(wkts), source.sourceCrs().toWkt(), tuple(names), "AREA")

    def _options(self, parameters, context) -> batch.BatchOptions:
        from ..core.season import batch
        settings = self.merge_settings(parameters, context)
        cloud = self.parameterAsString(parameters, "CLOUD_MODEL", context).strip()
        return batch.BatchOptions(
            cloud_models=(cloud,) if cloud else (),
            shadow_model=self.parameterAsString(parameters, "SHADOW_MODEL", context).strip(),
            cloud_threshold=self.optional_number(parameters, "CLOUD_THR", context),
            shadow_threshold=self.optional_number(parameters, "SHADOW_THR", context),
            bands=self.parameterAsString(parameters, "BANDS", context),
            resolution=self.parameterAsDouble(parameters, "RESOLUTION", context),
            provider=self.provider_choice(parameters, context),
            in_memory=self.parameterAsBool(parameters, "IN_MEMORY", context),
            product_kind=settings.product_kind, dilation=settings.dilation, min_area=settings.min_area,
            output_mode=settings.output_mode,
            blank_outside=self.parameterAsBool(parameters, "NODATA_OUTSIDE_AREA", context))

    def processAlgorithm(self, parameters, context, feedback):
        from ..core.season import batch, summary
        inputs = self.parameterAsFileList(parameters, "INPUTS", context)
        out_dir = self.parameterAsString(parameters, "OUTPUT_FOLDER", context)
        options = self._options(parameters, context)
        area = self._area(parameters, context)
        force = self.parameterAsBool(parameters, "FORCE", context)
        pattern = self.parameterAsString(parameters, "PATTERN", context)

        def plan(_):
            batch.prepare_output_folder(out_dir)
            options.settings().validate()
            return batch.plan_items(inputs, pattern)
        items = run_engine(plan, feedback)
        if not items:
            raise QgsProcessingException("No product was given. Add products (or a folder of them) to the list.")
        batch.clean_partials(out_dir, items)
        feedback.pushInfo(f"{len(items)} product(s) -> {out_dir}")
        rows: list[batch.Row] = []
        said = [""]

        def report(row: batch.Row) -> None:
            if row.notes and not row.reused and row.notes != said[0]:
                said[0] = row.notes  # which models, on the CPU or the GPU and why: once, and when it changes
                feedback.pushInfo(row.notes)
            if row.ok:
                clear = row.area_clear_fraction if area is not None else row.clear_fraction
                done = "kept from an earlier run" if row.reused else f"{row.seconds:.1f} s"
                feedback.pushInfo(f"{row.sensed or row.product}: {100 * (clear or 0):.0f} % clear ({done})")
            else:
                feedback.reportError(f"{row.input}: {row.error}", fatalError=False)
        try:
            rows = batch.run_sequential(items, options, out_dir, area, force, QgisFeedback(feedback),
                                        on_row=lambda r: (rows.append(r), report(r)))
        except Cancelled:
            if not rows:  # an earlier run's summary in the folder stays as it was
                raise QgsProcessingException("Cancelled before the first product was done: nothing was "
                                             "written. Run again to start.") from None
            written = summary.write_all(rows, out_dir)
            raise QgsProcessingException(
                f"Cancelled after {len(rows)} of {len(items)} products: their masks and the summary "
                f"({written['gpkg']}) are kept. Run again to do the rest.") from None
        written = summary.write_all(rows, out_dir)
        failed = [r for r in rows if not r.ok]
        if failed:
            feedback.reportError(f"{len(failed)} of {len(rows)} product(s) failed; see the status column of "
                                 "the summary.", fatalError=False)
        layer = f"{written['gpkg']}|layername=summary"
        field = "area_clear_fraction" if area is not None else "clear_fraction"
        styler = SummaryStyler(field)
        _keep(styler)
        details = QgsProcessingContext.LayerDetails("Cloud mask summary", context.project(), "SUMMARY")
        details.setPostProcessor(styler)
        context.addLayerToLoadOnCompletion(layer, details)
        return {"SUMMARY": layer, "OUTPUT_FOLDER": out_dir}
