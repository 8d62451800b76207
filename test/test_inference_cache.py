"""The optimised copy of an installed network that later runs load instead of optimising again.

Its output must equal a freshly optimised session's to the bit, on the real model and
the real sample scene; a damaged copy is replaced, never used; a network that is not
installed gets none.
"""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
import onnxruntime as ort
import pytest
from osgeo import gdal
from samples import SEED_STACK, require

from cloud_mask_improver.core import inference
from cloud_mask_improver.core.bands import FARMVIBES_BANDS
from cloud_mask_improver.core.modelstore import catalogue
from cloud_mask_improver.core.runtime import home

MODEL = "ukis-6b-l2a"


@pytest.fixture(name="network")
def network_fixture(tmp_path, monkeypatch):
    """The real model installed in a data home of the test's own; no cached sessions."""
    require(SEED_STACK)
    card, installed = catalogue.resolve(MODEL)  # from the real data home, before it is moved
    monkeypatch.setenv("CLOUDMASK_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(inference, "_SESSIONS", {})
    path = home.models_dir() / installed.name
    path.parent.mkdir(parents=True)
    shutil.copy(installed, path)
    return card, path


def sample_batch(card) -> np.ndarray:
    """Two tiles of the real scene, as the engine feeds them."""
    bands = [list(FARMVIBES_BANDS).index(b) + 1 for b in card.bands]
    data = gdal.Open(str(SEED_STACK)).ReadAsArray(0, 0, card.tile, 2 * card.tile, band_list=bands)
    x = inference.preprocess(card, data)
    return np.ascontiguousarray(np.stack([x[:, : card.tile], x[:, card.tile :]]))


def reference(path, batch) -> np.ndarray:
    """A session optimised at creation, as before the copies existed."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: batch})[0]


def load(card, path):
    inference._SESSIONS.clear()  # a new run (a new process) would not have it
    model = inference.load_model(card, path, provider="cpu")
    return model.session, model.input_name


def test_the_second_run_loads_the_optimised_copy_and_gets_the_same_output(network):
    card, path = network
    batch = sample_batch(card)
    expected = reference(path, batch)
    copy = inference.optimized_model_path(path, ort.__version__)
    assert not copy.exists()

    first, feed = load(card, path)  # optimises, and keeps the copy
    assert copy.exists()
    assert np.array_equal(first.run(None, {feed: batch})[0], expected)

    second, feed = load(card, path)  # loads the copy as it is
    level = second.get_session_options().graph_optimization_level
    assert level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert np.array_equal(second.run(None, {feed: batch})[0], expected)
    assert [p.name for p in copy.parent.iterdir()] == [copy.name]  # no partial file left


def test_a_damaged_copy_is_replaced(network):
    card, path = network
    batch = sample_batch(card)
    copy = inference.optimized_model_path(path, ort.__version__)
    copy.parent.mkdir(parents=True)
    copy.write_bytes(b"not a network")

    session, feed = load(card, path)
    assert np.array_equal(session.run(None, {feed: batch})[0], reference(path, batch))
    assert copy.stat().st_size > 1000  # optimised again, and kept


def test_a_network_that_is_not_installed_gets_no_copy(network, tmp_path):
    card, installed = network
    path = tmp_path / "elsewhere" / installed.name
    path.parent.mkdir()
    shutil.copy(installed, path)
    session, feed = load(card, path)
    batch = sample_batch(card)
    assert np.array_equal(session.run(None, {feed: batch})[0], reference(path, batch))
    assert not (home.data_home() / "optimized").exists()


def test_another_onnxruntime_or_a_changed_network_gets_its_own_copy(network, tmp_path):
    _, path = network
    ours = inference.optimized_model_path(path, "1.20.0")
    assert inference.optimized_model_path(path, "1.21.0") != ours
    changed = tmp_path / path.name
    changed.write_bytes(path.read_bytes())
    assert inference.optimized_model_path(changed, "1.20.0") != ours


def _kept(path, days_unused: float):
    """A file in the copies' folder that no run has loaded for ``days_unused``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"an optimised network")
    then = time.time() - days_unused * 86400
    os.utime(path, (then, then))
    return path


def test_copies_no_run_loaded_for_two_weeks_are_removed_when_the_network_loads(network):
    """Copies for an onnxruntime since upgraded pile up at 80 MB each: those unused go.

    A copy used on another computer sharing the data home (loaded lately) stays, and so does
    another model's whose name starts the same."""
    card, path = network
    folder = home.optimized_dir()
    upgraded = _kept(home.optimized_copy(path, "onnxruntime 1.31"), 15)
    _kept(folder / f"{upgraded.stem}.{'0' * 32}.partial", 15)  # left by a run that was killed
    other_computer = _kept(home.optimized_copy(path, "another CPU"), 3)
    other_model = _kept(folder / f"{path.stem}-mine-{'a' * 20}.onnx", 15)

    load(card, path)
    ours = inference.optimized_model_path(path, ort.__version__)
    assert sorted(folder.iterdir()) == sorted([ours, other_computer, other_model])


def test_a_copy_in_use_is_kept_however_old_it_was(network):
    """Loading a copy refreshes its time, so only copies nobody loads grow old."""
    card, path = network
    load(card, path)
    ours = inference.optimized_model_path(path, ort.__version__)
    month_ago = time.time() - 30 * 86400
    os.utime(ours, (month_ago, month_ago))
    session, _ = load(card, path)
    assert session.get_session_options().graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert ours.exists() and ours.stat().st_mtime > time.time() - 3600
