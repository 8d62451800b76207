"""Improve cloud masks of many products: a season in one go, one summary row per product."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace

from qgis.core import (
    QgsClassificationRange,
    QgsFillSymbol,
    QgsGraduatedSymbolRenderer,
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputMultipleLayers,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsRendererRange,
)
from qgis.PyQt import sip

from .. import core
from ..core import PERSISTENT_MIN_DATES, PERSISTENT_SHARE, Cancelled, choices
from .base import CloudMaskAlgorithm, QgisFeedback, run_engine, with_help
from .widgets import use_widgets

# Clear fraction classes: the clear dates stand out in green.
CLASSES = (
    (0.0, 0.25, "#d7191c", "mostly cloudy (< 25 % clear)"),
    (0.25, 0.5, "#fdae61", "25-50 % clear"),
    (0.5, 0.75, "#a6d96a", "50-75 % clear"),
    (0.75, 1.0, "#1a9641", "clear (> 75 %)"),
)


def summary_renderer(field: str) -> QgsGraduatedSymbolRenderer:
    ranges = []
    for low, high, colour, label in CLASSES:
        symbol = QgsFillSymbol.createSimple({"color": colour, "outline_color": "#333333", "outline_width": "0.3"})
        symbol.setOpacity(0.6)
        ranges.append(QgsRendererRange(QgsClassificationRange(label, low, high), symbol))
    return QgsGraduatedSymbolRenderer(field, ranges)


# QGIS takes a post-processor by raw pointer and deletes it after use (docs/architecture.md,
# platform facts): each run gets a new one, kept alive here until QGIS has deleted it (the
# algorithm instance may go first).
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


def write_summary(rows: list[core.BatchRow], out_dir: str) -> dict:
    """The summary files; one in use (on Windows: loaded in QGIS) ends the run with what to do."""
    try:
        return core.write_summary(rows, out_dir)
    except core.SummaryInUseError as err:
        raise QgsProcessingException(str(err)) from err


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
            "Masked imagery: optionally, beside each mask, the product's bands (all, or those listed) with "
            "cloud, shadow and nodata set to nodata, named <mask name>_masked.tif; kept on a rerun.\n"
            "Source: optionally, beside each mask, <mask name>_source.tif: which source flagged each pixel "
            "(the product mask, the cloud model, the shadow model, the dilation), as Improve cloud mask's "
            "Source output; the summary then gives, per product, what the product mask alone flags "
            "(product_mask_fraction), what the improved mask flags (masked_fraction) and how much of that "
            "the models added (model_added_fraction) and the dilation grew (dilation_fraction). Kept on a "
            "rerun; turned on for products already done, it is made without replacing their masks.\n"
            "The summary is styled by clear fraction: green dates are clear.\n\n"
            "Season layers, per tile (in the output folder): season_<tile>_valid.tif (dates with data), "
            "_clear.tif (clear dates), _cloud_frequency.tif (cloudy dates / dates with data) and "
            "_persistent.tif: pixels called cloud on nearly every date (at least the share of dates under "
            "advanced parameters, 90 % by default, with at least 5 dates with data). Real clouds move, so "
            "these are most likely bright ground taken for cloud (sand, snow, greenhouses, roofs). The "
            "summary's column persistent_cloud_share gives, per product and field, how much of its cloud "
            "lies on them; the log says when it is large, as that date's clear fraction is then too low.\n"
            "Season report (season_report.html in the output folder, and where 'Season report' says; "
            "opened in the Results Viewer): the clear fraction per date "
            "as a chart (needs matplotlib), the dates ranked by clear fraction in the fields, the season "
            "layers' figures and a small picture of each date with its mask. It is one file that opens "
            "offline."
        )

    def initAlgorithm(self, config=None):
        self.addParameter(
            QgsProcessingParameterMultipleLayers(
                "INPUTS",
                "Sentinel-2 products (.zip, .SAFE, MTD files or band stacks)",
                QgsProcessing.SourceType.TypeFile,
            )
        )
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                choices.AREA,
                "Area (polygons, e.g. your fields)",
                [QgsProcessing.SourceType.TypeVectorPolygon],
                optional=True,
            )
        )
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT_FOLDER", "Output folder"))
        self.add_threshold(choices.CLOUD_THR, "Cloud probability threshold")
        self.add_threshold(choices.SHADOW_THR, "Shadow probability threshold")
        self.add_in_memory()
        self.addParameter(
            QgsProcessingParameterString(
                choices.CLOUD_MODEL, "Cloud model (id or .onnx path; empty: best installed)", optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterString(
                choices.SHADOW_MODEL, "Shadow model (id or .onnx path; empty: default)", optional=True
            )
        )
        self.add_bands()
        self.add_merge_options()
        self.add_resolution()
        self.add_provider()
        self.add_advanced(
            QgsProcessingParameterString(
                "PATTERN",
                "File pattern for folders given as products (comma-separated)",
                defaultValue="*.zip,*.SAFE,*.tif,*.tiff,*.vrt",
                optional=True,
            )
        )
        self.add_advanced(
            QgsProcessingParameterBoolean(
                choices.NODATA_OUTSIDE_AREA, "Nodata outside the area's polygons", defaultValue=False
            )
        )
        self.add_advanced(
            QgsProcessingParameterBoolean(
                "FORCE", "Redo products already done with the same parameters", defaultValue=False
            )
        )
        self.addParameter(
            with_help(
                QgsProcessingParameterBoolean(
                    "WRITE_MASKED", "Also write each product's imagery with its mask applied", defaultValue=False
                ),
                "Beside each mask, <mask name>_masked.tif: the product's bands with cloud, shadow and nodata "
                "set to nodata (as Apply cloud mask does).",
            )
        )
        self.add_advanced(
            with_help(
                QgsProcessingParameterString("MASKED_BANDS", "Bands of the masked imagery (empty: all)", optional=True),
                "Sentinel-2 band names, comma-separated, e.g. B02,B03,B04,B08.",
            )
        )
        self.addParameter(
            with_help(
                QgsProcessingParameterBoolean(
                    "WRITE_SOURCE",
                    "Also write each product's source raster (which source flagged each pixel)",
                    defaultValue=False,
                ),
                "Beside each mask, <mask name>_source.tif, as Improve cloud mask's Source output; the summary "
                "gets its figures (product_mask_fraction, model_added_fraction, dilation_fraction...).",
            )
        )
        self.addOutput(QgsProcessingOutputVectorLayer("SUMMARY", "Summary", QgsProcessing.SourceType.TypeVectorPolygon))
        self._add_season_parameters()
        use_widgets(self)  # the model and band pickers in the Processing dialogs

    def _area(self, parameters, context):
        source = self.parameterAsSource(parameters, choices.AREA, context)
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
            raise QgsProcessingException(
                "The area holds no polygon (or none is selected). Choose a polygon "
                "layer, or turn off 'Selected features only'."
            )
        return core.Area(tuple(wkts), source.sourceCrs().toWkt(), tuple(names), choices.AREA)

    def _options(self, parameters, context) -> core.BatchOptions:
        cloud = self.parameterAsString(parameters, choices.CLOUD_MODEL, context).strip()
        request = replace(
            core.batch_template(
                cloud_models=(cloud,) if cloud else (),
                shadow_model=self.parameterAsString(parameters, choices.SHADOW_MODEL, context).strip() or None,
                bands=self.parameterAsString(parameters, choices.BANDS, context),
                resolution=self.optional_number(parameters, choices.RESOLUTION, context),
                provider=self.provider_choice(parameters, context),
                in_memory=self.parameterAsBool(parameters, choices.IN_MEMORY, context),
            ),
            settings=self.merge_settings(parameters, context),
            cloud_threshold=self.optional_number(parameters, choices.CLOUD_THR, context),
            shadow_threshold=self.optional_number(parameters, choices.SHADOW_THR, context),
        )
        return core.BatchOptions(
            request,
            blank_outside=self.parameterAsBool(parameters, choices.NODATA_OUTSIDE_AREA, context),
            masked=self.parameterAsBool(parameters, "WRITE_MASKED", context),
            masked_bands=self.parameterAsString(parameters, "MASKED_BANDS", context).strip(),
            source=self.parameterAsBool(parameters, "WRITE_SOURCE", context),
        )

    def processAlgorithm(self, parameters, context, feedback):
        inputs = self.parameterAsFileList(parameters, "INPUTS", context)
        out_dir = self.parameterAsString(parameters, "OUTPUT_FOLDER", context)
        options = self._options(parameters, context)
        area = self._area(parameters, context)
        force = self.parameterAsBool(parameters, "FORCE", context)
        pattern = self.parameterAsString(parameters, "PATTERN", context)

        def plan(_):
            core.prepare_output_folder(out_dir)
            self._check_report(parameters, context)
            options.request.settings.validate()
            core.parse_band_list(options.masked_bands)  # a typo fails here, not in every product
            return core.plan_items(inputs, pattern)

        items = run_engine(plan, feedback)
        if not items:
            raise QgsProcessingException("No product was given. Add products (or a folder of them) to the list.")
        core.clean_partials(out_dir, items)
        feedback.pushInfo(f"{len(items)} product(s) -> {out_dir}")
        rows: list[core.BatchRow] = []
        said = [""]

        def report(row: core.BatchRow) -> None:
            if row.notes and not row.reused and row.notes != said[0]:
                said[0] = row.notes  # which models, on the CPU or the GPU and why: once, and when it changes
                feedback.pushInfo(row.notes)
            if row.ok:
                clear = row.area_clear_fraction if area is not None else row.clear_fraction
                done = "kept from an earlier run" if row.reused else f"{row.seconds:.1f} s"
                feedback.pushInfo(f"{row.sensed or row.product}: {100 * (clear or 0):.0f} % clear ({done})")
                if row.provenance():  # with the source raster: what the improvement was, as a single run says
                    feedback.pushInfo(f"  {core.figures_summary(row.provenance())}")
            else:
                feedback.reportError(f"{row.input}: {row.error}", fatalError=False)

        try:
            rows = core.run_sequential(
                items,
                options,
                out_dir,
                area,
                force,
                QgisFeedback(feedback),
                on_row=lambda r: (rows.append(r), report(r)),
            )
        except Cancelled:
            if not rows:  # an earlier run's summary in the folder stays as it was
                raise QgsProcessingException(
                    "Cancelled before the first product was done: nothing was written. Run again to start."
                ) from None
            written = write_summary(rows, out_dir)
            raise QgsProcessingException(
                f"Cancelled after {len(rows)} of {len(items)} products: their masks and the summary "
                f"({written['gpkg']}) are kept. Run again to do the rest."
            ) from None
        season_results = self._season(rows, out_dir, area, parameters, context, feedback)
        written = write_summary(rows, out_dir)
        failed = [r for r in rows if not r.ok]
        if failed:
            feedback.reportError(
                f"{len(failed)} of {len(rows)} product(s) failed; see the status column of the summary.",
                fatalError=False,
            )
        layer = f"{written['gpkg']}|layername=summary"
        field = "area_clear_fraction" if area is not None else "clear_fraction"
        styler = SummaryStyler(field)
        _keep(styler)
        details = QgsProcessingContext.LayerDetails("Cloud mask summary", context.project(), "SUMMARY")
        details.setPostProcessor(styler)
        context.addLayerToLoadOnCompletion(layer, details)
        return {"SUMMARY": layer, "OUTPUT_FOLDER": out_dir, **season_results}

    # -- season layers and report (issue 25): after every product, before the summary

    def _add_season_parameters(self):
        self.add_advanced(
            QgsProcessingParameterNumber(
                "PERSISTENT_SHARE",
                "Persistent cloud: cloud on at least this share of a pixel's dates (0-1)",
                QgsProcessingParameterNumber.Type.Double,
                defaultValue=PERSISTENT_SHARE,
                minValue=0.01,
                maxValue=1.0,
            )
        )
        self.add_advanced(
            QgsProcessingParameterNumber(
                "PERSISTENT_MIN_DATES",
                "Persistent cloud: only pixels with at least this many dates with data",
                QgsProcessingParameterNumber.Type.Integer,
                defaultValue=PERSISTENT_MIN_DATES,
                minValue=1,
            )
        )
        # A file destination with .html: QGIS opens it in the Results Viewer, and a model can name it
        # as its own output. Optional, so that runs and models made before it still run; the report
        # is always in the output folder (REPORT is that one when no path is given).
        self.addParameter(
            QgsProcessingParameterFileDestination(
                "REPORT", "Season report", "HTML files (*.html)", optional=True, createByDefault=True
            )
        )
        self.addOutput(QgsProcessingOutputMultipleLayers("SEASON_LAYERS", "Season layers"))

    def _check_report(self, parameters, context) -> None:
        """A report path that cannot be written is refused before any product runs."""
        destination = self.parameterAsFileOutput(parameters, "REPORT", context)
        if destination:
            core.check_destination(destination, [])

    def _season(self, rows, out_dir, area, parameters, context, feedback) -> dict:
        settings = core.SeasonSettings(
            self.parameterAsDouble(parameters, "PERSISTENT_SHARE", context),
            self.parameterAsInt(parameters, "PERSISTENT_MIN_DATES", context),
        )
        feedback.pushInfo("Season layers and report...")
        season, path = run_engine(
            lambda engine_feedback: core.season_outputs(rows, out_dir, settings, area, engine_feedback), feedback
        )
        for message in season.messages:
            feedback.pushWarning(message)
        paths = []
        for tile in season.tiles:
            feedback.pushInfo(
                f"{tile.tile or 'Season'}: {tile.dates} date(s); {tile.persistent} pixel(s) cloud on "
                f"most dates; layers {tile.name}_*.tif"
            )
            for key, label in (("cloud_frequency", "cloud frequency"), ("persistent", "persistent cloud")):
                details = QgsProcessingContext.LayerDetails(
                    f"{tile.tile or 'Season'} {label}", context.project(), "SEASON_LAYERS"
                )
                context.addLayerToLoadOnCompletion(tile.paths[key], details)
            paths += list(tile.paths.values())
        destination = self.parameterAsFileOutput(parameters, "REPORT", context)
        if destination and os.path.abspath(destination) != os.path.abspath(path):
            with core.replacing(destination, ".html") as tmp:
                shutil.copyfile(path, tmp)
        feedback.pushInfo(f"Season report: {path}")
        return {"REPORT": destination or path, "SEASON_LAYERS": paths}
