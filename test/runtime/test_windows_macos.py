"""Windows and macOS behaviour of the installs, through platform fakes on Linux.

What the fakes prove is the plugin's side: which onnxruntime it asks pip for, which
interpreter and flags it starts, how commands are quoted, what it says when a library
does not load. That the wheels then import there can only be proven on real Windows and
macOS machines (docs/platforms.md lists what is checked how).
"""

import ast
import platform
import shlex
import shutil
import sys
from pathlib import Path

import pytest

from cloud_mask_improver.core.runtime import deps, processes
from cloud_mask_improver.ui import tasks
from cloud_mask_improver.ui.model_manager import ModelManagerDialog

ROOT = Path(__file__).resolve().parents[2]


# -- no console windows: one helper starts every program


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, args, **kwargs):
        self.calls.append((args, kwargs))
        raise OSError("recorded, not started")


@pytest.mark.parametrize("os_name, flags", [("win32", 0x08000000), ("linux", 0), ("darwin", 0)])
def test_programs_start_without_a_console_window_on_windows(monkeypatch, os_name, flags):
    popen = Recorder()
    monkeypatch.setattr(processes.subprocess, "Popen", popen)
    monkeypatch.setattr(sys, "platform", os_name)
    for start in (processes.run, processes.start):
        with pytest.raises(OSError):
            start(["python3", "-m", "pip", "--version"])
    assert [kw["creationflags"] for _, kw in popen.calls] == [flags, flags]
    assert all(kw.get("shell") in (None, False) and kw["stdin"] is not None for _, kw in popen.calls)


def test_nothing_else_starts_programs():
    """pip, nvidia-smi: every program the plugin starts goes through core/runtime/processes.py."""
    offenders = []
    for path in [
        *ROOT.glob("core/**/*.py"),
        *ROOT.glob("ui/**/*.py"),
        *ROOT.glob("algorithms/**/*.py"),
        ROOT / "plugin.py",
    ]:
        if path.name == "processes.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(name.split(".")[0] == "subprocess" for name in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_a_real_program_runs_through_the_helper():
    done = processes.run([sys.executable, "-c", "print('ünïcode ok')"])
    assert done.returncode == 0 and done.stdout.strip() == "ünïcode ok"


# -- commands users copy: quoted for their shell

WINDOWS_PYTHON = r"C:\Program Files\QGIS 3.40.4\apps\Python312\python.exe"
WINDOWS_TARGET = r"C:\Users\Ann Lee\AppData\Roaming\QGIS\QGIS3\profiles\default\cloud_mask_improver\python"
MAC_PYTHON = "/Applications/QGIS 3.44.app/Contents/MacOS/python"
MAC_TARGET = "/Users/ann/Library/Application Support/QGIS/QGIS3/profiles/default/cloud_mask_improver/python"


def test_windows_commands_quote_paths_with_spaces():
    command = [WINDOWS_PYTHON, "-m", "pip", "install", "--target", WINDOWS_TARGET, "onnxruntime==1.20.1"]
    assert processes.shell_text(command, platform="win32") == (
        rf'"{WINDOWS_PYTHON}" -m pip install --target "{WINDOWS_TARGET}" onnxruntime==1.20.1'
    )


def test_macos_commands_survive_the_shell():
    command = [MAC_PYTHON, "-m", "pip", "install", "--target", MAC_TARGET, "onnxruntime==1.32.0"]
    text = processes.shell_text(command, platform="darwin")
    assert shlex.split(text) == command
    with_home = processes.shell_text(command, platform="darwin", env={"PYTHONHOME": "/Applications/Q G.app/x"})
    assert shlex.split(with_home) == ["PYTHONHOME=/Applications/Q G.app/x", *command]


def test_the_messages_show_the_quoted_install_command(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(deps, "python_executable", lambda: WINDOWS_PYTHON)
    monkeypatch.setattr(deps.home, "python_dir", lambda home_dir=None: Path(WINDOWS_TARGET))
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # "not installed"
    problem = deps.runtime_status().problem
    assert f'"{WINDOWS_PYTHON}" -m pip install' in problem and f'"{WINDOWS_TARGET}"' in problem


# -- which onnxruntime for which computer


def fake_computer(monkeypatch, os_name: str, machine: str, mac: str, python: tuple[int, int]) -> None:
    monkeypatch.setattr(sys, "platform", os_name)
    monkeypatch.setattr(platform, "machine", lambda: machine)
    monkeypatch.setattr(platform, "mac_ver", lambda: (mac, ("", "", ""), machine if mac else ""))
    monkeypatch.setattr(sys, "version_info", (*python, 0, "final", 0))


@pytest.mark.parametrize(
    "os_name, machine, mac, python, expected",
    [
        ("win32", "AMD64", "", (3, 9), "1.19.2"),  # QGIS 3.22-3.28 for Windows
        ("win32", "AMD64", "", (3, 12), "1.20.1"),  # QGIS 3.34-4.x: the older VC++ runtime QGIS loads
        ("win32", "AMD64", "", (3, 14), "1.32.0"),  # no 1.20.1 for 3.14: newest, and the message below
        ("darwin", "x86_64", "12.7", (3, 9), "1.19.2"),  # QGIS 3.22-3.40 (Python 3.9) on an Intel Mac
        ("darwin", "arm64", "14.5", (3, 9), "1.19.2"),
        ("darwin", "x86_64", "13.6", (3, 12), "1.23.2"),  # QGIS 3.44 / 4 on an Intel Mac
        ("darwin", "x86_64", "15.1", (3, 12), "1.23.2"),
        ("darwin", "arm64", "13.6", (3, 12), "1.23.2"),  # Apple Silicon, macOS 13
        ("darwin", "arm64", "12.7", (3, 12), "1.19.2"),  # Apple Silicon, macOS 12
        ("darwin", "arm64", "14.5", (3, 12), "1.32.0"),
        ("darwin", "arm64", "15.1", (3, 10), "1.23.2"),  # conda or MacPorts Python 3.10
        ("darwin", "x86_64", "", (3, 12), "1.23.2"),  # macOS version unknown: still an Intel Mac
        ("linux", "x86_64", "", (3, 9), "1.19.2"),  # Debian 11
        ("linux", "x86_64", "", (3, 10), "1.23.2"),  # Ubuntu 22.04
        ("linux", "x86_64", "", (3, 11), "1.32.0"),  # Debian 12
        ("linux", "x86_64", "", (3, 13), "1.32.0"),  # Debian 13
    ],
)
def test_each_computer_gets_an_onnxruntime_that_has_its_wheel(monkeypatch, os_name, machine, mac, python, expected):
    fake_computer(monkeypatch, os_name, machine, mac, python)
    assert deps.choose_onnxruntime(*deps.this_platform()) == expected
    assert deps.no_wheel_reason(*deps.this_platform()) == ""


@pytest.mark.parametrize(
    "machine, mac, python, says",
    [
        ("x86_64", "10.15.7", (3, 9), "macOS 11 or newer"),
        ("x86_64", "14.5", (3, 14), "Python 3.14"),
        ("arm64", "12.7", (3, 13), "Python 3.13"),
    ],
)
def test_a_mac_without_any_wheel_is_told_so_not_sent_to_pip(monkeypatch, tmp_path, machine, mac, python, says):
    fake_computer(monkeypatch, "darwin", machine, mac, python)
    reason = deps.no_wheel_reason(*deps.this_platform())
    assert says in reason
    status = deps.install_onnxruntime(tmp_path / "python")  # pip would answer "No matching distribution"
    assert not status.available and not status.installable and says in status.problem
    assert not (tmp_path / "python").exists()


# -- a library that does not load is not "not installed"


def fake_onnxruntime(folder: Path, version: str, error: str) -> Path:
    """An onnxruntime package whose native module fails as Windows' loader makes it fail."""
    package = folder / "onnxruntime"
    (package / "capi").mkdir(parents=True)
    (package / "capi" / "__init__.py").write_text("")
    (package / "capi" / "onnxruntime_pybind11_state.py").write_text(f"raise ImportError({error!r})\n")
    (package / "__init__.py").write_text(
        f"__version__ = {version!r}\nfrom onnxruntime.capi import onnxruntime_pybind11_state\n"
    )
    (folder / f"onnxruntime-{version}.dist-info").mkdir()
    return folder


DLL_ERROR = (
    "DLL load failed while importing onnxruntime_pybind11_state: "
    "A dynamic link library (DLL) initialization routine failed."
)


@pytest.fixture
def broken_runtime(tmp_path, monkeypatch):
    folder = tmp_path / "python"
    monkeypatch.setattr(deps.home, "python_dir", lambda home_dir=None: folder)
    monkeypatch.setattr(sys, "path", [str(folder), *sys.path])
    for name in [m for m in sys.modules if m == "onnxruntime" or m.startswith("onnxruntime.")]:
        monkeypatch.delitem(sys.modules, name)
    yield folder
    for name in [m for m in sys.modules if m == "onnxruntime" or m.startswith("onnxruntime.")]:
        del sys.modules[name]


def test_a_dll_that_does_not_load_is_explained_with_the_fix(broken_runtime, monkeypatch):
    fake_onnxruntime(broken_runtime, deps.ONNXRUNTIME_VERSION, DLL_ERROR)
    monkeypatch.setattr(sys, "platform", "win32")
    status = deps.runtime_status()
    assert not status.available and not status.installable  # installing again would loop
    assert "not installed" not in status.problem
    assert "(DLL) initialization routine failed" in status.problem
    assert "Visual C++ Redistributable" in status.problem and deps.VC_REDIST_URL in status.problem


def test_a_library_of_another_release_is_replaced_by_the_pinned_one(broken_runtime, monkeypatch):
    """An earlier version of the plugin installed 1.32.0 on Windows: installing the pin fixes it."""
    fake_onnxruntime(broken_runtime, "1.32.0", DLL_ERROR)
    monkeypatch.setattr(deps, "ONNXRUNTIME_VERSION", "1.20.1")
    monkeypatch.setattr(sys, "platform", "win32")
    status = deps.runtime_status()
    assert not status.available and status.installable
    assert "Install onnxruntime 1.20.1" in status.problem and "1.32.0 is installed" in status.problem


def test_the_model_manager_offers_the_fix_not_the_install_button(
    qgis_app, qtbot, broken_runtime, tmp_path, monkeypatch
):
    fake_onnxruntime(broken_runtime, deps.ONNXRUNTIME_VERSION, DLL_ERROR)
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(shutil, "which", lambda *_a, **_k: None)  # 3.13's which() calls Windows' API on win32
    manager = ModelManagerDialog(models_dir=tmp_path / "models", cache=tmp_path / "cache")
    qtbot.addWidget(manager)
    manager.show()
    assert not manager.runtime_box.isHidden() and manager.runtime_button.isHidden(), deps.runtime_status()
    assert "Visual C++ Redistributable" in manager.runtime_note.text()


def test_installing_again_stops_at_once_and_says_the_fix(qgis_app, qtbot, broken_runtime, monkeypatch):
    """The install task sees the pinned release in place: no pip, and the message is the fix."""
    fake_onnxruntime(broken_runtime, deps.ONNXRUNTIME_VERSION, DLL_ERROR)
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(shutil, "which", lambda *_a, **_k: None)  # 3.13's which() calls Windows' API on win32
    started = []
    monkeypatch.setattr(processes, "start", lambda *a, **k: started.append(a))
    finished = []
    tasks.EVENTS.runtime_finished.connect(lambda ok, text: finished.append((ok, text)))
    tasks.install_runtime(broken_runtime)
    qtbot.waitUntil(lambda: bool(finished), timeout=30_000)
    assert started == []
    assert finished[0][0] is False and "Visual C++ Redistributable" in finished[0][1]


def test_this_computer_gets_the_pin_chosen_for_it():
    """The pin is decided at import from this computer's facts (nothing started, nothing asked)."""
    assert deps.choose_onnxruntime(*deps.this_platform()) == deps.ONNXRUNTIME_VERSION
