"""Improve cloud masks of many products (cloudmask:improvecloudmaskbatch) through QGIS Processing.

A bad product does not stop the batch, the area's selected fields are honoured, and the
summary loads as a layer styled by clear fraction."""

import processing
import pytest
from log_feedback import LogFeedback
from qgis.core import (
    QgsFeature,
    QgsGeometry,
    QgsGraduatedSymbolRenderer,
    QgsProcessingContext,
    QgsProcessingFeatureSourceDefinition,
    QgsProcessingFeedback,
    QgsProject,
    QgsRectangle,
    QgsVectorLayer,
)
from s2_product import build_product

ALG = "cloudmask:improvecloudmaskbatch"
MODEL = {"CLOUD_MODEL": "ukis-6b-l2a", "SHADOW_MODEL": "ukis-6b-l2a"}


@pytest.fixture(scope="module")
def season(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qgis_season")
    fixture = build_product(folder, "L2A", "04.00")
    bad = folder / "S2A_MSIL2A_20230625T100559_N0500_R022_T33TUK_20230625T130000.zip"
    bad.write_bytes(b"PK\x03\x04 interrupted")
    return fixture, str(bad)


def _fields(fixture):
    """Two 40 x 40 px fields of the product, in its CRS (EPSG:32633)."""
    layer = QgsVectorLayer("Polygon?crs=EPSG:32633&field=name:string", "fields", "memory")
    gt = fixture.geotransform
    features = []
    for name, (col, row) in (("north", (20, 20)), ("south", (150, 150))):
        x0, y1 = gt[0] + col * 10, gt[3] - row * 10
        feature = QgsFeature(layer.fields())
        feature.setAttributes([name])
        feature.setGeometry(QgsGeometry.fromRect(QgsRectangle(x0, y1 - 400, x0 + 400, y1)))
        features.append(feature)
    layer.dataProvider().addFeatures(features)
    return layer


def test_batch_goes_on_past_a_bad_product_and_loads_a_styled_summary(season, tmp_path, provider):
    fixture, bad = season
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    feedback = QgsProcessingFeedback()
    result = processing.run(
        ALG,
        {"INPUTS": [str(fixture.zip), bad], "OUTPUT_FOLDER": str(tmp_path), **MODEL},
        context=context,
        feedback=feedback,
    )
    layer = QgsVectorLayer(result["SUMMARY"], "summary", "ogr")
    assert layer.isValid() and layer.featureCount() == 2
    rows = {f["input"]: f for f in layer.getFeatures()}
    assert rows[str(fixture.zip)]["status"] == "ok" and rows[bad]["status"] == "failed"
    assert "damaged" in rows[bad]["error"]
    assert (tmp_path / "T33TUK_20230615T100559_L2A.tif").exists()
    assert rows[str(fixture.zip)].hasGeometry()
    # Loaded on completion with the clear-fraction style.
    details = {k: d for k, d in context.layersToLoadOnCompletion().items() if d.outputName == "SUMMARY"}
    assert len(details) == 1
    loaded = QgsVectorLayer(next(iter(details)), "summary", "ogr")
    next(iter(details.values())).postProcessor().postProcessLayer(loaded, context, feedback)
    assert isinstance(loaded.renderer(), QgsGraduatedSymbolRenderer)
    assert loaded.renderer().classAttribute() == "clear_fraction"


def test_selected_fields_only_limit_the_masks_and_the_per_field_table(season, tmp_path, provider):
    fixture, _ = season
    fields = _fields(fixture)
    QgsProject.instance().addMapLayer(fields)
    try:
        fields.selectByIds([next(fields.getFeatures()).id()])  # only "north"
        area = QgsProcessingFeatureSourceDefinition(fields.id(), selectedFeaturesOnly=True)
        result = processing.run(
            ALG, {"INPUTS": [str(fixture.zip)], "AREA": area, "OUTPUT_FOLDER": str(tmp_path), **MODEL}
        )
    finally:
        QgsProject.instance().removeMapLayer(fields.id())
    from osgeo import gdal

    mask = gdal.Open(str(tmp_path / "T33TUK_20230615T100559_L2A.tif"))
    assert (mask.RasterXSize, mask.RasterYSize) == (40, 40)  # the selected field's box only
    row = next(QgsVectorLayer(result["SUMMARY"], "s", "ogr").getFeatures())
    assert row["area_valid_pixels"] == 40 * 40
    assert 0 <= row["area_clear_fraction"] <= 1
    per_field = QgsVectorLayer(f"{tmp_path / 'summary.gpkg'}|layername=fields", "f", "ogr")
    assert [f["field"] for f in per_field.getFeatures()] == ["north"]


class _CancelAfterFirst(QgsProcessingFeedback):
    """Cancels once the first product has reported."""

    def pushInfo(self, info):
        super().pushInfo(info)
        if "% clear" in info:
            self.cancel()


def test_cancel_keeps_finished_masks_and_their_summary(season, tmp_path, provider):
    from qgis.core import QgsProcessingException

    fixture, _ = season
    feedback = _CancelAfterFirst()
    with pytest.raises(QgsProcessingException, match="Cancelled after 1 of 2 products"):
        processing.run(
            ALG,
            {"INPUTS": [str(fixture.zip), str(fixture.safe)], "OUTPUT_FOLDER": str(tmp_path), **MODEL},
            feedback=feedback,
        )
    assert len(list(tmp_path.glob("*.tif"))) == 1 and not list(tmp_path.glob(".*partial*"))
    assert QgsVectorLayer(f"{tmp_path / 'summary.gpkg'}|layername=summary", "s", "ogr").featureCount() == 1


def test_cancel_before_the_first_product_leaves_an_earlier_summary_as_it_was(season, tmp_path, provider):
    from qgis.core import QgsProcessingException

    fixture, _ = season
    params = {"INPUTS": [str(fixture.zip)], "OUTPUT_FOLDER": str(tmp_path), **MODEL}
    processing.run(ALG, params)
    before = (tmp_path / "summary.gpkg").read_bytes()
    feedback = QgsProcessingFeedback()
    feedback.cancel()
    with pytest.raises(QgsProcessingException, match="Cancelled before the first product was done"):
        processing.run(ALG, {**params, "INPUTS": [str(fixture.safe), str(fixture.zip)]}, feedback=feedback)
    assert (tmp_path / "summary.gpkg").read_bytes() == before


def test_the_log_says_once_which_models_ran_and_on_which_device(season, tmp_path, provider):
    """The batch says which models ran, on the CPU or the GPU and why, as Improve cloud mask does.

    Without it a team could not tell that its season ran on the CPU."""
    fixture, _ = season
    feedback = LogFeedback()
    processing.run(
        ALG,
        {
            "INPUTS": [str(fixture.zip), str(fixture.safe)],
            "OUTPUT_FOLDER": str(tmp_path),
            "EXECUTION_PROVIDER": 0,
            **MODEL,
        },
        feedback=feedback,
    )
    said = [line for line in feedback.lines if line.startswith("Cloud models: ukis-6b-l2a; shadow model: ukis-6b-l2a.")]
    assert len(said) == 1, feedback.lines  # not once per product
    # ...and how it decides: ukis's own rule, the most likely class, with no threshold given.
    assert "Running on the" in said[0] and "Decision: the most likely class" in said[0]
    assert sum("% clear" in line for line in feedback.lines) == 2


class _Errors(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.errors = []

    def reportError(self, error, fatalError=False):
        super().reportError(error, fatalError)
        self.errors.append(error)


def test_an_output_folder_that_cannot_be_written_is_refused_before_any_product(season, provider):
    """An output folder that cannot be written is refused before any product runs.

    Otherwise every product would fail on its own ('not writable'), then writing the summary
    would end in a PermissionError traceback. /proc refuses new files to everyone, root included."""
    from qgis.core import QgsProcessingException

    fixture, _ = season
    feedback = _Errors()
    with pytest.raises(QgsProcessingException) as refused:
        processing.run(
            ALG, {"INPUTS": [str(fixture.zip), str(fixture.safe)], "OUTPUT_FOLDER": "/proc", **MODEL}, feedback=feedback
        )
    message = str(refused.value)
    assert "'/proc' is not writable" in message and "you can write to" in message, message
    assert "Traceback" not in message and "PermissionError" not in message
    assert not [e for e in feedback.errors if str(fixture.zip) in e]  # no product was tried
