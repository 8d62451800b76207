"""The model manager: install, refuse a wrong checksum, remove, import, and say what is missing.

It installs from a package index over loopback (real download, real checksum)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import importlib.util
import json
import os
import shlex
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from onnx_models import conv1x1_model, write_card
from qgis.PyQt.QtCore import QTimer

from cloud_mask_improver.core.modelstore import catalogue, installer
from cloud_mask_improver.core.modelstore.cards import load_card
from cloud_mask_improver.core.runtime import deps, home
from cloud_mask_improver.ui import download, model_manager, tasks
from cloud_mask_improver.ui.model_manager import CardForm, ModelManagerDialog

PACKAGE = "CloudMask_Test.Model"  # pip normalises it to cloudmask-test-model
VERSION = "1.0.0"
WHEEL = f"cloudmask_test_model-{VERSION}-py3-none-any.whl"
MEMBER = "cloudmask_test_model/net.onnx"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def index(tmp_path, monkeypatch):
    """A simple package index on 127.0.0.1 holding one release with a small ONNX model."""
    root = tmp_path / "www"
    onnx_file = conv1x1_model(tmp_path / "net.onnx", np.eye(3, 4), np.zeros(3), tile=None)
    (root / "files").mkdir(parents=True)
    wheel = root / "files" / WHEEL
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(onnx_file, MEMBER)
    page = root / "simple" / "cloudmask-test-model"
    page.mkdir(parents=True)
    (page / "index.html").write_text(
        f'<html><body><a href="../../files/{WHEEL}#sha256={sha256(wheel)}">{WHEEL}</a></body></html>'
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{server.server_port}/simple/")
    yield {"wheel": wheel, "onnx": onnx_file}
    server.shutdown()
    server.server_close()


def downloadable_card(models_dir: Path, model_id: str, onnx_file: Path, archive_sha: str) -> Path:
    models_dir.mkdir(parents=True, exist_ok=True)
    return write_card(
        models_dir / f"{model_id}.json",
        id=model_id,
        title=f"Test {model_id}",
        file=f"{model_id}.onnx",
        sha256=sha256(onnx_file),
        output={"activation": "softmax", "cloud": [1], "shadow": [2]},
        source={"package": PACKAGE, "version": VERSION, "filename": WHEEL, "sha256": archive_sha, "member": MEMBER},
    )


@pytest.fixture
def folders(tmp_path):
    return tmp_path / "models", tmp_path / "cache"


def install_and_wait(qtbot, manager, model_id):
    manager.select(model_id)
    assert manager.install_button.isEnabled()
    job = manager.install_selected()
    assert job is not None
    qtbot.waitUntil(lambda: job.done and not manager.busy(), timeout=60_000)
    return job


def test_index_page_of_a_package_follows_pip_naming():
    assert (
        download.project_page("http://host/simple", "CloudMask_Test.Model")
        == "http://host/simple/cloudmask-test-model/"
    )
    html = '<a href="../../f/a-1.whl#sha256=00">a-1.whl</a><a href="/x/b-1.whl">b</a>'
    assert download.find_link(html, "http://host/simple/a/", "a-1.whl") == "http://host/f/a-1.whl"
    assert download.find_link(html, "http://host/simple/a/", "b-1.whl") == "http://host/x/b-1.whl"
    assert download.find_link(html, "http://host/simple/a/", "c-1.whl") == ""


def test_the_index_is_pips_own_when_not_configured(monkeypatch, tmp_path):
    from cloud_mask_improver.core.modelstore import fetch

    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", str(tmp_path / "none.conf"))  # no configuration at all
    assert fetch.index_url() == "https://pypi.org/simple"
    (tmp_path / "pip.conf").write_text("[global]\nindex-url = http://mirror.example/simple\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(tmp_path / "pip.conf"))  # read through pip itself
    assert fetch.index_url() == "http://mirror.example/simple"
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple/")
    assert fetch.index_url() == "http://127.0.0.1:9/simple/"


def test_installs_from_the_index_and_lists_it(qgis_app, qtbot, index, folders):
    models_dir, cache = folders
    downloadable_card(models_dir, "test-download", index["onnx"], sha256(index["wheel"]))
    manager = ModelManagerDialog(models_dir=models_dir, cache=cache)
    assert manager.listed()["test-download"] == "Available"
    progress = []
    manager.select("test-download")
    job = manager.install_selected()
    job.progress.connect(lambda got, total: progress.append((got, total)))
    qtbot.waitUntil(lambda: job.done and not manager.busy(), timeout=60_000)
    assert "Installed" in manager.message.text(), manager.message.text()
    assert manager.listed()["test-download"] == "Installed"
    assert (models_dir / "test-download.onnx").read_bytes() == index["onnx"].read_bytes()
    assert "test-download" in [c.id for c in catalogue.installed(models_dir)]
    assert (cache / WHEEL).exists()  # kept: reinstalling needs no network
    assert progress and progress[-1][0] == index["wheel"].stat().st_size

    manager.select("test-download")
    assert manager.remove_button.isEnabled()
    manager.remove_button.click()
    assert not (models_dir / "test-download.onnx").exists()
    assert manager.listed()["test-download"] == "Available"


def test_pips_configuration_is_read_off_the_main_thread(qgis_app, qtbot, index, folders, monkeypatch, tmp_path):
    """The index comes from pip's configuration, read in a thread of its own.

    ``pip config list`` starts a Python (a second or more), so the dialog never freezes while
    it looks."""
    from cloud_mask_improver.core.runtime import processes

    url = os.environ["PIP_INDEX_URL"]
    monkeypatch.delenv("PIP_INDEX_URL")
    (tmp_path / "pip.conf").write_text(f"[global]\nindex-url = {url}\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(tmp_path / "pip.conf"))
    started = []
    real_run = processes.run
    monkeypatch.setattr(
        processes,
        "run",
        lambda args, **kw: (
            started.append((args[1:4], threading.current_thread() is threading.main_thread())) or real_run(args, **kw)
        ),
    )
    models_dir, cache = folders
    downloadable_card(models_dir, "test-config", index["onnx"], sha256(index["wheel"]))
    manager = ModelManagerDialog(models_dir=models_dir, cache=cache)
    install_and_wait(qtbot, manager, "test-config")
    assert manager.listed()["test-config"] == "Installed", manager.message.text()
    assert started == [(["-m", "pip", "config"], False)]


def test_a_wrong_checksum_is_refused(qgis_app, qtbot, index, folders):
    models_dir, cache = folders
    downloadable_card(models_dir, "test-bad", index["onnx"], "0" * 64)
    manager = ModelManagerDialog(models_dir=models_dir, cache=cache)
    install_and_wait(qtbot, manager, "test-bad")
    assert "sha256" in manager.message.text() and "nothing was installed" in manager.message.text()
    assert not (models_dir / "test-bad.onnx").exists()
    assert not list(cache.glob("*.whl*"))  # no half or wrong file kept
    assert manager.listed()["test-bad"] == "Available"


def test_a_release_missing_from_the_index_is_explained(qgis_app, qtbot, index, folders, monkeypatch):
    models_dir, cache = folders
    path = downloadable_card(models_dir, "test-gone", index["onnx"], sha256(index["wheel"]))
    data = json.loads(path.read_text())
    data["source"]["filename"] = "cloudmask_test_model-9.9.9-py3-none-any.whl"
    path.write_text(json.dumps(data))
    manager = ModelManagerDialog(models_dir=models_dir, cache=cache)
    install_and_wait(qtbot, manager, "test-gone")
    assert "is not listed on" in manager.message.text()


def test_conversion_tools_missing_is_said_with_the_command(qgis_app, folders, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "lightgbm" else real(name, *a))
    models_dir, cache = folders
    manager = ModelManagerDialog(models_dir=models_dir, cache=cache)
    assert manager.listed()["s2cloudless-l1c"] == "Needs lightgbm"
    card = next(c for c in manager.cards if c.id == "s2cloudless-l1c")
    assert manager.install(card) is None
    assert "lightgbm" in manager.message.text() and "-m pip install" in manager.message.text()
    manager.select("s2cloudless-l1c")
    assert "pip install" in manager.details.text()


@pytest.fixture
def empty_runtime(tmp_path, monkeypatch):
    """A data home whose private folder has no onnxruntime; "importable" means installed there."""
    folder = tmp_path / "python"
    monkeypatch.setattr(home, "python_dir", lambda home_dir=None: folder)

    def status():
        if deps.installed_version(folder) if folder.exists() else "":
            return deps.RuntimeStatus(True, deps.installed_version(folder))
        return deps.RuntimeStatus(False, problem="onnxruntime is not installed for QGIS's Python.")

    monkeypatch.setattr(deps, "runtime_status", status)
    return folder


def test_missing_onnxruntime_is_installed_by_the_button_in_a_task(qgis_app, qtbot, folders, empty_runtime):
    manager = ModelManagerDialog(models_dir=folders[0], cache=folders[1])
    assert not manager.runtime_box.isHidden()
    assert "Models cannot run yet" in manager.runtime_note.text()
    assert manager.runtime_command.text() == deps.shown_command(deps.install_command())
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(tasks.runtime_install() is not None))
    timer.start(50)
    finished = []
    tasks.EVENTS.runtime_finished.connect(lambda ok, text: finished.append((ok, text)))
    manager.runtime_button.click()
    assert tasks.runtime_install() is not None and not manager.runtime_button.isEnabled()
    assert manager.cancel_button.isEnabled() and not manager.progress.isHidden()
    qtbot.waitUntil(lambda: bool(finished), timeout=300_000)
    timer.stop()
    assert finished[0][0], finished
    assert deps.installed_version(empty_runtime) == deps.ONNXRUNTIME_VERSION
    assert (empty_runtime / "onnxruntime" / "__init__.py").exists()
    assert not list(empty_runtime.glob("numpy*"))  # --no-deps: QGIS's numpy stays the one in use
    assert sum(ticks) >= 5, "the GUI froze while pip ran"  # the event loop kept turning
    assert manager.runtime_box.isHidden()
    assert f"onnxruntime {deps.ONNXRUNTIME_VERSION} installed" in manager.message.text()


def test_cancelling_the_onnxruntime_install_leaves_nothing(qgis_app, qtbot, folders, empty_runtime):
    manager = ModelManagerDialog(models_dir=folders[0], cache=folders[1])
    finished = []
    tasks.EVENTS.runtime_finished.connect(lambda ok, text: finished.append((ok, text)))
    manager.runtime_button.click()
    manager.cancel_button.click()
    qtbot.waitUntil(lambda: bool(finished), timeout=120_000)
    assert finished == [(False, "Installing onnxruntime was cancelled; nothing was installed.")]
    assert not empty_runtime.exists() or not list(empty_runtime.iterdir())
    assert not manager.runtime_box.isHidden() and manager.runtime_button.isEnabled()


def test_a_model_installs_off_the_gui_thread_and_can_be_cancelled(qgis_app, qtbot, index, folders, monkeypatch):
    models_dir, cache = folders
    downloadable_card(models_dir, "test-slow", index["onnx"], sha256(index["wheel"]))
    manager = ModelManagerDialog(models_dir=models_dir, cache=cache)
    threads = []
    real_install = installer.install

    def slow_install(*args, **kwargs):
        threads.append(threading.current_thread() is threading.main_thread())
        path = real_install(*args, **kwargs)
        while not manager.install_task.isCanceled():  # a long conversion, until the user cancels
            time.sleep(0.05)
        return path

    monkeypatch.setattr(installer, "install", slow_install)
    manager.select("test-slow")
    manager.install_selected()
    qtbot.waitUntil(lambda: bool(threads) and manager.install_task is not None, timeout=60_000)
    assert threads == [False]  # extraction and conversion run in a task, not on the GUI thread
    assert manager.cancel_button.isEnabled()
    manager.cancel_button.click()
    qtbot.waitUntil(lambda: not manager.busy(), timeout=60_000)
    assert "cancelled" in manager.message.text()
    assert not (models_dir / "test-slow.onnx").exists()
    assert [p.name for p in models_dir.iterdir()] == ["test-slow.json"]  # no staging folder left
    assert manager.listed()["test-slow"] == "Available"


def test_import_copies_model_and_card(qgis_app, tmp_path, folders):
    models_dir, cache = folders
    onnx_file = conv1x1_model(tmp_path / "mine.onnx", np.eye(3, 4), np.zeros(3), tile=64)
    write_card(tmp_path / "mine.json", id="my-model", title="My model")
    manager = ModelManagerDialog(models_dir=models_dir, cache=cache)
    card = manager.import_file(onnx_file)
    assert card is not None and card.id == "my-model"
    assert manager.listed()["my-model"] == "Installed"
    saved = load_card(models_dir / "my-model.json")
    assert saved.sha256 == sha256(onnx_file)
    assert catalogue.resolve("my-model", models_dir)[1] == models_dir / "my-model.onnx"


def test_the_card_form_writes_a_valid_card(qgis_app, tmp_path, folders):
    models_dir = folders[0]
    onnx_file = conv1x1_model(tmp_path / "Bare Net.onnx", np.eye(2, 4), np.zeros(2), tile=64)
    form = CardForm(onnx_file)
    assert form.model_id.text() == "bare-net"
    form.bands.setText("blue, green, red, nir")
    form.activation.setCurrentText("softmax")
    card = model_manager.write_imported(form.card(), onnx_file, models_dir)
    assert card.bands == ("B02", "B03", "B04", "B08")
    assert catalogue.resolve("bare-net", models_dir)[0].cloud_channels == (1,)
    form.bands.setText("B02, B99")
    with pytest.raises(ValueError, match="B99"):
        form.card()


def test_converter_command_keeps_the_numpy_qgis_has():
    """numpy 1.x on QGIS 3.22, 2.x on 3.40 and later: the command must not swap it for another."""
    command = model_manager.converter_command(["onnxmltools", "lightgbm"])
    assert f"numpy=={np.__version__}" in shlex.split(command) and "numpy<" not in command


def test_a_model_in_use_is_named_when_removing_or_replacing_it(qgis_app, qtbot, index, folders, windows_files):
    """On Windows a model file that a run has open cannot be deleted or replaced.

    Emulated by ``windows_files``: the manager and the installer name it and leave everything
    as it was."""
    from cloud_mask_improver.core.modelstore.cards import load_card
    from cloud_mask_improver.core.staging import FileInUseError

    models_dir, cache = folders
    card_file = downloadable_card(models_dir, "test-in-use", index["onnx"], sha256(index["wheel"]))
    model = models_dir / "test-in-use.onnx"
    manager = ModelManagerDialog(models_dir=models_dir, cache=cache)
    install_and_wait(qtbot, manager, "test-in-use")
    windows_files.hold(model)
    manager.select("test-in-use")
    manager.remove_button.click()
    text = manager.message.text()
    assert str(model) in text and "being used by another process" in text and "remove the model again" in text
    assert model.exists() and manager.listed()["test-in-use"] == "Installed"
    # A damaged copy that a run still has open, repaired by the installer (setup, the command line).
    windows_files.release(model)
    model.write_bytes(b"damaged")
    windows_files.hold(model)
    with pytest.raises(FileInUseError) as refused:
        installer.install(load_card(card_file), models_dir, cache, log=lambda _text: None, archive=cache / WHEEL)
    assert str(model) in str(refused.value) and "install the model again" in str(refused.value)
    assert model.read_bytes() == b"damaged"
    assert sorted(p.name for p in models_dir.iterdir()) == ["test-in-use.json", "test-in-use.onnx"]
