# Shared helpers for tests/e2e/*.sh (sourced).  Each script is one test:
# exit 0 pass, 77 skip (last line says why), anything else fail.
set -euo pipefail
: "${KTSTR_BIN:?run through make test / scripts/run-tests.sh}"
export PATH="$KTSTR_BIN:$PATH"
TMP=$(mktemp -d /tmp/ktstr-e2e.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

skip() { echo "skip: $*"; exit 77; }
die() { echo "FAIL: $*" >&2; exit 1; }
assert_eq() { # assert_eq EXPECTED ACTUAL WHAT
    [ "$1" = "$2" ] || die "$3: expected '$1', got '$2'"
    echo "ok: $3 = '$2'"
}
assert_contains() { # assert_contains HAYSTACK NEEDLE WHAT
    case "$1" in *"$2"*) echo "ok: $3" ;; *) die "$3: '$2' not found in: $1" ;; esac
}
need_fixture() {
    [ -n "${KTSTR_FIXTURES:-}" ] && [ -f "$KTSTR_FIXTURES/bzImage" ] ||
        skip "fixture kernel not found (set KTSTR_FIXTURES to shared/fixtures/linux-6.12)"
}
need_cmd() { command -v "$1" >/dev/null 2>&1 || skip "$1 not installed (scripts/install-deps.sh)"; }
# run_rc CMD...: run, store the exit code in RC without tripping set -e.
run_rc() { set +e; "$@"; RC=$?; set -e; }
