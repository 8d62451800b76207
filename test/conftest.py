"""Shared test set-up.

- The plugin is importable as the package ``cloud_mask_improver``, the name it
  has when installed: ``.venv/qgis-plugins/cloud_mask_improver`` is a symlink
  to the repository root (the folder ``scripts/install.py`` makes for
  ``qgis_process``, one per checkout), and that plugins folder is on ``sys.path``.
- Qt runs headless. pytest-qgis starts QGIS before this file is read, so
  ``QT_QPA_PLATFORM=offscreen`` must already be in the environment (the
  Makefile exports it); setting it here covers the subprocesses.
- onnxruntime from the private folder of the data home is importable.
"""

import importlib.util
import os
import sys
from pathlib import Path

import pytest
from qgis.core import QgsApplication

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "cloud_mask_improver"

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# QGIS's Processing plugin (the top-level ``processing``) is not on sys.path
# outside the desktop: put it there for ``processing.run`` in tests.
sys.path.insert(0, os.path.join(QgsApplication.pkgDataPath(), "python", "plugins"))
import processing  # noqa: F401

# core/runtime/home.py has no imports of ours: load it by path to find the data home.
_spec = importlib.util.spec_from_file_location("_cloudmask_home", ROOT / "core" / "runtime" / "home.py")
_home = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_home)

# pytest-qgis points QGIS at a settings folder in the repository
# (QGIS_CUSTOM_CONFIG_PATH), so the plugin would look for its data home there:
# keep the one data home that setup filled.
os.environ.setdefault(_home.ENV_VAR, str(_home.data_home()))

PLUGINS_DIR = ROOT / ".venv" / "qgis-plugins"  # per checkout: two clones never run each other's code
PLUGINS_DIR.mkdir(parents=True, exist_ok=True)
_link = PLUGINS_DIR / PACKAGE
if _link.is_symlink() and _link.resolve() != ROOT:
    _link.unlink()  # a link to another checkout: point it here, as setup does
if not _link.is_symlink():
    _link.symlink_to(ROOT, target_is_directory=True)
if str(PLUGINS_DIR) not in sys.path:
    sys.path.insert(0, str(PLUGINS_DIR))

from cloud_mask_improver.core.runtime import deps

deps.ensure_on_path()


def pytest_collection_modifyitems(items):
    """Every test of test/desktop/ drives the real QGIS window: mark it, for `make test-fast`."""
    for item in items:
        if "desktop" in Path(str(item.fspath)).relative_to(ROOT / "test").parts[:1]:
            item.add_marker(pytest.mark.desktop)


@pytest.fixture
def project():
    """QGIS's project, emptied of its layers after the test."""
    from qgis.core import QgsProject

    yield QgsProject.instance()
    QgsProject.instance().removeAllMapLayers()


@pytest.fixture(scope="session")
def plugin_dir():
    """The plugins folder that holds ``cloud_mask_improver`` (for QGIS_PLUGINPATH)."""
    return PLUGINS_DIR


@pytest.fixture(scope="module")
def provider(qgis_app, qgis_processing):
    """The cloudmask provider, registered for a test module."""
    from cloud_mask_improver.algorithms.provider import CloudMaskProvider

    registry = QgsApplication.processingRegistry()
    if registry.providerById("cloudmask") is not None:
        registry.removeProvider("cloudmask")
    provider = CloudMaskProvider()  # kept referenced: QGIS does not own Python providers
    assert registry.addProvider(provider)
    yield provider
    registry.removeProvider("cloudmask")


@pytest.fixture
def windows_files(monkeypatch):
    """Windows file semantics (test/windows_files.py) for files loaded in QGIS or ``hold``-ed.

    Files loaded in ``QgsProject.instance()`` and files ``hold``-ed refuse rename, delete and
    writing, as Windows does for files in use."""
    import windows_files as emulation

    return emulation.patch(monkeypatch)


@pytest.fixture(autouse=True)
def _driver_checks_end_with_their_test():
    """The GPU row asks the driver in a thread that reads PATH when it starts.

    One left running would start the next test's fake nvidia-smi and count there."""
    yield
    import threading

    for thread in threading.enumerate():
        if thread.name == "cloudmask-gpu-check":
            thread.join(timeout=30)


_VIEWS = []  # the real layer tree views handed out, kept alive for the session


@pytest.fixture(autouse=True)
def _real_layer_tree_view(monkeypatch):
    """Give pytest-qgis's stand-in iface a real view of the project's layer tree, as in the desktop.

    QGIS >= 3.44 passes ``iface.layerTreeView()`` to ``QgsProcessingGuiUtils.addResultLayers``,
    which refuses pytest-qgis's stand-in (a MagicMock). Wherever the iface of a test is that
    stand-in (it stays installed once any test asked for it), it gets the real view."""
    from unittest import mock

    from qgis import utils

    iface = getattr(utils, "iface", None)
    if iface is None or not isinstance(getattr(iface, "layerTreeView", None), mock.Mock):
        yield
        return
    if not _VIEWS:
        from qgis.core import QgsLayerTreeModel, QgsProject
        from qgis.gui import QgsLayerTreeView

        view = QgsLayerTreeView()
        model = QgsLayerTreeModel(QgsProject.instance().layerTreeRoot())
        view.setModel(model)
        _VIEWS.extend([view, model])
    monkeypatch.setattr(iface, "layerTreeView", lambda: _VIEWS[0])
    yield


@pytest.fixture
def tiny_model(tmp_path):
    """A 4-band per-pixel network with a 64 px ukis-style card (random weights)."""
    import numpy as np
    from onnx_models import conv1x1_model, write_card

    rng = np.random.default_rng(3)
    path = conv1x1_model(tmp_path / "tiny.onnx", rng.normal(size=(3, 4)), rng.normal(size=3), tile=64)
    write_card(tmp_path / "tiny.json", id="tiny-test")
    return path
