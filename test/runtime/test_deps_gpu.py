"""Installing GPU support (and going back to the CPU) into the private dependency folder.

The real pip runs against a package index served here on 127.0.0.1 with small fake
wheels named as the real ones (see fake_wheels.py), so nothing real is downloaded.
"""

import shutil
import subprocess
import sys
from collections import namedtuple

import pytest

from cloud_mask_improver.core.runtime import deps, gpu

pytestmark = pytest.mark.slow  # left out of make test-fast

pytest_plugins = ["fake_wheels"]  # its fixtures: index, nvidia_driver
GPU_VERSION, CPU_VERSION = deps.ONNXRUNTIME_GPU_VERSION, deps.ONNXRUNTIME_VERSION


def imported_version(folder) -> str:
    """What ``import onnxruntime`` gives a fresh Python with only this folder added."""
    code = f"import sys; sys.path.insert(0, {str(folder)!r}); import onnxruntime; print(onnxruntime.__version__)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def runtime_files(folder) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_gpu_support_replaces_the_cpu_runtime_and_back(tmp_path, index, nvidia_driver):
    url, _ = index
    folder = tmp_path / "home" / "python"
    assert deps.install_cpu_runtime(folder, url).available
    assert deps.installed_runtime(folder) == deps.InstalledRuntime("cpu", CPU_VERSION)

    said = []
    status = deps.install_gpu_runtime(folder, url, log=said.append)
    assert status.available, status.problem
    assert status.version == GPU_VERSION
    assert deps.installed_runtime(folder) == deps.InstalledRuntime("gpu", GPU_VERSION)
    files = runtime_files(folder)
    # The libraries of both extras, and what they need in turn (cuDNN needs cuBLAS), beside onnxruntime:
    # where onnxruntime.preload_dlls() looks for them.
    assert {
        "nvidia/cu13/lib/libcudart.so.13",
        "nvidia/cudnn/lib/libcudnn.so.9",
        "nvidia/cu13/lib/libcublas.so.13",
        "onnxruntime/__init__.py",
    } <= files
    # Only one onnxruntime, and none of onnxruntime's other dependencies.
    assert not any(f.startswith((f"onnxruntime-{CPU_VERSION}", "numpy", "sympy", "flatbuffers")) for f in files), files
    assert imported_version(folder) == GPU_VERSION
    assert sorted(p.name for p in folder.parent.iterdir()) == ["python"]  # no staging folder left behind
    assert any("onnxruntime-gpu" in line for line in said)

    assert deps.install_gpu_runtime(folder, "http://127.0.0.1:9/").available  # installed: nothing to fetch

    status = deps.install_cpu_runtime(folder, url)
    assert status.available and status.version == CPU_VERSION
    assert deps.installed_runtime(folder) == deps.InstalledRuntime("cpu", CPU_VERSION)
    assert not (folder / "nvidia").exists()
    assert not any(f.startswith("onnxruntime_gpu") for f in runtime_files(folder))
    assert imported_version(folder) == CPU_VERSION


def test_a_failed_gpu_install_keeps_the_cpu_runtime(tmp_path, index, nvidia_driver):
    url, server = index
    folder = tmp_path / "home" / "python"
    assert deps.install_cpu_runtime(folder, url).available
    before = runtime_files(folder)
    shutil.rmtree(server.root / "nvidia-cudnn-cu13")  # the index lacks cuDNN: the second pip call fails
    status = deps.install_gpu_runtime(folder, url)
    assert not status.available
    assert "CUDA libraries" in status.problem and "nvidia-cudnn-cu13" in status.problem
    assert runtime_files(folder) == before
    assert imported_version(folder) == CPU_VERSION
    assert sorted(p.name for p in folder.parent.iterdir()) == ["python"]


def test_without_an_nvidia_driver_nothing_is_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    monkeypatch.setattr(gpu, "has_cuda_driver_library", lambda: False)
    folder = tmp_path / "python"
    status = deps.install_gpu_runtime(folder, "http://127.0.0.1:9/")  # nothing listens there
    assert not status.available
    assert status.problem.startswith("GPU support cannot be installed:")
    assert "No NVIDIA driver was found" in status.problem
    assert not folder.exists()


def test_the_checks_name_what_is_missing(tmp_path, nvidia_driver, monkeypatch):
    folder = tmp_path / "python"
    assert deps.gpu_install_problems(folder) == []
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(deps.shutil, "disk_usage", lambda _path: usage(10**11, 10**11 - 2 * 10**9, 2 * 10**9))
    monkeypatch.setattr(deps, "GPU_PYTHON_MINIMUM", (sys.version_info.major, sys.version_info.minor + 1))
    problems = deps.gpu_install_problems(folder)
    assert len(problems) == 2
    assert "Not enough disk space" in problems[1] and "2.0 GB" in problems[1] and "5 GB" in problems[1]
    assert "needs Python" in problems[0] and "QGIS runs Python" in problems[0]


def test_extra_requirements_reads_the_wheels_extras(tmp_path):
    info = tmp_path / "x.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Name: onnxruntime-gpu\nRequires-Dist: numpy>=1.21.6\n"
        'Requires-Dist: nvidia-cuda-nvrtc~=13.0; extra == "cuda"\n'
        "Requires-Dist: nvidia-cudnn-cu13~=9.0 ; extra == 'cudnn'\n"
        'Requires-Dist: sympy; extra == "symbolic"\n'
    )
    assert deps.extra_requirements(info) == ["nvidia-cuda-nvrtc~=13.0", "nvidia-cudnn-cu13~=9.0"]


def test_setup_keeps_gpu_support_unless_told(tmp_path, monkeypatch):
    """``make setup`` after ``make setup GPU=1`` must not silently go back to the CPU."""
    import importlib.util
    from pathlib import Path

    scripts = Path(__file__).resolve().parents[2] / "scripts"
    monkeypatch.syspath_prepend(str(scripts))  # install.py imports its neighbours, as when run
    spec = importlib.util.spec_from_file_location("_install_script", scripts / "install.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setenv("CLOUDMASK_HOME", str(tmp_path))
    info = tmp_path / "python" / f"onnxruntime_gpu-{GPU_VERSION}.dist-info"
    info.mkdir(parents=True)
    called = []
    monkeypatch.setattr(script.deps, "install_onnxruntime", lambda *a, **k: called.append("cpu"))
    status = script.install_runtime("")
    assert status.available and status.version == GPU_VERSION and called == []
    assert "GPU=1" in script.install_runtime("yes").problem


def test_setup_repairs_an_onnxruntime_whose_files_are_gone_or_cut_short(tmp_path, index, monkeypatch):
    """An interrupted install or a deleted package folder leaves the dist-info; setup repairs it.

    Setup (which calls install_onnxruntime) must not say ready by the version alone."""
    url, _ = index
    monkeypatch.setenv("PIP_INDEX_URL", url)
    folder = tmp_path / "home" / "python"
    assert deps.install_onnxruntime(folder).available
    package = folder / "onnxruntime" / "__init__.py"
    assert imported_version(folder) == CPU_VERSION
    assert deps.runtime_files_complete(folder)

    package.write_text(package.read_text()[:10])  # cut short (a truncated library crashes QGIS)
    assert not deps.runtime_files_complete(folder)
    assert deps.install_onnxruntime(folder).available
    assert imported_version(folder) == CPU_VERSION

    shutil.rmtree(folder / "onnxruntime")  # the package gone, its dist-info left
    assert deps.install_onnxruntime(folder).available
    assert imported_version(folder) == CPU_VERSION
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/")  # whole again: nothing to fetch
    assert deps.install_onnxruntime(folder).available
