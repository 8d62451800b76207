"""What a full tile costs besides the network (``make bench`` figure 9; also runs alone).

On a GPU the network is 1-2 s of a full 10980^2 tile; everything else (reading the
bands, cutting and scaling tiles, the softmax, blending overlapping tiles, writing,
the merge) runs on the CPU and decides the time. This measures that rest on any
machine: ``core.pipeline.improve`` (ukis-6b-l2a cloud and shadow, a product mask)
with the network's session replaced by a stand-in that returns three of the input's
channels as its logits, so everything around it runs for real (the softmax,
blending, the probabilities written or not, the merge).

The run is set up as on a GPU: batches of 64 tiles, tile rows as wide as the raster
(no column stripes) and ``--workers`` bands of rows at once. It is run with only the
mask written (the toolbox's default) and with both probability rasters kept.
Printed: wall time, the two steps, and the process's CPU time (on a machine with few
cores the CPU time says more: on 16 cores the work is spread, not reduced).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import plugin_root

plugin_root.import_root()

from cloud_mask_improver.core import deps, merge, pipeline, probability
from cloud_mask_improver.core.inference import available_cores
from cloud_mask_improver.core.raster import raster_info

deps.ensure_on_path()
MODEL = "ukis-6b-l2a"


class StandIn:
    """An onnxruntime session that costs (almost) nothing: three input channels as logits."""

    def run(self, names, feeds):
        (batch,) = feeds.values()
        return [batch[:, :3].copy()]


def _stand_in_models(real_load):
    def load(*args, **kwargs):
        return replace(real_load(*args, **kwargs), session=StandIn())
    return load


def run_once(raster: str, mask: str, folder: Path, workers: int, keep: bool) -> dict:
    outputs = pipeline.ProbabilityOutputs()
    if keep:
        outputs = pipeline.ProbabilityOutputs(cloud=str(folder / "cloud.tif"), shadow=str(folder / "shadow.tif"))
    request = pipeline.ImproveRequest(
        probability=pipeline.ProbabilityRequest(raster, [MODEL], MODEL, provider="cpu", batch_size=64,
                                                stripe_cols=1 << 20, workers=workers),
        product_mask=mask, settings=merge.MergeSettings(), mask=str(folder / "mask.tif"), outputs=outputs)
    steps = {}
    real = {name: getattr(pipeline, name) for name in ("compute_probabilities", "merge_to_mask")}

    def timed(name):
        def call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return real[name](*args, **kwargs)
            finally:
                steps[name] = time.perf_counter() - start
        return call

    real_load = probability.load_model
    probability.load_model = _stand_in_models(real_load)
    for name in real:
        setattr(pipeline, name, timed(name))
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        pipeline.improve(request)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        probability.load_model = real_load
        for name, call in real.items():
            setattr(pipeline, name, call)
    return {"kept": keep, "workers": workers, "wall_s": wall, "cpu_s": cpu,
            "probabilities_s": steps["compute_probabilities"], "merge_s": steps["merge_to_mask"]}


def measure(raster: str, mask: str, workers: int) -> dict:
    runs = []
    for keep in (False, True):
        with tempfile.TemporaryDirectory(prefix="cloudmask-bench-floor-") as folder:
            runs.append(run_once(raster, mask, Path(folder), workers, keep))
    return {"raster": raster, "size": raster_info(raster).width, "cores": available_cores(), "runs": runs}


def rows(result: dict) -> list[tuple]:
    """Figure 9's rows of ``make bench``'s table."""
    out = []
    for k, run in enumerate(result["runs"]):
        what = "probabilities kept" if run["kept"] else "mask only"
        out.append(("9 besides the network" if k == 0 else "",
                    f"{result['size']}^2, network replaced by a stand-in, {run['workers']} band(s) of rows, {what}",
                    (f"{run['wall_s']:.1f} s (probabilities {run['probabilities_s']:.1f} s, merge "
                    f"{run['merge_s']:.1f} s), cpu {run['cpu_s']:.1f} s on {result['cores']} cores"), "", None))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("raster", help="a 12-band uint16 raster (make bench: bench/cache/s2_12band_10980.tif)")
    parser.add_argument("mask", help="a product mask on its grid")
    parser.add_argument("--workers", type=int, default=max(1, min(probability.GPU_WORKERS, available_cores() // 2)),
                        help="bands of rows at once (default: as on a GPU with this many cores)")
    parser.add_argument("--json", type=Path, help="write the result here too")
    args = parser.parse_args()
    result = measure(args.raster, args.mask, args.workers)
    for row in rows(result):
        print("  ".join(str(c) for c in row[:3]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
