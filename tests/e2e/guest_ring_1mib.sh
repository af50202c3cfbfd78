#!/bin/bash
# 1 MiB of job output crosses the shared-memory ring intact, and the same bytes arrive
# over the COM2 fallback when the ring is disabled (--no-ring).
source "$(dirname "$0")/lib.sh"
need_fixture
need_cmd qemu-system-x86_64
need_cmd jq
[ -x /bin/busybox ] || skip "busybox-static not installed"
cmd='seq 1 300000 | head -c 1048576'
want=$(set +o pipefail; seq 1 300000 | head -c 1048576 | sha256sum | cut -d' ' -f1)
for mode in ring com2; do
    extra=()
    [ $mode = com2 ] && extra=(--no-ring)
    t0=$(date +%s.%N)
    run_rc ktstr-vmm --kernel "$KTSTR_FIXTURES/bzImage" --accel tcg --console none --timeout 300 \
        --events "$TMP/$mode.jsonl" "${extra[@]}" --exec "$cmd" >"$TMP/$mode.out" 2>"$TMP/$mode.err"
    echo "$mode: $(echo "$(date +%s.%N) - $t0" | bc) s"
    [ "$RC" = 0 ] || { tail -n 20 "$TMP/$mode.err" >&2; die "$mode run exited $RC"; }
    assert_eq 1048576 "$(wc -c < "$TMP/$mode.out")" "$mode: bytes received"
    assert_eq "$want" "$(sha256sum < "$TMP/$mode.out" | cut -d' ' -f1)" "$mode: sha256 of the output"
    exit_ev=$(tail -n 1 "$TMP/$mode.jsonl")
    assert_eq 1048576 "$(jq -r .guest_channel.out_bytes <<<"$exit_ev")" "$mode: bytes counted by the host"
    assert_eq 0 "$(jq -r .guest_channel.bad_crc <<<"$exit_ev")" "$mode: no bad CRCs"
    assert_eq 0 "$(jq -r .guest_channel.com2_bad_frames <<<"$exit_ev")" "$mode: no bad COM2 frames"
    if [ $mode = ring ]; then
        assert_eq true "$(jq -r .guest_channel.used <<<"$exit_ev")" "ring used"
        assert_eq ring "$(jq -r .guest_exit_source <<<"$exit_ev")" "exit code from the ring"
    else
        assert_eq 0 "$(jq -r .guest_channel.messages <<<"$exit_ev")" "no ring messages"
        [ "$(jq -r .guest_channel.com2_messages <<<"$exit_ev")" -gt 16 ] || die "expected COM2 frames"
        assert_eq com2 "$(jq -r .guest_exit_source <<<"$exit_ev")" "exit code from COM2"
    fi
done
