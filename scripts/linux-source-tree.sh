#!/bin/bash
# Print the path of an unpacked, untouched Debian linux-source tree, unpacking
# /usr/src/linux-source-6.12.tar.xz once into a shared cache (tests and benches
# configure it out of tree with O=, so it stays pristine).
#   scripts/linux-source-tree.sh [TARBALL]
# Cache: $KTSTR_LINUX_SRC_CACHE, else ${TMPDIR:-/tmp}/ktstr-linux-source.
# Exit 3 when the tarball is missing (install-deps installs linux-source-6.12).
set -euo pipefail
tarball=${1:-/usr/src/linux-source-6.12.tar.xz}
[ -r "$tarball" ] || { echo "linux-source-tree: error: $tarball not found (scripts/install-deps.sh installs linux-source-6.12)" >&2; exit 3; }
cache=${KTSTR_LINUX_SRC_CACHE:-${TMPDIR:-/tmp}/ktstr-linux-source}
mkdir -p "$cache"
# The tarball's size and mtime name the entry, so a new package version unpacks afresh.
key="$(basename "$tarball" .tar.xz)-$(stat -c '%s-%Y' "$tarball")"
dest="$cache/$key"
exec 9>"$cache/$key.lock"
flock 9
if [ ! -f "$dest/.ktstr-unpacked" ]; then
    rm -rf "$dest" "$dest.tmp"
    mkdir -p "$dest.tmp"
    t0=$(date +%s.%N)
    tar -xf "$tarball" -C "$dest.tmp"
    top=$(ls "$dest.tmp")
    [ "$(echo "$top" | wc -l)" -eq 1 ] || { echo "linux-source-tree: error: $tarball has more than one top-level directory" >&2; exit 3; }
    mv "$dest.tmp/$top" "$dest"
    rmdir "$dest.tmp"
    printf 'unpacked %s in %.1f s\n' "$tarball" "$(echo "$(date +%s.%N) - $t0" | bc)" | tee "$dest/.ktstr-unpacked" >&2
fi
echo "$dest"
