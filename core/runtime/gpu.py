"""What this computer's NVIDIA GPU offers, asked of the driver itself.

No CUDA toolkit, no torch, no NVML binding: ``nvidia-smi`` ships with every
NVIDIA driver (Linux and Windows), so it is the one question that works before
GPU support is installed (the installer's check) and after (the memory check
before a CUDA run). Every function answers "nothing" rather than raising: a
missing or broken driver means "run on the CPU", never a failed run.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

# Windows drivers put nvidia-smi here, not always on PATH.
_WINDOWS_SMI = os.path.join(os.environ.get("SystemRoot", r"C:\Windows"), "System32", "nvidia-smi.exe")


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


def gpus() -> list[Gpu]:
    """The NVIDIA GPUs the driver reports (empty when there is no driver or it fails)."""
    smi = _smi()
    if smi is None:
        return []
    try:
        # Bandit B603 is no risk here: fixed argument list (the driver's nvidia-smi, found on PATH), no shell
        done = subprocess.run([smi, "--query-gpu=name,driver_version,memory.free,memory.total",  # nosec B603
                               "--format=csv,noheader,nounits"], capture_output=True, text=True,
                              timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
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


def gpu() -> Gpu | None:
    """The GPU a CUDA session would run on, or None."""
    found = gpus()
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
    """A line naming the GPU and driver, or "" when no NVIDIA driver is found."""
    found = gpu()
    if found:
        return f"{found.name}, driver {found.driver}, {found.free_mb} of {found.total_mb} MiB free"
    if has_cuda_driver_library():
        return "an NVIDIA driver (libcuda; nvidia-smi not found)"
    return ""
