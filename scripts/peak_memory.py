"""Run a command, save its JSON stdout with its wall time and peak resident memory.

Usage: peak_memory.py OUT.json -- COMMAND...  (the command must print JSON, as
``qgis_process run --json`` does).
"""

import json
import resource
import subprocess
import sys
import time


def main() -> int:
    out, command = sys.argv[1], sys.argv[sys.argv.index("--") + 1 :]
    start = time.perf_counter()
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    wall = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        return done.returncode
    text = done.stdout[done.stdout.index("{") :]
    data = json.loads(text)
    data.update(wall_s=wall, peak_mb=peak_kb / 1024)
    with open(out, "w") as handle:
        json.dump(data, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
