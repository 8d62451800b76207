"""The batch's SOURCE output through QGIS Processing (cloudmask:improvecloudmaskbatch, WRITE_SOURCE).

Written beside each mask with its figures in the summary layer, and a source loaded in QGIS
(Windows: a file in use) handled as a loaded mask is."""

import os

import processing
import pytest
from log_feedback import LogFeedback
from osgeo import gdal
from qgis.core import QgsApplication, QgsRasterLayer, QgsVectorLayer

from cloud_mask_improver.core.season import batch

ALG = "cloudmask:improvecloudmaskbatch"
NAME = "T33TUK_20230615T100559_L2A"
BATCH = {"CLOUD_MODEL": "ukis-6b-l2a", "SHADOW_MODEL": "ukis-6b-l2a"}
REMOVE_LAYER = "remove that layer from the project"


def summary_features(result) -> list:
    return list(QgsVectorLayer(result["SUMMARY"], "summary", "ogr").getFeatures())


def is_null(value) -> bool:
    """An empty attribute, as PyQGIS gives it (None, or a null QVariant on older versions)."""
    return value is None or (hasattr(value, "isNull") and value.isNull())


def test_the_toolbox_writes_the_source_and_its_figures(provider, product, tmp_path):
    definition = QgsApplication.processingRegistry().algorithmById(ALG).parameterDefinition("WRITE_SOURCE")
    assert definition.defaultValue() is False
    out = tmp_path / "out"
    feedback = LogFeedback()
    result = processing.run(
        ALG, {"INPUTS": [str(product.zip)], "OUTPUT_FOLDER": str(out), "WRITE_SOURCE": True, **BATCH}, feedback=feedback
    )
    source = out / f"{NAME}_source.tif"
    ds = gdal.Open(str(source))
    assert (ds.RasterXSize, ds.RasterYSize) == (240, 240)
    (feature,) = summary_features(result)
    assert 0 < feature["model_added_fraction"] < feature["masked_fraction"] <= 1
    record = batch._read_record(batch.record_path(str(out / f"{NAME}.tif")))
    assert feature["model_added_fraction"] == pytest.approx(record["source"]["figures"]["model_added_fraction"])
    # The log says what the improvement was with the product's line, and once more on a rerun.
    sentence = "points were added by the models (the product mask missed them)"
    assert sum(sentence in line for line in feedback.lines) == 1
    again = LogFeedback()
    processing.run(
        ALG, {"INPUTS": [str(product.zip)], "OUTPUT_FOLDER": str(out), "WRITE_SOURCE": True, **BATCH}, feedback=again
    )
    assert sum(sentence in line for line in again.lines) == 1 and "kept from an earlier run" in " ".join(again.lines)
    # Without the option: no source, and the columns are empty.
    plain = processing.run(ALG, {"INPUTS": [str(product.zip)], "OUTPUT_FOLDER": str(tmp_path / "plain"), **BATCH})
    assert not list((tmp_path / "plain").glob("*_source.tif"))
    (feature,) = summary_features(plain)
    assert is_null(feature["model_added_fraction"]) and is_null(feature["dilation_fraction"])


def test_a_redo_with_the_source_loaded_fails_that_product_and_keeps_its_files(
    provider, product, tmp_path, windows_files, project
):
    out = tmp_path / "out"
    processing.run(ALG, {"INPUTS": [str(product.zip)], "OUTPUT_FOLDER": str(out), "WRITE_SOURCE": True, **BATCH})
    mask, source = out / f"{NAME}.tif", out / f"{NAME}_source.tif"
    files = (mask, source, out / f"{NAME}.json")
    before = {p: p.read_bytes() for p in files}
    layer = QgsRasterLayer(str(source), "source")
    assert layer.isValid()
    project.addMapLayer(layer)
    feedback = LogFeedback()
    result = processing.run(
        ALG,
        {"INPUTS": [str(product.zip)], "OUTPUT_FOLDER": str(out), "WRITE_SOURCE": True, "FORCE": True, **BATCH},
        feedback=feedback,
    )
    (feature,) = summary_features(result)
    assert feature["status"] == "failed"
    assert str(source) in feature["error"] and REMOVE_LAYER in feature["error"], feature["error"]
    assert {p: p.read_bytes() for p in files} == before  # mask, source and record as they were
    assert "Traceback" not in " ".join(feedback.lines)
    assert not [n for n in os.listdir(out) if "partial" in n]
