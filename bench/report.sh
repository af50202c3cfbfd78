#!/bin/bash
# ktstr-report throughput on a large monitor JSON-lines file against jq doing
# a comparable aggregation (per-sample imbalance ratio, max DSQ depth, mean
# nr_running over every CPU reading).  ktstr-report does more than that (stall
# tracking per CPU, event-counter rates, the sustained-violation trackers, the
# text summary), so the comparison favours jq.  Goal: at least 2x jq.
#
#   KTSTR_BENCH_REPORT_MB   size of the generated file (default 150)
#   KTSTR_BENCH_RUNS        timed runs per tool, median reported (default 3)
set -euo pipefail
: "${KTSTR_BIN:?run through make bench / scripts/run-bench.sh}"
top=${KTSTR_TOP:-$(cd "$(dirname "$0")/.." && pwd)}
mb=${KTSTR_BENCH_REPORT_MB:-150}
runs=${KTSTR_BENCH_RUNS:-3}
command -v jq >/dev/null || { echo "jq not installed (scripts/install-deps.sh)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 not installed" >&2; exit 1; }

data="$top/build/bench-data/monitor-${mb}mb.jsonl"
mkdir -p "$(dirname "$data")"
if [ ! -s "$data" ]; then
    echo "generating $data (${mb} MB, 16 CPUs per sample)" >&2
    python3 - "$data.tmp" "$mb" <<'EOF'
import sys, random
path, mb = sys.argv[1], int(sys.argv[2])
rnd = random.Random(1)
target = mb * 1024 * 1024
ncpu = 16
with open(path, "w") as f:
    f.write('{"schema":"ktstr.monitor/1","event":"meta","elapsed_ms":400,"hz":1000,"preemption_threshold_ns":10000000}\n')
    size, i = 0, 0
    while size < target:
        t = 500 + i * 100
        cpus = []
        for c in range(ncpu):
            nr = rnd.randint(0, 6)
            cpus.append('{"cpu":%d,"nr_running":%d,"scx_nr_running":%d,"local_dsq_depth":%d,"rq_clock":%d,"scx_flags":1,'
                        '"event_counters":{"select_cpu_fallback":%d,"dispatch_local_dsq_offline":0,"dispatch_keep_last":%d,'
                        '"enq_skip_exiting":0,"enq_skip_migration_disabled":0},"vcpu_cpu_time_ns":%d}'
                        % (c, nr, nr, rnd.randint(0, 8), t * 1000000 + c * 777 + rnd.randint(0, 999), i * 3, i,
                           t * 900000))
        line = '{"schema":"ktstr.monitor/1","event":"sample","elapsed_ms":%d,"cpus":[%s]}\n' % (t, ",".join(cpus))
        f.write(line)
        size += len(line)
        i += 1
    f.write('{"schema":"ktstr.monitor/1","event":"end","elapsed_ms":%d,"reason":"eof","samples":%d}\n' % (500 + i * 100, i))
EOF
    mv "$data.tmp" "$data"
fi
bytes=$(stat -c %s "$data")
samples=$(($(wc -l <"$data") - 2))

JQ_PROGRAM='reduce (inputs | select(.event == "sample")) as $s
  ({samples: 0, max_ratio: 0, max_dsq: 0, nr_sum: 0, readings: 0};
   ($s.cpus | map(.nr_running)) as $nr
   | .samples += 1
   | .max_ratio = ([.max_ratio, (if ($nr | max) == 0 then 0 else ($nr | max) / ([($nr | min), 1] | max) end)] | max)
   | .max_dsq = ([.max_dsq, ($s.cpus | map(.local_dsq_depth) | max)] | max)
   | .nr_sum += ($nr | add) | .readings += ($nr | length))
  | .mean_nr_running = .nr_sum / .readings'

# time_cmd OUTVAR CMD...: median wall seconds over $runs runs
median_of() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_runs() {
    local t=()
    for _ in $(seq "$runs"); do
        local t0 t1
        t0=$(date +%s.%N)
        "$@" >/dev/null
        t1=$(date +%s.%N)
        t+=("$(echo "$t1 - $t0" | bc)")
    done
    median_of "${t[@]}"
}

# Same answer first (max ratio and max DSQ depth), so the race is fair.
ours=$("$KTSTR_BIN/ktstr-report" --json "$data" | jq -c '.runs[0].monitor.summary | [.max_imbalance_ratio, .max_local_dsq_depth]') || true
theirs=$(jq -nc "$JQ_PROGRAM | [.max_ratio, .max_dsq]" <"$data")
[ "$ours" = "$theirs" ] || { echo "results differ: ktstr-report $ours, jq $theirs" >&2; exit 1; }
echo "file: $bytes bytes, $samples samples x 16 CPUs; both find [max ratio, max DSQ] = $ours" >&2

report_ktstr() { "$KTSTR_BIN/ktstr-report" "$data" || [ $? -le 2 ]; }
t_ours=$(time_runs report_ktstr)
t_jq=$(time_runs jq -n "$JQ_PROGRAM" "$data")
mbps_ours=$(echo "scale=1; $bytes / 1048576 / $t_ours" | bc)
mbps_jq=$(echo "scale=1; $bytes / 1048576 / $t_jq" | bc)
ratio=$(echo "scale=2; $t_jq / $t_ours" | bc)
echo "ktstr-report ${t_ours}s (${mbps_ours} MB/s), jq ${t_jq}s (${mbps_jq} MB/s), median of $runs" >&2
echo "BENCH report_monitor_aggregation $mbps_ours MB/s jq_same_aggregation $mbps_jq ${ratio}x target >=2x"
