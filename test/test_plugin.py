"""The plugin as QGIS sees it: metadata, classFactory, GUI wiring, unload, qgis_process."""

import configparser
import gc
import os
import shutil
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
from qgis.core import (
    QgsApplication,
    QgsProcessingAlgRunnerTask,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
)
from qgis.PyQt import sip
from qgis.PyQt.QtCore import QFile
from qgis.PyQt.QtGui import QIcon
from samples import L1C_STACK, require

import cloud_mask_improver
from cloud_mask_improver import plugin as plugin_module
from cloud_mask_improver.algorithms import base
from cloud_mask_improver.algorithms.provider import CloudMaskProvider
from cloud_mask_improver.core.runtime import home
from cloud_mask_improver.ui import improve_run
from cloud_mask_improver.ui.improve_dialog import ImproveDialog
from cloud_mask_improver.ui.model_manager import ModelManagerDialog

ROOT = Path(__file__).resolve().parent.parent
MENU = "Cloud Mask Improver"
ACTION_TEXTS = [
    "Improve cloud mask…",
    "Improve cloud mask (ensemble)…",
    "Manage models…",
    "Open “Improve cloud mask (model)” in the modeler…",
    "Open “Improve cloud mask from product (model)” in the modeler…",
]
QGIS_PROCESS = shutil.which("qgis_process.bin") or shutil.which("qgis_process")


class FakeQgisGui:
    """The Raster menu and the Plugins toolbar, as QGIS manages them for plugins.

    pytest-qgis's ``qgis_iface`` has a real main window but turns these calls
    into mocks; this puts real menus and a real toolbar behind them, removing
    a plugin's submenu when its last action goes, as QGIS does.
    """

    def __init__(self, iface):
        self.iface = iface
        self.window = iface.mainWindow()
        self.raster_menu = self.window.menuBar().addMenu("&Raster")
        self.toolbar = self.window.addToolBar("Plugins")

    def submenu(self, name):
        for action in self.raster_menu.actions():
            if action.menu() is not None and action.text() == name:
                return action.menu()
        return None

    def add_plugin_to_raster_menu(self, name, action):
        menu = self.submenu(name) or self.raster_menu.addMenu(name)
        menu.addAction(action)

    def remove_plugin_raster_menu(self, name, action):
        menu = self.submenu(name)
        if menu is None:
            return
        menu.removeAction(action)
        if not menu.actions():
            self.raster_menu.removeAction(menu.menuAction())

    def close(self):
        self.window.menuBar().removeAction(self.raster_menu.menuAction())
        self.window.removeToolBar(self.toolbar)
        self.raster_menu.deleteLater()
        self.toolbar.deleteLater()


def registry():
    return QgsApplication.processingRegistry()


@pytest.fixture(autouse=True)
def start_without_the_provider():
    """Each test starts as QGIS does, with no ``cloudmask`` provider (other modules may leave one)."""
    registry().removeProvider("cloudmask")  # by id: a leftover may have lost its Python half


@pytest.fixture
def gui(qgis_iface, monkeypatch):
    fake = FakeQgisGui(qgis_iface)
    monkeypatch.setattr(qgis_iface, "addPluginToRasterMenu", fake.add_plugin_to_raster_menu)
    monkeypatch.setattr(qgis_iface, "removePluginRasterMenu", fake.remove_plugin_raster_menu)
    monkeypatch.setattr(qgis_iface, "addToolBarIcon", fake.toolbar.addAction)
    monkeypatch.setattr(qgis_iface, "removeToolBarIcon", fake.toolbar.removeAction)
    qgis_iface.messageBar().clear_messages()
    yield fake
    fake.close()


@pytest.fixture
def plugin(gui):
    loaded = cloud_mask_improver.classFactory(gui.iface)
    loaded.initGui()
    yield loaded
    loaded.unload()


def test_metadata_has_what_qgis_needs():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "metadata.txt", encoding="utf-8")
    meta = parser["general"]
    for key in ("name", "qgisMinimumVersion", "description", "about", "version", "author"):
        assert meta.get(key, "").strip(), key
    assert meta["name"] == "Cloud Mask Improver"
    assert meta["hasProcessingProvider"] == "yes"
    assert meta["category"] == "Raster"
    assert (ROOT / meta["icon"]).is_file()
    assert (ROOT / "LICENSE").is_file()


def test_icon_renders_from_its_file():
    assert QFile(plugin_module.ICON).exists() and not plugin_module.ICON.startswith(":/")
    assert not QIcon(plugin_module.ICON).isNull()


def test_class_factory_registers_nothing_until_asked(gui):
    loaded = cloud_mask_improver.classFactory(gui.iface)
    assert isinstance(loaded, plugin_module.CloudMaskImproverPlugin)
    assert registry().providerById("cloudmask") is None
    assert gui.submenu(MENU) is None


def test_processing_works_without_a_gui():
    # qgis_process loads the plugin with iface None and calls only initProcessing.
    loaded = cloud_mask_improver.classFactory(None)
    loaded.initProcessing()
    assert registry().providerById("cloudmask") is not None
    loaded.unload()
    assert registry().providerById("cloudmask") is None


def test_unload_removes_only_the_provider_it_added():
    # Someone else's provider with our id (e.g. a copy of the plugin loaded before). Keep
    # a Python reference while it is registered, or Python frees its methods.
    other = CloudMaskProvider()
    registry().addProvider(other)
    loaded = cloud_mask_improver.classFactory(None)
    loaded.initProcessing()  # refused: the id is taken
    loaded.unload()
    assert registry().providerById("cloudmask") is other
    registry().removeProvider(other)


def test_init_gui_adds_menu_toolbar_and_provider(plugin, gui):
    submenu = gui.submenu(MENU)
    assert submenu is not None
    assert [action.text() for action in submenu.actions()] == ACTION_TEXTS
    assert all(not action.icon().isNull() for action in submenu.actions())
    assert [action.text() for action in gui.toolbar.actions()] == ACTION_TEXTS[:1]

    provider = registry().providerById("cloudmask")
    assert provider is not None
    assert provider.name() == "Cloud Mask Improver"
    assert not provider.icon().isNull()


def test_unload_leaves_nothing_behind_and_can_repeat(gui):
    loaded = cloud_mask_improver.classFactory(gui.iface)
    loaded.initGui()
    loaded.unload()
    assert gui.submenu(MENU) is None
    assert gui.raster_menu.actions() == []
    assert gui.toolbar.actions() == []
    assert registry().providerById("cloudmask") is None
    loaded.unload()  # QGIS may call it again; nothing to do, no error


def test_load_unload_load(gui):
    for _ in range(2):
        loaded = cloud_mask_improver.classFactory(gui.iface)
        loaded.initGui()
        assert registry().providerById("cloudmask") is not None
        assert len(gui.submenu(MENU).actions()) == len(ACTION_TEXTS)
        assert len(gui.toolbar.actions()) == 1
        loaded.unload()
        assert registry().providerById("cloudmask") is None
        assert gui.submenu(MENU) is None


def test_improve_actions_open_the_plugin_dialogs(plugin):
    improve, ensemble = plugin.actions[:2]
    improve.trigger()
    ensemble.trigger()
    single, several = plugin.dialogs["improve"], plugin.dialogs["ensemble"]
    assert isinstance(single, ImproveDialog) and not single.ensemble and single.isVisible()
    assert isinstance(several, ImproveDialog) and several.ensemble and several.isVisible()
    assert several.algorithm_id() == "cloudmask:improvecloudmaskensemble"
    improve.trigger()  # a second click brings back the same dialog, with what was filled in
    assert plugin.dialogs["improve"] is single


def test_manage_models_opens_the_model_manager(plugin):
    plugin.actions[2].trigger()
    manager = plugin.dialogs["models"]
    assert isinstance(manager, ModelManagerDialog) and manager.isVisible()
    assert manager.models_dir == home.models_dir(cloud_mask_improver.data_home())
    assert "ukis-4b-l1c" in manager.listed()


def test_unload_closes_the_dialogs(gui):
    loaded = cloud_mask_improver.classFactory(gui.iface)
    loaded.initGui()
    for action in loaded.actions[:3]:  # the plugin's own dialogs (the modeler is QGIS's)
        action.trigger()
    dialogs = list(loaded.dialogs.values())
    loaded.unload()
    assert loaded.dialogs == {}
    assert not any(dialog.isVisible() for dialog in dialogs)


def test_unload_during_a_dialog_run_stops_it_and_keeps_what_its_task_uses(gui, qtbot, tmp_path):
    """QGIS's Exit (and Plugin Reloader) unloads the plugin while a dialog's run goes on.

    QGIS 3.40 can crash then (signal 11). Unload must return only once our algorithm has
    stopped running in the task's thread (QGIS deletes the provider next, then the process),
    and the run's context and feedback, which the C++ task points at, must live until the
    task has ended."""
    require(L1C_STACK)
    stack = QgsRasterLayer(str(L1C_STACK), "S2 L1C sample")
    QgsProject.instance().addMapLayer(stack)
    loaded = cloud_mask_improver.classFactory(gui.iface)
    loaded.initGui()
    loaded.improve()
    dialog = loaded.dialogs["improve"]
    dialog.form.s2_layer.setLayer(stack)
    dialog.form.cloud_models.setValue("ukis-6b-l1c")  # native resolution: many tiles
    target = tmp_path / "mask.tif"
    dialog.form.output.setFilePath(str(target))
    kept = weakref.ref(dialog.run())  # the dialog holds the run until unload disposes of it
    qtbot.waitUntil(lambda: kept().feedback.progress() > 0 or kept().done, timeout=120_000)
    assert not kept().done, "the run ended before the plugin was unloaded"
    try:
        loaded.unload()
        assert base.running() == 0  # no run of ours left executing in another thread
        gc.collect()
        assert kept() is not None and not sip.isdeleted(kept().context) and not sip.isdeleted(kept().feedback)
        qtbot.waitUntil(lambda: not improve_run._UNFINISHED, timeout=60_000)  # the task has ended
        assert not target.exists() and list(tmp_path.iterdir()) == []
        assert [lyr.name() for lyr in QgsProject.instance().mapLayers().values()] == ["S2 L1C sample"]
    finally:
        QgsProject.instance().removeAllMapLayers()


def test_unload_cancels_a_toolbox_run_of_its_algorithms(gui, qtbot, tmp_path):
    """A run started from the toolbox (QGIS's own task) cannot go on once the plugin is gone."""
    require(L1C_STACK)
    loaded = cloud_mask_improver.classFactory(gui.iface)
    loaded.initGui()
    algorithm = registry().createAlgorithmById("cloudmask:improvecloudmask")
    context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
    target = tmp_path / "mask.tif"
    parameters = {
        "S2_RASTER": str(L1C_STACK),
        "CLOUD_MODEL": "ukis-6b-l1c",
        "SHADOW_MODEL": "ukis-6b-l1c",
        "MASK": str(target),
    }
    task = QgsProcessingAlgRunnerTask(algorithm, parameters, context, feedback)
    ended = []
    task.executed.connect(lambda ok, _results: ended.append(ok))
    QgsApplication.taskManager().addTask(task)
    qtbot.waitUntil(lambda: feedback.progress() > 0, timeout=120_000)
    loaded.unload()
    assert base.running() == 0 and feedback.isCanceled()
    qtbot.waitUntil(lambda: bool(ended), timeout=60_000)
    assert ended == [False] and not target.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.skipif(QGIS_PROCESS is None, reason="qgis_process is not installed")
def test_qgis_process_enables_the_plugin_and_lists_the_provider(plugin_dir, tmp_path):
    # A fresh QGIS profile in tmp_path, so the user's own profile is never touched.
    # The plugin then finds onnxruntime through CLOUDMASK_HOME (set by conftest).
    env = dict(os.environ)
    env.pop("QGIS_OPTIONS_PATH", None)
    env.update(
        HOME=str(tmp_path),
        QGIS_CUSTOM_CONFIG_PATH=str(tmp_path / "qgis"),
        QGIS_PLUGINPATH=str(plugin_dir),
        QT_QPA_PLATFORM="offscreen",
    )

    def qgis_process(*args):
        done = subprocess.run([QGIS_PROCESS, *args], check=False, env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
        return done.stdout

    enabled = qgis_process("plugins", "enable", "cloud_mask_improver")
    assert "Enabled cloud_mask_improver (Cloud Mask Improver)" in enabled
    ini = tmp_path / "qgis" / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    assert "cloud_mask_improver=true" in ini.read_text()

    listing = qgis_process("list")
    assert "\nCloud Mask Improver\n" in listing
    assert "\tcloudmask:" in listing


def test_the_tests_run_in_a_checkout_whose_folder_name_is_no_python_name(tmp_path):
    """``git clone …/cloud-mask-improver`` then ``make test``: importing the repository's ``__init__.py`` works.

    pytest >= 8 imports it on its own (the folder is a package of the test tree, and
    'cloud-mask-improver' cannot be imported by name); that import must not fail, or every
    test errors before it starts."""
    checkout = tmp_path / "cloud-mask-improver"
    (checkout / "test").mkdir(parents=True)
    shutil.copy(ROOT / "__init__.py", checkout)
    shutil.copy(ROOT / "pyproject.toml", checkout)
    (checkout / "core").symlink_to(ROOT / "core")
    (checkout / "test" / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test"],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-2000:]
