#!/usr/bin/env bash
# GPU check on a lent NVIDIA machine (Python 3.12 with torch's CUDA 13 pip libraries, no GDAL,
# no onnxruntime-gpu, no network, at most 64 MiB of files per command).
#
# Here, once:   .venv/bin/python scripts/gpu_stage.py stage     (parts of <= 60 MiB in out/gpu-stage/)
# There, one command per part, carrying that part and out/gpu-stage/manifest.json:
#               bash scripts/gpu_check.sh put out/gpu-stage/part-00
# There, last:  bash scripts/gpu_check.sh run [scripts/gpu_check.py options]
#               (reassembles and verifies the parts, puts onnxruntime-gpu, GDAL and the model in
#               place, then measures a full 10980^2 tile on CUDA and on the CPU; results in $OUT)
# `bash scripts/gpu_check.sh status` says which parts are there. The parts wait in $CLOUDMASK_STAGE
# (default /tmp/cloudmask-stage), which lasts as long as the machine stays warm.
set -euo pipefail
cd "$(dirname "$0")/.."
STAGE=${CLOUDMASK_STAGE:-/tmp/cloudmask-stage}
PY=${PYTHON:-python3}
command=${1:-}
[ $# -gt 0 ] && shift

case "$command" in
put)
  mkdir -p "$STAGE"
  for part in "$@"; do cp "$part" "$STAGE/"; done
  cp out/gpu-stage/manifest.json "$STAGE/"
  ls -l "$STAGE"
  ;;
status)
  ls -l "$STAGE" 2>/dev/null || echo "gpu_check: nothing staged in $STAGE"
  ;;
run)
  [ -f out/gpu-stage/manifest.json ] && cp out/gpu-stage/manifest.json "$STAGE/"
  "$PY" scripts/gpu_stage.py unpack "$STAGE"
  X="$STAGE/x"
  SITE="$X/site"
  if ! ls "$SITE"/osgeo >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --disable-pip-version-check \
      --target "$SITE" "$X"/wheels/gdal_wheel-*.whl
  fi
  # onnxruntime.preload_dlls() looks for NVIDIA's libraries beside the onnxruntime package:
  # point it at the CUDA 13 / cuDNN 9 pip libraries that torch brought.
  NVIDIA=$("$PY" -c "import nvidia; print(list(nvidia.__path__)[0])" 2>/dev/null || true)
  if [ -n "$NVIDIA" ] && [ ! -e "$SITE/nvidia" ]; then ln -s "$NVIDIA" "$SITE/nvidia"; fi
  for lib in "$SITE"/nvidia/*/lib; do [ -d "$lib" ] && LD_LIBRARY_PATH="$lib:${LD_LIBRARY_PATH:-}"; done
  export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}"
  export PYTHONPATH="$SITE" CLOUDMASK_HOME="$X/home" PYTHONUNBUFFERED=1
  [ -d "$SITE/osgeo/data/proj" ] && export PROJ_DATA="$SITE/osgeo/data/proj" PROJ_LIB="$SITE/osgeo/data/proj"
  [ -d "$SITE/osgeo/data/gdal" ] && export GDAL_DATA="$SITE/osgeo/data/gdal"
  nvidia-smi --query-gpu=name,driver_version,memory.free,memory.total --format=csv || true
  "$PY" -c "import onnxruntime as o, osgeo.gdal as g; print('onnxruntime', o.__version__, o.get_available_providers(), 'GDAL', g.__version__)"
  mkdir -p "$STAGE/work"
  "$PY" scripts/gpu_check.py --sample "$X/sample/s2_12band.tif" --work "$STAGE/work" "$@"
  ;;
*)
  sed -n '2,13p' "$0"
  exit 2
  ;;
esac
