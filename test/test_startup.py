"""What QGIS pays for the plugin at start-up, and what a headless run imports.

QGIS loads the plugin and lists its algorithms at every start (the desktop, every
``qgis_process`` call), whether or not the user runs them: that must not import the
engine (numpy, SciPy, GDAL's arrays, onnxruntime, Dask) nor any dialog. A headless
run imports the engine when it needs it, and still no dialog. Each check runs in a
fresh Python that loads the plugin as ``qgis_process`` does (``qgis.utils``), so
nothing a test before it imported can hide an import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from rasters import random_scene, write_raster

from cloud_mask_improver.core.bands import FARMVIBES_BANDS

ENGINE = ("numpy", "scipy", "onnxruntime", "osgeo.gdal_array", "dask", "distributed")
DIALOGS = "cloud_mask_improver.ui"

# Loads the plugin as qgis_process does (argv: plugins folder), then runs the
# algorithm given as JSON in argv[2] (if any); prints the modules loaded since QGIS's own
# Processing started.
_QGIS_PROCESS_LIKE = """
import json, os, sys
from qgis.core import QgsApplication
app = QgsApplication([], False)
app.initQgis()
sys.path.insert(0, os.path.join(QgsApplication.pkgDataPath(), "python", "plugins"))
from processing.core.Processing import Processing
Processing.initialize()
before = set(sys.modules)  # QGIS's own (3.40's Processing imports numpy itself)
import qgis.utils
qgis.utils.plugin_paths = [sys.argv[1]]
sys.path.insert(0, sys.argv[1])
qgis.utils.updateAvailablePlugins()
assert qgis.utils.loadPlugin("cloud_mask_improver")
assert qgis.utils.startProcessingPlugin("cloud_mask_improver")
provider = QgsApplication.processingRegistry().providerById("cloudmask")
result = {"algorithms": len(provider.algorithms()) if provider else 0}
if len(sys.argv) > 2:
    import processing
    algorithm, parameters = json.loads(sys.argv[2])
    result["outputs"] = sorted(processing.run(algorithm, parameters))
result["modules"] = sorted(set(sys.modules) - before)  # what the plugin (and its run) imported
result["qgis_modules"] = sorted(before)
print("RESULT " + json.dumps(result))
"""


def load_like_qgis_process(plugin_dir, run=None) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _QGIS_PROCESS_LIKE, str(plugin_dir)] + ([json.dumps(run)] if run else []),
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT ") :])


def loaded(modules: list[str], prefixes) -> list[str]:
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes)]


def test_loading_the_plugin_imports_neither_the_engine_nor_a_dialog(plugin_dir):
    result = load_like_qgis_process(plugin_dir)
    assert result["algorithms"] >= 10  # the provider and every algorithm did load
    assert loaded(result["modules"], ENGINE) == []
    assert loaded(result["modules"], DIALOGS) == []


def test_a_headless_run_imports_the_engine_but_no_dialog(plugin_dir, tmp_path):
    raster = write_raster(tmp_path / "s2.tif", random_scene(40, 50), descriptions=FARMVIBES_BANDS)
    mask = tmp_path / "mask.tif"
    result = load_like_qgis_process(
        plugin_dir,
        ["cloudmask:improvecloudmask", {"S2_RASTER": raster, "CLOUD_MODEL": "ukis-6b-l2a", "MASK": str(mask)}],
    )
    assert "MASK" in result["outputs"] and mask.exists()
    assert {"numpy", "onnxruntime"} <= set(result["modules"] + result["qgis_modules"])  # when the run needed them
    assert "onnxruntime" in result["modules"]
    assert loaded(result["modules"], DIALOGS) == []
    # SciPy labels patches only for MIN_AREA > 1 (default 0); the blend window is numpy's.
    assert loaded(result["modules"], "scipy") == []
