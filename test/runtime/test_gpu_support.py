"""The model manager's GPU row: one click installs GPU support, one click goes back to the CPU.

Both run as QGIS tasks, and the row says plainly when GPU support cannot be had.

The clicks run the real install (real pip) against the fake package index of
fake_wheels.py on 127.0.0.1, with a fake ``nvidia-smi`` standing in for the driver.
"""

import pytest

from cloud_mask_improver.core.runtime import deps, gpu
from cloud_mask_improver.ui.gpu_support import GpuSupportBox
from cloud_mask_improver.ui.model_manager import ModelManagerDialog

pytestmark = pytest.mark.slow  # left out of make test-fast

pytest_plugins = ["fake_wheels"]  # its fixtures: index, nvidia_driver


def click_and_wait(qtbot, box, button):
    assert button.isVisible() and button.isEnabled()
    button.click()
    assert box.task is not None and not button.isEnabled()  # running as a task, not twice
    qtbot.waitUntil(lambda: box.task is None, timeout=120_000)


def test_install_gpu_support_and_back_with_one_click_each(qgis_app, qtbot, tmp_path, index, nvidia_driver):
    url, _ = index
    folder = tmp_path / "python"
    assert deps.install_cpu_runtime(folder, url).available
    box = GpuSupportBox(folder=folder, index_url=url)
    qtbot.addWidget(box)
    box.show()
    qtbot.waitUntil(lambda: "This computer has an NVIDIA GPU" in box.status.text())  # asked in the background
    assert not box.cpu_button.isVisible()

    click_and_wait(qtbot, box, box.install_button)
    assert deps.installed_runtime(folder).kind == "gpu"
    assert "restart QGIS" in box.status.text() and "GPU support is installed" in box.status.text()
    assert not box.install_button.isVisible()

    click_and_wait(qtbot, box, box.cpu_button)
    assert deps.installed_runtime(folder) == deps.InstalledRuntime("cpu", deps.ONNXRUNTIME_VERSION)
    assert "restart QGIS" in box.status.text() and "Models run on the CPU" in box.status.text()


def test_a_failed_install_is_said_in_the_row(qgis_app, qtbot, tmp_path, index, nvidia_driver):
    url, server = index
    folder = tmp_path / "python"
    assert deps.install_cpu_runtime(folder, url).available
    for project in server.root.glob("nvidia-*"):
        for whl in project.iterdir():
            whl.unlink()
    box = GpuSupportBox(folder=folder, index_url=url)
    qtbot.addWidget(box)
    box.show()
    qtbot.waitUntil(box.install_button.isEnabled)
    click_and_wait(qtbot, box, box.install_button)
    assert "It failed" in box.status.text() and "CUDA libraries" in box.status.text()
    assert deps.installed_runtime(folder).kind == "cpu"
    assert box.install_button.isEnabled()  # the user can try again


def test_without_an_nvidia_driver_the_row_says_why_and_offers_nothing(qgis_app, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    monkeypatch.setattr(gpu, "has_cuda_driver_library", lambda: False)
    box = GpuSupportBox(folder=tmp_path / "python")
    qtbot.addWidget(box)
    box.show()
    assert not box.install_button.isEnabled()
    assert "No NVIDIA driver was found" in box.status.text()


def test_the_model_manager_has_the_gpu_row(qgis_app, qtbot, tmp_path, nvidia_driver):
    manager = ModelManagerDialog(models_dir=tmp_path / "models", cache=tmp_path / "cache")
    qtbot.addWidget(manager)
    manager.show()
    assert manager.gpu_box.isVisible()
    assert manager.gpu_box.install_button.text() in ("Install GPU support",) or manager.gpu_box.cpu_button.isVisible()


def test_opening_the_model_manager_never_waits_for_nvidia_smi(qgis_app, qtbot, tmp_path, nvidia_driver, monkeypatch):
    """nvidia-smi (and pip) start in threads of their own.

    QGIS's window never freezes for them, and the driver is asked once, not at each opening."""
    import threading

    from cloud_mask_improver.core.runtime import processes

    started = []
    real_run = processes.run
    monkeypatch.setattr(
        processes,
        "run",
        lambda args, **kw: (
            started.append((args[0], threading.current_thread() is threading.main_thread())) or real_run(args, **kw)
        ),
    )
    for _ in range(2):
        manager = ModelManagerDialog(models_dir=tmp_path / "models", cache=tmp_path / "cache")
        qtbot.addWidget(manager)
        manager.show()
        qtbot.waitUntil(lambda m=manager: "This computer has an NVIDIA GPU" in m.gpu_box.status.text())
        manager.close()
    # A check left running by an earlier test may start its own nvidia-smi: count only this one's.
    ours = str(tmp_path / "bin" / "nvidia-smi")
    assert [program for program, _ in started if program == ours] == [ours]
    assert not any(on_main_thread for _, on_main_thread in started), started
