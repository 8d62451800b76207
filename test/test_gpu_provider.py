"""Where a run goes (EXECUTION_PROVIDER auto/cuda/cpu) and that the GPU never fails a run.

There is no GPU here, so the GPU is played by fakes at the two places the plugin asks
about it: ``nvidia-smi`` (a script on PATH that answers like the driver's) and
onnxruntime's CUDA provider (a stand-in ``onnxruntime`` whose sessions run on the real
CPU provider, and which can be told to fail where a real GPU fails: creating the
session, loading the CUDA libraries, the first batch). The runs themselves are real
pipeline runs on a small raster, compared with a plain CPU run.
"""

import os
import stat
import types

import numpy as np
import onnxruntime
import pytest
from rasters import random_scene, read, write_raster

from cloud_mask_improver.core import inference, pipeline
from cloud_mask_improver.core.modelstore.cards import parse_card
from cloud_mask_improver.core.runtime import gpu

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


@pytest.fixture
def raster(tmp_path):
    # 14 tiles per tile row of the 64 px grid: more than a CPU batch (4) holds.
    return write_raster(tmp_path / "s2.tif", random_scene(150, 700))


@pytest.fixture(autouse=True)
def fresh_sessions(monkeypatch):
    """Each test starts with no cached session and no remembered GPU failure."""
    monkeypatch.setattr(inference, "_SESSIONS", {})
    monkeypatch.setattr(inference, "_CUDA_FAILED", {})


def fake_nvidia_smi(folder, monkeypatch, free_mb: int = 140000, total_mb: int = 143771):
    """An ``nvidia-smi`` on PATH that answers the memory query as an H200's driver does."""
    folder.mkdir(exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\necho 'NVIDIA H200, 580.159.03, {free_mb}, {total_mb}'\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


def no_nvidia(monkeypatch, tmp_path):
    """No driver: nvidia-smi not on PATH, libcuda not loadable."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setattr(gpu, "has_cuda_driver_library", lambda: False)


class FakeCudaOrt:
    """onnxruntime as onnxruntime-gpu on a working (or failing) GPU.

    The arithmetic is the real CPU provider's. ``fail``: "" (works), "create", "libraries" or
    "first-batch"."""

    def __init__(self, fail: str = ""):
        self.fail = fail
        self.events: list[str] = []
        self.batches: dict[str, list[int]] = {"cuda": [], "cpu": []}
        for name in ("SessionOptions", "ExecutionMode", "GraphOptimizationLevel", "__version__"):
            setattr(self, name, getattr(onnxruntime, name))

    def get_available_providers(self):
        return [CUDA, CPU]

    def preload_dlls(self):
        self.events.append("preload")
        if self.fail == "libraries":
            print("Failed to load libcudnn.so.9: cannot open shared object file")

    def InferenceSession(self, path, sess_options=None, providers=()):  # onnxruntime's name
        on_gpu = CUDA in providers and self.fail != "libraries"
        self.events.append("cuda-session" if CUDA in providers else "cpu-session")
        if on_gpu and self.fail == "create":
            raise RuntimeError("CUDA failure 100: no CUDA-capable device is detected")
        real = onnxruntime.InferenceSession(path, sess_options=sess_options, providers=[CPU])
        fake = self

        class Session:
            def get_inputs(self):
                return real.get_inputs()

            def get_outputs(self):
                return real.get_outputs()

            def get_providers(self):
                return [CUDA, CPU] if on_gpu else [CPU]

            def run(self, names, feeds):
                batch = len(next(iter(feeds.values())))
                fake.batches["cuda" if on_gpu else "cpu"].append(batch)
                if on_gpu and fake.fail == "first-batch":
                    raise RuntimeError("CUDA error: out of memory")
                return real.run(names, feeds)

        return Session()


def use(monkeypatch, fake) -> None:
    monkeypatch.setattr(inference, "_ort", lambda: fake)


def probabilities(tmp_path, raster, model, provider: str, name: str):
    out = tmp_path / f"{name}.tif"
    request = pipeline.ProbabilityRequest(raster, [str(model)], provider=provider)
    report = pipeline.probabilities(request, pipeline.ProbabilityOutputs(cloud=str(out)))
    return read(out), report


def cpu_reference(tmp_path, raster, model):
    return probabilities(tmp_path, raster, model, "cpu", "reference")[0]


@pytest.mark.parametrize("choice", ["auto", "cuda"])
def test_gpu_runs_with_large_batches_after_preloading_the_cuda_libraries(
    tmp_path, raster, tiny_model, monkeypatch, choice
):
    reference = cpu_reference(tmp_path, raster, tiny_model)
    fake_nvidia_smi(tmp_path / "bin", monkeypatch)
    fake = FakeCudaOrt()
    use(monkeypatch, fake)
    result, report = probabilities(tmp_path, raster, tiny_model, choice, "gpu")
    assert fake.events[:2] == ["preload", "cuda-session"]
    assert "Running on the GPU (NVIDIA H200), 64 tiles per batch." in report.notes
    # The whole tile row (14 tiles) in one call, not CPU batches of 4, padded to the batch
    # the GPU was sized for: cuDNN sees one input shape only.
    assert set(fake.batches["cuda"]) == {64} and fake.batches["cpu"] == []
    np.testing.assert_array_equal(result, reference)


def test_cpu_choice_never_touches_the_gpu(tmp_path, raster, tiny_model, monkeypatch):
    fake_nvidia_smi(tmp_path / "bin", monkeypatch)
    fake = FakeCudaOrt()
    use(monkeypatch, fake)
    _, report = probabilities(tmp_path, raster, tiny_model, "cpu", "cpu")
    assert fake.events == ["cpu-session"]
    assert max(fake.batches["cpu"]) == inference.CPU_BATCH
    assert not any("GPU" in n for n in report.notes)


@pytest.mark.parametrize(
    "fail, said",
    [
        ("create", "the GPU could not load 'tiny-test' (CUDA failure 100: no CUDA-capable device is detected)"),
        ("libraries", "the CUDA libraries could not be loaded (Failed to load libcudnn.so.9"),
        ("first-batch", "The GPU failed on the first batch (CUDA error: out of memory); finished on the CPU."),
    ],
)
def test_a_gpu_failure_finishes_on_the_cpu_and_says_why(tmp_path, raster, tiny_model, monkeypatch, fail, said):
    reference = cpu_reference(tmp_path, raster, tiny_model)
    fake_nvidia_smi(tmp_path / "bin", monkeypatch)
    fake = FakeCudaOrt(fail)
    use(monkeypatch, fake)
    result, report = probabilities(tmp_path, raster, tiny_model, "auto", "fallback")
    assert any(said in note for note in report.notes), report.notes
    if fail != "first-batch":  # there the run did start on the GPU, and the log says both
        assert not any(note.startswith("Running on the GPU") for note in report.notes), report.notes
    np.testing.assert_array_equal(result, reference)
    # On the CPU the batches are CPU-sized, whatever size the GPU was given.
    assert fake.batches["cpu"] and max(fake.batches["cpu"]) <= inference.CPU_BATCH

    # The next run goes straight to the CPU (no second try on a GPU that failed), and says why.
    fake.events.clear()
    _, again = probabilities(tmp_path, raster, tiny_model, "auto", "again")
    assert "cuda-session" not in fake.events
    assert any("CPU" in note for note in again.notes)


def test_too_little_gpu_memory_runs_on_the_cpu(tmp_path, raster, tiny_model, monkeypatch):
    fake_nvidia_smi(tmp_path / "bin", monkeypatch, free_mb=600, total_mb=4096)
    fake = FakeCudaOrt()
    use(monkeypatch, fake)
    _, report = probabilities(tmp_path, raster, tiny_model, "auto", "short")
    assert "cuda-session" not in fake.events and "preload" not in fake.events
    assert any(n.startswith("Running on the CPU: the GPU has 600 MiB free") for n in report.notes), report.notes


def test_gpu_support_installed_but_no_nvidia_driver_runs_on_the_cpu(tmp_path, raster, tiny_model, monkeypatch):
    no_nvidia(monkeypatch, tmp_path)
    fake = FakeCudaOrt()
    use(monkeypatch, fake)
    _, report = probabilities(tmp_path, raster, tiny_model, "auto", "no-driver")
    assert "cuda-session" not in fake.events and "preload" not in fake.events
    assert "Running on the CPU (no NVIDIA GPU found)." in report.notes


@pytest.mark.skipif(CUDA in onnxruntime.get_available_providers(), reason="this onnxruntime has CUDA")
def test_auto_without_cuda_says_why_it_runs_on_the_cpu(tmp_path, raster, tiny_model, monkeypatch):
    no_nvidia(monkeypatch, tmp_path)
    _, report = probabilities(tmp_path, raster, tiny_model, "auto", "none")
    assert "Running on the CPU (no NVIDIA GPU found)." in report.notes
    fake_nvidia_smi(tmp_path / "bin", monkeypatch)
    _, report = probabilities(tmp_path, raster, tiny_model, "auto", "driver")
    assert any("NVIDIA GPU is present" in n and "Install GPU support" in n for n in report.notes), report.notes


def card(tile: int = 256, pixel: bool = False):
    data = {
        "id": "m",
        "title": "m",
        "licence": "x",
        "level": "L2A",
        "bands": ["B02", "B03", "B04", "B08"],
        "scaling": {"factor": 1e-4},
        "tiling": {"scheme": "mirror-tukey", "tile": tile, "overlap": 0.2},
        "output": {"activation": "softmax", "cloud": [1], "shadow": []},
    }
    if pixel:
        data["tiling"] = {"scheme": "pixel"}
    return parse_card(data, "(test)")


def test_batch_size_follows_the_gpu_memory():
    mib = 2**20
    assert inference.cuda_batch(card(), 140_000 * mib) == (64, "")  # an H200: the largest batch
    assert inference.cuda_batch(card(), None) == (64, "")  # memory unknown: the default
    assert inference.cuda_batch(card(), 3000 * mib)[0] == 16  # a small laptop GPU
    assert inference.cuda_batch(card(), 6000 * mib, sharing=2)[0] == 16  # two networks share it
    batch, note = inference.cuda_batch(card(), 1200 * mib)
    assert batch == 0 and "1200 MiB free" in note and "a batch of 8 tiles" in note
    assert inference.cuda_batch(card(pixel=True), 1500 * mib) == (64, "")  # no tiles: weights only


def test_nvidia_smi_answers_are_read(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path / "bin", monkeypatch, free_mb=1234, total_mb=8192)
    assert gpu.gpu() == gpu.Gpu("NVIDIA H200", "580.159.03", 1234, 8192)
    assert "NVIDIA H200" in gpu.driver_description()
    no_nvidia(monkeypatch, tmp_path)
    assert gpu.gpu() is None and gpu.driver_description() == ""


def test_fake_onnxruntime_mirrors_the_real_interface():
    """The stand-in may only use names the real onnxruntime has (else it tests nothing)."""
    for name in (
        "SessionOptions",
        "ExecutionMode",
        "GraphOptimizationLevel",
        "InferenceSession",
        "get_available_providers",
    ):
        assert hasattr(onnxruntime, name)
    assert isinstance(onnxruntime.preload_dlls, types.FunctionType)
