#!/bin/bash
# ktstr-kconfig validate on a real Linux 6.12 .config: median wall time of a whole
# process run (exec, parse, validate, JSON out), 30 runs; target under 20 ms.
# The .config: the fixture kernel's, else one made once by apply from Debian's
# linux-source-6.12 and cached under build/.  With the unpacked tree cached
# (scripts/linux-source-tree.sh), a second line times validate --tree (Kconfig scan).
set -euo pipefail
cd "$(dirname "$0")/.."
K="${KTSTR_BIN:-build/bin}/ktstr-kconfig"
config="${KTSTR_FIXTURES:-/nonexistent}/config"
if [ ! -f "$config" ]; then
    config="${BUILD:-build}/bench/kconfig-linux-6.12/.config"
    if [ ! -f "$config" ]; then
        tree=$(scripts/linux-source-tree.sh)
        "$K" apply --tree "$tree" --out "$(dirname "$config")" --arch x86_64 >/dev/null
    fi
fi
median_ms() { # median_ms RUNS CMD... : median wall time in ms
    local runs=$1; shift
    local t
    for _ in $(seq "$runs"); do
        t=$(date +%s%N)
        "$@" >/dev/null
        echo $(( $(date +%s%N) - t ))
    done | sort -n | awk '{ a[NR] = $1 } END { m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.2f\n", m / 1e6 }'
}
echo "config: $config ($(wc -l <"$config") lines)" >&2
echo "BENCH kconfig-validate-6.12 $(median_ms 30 "$K" validate --config "$config" --arch x86_64 --json) ms target <20ms"
# CPU time per run (user + sys, mean of 30): what the wall time is on an idle machine.
TIMEFORMAT='%3U %3S'
cpu=$( { time (for _ in $(seq 30); do "$K" validate --config "$config" --arch x86_64 --json >/dev/null; done) ; } 2>&1 )
echo "BENCH kconfig-validate-6.12-cpu $(echo "$cpu" | awk '{ printf "%.2f", ($1 + $2) * 1000 / 30 }') ms target <20ms"
tree_dir=${KTSTR_LINUX_SRC_CACHE:-${TMPDIR:-/tmp}/ktstr-linux-source}
tree=$(ls -d "$tree_dir"/linux-source-6.12-*/ 2>/dev/null | head -n 1 || true)
if [ -n "$tree" ] && [ -f "$tree/.ktstr-unpacked" ]; then
    echo "BENCH kconfig-validate-6.12-with-tree $(median_ms 10 "$K" validate --config "$config" --tree "$tree" --arch x86_64 --json) ms"
else
    echo "no unpacked linux-source tree cached; skipping the --tree line (make e2e caches one)" >&2
fi
