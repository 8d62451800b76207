"""Fake wheels and a fake ``nvidia-smi``: GPU support's install path tested with the real pip.

The wheels are named as onnxruntime-gpu, NVIDIA's CUDA libraries and onnxruntime, served
by a package index on 127.0.0.1; nothing real is downloaded. The index also serves a
numpy, a sympy and a flatbuffers that must never land in the private folder (numpy 2
there would shadow QGIS's numpy and break GDAL)."""

import base64
import hashlib
import http.server
import os
import threading
import zipfile
from functools import partial

import pytest

from cloud_mask_improver.core.runtime import deps

GPU_VERSION, CPU_VERSION = deps.ONNXRUNTIME_GPU_VERSION, deps.ONNXRUNTIME_VERSION


def wheel(folder, name: str, version: str, files: dict[str, str], requires: list[str] = ()) -> None:
    """A minimal valid wheel, in the index's folder for its project."""
    dist = f"{name.replace('-', '_')}-{version}"
    project = folder / name.lower().replace("_", "-")
    project.mkdir(parents=True, exist_ok=True)
    info = f"{dist}.dist-info"
    contents = dict(files)
    contents[f"{info}/METADATA"] = (
        "\n".join(
            ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
            + [f"Requires-Dist: {r}" for r in requires]
        )
        + "\n"
    )
    contents[f"{info}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = []
    for path, text in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    contents[f"{info}/RECORD"] = "\n".join(record + [f"{info}/RECORD,,"]) + "\n"
    with zipfile.ZipFile(project / f"{dist}-py3-none-any.whl", "w") as whl:
        for path, text in contents.items():
            whl.writestr(path, text)


def build_index(root, with_cudnn: bool = True) -> None:
    ort_init = "__version__ = '{}'\n\ndef get_available_providers():\n    return {}\n"
    wheel(
        root,
        "onnxruntime-gpu",
        GPU_VERSION,
        {"onnxruntime/__init__.py": ort_init.format(GPU_VERSION, ["CUDAExecutionProvider", "CPUExecutionProvider"])},
        [
            "flatbuffers",
            "numpy>=1.21.6",
            'nvidia-cuda-runtime~=13.0; extra == "cuda"',
            'nvidia-cudnn-cu13~=9.0; extra == "cudnn"',
            'sympy; extra == "symbolic"',
        ],
    )
    wheel(
        root,
        "onnxruntime",
        CPU_VERSION,
        {"onnxruntime/__init__.py": ort_init.format(CPU_VERSION, ["CPUExecutionProvider"])},
        ["numpy>=1.21.6"],
    )
    wheel(root, "nvidia-cuda-runtime", "13.0.96", {"nvidia/cu13/lib/libcudart.so.13": "fake"})
    if with_cudnn:
        wheel(root, "nvidia-cudnn-cu13", "9.13.0.50", {"nvidia/cudnn/lib/libcudnn.so.9": "fake"}, ["nvidia-cublas"])
    wheel(root, "nvidia-cublas", "13.0.2.14", {"nvidia/cu13/lib/libcublas.so.13": "fake"})
    for trap in ("numpy", "sympy", "flatbuffers"):  # must never be installed
        wheel(root, trap, "99.0.0", {f"{trap}/__init__.py": "raise ImportError('the wrong one')\n"})


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def index(tmp_path, monkeypatch):
    """A package index on 127.0.0.1; pip sees only it (no user config, no cache)."""
    root = tmp_path / "index"
    build_index(root)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    monkeypatch.setenv("PIP_NO_INPUT", "1")
    server.root = root
    yield f"http://127.0.0.1:{server.server_address[1]}/", server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def nvidia_driver(tmp_path, monkeypatch):
    """An NVIDIA driver as far as the checks can tell: nvidia-smi on PATH."""
    folder = tmp_path / "bin"
    folder.mkdir()
    smi = folder / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA H200, 580.159.03, 140000, 143771'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
