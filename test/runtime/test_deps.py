"""onnxruntime for QGIS's own Python: which interpreter pip runs with, and which onnxruntime wins."""

import sys
import types
from pathlib import Path

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


def test_windows_standalone_with_spaces_and_qgis_as_sys_executable(tmp_path):
    """QGIS 3.40 standalone in "Program Files": sys.executable is qgis-bin.exe, Python in apps/Python312."""
    root = tmp_path / "Program Files" / "QGIS 3.40.4"
    apps_python = touch(root / "apps" / "Python312" / "python.exe")
    touch(root / "bin" / "python-qgis.bat")
    qgis = touch(root / "bin" / "qgis-bin.exe")
    assert deps.find_qgis_python(qgis, root / "apps" / "Python312", (3, 12), "win32") == apps_python


def bundle_of(tmp_path, name: str, files: list[str]) -> tuple[Path, Path]:
    """A fake QGIS app bundle with these files under Contents/; returns (QGIS binary, sys.base_prefix)."""
    bundle = tmp_path / name
    for file in files:
        touch(bundle / "Contents" / file)
    return touch(bundle / "Contents" / "MacOS" / "QGIS"), bundle / "Contents" / "Frameworks"


# What each official macOS bundle holds (QGIS-Mac-Packager for 3.22-3.40, Python 3.9; the vcpkg
# bundles of 3.44 and 4, Python 3.12, whose python3.12 needs PYTHONHOME: qgis/QGIS#64195).
PACKAGER_BUNDLE = [
    "MacOS/bin/python3",
    "MacOS/bin/python3.9",
    "MacOS/bin/pip3",
    "Frameworks/Python.framework/Versions/3.9/bin/python3.9",
]
VCPKG_BUNDLE = ["MacOS/python", "MacOS/python3.12", "MacOS/gdalinfo", "Frameworks/lib/python3.12/os.py"]


@pytest.mark.parametrize(
    "qgis, files, version, expected",
    [
        ("QGIS-LTR.app", PACKAGER_BUNDLE, (3, 9), "MacOS/bin/python3"),  # QGIS 3.22
        ("QGIS 3.40.app", PACKAGER_BUNDLE, (3, 9), "MacOS/bin/python3"),  # QGIS 3.40
        ("QGIS 3.44.app", VCPKG_BUNDLE, (3, 12), "MacOS/python"),  # QGIS 3.44
        ("QGIS 4.0.app", VCPKG_BUNDLE, (3, 12), "MacOS/python"),  # QGIS 4
    ],
)
def test_macos_bundles_get_the_interpreter_that_starts_alone(tmp_path, monkeypatch, qgis, files, version, expected):
    binary, base_prefix = bundle_of(tmp_path, qgis, files)
    found = deps.find_qgis_python(binary, base_prefix, version, "darwin")
    assert found == tmp_path / qgis / "Contents" / expected
    monkeypatch.setattr(sys, "platform", "darwin")
    assert deps.python_environment(str(found)) == {}  # nothing to set: it finds its own library


def test_a_bare_python3_x_of_a_bundle_gets_its_home(tmp_path, monkeypatch):
    """Only python3.12 there (no python): usable with PYTHONHOME.

    Both pip's environment and the command shown to the user carry PYTHONHOME."""
    binary, base_prefix = bundle_of(tmp_path, "QGIS.app", ["MacOS/python3.12"])
    found = deps.find_qgis_python(binary, base_prefix, (3, 12), "darwin")
    assert found == tmp_path / "QGIS.app" / "Contents" / "MacOS" / "python3.12"
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(sys, "base_prefix", str(base_prefix))
    monkeypatch.setattr(deps, "python_executable", lambda: str(found))
    assert deps.pip_environment() == {"PYTHONHOME": str(base_prefix)}
    assert deps.shown_command(deps.install_command(tmp_path / "t")).startswith(f"PYTHONHOME={base_prefix} ")


def test_pip_gets_qgis_proxy_in_its_environment_not_on_its_command_line(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    environment = deps.pip_environment("http://ann:s%40cret@proxy.example:3128")
    assert environment["HTTPS_PROXY"] == environment["HTTP_PROXY"] == "http://ann:s%40cret@proxy.example:3128"
    assert "s%40cret" not in " ".join(deps.install_command())


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
