#!/usr/bin/env bash
# One-command setup on a fresh Debian machine; idempotent (a second run changes nothing).
# QGIS packages (apt), onnxruntime in the plugin's private folder (the same code the plugin
# offers desktop users), a test venv on QGIS's Python, the models and the sample scene.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=/usr/bin/python3

# python3-matplotlib: the batch's season report draws its chart with it (QGIS's Windows and macOS
# installers ship it). xvfb, openbox, x11-utils (xprop), imagemagick (import): the desktop tests run
# the real QGIS window.
APT_PACKAGES="qgis python3-qgis qgis-providers python3-gdal gdal-bin python3-scipy python3-venv python3-pip python3-matplotlib
  xvfb openbox x11-utils imagemagick"
missing=""
for pkg in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  echo "setup: installing Debian packages:$missing"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

# Test tools on QGIS's own Python, and the `cloudmask` command's Dask. numpy stays the one
# QGIS's Python has, whatever its version (1.x on Debian 12, 2.x on 13 and later): GDAL's
# bindings are built against it, so pip is held to exactly that version and never puts a
# second numpy in front of it.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import pytest_qgis, onnxmltools, lightgbm, distributed" 2>/dev/null \
   || [ requirements-dev.txt -nt .venv/.installed ] || [ requirements-batch.txt -nt .venv/.installed ]; then
  [ -x .venv/bin/python ] || $PY -m venv --system-site-packages .venv
  $PY -c "import numpy; print('numpy==' + numpy.__version__)" > .venv/constraints.txt
  .venv/bin/pip install --quiet --disable-pip-version-check -c .venv/constraints.txt -r requirements-dev.txt \
    -r requirements-batch.txt
  touch .venv/.installed
fi
# The `cloudmask` command (.venv/bin/cloudmask), linked to this checkout; its dependencies are above
# (--no-deps: pip must not put a second numpy in front of QGIS's).
if [ ! -x .venv/bin/cloudmask ] || [ pyproject.toml -nt .venv/bin/cloudmask ]; then
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
  touch .venv/bin/cloudmask
fi
rm -f resources_rc.py  # compiled Qt resources of older versions: the icon now loads from its file

# onnxruntime, models, sample scene, and a plugin folder for qgis_process: all idempotent.
.venv/bin/python scripts/install.py
