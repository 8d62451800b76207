#!/usr/bin/env bash
# The plugin zip for "Install from ZIP" / the plugin repository (scripts/build_zip.py says how).
# Usage: scripts/zip.sh [--dev] [OUTPUT.zip]   (default: build/cloud_mask_improver.zip)
# A release build (no --dev) refuses while pyproject.toml lacks the contact addresses.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 scripts/build_zip.py "$@"
