"""What this computer's processors offer this process.

A container or ``taskset`` may allow fewer cores than the machine has: the
inference threads, the GPU's feeding workers and the merge's readers are all
sized by what this process may actually use.
"""

from __future__ import annotations

import os


def available_cores() -> int:
    """Cores this process may run on (a container or ``taskset`` may allow fewer than the machine has)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
