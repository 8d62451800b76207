"""onnxruntime for QGIS's own Python, without admin rights.

QGIS ships no onnxruntime. We install the pinned wheel into a private folder
of the data home with ``pip install --target --no-deps``: letting pip resolve
dependencies there would pull numpy 2, which would shadow QGIS's numpy and
break GDAL's array bindings. onnxruntime needs nothing beyond numpy for
inference, which QGIS's Python has.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from . import home

ONNXRUNTIME_VERSION = "1.32.0"
# Oldest onnxruntime we accept: the first one that runs opset 21 graphs.
ONNXRUNTIME_MINIMUM = (1, 20)


@dataclass(frozen=True)
class RuntimeStatus:
    available: bool
    version: str = ""
    problem: str = ""


def ensure_on_path(home_dir: Path | None = None) -> bool:
    """Put the private dependency folder FIRST on ``sys.path``, so that the onnxruntime we
    installed wins over an older one elsewhere in QGIS's Python.

    Returns True when the folder was (newly) put first. Called when the plugin loads and
    after an install. An onnxruntime that was already imported stays loaded until QGIS
    restarts: :func:`runtime_status` says so.
    """
    folder = str(home.python_dir(home_dir))
    if not os.path.isdir(folder) or (sys.path and sys.path[0] == folder):
        return False
    while folder in sys.path:
        sys.path.remove(folder)
    sys.path.insert(0, folder)
    importlib.invalidate_caches()
    return True


def python_executable() -> str:
    """The Python interpreter that runs QGIS's Python, for calling pip.

    Inside the QGIS desktop application ``sys.executable`` is QGIS itself or whatever
    ``python3`` comes first on PATH (which may be another Python that cannot import
    qgis), so look where each platform's QGIS keeps its own interpreter.
    """
    return str(find_qgis_python(Path(sys.executable), Path(sys.base_prefix), sys.version_info[:2],
                                sys.platform) or shutil.which("python3") or "python3")


def find_qgis_python(executable: Path, base_prefix: Path, version: tuple[int, int], platform: str) -> Path | None:
    """QGIS's interpreter from the running Python's own facts (testable with fake folders).

    Linux: ``python3.X`` (this Python's version) in ``<base_prefix>/bin``. Windows
    (OSGeo4W and the standalone installer): ``python3.exe``/``python.exe`` in
    ``<base_prefix>`` (``apps/Python3x``) or the install's ``bin`` (``python-qgis*.bat``
    sets up the environment there). macOS: the app bundle's ``Contents/MacOS/bin/python3``.
    ``executable`` (``sys.executable``) itself is never trusted: inside QGIS it is QGIS or
    the first ``python3`` on PATH.
    """
    major, minor = version
    if platform.startswith("win"):
        names = ["python3.exe", "python.exe"]
        install = base_prefix.parent.parent  # <install>/apps/Python3x -> <install>
        folders = [base_prefix, install / "bin", executable.parent]
    elif platform == "darwin":
        names = [f"python{major}.{minor}", "python3"]
        bundle = next((p for p in [executable, *executable.parents] if p.suffix == ".app"), None)
        folders = ([bundle / "Contents" / "MacOS" / "bin", bundle / "Contents" / "MacOS"] if bundle else []) + [
            base_prefix / "bin"]
    else:
        names = [f"python{major}.{minor}", f"python{major}"]
        folders = [base_prefix / "bin"]
    for folder in folders:
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None


def install_command(target: Path | None = None) -> list[str]:
    """The exact command that installs onnxruntime for QGIS's Python."""
    folder = target or home.python_dir()
    return [python_executable(), "-m", "pip", "install", "--upgrade", "--no-deps",
            "--target", str(folder), f"onnxruntime=={ONNXRUNTIME_VERSION}"]


def install_onnxruntime(target: Path | None = None) -> RuntimeStatus:
    """Install the pinned onnxruntime into the private folder (no-op when present)."""
    folder = target or home.python_dir()
    if installed_version(folder) == ONNXRUNTIME_VERSION:
        return RuntimeStatus(True, ONNXRUNTIME_VERSION)
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(install_command(folder), check=False, capture_output=True, text=True)
    if done.returncode != 0:
        return RuntimeStatus(False, problem=f"pip failed: {done.stderr.strip()[-2000:]}")
    return RuntimeStatus(True, installed_version(folder))


def installed_version(folder: Path) -> str:
    """Version of onnxruntime in ``folder`` read from its dist-info, without importing it."""
    for info in sorted(folder.glob("onnxruntime-*.dist-info")):
        return info.name[len("onnxruntime-"):-len(".dist-info")]
    return ""


def runtime_status(home_dir: Path | None = None) -> RuntimeStatus:
    """Whether onnxruntime imports here, its version, and what to do when it does not.

    An onnxruntime imported before ours was installed (or put first on the path) stays
    loaded until QGIS restarts: then the message says that a restart picks up ours.
    """
    installed = installed_version(home.python_dir(home_dir))
    try:
        ort = importlib.import_module("onnxruntime")
    except ImportError as err:
        return RuntimeStatus(False, problem=(
            f"onnxruntime is not installed for QGIS's Python ({err}). Install it with: "
            + " ".join(install_command())))
    version = getattr(ort, "__version__", "0")
    restart = f"Restart QGIS to use {installed}, installed for the plugin" if installed and version != installed \
        else ""
    if _version_tuple(version) < ONNXRUNTIME_MINIMUM:
        upgrade = "upgrade it with: " + " ".join(install_command())
        return RuntimeStatus(False, version, (
            f"onnxruntime {version} is too old (need {'.'.join(map(str, ONNXRUNTIME_MINIMUM))} or newer). "
            + (f"{restart}, or {upgrade}" if restart else upgrade[0].upper() + upgrade[1:])))
    return RuntimeStatus(True, version, f"onnxruntime {version} is loaded. {restart}." if restart else "")


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)
