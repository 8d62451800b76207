"""Session paths a user takes beyond single runs, in the real QGIS desktop (see drivers/sessions.py).

The plugin disabled, enabled and reloaded in one session; a run cancelled from QGIS's task
manager, then run again; the extent taken from a canvas in another CRS; a project with the
plugin's masks saved and opened in a new session; a profile without models or onnxruntime;
two profiles one after the other."""

import pytest
from harness import run_qgis
from osgeo import gdal
from samples import L1C_STACK, PRODUCT_MASK, model_file, require

MODEL = "ukis-4b-l1c"


def args(**more):
    return {"sample": str(L1C_STACK), "product_mask": str(PRODUCT_MASK), "model": MODEL, **more}


def assert_clean(run):
    assert run.result.get("finished"), run.problems()
    assert not run.crashed, run.problems()
    assert not run.tracebacks(), run.problems()
    assert not run.failed_checks(), run.problems()


@pytest.fixture(scope="module")
def one_session(tmp_path_factory):
    """Reload, cancel and canvas extent in one QGIS session (one start instead of three)."""
    require(L1C_STACK, PRODUCT_MASK)
    model_file(MODEL)
    large = str(tmp_path_factory.mktemp("large") / "large.tif")  # a run long enough to cancel
    gdal.Translate(large, str(L1C_STACK), width=1712, height=1024, resampleAlg="bilinear")
    return run_qgis(
        "sessions",
        args=args(steps=["reload", "reload_running", "cancel", "extent", "extent_dialog", "new_project"], large=large),
        timeout=400,
    )


def test_one_session_ends_cleanly(one_session):
    assert_clean(one_session)
    assert not one_session.result.get("modal_dialogs"), one_session.problems()


def test_disabled_enabled_and_reloaded_plugin_is_wired_once_and_runs(one_session):
    reload = one_session.facts["reload"]
    assert reload["while_disabled"]["providers"] == 0 and reload["while_disabled"]["live_actions"] == 0
    for cycle in ("disable_enable", "reload"):
        assert reload[cycle] == one_session.facts["wiring_at_start"], reload[cycle]
        assert reload[f"{cycle}_run"]["ok"] and [r for _, r in reload[f"{cycle}_run"]["added"]] == ["paletted"]


def test_reload_during_a_dialog_run_forgets_it_and_runs_again(one_session):
    checks = [name for name in one_session.checks if name.startswith("reload running:")]
    assert len(checks) == 6 and all(one_session.checks[n]["ok"] for n in checks), one_session.problems()


def test_exit_qgis_during_a_dialog_run(tmp_path):
    require(L1C_STACK, PRODUCT_MASK)
    model_file(MODEL)
    large = str(tmp_path / "large.tif")
    gdal.Translate(large, str(L1C_STACK), width=1712, height=1024, resampleAlg="bilinear")
    run = run_qgis("sessions", tmp_path / "out", args=args(steps=["quit_running"], large=large), timeout=120)
    assert_clean(run)
    assert "Improve cloud mask" in run.facts["quit_running_question"][0]  # QGIS asked to cancel our task


def test_new_project_during_a_dialog_run(one_session):
    """The run ends normally (QGIS's own toolbox runs do the same) and Run then says what is wrong."""
    assert one_session.facts["new_project_run"]["ok"], one_session.facts["new_project_run"]
    assert one_session.checks["new project: Run without a raster says what to do"]["ok"], one_session.problems()


def test_cancel_from_the_task_manager_then_run_again(one_session):
    checks = [name for name in one_session.checks if name.startswith("cancel:")]
    assert len(checks) == 9 and all(one_session.checks[n]["ok"] for n in checks), one_session.problems()


@pytest.mark.parametrize("label", ["extent", "extent dialog"])
def test_canvas_extent_in_another_crs_is_the_raster_area_it_shows(one_session, label):
    assert one_session.facts[f"{label}_canvas_crs"][0] == "EPSG:4326"
    assert one_session.facts["raster_crs"] == "EPSG:32633"
    assert one_session.checks[f"{label}: the mask covers the canvas's area, in the raster's CRS"]["ok"], (
        one_session.facts[f"{label}_bounds"]
    )


def test_saved_project_reopens_with_the_styled_mask(tmp_path):
    require(L1C_STACK, PRODUCT_MASK)
    model_file(MODEL)
    project, mask = str(tmp_path / "masks.qgz"), str(tmp_path / "mask.tif")
    saved_mask = str(tmp_path / "dialog_mask.tif")
    saved = run_qgis(
        "sessions",
        tmp_path / "save",
        args=args(steps=["save"], project=project, saved_mask=mask, dialog_output=saved_mask),
        timeout=240,
    )
    assert_clean(saved)
    reopened = run_qgis(
        "sessions", tmp_path / "reopen", args=args(steps=["reopen"], project=project, saved_mask=mask), timeout=120
    )
    assert_clean(reopened)
    assert not reopened.result.get("modal_dialogs"), reopened.problems()  # no "Handle Unavailable Layers"
    assert len(reopened.facts["reopened_legends"]) == 2, reopened.facts


@pytest.mark.parametrize("data_home", ["empty", "models only"])
def test_without_models_or_onnxruntime_the_toolbox_names_the_fix(tmp_path, data_home):
    require(L1C_STACK, PRODUCT_MASK)
    source = "empty"
    if data_home == "models only":
        source = tmp_path / "home"
        source.mkdir()
        (source / "models").symlink_to(model_file(MODEL).parent, target_is_directory=True)
    run = run_qgis(
        "sessions",
        tmp_path / "out",
        args=args(steps=["fresh"], fresh_model="" if source == "empty" else MODEL),
        data_home=source,
        timeout=120,
    )
    assert_clean(run)
    assert run.facts["manage_models_menu"] == ["Raster", "Cloud Mask Improver", "Manage models…"]
    assert "onnxruntime" in run.facts["fresh_dialog_runtime_note"]
    assert (
        "Manage models" in run.facts["fresh_dialog_run_message"]
        or "Install onnxruntime" in run.facts["fresh_dialog_run_message"]
    )


def test_two_profiles_one_after_the_other_each_use_their_own_data(tmp_path):
    require(L1C_STACK, PRODUCT_MASK)
    model_file(MODEL)
    first = run_qgis(
        "sessions", tmp_path / "first", args=args(steps=["profile"], profile_run=True), work=tmp_path, profile="first"
    )
    second = run_qgis(
        "sessions",
        tmp_path / "second",
        args=args(steps=["profile"]),
        work=tmp_path,
        data_home="empty",
        profile="second",
    )
    for run in (first, second):
        assert_clean(run)
    assert first.facts["profile_data_home"] == str(tmp_path / "profiles" / "profiles" / "first" / "cloud_mask_improver")
    assert first.facts["profile_runtime"][0] and MODEL in first.facts["profile_models"]
    assert second.facts["profile_data_home"] == str(
        tmp_path / "profiles" / "profiles" / "second" / "cloud_mask_improver"
    )
    assert not second.facts["profile_runtime"][0] and second.facts["profile_models"] == []
    assert second.facts["profile_dialog_runtime_box"]
    assert not any("first" in p for p in second.facts["profile_plugin_paths"]), second.facts["profile_plugin_paths"]
