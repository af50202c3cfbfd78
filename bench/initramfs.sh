#!/bin/bash
# Initramfs build: agent + busybox + the fixture's scx_simple with its library closure.
#   cold:    empty cache, whole ktstr-initramfs process (wall), against the classic
#            pipeline `find | cpio -o -H newc | lz4 -l` over the same files already
#            laid out in a directory (so the pipeline does strictly less work);
#   cached:  unchanged inputs, the library's build time inside the process (build_ms).
# Goals: cold at most half the pipeline's time; cached under 1 ms.  Medians of $RUNS runs.
set -euo pipefail
: "${KTSTR_BIN:?run through make bench}"
RUNS=${KTSTR_BENCH_RUNS:-9}
scx="${KTSTR_FIXTURES:-}/sched_ext/scx_simple"
[ -f "$scx" ] || { echo "skip: fixture scx_simple not found (KTSTR_FIXTURES)" >&2; exit 0; }
for t in cpio lz4 jq; do command -v $t >/dev/null || { echo "skip: $t missing" >&2; exit 0; }; done
tmp=$(mktemp -d /tmp/ktstr-bench-initramfs.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
build() { "$KTSTR_BIN/ktstr-initramfs" build --include "$scx" "$@"; }
now_ns() { date +%s%N; }
median() { sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.3f\n", m}'; }

# The same files, laid out as the guest will see them, for the pipeline.
build --compress none --no-cache -o "$tmp/plain.cpio" >/dev/null
mkdir "$tmp/stage" && (cd "$tmp/stage" && cpio -idm --quiet < "$tmp/plain.cpio")
files=$(cd "$tmp/stage" && find . | wc -l)
echo "files: $files, uncompressed $(stat -c %s "$tmp/plain.cpio") bytes" >&2

cold=() inproc=() pipe=() cached=()
for i in $(seq "$RUNS"); do
    t0=$(now_ns)
    (cd "$tmp/stage" && find . | cpio -o -H newc --quiet | lz4 -l -q -f - "$tmp/pipe.lz4")
    pipe+=("$(( ($(now_ns) - t0) / 1000 ))")
    rm -rf "$tmp/cache"
    t0=$(now_ns)
    out=$(build --cache-dir "$tmp/cache" -o "$tmp/ours.lz4")
    cold+=("$(( ($(now_ns) - t0) / 1000 ))")
    [ "$(jq -r .cache <<<"$out")" = miss ] || { echo "expected a cache miss" >&2; exit 1; }
    inproc+=("$(jq -r .build_ms <<<"$out")")
    out=$(build --cache-dir "$tmp/cache" -o "$tmp/ours.lz4")
    [ "$(jq -r .cache <<<"$out")" = hit ] || { echo "expected a cache hit" >&2; exit 1; }
    cached+=("$(jq -r .build_ms <<<"$out")")
done
# Both outputs must decompress to archives the kernel accepts; check ours is sane.
lz4 -dc "$tmp/ours.lz4" | cpio -t --quiet >/dev/null
pipe_ms=$(printf '%s\n' "${pipe[@]}" | awk '{print $1/1000}' | median)
cold_ms=$(printf '%s\n' "${cold[@]}" | awk '{print $1/1000}' | median)
inproc_ms=$(printf '%s\n' "${inproc[@]}" | median)
cached_ms=$(printf '%s\n' "${cached[@]}" | median)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
echo "BENCH initramfs_cold_process $cold_ms ms find|cpio|lz4-l $pipe_ms $(ratio "$cold_ms" "$pipe_ms") target ratio<=0.5"
echo "BENCH initramfs_cold_build $inproc_ms ms find|cpio|lz4-l $pipe_ms $(ratio "$inproc_ms" "$pipe_ms") target ratio<=0.5"
echo "BENCH initramfs_cached_build $cached_ms ms target <1ms"
