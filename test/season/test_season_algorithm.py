"""The season layers and report through QGIS Processing (cloudmask:improvecloudmaskbatch):
outputs a model can use, the report for the Results Viewer, the layers loaded on completion."""

import os
from pathlib import Path

import processing
from log_feedback import LogFeedback
from qgis.core import QgsProcessingContext, QgsProject

ALG = "cloudmask:improvecloudmaskbatch"


def test_the_season_report_and_layers_are_outputs_and_the_layers_load(sample_season, tmp_path, provider):
    season, _, _ = sample_season
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    feedback = LogFeedback()
    result = processing.run(ALG, {"INPUTS": [str(p) for p in season.stacks], "OUTPUT_FOLDER": str(tmp_path),
                                  "CLOUD_MODEL": "ukis-6b-l2a", "PERSISTENT_MIN_DATES": 13},
                            context=context, feedback=feedback)
    assert result["REPORT"] == str(tmp_path / "season_report.html")
    assert "<h2>Dates ranked by clear fraction</h2>" in Path(result["REPORT"]).read_text(encoding="utf-8")
    assert sorted(os.path.basename(p) for p in result["SEASON_LAYERS"]) == [
        f"season_T33TUK_{k}.tif" for k in ("clear", "cloud_frequency", "persistent", "valid")]
    loaded = {d.name for d in context.layersToLoadOnCompletion().values() if d.outputName == "SEASON_LAYERS"}
    assert loaded == {"T33TUK cloud frequency", "T33TUK persistent cloud"}
    # 12 dates are fewer than the 13 asked for: no pixel is decided, and the log says none is persistent.
    assert "T33TUK: 12 date(s); 0 pixel(s) cloud on most dates" in "\n".join(feedback.lines)
