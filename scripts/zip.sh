#!/usr/bin/env bash
# A zip for "Install from ZIP" / the plugin repository: tracked files plus compiled resources.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build
rm -f build/cloud_mask_improver.zip
git archive --format=zip --prefix=cloud_mask_improver/ -o build/cloud_mask_improver.zip HEAD \
  -- . ':!test' ':!.ci' ':!scripts' ':!docs'
python3 - <<'PY'
import zipfile
with zipfile.ZipFile("build/cloud_mask_improver.zip", "a") as zf:
    zf.write("resources_rc.py", "cloud_mask_improver/resources_rc.py")
PY
echo "build/cloud_mask_improver.zip"
