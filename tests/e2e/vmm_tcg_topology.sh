#!/bin/bash
# ktstr-vmm --accel tcg boots the fixture kernel to a trivial busybox init that
# prints the topology the guest sees in /sys and /proc; it must equal the request:
# packages (one per LLC, one die each: die_id is global), LLCs (cache index3 shared_cpu_list), cores, SMT
# siblings, NUMA nodes with their CPUs and memory (zone spans, which include the
# reserved shared region).  KTSTR_E2E_TIMEOUT (seconds, default 120) bounds each boot.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/vmm_tcg.inc"
vmm_need_tcg
timeout_s=${KTSTR_E2E_TIMEOUT:-120}

# The trivial init: print what the guest sees, then power off.
vmm_busybox_initrd "$TMP/initrd.cpio" "$(cat <<'INIT'
#!/bin/busybox sh
B=/bin/busybox
$B mkdir -p /proc /sys
$B mount -t proc proc /proc
$B mount -t sysfs sys /sys
$B mkdir -p /dev && $B mount -t devtmpfs dev /dev
echo "KTSTR_COM2_CHECK $(cat /proc/sys/kernel/random/boot_id 2>/dev/null | $B head -c 8)" >/dev/ttyS1
echo "TOPO uptime=$($B cut -d' ' -f1 /proc/uptime)"
cd /sys/devices/system/cpu
for c in $($B ls -d cpu[0-9]* | $B sort -t u -k 2 -n); do
    t=$c/topology
    node=$($B ls -d $c/node[0-9]* | $B sed 's/.*node//')
    echo "TOPO cpu=${c#cpu} package=$($B cat $t/physical_package_id) die=$($B cat $t/die_id)" \
         "core=$($B cat $t/core_id) siblings=$($B cat $t/thread_siblings_list)" \
         "llc=$($B cat $c/cache/index3/shared_cpu_list 2>/dev/null || echo none) node=$node"
done
for nd in /sys/devices/system/node/node[0-9]*; do
    echo "TOPO node=${nd##*node} cpus=$($B cat $nd/cpulist)"
done
$B awk '/^Node/ { n = $2; sub(",", "", n) } /spanned/ { s[n] += $2 }
        END { for (k in s) printf "TOPO node=%s span_mb=%d\n", k, int((s[k] * 4096 + 1048575) / 1048576) }' /proc/zoneinfo
$B grep -H MemTotal /sys/devices/system/node/node*/meminfo | $B sed 's/^/INFO /'
$B poweroff -f
INIT
)"

# "a-b" (or "a") like the kernel's %*pbl for a contiguous run.
range() { if [ "$1" = "$2" ]; then echo "$1"; else echo "$1-$2"; fi; }

# expected N L C T MEM_MB: the TOPO lines the guest must print (sorted).
expected() {
    local n=$1 l=$2 c=$3 t=$4 mem=$5 cpus=$(($2 * $3 * $4)) i
    local per_llc=$((c * t)) llcs_per_node=$((l / n))
    for ((i = 0; i < cpus; i++)); do
        local llc=$((i / per_llc)) core=$(((i / t) % c)) first_sib=$((i - i % t))
        echo "TOPO cpu=$i package=$llc die=$llc core=$core siblings=$(range $first_sib $((first_sib + t - 1)))" \
             "llc=$(range $((llc * per_llc)) $((llc * per_llc + per_llc - 1))) node=$((llc / llcs_per_node))"
    done
    local per_node=$((llcs_per_node * per_llc)) each=$((mem / n)) nd
    for ((nd = 0; nd < n; nd++)); do
        echo "TOPO node=$nd cpus=$(range $((nd * per_node)) $((nd * per_node + per_node - 1)))"
        local m=$each
        [ $nd -eq $((n - 1)) ] && m=$((mem - each * (n - 1)))
        echo "TOPO node=$nd span_mb=$m"
    done | sort
}

check_topology() { # TOPO MEM_MB
    local topo=$1 mem=$2
    [[ $topo =~ ^([0-9]+)n([0-9]+)l([0-9]+)c([0-9]+)t$ ]] || die "bad topology $topo"
    local out="$TMP/$topo.jsonl" con="$TMP/$topo.console"
    local t0=$(date +%s.%N)
    run_rc ktstr-vmm --accel tcg --kernel "$KTSTR_FIXTURES" --initrd "$TMP/initrd.cpio" \
        --topology "$topo" --memory-mb "$mem" --timeout "$timeout_s" --console "$con" --com2 "$TMP/$topo.com2" >"$out"
    local wall=$(echo "$(date +%s.%N) - $t0" | bc)
    [ "$RC" -eq 0 ] || { tail -n 30 "$con" >&2; cat "$out" >&2; die "$topo: ktstr-vmm exited $RC"; }
    assert_eq shutdown "$(jq -r 'select(.event=="exit") | .reason' "$out")" "$topo: exit reason"
    assert_eq "$topo" "$(jq -r 'select(.event=="boot") | .topology' "$out")" "$topo: boot event topology"
    local got want
    got=$(tr -d '\r' <"$con" | grep '^TOPO ' | grep -v uptime= | sort)
    want=$(expected "${BASH_REMATCH[@]:1}" "$mem" | sort)
    if [ "$got" != "$want" ]; then
        diff <(echo "$want") <(echo "$got") >&2 || true
        die "$topo: the guest's topology differs from the request (- wanted, + seen)"
    fi
    grep -q '^KTSTR_COM2_CHECK' "$TMP/$topo.com2" || die "$topo: the guest's line on /dev/ttyS1 did not reach --com2"
    echo "ok: $topo: COM2 (ttyS1) reaches --com2"
    echo "ok: $topo: guest topology equals the request ($(echo "$want" | wc -l) lines)"
    tr -d '\r' <"$con" | grep '^INFO ' || true
    printf 'TIME %s boot-to-init %ss (guest uptime), ktstr-vmm wall %.1fs, run_s %s\n' "$topo" \
        "$(tr -d '\r' <"$con" | sed -n 's/^TOPO uptime=//p')" "$wall" \
        "$(jq -r 'select(.event=="exit") | .run_s' "$out")"
}

check_topology 1n1l2c1t 512
check_topology 1n2l2c2t 512
check_topology 2n2l2c1t 512
