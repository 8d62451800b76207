"""What a full tile costs besides the network (``make bench`` figure 9; also runs alone).

On a GPU the network is 1-2 s of a full 10980^2 tile; everything else (reading the
bands, cutting and scaling tiles, the softmax, blending overlapping tiles, writing,
the merge) runs on the CPU and decides the time. This measures that rest on any
machine: scripts/gpu_check.py's run of ``core.pipeline.improve`` (ukis-6b-l2a cloud
and shadow, a product mask) with the network's session replaced by a stand-in that
returns three of the input's channels as its logits, so everything around it runs for
real (the softmax, blending, the probabilities written or not, the merge).

The run is set up as on a GPU: batches of 64 tiles, tile rows as wide as the raster
(no column stripes) and ``--workers`` blocks of rows at once. It is run with only the
mask written (the toolbox's default) and with both probability rasters kept.
Printed: wall time, the two steps, and the process's CPU time (on a machine with few
cores the CPU time says more: on 16 cores the work is spread, not reduced).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_check  # it puts the plugin's core/ on the path, as a top-level package

from core import probability
from core.raster import raster_info
from core.runtime.cpu import available_cores


class StandIn:
    """An onnxruntime session that costs (almost) nothing: three input channels as logits."""

    def run(self, names, feeds):
        (batch,) = feeds.values()
        return [batch[:, :3].copy()]


def run_once(raster: str, mask: str, folder: Path, workers: int, keep: bool) -> dict:
    real_load = probability.load_model
    probability.load_model = lambda *args, **kwargs: replace(real_load(*args, **kwargs), session=StandIn())
    try:
        run = gpu_check.improve(raster, mask, folder, "cpu", "floor", workers, keep, batch_size=64, stripe_cols=1 << 20)
    finally:
        probability.load_model = real_load
    return {k: run[k] for k in ("kept", "workers", "wall_s", "cpu_s", "probabilities_s", "merge_s")}


def measure(raster: str, mask: str, workers: int) -> dict:
    runs = []
    for keep in (False, True):
        with tempfile.TemporaryDirectory(prefix="cloudmask-bench-floor-") as folder:
            runs.append(run_once(raster, mask, Path(folder), workers, keep))
    return {"raster": raster, "size": raster_info(raster).width, "cores": available_cores(), "runs": runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("raster", help="a 12-band uint16 raster (make bench: bench/cache/s2_12band_10980.tif)")
    parser.add_argument("mask", help="a product mask on its grid")
    parser.add_argument(
        "--workers",
        type=int,
        default=max(1, min(probability.GPU_WORKERS, available_cores() // 2)),
        help="blocks of rows at once (default: as on a GPU with this many cores)",
    )
    parser.add_argument("--json", type=Path, help="write the result here too")
    args = parser.parse_args()
    result = measure(args.raster, args.mask, args.workers)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
