"""Where the plugin keeps what it installs at run time.

One data home holds the installed model files and a private Python folder
for onnxruntime. ``CLOUDMASK_HOME`` overrides it; otherwise it is a folder in
the QGIS profile, so a desktop user without admin rights, ``qgis_process``,
the tests and the demo all see the same models and dependencies.

The profile is the one QGIS runs with (``--profile``, ``--profiles-path``), which
only QGIS knows: the plugin tells this module once, when QGIS loads it
(:func:`set_session_profile`), and from then on every caller (algorithms, model
manager, messages) gets that profile's data home without asking QGIS.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path

ENV_VAR = "CLOUDMASK_HOME"
FOLDER_NAME = "cloud_mask_improver"

_session_profile: Path | None = None  # the running QGIS profile, set by the plugin when QGIS loads it


def set_session_profile(profile_dir: str | Path | None) -> Path:
    """Record the QGIS profile of this session (``QgsApplication.qgisSettingsDirPath()``).

    Returns the data home that every later :func:`data_home` call gives."""
    global _session_profile
    _session_profile = Path(profile_dir) if profile_dir else None
    return data_home()


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
    """The folder where the plugin keeps its data.

    ``$CLOUDMASK_HOME``, else ``<profile>/cloud_mask_improver`` for ``profile_dir``, else the
    session's profile, else QGIS's default profile."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    profile = Path(profile_dir) if profile_dir else _session_profile or default_profile_dir()
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


def optimized_dir(home: Path | None = None) -> Path:
    """Optimised copies of the installed networks, which later CPU sessions load as they are."""
    return (home or data_home()) / "optimized"


def optimized_copy(model: Path, key: str, home: Path | None = None) -> Path:
    """The optimised copy of the installed network ``model`` for ``key`` (what the copy depends on)."""
    return optimized_dir(home) / f"{model.stem}-{hashlib.sha256(key.encode()).hexdigest()[:20]}.onnx"


def optimized_copies(model: Path, home: Path | None = None) -> list[Path]:
    """Every optimised copy kept for ``model`` (any onnxruntime, any CPU), and unfinished ones.

    Only this model's: another whose name starts the same (``ukis-6b-l1c-mine``) is not matched."""
    folder = optimized_dir(home)
    if not folder.is_dir():
        return []
    own = re.compile(re.escape(model.stem) + r"-[0-9a-f]{20}(\.onnx|\.[0-9a-f]{32}\.partial)")
    return sorted(p for p in folder.iterdir() if own.fullmatch(p.name))
