"""The plugin's own dialog in the real QGIS desktop on a laptop screen (1366x768).

On the screen, run to completion on the sample, its result where a user looks for it."""

import re

import pytest
from harness import run_qgis
from samples import L1C_STACK, PRODUCT_MASK, model_file, require

MODEL = "ukis-4b-l1c"


@pytest.fixture(scope="module")
def session():
    require(L1C_STACK, PRODUCT_MASK)
    model_file(MODEL)
    return run_qgis(
        "dialog", args={"sample": str(L1C_STACK), "product_mask": str(PRODUCT_MASK), "model": MODEL}, timeout=300
    )


def test_the_session_ends_cleanly(session):
    assert session.result.get("finished"), session.problems()
    assert not session.tracebacks(), session.problems()
    assert not session.result.get("modal_dialogs"), session.problems()
    assert not session.crashed, session.problems()


@pytest.mark.parametrize(
    "check",
    [
        "dialog on screen, fold-outs closed",
        "dialog on screen, fold-outs open",
        "ensemble dialog on screen",
        "toolbox labels fit",
    ],
)
def test_the_dialog_is_entirely_on_a_laptop_screen(session, check):
    assert session.checks[check]["ok"], session.checks[check]
    assert session.facts["closed"]["screen"][2:] == [1366, 768]


def test_the_run_completes_and_its_mask_is_on_top(session):
    for check in ("run starts", "run succeeds", "mask on top"):
        assert session.checks[check]["ok"], (check, session.checks[check])
    top = session.facts["top_layer"]
    assert top.startswith("S2 L1C sample improved cloud mask") and MODEL in top
    assert re.search(r"\d\d:\d\d:\d\d", top)
    assert session.facts["mask_class_alpha"]["clear"] == 0
    assert session.facts["mask_class_alpha"]["cloud"] == 255
    # Which source flagged each pixel, asked for in the dialog: under the mask, with its legend.
    assert "which source flagged each pixel" in session.facts["second_layer"]
    assert "cloud model only: the product mask missed it" in session.facts["source_legend"]


def test_the_fractions_stay_visible(session):
    note = session.facts["fraction_note"]
    assert "clear" in note and "%" in note
    assert session.facts["dialog_message"] == note
    assert note in session.facts["message_bar"], session.facts["message_bar"]


def test_the_ensemble_dialog_says_what_will_run(session):
    plan = session.facts["ensemble_plan"]
    assert "Will run" in plan and "installed L1C cloud models" in plan, plan
    assert re.match(r"model default \(0\.\d+\)", session.facts["ensemble_threshold_text"])


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """A data home with the models but no onnxruntime: what a new user's profile has."""
    require(L1C_STACK, PRODUCT_MASK)
    source = tmp_path_factory.mktemp("data_home")
    (source / "models").symlink_to(model_file(MODEL).parent, target_is_directory=True)
    return run_qgis(
        "runtime",
        args={"sample": str(L1C_STACK), "product_mask": str(PRODUCT_MASK), "model": MODEL},
        data_home=source,
        timeout=540,
    )


def test_onnxruntime_is_installed_from_the_manager_and_the_dialog_then_runs(fresh):
    assert fresh.result.get("finished"), fresh.problems()
    assert not fresh.tracebacks(), fresh.problems()
    assert not fresh.crashed, fresh.problems()
    assert "not installed" in fresh.facts["status_at_start"]
    failed = fresh.failed_checks()
    assert not failed, fresh.problems()
    assert fresh.facts["status_after_install"][0]
    assert fresh.facts["python_dir"].startswith(str(fresh.profile_dir))
    assert fresh.facts["event_loop_ticks_during_install"] >= 5  # QGIS kept responding while pip ran
    assert "Improved cloud mask of S2 L1C sample" in fresh.facts["message"]
