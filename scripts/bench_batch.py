"""Batch and area figures (``make bench`` figure 7; also runs on its own, without QGIS).

a. Products per hour: 8 small products (the test fixture: a 240 x 240 px L2A
   product built from the real sample scene, as a .zip) through
   ``cloudmask batch`` scheduling (Dask LocalCluster, processes), with 1 worker
   and with 2 workers in the same run; onnxruntime gets the cores divided among
   the workers. The sequential time per product is measured first.
b. Scheduling overhead per task: the round trip of an empty task through the
   same scheduler, against the time of one product.
c. Only the area that matters: Improve cloud mask on the real sample scene
   (856 x 512 px) for a 1 km2 field (100 x 100 px) against the whole scene:
   time, and whether every pixel inside the field is identical.
d. Season layers and report: on the sample season (test/season_scene.py, 12
   dates of 192 x 192 px) their time against the plain batch's; on a full tile
   (6 masks of 10980 x 10980 px, blocks of cloud, shadow and clear) the season
   layers' time and peak memory, in a process of their own (``--season-tile``).

The machine is shared: figures are noisy. Never more than 2 workers here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "test"))  # the product fixture builder
import plugin_root

plugin_root.import_root()

import numpy as np
from osgeo import gdal

from cloud_mask_improver.core import area, merge, pipeline
from cloud_mask_improver.core.runtime import deps
from cloud_mask_improver.core.season import batch, dask_cluster

MODEL = "ukis-6b-l2a"
PRODUCTS = 8


def _products(folder: Path) -> list[str]:
    from s2_product import build_product

    fixture = build_product(folder / "built", "L2A", "04.00")
    paths = []
    for k in range(PRODUCTS):  # distinct files of the same product: each gets its own mask
        target = folder / f"p{k}" / fixture.zip.name
        target.parent.mkdir(parents=True)
        shutil.copy(fixture.zip, target)
        paths.append(str(target))
    return paths


def _dask_run(items, out: Path, workers: int) -> dict:
    from distributed import Client

    sizing = dask_cluster.size_cluster(len(items), workers=workers)
    options = batch.BatchOptions(batch.template(cloud_models=(MODEL,), threads=sizing.threads))
    with dask_cluster.local_cluster(sizing, dashboard=None) as cluster, Client(cluster) as client:
        client.wait_for_workers(workers)
        overhead = dask_cluster.overhead_seconds(client)
        start = time.perf_counter()
        rows = batch.run_on_cluster(items, options, str(out), client, force=True)
        wall = time.perf_counter() - start
    assert all(r.ok for r in rows), [r.error for r in rows if not r.ok]
    return {
        "workers": workers,
        "threads": sizing.threads,
        "wall_s": wall,
        "products_per_hour": len(items) / wall * 3600,
        "task_overhead_s": overhead,
        "mean_product_s": float(np.mean([r.seconds for r in rows])),
    }


def throughput(folder: Path) -> dict:
    items = batch.plan_items(_products(folder))
    sequential = folder / "sequential"
    sequential.mkdir()
    start = time.perf_counter()
    options = batch.BatchOptions(batch.template(cloud_models=(MODEL,), threads=os.cpu_count() or 1))
    rows = batch.run_sequential(items, options, str(sequential), force=True)
    seq_wall = time.perf_counter() - start
    runs = []
    for workers in (1, 2):
        out = folder / f"dask{workers}"
        out.mkdir()
        runs.append(_dask_run(items, out, workers))
        same = all(Path(r.mask).read_bytes() == (out / Path(r.mask).name).read_bytes() for r in rows)
        runs[-1]["identical_to_sequential"] = same
    per_product = seq_wall / len(items)
    return {
        "products": len(items),
        "sequential_s_per_product": per_product,
        "sequential_products_per_hour": len(items) / seq_wall * 3600,
        "runs": runs,
        "overhead_fraction": max(r["task_overhead_s"] for r in runs) / per_product,
    }


def area_figure(folder: Path, repeats: int = 2) -> dict:
    stack = ROOT / "test" / "data" / "sample" / "s2_l1c_13band.tif"

    def request(mask):
        return pipeline.ImproveRequest(
            probability=pipeline.ProbabilityRequest(s2_raster=str(stack), cloud_models=["ukis-6b-l1c"]),
            product_mask=None,
            settings=merge.MergeSettings(),
            mask=str(mask),
        )

    whole_s, part_s = [], []
    target = area.Window(300, 400, 100, 100)  # 1 km x 1 km
    gt = gdal.Open(str(stack)).GetGeoTransform()
    x0, y1 = gt[0] + target.col * gt[1], gt[3] + target.row * gt[5]
    field = area.Selection(bounds=(x0, y1 - 1000, x0 + 1000, y1), bounds_crs=gdal.Open(str(stack)).GetProjection())
    for _ in range(repeats):
        start = time.perf_counter()
        pipeline.improve(request(folder / "whole.tif"))
        whole_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        report = pipeline.improve(request(folder / "field.tif"), selection=field)
        part_s.append(time.perf_counter() - start)
    whole = gdal.Open(str(folder / "whole.tif")).ReadAsArray()[400:500, 300:400]
    field = gdal.Open(str(folder / "field.tif")).ReadAsArray()
    info = gdal.Open(str(stack))
    # What the models ran on, as the run says it (on the coarse grid's terms at a processing resolution).
    work = report.notes[-1].rsplit("ran on ", 1)[1].split(" pixels")[0].split(" x ")
    return {
        "scene_px": [info.RasterXSize, info.RasterYSize],
        "field_px": [100, 100],
        "work_px": [int(work[0]), int(work[1])],
        "whole_s": min(whole_s),
        "field_s": min(part_s),
        "identical_pixels": int((whole == field).sum()),
        "pixels": int(whole.size),
    }


def season_figure(folder: Path) -> dict:
    """The season layers and report against the plain batch of the sample season, and on a full tile."""
    from season_scene import build_season

    from cloud_mask_improver.core.season import layers, report

    season = build_season(folder / "stacks")
    out = folder / "out"
    batch.prepare_output_folder(str(out))
    items = batch.plan_items([str(p) for p in season.stacks])
    start = time.perf_counter()
    rows = batch.run_sequential(items, batch.BatchOptions(batch.template(cloud_models=(MODEL,))), str(out), force=True)
    plain = time.perf_counter() - start
    start = time.perf_counter()
    result = layers.build(rows, str(out))
    layers_s = time.perf_counter() - start
    start = time.perf_counter()
    report.write(rows, str(out), result)
    report_s = time.perf_counter() - start
    tile = _season_tile(folder / "tile")
    return {
        "dates": len(rows),
        "plain_s": plain,
        "layers_s": layers_s,
        "report_s": report_s,
        "report_kb": (out / report.REPORT_NAME).stat().st_size / 1024,
        "tile": tile,
    }


TILE_PX, TILE_DATES = 10980, 6
FULL_TILE_S = 131.0  # a full tile's mask on the CPU, default model (docs/performance.md)


def _season_tile(folder: Path) -> dict:
    """Full-tile masks, then the season layers in a fresh process (its peak memory is theirs alone)."""
    from cloud_mask_improver.core.raster import GTIFF_OPTIONS

    folder.mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for k in range(TILE_DATES):  # 61 x 61 blocks of 180 px: clouds, shadows and clear ground
        blocks = rng.choice([merge.CLEAR, merge.CLOUD, merge.SHADOW], p=[0.55, 0.35, 0.1], size=(61, 61))
        mask = np.kron(blocks.astype(np.uint8), np.ones((180, 180), dtype=np.uint8))[:TILE_PX, :TILE_PX]
        path = folder / f"T33TUK_2023060{k + 1}T100000_L2A.tif"
        ds = gdal.GetDriverByName("GTiff").Create(str(path), TILE_PX, TILE_PX, 1, gdal.GDT_Byte, options=GTIFF_OPTIONS)
        ds.SetGeoTransform((300000.0, 10.0, 0.0, 5000040.0, 0.0, -10.0))
        ds.GetRasterBand(1).WriteArray(mask)
        ds = None
        paths.append(str(path))
    done = subprocess.run(
        [sys.executable, __file__, "--season-tile", *paths], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout)


def _memory_mb(key: str) -> float:
    """VmRSS or VmHWM of this process (Linux): unlike ru_maxrss, not inherited from the parent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _season_tile_child(paths: list[str]) -> None:
    from cloud_mask_improver.core.season import layers

    rows = [
        batch.Row(input=p, tile="T33TUK", sensed=f"2023-06-0{k + 1}T10:00:00", status="ok", mask=p)
        for k, p in enumerate(paths)
    ]
    before = _memory_mb("VmRSS")
    start = time.perf_counter()
    layers.build(rows, os.path.dirname(paths[0]))
    seconds = time.perf_counter() - start
    peak = _memory_mb("VmHWM")
    print(json.dumps({"dates": len(paths), "px": TILE_PX, "seconds": seconds, "peak_mb": peak, "start_mb": before}))


def rows(r: dict) -> list[tuple]:
    """Rows for bench.py's table: (figure, what, measured, target, verdict)."""
    t = r["throughput"]
    out = [
        (
            "7a batch",
            f"{t['products']} small products, sequential in one process",
            f"{t['sequential_s_per_product']:.2f} s/product, {t['sequential_products_per_hour']:.0f} products/h",
            "",
            None,
        )
    ]
    for run in t["runs"]:
        out.append(
            (
                "7a batch",
                f"Dask LocalCluster, {run['workers']} worker(s) x {run['threads']} thread(s)",
                (
                    f"{run['products_per_hour']:.0f} products/h ({run['wall_s']:.1f} s); masks identical: "
                    f"{run['identical_to_sequential']}"
                ),
                "",
                run["identical_to_sequential"],
            )
        )
    worst = max(run["task_overhead_s"] for run in t["runs"])
    out.append(
        (
            "7b batch",
            "scheduling overhead per task (empty task round trip)",
            f"{1000 * worst:.1f} ms = {100 * t['overhead_fraction']:.2f} % of a small product",
            "< 2 %",
            t["overhead_fraction"] < 0.02,
        )
    )
    a = r["area"]
    out.append(
        (
            "7c area",
            f"1 km2 field of the {a['scene_px'][0]}x{a['scene_px'][1]} sample vs whole scene",
            (
                f"{a['field_s']:.2f} s vs {a['whole_s']:.2f} s (work {a['work_px'][0]}x{a['work_px'][1]} px); "
                f"identical {a['identical_pixels']}/{a['pixels']}"
            ),
            "identical",
            a["identical_pixels"] == a["pixels"],
        )
    )
    if "season" in r:
        out += _season_rows(r["season"])
    return out


def _season_rows(s: dict) -> list[tuple]:
    extra = s["layers_s"] + s["report_s"]
    t = s["tile"]
    per_date = t["seconds"] / t["dates"]
    return [
        (
            "7d season",
            f"season layers + report of the {s['dates']}-date sample season vs its plain batch",
            (
                f"{s['layers_s']:.2f} s + {s['report_s']:.2f} s ({s['report_kb']:.0f} kB) vs {s['plain_s']:.1f} s "
                f"= +{100 * extra / s['plain_s']:.1f} % (small products: the report's fixed cost shows)"
            ),
            "",
            None,
        ),
        (
            "7d season",
            f"season layers of {t['dates']} full-tile masks ({t['px']}^2)",
            (
                f"{t['seconds']:.1f} s = {per_date:.1f} s per date, {100 * per_date / FULL_TILE_S:.1f} % of a "
                f"full tile's mask ({FULL_TILE_S:.0f} s); peak {t['peak_mb']:.0f} MB (at start {t['start_mb']:.0f} MB)"
            ),
            "< 10 %; peak < start + 300 MB",
            per_date < 0.1 * FULL_TILE_S and t["peak_mb"] < t["start_mb"] + 300,
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--only-season", action="store_true", help="figure d only")
    parser.add_argument("--season-tile", nargs="+", help=argparse.SUPPRESS)  # the child of figure d
    args = parser.parse_args()
    if args.season_tile:
        _season_tile_child(args.season_tile)
        return 0
    deps.ensure_on_path()
    if args.only_season:
        with tempfile.TemporaryDirectory(prefix="cloudmask-bench-season-") as tmp:
            results = {"season": season_figure(Path(tmp)), "load": " ".join(f"{v:.1f}" for v in os.getloadavg())}
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
        for row in _season_rows(results["season"]):
            verdict = "" if row[4] is None else ("ok" if row[4] else "MISSED")
            print("  ".join(str(c) for c in row[:4]), verdict)
        return 0
    with tempfile.TemporaryDirectory(prefix="cloudmask-bench-batch-") as tmp:
        folder = Path(tmp)
        (folder / "area").mkdir()
        (folder / "season").mkdir()
        results = {
            "throughput": throughput(folder),
            "area": area_figure(folder / "area"),
            "season": season_figure(folder / "season"),
            "load": " ".join(f"{v:.1f}" for v in os.getloadavg()),
        }
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    for row in rows(results):
        verdict = "" if row[4] is None else ("ok" if row[4] else "MISSED")
        print("  ".join(str(c) for c in row[:4]), verdict)
    return 0


if __name__ == "__main__":
    sys.exit(main())
