"""Where the plugin keeps what it installs at run time.

One data home holds the installed model files and a private Python folder
for onnxruntime. ``CLOUDMASK_HOME`` overrides it; otherwise it is a folder in
the QGIS profile, so a desktop user without admin rights, ``qgis_process``,
the tests and the demo all see the same models and dependencies.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV_VAR = "CLOUDMASK_HOME"
FOLDER_NAME = "cloud_mask_improver"


def default_profile_dir() -> Path:
    """The default QGIS 3 profile folder, as QGIS lays it out per platform."""
    if sys.platform.startswith("win"):
        base = Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return base / "QGIS" / "QGIS3" / "profiles" / "default"


def data_home(profile_dir: str | Path | None = None) -> Path:
    """The data home: ``$CLOUDMASK_HOME``, else ``<profile>/cloud_mask_improver``."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    profile = Path(profile_dir) if profile_dir else default_profile_dir()
    return profile / FOLDER_NAME


def models_dir(home: Path | None = None) -> Path:
    """Installed ``.onnx`` files (and the cards of user-imported models)."""
    return (home or data_home()) / "models"


def python_dir(home: Path | None = None) -> Path:
    """Private dependency folder filled with ``pip install --target``."""
    return (home or data_home()) / "python"


def cache_dir(home: Path | None = None) -> Path:
    """Downloaded sources kept so that reinstalling needs no network."""
    return (home or data_home()) / "cache"
