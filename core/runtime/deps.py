"""onnxruntime for QGIS's own Python, without admin rights.

QGIS ships no onnxruntime. We install the pinned wheel into a private folder
of the data home with ``pip install --target --no-deps``: letting pip resolve
dependencies there would pull numpy 2, which would shadow QGIS's numpy and
break GDAL's array bindings. onnxruntime needs nothing beyond numpy for
inference, which QGIS's Python has.
"""

from __future__ import annotations

import csv
import importlib
import os
import platform as _platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from . import home, processes

# -- which onnxruntime for this platform and Python -----------------------------------------
#
# The newest release where its wheel exists and works; older ones where it does not
# (wheel tags read from PyPI, proven by test/runtime/test_onnxruntime_wheels.py):
# - Python 3.9 (QGIS 3.22-3.28 for Windows, QGIS 3.22-3.40 for macOS): 1.19.2, the last
#   release with cp39 wheels.
# - Windows: 1.20.1. From 1.21 on, onnxruntime's Windows binaries need the Visual C++
#   runtime msvcp140.dll 14.40 or newer. QGIS loads the msvcp140.dll of its own install or an
#   older system copy (14.32 has been seen) before any plugin runs, and a DLL already loaded
#   in the process is the one every later library gets: installing Microsoft's newer
#   redistributable would not help while QGIS brings its own, and needs admin rights. 1.20.1
#   imports with the older runtime, so the pin avoids the failure instead of explaining it.
#   (Python 3.14, which 1.20.1 has no wheel for, gets the newest, and the message below.)
# - macOS: 1.24 and later exist for Apple Silicon on macOS 14+ only; 1.23.2 is the last with
#   wheels for Intel Macs and for macOS 13 (and the last for Python 3.10); macOS 11-12 get
#   1.19.2 (macosx_11_0 universal2 wheels), the last before macOS 13 was required.
# - Linux: the newest for Python 3.11+, 1.23.2 for 3.10 (Ubuntu 22.04).
# 1.19 and 1.20 run every model we install; a model with a newer opset gets the "newer
# onnxruntime" answer (core/probability.py).
ONNXRUNTIME_LATEST = "1.32.0"
ONNXRUNTIME_FOR_PYTHON39 = "1.19.2"
ONNXRUNTIME_FOR_WINDOWS = "1.20.1"
ONNXRUNTIME_FOR_MACOS13 = "1.23.2"
VC_REDIST_URL = "https://aka.ms/vs/17/release/vc_redist.x64.exe"


def choose_onnxruntime(platform: str, machine: str, mac_version: str, python: tuple[int, int]) -> str:
    """The onnxruntime release whose wheel installs and imports on this platform and Python."""
    is_mac = platform == "darwin"
    mac = _version_tuple(mac_version) if is_mac and mac_version else (99,)  # unknown: assume recent
    if python < (3, 10) or mac < (13,):
        return ONNXRUNTIME_FOR_PYTHON39
    if platform.startswith("win"):
        return ONNXRUNTIME_FOR_WINDOWS if python <= (3, 13) else ONNXRUNTIME_LATEST
    if python < (3, 11) or (is_mac and (machine == "x86_64" or mac < (14,))):
        return ONNXRUNTIME_FOR_MACOS13
    return ONNXRUNTIME_LATEST


def no_wheel_reason(platform: str, machine: str, mac_version: str, python: tuple[int, int]) -> str:
    """Why no onnxruntime wheel exists for this platform and Python ('' when one does)."""
    if platform != "darwin":
        return ""
    mac = _version_tuple(mac_version) if mac_version else (99,)  # unknown: assume recent
    newest_python = {ONNXRUNTIME_FOR_PYTHON39: (3, 12), ONNXRUNTIME_FOR_MACOS13: (3, 13)}.get(
        choose_onnxruntime(platform, machine, mac_version, python), (9, 9)
    )
    if mac < (11,):
        return f"onnxruntime has no build for macOS {mac_version} (it needs macOS 11 or newer)."
    if python > newest_python:
        return (
            f"onnxruntime has no build for Python {python[0]}.{python[1]} on macOS {mac_version} "
            f"({machine}): use a QGIS with Python {newest_python[0]}.{newest_python[1]} or older, "
            "or a newer macOS."
        )
    return ""


def this_platform() -> tuple[str, str, str, tuple[int, int]]:
    """This computer's facts that decide the onnxruntime wheel: OS, machine, macOS version, Python."""
    return sys.platform, _platform.machine(), _platform.mac_ver()[0], sys.version_info[:2]


ONNXRUNTIME_VERSION = choose_onnxruntime(*this_platform())
# Oldest onnxruntime we accept: the first one that runs opset 21 graphs (1.20), or the pin
# where the pin is older (Python 3.9, macOS 11-12).
ONNXRUNTIME_MINIMUM = min((1, 20), tuple(int(p) for p in ONNXRUNTIME_VERSION.split(".")[:2]))


@dataclass(frozen=True)
class RuntimeStatus:
    available: bool
    version: str = ""
    problem: str = ""
    # False when installing onnxruntime again would not help (its library does not load,
    # and the pinned release is the one installed): the dialogs then offer no install button.
    installable: bool = True


def ensure_on_path(home_dir: Path | None = None) -> bool:
    """Put the private dependency folder FIRST on ``sys.path``.

    That way the onnxruntime we installed wins over an older one elsewhere in QGIS's Python.

    Returns True when the folder was (newly) put first. Called when the plugin loads and
    after an install. An onnxruntime that was already imported stays loaded until QGIS
    restarts: :func:`runtime_status` says so.
    """
    folder = str(home.python_dir(home_dir))
    if not os.path.isdir(folder) or (sys.path and sys.path[0] == folder):
        return False
    while folder in sys.path:
        sys.path.remove(folder)
    sys.path.insert(0, folder)
    importlib.invalidate_caches()
    return True


def python_executable() -> str:
    """The Python interpreter that runs QGIS's Python, for calling pip.

    Inside the QGIS desktop application ``sys.executable`` is QGIS itself or whatever
    ``python3`` comes first on PATH (which may be another Python that cannot import
    qgis), so look where each platform's QGIS keeps its own interpreter.
    """
    return str(
        find_qgis_python(Path(sys.executable), Path(sys.base_prefix), sys.version_info[:2], sys.platform)
        or shutil.which("python3")
        or "python3"
    )


def python_environment(executable: str | None = None) -> dict[str, str]:
    """Variables QGIS's interpreter needs to start (empty almost everywhere).

    A macOS app bundle's bare ``Contents/MacOS/python3.x`` finds its standard library only
    with ``PYTHONHOME`` set to the bundle's Python (``sys.base_prefix``); ``Contents/MacOS/python``,
    preferred, sets that itself."""
    path = Path(executable or python_executable())
    if sys.platform == "darwin" and path.parent.name == "MacOS" and path.name.startswith("python3."):
        return {"PYTHONHOME": sys.base_prefix}
    return {}


def pip_environment(proxy: str = "") -> dict[str, str]:
    """Variables for a pip subprocess: the interpreter's own, and QGIS's proxy.

    ``proxy`` is a URL with the user name and password, if any, before the host; or '' for
    pip's own settings.

    The proxy goes in the environment, not as ``--proxy``: a password on a command line can
    be read by every user of the computer in its process list."""
    extra = python_environment()
    if proxy:
        extra.update({"HTTP_PROXY": proxy, "HTTPS_PROXY": proxy})
    return extra


def find_qgis_python(executable: Path, base_prefix: Path, version: tuple[int, int], platform: str) -> Path | None:
    """QGIS's interpreter from the running Python's own facts (testable with fake folders).

    Linux: ``python3.X`` (this Python's version) in ``<base_prefix>/bin``. Windows
    (OSGeo4W and the standalone installer): ``python3.exe``/``python.exe`` in
    ``<base_prefix>`` (``apps/Python3x``) or the install's ``bin`` (``python-qgis*.bat``
    sets up the environment there). macOS: the app bundle's ``Contents/MacOS/bin/python3``.
    ``executable`` (``sys.executable``) itself is never trusted: inside QGIS it is QGIS or
    the first ``python3`` on PATH.
    """
    major, minor = version
    if platform.startswith("win"):
        names = ["python3.exe", "python.exe"]
        install = base_prefix.parent.parent  # <install>/apps/Python3x -> <install>
        folders = [base_prefix, install / "bin", executable.parent]
    elif platform == "darwin":
        return _find_bundle_python(executable, base_prefix, version)
    else:
        names = [f"python{major}.{minor}", f"python{major}"]
        folders = [base_prefix / "bin"]
    for folder in folders:
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None


def _find_bundle_python(executable: Path, base_prefix: Path, version: tuple[int, int]) -> Path | None:
    """macOS: the interpreter of the QGIS app bundle that runs this Python.

    QGIS 3.22-3.40 (QGIS-Mac-Packager, Python 3.9): ``Contents/MacOS/bin/python3``. QGIS 3.44
    and 4 (vcpkg bundles, Python 3.12): ``Contents/MacOS/python``, which starts with the
    bundle's standard library; beside it ``python3.12``, which needs ``PYTHONHOME``
    (:func:`python_environment`), so it comes last. Outside a bundle (MacPorts, Homebrew,
    conda): ``<base_prefix>/bin``."""
    major, minor = version
    bundle = next((p for p in [executable, *executable.parents] if p.suffix == ".app"), None)
    macos = bundle / "Contents" / "MacOS" if bundle else None
    candidates = (
        [macos / "python", macos / "bin" / "python3", macos / "bin" / f"python{major}.{minor}"] if macos else []
    )
    candidates += [base_prefix / "bin" / f"python{major}.{minor}", base_prefix / "bin" / "python3"]
    candidates += [macos / f"python{major}.{minor}"] if macos else []
    return next((path for path in candidates if path.is_file()), None)


def install_command(target: Path | None = None) -> list[str]:
    """The exact command that installs onnxruntime for QGIS's Python."""
    folder = target or home.python_dir()
    return [
        python_executable(),
        "-m",
        "pip",
        "install",
        "--upgrade",
        "--no-deps",
        "--target",
        str(folder),
        f"onnxruntime=={ONNXRUNTIME_VERSION}",
    ]


def shown_command(args: list[str]) -> str:
    """A command as the user would paste it into this platform's shell.

    Quoted, with the variables the interpreter needs; never the proxy password."""
    return processes.shell_text(args, env=python_environment(args[0]))


def install_onnxruntime(target: Path | None = None, proxy: str = "") -> RuntimeStatus:
    """Install the pinned onnxruntime into the private folder (no-op when present)."""
    folder = target or home.python_dir()
    if installed_version(folder) == ONNXRUNTIME_VERSION and runtime_files_complete(folder):
        return RuntimeStatus(True, ONNXRUNTIME_VERSION)
    missing = no_wheel_reason(*this_platform())
    if missing:
        return RuntimeStatus(False, problem=missing, installable=False)
    folder.mkdir(parents=True, exist_ok=True)
    done = processes.run(install_command(folder), env=processes.environment(pip_environment(proxy)))
    if done.returncode != 0:
        return RuntimeStatus(False, problem=f"pip failed: {done.stderr.strip()[-2000:]}")
    return RuntimeStatus(True, installed_version(folder))


def installed_version(folder: Path) -> str:
    """Version of onnxruntime in ``folder`` read from its dist-info, without importing it."""
    for info in sorted(folder.glob("onnxruntime-*.dist-info")):
        return info.name[len("onnxruntime-") : -len(".dist-info")]
    return ""


def runtime_files_complete(folder: Path) -> bool:
    """Whether every file of the onnxruntime package pip recorded is there with its size.

    An interrupted install or a deleted folder leaves the dist-info behind: by its version
    alone setup said "ready" and never repaired it (a truncated library even crashes QGIS when
    it loads). Sizes only: cheap enough for every setup, and what a cut-off copy changes."""
    for info in sorted(folder.glob("onnxruntime-*.dist-info")):
        try:
            lines = (info / "RECORD").read_text(encoding="utf-8").splitlines()
        except OSError:
            return (folder / "onnxruntime" / "__init__.py").is_file()
        for entry in csv.reader(lines):  # path, sha256=..., size
            path, size = (entry[0], entry[-1]) if len(entry) == 3 else ("", "")
            if not path.startswith("onnxruntime/") or not size.isdigit():
                continue
            try:
                if (folder / path).stat().st_size != int(size):
                    return False
            except OSError:
                return False
        return True
    return False


def runtime_status(home_dir: Path | None = None) -> RuntimeStatus:
    """Whether onnxruntime imports here, its version, and what to do when it does not.

    An onnxruntime imported before ours was installed (or put first on the path) stays
    loaded until QGIS restarts: then the message says that a restart picks up ours.
    """
    installed = installed_version(home.python_dir(home_dir))
    try:
        ort = importlib.import_module("onnxruntime")
    except ImportError as err:
        if _library_failed(err):
            return _load_failure(err, installed)
        missing = no_wheel_reason(*this_platform())
        if missing:
            return RuntimeStatus(
                False, problem=f"onnxruntime is not installed for QGIS's Python, and {missing}", installable=False
            )
        return RuntimeStatus(
            False,
            problem=(
                f"onnxruntime is not installed for QGIS's Python ({err}). Install it with Raster > Cloud Mask "
                "Improver > Manage models… > Install onnxruntime, or run: " + shown_command(install_command())
            ),
        )
    version = getattr(ort, "__version__", "0")
    restart = f"Restart QGIS to use {installed}, installed for the plugin" if installed and version != installed else ""
    if _version_tuple(version) < ONNXRUNTIME_MINIMUM:
        upgrade = "upgrade it with: " + shown_command(install_command())
        return RuntimeStatus(
            False,
            version,
            (
                f"onnxruntime {version} is too old (need {'.'.join(map(str, ONNXRUNTIME_MINIMUM))} or newer). "
                + (f"{restart}, or {upgrade}" if restart else upgrade[0].upper() + upgrade[1:])
            ),
        )
    return RuntimeStatus(True, version, f"onnxruntime {version} is loaded. {restart}." if restart else "")


# What Python says when onnxruntime's files are there but its native library does not load.
_LIBRARY_FAILURES = (
    "DLL load failed",
    "initialization routine failed",
    "cannot open shared object file",
    "Library not loaded",
    "incompatible architecture",
    "undefined symbol",
)


def _library_failed(err: ImportError) -> bool:
    """Whether onnxruntime is there but its native module (``onnxruntime.capi...``) failed to load.

    As opposed to onnxruntime not being installed at all."""
    if isinstance(err, ModuleNotFoundError) and err.name == "onnxruntime":
        return False
    text = str(err)
    return (err.name or "").startswith("onnxruntime.") or any(sign in text for sign in _LIBRARY_FAILURES)


def _load_failure(err: ImportError, installed: str) -> RuntimeStatus:
    """What a library that does not load means, and the fix.

    Never "install it" when that is what is already there (installing again would fail the same way)."""
    detail = str(err).splitlines()[0][:300] if str(err) else type(err).__name__
    version = installed or "here"
    if installed and installed != ONNXRUNTIME_VERSION:
        return RuntimeStatus(
            False,
            installed,
            (
                f"onnxruntime {installed} is installed but its library does not load on this computer ({detail}). "
                f"Install onnxruntime {ONNXRUNTIME_VERSION}, the version for this system, with Raster > Cloud Mask "
                "Improver > Manage models… > Install onnxruntime, then restart QGIS."
            ),
        )
    if sys.platform.startswith("win"):
        return RuntimeStatus(
            False,
            installed,
            (
                f"onnxruntime {version} is installed but Windows could not load its library ({detail}). "
                "This happens when the Microsoft Visual C++ runtime that QGIS loads is older than onnxruntime "
                "needs. Install the latest Microsoft Visual C++ Redistributable (x64) from "
                f"{VC_REDIST_URL}, then restart QGIS. Installing onnxruntime again does not help."
            ),
            installable=False,
        )
    return RuntimeStatus(
        False,
        installed,
        (
            f"onnxruntime {version} is installed but its library could not be loaded ({detail}). Its files in "
            f"{home.python_dir()} may be damaged or made for another system: delete that folder, restart QGIS "
            "and install onnxruntime again."
        ),
        installable=False,
    )


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


# -- GPU support: onnxruntime-gpu with NVIDIA's CUDA and cuDNN libraries from pip ----------
#
# onnxruntime-gpu 1.31.1 is the CUDA 13 build that ran the ukis networks on an H200 (DESIGN §7).
# Its extras "cuda" and "cudnn" name NVIDIA's pip packages of the CUDA 13 runtime libraries and
# cuDNN 9, so no system CUDA is needed: ``onnxruntime.preload_dlls()`` loads them from the
# folder beside the onnxruntime package, which is the private folder here.
#
# It is installed in two pip calls into a staging folder next to the private one: the wheel
# without its dependencies (numpy 2 must not land there, see above), then the requirements of
# its two extras, which are NVIDIA library packages only (their own dependencies are NVIDIA
# packages too). Only onnxruntime and NVIDIA entries are moved from the staging folder into the
# private one, so nothing else can slip in; the old runtime is moved aside first and deleted
# after. A failed install leaves the runtime that was there untouched.
ONNXRUNTIME_GPU_VERSION = "1.31.1"
GPU_EXTRAS = ("cuda", "cudnn")
# Wheels of onnxruntime-gpu 1.31.1 exist for CPython 3.11 to 3.14 on 64-bit Linux and Windows.
GPU_PYTHON_MINIMUM = (3, 11)
GPU_MACHINES = {"linux": ("x86_64", "aarch64"), "win32": ("AMD64",)}
# About 1.5 GB of downloads (onnxruntime-gpu 0.25, cuDNN 0.5, cuBLAS 0.4, cuFFT, cuRAND, NVRTC,
# nvJitLink), which unpack to roughly twice that; the CPU runtime is deleted only afterwards.
GPU_DISK_BYTES = 5 * 10**9
_RUNTIME_PREFIXES = ("onnxruntime", "nvidia")


@dataclass(frozen=True)
class InstalledRuntime:
    """Which onnxruntime the private folder holds, read from its files (without importing it)."""

    kind: str = ""  # "gpu", "cpu" or "" (none)
    version: str = ""


def installed_runtime(folder: Path | None = None) -> InstalledRuntime:
    folder = folder or home.python_dir()
    for info in sorted(folder.glob("onnxruntime_gpu-*.dist-info")):
        return InstalledRuntime("gpu", info.name[len("onnxruntime_gpu-") : -len(".dist-info")])
    version = installed_version(folder)
    return InstalledRuntime("cpu", version) if version else InstalledRuntime()


def gpu_install_problems(folder: Path | None = None) -> list[str]:
    """Why GPU support cannot be installed here, in words a user can act on (empty: it can)."""
    from . import gpu

    folder = folder or home.python_dir()
    problems = []
    machines = next((m for p, m in GPU_MACHINES.items() if sys.platform.startswith(p)), ())
    import platform

    if platform.machine() not in machines:
        problems.append(
            f"GPU support (onnxruntime-gpu with CUDA) exists for 64-bit Linux and Windows "
            f"only, not for {sys.platform} on {platform.machine()}."
        )
    if sys.version_info[:2] < GPU_PYTHON_MINIMUM:
        problems.append(
            f"onnxruntime-gpu {ONNXRUNTIME_GPU_VERSION} needs Python "
            f"{'.'.join(map(str, GPU_PYTHON_MINIMUM))} or newer; QGIS runs Python "
            f"{sys.version_info.major}.{sys.version_info.minor}. Use a newer QGIS "
            "(3.30 or later on Windows)."
        )
    if not gpu.driver_description():
        problems.append(
            "No NVIDIA driver was found (neither nvidia-smi nor libcuda): GPU support needs an "
            "NVIDIA graphics card with its driver installed (version 580 or newer for CUDA 13)."
        )
    free = _free_bytes(folder)
    if free < GPU_DISK_BYTES:
        problems.append(
            f"Not enough disk space: GPU support needs about {GPU_DISK_BYTES / 1e9:.0f} GB free "
            f"beside {folder}, and there are {free / 1e9:.1f} GB."
        )
    return problems


def _free_bytes(folder: Path) -> int:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def _pip(args: list[str], index_url: str | None, proxy: str = "") -> processes.CompletedProcess:
    command = [python_executable(), "-m", "pip", "install", "--disable-pip-version-check", *args]
    if index_url:
        command[4:4] = ["--index-url", index_url]
    return processes.run(command, env=processes.environment(pip_environment(proxy)))


def extra_requirements(dist_info: Path, extras: tuple[str, ...] = GPU_EXTRAS) -> list[str]:
    """The requirements a wheel lists for ``extras`` (e.g. ``onnxruntime-gpu[cuda,cudnn]``)."""
    wanted = []
    for line in (dist_info / "METADATA").read_text(encoding="utf-8").splitlines():
        if not line.startswith("Requires-Dist:") or ";" not in line:
            continue
        requirement, marker = line[len("Requires-Dist:") :].split(";", 1)
        marker = marker.replace("'", '"').replace(" ", "")
        if any(marker == f'extra=="{extra}"' for extra in extras):
            wanted.append(requirement.strip())
    return wanted


def install_gpu_runtime(
    target: Path | None = None, index_url: str | None = None, log=lambda _text: None, proxy: str = ""
) -> RuntimeStatus:
    """Replace the private folder's onnxruntime by onnxruntime-gpu with CUDA and cuDNN.

    Checks first (64-bit Linux/Windows, Python, NVIDIA driver, disk) and says plainly what is
    missing. ``index_url``: another package index (tests serve one on 127.0.0.1)."""
    folder = target or home.python_dir()
    current = installed_runtime(folder)
    if current == InstalledRuntime("gpu", ONNXRUNTIME_GPU_VERSION) and (folder / "nvidia").is_dir():
        return RuntimeStatus(True, ONNXRUNTIME_GPU_VERSION)
    problems = gpu_install_problems(folder)
    if problems:
        return RuntimeStatus(False, problem="GPU support cannot be installed: " + " ".join(problems))
    staging = _staging(folder)
    try:
        log(f"Downloading onnxruntime-gpu {ONNXRUNTIME_GPU_VERSION} (about 250 MB)…")
        done = _pip(
            ["--no-deps", "--target", str(staging), f"onnxruntime-gpu=={ONNXRUNTIME_GPU_VERSION}"], index_url, proxy
        )
        if done.returncode != 0:
            return RuntimeStatus(False, problem=f"pip could not install onnxruntime-gpu: {done.stderr.strip()[-2000:]}")
        info = next(staging.glob("onnxruntime_gpu-*.dist-info"))
        libraries = extra_requirements(info)
        log(f"Downloading NVIDIA's CUDA and cuDNN libraries (about 1.3 GB): {', '.join(libraries)}…")
        done = _pip(["--target", str(staging), *libraries], index_url, proxy)
        if done.returncode != 0:
            return RuntimeStatus(
                False, problem=f"pip could not install the CUDA libraries: {done.stderr.strip()[-2000:]}"
            )
        _swap_runtime(staging, folder)
    except OSError as err:
        return RuntimeStatus(
            False, problem=f"Could not put GPU support in place in {folder}: {err}. Restart QGIS and try again."
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return RuntimeStatus(True, installed_runtime(folder).version)


def install_cpu_runtime(
    target: Path | None = None, index_url: str | None = None, log=lambda _text: None, proxy: str = ""
) -> RuntimeStatus:
    """Back to the CPU: the pinned onnxruntime replaces onnxruntime-gpu and its NVIDIA libraries."""
    folder = target or home.python_dir()
    if installed_runtime(folder) == InstalledRuntime("cpu", ONNXRUNTIME_VERSION) and not (folder / "nvidia").exists():
        return RuntimeStatus(True, ONNXRUNTIME_VERSION)
    staging = _staging(folder)
    try:
        log(f"Downloading onnxruntime {ONNXRUNTIME_VERSION}…")
        done = _pip(["--no-deps", "--target", str(staging), f"onnxruntime=={ONNXRUNTIME_VERSION}"], index_url, proxy)
        if done.returncode != 0:
            return RuntimeStatus(False, problem=f"pip failed: {done.stderr.strip()[-2000:]}")
        _swap_runtime(staging, folder)
    except OSError as err:
        return RuntimeStatus(
            False, problem=f"Could not put onnxruntime in place in {folder}: {err}. Restart QGIS and try again."
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return RuntimeStatus(True, installed_runtime(folder).version)


def _staging(folder: Path) -> Path:
    staging = folder.parent / f"{folder.name}-staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def _runtime_entries(folder: Path) -> list[Path]:
    """onnxruntime and NVIDIA's library packages (and their dist-info) in ``folder``."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.lower().startswith(_RUNTIME_PREFIXES))


def _swap_runtime(staging: Path, folder: Path) -> None:
    """Move the old runtime aside, the new one in, then delete the old one.

    Renaming works even for a library that the running QGIS has loaded (Windows refuses to
    delete one, not to rename it); what cannot be deleted now is deleted by the next switch.
    If a move fails, what was moved is put back, so the old runtime stays whole."""
    folder.mkdir(parents=True, exist_ok=True)
    old = folder.parent / f"{folder.name}-previous"
    shutil.rmtree(old, ignore_errors=True)
    old.mkdir(exist_ok=True)
    moved_out, moved_in = [], []
    try:
        for entry in _runtime_entries(folder):
            entry.rename(old / entry.name)
            moved_out.append(entry.name)
        for entry in _runtime_entries(staging):
            entry.rename(folder / entry.name)
            moved_in.append(entry.name)
    except OSError:
        for name in moved_in:
            (folder / name).rename(staging / name)
        for name in moved_out:
            (old / name).rename(folder / name)
        raise
    finally:
        importlib.invalidate_caches()
    shutil.rmtree(old, ignore_errors=True)
