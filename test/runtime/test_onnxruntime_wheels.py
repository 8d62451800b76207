"""Every onnxruntime the plugin would ask pip for exists on the real package index.

For each (platform, Python) that the QGIS 3.22-4.x installers ship, the release that
``deps.choose_onnxruntime`` picks is resolved against pypi.org with the wheel-only
``pip download`` pip would do on that computer. It needs the internet (about 250 MB of
wheels the first time; pip's cache serves the next runs) and is skipped without it.
"""

import os
import socket
import subprocess
import sys

import pytest

from cloud_mask_improver.core.runtime import deps

pytestmark = [pytest.mark.network, pytest.mark.slow]  # slow: left out of make test-fast

# (who ships it, sys.platform, platform.machine(), macOS version, Python, pip's platform tag)
COMPUTERS = [
    ("QGIS 3.22-3.28 for Windows (OSGeo4W, standalone)", "win32", "AMD64", "", (3, 9), "win_amd64"),
    ("QGIS 3.34-4.x for Windows (OSGeo4W, standalone)", "win32", "AMD64", "", (3, 12), "win_amd64"),
    ("QGIS 3.22-3.40 for macOS, Intel, macOS 11", "darwin", "x86_64", "11.7", (3, 9), "macosx_11_0_x86_64"),
    ("QGIS 3.22-3.40 for macOS, Apple Silicon", "darwin", "arm64", "14.5", (3, 9), "macosx_14_0_arm64"),
    ("QGIS 3.44 / 4 for macOS, Intel, macOS 12", "darwin", "x86_64", "12.7", (3, 12), "macosx_12_0_x86_64"),
    ("QGIS 3.44 / 4 for macOS, Intel, macOS 13+", "darwin", "x86_64", "13.6", (3, 12), "macosx_13_0_x86_64"),
    ("QGIS 3.44 / 4 for macOS, Apple Silicon, macOS 12", "darwin", "arm64", "12.7", (3, 12), "macosx_12_0_arm64"),
    ("QGIS 3.44 / 4 for macOS, Apple Silicon, macOS 13", "darwin", "arm64", "13.6", (3, 12), "macosx_13_0_arm64"),
    ("QGIS 3.44 / 4 for macOS, Apple Silicon, macOS 14+", "darwin", "arm64", "14.5", (3, 12), "macosx_14_0_arm64"),
    ("Debian 11", "linux", "x86_64", "", (3, 9), "manylinux_2_31_x86_64"),
    ("Ubuntu 22.04", "linux", "x86_64", "", (3, 10), "manylinux_2_35_x86_64"),
    ("Debian 12 (tested here)", "linux", "x86_64", "", (3, 11), "manylinux_2_36_x86_64"),
    ("Ubuntu 24.04", "linux", "x86_64", "", (3, 12), "manylinux_2_39_x86_64"),
    ("Debian 13", "linux", "x86_64", "", (3, 13), "manylinux_2_41_x86_64"),
]


@pytest.fixture(scope="module")
def internet():
    try:
        socket.create_connection(("pypi.org", 443), timeout=10).close()
    except OSError:
        pytest.skip("needs the internet (pypi.org)")


def platforms(tag: str) -> list[str]:
    """The platform tags pip accepts on that computer.

    pip widens a macOS tag to the older macOS versions itself, not a ``manylinux_2_X`` one:
    list every glibc up to X (and manylinux2014)."""
    if not tag.startswith("manylinux_2_"):
        return [tag]
    glibc, arch = tag[len("manylinux_2_") :].split("_", 1)
    return [f"manylinux_2_{x}_{arch}" for x in range(int(glibc), 16, -1)] + [f"manylinux2014_{arch}"]


def pip_download(folder, tag: str, python: tuple[int, int], version: str) -> subprocess.CompletedProcess:
    """pip as it would run on that computer, against pypi.org only (no local wheel folders)."""
    environment = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX")
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--only-binary=:all:",
            *[f"--platform={p}" for p in platforms(tag)],
            "--python-version",
            f"{python[0]}.{python[1]}",
            "--index-url",
            "https://pypi.org/simple",
            "-d",
            str(folder),
            f"onnxruntime=={version}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=environment,
    )


@pytest.mark.parametrize("who, os_name, machine, mac, python, tag", COMPUTERS, ids=[c[0] for c in COMPUTERS])
def test_the_chosen_onnxruntime_has_a_wheel_for_this_computer(
    internet, tmp_path, who, os_name, machine, mac, python, tag
):
    version = deps.choose_onnxruntime(os_name, machine, mac, python)
    assert deps.no_wheel_reason(os_name, machine, mac, python) == ""
    done = pip_download(tmp_path, tag, python, version)
    assert done.returncode == 0, f"{who}: onnxruntime {version}: {done.stderr[-1500:]}"
    wheels = [p.name for p in tmp_path.glob("onnxruntime-*.whl")]
    assert len(wheels) == 1 and wheels[0].startswith(f"onnxruntime-{version}-cp{python[0]}{python[1]}-"), wheels


def test_the_newest_release_has_no_wheel_for_intel_macs(internet, tmp_path):
    """Why Intel Macs get an older release: pip finds no newest one for them (this check can fail)."""
    done = pip_download(tmp_path, "macosx_15_0_x86_64", (3, 12), deps.ONNXRUNTIME_LATEST)
    assert done.returncode != 0 and "No matching distribution" in done.stderr
