"""Performance benchmark (``make bench``): prints one table of the figures below.

1. Overhead: ``cloudmask:cloudprobability`` (ukis-6b-l2a) on a synthetic 12-band
   uint16 raster, run with ``processing.run`` in a QGIS application started once
   in this process (QGIS start-up is not counted; loading the model is), divided
   by the time of ``InferenceSession.run`` alone on exactly the same tiles, in
   the same batches, with the same session (same threads), tiles already in
   memory.
2. Ensemble sharing: every installed L2A cloud model plus the shadow model in
   one pass (``core.pipeline``), against one pass per model (FarmVibes.AI's way:
   each op reads the raster again), and against the sum of the distinct
   networks' bare inference times on the same tiles.
3. Memory: peak resident memory of ``cloudmask:improvecloudmask`` (with a
   product mask) on 2745^2 and 10980^2, each run by ``qgis_process`` in its own
   subprocess (``os.wait4`` gives that child's own peak), with and without
   ``IN_MEMORY``.
4. Full Sentinel-2 tile: wall time of the default single-model run at the
   default processing resolution (``RESOLUTION`` unset: whatever the plugin's
   default is), and at 10, 20 and 30 m, with tiles per second. The 10 m run is
   the same subprocess as the memory figure.
5. Scaling: figure 1's algorithm on 1024^2, 2048^2 and 4096^2.
6. Merge: ``core.pipeline.merge`` (the mergecloudmasks op) on a 4000^2 cloud
   probability raster with MIN_AREA 0, 2000 and 1,000,000 px (the most the
   dialog allows), each in its own subprocess: wall time and peak RSS. Dropping
   small patches must cost about one more pass, not memory.
7. Many products and areas (scripts/bench_batch.py, in its own process, no QGIS):
   products per hour with 1 and 2 Dask workers, the scheduling overhead per task,
   and a 1 km2 field against the whole sample scene.
8. GPU (``--gpu``, or ``make bench GPU=1``; only where an NVIDIA GPU and GPU support
   are installed): a full 10980^2 tile through the pipeline on CUDA with the bands of
   rows the plugin chooses and with one band, and where the time goes (the
   probabilities, the merge, the network); by scripts/gpu_check.py, in its own process.
9. Besides the network (scripts/bench_floor.py, in its own process, no QGIS): the full
   tile with the network replaced by a stand-in that costs nothing, set up as on a GPU,
   with only the mask written and with the probabilities kept: what a GPU run's CPU side
   costs, measurable on any machine.
10. Start-up (scripts/bench_startup.py): what enabling the plugin adds to
   ``qgis_process list`` (time, memory), and a run's fixed costs (imports,
   session creation, first batch).
11. Against the reference packages (scripts/bench_reference.py): qgis_process
   and ``cloudmask batch`` against ukis-csmask's CSmask, cloudprobability against
   s2cloudless, at 2048^2 and 4096^2, with peak memory, and qgis_process against
   bare onnxruntime on the same tiles; ukis-csmask and s2cloudless run from a
   venv of their own (bench/.refvenv), made here once.

12. Apply cloud mask (optional: ``--figures 12``): ``core.apply_mask`` on the full tile's
   12-band stack with a synthetic improved mask (0/1/2/255), each run in a fresh Python: on
   the mask's grid, with a 50 m buffer, and on a 20 m version of the stack (a VRT: the
   mask is warped onto it). Wall time and peak RSS: memory must not grow with the raster.
13. Provenance: the real sample scene (856 x 512, its product mask, the default L1C
   model) through ``core.pipeline.improve`` with and without the ``SOURCE`` output,
   alternated, best of 5 each: what writing which source flagged each pixel costs.

``--new`` measures figures 10, 11 and the full tile at the default resolution
and at 10 m only (about 40 minutes on 2 cores; with ``--quick`` 2048^2 only,
once each, and a 2745^2 "tile").

Synthetic rasters are generated once into ``bench/cache/`` (git-ignored; the
full tile is 2.9 GB). Timings depend on what else runs on the machine: the
table header shows the load average. ``--quick`` runs small sizes to try it out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from plugin_root import qgis_process

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / "cache"
RESULTS = ROOT / "out" / "bench"
MODEL = "ukis-6b-l2a"
FULL_TILE = 10980
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # headless, as under make

# The plugin is imported under its installed name, from the plugins folder that
# setup links to this checkout (the repository root itself must not be on
# sys.path: our ``processing`` package would hide QGIS's).
PLUGINS = ROOT / ".venv" / "qgis-plugins"  # this checkout's, made by setup
sys.path.insert(0, str(PLUGINS))

from osgeo import gdal, osr

from cloud_mask_improver.core.runtime import deps

deps.ensure_on_path()

from cloud_mask_improver.core import merge, pipeline
from cloud_mask_improver.core.bands import FARMVIBES_BANDS
from cloud_mask_improver.core.inference import load_model, preprocess
from cloud_mask_improver.core.modelstore import catalogue
from cloud_mask_improver.core.runtime.cpu import available_cores
from cloud_mask_improver.core.tiling import EngineSettings, plan_axis, reflect

BATCH = EngineSettings().batch_size


# -- synthetic data -----------------------------------------------------------
def _georeference(ds, size: int, pixel: float = 10.0) -> None:
    ds.SetGeoTransform((600000.0, pixel, 0.0, 5300000.0, 0.0, -pixel))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    ds.SetProjection(srs.ExportToWkt())


def _write_tiled(path: Path, size: int, block: np.ndarray, data_type: int, nodata: float, descriptions=()) -> Path:
    """A raster made by repeating ``block`` ([bands, 512, 512]).

    Cheap to make at any size, and tiles of the models' grids (step 205) still all differ.
    Written under a temporary name so an interrupted run leaves no half-made cache file."""
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial.tif")
    bands, side = block.shape[0], block.shape[1]
    ds = gdal.GetDriverByName("GTiff").Create(
        str(tmp), size, size, bands, data_type, options=["TILED=YES", "INTERLEAVE=BAND", "BIGTIFF=IF_SAFER"]
    )
    _georeference(ds, size)
    reps = size // side + 1
    for b in range(bands):
        band = ds.GetRasterBand(b + 1)
        band.SetNoDataValue(nodata)
        if descriptions:
            band.SetDescription(descriptions[b])
        row = np.tile(block[b], (1, reps))[:, :size]
        for top in range(0, size, side):
            band.WriteArray(row[: min(side, size - top)], 0, top)
    ds = None
    os.replace(tmp, path)
    return path


def s2_raster(size: int) -> str:
    """12-band uint16 stack (B01..B12 without B10), digital numbers 1..10000, nodata 0."""
    block = np.random.default_rng(size).integers(1, 10000, size=(12, 512, 512), dtype=np.uint16)
    return str(_write_tiled(CACHE / f"s2_12band_{size}.tif", size, block, gdal.GDT_UInt16, 0, FARMVIBES_BANDS))


def product_mask(size: int) -> str:
    """uint8 product mask (0 clear, 1 cloud) with 64 px cloud squares, nodata 100."""
    rng = np.random.default_rng(size + 1)
    coarse = (rng.random((8, 8)) < 0.2).astype(np.uint8)
    block = np.kron(coarse, np.ones((64, 64), dtype=np.uint8))[None]
    return str(_write_tiled(CACHE / f"product_mask_{size}.tif", size, block, gdal.GDT_Byte, 100))


def cloud_probability(size: int) -> str:
    """float32 cloud probability with smooth patches of every size (nodata -1)."""
    rng = np.random.default_rng(size + 2)
    coarse = rng.random((16, 16)).astype(np.float32)
    block = np.kron(coarse, np.ones((32, 32), dtype=np.float32))
    block = (block + 0.3 * rng.random((512, 512), dtype=np.float32)) / 1.3
    return str(_write_tiled(CACHE / f"cloud_probability_{size}.tif", size, block[None], gdal.GDT_Float32, -1.0))


def improved_mask(size: int) -> str:
    """uint8 improved mask: 64 px cloud squares (1), shadow squares beside some (2), a nodata band (255)."""
    rng = np.random.default_rng(size + 3)
    coarse = np.where(rng.random((8, 8)) < 0.2, 1, np.where(rng.random((8, 8)) < 0.1, 2, 0)).astype(np.uint8)
    block = np.kron(coarse, np.ones((64, 64), dtype=np.uint8))
    block[:, :16] = 255
    return str(_write_tiled(CACHE / f"improved_mask_{size}.tif", size, block[None], gdal.GDT_Byte, 255))


# -- bare inference on the engine's own tiles -----------------------------------
def engine_batches(raster: str, model_id: str) -> tuple[object, list[np.ndarray]]:
    """The tiles the engine feeds the model, cut from the whole raster in memory.

    Grouped as the engine groups them (per tile row, ``BATCH`` at a time)."""
    card, path = catalogue.resolve(model_id)
    model = load_model(card, path)  # the cached session the algorithm used
    ds = gdal.Open(raster)
    bands = [list(FARMVIBES_BANDS).index(b) + 1 for b in card.bands]
    x = preprocess(card, ds.ReadAsArray(band_list=bands))
    height, width = x.shape[1:]
    rows = plan_axis(height, card.scheme, card.tile, card.overlap)
    cols = plan_axis(width, card.scheme, card.tile, card.overlap)
    batches = []
    for r in rows.starts:
        strip = x[:, reflect(np.arange(r, r + card.tile), height)]
        tiles = [strip[:, :, reflect(np.arange(c, c + card.tile), width)] for c in cols.starts]
        batches += [np.ascontiguousarray(np.stack(tiles[k : k + BATCH])) for k in range(0, len(tiles), BATCH)]
    return model, batches


class Clock:
    """Wall time and this process's CPU time (all its threads) of a block.

    On a shared machine wall time also counts waiting for other programs; CPU time hardly does."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def best(clocks: list[Clock]) -> tuple[float, float]:
    """The least wall and CPU time of repeated runs: other load only ever adds time."""
    return min(c.wall for c in clocks), min(c.cpu for c in clocks)


def bare_run(raster: str, model_id: str) -> tuple[Clock, int]:
    model, batches = engine_batches(raster, model_id)
    feed = model.input_name
    model.session.run(None, {feed: batches[0]})  # warm-up, as the engine's first call
    with Clock() as clock:
        for batch in batches:
            model.session.run(None, {feed: batch})
    return clock, sum(len(b) for b in batches)


# -- QGIS in this process -------------------------------------------------------
def start_qgis():
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    sys.path.insert(1, os.path.join(QgsApplication.pkgDataPath(), "python", "plugins"))
    from processing.core.Processing import Processing

    Processing.initialize()
    from cloud_mask_improver.algorithms.provider import CloudMaskProvider

    provider = CloudMaskProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    return app, provider


def algorithm_run(raster: str, folder: str) -> Clock:
    import processing
    from qgis.core import QgsProcessingFeedback

    out = os.path.join(folder, f"cloud_{time.monotonic_ns()}.tif")
    with Clock() as clock:
        processing.run(
            "cloudmask:cloudprobability",
            {"SENTINEL_RASTER": raster, "MODEL_PATH": MODEL, "CLOUD_PROBABILITY": out},
            feedback=QgsProcessingFeedback(),
        )
    os.remove(out)
    return clock


# -- qgis_process in a subprocess -----------------------------------------------
def _env() -> dict:
    return {**os.environ, "QGIS_PLUGINPATH": str(PLUGINS), "QT_QPA_PLATFORM": "offscreen"}


# Measures one command's wall time and peak RSS. It runs in a small Python of its
# own because Linux counts the parent's resident memory at fork time in a child's
# peak (exec keeps the high-water mark): forked from this big process, every child
# would seem to peak at this process's size.
_MEASURE = """
import json, os, subprocess, sys, time
start = time.perf_counter()
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
with open(sys.argv[1], "w") as handle:
    json.dump({"wall_s": time.perf_counter() - start, "peak_mb": usage.ru_maxrss / 1024,
               "rc": os.waitstatus_to_exitcode(status)}, handle)
"""


def improve_subprocess(raster: str, mask: str, folder: str, **params) -> dict:
    """Run improvecloudmask by qgis_process; its wall time and its own peak RSS."""
    command = [
        qgis_process(),
        "run",
        "cloudmask:improvecloudmask",
        "--json",
        "--",
        f"S2_RASTER={raster}",
        f"PRODUCT_MASK={mask}",
        f"MASK={os.path.join(folder, 'mask.tif')}",
    ] + [f"{k}={v}" for k, v in params.items()]
    log, measured = os.path.join(folder, "qgis_process.log"), os.path.join(folder, "measured.json")
    with open(log, "w") as handle:
        subprocess.run(
            [sys.executable, "-c", _MEASURE, measured, *command],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=_env(),
            check=False,
        )
    result = json.loads(Path(measured).read_text())
    if result.pop("rc") != 0:
        raise RuntimeError(f"qgis_process failed: {Path(log).read_text()[-3000:]}")
    return result


_MERGE = """
import sys
sys.path.insert(0, sys.argv[1])
from cloud_mask_improver.core import merge, pipeline
settings = merge.MergeSettings(min_area=int(sys.argv[4]))
pipeline.merge(pipeline.MergeRequest(sys.argv[2], None, None, settings), sys.argv[3])
"""


def merge_subprocess(probability: str, min_area: int, folder: str) -> dict:
    """The merge op alone, in a fresh Python: its wall time and its own peak RSS."""
    measured = os.path.join(folder, "merge.json")
    command = [
        sys.executable,
        "-c",
        _MERGE,
        str(PLUGINS),
        probability,
        os.path.join(folder, "merged.tif"),
        str(min_area),
    ]
    subprocess.run([sys.executable, "-c", _MEASURE, measured, *command], env=_env(), check=True)
    result = json.loads(Path(measured).read_text())
    if result.pop("rc") != 0:
        raise RuntimeError(f"the merge with MIN_AREA {min_area} failed")
    return result


_APPLY = """
import sys
sys.path.insert(0, sys.argv[1])
from cloud_mask_improver.core import apply_mask
apply_mask.apply_mask(sys.argv[2], sys.argv[3], sys.argv[4], buffer_m=float(sys.argv[5]))
"""


def apply_subprocess(raster: str, mask: str, buffer_m: float, folder: str) -> dict:
    """Apply cloud mask alone, in a fresh Python: its wall time and its own peak RSS."""
    measured, out = os.path.join(folder, "apply.json"), os.path.join(folder, "masked.tif")
    command = [sys.executable, "-c", _APPLY, str(PLUGINS), raster, mask, out, str(buffer_m)]
    subprocess.run([sys.executable, "-c", _MEASURE, measured, *command], env=_env(), check=True)
    result = json.loads(Path(measured).read_text())
    os.remove(out)
    if result.pop("rc") != 0:
        raise RuntimeError(f"apply_mask on {raster} failed")
    return result


def apply_figure(size: int, folder: str) -> dict:
    raster, mask = s2_raster(size), improved_mask(size)
    coarse = os.path.join(folder, "stack_20m.vrt")
    gdal.Translate(coarse, raster, format="VRT", xRes=20, yRes=20, resampleAlg="average")
    runs = {
        "on the mask's grid": apply_subprocess(raster, mask, 0.0, folder),
        "50 m buffer": apply_subprocess(raster, mask, 50.0, folder),
        "20 m raster (mask warped)": apply_subprocess(coarse, mask, 0.0, folder),
    }
    return {"size": size, "runs": runs}


def _apply_rows(a: dict) -> list[tuple]:
    return [
        (
            "12 apply mask" if k == 0 else "",
            f"applymask {a['size']}^2 x 12 bands, {name}",
            f"{run['wall_s']:.1f} s, peak {run['peak_mb']:.0f} MB",
            "< 512 MB",
            run["peak_mb"] < 512,
        )
        for k, (name, run) in enumerate(a["runs"].items())
    ]


def merge_min_area(size: int, folder: str) -> dict:
    probability = cloud_probability(size)
    return {"size": size, "runs": {str(m): merge_subprocess(probability, m, folder) for m in (0, 2000, 1_000_000)}}


# -- the figures ----------------------------------------------------------------
def tiles_for(size: int, model_id: str = MODEL) -> int:
    card, _ = catalogue.resolve(model_id)
    return len(plan_axis(size, card.scheme, card.tile, card.overlap)) ** 2


def overhead(size: int, repeats: int, folder: str) -> dict:
    raster = s2_raster(size)
    algorithm, bare = [], []
    for _ in range(repeats):  # alternated, so that a burst of other load hits both alike
        algorithm.append(algorithm_run(raster, folder))
        clock, tiles = bare_run(raster, MODEL)
        bare.append(clock)
    (alg_wall, alg_cpu), (bare_wall, bare_cpu) = best(algorithm), best(bare)
    return {
        "size": size,
        "tiles": tiles,
        "repeats": repeats,
        "algorithm_s": alg_wall,
        "bare_s": bare_wall,
        "ratio": alg_wall / bare_wall,
        "algorithm_cpu_s": alg_cpu,
        "bare_cpu_s": bare_cpu,
        "cpu_ratio": alg_cpu / bare_cpu,
    }


def ensemble(size: int, repeats: int, folder: str) -> dict:
    raster = s2_raster(size)
    cloud_ids = [c.id for c in catalogue.installed() if c.level == "L2A" and c.has_cloud]
    shadow_id = catalogue.default_shadow_model("L2A", cloud_ids)

    networks = list(dict.fromkeys(cloud_ids + ([shadow_id] if shadow_id else [])))

    def one_run(clouds: list[str], shadow: str | None) -> Clock:
        outputs = pipeline.ProbabilityOutputs(
            cloud=os.path.join(folder, "e_cloud.tif") if clouds else None,
            shadow=os.path.join(folder, "e_shadow.tif") if shadow else None,
        )
        with Clock() as clock:
            pipeline.probabilities(pipeline.ProbabilityRequest(raster, list(clouds), shadow), outputs)
        return clock

    def summed(clocks: list[Clock]) -> Clock:
        total = Clock()
        total.wall, total.cpu = sum(c.wall for c in clocks), sum(c.cpu for c in clocks)
        return total

    one, separate, bare = [], [], []
    for _ in range(repeats):  # alternated, so that a burst of other load hits all alike
        one.append(one_run(cloud_ids, shadow_id))
        separate.append(
            summed([one_run([m], None) for m in cloud_ids] + ([one_run([], shadow_id)] if shadow_id else []))
        )
        bare.append(summed([bare_run(raster, m)[0] for m in networks]))
    (one_wall, one_cpu), (sep_wall, sep_cpu), (bare_wall, bare_cpu) = best(one), best(separate), best(bare)
    return {
        "size": size,
        "cloud_models": cloud_ids,
        "shadow_model": shadow_id,
        "networks": networks,
        "one_pass_s": one_wall,
        "separate_s": sep_wall,
        "sharing_ratio": sep_wall / one_wall,
        "bare_sum_s": bare_wall,
        "one_pass_vs_bare": one_wall / bare_wall,
        "one_pass_cpu_s": one_cpu,
        "separate_cpu_s": sep_cpu,
        "bare_sum_cpu_s": bare_cpu,
        "one_pass_vs_bare_cpu": one_cpu / bare_cpu,
    }


def memory_and_full_tile(small: int | None, full: int, resolutions: list[int], in_memory: bool, folder: str) -> dict:
    subprocess.run(
        [qgis_process(), "plugins", "enable", "cloud_mask_improver"], env=_env(), capture_output=True, check=False
    )  # "already enabled" exits 1: fine
    result = {"small": small, "full": full, "runs": {}}
    # The default (empty: the model's own, 30 m for the ukis models) and the raster's own 10 m
    # (RESOLUTION=0), named explicitly.
    jobs = [("small", small, {"RESOLUTION": 0})] if small else []
    jobs += [("full_default", full, {}), ("full_10m", full, {"RESOLUTION": 0})]
    jobs += [(f"full_{r}m", full, {"RESOLUTION": r}) for r in resolutions if r != 10]
    if in_memory:  # last: the full tile in memory is the longest run and only informative
        jobs += [("small_in_memory", small, {"IN_MEMORY": "true"}), ("full_in_memory", full, {"IN_MEMORY": "true"})]
    for name, size, params in jobs:
        raster, mask = s2_raster(size), product_mask(size)
        print(f"bench: improvecloudmask {name} ({size}^2) ...", flush=True)
        run = improve_subprocess(raster, mask, folder, **params)
        given = params.get("RESOLUTION")  # absent: the model's own (its card's), 0: the raster's 10 m
        resolution = float(catalogue.resolve(MODEL)[0].resolution or 10) if given is None else float(given or 10)
        run.update(size=size, resolution_m=resolution, tiles=tiles_for(round(size * 10.0 / resolution)))
        run["tiles_per_s"] = run["tiles"] / run["wall_s"]
        result["runs"][name] = run
        print(f"bench:   {run['wall_s']:.1f} s, peak {run['peak_mb']:.0f} MB", flush=True)
        (RESULTS / "memory_runs.json").write_text(json.dumps(result, indent=1))  # partial results
    return result


def scaling(sizes: list[int], known: dict, repeats: int, folder: str) -> dict:
    rows = {}
    for size in sizes:
        wall, cpu = known.get(size) or best([algorithm_run(s2_raster(size), folder) for _ in range(repeats)])
        rows[size] = {
            "seconds": wall,
            "cpu_s": cpu,
            "tiles": tiles_for(size),
            "us_per_px": wall / size**2 * 1e6,
            "cpu_us_per_px": cpu / size**2 * 1e6,
        }
    return rows


# -- the table --------------------------------------------------------------------
def _overhead_rows(o: dict) -> list[tuple]:
    return [
        (
            "1 overhead",
            f"cloudprobability {MODEL} {o['size']}^2, {o['tiles']} tiles, batch {BATCH}",
            f"wall {o['algorithm_s']:.1f} s / bare run {o['bare_s']:.1f} s = {o['ratio']:.3f}",
            "<= 1.10",
            o["ratio"] <= 1.10,
        ),
        (
            "",
            f"  same, CPU time (best of {o['repeats']})",
            f"cpu {o['algorithm_cpu_s']:.1f} s / bare run {o['bare_cpu_s']:.1f} s = {o['cpu_ratio']:.3f}",
            "",
            None,
        ),
    ]


def _ensemble_rows(e: dict) -> list[tuple]:
    return [
        (
            "2 ensemble",
            f"{'+'.join(e['cloud_models'])} cloud, {e['shadow_model']} shadow, {e['size']}^2",
            (f"one pass {e['one_pass_s']:.1f} s, one per model {e['separate_s']:.1f} s (x{e['sharing_ratio']:.2f})"),
            "",
            None,
        ),
        (
            "",
            f"  one pass vs bare {'+'.join(e['networks'])}",
            f"wall {e['one_pass_s']:.1f} s / {e['bare_sum_s']:.1f} s = {e['one_pass_vs_bare']:.3f}",
            "<= 1.10",
            e["one_pass_vs_bare"] <= 1.10,
        ),
        (
            "",
            "  same, CPU time",
            f"cpu {e['one_pass_cpu_s']:.1f} s / {e['bare_sum_cpu_s']:.1f} s = {e['one_pass_vs_bare_cpu']:.3f}",
            "",
            None,
        ),
    ]


def _memory_rows(m: dict) -> list[tuple]:
    runs = m["runs"]
    rows = []
    if "small" in runs and "full_10m" in runs:
        small, full = runs["small"], runs["full_10m"]
        difference = full["peak_mb"] / small["peak_mb"] - 1
        rows += [
            ("3 memory", f"improvecloudmask peak RSS {m['small']}^2", f"{small['peak_mb']:.0f} MB", "", None),
            (
                "",
                f"improvecloudmask peak RSS {m['full']}^2",
                f"{full['peak_mb']:.0f} MB",
                "< 1536 MB",
                full["peak_mb"] < 1536,
            ),
            ("", "difference of the two peaks", f"{difference * 100:+.1f} %", "< 20 %", abs(difference) < 0.20),
        ]
    for name in ("small_in_memory", "full_in_memory"):
        if name in runs:
            rows.append(
                (
                    "",
                    f"IN_MEMORY peak RSS {runs[name]['size']}^2 (not bounded, by design)",
                    f"{runs[name]['peak_mb']:.0f} MB ({runs[name]['wall_s']:.1f} s)",
                    "",
                    None,
                )
            )
    first = True
    for name, run in runs.items():
        if name == "full_default":
            rows.append(
                (
                    "4 full tile" if first else "",
                    f"improvecloudmask {run['size']}^2 at the default resolution (RESOLUTION unset)",
                    f"{run['wall_s']:.1f} s, peak {run['peak_mb']:.0f} MB",
                    "",
                    None,
                )
            )
            first = False
        elif name.startswith("full_") and name.endswith("m"):
            rows.append(
                (
                    "4 full tile" if first else "",
                    f"improvecloudmask {run['size']}^2 at {run['resolution_m']:.0f} m, {run['tiles']} tiles",
                    f"{run['wall_s']:.1f} s, {run['tiles_per_s']:.1f} tiles/s, peak {run['peak_mb']:.0f} MB",
                    "",
                    None,
                )
            )
            first = False
    return rows


def _merge_rows(m: dict) -> list[tuple]:
    runs = m["runs"]
    base = runs["0"]
    rows = []
    for min_area, run in runs.items():
        rows.append(
            (
                "6 merge" if min_area == "0" else "",
                f"merge {m['size']}^2, MIN_AREA {int(min_area):,}",
                f"{run['wall_s']:.1f} s, peak {run['peak_mb']:.0f} MB",
                "" if min_area == "0" else "< 3x time, < 1.5x memory of MIN_AREA 0",
                None
                if min_area == "0"
                else run["wall_s"] < 3 * base["wall_s"] and run["peak_mb"] < 1.5 * base["peak_mb"],
            )
        )
    return rows


def _scaling_rows(s: dict) -> list[tuple]:
    base = s[min(s, key=int)]
    rows = []
    for k, (size, row) in enumerate(s.items()):
        rows.append(
            (
                "5 scaling" if k == 0 else "",
                f"cloudprobability {size}^2, {row['tiles']} tiles",
                (
                    f"{row['seconds']:.1f} s, {row['us_per_px']:.2f} us/px "
                    f"(x{row['us_per_px'] / base['us_per_px']:.2f}); "
                    f"cpu {row['cpu_us_per_px']:.2f} us/px (x{row['cpu_us_per_px'] / base['cpu_us_per_px']:.2f})"
                ),
                "linear",
                None,
            )
        )
    return rows


def table(r: dict) -> str:
    lines = [
        f"Cloud Mask Improver benchmark  {r['date']}  {r['machine']}",
        f"load average (1/5/15 min) at start: {r['load_start']}, at end: {r['load_end']}",
        "",
    ]
    rows = []
    for key, make in (
        ("overhead", _overhead_rows),
        ("ensemble", _ensemble_rows),
        ("memory", _memory_rows),
        ("scaling", _scaling_rows),
        ("merge", _merge_rows),
        ("batch", _batch_rows),
        ("floor", _floor_rows),
        ("gpu", _gpu_rows),
        ("startup", _startup_rows),
        ("reference", _reference_rows),
        ("apply", _apply_rows),
        ("provenance", _provenance_rows),
    ):
        if key in r:
            rows += make(r[key])
    widths = [max(len(str(row[i])) for row in rows) for i in range(4)]
    for row in rows:
        verdict = "" if row[4] is None else ("ok" if row[4] else "MISSED")
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row[:4], widths)) + "  " + verdict)
    return "\n".join(lines)


def _startup_rows(s: dict) -> list[tuple]:
    import bench_startup

    return bench_startup.rows(s)


def _reference_rows(r: dict) -> list[tuple]:
    import bench_reference

    return bench_reference.rows(r)


def startup_figure(folder: str, repeats: int) -> dict:
    """Figure 10 in processes of its own (each measures fresh QGIS starts)."""
    out = Path(folder) / "startup.json"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_startup.py"), "--repeats", str(repeats), "--json", str(out)],
        check=True,
        env=_env(),
    )
    return json.loads(out.read_text())


def reference_figure(sizes: list[int], repeats: dict) -> dict:
    """Figure 11: each side in a process of its own; bare onnxruntime here."""
    import bench_reference

    from cloud_mask_improver.core.runtime import home

    return bench_reference.measure(sizes, repeats, home.data_home(), bare_run)


def _batch_rows(b: dict) -> list[tuple]:
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench_batch

    return bench_batch.rows(b)


def batch_figure(folder: str) -> dict:
    """Figure 6 in a process of its own: Dask workers are processes, and QGIS is not needed."""
    out = Path(folder) / "batch.json"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_batch.py"), "--json", str(out)], check=True, env=_env()
    )
    return json.loads(out.read_text())


def floor_figure(raster: str, mask: str, folder: str) -> dict:
    """Figure 9 in a process of its own (its stand-in network must not touch this one's)."""
    out = Path(folder) / "floor.json"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_floor.py"), raster, mask, "--json", str(out)],
        check=True,
        env=_env(),
    )
    return json.loads(out.read_text())


def _floor_rows(f: dict) -> list[tuple]:
    rows = []
    for k, run in enumerate(f["runs"]):
        what = "probabilities kept" if run["kept"] else "mask only"
        rows.append(
            (
                "9 besides the network" if k == 0 else "",
                f"{f['size']}^2, network replaced by a stand-in, {run['workers']} band(s) of rows, {what}",
                (
                    f"{run['wall_s']:.1f} s (probabilities {run['probabilities_s']:.1f} s, merge "
                    f"{run['merge_s']:.1f} s), cpu {run['cpu_s']:.1f} s on {f['cores']} cores"
                ),
                "",
                None,
            )
        )
    return rows


def gpu_figure(folder: str) -> dict:
    """Figure 8 in a process of its own (scripts/gpu_check.py), or why it cannot be measured."""
    from cloud_mask_improver.core.runtime import gpu

    if gpu.gpu() is None or deps.installed_runtime().kind != "gpu":
        return {"skipped": "no NVIDIA GPU with GPU support here (make setup GPU=1 installs it)"}
    out = Path(folder) / "gpu"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "gpu_check.py"),
            "--providers",
            "cuda/mask,cuda,cuda:1",
            "--out",
            str(out),
            "--sample",
            str(ROOT / "test" / "data" / "sample" / "s2_12band.tif"),
        ],
        check=True,
        env=_env(),
    )
    return json.loads((out / "gpu_check.json").read_text())


def _gpu_rows(g: dict) -> list[tuple]:
    if "skipped" in g:
        return [("8 GPU", "full tile 10980^2", "not measured: " + g["skipped"], "<= 6 s", None)]
    rows = []
    for k, run in enumerate(g["runs"]):
        measured = (
            f"{run['wall_s']:.1f} s (probabilities {run['probabilities_s']:.1f} s, merge "
            f"{run['merge_s']:.1f} s; network {run['model_s']:.1f} s summed over bands)"
        )
        what = "probabilities kept" if run.get("kept", True) else "mask only"
        rows.append(
            (
                "8 GPU" if k == 0 else "",
                f"full tile 10980^2, {run['workers']} band(s) of rows, {what}",
                measured,
                "<= 6 s",
                run["wall_s"] <= 6.0 if run["on_gpu"] else False,
            )
        )
    bare = next((b for b in g["bare"] if b["provider"] == "cuda"), None)
    if bare:
        rows.append(("", f"the network alone, batch {bare['batch']}", f"{bare['tiles_per_s']:.0f} tiles/s", "", None))
    return rows


def provenance_figure(folder: str, repeats: int = 5) -> dict:
    """Figure 13: the sample scene improved with and without SOURCE, alternated."""
    sample = ROOT / "test" / "data" / "sample"

    def one(source: bool) -> Clock:
        name = os.path.join(folder, f"p{time.monotonic_ns()}")
        request = pipeline.ImproveRequest(
            pipeline.ProbabilityRequest(str(sample / "s2_l1c_13band.tif")),
            str(sample / "product_mask.tif"),
            merge.MergeSettings(),
            mask=name + "_mask.tif",
            source=name + "_source.tif" if source else None,
        )
        with Clock() as clock:
            pipeline.improve(request)
        return clock

    one(False)  # warm-up: the model loaded, the files cached
    plain, with_source = [], []
    for _ in range(repeats):
        plain.append(one(False))
        with_source.append(one(True))
    (plain_s, plain_cpu), (source_s, source_cpu) = best(plain), best(with_source)
    return {"plain_s": plain_s, "plain_cpu_s": plain_cpu, "source_s": source_s, "source_cpu_s": source_cpu}


def _provenance_rows(p: dict) -> list[tuple]:
    # Judged on CPU time: on a shared machine the wall time of a 3 s run mostly says how
    # busy the other programs were.
    ratio, cpu_ratio = p["source_s"] / p["plain_s"], p["source_cpu_s"] / p["plain_cpu_s"]
    return [
        (
            "13 provenance",
            "sample 856 x 512, improve with SOURCE vs without",
            (
                f"{p['source_s']:.2f} s vs {p['plain_s']:.2f} s (x{ratio:.3f}); cpu {p['source_cpu_s']:.2f} s vs "
                f"{p['plain_cpu_s']:.2f} s (x{cpu_ratio:.3f})"
            ),
            "cpu < 1.10x",
            cpu_ratio < 1.10,
        )
    ]


def _save(results: dict) -> None:
    (RESULTS / "results.json").write_text(json.dumps(results, indent=1, default=str))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, to try the benchmark out")
    parser.add_argument("--no-in-memory", action="store_true", help="skip the IN_MEMORY runs")
    parser.add_argument(
        "--figures",
        default="1,2,3,4,5,6,7,9,10,11,13",
        help="which figures to measure, e.g. 1,2,5 (3 and 4 are measured together; "
        "12, Apply cloud mask, only when named)",
    )
    parser.add_argument("--gpu", action="store_true", help="also figure 8: a full tile on the GPU")
    parser.add_argument(
        "--new",
        action="store_true",
        help="only the start-up, the reference packages and the full tile at the default "
        "resolution and at 10 m (figures 10, 11 and 4)",
    )
    parser.add_argument(
        "--reference-repeats", default="3,2", help="pairs per size in figure 11, at 2048^2 and 4096^2 (default 3,2)"
    )
    args = parser.parse_args()
    figures = set(args.figures.replace(" ", "").split(","))
    if args.new:
        figures = {"4", "10", "11"}
    if args.gpu:
        figures.add("8")
    repeats = 1 if args.quick else 2
    if args.quick:
        sizes = {
            "overhead": 2048,
            "ensemble": 1024,
            "small": 1024,
            "full": 2745,
            "scaling": [512, 1024, 2048],
            "reference": [2048],
        }
        reference_repeats = {2048: 1}
    else:
        sizes = {
            "overhead": 4096,
            "ensemble": 2048,
            "small": 2745,
            "full": FULL_TILE,
            "scaling": [1024, 2048, 4096],
            "reference": [2048, 4096],
        }
        reference_repeats = dict(zip((2048, 4096), (int(n) for n in args.reference_repeats.split(","))))
    results = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {available_cores()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GB, "
        f"Python {platform.python_version()}",
        "load_start": " ".join(f"{v:.1f}" for v in os.getloadavg()),
    }
    app, provider = start_qgis()
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cloudmask-bench-") as folder:
        if figures & {"1", "2", "3", "4", "5", "9"}:  # the other figures make their own rasters or none
            print("bench: generating rasters (once, into bench/cache/) ...", flush=True)
            generate = (
                {sizes["full"]}
                if args.new
                else {sizes["overhead"], sizes["ensemble"], sizes["small"], sizes["full"], *sizes["scaling"]}
            )
            for size in generate:
                s2_raster(size)
            for size in generate & {sizes["small"], sizes["full"]}:
                product_mask(size)
        if "1" in figures:
            print("bench: 1 overhead ...", flush=True)
            results["overhead"] = overhead(sizes["overhead"], repeats + (0 if args.quick else 1), folder)
            _save(results)
        if "2" in figures:
            print("bench: 2 ensemble ...", flush=True)
            results["ensemble"] = ensemble(sizes["ensemble"], repeats, folder)
            _save(results)
        if "5" in figures:
            print("bench: 5 scaling ...", flush=True)
            known = {}
            if "overhead" in results:
                known[sizes["overhead"]] = (results["overhead"]["algorithm_s"], results["overhead"]["algorithm_cpu_s"])
            results["scaling"] = scaling(sizes["scaling"], known, repeats, folder)
            _save(results)
        if "6" in figures:
            print("bench: 6 merge with MIN_AREA ...", flush=True)
            results["merge"] = merge_min_area(1024 if args.quick else 4000, folder)
            _save(results)
        if "7" in figures:
            print("bench: 7 many products and areas ...", flush=True)
            results["batch"] = batch_figure(folder)
            _save(results)
        if "9" in figures:
            print("bench: 9 besides the network ...", flush=True)
            results["floor"] = floor_figure(s2_raster(sizes["full"]), product_mask(sizes["full"]), folder)
            _save(results)
        if "12" in figures:
            print("bench: 12 apply cloud mask ...", flush=True)
            results["apply"] = apply_figure(sizes["full"], folder)
            _save(results)
        if "13" in figures:
            print("bench: 13 provenance ...", flush=True)
            results["provenance"] = provenance_figure(folder)
            _save(results)
        if "8" in figures:
            print("bench: 8 full tile on the GPU ...", flush=True)
            results["gpu"] = gpu_figure(folder)
            _save(results)
        if "10" in figures:
            print("bench: 10 start-up ...", flush=True)
            results["startup"] = startup_figure(folder, 5 if args.quick else 7)
            _save(results)
        if "11" in figures:
            results["reference"] = reference_figure(sizes["reference"], reference_repeats)
            _save(results)
        if figures & {"3", "4"}:
            print("bench: 3 memory and 4 full tile ...", flush=True)
            if args.new:  # the default resolution and 10 m only
                results["memory"] = memory_and_full_tile(None, sizes["full"], [10], False, folder)
            else:
                results["memory"] = memory_and_full_tile(
                    sizes["small"], sizes["full"], [10, 20, 30], not args.no_in_memory, folder
                )
    results["load_end"] = " ".join(f"{v:.1f}" for v in os.getloadavg())
    _save(results)
    print()
    print(table(results))
    print(f"\n(results also in {RESULTS / 'results.json'})")
    del provider
    app.exitQgis()
    return 0


if __name__ == "__main__":
    sys.exit(main())
