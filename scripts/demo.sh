#!/usr/bin/env bash
# The main job on the bundled default: the real sample scene with the real models, through
# qgis_process exactly as a user would run it headless. Writes out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
export QT_QPA_PLATFORM=offscreen
PLUGINS=$(.venv/bin/python scripts/plugin_root.py)
export QGIS_PLUGINPATH="$PLUGINS"
QP=$(command -v qgis_process.bin || command -v qgis_process)
OUT=out/demo
mkdir -p "$OUT"
# "already enabled" exits 1: fine, the run below fails clearly if the plugin is not there.
"$QP" plugins enable cloud_mask_improver >/dev/null 2>&1 || true
start=$(date +%s.%N)
.venv/bin/python scripts/peak_memory.py "$OUT/run.json" -- "$QP" run cloudmask:improvecloudmask --json -- \
  S2_RASTER=test/data/sample/s2_l1c_13band.tif \
  PRODUCT_MASK=test/data/sample/product_mask.tif \
  CLOUD_PROBABILITY="$OUT/cloud_probability.tif" \
  SHADOW_PROBABILITY="$OUT/shadow_probability.tif" \
  MASK="$OUT/mask.tif"
.venv/bin/python scripts/quicklook.py test/data/sample/s2_l1c_13band.tif "$OUT/mask.tif" "$OUT/quicklook.png"
.venv/bin/python - "$OUT/run.json" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
results = run["results"]
print(f"mask:      {results['MASK']}")
for name in ("CLEAR_FRACTION", "CLOUD_FRACTION", "SHADOW_FRACTION"):
    print(f"{name.lower():16s} {results[name]:.4f}")
print(f"wall time: {run['wall_s']:.1f} s, peak memory: {run['peak_mb']:.0f} MB")
PY
echo "quicklook: $OUT/quicklook.png"
