#!/bin/bash
# The HTML report opened in headless Chromium (Debian's chromium): the
# screenshot must show the verdict banner in the verdict's colour and the
# per-CPU timelines drawn (nr_running blue, DSQ depth orange, a shaded
# violation) in the timeline area.  Slow (Chromium start-up, ~10 s), so it
# runs under `make e2e` only.  Needs: scripts/install-deps.sh --e2e
#
# Input: the constructed fixtures in tests/fixtures/report (a failing run with a
# violation, a passing one), then a real run: steady under scx_simple on the
# fixture kernel (TCG) through the porcelain with the monitor attached, or the
# directory KTSTR_REPORT_RUN names (its *.jsonl from ktstr-vmm/ktstr-monitor).
. "$(dirname "$0")/../lib.sh"
need_cmd chromium
need_cmd python3
F="$KTSTR_TOP/tests/fixtures/report"

shoot() { # shoot HTML PNG
    timeout 120 chromium --headless --no-sandbox --disable-gpu --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$TMP/chromium-profile" --hide-scrollbars --window-size=1200,900 \
        --screenshot="$2" "file://$1" >"$TMP/chromium.log" 2>&1 ||
        { tail -n 20 "$TMP/chromium.log"; die "chromium failed"; }
    [ -s "$2" ] || die "no screenshot written"
}

# check_png PNG BANNER_RGB: the banner colour at the top, timeline colours below it
check_png() {
    python3 - "$@" <<'PY'
import struct, sys, zlib

def read_png(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, w = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and ctype in (2, 6) and interlace == 0, "unsupported PNG layout"
            bpp = 4 if ctype == 6 else 3
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, stride = zlib.decompress(idat), w * bpp
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1: line[i] = (line[i] + a) & 255
            elif f == 2: line[i] = (line[i] + b) & 255
            elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(line)
        prev = line
    return w, h, bpp, rows

w, h, bpp, rows = read_png(sys.argv[1])
px = lambda x, y: tuple(rows[y][x * bpp:x * bpp + 3])
near = lambda p, q, tol=40: all(abs(a - b) <= tol for a, b in zip(p, q))
want = tuple(int(sys.argv[2][i:i + 2], 16) for i in (0, 2, 4))
errors = []
for x, y in ((8, 8), (600, 5), (1150, 40)):
    if not near(px(x, y), want, 12):
        errors.append("banner pixel (%d,%d) is %s, want %s" % (x, y, px(x, y), want))
# the timeline area: below the banner and run header, above the fold
counts = {"nr_running": 0, "dsq": 0, "violation": 0, "ink": 0}
colours = {"nr_running": (0x15, 0x65, 0xc0), "dsq": (0xe6, 0x51, 0x00), "violation": (0xf4, 0xd4, 0xd4)}
for y in range(150, min(h, 700)):
    for x in range(80, min(w, 1100)):
        p = px(x, y)
        if p != (255, 255, 255): counts["ink"] += 1
        for k, c in colours.items():
            if near(p, c, 30 if k != "violation" else 12): counts[k] += 1
print("pixel counts in the timeline area:", counts)
real = len(sys.argv) > 3 and sys.argv[3] == "real"   # a passing run may keep every DSQ empty
for k, least in (("nr_running", 300), ("dsq", 0 if real else 300), ("ink", 5000)):
    if counts[k] < least:
        errors.append("timeline: only %d %s pixels (want >= %d)" % (counts[k], k, least))
if len(sys.argv) > 3 and sys.argv[3] == "violation" and counts["violation"] < 500:
    errors.append("no shaded violation in the timeline")
for e in errors: print("FAIL:", e)
sys.exit(1 if errors else 0)
PY
}

# ---- constructed fixtures: a failing report and a passing one ---------------------------
run_rc ktstr-report "$F/fail.jsonl" "$F/fail.monitor.jsonl" --html "$TMP/fail.html" >/dev/null
assert_eq 1 "$RC" "the constructed failing run fails"
shoot "$TMP/fail.html" "$TMP/fail.png"
check_png "$TMP/fail.png" c62828 violation || die "failing report screenshot"
echo "ok: FAIL banner red, timelines and the violation drawn"
ktstr-report "$F/pass.jsonl" "$F/pass.monitor.jsonl" --html "$TMP/pass.html" >/dev/null
shoot "$TMP/pass.html" "$TMP/pass.png"
check_png "$TMP/pass.png" 2e7d32 || die "passing report screenshot"
echo "ok: PASS banner green, timelines drawn"

# ---- a real run on the fixture kernel -----------------------------------------------------
if [ -n "${KTSTR_REPORT_RUN:-}" ]; then
    real=$KTSTR_REPORT_RUN
    echo "real run: $real"
else
    need_fixture
    need_cmd qemu-system-x86_64
    real="$TMP/real"
    run_rc "$KTSTR_TOP/scripts/ktstr" run --kernel "$KTSTR_FIXTURES" --accel tcg --topology 1n2l2c1t \
        --scheduler scx_simple --scenario steady --out "$real" >/dev/null 2>"$TMP/real.err"
    cat "$TMP/real.err"
    assert_eq 0 "$RC" "real run (steady, scx_simple, 1n2l2c1t)"
fi
ls "$real"/*.monitor.jsonl >/dev/null 2>&1 || die "no monitor stream in $real: the timelines need one"
run_rc ktstr-report "$real" --html "$TMP/real.html" >/dev/null
[ "$RC" -le 2 ] || die "ktstr-report exit $RC"
colour=$(grep -o 'id="verdict" style="background:#[0-9a-f]*' "$TMP/real.html" | sed 's/.*#//')
[ -n "$colour" ] || die "no verdict banner in the HTML"
shoot "$TMP/real.html" "$TMP/real.png"
check_png "$TMP/real.png" "$colour" real || die "real report screenshot"
echo "ok: real run: banner #$colour and the per-CPU timelines drawn"
cp "$TMP"/*.png "${KTSTR_BIN%/bin}/test-logs/" 2>/dev/null || true
