"""The season report and layers of Improve cloud masks of many products in the real QGIS desktop.

Run from the toolbox's dialog, the report in Processing's Results Viewer, the layers on the map."""

import pytest
from harness import run_qgis
from samples import model_file
from season_scene import build_season

MODEL = "ukis-6b-l2a"  # the model the sample season's tests use


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    model_file(MODEL)
    folder = tmp_path_factory.mktemp("season_desktop")
    season = build_season(folder / "stacks", dates=3)  # three small dates keep the run short
    report = folder / "my season.html"
    run = run_qgis(
        "season",
        args={
            "stacks": [str(p) for p in season.stacks],
            "out_folder": str(folder / "masks"),
            "model": MODEL,
            "report": str(report),
        },
        timeout=300,
    )
    run.result.setdefault("facts", {})
    run.report = report
    return run


def test_the_session_ends_cleanly(session):
    assert session.result.get("finished"), session.problems()
    assert not session.crashed, session.problems()
    assert not session.tracebacks(), session.problems()
    assert not session.result.get("modal_dialogs"), session.problems()
    assert not session.result.get("tasks_at_exit"), session.result["tasks_at_exit"]


def test_the_batch_runs_from_the_toolbox_and_writes_the_report_asked_for(session):
    assert session.checks["batch succeeds"]["ok"], session.problems()
    assert not session.facts["log_has_traceback"]
    assert session.facts["results"]["REPORT"] == str(session.report)
    assert session.report.exists()


def test_the_results_viewer_lists_the_report_and_opens_it(session):
    for check in ("results viewer shown", "results viewer lists the report", "double-click opens the report"):
        assert session.checks[check]["ok"], (check, session.checks[check])
    listed = [r for r in session.facts["results_listed"] if r["file"] == str(session.report)]
    assert listed[0]["text"].startswith("Season report ["), listed  # the output's name and the time
    assert str(session.report) in session.facts["results_description"]


def test_the_report_shows_its_chart_and_ranked_dates(session):
    text = session.facts["report_text"]
    assert "Cloud mask season report" in text
    assert "Dates ranked by clear fraction" in text
    # Every date in the ranked table (dates of season_scene: 2023-04-01, -11, -21).
    for day in ("2023-04-01", "2023-04-11", "2023-04-21"):
        assert day in text, day
    # The chart (800 px wide, matplotlib) and a quicklook per date, all decoded from the file itself.
    images = session.facts["report_images"]
    assert len(images) == 4 and images[0] == 800 and all(images), images
    assert session.facts["report_tables"] >= 2


def test_the_season_layers_are_in_the_project(session):
    layers = session.facts["layers"]
    assert "T33TUK cloud frequency" in layers and "T33TUK persistent cloud" in layers, layers
    # Three dates: cloud frequency 0, 1/3, 2/3 and 1, four greys, and the canvas around them (empty: 1).
    assert session.facts["map_colours"] >= 5, session.facts["map_colours"]
    names = [p.name for p in session.screenshots]
    assert "results_viewer_report.png" in names and "season_layers.png" in names, names
