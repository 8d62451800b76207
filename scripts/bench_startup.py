"""Start-up cost (``make bench``, figure 10): what every QGIS start and every run pays before the first tile.

1. Plugin load: ``qgis_process.bin list`` with the plugin enabled against the same
   command with it disabled, each in a QGIS profile of its own (a temporary
   ``QGIS_CUSTOM_CONFIG_PATH``: the user's profile is not touched), runs paired and
   alternated, medians of the wall time and of the peak resident memory.
2. A run's fixed costs, each run in a fresh Python that has started QGIS and
   Processing first (not counted): loading the plugin (as QGIS does), the imports a
   run adds (the engine, onnxruntime), creating the model's session, and its first
   batch against its second (the first pays for allocating the buffers). Medians.

Usage: bench_startup.py [--repeats N] [--plugins FOLDER] [--json OUT]
(``--plugins``: a plugins folder holding ``cloud_mask_improver``, to measure another
checkout of the plugin; by default this checkout's ``.venv/qgis-plugins``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from plugin_root import qgis_process

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ROOT / ".venv" / "qgis-plugins"
MODEL = "ukis-6b-l1c"

# Wall time and peak RSS of one command, from a small Python of its own: a child
# forked from a big process would count the parent's memory in its own peak.
_MEASURE = """
import json, os, subprocess, sys, time
start = time.perf_counter()
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
print(json.dumps({"wall_s": time.perf_counter() - start, "peak_mb": usage.ru_maxrss / 1024,
                  "cpu_s": usage.ru_utime + usage.ru_stime, "rc": os.waitstatus_to_exitcode(status)}))
"""

# One run's fixed costs, step by step, in a fresh Python (argv: plugins folder, model id).
_STEPS = """
import json, os, sys, time
from qgis.core import QgsApplication
app = QgsApplication([], False)
app.initQgis()
sys.path.insert(0, os.path.join(QgsApplication.pkgDataPath(), "python", "plugins"))
from processing.core.Processing import Processing
Processing.initialize()
sys.path.insert(0, sys.argv[1])
times = {}
start = time.perf_counter()
import cloud_mask_improver
cloud_mask_improver.classFactory(None).initProcessing()
times["plugin_load_s"] = time.perf_counter() - start
start = time.perf_counter()
from cloud_mask_improver.core import inference, pipeline  # noqa: F401  what a run imports
from cloud_mask_improver.core.modelstore import catalogue
inference._ort()
times["run_imports_s"] = time.perf_counter() - start
card, path = catalogue.resolve(sys.argv[2])
start = time.perf_counter()
model = inference.load_model(card, path)
times["session_s"] = time.perf_counter() - start
import numpy as np
batch = np.random.default_rng(0).random((4, len(card.bands), card.tile, card.tile), dtype=np.float32)
for name in ("first_batch_s", "second_batch_s"):
    start = time.perf_counter()
    model.session.run(None, {model.input_name: batch})
    times[name] = time.perf_counter() - start
print(json.dumps(times))
app.exitQgis()
"""


def _profile(folder: Path, plugins: Path, enabled: bool) -> dict:
    """The environment of a QGIS profile of its own in ``folder``, the plugin enabled or not."""
    env = {
        **os.environ,
        "QGIS_CUSTOM_CONFIG_PATH": str(folder),
        "QGIS_PLUGINPATH": str(plugins),
        "QT_QPA_PLATFORM": "offscreen",
    }
    if enabled:
        subprocess.run(
            [qgis_process(), "plugins", "enable", "cloud_mask_improver"], env=env, capture_output=True, check=False
        )
    # The first start makes the profile.
    subprocess.run([qgis_process(), "list"], env=env, capture_output=True, check=False)
    return env


def _measure(command: list[str], env: dict) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, *command], env=env, capture_output=True, text=True, check=True
    )
    result = json.loads(done.stdout)
    if result.pop("rc") != 0:
        raise RuntimeError(f"{' '.join(command)} failed")
    return result


def plugin_load(plugins: Path, repeats: int) -> dict:
    """``qgis_process list`` with the plugin enabled and disabled, paired and alternated."""
    with tempfile.TemporaryDirectory(prefix="cloudmask-startup-") as folder:
        on = _profile(Path(folder) / "on", plugins, True)
        off = _profile(Path(folder) / "off", plugins, False)
        runs = {"enabled": [], "disabled": []}
        for k in range(repeats):
            order = (("enabled", on), ("disabled", off)) if k % 2 == 0 else (("disabled", off), ("enabled", on))
            for name, env in order:
                runs[name].append(_measure([qgis_process(), "list"], env))
    result = {"repeats": repeats}
    for name, measured in runs.items():
        result[f"{name}_s"] = statistics.median(m["wall_s"] for m in measured)
        result[f"{name}_mb"] = statistics.median(m["peak_mb"] for m in measured)
    # The verdict is on the median of the paired differences: each pair ran back to back,
    # under the same load, so a burst of other work on this shared machine cancels out.
    pairs = list(zip(runs["enabled"], runs["disabled"]))
    result["added_s"] = statistics.median(on["wall_s"] - off["wall_s"] for on, off in pairs)
    result["added_mb"] = statistics.median(on["peak_mb"] - off["peak_mb"] for on, off in pairs)
    # CPU time hardly counts waiting for other programs: the steadier figure on a loaded machine.
    result["added_cpu_s"] = statistics.median(on["cpu_s"] - off["cpu_s"] for on, off in pairs)
    return result


def run_steps(plugins: Path, repeats: int) -> dict:
    """A run's fixed costs, each measured in ``repeats`` fresh processes: medians."""
    # The bare QgsApplication has no profile: give it this machine's data home (onnxruntime, models).
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "CLOUDMASK_HOME": str(_data_home())}
    runs = []
    for _ in range(repeats):
        done = subprocess.run(
            ["/usr/bin/python3", "-c", _STEPS, str(plugins), MODEL], env=env, capture_output=True, text=True, check=True
        )
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    result = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    result.update(repeats=repeats, model=MODEL)
    return result


def _data_home() -> Path:
    sys.path.insert(0, str(PLUGINS))
    from cloud_mask_improver.core.runtime import home

    return home.data_home()


def rows(s: dict) -> list[tuple]:
    """Table rows for scripts/bench.py."""
    load, steps = s["plugin_load"], s["run_steps"]
    return [
        (
            "10 start-up",
            f"qgis_process list, plugin enabled / disabled (median of {load['repeats']})",
            (f"{load['enabled_s']:.2f} s / {load['disabled_s']:.2f} s; paired difference {load['added_s']:+.2f} s"),
            "<= +0.15 s",
            load["added_s"] <= 0.15,
        ),
        (
            "",
            "  CPU time (user + system)",
            f"paired difference {load.get('added_cpu_s', float('nan')):+.2f} s",
            "",
            None,
        ),
        (
            "",
            "  peak memory",
            (
                f"{load['enabled_mb']:.0f} / {load['disabled_mb']:.0f} MiB; paired "
                f"difference {load['added_mb']:+.1f} MiB"
            ),
            "<= +15 MiB",
            load["added_mb"] <= 15,
        ),
        (
            "",
            f"a run's fixed costs, {steps['model']} (median of {steps['repeats']})",
            (
                f"plugin load {steps['plugin_load_s']:.2f} s, run imports {steps['run_imports_s']:.2f} s, "
                f"session {steps['session_s']:.2f} s, first batch {steps['first_batch_s']:.2f} s "
                f"(second {steps['second_batch_s']:.2f} s)"
            ),
            "",
            None,
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--plugins", type=Path, default=PLUGINS, help="a plugins folder with cloud_mask_improver")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    result = {
        "plugin_load": plugin_load(args.plugins, args.repeats),
        "run_steps": run_steps(args.plugins, max(3, args.repeats // 2)),
    }
    for row in rows(result):
        print("  ".join(str(c) for c in row[1:3]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
