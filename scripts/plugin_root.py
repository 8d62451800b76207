"""One import root for the scripts: the plugin is imported as ``cloud_mask_improver``.

That is the name QGIS and the tests use, from this checkout's plugins folder
(``.venv/qgis-plugins``, a link to this checkout, made here when it is missing).
Importing ``core`` as a top-level package too would load every module twice, under
two names.

The folder is per checkout, not in the shared data home: two clones on one machine
each run their own code under ``qgis_process``.

Run as a script, it prints the plugins folder (for ``QGIS_PLUGINPATH``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "cloud_mask_improver"


def plugins_dir() -> Path:
    return ROOT / ".venv" / "qgis-plugins"


def link_plugin() -> Path:
    """The plugins folder, with ``cloud_mask_improver`` linking to this checkout."""
    plugins = plugins_dir()
    plugins.mkdir(parents=True, exist_ok=True)
    link = plugins / PACKAGE
    if link.is_symlink() and Path(os.readlink(link)) == ROOT:
        return plugins
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(ROOT, target_is_directory=True)
    return plugins


def import_root() -> Path:
    """Put the plugins folder on ``sys.path`` so ``import cloud_mask_improver`` is this checkout."""
    plugins = link_plugin()
    if str(plugins) not in sys.path:
        sys.path.insert(0, str(plugins))
    return plugins


def qgis_process() -> str:
    """The qgis_process to run: the binary itself where it exists.

    Debian's wrapper passes an option QGIS 3.22 rejects."""
    for name in ("qgis_process.bin", "qgis_process"):
        for folder in os.environ.get("PATH", "").split(os.pathsep):
            if os.access(os.path.join(folder, name), os.X_OK):
                return os.path.join(folder, name)
    raise SystemExit("qgis_process not found: install QGIS (make setup).")


if __name__ == "__main__":
    print(plugins_dir())
