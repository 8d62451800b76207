"""Run the real QGIS desktop under Xvfb with a driver script, the way a user's QGIS runs the plugin.

Each run starts from nothing the machine's own QGIS has: a fresh ``--profiles-path``
with a NON-default profile (``work``), ``HOME`` pointed at an empty folder, no
``CLOUDMASK_HOME`` and no ``QGIS_*`` variables. The plugin is installed from the zip
``scripts/zip.sh`` builds (what ``make zip`` ships) into that profile's plugins folder
and enabled in its settings. The plugin's data home is the profile's own
``<profile>/cloud_mask_improver`` (the folder the plugin must find without being
told): by default it gets the models and onnxruntime that ``make setup`` installed
(links, so nothing large is copied); ``data_home="empty"`` leaves it empty.

Adding a driver (see ``drivers/toolbox.py``):

1. Write ``test/desktop/drivers/<name>.py``::

       import driverlib

       def main(d):                      # d: driverlib.Driver
           ...                           # use qgis.utils.iface, processing, the plugin
           d.check("what a user sees", ok, detail)
           d.fact("layer_names", names)
           d.screenshot("after_run")      # -> <out>/after_run.png
           d.wait_until(lambda: ..., timeout=30, what="the run ends")

       driverlib.start(main)

   ``d.args`` holds the ``args`` the test passed; ``d.tracebacks()`` what QGIS
   reported as errors so far (message log and Python errors).
2. In a test: ``run = run_qgis("<name>", out_dir, args={...})``, then assert on
   ``run.result`` (``checks``, ``facts``, ``messages``), ``run.screenshots`` and
   ``run.log``; ``run.problems()`` lists what went wrong in a form fit for an
   assertion message. Screenshots go to ``out/desktop/<name>/``: look at them.

A hung QGIS never hangs the suite: the run is killed after ``timeout`` seconds (a
last screenshot of the screen is taken first) and the result says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DRIVERS = HERE / "drivers"
OUT = ROOT / "out" / "desktop"
PACKAGE = "cloud_mask_improver"
PROFILE = "work"
QGIS = shutil.which("qgis") or "/usr/bin/qgis"


@dataclass
class DesktopRun:
    """What a desktop run left: the driver's result, its screenshots, QGIS's output."""

    result: dict
    out: Path
    profile_dir: Path
    returncode: int | None
    timed_out: bool
    seconds: float
    log: str = ""
    screenshots: list[Path] = field(default_factory=list)

    @property
    def checks(self) -> dict:
        return self.result.get("checks", {})

    @property
    def facts(self) -> dict:
        return self.result.get("facts", {})

    def failed_checks(self) -> dict:
        return {name: c["detail"] for name, c in self.checks.items() if not c["ok"]}

    def tracebacks(self) -> list[str]:
        found = list(self.result.get("python_errors", []))
        found += [m["text"] for m in self.result.get("messages", []) if "Traceback" in m["text"]]
        return found

    @property
    def crashed(self) -> bool:
        """QGIS died (a signal, or QGIS's own "QGIS died on signal" report) instead of quitting."""
        return not self.timed_out and (self.returncode != 0 or "QGIS died" in self.log)

    def problems(self) -> str:
        """Why the run is not clean, for an assertion message ('' when it is)."""
        lines = []
        if self.timed_out:
            lines.append(f"QGIS did not finish within the timeout ({self.seconds:.0f} s)")
        if self.crashed:
            lines.append(f"QGIS did not quit cleanly (exit status {self.returncode}; see qgis.log)")
        if not self.result.get("finished"):
            lines.append("the driver did not finish: " + (self.result.get("error") or "no result.json"))
        lines += [f"check failed: {name}: {detail}" for name, detail in self.failed_checks().items()]
        lines += [f"traceback: {tb[-1500:]}" for tb in self.tracebacks()]
        lines += [f"modal dialog closed by the driver: {m}" for m in self.result.get("modal_dialogs", [])]
        if lines:
            lines.append(f"screenshots and logs: {self.out}; QGIS output tail:\n{self.log[-1500:]}")
        return "\n".join(lines)


def build_zip(dest: Path) -> Path:
    """The plugin zip, built from the working tree as ``make zip DEV=1`` builds it (no contact addresses)."""
    subprocess.run(["bash", str(ROOT / "scripts" / "zip.sh"), "--dev", str(dest)], check=True, capture_output=True)
    return dest


def install_plugin(zip_path: Path, profile_dir: Path) -> Path:
    """Unpack the zip into the profile's plugins folder, as the Plugin Manager's "Install from ZIP"."""
    plugins = profile_dir / "python" / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(plugins)
    return plugins / PACKAGE


def prepare_data_home(profile_dir: Path, source: Path | None) -> Path:
    """``<profile>/cloud_mask_improver`` with the installed models and onnxruntime of ``source``.

    Model files are linked one by one (a driver that removes a model removes the
    link, not the file setup installed); the onnxruntime folder is linked whole.
    """
    data_home = profile_dir / PACKAGE
    (data_home / "models").mkdir(parents=True, exist_ok=True)
    if source is None:
        return data_home
    for item in sorted((source / "models").glob("*")):
        (data_home / "models" / item.name).symlink_to(item)
    if (source / "python").is_dir():
        (data_home / "python").symlink_to(source / "python", target_is_directory=True)
    return data_home


def write_settings(profile_dir: Path) -> None:
    """The profile's QGIS3.ini: the plugin enabled, no version check, no first-run questions."""
    settings = profile_dir / "QGIS" / "QGIS3.ini"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(
        f"[PythonPlugins]\n{PACKAGE}=true\nprocessing=true\n\n[qgis]\ncheckVersion=false\nshowTips=false\n"
    )


def setup_data_home() -> Path:
    """The data home ``make setup`` filled (``$CLOUDMASK_HOME``, else the default profile's)."""
    env = os.environ.get("CLOUDMASK_HOME")
    if env:
        return Path(env)
    from cloud_mask_improver.core.runtime import home

    return home.data_home()


def qgis_environment(home_dir: Path, display: str, driver_out: Path, args: dict) -> dict:
    """A clean environment: only what a user's session has, and nothing of this machine's QGIS."""
    keep = ("PATH", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME", "SHELL", "TMPDIR")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    runtime = home_dir / ".runtime"
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    env.update(
        {
            "HOME": str(home_dir),
            "DISPLAY": display,
            "QT_QPA_PLATFORM": "xcb",
            "XDG_RUNTIME_DIR": str(runtime),
            "PYTHONPATH": str(HERE),  # driverlib for the driver
            "PYTHONDONTWRITEBYTECODE": "1",
            "CMI_DESKTOP_OUT": str(driver_out),
            "CMI_DESKTOP_ARGS": json.dumps(args),
        }
    )
    return env


class _Screen:
    """Xvfb on a free display, with openbox managing the windows (placement, decorations)."""

    def __init__(self, size: tuple[int, int], log_dir: Path):
        self.size = size
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []
        self.display = ""

    def __enter__(self):
        width, height = self.size
        for number in range(90, 190):  # as xvfb-run -a: the first display nobody holds
            if Path(f"/tmp/.X{number}-lock").exists() or Path(f"/tmp/.X11-unix/X{number}").exists():
                continue
            xvfb = subprocess.Popen(
                ["Xvfb", f":{number}", "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp", "-noreset"],
                stdout=subprocess.DEVNULL,
                stderr=open(self.log_dir / "xvfb.log", "w"),
                start_new_session=True,
            )
            socket = Path(f"/tmp/.X11-unix/X{number}")
            if self._wait_for(lambda s=socket, p=xvfb: s.exists() or p.poll() is not None) and xvfb.poll() is None:
                self.procs.append(xvfb)
                self.display = f":{number}"
                break
            _stop(xvfb)  # taken meanwhile by another session: try the next one
        else:
            raise RuntimeError("Xvfb did not start (see xvfb.log); is the xvfb package installed?")
        env = {**os.environ, "DISPLAY": self.display}
        self.procs.append(
            subprocess.Popen(
                ["openbox"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=open(self.log_dir / "openbox.log", "w"),
                start_new_session=True,
            )
        )
        self._wait_for_window_manager(env)
        return self

    @staticmethod
    def _wait_for(condition, timeout=20.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if condition():
                return True
            time.sleep(0.05)
        return False

    def _wait_for_window_manager(self, env, timeout=10.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            probe = subprocess.run(
                ["xprop", "-root", "_NET_SUPPORTING_WM_CHECK"], env=env, capture_output=True, text=True, check=False
            )
            if "window id" in probe.stdout:
                return
            time.sleep(0.1)

    def grab(self, path: Path) -> None:
        """The whole screen from outside QGIS (for a run that hangs)."""
        subprocess.run(
            ["import", "-display", self.display, "-window", "root", str(path)],
            capture_output=True,
            timeout=20,
            check=False,
        )

    def __exit__(self, *exc) -> None:
        for proc in reversed(self.procs):
            _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def run_qgis(
    driver: str | Path,
    out: Path | None = None,
    *,
    args: dict | None = None,
    screen: tuple[int, int] = (1366, 768),
    timeout: float = 120,
    data_home: str | Path = "installed",
    work: Path | None = None,
    profile: str = PROFILE,
) -> DesktopRun:
    """Start QGIS under Xvfb with ``driver`` (a name in ``drivers/`` or a path) and return its run.

    out: where result.json, screenshots and qgis.log go (default ``out/desktop/<driver name>``;
    emptied first). data_home: "installed" (the models and onnxruntime ``make setup`` put
    in ``$CLOUDMASK_HOME``), "empty", or a folder to take them from. work: a scratch folder
    for the profile and HOME (default: a temporary folder, removed after the run unless
    ``CMI_DESKTOP_KEEP`` is set). profile: the profile's name (several may share ``work``).
    """
    driver = Path(driver) if str(driver).endswith(".py") else DRIVERS / f"{driver}.py"
    out = out or OUT / driver.stem
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    scratch = work is None
    work = work or Path(tempfile.mkdtemp(prefix="cmi-desktop-"))
    profile_dir = work / "profiles" / "profiles" / profile
    home_dir = work / "home"
    home_dir.mkdir(parents=True, exist_ok=True)
    install_plugin(build_zip(work / f"{PACKAGE}.zip"), profile_dir)
    source = None if data_home == "empty" else setup_data_home() if data_home == "installed" else Path(data_home)
    prepare_data_home(profile_dir, source)
    write_settings(profile_dir)
    args = {"profile_dir": str(profile_dir), **(args or {})}
    start = time.monotonic()
    with _Screen(screen, out) as display, open(out / "qgis.log", "w") as log:
        proc = subprocess.Popen(
            [
                QGIS,
                "--profiles-path",
                str(work / "profiles"),
                "--profile",
                profile,
                "--nologo",
                "--noversioncheck",
                "--code",
                str(driver),
            ],
            env=qgis_environment(home_dir, display.display, out, args),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(home_dir),
            start_new_session=True,
        )
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            display.grab(out / "timeout.png")
            _stop(proc)
    seconds = time.monotonic() - start
    if scratch and not os.environ.get("CMI_DESKTOP_KEEP"):
        shutil.rmtree(work, ignore_errors=True)
    result_file = out / "result.json"
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    return DesktopRun(
        result=result,
        out=out,
        profile_dir=profile_dir,
        returncode=proc.returncode,
        timed_out=timed_out,
        seconds=seconds,
        log=(out / "qgis.log").read_text(errors="replace"),
        screenshots=sorted(out.glob("*.png")),
    )
