"""The season layers and report through QGIS Processing (cloudmask:improvecloudmaskbatch).

Outputs a model can use, the report for the Results Viewer, the layers loaded on completion."""

import os
from pathlib import Path

import processing
import pytest
from log_feedback import LogFeedback
from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelChildParameterSource,
    QgsProcessingModelOutput,
    QgsProject,
)

ALG = "cloudmask:improvecloudmaskbatch"


def test_the_season_report_and_layers_are_outputs_and_the_layers_load(sample_season, tmp_path, provider):
    season, _, _ = sample_season
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    feedback = LogFeedback()
    result = processing.run(
        ALG,
        {
            "INPUTS": [str(p) for p in season.stacks],
            "OUTPUT_FOLDER": str(tmp_path),
            "CLOUD_MODEL": "ukis-6b-l2a",
            "PERSISTENT_MIN_DATES": 13,
        },
        context=context,
        feedback=feedback,
    )
    # No path given (a run or model made before the report): the report in the output folder.
    assert result["REPORT"] == str(tmp_path / "season_report.html")
    assert "<h2>Dates ranked by clear fraction</h2>" in Path(result["REPORT"]).read_text(encoding="utf-8")
    assert sorted(os.path.basename(p) for p in result["SEASON_LAYERS"]) == [
        f"season_T33TUK_{k}.tif" for k in ("clear", "cloud_frequency", "persistent", "valid")
    ]
    loaded = {d.name for d in context.layersToLoadOnCompletion().values() if d.outputName == "SEASON_LAYERS"}
    assert loaded == {"T33TUK cloud frequency", "T33TUK persistent cloud"}
    # 12 dates are fewer than the 13 asked for: no pixel is decided, and the log says none is persistent.
    assert "T33TUK: 12 date(s); 0 pixel(s) cloud on most dates" in "\n".join(feedback.lines)


def test_in_a_model_the_report_is_the_models_output(sample_season, tmp_path, provider):
    season, _, _ = sample_season
    model = QgsProcessingModelAlgorithm("season", "tests")
    child = QgsProcessingModelChildAlgorithm(ALG)
    child.setChildId("batch")
    static = QgsProcessingModelChildParameterSource.fromStaticValue
    child.addParameterSources("INPUTS", [static([str(p) for p in season.stacks])])
    child.addParameterSources("OUTPUT_FOLDER", [static(str(tmp_path / "masks"))])
    child.addParameterSources("CLOUD_MODEL", [static("ukis-6b-l2a")])
    output = QgsProcessingModelOutput("report")
    output.setChildOutputName("REPORT")
    child.setModelOutputs({"report": output})
    model.addChildAlgorithm(child)
    model.updateDestinationParameters()
    wanted = tmp_path / "season.html"
    result = processing.run(model, {"batch:report": str(wanted)})
    assert result["batch:report"] == str(wanted)
    assert wanted.read_bytes() == (tmp_path / "masks" / "season_report.html").read_bytes()
    assert "Cloud mask season report" in wanted.read_text(encoding="utf-8")


def test_a_report_path_that_cannot_be_written_is_refused_before_any_product(sample_season, tmp_path, provider):
    season, _, _ = sample_season
    feedback = LogFeedback()
    with pytest.raises(QgsProcessingException, match="does not exist") as caught:
        processing.run(
            ALG,
            {
                "INPUTS": [str(season.stacks[0])],
                "OUTPUT_FOLDER": str(tmp_path / "masks"),
                "REPORT": str(tmp_path / "nowhere" / "report.html"),
            },
            feedback=feedback,
        )
    assert "Traceback" not in str(caught.value)
    assert not list((tmp_path / "masks").glob("*.tif"))  # no product was run
