"""Every program the plugin starts (pip, nvidia-smi) goes through here.

Two reasons for one place. On Windows a console program started from QGIS opens
a console window of its own, and closing that window kills the program (a pip
install half done): ``CREATE_NO_WINDOW`` keeps it hidden. And the official
plugin repository's security scan (Bandit) flags each subprocess call: here is
the one call, with the reason it is safe, instead of one per caller.
"""

from __future__ import annotations

import os
import shlex
import subprocess  # nosec B404  # only fixed argument lists, never a shell (see run and start)
import sys

# Windows' flag for "no console window" (subprocess.CREATE_NO_WINDOW exists only on Windows).
CREATE_NO_WINDOW = 0x08000000
CompletedProcess = subprocess.CompletedProcess
SubprocessError = subprocess.SubprocessError


def _creation_flags() -> int:
    return CREATE_NO_WINDOW if sys.platform.startswith("win") else 0


def run(
    args: list[str], env: dict[str, str] | None = None, timeout: float | None = None
) -> subprocess.CompletedProcess:
    """Run a program to its end and return its exit code and output (text)."""
    # Bandit B603 is answered here: the argument list is built by the plugin (QGIS's Python with "-m pip" and
    # fixed options, or nvidia-smi), never from a shell string, and shell=False.
    return subprocess.run(
        list(args),
        check=False,
        capture_output=True,
        text=True,
        encoding="utf-8",  # nosec B603  # fixed list, no shell
        errors="replace",
        stdin=subprocess.DEVNULL,
        env=env,
        timeout=timeout,
        creationflags=_creation_flags(),
    )


def start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a program whose output (stdout and stderr together) is read line by line."""
    # Bandit B603: as in run(), a fixed argument list and no shell.
    return subprocess.Popen(
        list(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # nosec B603  # fixed list, no shell
        stdin=subprocess.DEVNULL,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=env,
        creationflags=_creation_flags(),
    )


def shell_text(args: list[str], platform: str | None = None, env: dict[str, str] | None = None) -> str:
    """A command as a user pastes it into this platform's shell, each argument quoted as needed.

    Windows' ``cmd`` and PowerShell split as ``subprocess.list2cmdline`` quotes (double quotes
    around ``C:\\Program Files\\...``); elsewhere a POSIX shell (``shlex``). ``env``: variables the
    command needs, written before it (POSIX) or as ``set`` commands (Windows)."""
    platform = platform or sys.platform
    if platform.startswith("win"):
        sets = [f'set "{key}={value}" &&' for key, value in (env or {}).items()]
        return " ".join(sets + [subprocess.list2cmdline(list(args))])
    sets = [f"{key}={shlex.quote(value)}" for key, value in (env or {}).items()]
    return " ".join(sets + [shlex.join(list(args))])


def environment(extra: dict[str, str]) -> dict[str, str] | None:
    """This process's environment with ``extra`` added (None when there is nothing to add)."""
    if not extra:
        return None
    merged = dict(os.environ)
    merged.update(extra)
    return merged
