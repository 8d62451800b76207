"""Against the reference packages themselves (``make bench``, figure 11).

Each side runs as its user runs it, in a process of its own, on the same L1C
13-band stacks (the real sample scene, 512 x 856 px, mirrored out to 2048^2 and
4096^2, written once into ``bench/cache/``):

a. ``qgis_process run cloudmask:improvecloudmask`` with ukis-6b-l1c (cloud and
   shadow) against ukis-csmask's ``CSmask`` (the same network, 10 m), each reading
   the stack and writing its mask;
b. ``cloudmask batch`` with the same model against the same ukis-csmask run;
c. the peak resident memory of each (a process's own, by ``os.wait4``);
d. ``qgis_process run cloudmask:cloudprobability`` with s2cloudless-l1c against
   s2cloudless's ``S2PixelCloudDetector.get_cloud_probability_maps`` (LightGBM);
e. the ``qgis_process`` run of (a) against bare onnxruntime on exactly the tiles the
   engine feeds (``InferenceSession.run`` alone, tiles already in memory).

ukis-csmask and s2cloudless live in a venv of their own (``bench/.refvenv``, every
version pinned in ``scripts/bench_reference.txt``), never in QGIS's Python or the
test venv. qgis_process runs with a QGIS profile of its own (the user's is not
touched). Runs are paired and alternated (which side goes first flips each time);
the figures are medians.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

import numpy as np
from osgeo import gdal
from plugin_root import qgis_process

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / "cache"
REFVENV = ROOT / "bench" / ".refvenv"
REQUIREMENTS = ROOT / "scripts" / "bench_reference.txt"
SAMPLE = ROOT / "test" / "data" / "sample" / "s2_l1c_13band.tif"
PLUGINS = ROOT / ".venv" / "qgis-plugins"
UKIS = "ukis-6b-l1c"
S2CLOUDLESS = "s2cloudless-l1c"

# Wall time and peak RSS of one command, from a small Python of its own (a child forked
# from a big process would count the parent's memory in its own peak).
_MEASURE = """
import json, os, subprocess, sys, time
start = time.perf_counter()
with open(sys.argv[1], "w") as log:
    child = subprocess.Popen(sys.argv[2:], stdout=log, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(child.pid, 0)
print(json.dumps({"wall_s": time.perf_counter() - start, "peak_mb": usage.ru_maxrss / 1024,
                  "rc": os.waitstatus_to_exitcode(status)}))
"""

# The reference packages as their READMEs use them (argv: which, stack, output).
_REFERENCE = """
import sys
import numpy as np
import tifffile
which, stack, out = sys.argv[1:4]
data = tifffile.imread(stack)  # [13, rows, cols] uint16, B01..B12 with B8A
if which == "ukis":
    from ukis_csmask.mask import CSmask
    bands = [1, 2, 3, 7, 11, 12]  # B02 B03 B04 B08 B11 B12
    image = np.moveaxis(data[bands].astype(np.float32) * np.float32(1e-4), 0, -1)
    mask = CSmask(image, ["blue", "green", "red", "nir", "swir16", "swir22"], product_level="l1c",
                  invalid_buffer=0)
    tifffile.imwrite(out, mask.csm[:, :, 0].astype(np.uint8))
else:
    from s2cloudless import S2PixelCloudDetector
    bands = [0, 1, 3, 4, 7, 8, 9, 10, 11, 12]  # B01 B02 B04 B05 B08 B8A B09 B10 B11 B12
    detector = S2PixelCloudDetector(all_bands=False)
    probability = detector.get_cloud_probability_maps(data[bands].transpose(1, 2, 0)[None] * 1e-4)
    tifffile.imwrite(out, probability[0].astype(np.float32))
"""


# -- the reference venv -------------------------------------------------------
def reference_python() -> Path:
    """The reference venv's Python, made (or remade when the pins changed) first."""
    python = REFVENV / "bin" / "python"
    stamp = REFVENV / "requirements.sha256"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print("bench: installing ukis-csmask and s2cloudless into bench/.refvenv (once) ...", flush=True)
    venv.EnvBuilder(clear=True, with_pip=True).create(REFVENV)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_CONSTRAINT")}
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
        check=True,
        env=env,
    )
    stamp.write_text(wanted)
    return python


# -- the stacks ---------------------------------------------------------------
def l1c_stack(size: int) -> Path:
    """The sample scene mirrored out to ``size``^2 (no seam a network could notice).

    Uncompressed so that neither side pays for decompressing it."""
    path = CACHE / f"l1c_13band_{size}.tif"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    sample = gdal.Open(str(SAMPLE))
    data = sample.ReadAsArray()
    reps = [(size + n - 1) // n for n in data.shape[1:]]
    tiled = np.concatenate(
        [np.concatenate([_flip(data, r, c) for c in range(reps[1])], axis=2) for r in range(reps[0])], axis=1
    )[:, :size, :size]
    partial = path.with_suffix(".partial.tif")
    out = gdal.GetDriverByName("GTiff").Create(
        str(partial),
        size,
        size,
        data.shape[0],
        gdal.GDT_UInt16,
        options=["TILED=YES", "INTERLEAVE=BAND", "BIGTIFF=IF_SAFER"],
    )
    transform = list(sample.GetGeoTransform())
    out.SetGeoTransform(transform)
    out.SetProjection(sample.GetProjection())
    out.SetMetadata(sample.GetMetadata())
    for b in range(data.shape[0]):
        band = out.GetRasterBand(b + 1)
        band.SetDescription(sample.GetRasterBand(b + 1).GetDescription())
        band.SetNoDataValue(0)
        band.WriteArray(tiled[b])
    out = None
    os.replace(partial, path)
    return path


def _flip(data: np.ndarray, row: int, col: int) -> np.ndarray:
    """Every other copy mirrored, so that neighbours meet along the same pixels."""
    view = data[:, ::-1] if row % 2 else data
    return view[:, :, ::-1] if col % 2 else view


# -- the runs -----------------------------------------------------------------
def _measure(command: list[str], env: dict, log: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(log), *command], env=env, capture_output=True, text=True, check=True
    )
    result = json.loads(done.stdout)
    if result.pop("rc") != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed: {log.read_text()[-3000:]}")
    return result


class Sides:
    """The commands of each side, with the environment each needs."""

    def __init__(self, folder: Path, data_home: Path):
        self.folder = folder
        self.qgis_env = {
            **os.environ,
            "QGIS_CUSTOM_CONFIG_PATH": str(folder / "qgis"),
            "QGIS_PLUGINPATH": str(PLUGINS),
            "QT_QPA_PLATFORM": "offscreen",
            "CLOUDMASK_HOME": str(data_home),
        }
        subprocess.run(
            [qgis_process(), "plugins", "enable", "cloud_mask_improver"],
            env=self.qgis_env,
            capture_output=True,
            check=False,
        )
        self.ref_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        self.ref_python = str(reference_python())

    def improve(self, stack: Path) -> dict:
        return _measure(
            [
                qgis_process(),
                "run",
                "cloudmask:improvecloudmask",
                "--",
                f"S2_RASTER={stack}",
                f"CLOUD_MODEL={UKIS}",
                f"SHADOW_MODEL={UKIS}",
                "RESOLUTION=10",
                f"MASK={self.folder / 'ours_mask.tif'}",
            ],
            self.qgis_env,
            self.folder / "ours.log",
        )

    def batch(self, stack: Path) -> dict:
        return _measure(
            [
                str(ROOT / ".venv" / "bin" / "cloudmask"),
                "batch",
                "--out",
                str(self.folder / "batch"),
                "--force",
                "--cloud-model",
                UKIS,
                "--shadow-model",
                UKIS,
                "--resolution",
                "10",
                str(stack),
            ],
            self.qgis_env,
            self.folder / "batch.log",
        )

    def probability(self, stack: Path) -> dict:
        return _measure(
            [
                qgis_process(),
                "run",
                "cloudmask:cloudprobability",
                "--",
                f"SENTINEL_RASTER={stack}",
                f"MODEL_PATH={S2CLOUDLESS}",
                f"CLOUD_PROBABILITY={self.folder / 'ours_probability.tif'}",
            ],
            self.qgis_env,
            self.folder / "probability.log",
        )

    def reference(self, which: str, stack: Path) -> dict:
        return _measure(
            [self.ref_python, "-c", _REFERENCE, which, str(stack), str(self.folder / f"{which}.tif")],
            self.ref_env,
            self.folder / f"{which}.log",
        )


def paired(ours, theirs, repeats: int) -> dict:
    """Alternated pairs (who goes first flips), medians of wall time and peak memory."""
    runs = {"ours": [], "theirs": []}
    for k in range(repeats):
        order = (("ours", ours), ("theirs", theirs)) if k % 2 == 0 else (("theirs", theirs), ("ours", ours))
        for name, run in order:
            runs[name].append(run())
    result = {"repeats": repeats}
    for name, measured in runs.items():
        result[f"{name}_s"] = statistics.median(m["wall_s"] for m in measured)
        result[f"{name}_mb"] = statistics.median(m["peak_mb"] for m in measured)
    result["ratio"] = statistics.median(o["wall_s"] / t["wall_s"] for o, t in zip(runs["ours"], runs["theirs"]))
    return result


def measure(sizes: list[int], repeats: dict, data_home: Path, bare_run) -> dict:
    """Figure 11. ``bare_run(raster, model_id)`` -> (clock, tiles): bench.py's bare onnxruntime."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="cloudmask-reference-") as tmp:
        sides = Sides(Path(tmp), data_home)
        for size in sizes:
            stack = l1c_stack(size)
            print(f"bench: 11 against ukis-csmask and s2cloudless, {size}^2 ...", flush=True)
            results[str(size)] = _compare(sides, stack, repeats[size], bare_run)
    return results


def _compare(sides: Sides, stack: Path, n: int, bare_run) -> dict:
    row = {
        "ukis": paired(lambda: sides.improve(stack), lambda: sides.reference("ukis", stack), n),
        "batch": paired(lambda: sides.batch(stack), lambda: sides.reference("ukis", stack), n),
        "s2cloudless": paired(lambda: sides.probability(stack), lambda: sides.reference("s2cloudless", stack), n),
    }
    bare = [bare_run(str(stack), UKIS) for _ in range(n)]
    row["bare_s"] = statistics.median(clock.wall for clock, _ in bare)
    row["tiles"] = bare[0][1]
    row["bare_ratio"] = row["ukis"]["ours_s"] / row["bare_s"]
    return row


def rows(r: dict) -> list[tuple]:
    """Table rows for scripts/bench.py."""
    out = []
    for k, (size, row) in enumerate(r.items()):
        u, b, s = row["ukis"], row["batch"], row["s2cloudless"]
        big = int(size) > 2048
        out += [
            (
                "11 references" if k == 0 else "",
                f"qgis_process improvecloudmask {UKIS} / ukis-csmask 1.0.0 CSmask, {size}^2",
                f"{u['ours_s']:.1f} s / {u['theirs_s']:.1f} s = {u['ratio']:.2f} (median of {u['repeats']} pairs)",
                "< 1" if big else "<= 0.95",
                u["ratio"] < 1 if big else u["ratio"] <= 0.95,
            ),
            (
                "",
                f"  cloudmask batch / ukis-csmask, {size}^2",
                f"{b['ours_s']:.1f} s / {b['theirs_s']:.1f} s = {b['ratio']:.2f}",
                "",
                None,
            ),
            (
                "",
                f"  peak memory qgis_process, batch / ukis-csmask, {size}^2",
                f"{u['ours_mb']:.0f}, {b['ours_mb']:.0f} / {u['theirs_mb']:.0f} MiB",
                "",
                None,
            ),
            (
                "",
                f"  qgis_process cloudprobability {S2CLOUDLESS} / s2cloudless 1.7.3, {size}^2",
                (
                    f"{s['ours_s']:.1f} s / {s['theirs_s']:.1f} s = {s['ratio']:.2f}; peak {s['ours_mb']:.0f} / "
                    f"{s['theirs_mb']:.0f} MiB"
                ),
                "",
                None,
            ),
            (
                "",
                f"  qgis_process / bare onnxruntime, same {row['tiles']} tiles, {size}^2",
                f"{u['ours_s']:.1f} s / {row['bare_s']:.1f} s = {row['bare_ratio']:.2f}",
                "" if big else "<= 1.05",
                None if big else row["bare_ratio"] <= 1.05,
            ),
        ]
    return out
