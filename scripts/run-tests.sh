#!/bin/bash
# Run the test suites and print one closing line "N passed, N failed, N skipped".
#   scripts/run-tests.sh test   unit tests + tests/e2e/*.sh            (make test)
#   scripts/run-tests.sh e2e    unit tests + tests/e2e/*.sh + tests/e2e/slow/*.sh  (make e2e)
# An e2e script exits 0 to pass, 77 to skip (printing why), anything else fails.
# KTSTR_TEST_FILTER=REGEX runs only the scripts whose path matches.
set -u
mode=${1:-test}
cd "$(dirname "$0")/.."
top=$(pwd)
BUILD=${BUILD:-build}
export KTSTR_BIN="$top/$BUILD/bin"
export KTSTR_TOP="$top"
if [ -z "${KTSTR_FIXTURES:-}" ]; then
    for d in "$top/../shared/fixtures/linux-6.12" "$top/tests/fixtures/linux-6.12"; do
        [ -f "$d/bzImage" ] && { KTSTR_FIXTURES=$(cd "$d" && pwd); break; }
    done
fi
export KTSTR_FIXTURES=${KTSTR_FIXTURES:-}
export PATH="$KTSTR_BIN:$top/scripts:$PATH"

passed=0 failed=0 skipped=0
failures=()
t_all=$(date +%s.%N)

echo "== unit tests ($BUILD/bin/ktstr-unit)"
if "$KTSTR_BIN/ktstr-unit" --no-path-filenames=true; then
    passed=$((passed + 1))
else
    failed=$((failed + 1)); failures+=("unit tests")
fi

scripts=$(ls tests/e2e/*.sh 2>/dev/null | grep -v '/lib\.sh$')
[ "$mode" = e2e ] && scripts="$scripts $(ls tests/e2e/slow/*.sh 2>/dev/null)"
logdir="$top/$BUILD/test-logs"
mkdir -p "$logdir"
for s in $scripts; do
    [ -n "${KTSTR_TEST_FILTER:-}" ] && ! [[ "$s" =~ $KTSTR_TEST_FILTER ]] && continue
    name=${s#tests/e2e/}
    log="$logdir/${name//\//_}.log"
    t0=$(date +%s.%N)
    bash "$s" >"$log" 2>&1
    rc=$?
    dt=$(echo "$(date +%s.%N) - $t0" | bc)
    case $rc in
    0) passed=$((passed + 1)); printf '== PASS %-40s %6.1fs\n' "$name" "$dt" ;;
    77) skipped=$((skipped + 1)); printf '== SKIP %-40s %s\n' "$name" "$(tail -n 1 "$log")" ;;
    *) failed=$((failed + 1)); failures+=("$name")
       printf '== FAIL %-40s %6.1fs (exit %d); last lines of %s:\n' "$name" "$dt" "$rc" "$log"
       tail -n 30 "$log" | sed 's/^/   | /' ;;
    esac
done
printf '== total %.0fs\n' "$(echo "$(date +%s.%N) - $t_all" | bc)"
[ ${#failures[@]} -gt 0 ] && printf '== failed: %s\n' "${failures[*]}"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
