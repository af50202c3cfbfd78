#!/bin/bash
# ktstr-report end to end on constructed fixtures: exit codes of every
# verdict, stdin, pairing, JSON, JUnit validated against its schema with
# xmllint, HTML self-contained, compare exit codes.  No VM; a second or two.
. "$(dirname "$0")/lib.sh"
F="$KTSTR_TOP/tests/fixtures/report"

# verdicts and exit codes
run_rc ktstr-report "$F/pass.jsonl" "$F/pass.monitor.jsonl" >"$TMP/pass.txt"
assert_eq 0 "$RC" "pass exit code"
assert_contains "$(cat "$TMP/pass.txt")" "RESULT: PASS" "pass summary"
assert_contains "$(cat "$TMP/pass.txt")" "pass.jsonl + " "vmm and monitor streams paired by stem"

run_rc ktstr-report "$F/fail.jsonl" "$F/fail.monitor.jsonl" --junit "$TMP/junit.xml" --html "$TMP/r.html" >"$TMP/fail.txt"
assert_eq 1 "$RC" "fail exit code"
out=$(cat "$TMP/fail.txt")
assert_contains "$out" "stuck 2500ms on cpu1 at +1200ms (threshold 2000ms)" "upstream wording of the gap check"
assert_contains "$out" "cgroup cg_0, cpu 1, lasted 2500ms" "finding context"
assert_contains "$out" "imbalance ratio 12.0 exceeded threshold 4.0" "monitor finding"
assert_contains "$out" "during step 1" "monitor finding placed on its step"

run_rc ktstr-report "$F/truncated.jsonl" >"$TMP/trunc.txt"
assert_eq 2 "$RC" "truncated input is inconclusive"
assert_contains "$(cat "$TMP/trunc.txt")" "input cut short" "truncation reported"

run_rc ktstr-report "$F/never_started.jsonl" >/dev/null
assert_eq 2 "$RC" "guest never reached a scenario"

run_rc ktstr-report "$F/badschema.jsonl" 2>"$TMP/err" >/dev/null
assert_eq 2 "$RC" "unknown major schema"
assert_contains "$(cat "$TMP/err")" "badschema.jsonl:2: unsupported schema version" "error names file:line"

run_rc ktstr-report "$F/unknown_fields.jsonl" >/dev/null
assert_eq 0 "$RC" "unknown fields and events ignored"

# stdin, and --json
run_rc ktstr-report --json <"$F/fail.jsonl" >"$TMP/fail.json"
assert_eq 1 "$RC" "stdin + --json exit code"
assert_eq '"ktstr.report/1" "fail" 1' "$(jq -r '[.schema, .verdict, .exit_code] | map(tojson) | join(" ")' "$TMP/fail.json")" "JSON document"
assert_eq 1 "$(wc -l <"$TMP/fail.json")" "JSON is one line"

# JUnit against the schema
if command -v xmllint >/dev/null; then
    xmllint --noout --schema "$F/junit.xsd" "$TMP/junit.xml" || die "junit.xml does not validate"
    echo "ok: junit.xml validates against junit.xsd"
    ktstr-report "$F/pass.jsonl" "$F/skip.jsonl" "$F/truncated.jsonl" --junit "$TMP/j2.xml" >/dev/null || true
    xmllint --noout --schema "$F/junit.xsd" "$TMP/j2.xml" || die "j2.xml does not validate"
    assert_eq 4 "$(xmllint --xpath 'count(//testcase)' "$TMP/j2.xml")" "one testcase per scenario and topology"
    assert_eq 1 "$(xmllint --xpath 'count(//testcase/skipped)' "$TMP/j2.xml")" "skipped scenario"
    assert_eq 1 "$(xmllint --xpath 'count(//testcase/error)' "$TMP/j2.xml")" "inconclusive scenario is an error"
else
    echo "note: xmllint missing (libxml2-utils): JUnit schema validation skipped"
fi

# HTML: self-contained
grep -q '<svg class="timeline"' "$TMP/r.html" || die "no timeline SVG"
! grep -Eq '(src|href)=|url\(|<script|<link' "$TMP/r.html" || die "HTML refers to external resources"
echo "ok: HTML self-contained with a timeline"

# a bad output path is an environment error and leaves nothing behind
run_rc ktstr-report "$F/pass.jsonl" --junit /nonexistent/dir/j.xml 2>/dev/null >/dev/null
assert_eq 3 "$RC" "unwritable --junit"

# compare: exit 1 on a regression, 0 without
mkdir -p "$TMP/A" "$TMP/B"
cp "$F/pass.jsonl" "$TMP/A/r1.jsonl"
sed -e 's/"max_gap_ms":15,/"max_gap_ms":2015,/' -e 's/"worst_gap_ms":15,/"worst_gap_ms":2015,/' "$F/pass.jsonl" >"$TMP/B/r1.jsonl"
run_rc ktstr-report compare "$TMP/A" "$TMP/B" >"$TMP/cmp.txt"
assert_eq 1 "$RC" "compare exit code on a regression"
assert_contains "$(cat "$TMP/cmp.txt")" "worst_gap_ms: 15 -> 2015 ms" "regression listed with its magnitude"
run_rc ktstr-report compare "$TMP/A" "$TMP/A" >/dev/null
assert_eq 0 "$RC" "compare of a set with itself"
run_rc ktstr-report compare "$TMP/A" 2>/dev/null
assert_eq 2 "$RC" "compare usage error"

grep -q "inconclusive" <<<"$(ktstr-report --help)" || die "--help does not explain inconclusive"
echo "ok: --help documents the verdicts"
