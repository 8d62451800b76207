#!/usr/bin/env bash
# `make test-matrix`: the README's test command on the QGIS releases users run, each in a Debian
# root filesystem entered with chroot: Debian 13 "trixie" (QGIS 3.40 LTR) and "forky" (QGIS 3.44).
#
# Each root filesystem is built once with mmdebstrap and kept under /var/cache/cloudmask-matrix/,
# outside the clone, so that CI's fresh clones on the same machine reuse it and a new machine
# builds it. Each run copies this commit (git clone) into the root filesystem and runs
# `make test` there with a clean environment and its own data home; pip's downloads and the data
# home's download cache stay in the cache folder, so reruns do not download again.
#
# Prints one line per QGIS version with pytest's summary. Fails when any suite fails and when a
# root filesystem cannot be built or entered: a version that was not tested is never a pass.
#
# Usage: scripts/test_matrix.sh [SUITE...]   (default: trixie forky; needs root or sudo)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CACHE=${CLOUDMASK_MATRIX_CACHE:-/var/cache/cloudmask-matrix}
SUITES=("$@")
[ ${#SUITES[@]} -gt 0 ] || SUITES=(trixie forky)
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo

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
  $SUDO rm -rf "$dir/rootfs.new"
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
  $SUDO rm -rf "$dir/rootfs"
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

# One line for the summary: the QGIS version and its platform, from inside.
describe() {
  $SUDO chroot "$1" /usr/bin/env -i PATH=/usr/bin:/bin QT_QPA_PLATFORM=offscreen /usr/bin/python3 -c '
import sys, numpy
from osgeo import gdal
from qgis.core import Qgis
print(f"QGIS {Qgis.QGIS_VERSION.split(\"-\")[0]} (Python {sys.version.split()[0]}, numpy {numpy.__version__}, "
      f"GDAL {gdal.__version__})")' 2>/dev/null || echo "QGIS not installed"
}

# The README's test command in a fresh clone of this commit, inside the root filesystem of SUITE.
run_suite() {
  local suite=$1 rootfs=$CACHE/$1/rootfs log=$CACHE/$1/test.log status
  bind "$rootfs" /proc && bind "$rootfs" /sys && bind "$rootfs" /dev && bind "$rootfs" /dev/pts || return 1
  if mountpoint -q /dev/shm; then bind "$rootfs" /dev/shm || return 1; fi  # Python's multiprocessing
  $SUDO cp -L /etc/resolv.conf "$rootfs/etc/resolv.conf"
  $SUDO rm -rf --one-file-system "$rootfs/root/cloudmask"
  $SUDO git clone --quiet --no-checkout "$ROOT" "$rootfs/root/cloudmask" \
    && $SUDO git -C "$rootfs/root/cloudmask" checkout --quiet --detach "$(git -C "$ROOT" rev-parse HEAD)" || return 1
  # A clean environment: nothing of the host's shell, the data home and pip's cache in the
  # root filesystem (kept between runs, so models and wheels are downloaded once).
  $SUDO chroot "$rootfs" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
      PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      CLOUDMASK_HOME=/var/cache/cloudmask-home PIP_CACHE_DIR=/var/cache/pip \
      timeout "${CLOUDMASK_MATRIX_TIMEOUT:-2400}" bash -c 'cd /root/cloudmask && make test' >"$log" 2>&1
  status=$?
  unmount_all
  return $status
}

# pytest's closing line ("=== 412 passed, 2 skipped in 310.5s ==="), or the end of the log.
summary() {
  local line
  line=$(grep -E '^=+ .*(passed|failed|error).* in [0-9.]+s' "$1" | tail -n 1 | sed -E 's/^=+ //; s/ =+$//')
  [ -n "$line" ] && echo "$line" || echo "no pytest summary; last lines of $1: $(tail -n 3 "$1" | tr '\n' ' ')"
}

if [ "${1:-}" = "--build-only" ]; then
  shift; SUITES=("$@"); [ ${#SUITES[@]} -gt 0 ] || SUITES=(trixie forky)
  for s in "${SUITES[@]}"; do build_rootfs "$s" || exit 1; done
  exit 0
fi

failed=0
lines=()
for suite in "${SUITES[@]}"; do
  start=$(date +%s)
  if ! build_rootfs "$suite"; then
    lines+=("$suite: FAILED, the root filesystem could not be built (see $CACHE/$suite/build.log)")
    failed=1
    continue
  fi
  log "$suite: make test in a fresh clone (log: $CACHE/$suite/test.log)"
  run_suite "$suite"
  status=$?
  what=$(describe "$CACHE/$suite/rootfs")
  verdict=$([ $status -eq 0 ] && echo passed || echo "FAILED (exit $status)")
  lines+=("$what on $suite: $verdict: $(summary "$CACHE/$suite/test.log") [$(($(date +%s) - start)) s]")
  [ $status -eq 0 ] || failed=1
done
printf '%s\n' "${lines[@]}"
exit $failed
