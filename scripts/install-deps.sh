#!/bin/sh
# Install every Debian package ktstr needs to build, test and run.
# Idempotent: prints nothing and changes nothing when all are present.
# Usage: scripts/install-deps.sh [--e2e] [--print]   (--print: list the packages, install nothing)
#   --e2e  also the large optional packages only `make e2e` uses (chromium: the HTML report screenshot test)
set -eu

PACKAGES="
g++ make pkg-config
libbpf-dev libelf-dev nlohmann-json3-dev liblz4-dev zlib1g-dev doctest-dev
qemu-system-x86 busybox-static
cpio lz4 jq xz-utils libxml2-utils groff-base
bc bison flex libssl-dev dwarves
linux-source-6.12
clang-16 lld-16 llvm-16
"

# Optional, for `make e2e` only (chromium is ~300 MB installed).
E2E_PACKAGES="
chromium python3
"
if [ "${1:-}" = "--e2e" ]; then
    PACKAGES="$PACKAGES $E2E_PACKAGES"
    shift
fi

if [ "${1:-}" = "--print" ]; then
    echo $PACKAGES
    exit 0
fi

missing=""
for p in $PACKAGES; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$st" in
        *"install ok installed"*) ;;
        *) missing="$missing $p" ;;
    esac
done
[ -z "$missing" ] && exit 0

echo "install-deps: installing:$missing" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "install-deps: error: not root and no sudo; install:$missing" >&2; exit 3; }
    SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2 || { echo "install-deps: error: apt-get update failed" >&2; exit 3; }
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >&2 ||
    { echo "install-deps: error: apt-get install failed for:$missing" >&2; exit 3; }
