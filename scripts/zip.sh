#!/usr/bin/env bash
# A zip for "Install from ZIP" / the plugin repository: the tracked files of the plugin.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build
rm -f build/cloud_mask_improver.zip
git archive --format=zip --prefix=cloud_mask_improver/ -o build/cloud_mask_improver.zip HEAD \
  -- . ':!test' ':!.ci' ':!scripts' ':!docs'
echo "build/cloud_mask_improver.zip"
