#!/bin/bash
# Cost of sampling one vCPU once (ktstr-monitor's per-sample work: rq,
# sched_ext, schedstat, domain reads) on a synthetic 252-CPU guest image laid
# out with the fixture vmlinux's real BTF offsets and a KASLR placement.
set -eu
: "${KTSTR_BIN:?run through make bench}"
vmlinux="${KTSTR_FIXTURES:-}/vmlinux"
if [ ! -f "$vmlinux" ]; then echo "monitor bench skipped: no fixture vmlinux (KTSTR_FIXTURES)" >&2; exit 0; fi
out=$("$KTSTR_BIN/ktstr-monitor" bench --vmlinux "$vmlinux" --cpus 252 --iterations 5000)
echo "$out" >&2
med=$(echo "$out" | jq -r '.median_ns_per_cpu | . * 10 | round / 10')
echo "BENCH monitor-sample-per-vcpu-252 $med ns target <1000ns"
