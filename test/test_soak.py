"""Thirty runs in one QGIS process: memory and open files do not keep growing.

The first runs load the model session, GDAL drivers and Python modules; the
bound applies from there. Figures are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import os

import pytest
from osgeo import gdal
from rasters import read
from reliability import collect_qgis_objects_fixture  # noqa: F401  (fixture)
from samples import L1C_STACK, PRODUCT_MASK, model_file, require

pytestmark = pytest.mark.slow  # left out of make test-fast

MODEL = "ukis-6b-l1c"
RUNS = 30
# Generous: a leak of one tile's arrays per run (6 x 256 x 256 float32 = 1.5 MB) would
# exceed it over 30 runs; allocator noise and caches stay well below.
RSS_GROWTH_MB = 40
FD_GROWTH = 3


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_thirty_runs_do_not_grow_memory_or_open_files(provider, tmp_path):
    import processing

    require(L1C_STACK, PRODUCT_MASK)
    model_file(MODEL)
    crop = str(tmp_path / "crop.tif")
    gdal.Translate(crop, str(L1C_STACK), srcWin=[200, 300, 160, 160])
    params = {
        "S2_RASTER": crop,
        "PRODUCT_MASK": str(PRODUCT_MASK),
        "CLOUD_MODEL": MODEL,
        "SHADOW_MODEL": MODEL,
        "MASK": str(tmp_path / "mask.tif"),
        "CLOUD_PROBABILITY": str(tmp_path / "cloud.tif"),
    }

    def run(i):
        result = processing.run("cloudmask:improvecloudmask", params)
        masks.append(read(params["MASK"]))
        return result

    masks = []
    for i in range(3):  # warm-up: session, drivers, imports
        run(i)
    rss_before, fds_before = rss_mb(), open_files()
    for i in range(RUNS):
        run(i)
    rss_after, fds_after = rss_mb(), open_files()
    print(
        f"\nsoak: {RUNS} runs; RSS {rss_before:.1f} -> {rss_after:.1f} MB "
        f"({rss_after - rss_before:+.1f} MB); open files {fds_before} -> {fds_after}"
    )
    assert all((m == masks[0]).all() for m in masks)
    assert rss_after - rss_before < RSS_GROWTH_MB
    assert fds_after - fds_before <= FD_GROWTH
    # Nothing piles up beside the outputs (sidecars: QGIS and GDAL write .aux.xml files).
    rasters = sorted(n for n in os.listdir(tmp_path) if not n.endswith(".aux.xml"))
    assert rasters == ["cloud.tif", "crop.tif", "mask.tif"]
