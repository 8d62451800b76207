"""The plugin in the real QGIS desktop, run from the Processing toolbox.

One QGIS session under Xvfb, a fresh non-default profile, the plugin installed from its zip."""

import pytest
from harness import run_qgis
from osgeo import gdal
from samples import L1C_STACK, PRODUCT_MASK, model_file, require

MODEL = "ukis-4b-l1c"  # the fastest real model: this is about QGIS, not model quality


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    require(L1C_STACK, PRODUCT_MASK)
    model_file(MODEL)
    # A part of the real scene (512 x 320 px) keeps the six runs short.
    folder = tmp_path_factory.mktemp("desktop")
    sample, product_mask = str(folder / "sample.tif"), str(folder / "product_mask.tif")
    gdal.Translate(sample, str(L1C_STACK), srcWin=[0, 0, 512, 320])
    gdal.Translate(product_mask, str(PRODUCT_MASK), srcWin=[0, 0, 512, 320])
    run = run_qgis("toolbox", args={"sample": sample, "product_mask": product_mask, "model": MODEL}, timeout=240)
    run.result.setdefault("facts", {})
    return run


def failures(session, prefix):
    return {k: v for k, v in session.failed_checks().items() if k.startswith(prefix)}


def test_qgis_session_ends_cleanly(session):
    assert session.result.get("finished"), session.problems()
    assert not session.crashed, session.problems()
    assert not session.result.get("tasks_at_exit"), session.result["tasks_at_exit"]  # every run waited for
    assert not session.tracebacks(), session.problems()
    assert not session.result.get("modal_dialogs"), session.problems()


def test_data_home_is_the_running_profiles(session):
    assert session.facts["plugin_loaded"]
    assert session.facts["data_home"] == str(session.profile_dir / "cloud_mask_improver")
    assert session.facts["plugin_paths_on_sys_path"]


@pytest.mark.parametrize(
    "label", ["improve_1", "improve_2", "improve_3", "cloud_probability_1", "cloud_probability_2", "shipped_model"]
)
def test_every_toolbox_run_adds_its_styled_layers(session, label):
    assert label in session.facts.get("runs", {}), session.problems()
    assert not failures(session, label + ":"), session.problems()


def test_run_as_batch_process_adds_each_rows_styled_mask(session):
    assert session.facts.get("batch"), session.problems()
    assert not failures(session, "batch:"), session.facts["batch"]


def test_qgis_deletes_every_post_processor_it_was_given(session):
    assert session.facts.get("stylers_still_held") == 0, session.problems()


def test_shipped_models_are_valid(session):
    assert session.facts.get("models"), session.problems()
    assert not failures(session, "cloudmask:"), session.facts["models"]


def test_shipped_model_opens_in_the_modeler(session):
    assert session.facts.get("modeler"), session.problems()
    assert not failures(session, "modeler:"), session.facts["modeler"]


def test_saved_mask_has_a_legend_row_per_class(session):
    legend = session.facts.get("saved_mask_legend")
    assert legend is not None, session.problems()
    classes = [row for row in legend if "Band 1" not in str(row)]  # the band's title row is no class
    assert {"clear", "cloud", "cloud shadow"} <= set(classes) <= {"clear", "cloud", "cloud shadow", "nodata"}, legend
