#!/usr/bin/env bash
# A zip for "Install from ZIP" / the plugin repository: the plugin's files as they are in the
# working tree (tracked files, and new files git does not ignore) plus the compiled resources,
# so the desktop tests install exactly the code under test.
# Usage: scripts/zip.sh [OUTPUT.zip]   (default: build/cloud_mask_improver.zip)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-build/cloud_mask_improver.zip}
mkdir -p "$(dirname "$OUT")"
rm -f "$OUT"
[ -f resources_rc.py ] || pyrcc5 -o resources_rc.py resources.qrc
git ls-files -z --cached --others --exclude-standard -- . ':!test' ':!.ci' ':!scripts' ':!docs' \
  > "$OUT.list"
python3 -c '
import os, sys, zipfile
out, listing = sys.argv[1], sys.argv[2]
names = [n for n in open(listing, "rb").read().decode().split("\0") if n and os.path.isfile(n)]
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
    for name in sorted(names) + ["resources_rc.py"]:
        zf.write(name, "cloud_mask_improver/" + name)
' "$OUT" "$OUT.list"
rm -f "$OUT.list"
echo "$OUT"
