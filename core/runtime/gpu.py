"""What this computer's NVIDIA GPU offers, asked of the driver itself.

No CUDA toolkit, no torch, no NVML binding: ``nvidia-smi`` ships with every
NVIDIA driver (Linux and Windows), so it is the one question that works before
GPU support is installed (the installer's check) and after (the memory check
before a CUDA run). Every function answers "nothing" rather than raising: a
missing or broken driver means "run on the CPU", never a failed run.

The driver's answer is kept for the life of QGIS (per ``nvidia-smi`` found): which GPU
and driver do not change while QGIS runs, and asking again costs a program start each
time the model manager opens or a run chooses its device. Only the free memory, which
does change, is asked again (``fresh=True``) when a CUDA run plans its batches.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import sys
import threading
from dataclasses import dataclass

from . import processes

# Windows drivers put nvidia-smi here, not always on PATH.
_WINDOWS_SMI = os.path.join(os.environ.get("SYSTEMROOT", r"C:\Windows"), "System32", "nvidia-smi.exe")


@dataclass(frozen=True)
class Gpu:
    name: str
    driver: str
    free_mb: int
    total_mb: int


def _smi() -> str | None:
    found = shutil.which("nvidia-smi")
    if found:
        return found
    if sys.platform.startswith("win") and os.path.isfile(_WINDOWS_SMI):
        return _WINDOWS_SMI
    return None


def _device_index() -> int:
    """The GPU onnxruntime's CUDA provider uses (device 0 of those CUDA may see)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    return int(visible) if visible.isdigit() else 0


# nvidia-smi's answers and driver descriptions, by the nvidia-smi they came from.
_GPUS: dict[str | None, list[Gpu]] = {}
_DRIVERS: dict[str | None, str] = {}
_LOCK = threading.Lock()


def gpus(fresh: bool = False) -> list[Gpu]:
    """The NVIDIA GPUs the driver reports (empty when there is no driver or it fails).

    The last answer unless ``fresh`` (for the free memory right now)."""
    smi = _smi()
    if smi is None:
        return []
    with _LOCK:
        if not fresh and smi in _GPUS:
            return list(_GPUS[smi])
    found = _ask_driver(smi)
    with _LOCK:
        _GPUS[smi] = found
    return list(found)


def _ask_driver(smi: str) -> list[Gpu]:
    try:
        done = processes.run(
            [smi, "--query-gpu=name,driver_version,memory.free,memory.total", "--format=csv,noheader,nounits"],
            timeout=20,
        )
    except (OSError, processes.SubprocessError):
        return []
    if done.returncode != 0:
        return []
    found = []
    for line in done.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4:
            continue
        try:
            found.append(Gpu(parts[0], parts[1], int(float(parts[2])), int(float(parts[3]))))
        except ValueError:
            continue
    return found


def gpu(fresh: bool = False) -> Gpu | None:
    """The GPU a CUDA session would run on, or None (``fresh``: its free memory now)."""
    found = gpus(fresh)
    index = _device_index()
    return found[index] if index < len(found) else (found[0] if found else None)


def has_cuda_driver_library() -> bool:
    """libcuda (nvcuda.dll on Windows), which every CUDA program needs: the driver's own."""
    names = ["nvcuda.dll"] if sys.platform.startswith("win") else ["libcuda.so.1", "libcuda.so"]
    found = ctypes.util.find_library("cuda")
    if found:
        names.insert(0, found)
    for name in names:
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def driver_description() -> str:
    """A line naming the GPU and driver, or "" when no NVIDIA driver is found (asked once)."""
    smi = _smi()
    with _LOCK:
        if smi in _DRIVERS:
            return _DRIVERS[smi]
    found = gpu()
    if found:
        text = f"{found.name}, driver {found.driver}, {found.total_mb} MiB"
    elif has_cuda_driver_library():  # loading a library starts no program: not kept
        return "an NVIDIA driver (libcuda; nvidia-smi not found)"
    else:
        text = ""
    if smi is not None:
        with _LOCK:
            _DRIVERS[smi] = text
    return text


def driver_known() -> bool:
    """Whether :func:`driver_description` can answer without starting nvidia-smi.

    The GUI asks this first, and has the driver looked up in the background when it cannot."""
    smi = _smi()
    with _LOCK:
        return smi is None or smi in _DRIVERS
