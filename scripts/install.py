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

import plugin_root
from osgeo import gdal

plugin_root.import_root()  # the one import root: cloud_mask_improver, from the plugins folder
import sample

from cloud_mask_improver.core.modelstore import installer
from cloud_mask_improver.core.runtime import deps, home

gdal.UseExceptions()  # our own process: say so, or GDAL >= 3.9 warns that 4.0 will change the default

ROOT = plugin_root.ROOT


def install_reference(cache: Path) -> None:
    """ukis-csmask itself, in the test venv only, as the fidelity reference."""
    venv_python = ROOT / ".venv" / "bin" / "python"
    check = subprocess.run([str(venv_python), "-c", "import ukis_csmask"], check=False, capture_output=True)
    if check.returncode == 0:
        return
    wheel = cache / "ukis_csmask-1.0.0-py3-none-any.whl"
    subprocess.run(
        [str(venv_python), "-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check", str(wheel)],
        check=True,
    )


def install_runtime(gpu: str) -> deps.RuntimeStatus:
    """``make setup GPU=1``: onnxruntime-gpu with CUDA; ``GPU=0``: back to the CPU one.

    Unset: keep whichever is installed (the CPU one on a fresh data home)."""
    if gpu == "1":
        return deps.install_gpu_runtime(log=lambda m: print(f"setup: {m}", flush=True))
    if gpu == "0":
        return deps.install_cpu_runtime(log=lambda m: print(f"setup: {m}", flush=True))
    if gpu:
        return deps.RuntimeStatus(False, problem=f"GPU={gpu}: give GPU=1 (GPU support) or GPU=0 (CPU only).")
    current = deps.installed_runtime()
    if current.kind == "gpu":
        print(f"setup: keeping GPU support (onnxruntime-gpu {current.version}); GPU=0 switches back to the CPU")
        return deps.RuntimeStatus(True, current.version)
    return deps.install_onnxruntime()


def main() -> int:
    data_home = home.data_home()
    status = install_runtime(os.environ.get("GPU", ""))
    if not status.available:
        print(f"setup: {status.problem}", file=sys.stderr)
        return 1
    for card in installer.downloadable():
        installer.install(card, log=lambda m: print(f"setup: {m}"))
    sample.ensure_sample()
    install_reference(home.cache_dir())
    plugins = plugin_root.link_plugin()
    print(f"setup: ready. Data home {data_home}; QGIS_PLUGINPATH={plugins}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
