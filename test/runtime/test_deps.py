"""onnxruntime for QGIS's own Python: which interpreter pip runs with, and which onnxruntime wins."""

import sys
import types

import pytest

from cloud_mask_improver.core.runtime import deps, home


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    return path


# -- which interpreter: each platform's layout, in fake folders

def test_linux_takes_the_python_of_qgis_not_the_first_on_path(tmp_path):
    usr = tmp_path / "usr"
    qgis_python = touch(usr / "bin" / "python3.11")
    touch(usr / "bin" / "python3.9")
    shim = touch(tmp_path / "pyenv" / "shims" / "python3")  # sys.executable inside QGIS: first on PATH
    assert deps.find_qgis_python(shim, usr, (3, 11), "linux") == qgis_python


def test_windows_osgeo4w_python_in_apps(tmp_path):
    root = tmp_path / "OSGeo4W"
    apps_python = touch(root / "apps" / "Python39" / "python3.exe")
    touch(root / "bin" / "qgis-bin.exe")
    found = deps.find_qgis_python(root / "bin" / "qgis-bin.exe", root / "apps" / "Python39", (3, 9), "win32")
    assert found == apps_python


def test_windows_standalone_python_in_the_install_bin(tmp_path):
    root = tmp_path / "QGIS 3.34"
    bin_python = touch(root / "bin" / "python.exe")
    found = deps.find_qgis_python(root / "bin" / "qgis-ltr-bin.exe", root / "apps" / "Python312", (3, 12), "win32")
    assert found == bin_python


def test_macos_app_bundle(tmp_path):
    bundle = tmp_path / "QGIS-LTR.app"
    bundled = touch(bundle / "Contents" / "MacOS" / "bin" / "python3")
    qgis = touch(bundle / "Contents" / "MacOS" / "QGIS")
    found = deps.find_qgis_python(qgis, bundle / "Contents" / "Frameworks" / "Python.framework", (3, 9), "darwin")
    assert found == bundled


def test_the_pip_command_names_qgis_python_here():
    """Here QGIS's Python is Debian's /usr/bin/python3.11 (the venv and PATH may differ)."""
    command = deps.install_command()
    assert command[0] == f"{sys.base_prefix}/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    assert command[1:4] == ["-m", "pip", "install"]


# -- which onnxruntime wins

@pytest.fixture
def private(tmp_path, monkeypatch):
    """A data home whose private folder holds onnxruntime 1.32.0 (its dist-info is what counts)."""
    monkeypatch.setenv(home.ENV_VAR, str(tmp_path))
    folder = home.python_dir()
    (folder / f"onnxruntime-{deps.ONNXRUNTIME_VERSION}.dist-info").mkdir(parents=True)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return folder


def test_the_private_folder_comes_first_even_when_an_onnxruntime_imports(private):
    """An old onnxruntime elsewhere on the path must not win over the one we installed."""
    sys.path.append(str(private))  # e.g. added at the end by an earlier version of the plugin
    assert deps.ensure_on_path()
    assert sys.path[0] == str(private) and sys.path.count(str(private)) == 1
    assert not deps.ensure_on_path()  # already first: nothing to do


def test_a_stale_old_onnxruntime_asks_for_a_restart(private, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", types.SimpleNamespace(__version__="1.16.3"))
    status = deps.runtime_status()
    assert not status.available
    assert "Restart QGIS to use 1.32.0" in status.problem


def test_a_stale_recent_onnxruntime_runs_and_mentions_the_restart(private, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", types.SimpleNamespace(__version__="1.22.0"))
    status = deps.runtime_status()
    assert status.available and "Restart QGIS to use 1.32.0" in status.problem


def test_the_installed_onnxruntime_is_simply_available(private, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", types.SimpleNamespace(__version__=deps.ONNXRUNTIME_VERSION))
    assert deps.runtime_status() == deps.RuntimeStatus(True, deps.ONNXRUNTIME_VERSION)
