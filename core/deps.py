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
if sys.version_info < (3, 10):
    # QGIS 3.22-3.28 for Windows ship Python 3.9, for which 1.19.2 is the last release;
    # it runs every model we install (a newer model's opset gets the "newer onnxruntime" answer).
    ONNXRUNTIME_VERSION, ONNXRUNTIME_MINIMUM = "1.19.2", (1, 19)


@dataclass(frozen=True)
class RuntimeStatus:
    available: bool
    version: str = ""
    problem: str = ""


def ensure_on_path(home_dir: Path | None = None) -> bool:
    """Put the private dependency folder on ``sys.path`` if Python lacks onnxruntime.

    Returns True when the folder was added. Called once when the plugin loads.
    """
    folder = str(home.python_dir(home_dir))
    if folder in sys.path or not os.path.isdir(folder):
        return False
    try:
        importlib.import_module("onnxruntime")
        return False
    except ImportError:
        pass
    sys.path.append(folder)
    importlib.invalidate_caches()
    return True


def python_executable() -> str:
    """The Python interpreter that runs QGIS's Python, for calling pip.

    Inside the QGIS desktop application ``sys.executable`` is QGIS itself, so
    look for the interpreter of the running prefix instead.
    """
    exe = Path(sys.executable)
    if exe.name.lower().startswith("python"):
        return str(exe)
    names = ["python3.exe", "python.exe"] if os.name == "nt" else [
        f"python{sys.version_info.major}.{sys.version_info.minor}", "python3"]
    for folder in (Path(sys.prefix), Path(sys.prefix) / "bin", Path(sys.exec_prefix) / "bin"):
        for name in names:
            if (folder / name).exists():
                return str(folder / name)
    return shutil.which("python3") or "python3"


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


def runtime_status() -> RuntimeStatus:
    """Whether onnxruntime imports here, its version, and what to do when it does not."""
    try:
        ort = importlib.import_module("onnxruntime")
    except ImportError as err:
        return RuntimeStatus(False, problem=(
            f"onnxruntime is not installed for QGIS's Python ({err}). Install it with: "
            + " ".join(install_command())))
    version = getattr(ort, "__version__", "0")
    if _version_tuple(version) < ONNXRUNTIME_MINIMUM:
        return RuntimeStatus(False, version, (
            f"onnxruntime {version} is too old (need {'.'.join(map(str, ONNXRUNTIME_MINIMUM))} "
            "or newer). Upgrade it with: " + " ".join(install_command())))
    return RuntimeStatus(True, version)


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)
