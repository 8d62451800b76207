#!/usr/bin/env bash
# `make test-matrix`: the README's test command on the QGIS releases users run, each in a Debian
# root filesystem entered with chroot: Debian 13 "trixie" (QGIS 3.40 LTR) and "forky" (QGIS 3.44).
#
# Each root filesystem is built once with mmdebstrap (from the Debian mirror the host's apt
# uses) and kept under /var/cache/cloudmask-matrix/, outside the clone, so that CI's fresh clones
# on the same machine reuse it and a new machine builds it. Each run clones this commit into the
# root filesystem and runs `make test` there with a clean environment (env -i) and its own data
# home: the first run's `make setup` installs that release's QGIS with apt, as on a fresh
# machine. The data home and pip's cache stay in the root filesystem, so reruns download nothing.
# Then `make demo` runs there and on the host, and the three masks are compared.
#
# Prints one line per QGIS version with pytest's summary. Fails when a suite fails, when a root
# filesystem cannot be built or entered (a version that was not tested is never a pass), and
# when the demo masks differ.
#
# Usage: scripts/test_matrix.sh [SUITE...]   (default: trixie forky; needs root or sudo)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CACHE=${CLOUDMASK_MATRIX_CACHE:-/var/cache/cloudmask-matrix}
SUITES=("$@")
[ ${#SUITES[@]} -gt 0 ] || SUITES=(trixie forky)
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
CLONE=/root/cloudmask  # inside the root filesystem

log() { echo "test-matrix: $*" >&2; }

# The Debian mirror the host's apt uses (deb822 .sources or one-line sources.list).
host_mirror() {
  local uri
  uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ {for (i = 2; i <= NF; i++) print $i}' \
        | grep -v -e security -e '^#' | grep '/debian/\?$' | head -n 1)
  if [ -z "$uri" ]; then
    uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
          | awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file):/) {print $i; break}}' \
          | grep -v security | grep '/debian/\?$' | head -n 1)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

# Build the root filesystem of SUITE once (atomically: a half-built one is never used).
build_rootfs() {
  local suite=$1 dir=$CACHE/$1 mirror
  [ -f "$dir/rootfs/.cloudmask-built" ] && return 0
  command -v mmdebstrap >/dev/null || { log "mmdebstrap is not installed (apt install mmdebstrap)"; return 1; }
  mirror=$(host_mirror)
  log "building the $suite root filesystem from $mirror (once; a few minutes)"
  $SUDO mkdir -p "$dir"
  $SUDO rm -rf --one-file-system "$dir/rootfs.new"
  # The host's local CA certificates are trusted inside, so that pip works where TLS goes through
  # a local CA. forky's Release file may be past its Valid-Until date on a snapshot mirror.
  if ! $SUDO mmdebstrap --mode=root --variant=apt --quiet \
      --aptopt='Acquire::Check-Valid-Until "false"' \
      --include=ca-certificates,git,make,python3,locales \
      --customize-hook='mkdir -p "$1/usr/local/share/ca-certificates"' \
      --customize-hook='if [ -d /usr/local/share/ca-certificates ]; then cp -a /usr/local/share/ca-certificates/. "$1/usr/local/share/ca-certificates/"; fi' \
      --customize-hook='chroot "$1" update-ca-certificates' \
      "$suite" "$dir/rootfs.new" "deb $mirror $suite main" >"$dir/build.log" 2>&1; then
    log "could not build the $suite root filesystem; see $dir/build.log:"
    tail -n 20 "$dir/build.log" >&2
    return 1
  fi
  $SUDO touch "$dir/rootfs.new/.cloudmask-built"
  $SUDO rm -rf --one-file-system "$dir/rootfs"
  $SUDO mv "$dir/rootfs.new" "$dir/rootfs"
}

MOUNTED=()
unmount_all() {
  local i
  for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do $SUDO umount -l "${MOUNTED[$i]}" 2>/dev/null || true; done
  MOUNTED=()
}
trap unmount_all EXIT
trap 'unmount_all; exit 130' INT TERM

bind() {  # bind a host path onto the same path in the root filesystem
  local target=$1$2
  mountpoint -q "$target" && return 0
  $SUDO mkdir -p "$target"
  $SUDO mount --bind "$2" "$target" && MOUNTED+=("$target")
}

# A command inside the root filesystem with a clean environment: nothing of the host's shell.
in_root() {
  local rootfs=$1; shift
  $SUDO chroot "$rootfs" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
      PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      CLOUDMASK_HOME=/var/cache/cloudmask-home PIP_CACHE_DIR=/var/cache/pip "$@"
}

# The QGIS version and its platform, from inside.
describe() {
  in_root "$1" env QT_QPA_PLATFORM=offscreen /usr/bin/python3 -c '
import sys, numpy
from osgeo import gdal
from qgis.core import Qgis
version = Qgis.QGIS_VERSION.split("-")[0]
print(f"QGIS {version} (Python {sys.version.split()[0]}, numpy {numpy.__version__}, GDAL {gdal.__version__})")
' 2>/dev/null || echo "QGIS (not installed)"
}

# `make test`, then `make demo`, in a fresh clone of this commit inside the root filesystem.
# Sets TEST_STATUS and DEMO_STATUS.
run_suite() {
  local suite=$1 rootfs=$CACHE/$1/rootfs limit=${CLOUDMASK_MATRIX_TIMEOUT:-2400}
  TEST_STATUS=1 DEMO_STATUS=1
  bind "$rootfs" /proc && bind "$rootfs" /sys && bind "$rootfs" /dev && bind "$rootfs" /dev/pts || return
  if mountpoint -q /dev/shm; then bind "$rootfs" /dev/shm || return; fi  # Python's multiprocessing
  $SUDO cp -L /etc/resolv.conf "$rootfs/etc/resolv.conf"
  $SUDO rm -rf --one-file-system "$rootfs$CLONE"
  $SUDO git clone --quiet --no-checkout "$ROOT" "$rootfs$CLONE" \
    && $SUDO git -C "$rootfs$CLONE" checkout --quiet --detach "$(git -C "$ROOT" rev-parse HEAD)" || return
  in_root "$rootfs" timeout "$limit" bash -c "cd $CLONE && make test" >"$CACHE/$suite/test.log" 2>&1
  TEST_STATUS=$?
  in_root "$rootfs" apt-get clean  # the .deb files of setup's first apt-get install (about 1 GB)
  in_root "$rootfs" timeout 900 bash -c "cd $CLONE && make demo" >"$CACHE/$suite/demo.log" 2>&1
  DEMO_STATUS=$?
}

# pytest's closing line ("412 passed, 2 skipped in 310.50s"), or the end of the log.
summary() {
  local line
  line=$(grep -E '(passed|failed|errors?|skipped).* in [0-9.]+s' "$1" | tail -n 1 | sed -E 's/^=+ //; s/ =+$//')
  [ -n "$line" ] && echo "$line" || echo "no pytest summary; the log ends: $(tail -n 3 "$1" | tr '\n' ' ')"
}

if [ "${1:-}" = "--build-only" ]; then
  shift; SUITES=("$@"); [ ${#SUITES[@]} -gt 0 ] || SUITES=(trixie forky)
  for s in "${SUITES[@]}"; do build_rootfs "$s" || exit 1; done
  exit 0
fi

failed=0
lines=()
masks=()
for suite in "${SUITES[@]}"; do
  start=$(date +%s)
  $SUDO mkdir -p "$CACHE/$suite"
  exec {lock}>"$CACHE/$suite.lock"
  if ! flock -w 3600 "$lock"; then  # another run (CI, a developer) holds this root filesystem
    lines+=("$suite: FAILED, its root filesystem stayed busy with another run for an hour")
    failed=1
    continue
  fi
  if ! build_rootfs "$suite"; then
    lines+=("$suite: FAILED, the root filesystem could not be built (see $CACHE/$suite/build.log)")
    failed=1
    exec {lock}>&-
    continue
  fi
  log "$suite: make test and make demo in a fresh clone (logs: $CACHE/$suite/test.log, demo.log)"
  run_suite "$suite"
  unmount_all
  what=$(describe "$CACHE/$suite/rootfs")
  mask=$CACHE/$suite/rootfs$CLONE/out/demo/mask.tif
  if [ "$TEST_STATUS" -eq 0 ]; then verdict=passed; else verdict="FAILED (exit $TEST_STATUS)"; failed=1; fi
  if [ "$DEMO_STATUS" -eq 0 ] && [ -f "$mask" ]; then
    demo="demo mask sha256 $(sha256sum "$mask" | cut -d' ' -f1)"
    cp "$mask" "$CACHE/$suite/demo-mask.tif"
    masks+=("$CACHE/$suite/demo-mask.tif")
  else
    demo="demo FAILED (see $CACHE/$suite/demo.log)"
    failed=1
  fi
  lines+=("$what on $suite: $verdict: $(summary "$CACHE/$suite/test.log"); $demo [$(($(date +%s) - start)) s]")
  exec {lock}>&-
done

# The host's demo, for the comparison: the same mask on every version (the pixels at least).
if [ ${#masks[@]} -gt 0 ]; then
  if make demo >"$CACHE/host-demo.log" 2>&1 && [ -f out/demo/mask.tif ]; then
    host=$(.venv/bin/python -c 'from qgis.core import Qgis; print(Qgis.QGIS_VERSION.split("-")[0])' 2>/dev/null)
    lines+=("QGIS ${host:-?} on this machine: demo mask sha256 $(sha256sum out/demo/mask.tif | cut -d' ' -f1)")
    masks+=("$ROOT/out/demo/mask.tif")
  else
    lines+=("this machine: demo FAILED (see $CACHE/host-demo.log)")
    failed=1
  fi
  if [ "$(sha256sum "${masks[@]}" | cut -d' ' -f1 | sort -u | wc -l)" -eq 1 ]; then
    lines+=("demo masks: byte-identical on all ${#masks[@]}")
  elif /usr/bin/python3 - "${masks[@]}" <<'PY'
import sys
from osgeo import gdal
first, *others = (gdal.Open(p).ReadAsArray() for p in sys.argv[1:])
sys.exit(0 if all((first == o).all() for o in others) else 1)
PY
  then
    lines+=("demo masks: the same pixels on all ${#masks[@]} (the files' bytes differ)")
  else
    lines+=("demo masks: FAILED, the pixels differ between versions")
    failed=1
  fi
fi
printf '%s\n' "${lines[@]}"
exit $failed
