"""The journey of one request through ``pipeline.improve``: how often the run goes back to a file.

Runs one small real improve (a generated 4-band per-pixel model that gives cloud and shadow,
a 300 x 260 px scene with a nodata corner, a product mask, the SOURCE output, thresholds
left to the model's card) and records, with ``sys.setprofile`` on the thread that calls
``improve``, the core files that calls enter. Rules:

- a call counts when it enters a ``core/`` file other than the calling function's (a call
  within a file enters nothing), other than ``errors.py`` and ``progress.py`` (plumbing
  every step uses), from the call to ``improve`` until it returns; code outside ``core/``
  (numpy, GDAL, dataclass-made methods) is not followed, but core functions it calls back are;
- only calls at core depth 2 or less count: ``improve`` is depth 0, and the depth grows by
  one with each call into another core file. Depth 1 are the steps the pipeline calls,
  depth 2 what the steps call; deeper calls are a step's own workings (the engine's tiles);
- a call from a call site already seen (same calling line, same function called) does not
  count again: a loop over windows or blocks is one visit;
- properties, generators (``@contextmanager`` included), comprehensions and lambdas are not
  calls of their own (a property reads a field; the others carry their caller's work);
- the work on other threads (read-ahead, writer, flagging) is not traced: the request's
  journey is the calling thread's.

The counted calls, in order, give the files entered; consecutive calls in the same file are
one stop. A *return* is a stop in a file that an earlier stop already left. Printed: the
stops, the distinct files, the returns, and the re-entries per file (its stops after the
first). ``--list`` prints the stops too.

Usage: scripts/journey.py [--list] [--depth N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIPPED = {"errors.py", "progress.py"}
NOT_CALLS = {"<genexpr>", "<listcomp>", "<dictcomp>", "<setcomp>", "<lambda>"}
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# The plugin under its installed name, from this checkout's plugins folder (see scripts/bench.py),
# and the tests' generators of small models and rasters.
sys.path.insert(0, str(ROOT / ".venv" / "qgis-plugins"))
sys.path.insert(0, str(ROOT / "test"))

import numpy as np

from cloud_mask_improver.core.runtime import deps

deps.ensure_on_path()

from onnx_models import conv1x1_model, write_card
from rasters import write_raster

from cloud_mask_improver.core import merge, pipeline

CORE = Path(pipeline.__file__).parent  # as the code's file names give it: through the plugins folder

BANDS = ["B02", "B03", "B04", "B08"]
WEIGHTS = np.array([[0.0] * 4, [10.0] * 4, [-10.0] * 4])  # bright: cloud, dark: shadow
BIAS = np.array([0.0, -11.0, 5.0])


def _request(folder: Path) -> pipeline.ImproveRequest:
    """A small run's request: its scene, product mask and model written into ``folder``."""
    rng = np.random.default_rng(7)
    scene = np.kron(rng.integers(1, 4000, size=(4, 60, 52), dtype=np.uint16), np.ones((1, 5, 5), np.uint16))
    scene[:, 250:, 200:] = 0
    s2 = write_raster(folder / "s2.tif", scene, descriptions=BANDS, nodata=0)
    product = np.kron(rng.choice([0, 0, 0, 1], size=(30, 26)), np.ones((10, 10), int)).astype(np.uint8)
    product[:, :15] = 255
    product_path = write_raster(folder / "product.tif", product, nodata=255)
    model = conv1x1_model(folder / "tiny.onnx", WEIGHTS, BIAS, tile=64)
    write_card(folder / "tiny.json", id="tiny-test")
    probability = pipeline.ProbabilityRequest(str(s2), [str(model)], str(model))
    return pipeline.ImproveRequest(
        probability,
        product_path,
        merge.MergeSettings(min_area=3),
        mask=str(folder / "mask.tif"),
        source=str(folder / "source.tif"),
    )


class Tracer:
    """Records the counted calls (see the module's rules) as (file, function) pairs."""

    def __init__(self, root, depth: int, skipped: set):
        self.root, self.depth, self.skipped = root, depth, skipped
        self.calls: list[tuple[str, str]] = []
        self.sites: set[tuple] = set()
        self.levels: dict[int, int] = {}  # id of a live core frame -> its core depth

    def __call__(self, frame, event, arg):
        if event == "return":
            self.levels.pop(id(frame), None)  # a finished frame's id may be reused
            return
        if event != "call":
            return
        code = frame.f_code
        if code is self.root and not self.levels:
            self.levels[id(frame)] = 0
            self.calls.append(("pipeline.py", code.co_name))
            return
        path = Path(code.co_filename)
        if CORE not in path.parents or path.name in SKIPPED:
            return
        caller = frame.f_back
        while caller is not None and id(caller) not in self.levels:
            caller = caller.f_back
        if caller is None:
            return  # not within improve
        crossing = Path(caller.f_code.co_filename) != path
        level = self.levels[id(caller)] + crossing
        self.levels[id(frame)] = level
        # Generators (0x20) and comprehensions carry their caller's work: depth, but no call.
        site = (caller.f_code, caller.f_lineno, code)
        if (
            level <= self.depth
            and crossing
            and site not in self.sites
            and not code.co_flags & 0x20
            and code.co_name not in NOT_CALLS
            and code not in self.skipped
        ):
            self.sites.add(site)
            self.calls.append((path.relative_to(CORE).as_posix(), code.co_name))


def trace(request: pipeline.ImproveRequest, depth: int) -> list[tuple[str, str]]:
    """The counted calls of one ``pipeline.improve(request)``."""
    tracer = Tracer(pipeline.improve.__code__, depth, _properties())
    sys.setprofile(tracer)
    try:
        pipeline.improve(request)
    finally:
        sys.setprofile(None)
    return tracer.calls


def _properties() -> set:
    """The code of the core classes' properties: reading a field, not a step."""
    found = set()
    for name, module in list(sys.modules.items()):
        if not name.startswith("cloud_mask_improver.core"):
            continue
        for cls in [v for v in vars(module).values() if isinstance(v, type)]:
            for value in vars(cls).values():
                getter = getattr(value, "fget", None) or getattr(value, "func", None)
                if getter is not None and hasattr(getter, "__code__"):
                    found.add(getter.__code__)
    return found


def stops(calls: list[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """Consecutive calls in one file as one stop: (file, the functions entered there)."""
    out: list[tuple[str, list[str]]] = []
    for file, function in calls:
        if out and out[-1][0] == file:
            out[-1][1].append(function)
        else:
            out.append((file, [function]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="print every stop")
    parser.add_argument("--depth", type=int, default=2, help="deepest core depth counted (default 2)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cloudmask-journey-") as folder:
        journey = stops(trace(_request(Path(folder)), args.depth))
    visits = Counter(file for file, _ in journey)
    returns = sum(n - 1 for n in visits.values())
    if args.list:
        for index, (file, functions) in enumerate(journey, start=1):
            print(f"{index:3d} {file}: {', '.join(dict.fromkeys(functions))}")
    print(f"stops: {len(journey)}; files: {len(visits)}; returns to a file already left: {returns}")
    print("re-entries: " + ", ".join(f"{file} {n - 1}" for file, n in visits.most_common() if n > 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
