"""Install what the plugin needs at run time into the data home (idempotent).

onnxruntime into the private Python folder, the downloadable models, the
sample scene, and a plugins folder with a link to this checkout so that
``qgis_process`` can enable the plugin. Run by ``make setup``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from osgeo import gdal

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import deps, home, installer

gdal.UseExceptions()  # our own process: say so, or GDAL >= 3.9 warns that 4.0 will change the default

sys.path.insert(0, str(ROOT / "test" / "data"))
import fetch_sample


def link_plugin(data_home: Path) -> Path:
    plugins = data_home / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    link = plugins / "cloud_mask_improver"
    if link.is_symlink() and Path(os.readlink(link)) == ROOT:
        return plugins
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(ROOT, target_is_directory=True)
    return plugins


def install_reference(cache: Path) -> None:
    """ukis-csmask itself, in the test venv only, as the fidelity reference."""
    venv_python = ROOT / ".venv" / "bin" / "python"
    check = subprocess.run([str(venv_python), "-c", "import ukis_csmask"], check=False, capture_output=True)
    if check.returncode == 0:
        return
    wheel = cache / "ukis_csmask-1.0.0-py3-none-any.whl"
    subprocess.run([str(venv_python), "-m", "pip", "install", "--quiet", "--no-deps",
                    "--disable-pip-version-check", str(wheel)], check=True)


def main() -> int:
    data_home = home.data_home()
    status = deps.install_onnxruntime()
    if not status.available:
        print(f"setup: {status.problem}", file=sys.stderr)
        return 1
    for card in installer.downloadable():
        installer.install(card, log=lambda m: print(f"setup: {m}"))
    fetch_sample.ensure_sample()
    install_reference(home.cache_dir())
    plugins = link_plugin(data_home)
    print(f"setup: ready. Data home {data_home}; QGIS_PLUGINPATH={plugins}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
