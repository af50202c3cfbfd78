// Unit tests for libktstr/report: ingest, monitor verdict, verdicts, renderers.
// (A/B statistics are in test_report_compare.cpp.)
#include <doctest/doctest.h>

#include <cmath>
#include <sstream>

#include "../../libktstr/report/jsonscan.h"
#include "ktstr/report.h"
#include "ktstr/util.h"

using namespace ktstr;
using namespace ktstr::report;

namespace {

// Feed text (lines separated by '\n') as one source; last line may lack '\n'.
Run read_text(const std::string &text, const std::string &name = "t.jsonl") {
    Run r;
    r.label = name;
    r.sources.push_back(name);
    StreamReader rd(r, name);
    size_t start = 0, nl;
    while ((nl = text.find('\n', start)) != std::string::npos) {
        rd.line(std::string_view(text).substr(start, nl - start));
        start = nl + 1;
    }
    bool unterminated = start < text.size();
    if (unterminated) rd.line(std::string_view(text).substr(start));
    rd.finish(unterminated);
    return r;
}

std::string vmm(const std::string &event, double t, const std::string &rest = "") {
    return cat("{\"schema\":\"ktstr.vmm/1\",\"event\":\"", event, "\",\"elapsed_s\":", t, rest.empty() ? "" : ",", rest, "}\n");
}

// A monitor sample line: per CPU nr_running, dsq, rq_clock, optional vcpu time.
struct Cpu {
    uint32_t nr;
    uint32_t dsq;
    uint64_t clock;
    int64_t vcpu = -1;
};
std::string sample(double ms, const std::vector<Cpu> &cpus, const std::string &events = "") {
    std::string s = cat("{\"schema\":\"ktstr.monitor/1\",\"event\":\"sample\",\"elapsed_ms\":", ms, ",\"cpus\":[");
    for (size_t i = 0; i < cpus.size(); ++i) {
        s += cat(i ? "," : "", "{\"cpu\":", i, ",\"nr_running\":", cpus[i].nr, ",\"scx_nr_running\":0,\"local_dsq_depth\":",
                 cpus[i].dsq, ",\"rq_clock\":", cpus[i].clock, ",\"scx_flags\":0");
        if (cpus[i].vcpu >= 0) s += cat(",\"vcpu_cpu_time_ns\":", cpus[i].vcpu);
        if (!events.empty()) s += cat(",\"event_counters\":", events);
        s += "}";
    }
    return s + "]}\n";
}

// n samples, 2 CPUs, advancing clocks; `bad(i)` gives an imbalanced sample.
MonitorData monitor_series(size_t n, const std::function<bool(size_t)> &imbalanced) {
    std::string text;
    for (size_t i = 0; i < n; ++i) {
        uint64_t clk = 1000000 + i * 100000000ull;
        text += imbalanced(i) ? sample(100.0 * i, {{10, 0, clk}, {1, 0, clk + 1}}) : sample(100.0 * i, {{2, 0, clk}, {2, 0, clk + 1}});
    }
    return read_text(text).monitor;
}

const std::string MON_END = "{\"schema\":\"ktstr.monitor/1\",\"event\":\"end\",\"elapsed_ms\":9,\"reason\":\"eof\"}\n";

} // namespace

// ---- scanner and ingest ------------------------------------------------------------

TEST_CASE("JsonScan validates while it skips") {
    using ktstr::report::detail::JsonScan;
    auto valid = [](const char *t) {
        JsonScan s(t);
        return s.skip() && s.at_end();
    };
    CHECK(valid(R"({"a":[1,2.5,-3e2,{"b":null,"c":true,"d":"x\"y"}],"e":false})"));
    CHECK(valid("  [ ]  "));
    CHECK_FALSE(valid(R"({"a":1,})"));
    CHECK_FALSE(valid(R"({"a":1)"));
    CHECK_FALSE(valid(R"({"a":01x})"));
    CHECK_FALSE(valid(R"({"a":"unterminated})"));
    CHECK_FALSE(valid(R"({"a" 1})"));
    CHECK_FALSE(valid(R"([1 2])"));
    CHECK_FALSE(valid("{\"a\":\"tab\there\"}"));   // raw control character in a string
}

TEST_CASE("sample lines: fields, absent vcpu time, event counter sums, unknown fields ignored") {
    Run r = read_text(
        "{\"schema\":\"ktstr.monitor/1\",\"event\":\"meta\",\"elapsed_ms\":1,\"hz\":1000,\"preemption_threshold_ns\":10000000,\"new\":{}}\n"
        "{\"future\":[1,{\"x\":2}],\"cpus\":[{\"nr_running\":3,\"local_dsq_depth\":7,\"rq_clock\":123456789012,\"vcpu_cpu_time_ns\":5,"
        "\"event_counters\":{\"select_cpu_fallback\":4,\"dispatch_keep_last\":1,\"brand_new_counter\":9}},"
        "{\"nr_running\":1,\"rq_clock\":2,\"event_counters\":{\"select_cpu_fallback\":6}}],"
        "\"event\":\"sample\",\"elapsed_ms\":612.5,\"schema\":\"ktstr.monitor/1\"}\n" +
        MON_END);
    const MonitorData &m = r.monitor;
    REQUIRE(m.samples.size() == 1);
    CHECK(m.preemption_threshold_ns == 10000000);
    CHECK(m.hz == 1000);
    const MonitorSample &s = m.samples[0];
    CHECK(s.elapsed_ms == 612.5);
    REQUIRE(s.count == 2);
    CHECK(m.cpus(s)[0].nr_running == 3);
    CHECK(m.cpus(s)[0].local_dsq_depth == 7);
    CHECK(m.cpus(s)[0].rq_clock == 123456789012ull);
    CHECK(m.cpus(s)[0].vcpu_cpu_time_ns == 5);
    CHECK(m.cpus(s)[1].vcpu_cpu_time_ns == -1);
    CHECK(s.events.present);
    CHECK(s.events.sum[monitor::SCX_EV_SELECT_CPU_FALLBACK] == 10);
    CHECK(s.events.sum[monitor::SCX_EV_DISPATCH_KEEP_LAST] == 1);
    CHECK(m.ended);
    CHECK(r.truncated.empty());
}

TEST_CASE("vmm events: scenario, steps, workers, checks; unknown events ignored") {
    std::string t = vmm("boot", 0.1, R"("accel":"tcg","topology":"1n2l2c1t","cpus":4,"kernel":"6.12.0","x":{"y":1})") +
                    vmm("layout_v9", 0.2, R"("whatever":[1,2])") +
                    vmm("scenario_start", 1.0, R"("scenario":"steady","scheduler":"scx_simple","flags":["llc","borrow"])") +
                    vmm("step", 1.5, R"("step_index":0,"elapsed_ms":500,"op_count":0,"cgroup_count":2,"worker_count":4)") +
                    vmm("worker_report", 3.0, R"("cgroup":"cg_0","report":{"tid":7,"work_units":0,"wall_time_ns":1000,"cpu_time_ns":400,"cpus_used":[3,1,1]})") +
                    vmm("check", 3.0, R"J("passed":false,"details":[{"kind":"Starved","message":"tid 7 starved (0 work units)"}],"cgroup":"cg_0")J") +
                    vmm("check", 3.0, R"("check":"spread","passed":true)") +
                    vmm("scenario_end", 3.1, R"J("passed":false,"details":[{"kind":"Starved","message":"tid 7 starved (0 work units)"}])J") +
                    vmm("exit", 3.5, R"("reason":"guest_exit","exit_code":1)");
    Run r = read_text(t);
    CHECK(r.has_vmm);
    CHECK(r.topology == "1n2l2c1t");
    CHECK(r.cpus == 4);
    CHECK(r.ignored_events == 1);
    REQUIRE(r.scenarios.size() == 1);
    const ScenarioRun &s = r.scenarios[0];
    CHECK(s.name == "steady");
    CHECK(s.flags == std::vector<std::string>{"borrow", "llc"});
    CHECK(s.checks_seen == 2);
    CHECK(s.ended);
    REQUIRE(s.steps.size() == 1);
    CHECK(s.steps[0].at_s == 1.5);
    REQUIRE(s.workers.size() == 1);
    CHECK(s.workers[0].tid == 7);
    CHECK(s.workers[0].off_cpu_ns == 600);   // derived from wall - cpu when absent
    CHECK(s.workers[0].cpus_used == std::vector<int>{1, 3});
    REQUIRE(s.findings.size() == 1);         // the same detail in check and scenario_end is kept once
    CHECK(s.findings[0].message == "tid 7 starved (0 work units)");
    CHECK(s.findings[0].cgroup == "cg_0");
    CHECK(r.truncated.empty());
}

TEST_CASE("unknown major schema is rejected naming file:line; other kinds are ignored") {
    std::string bad = vmm("boot", 0.1) + "{\"schema\":\"ktstr.vmm/2\",\"event\":\"boot\"}\n";
    CHECK_THROWS_WITH(read_text(bad, "x.jsonl"), doctest::Contains("x.jsonl:2: unsupported schema version \"ktstr.vmm/2\""));
    CHECK_THROWS_WITH(read_text("{\"schema\":\"ktstr.monitor/7\",\"event\":\"sample\",\"cpus\":[]}\n", "m.jsonl"),
                      doctest::Contains("m.jsonl:1: unsupported schema version"));
    CHECK_THROWS_WITH(read_text("{\"event\":\"boot\"}\n", "n.jsonl"), doctest::Contains("n.jsonl:1: line has no \"schema\""));
    Run r = read_text("{\"schema\":\"ktstr.kernel/1\",\"bzimage\":\"x\"}\n" + vmm("exit", 1, "\"exit_code\":0"));
    CHECK(r.ignored_events == 1);
}

TEST_CASE("truncation: a broken last line is recorded, a broken middle line is an error") {
    std::string head = vmm("boot", 0.1) + vmm("scenario_start", 1, R"("scenario":"steady")");
    Run r = read_text(head + "{\"schema\":\"ktstr.vmm/1\",\"event\":\"che", "c.jsonl");
    REQUIRE(r.truncated.size() == 2);
    CHECK(r.truncated[0] == "c.jsonl:3: last line is incomplete (no newline): input cut short");
    CHECK(r.truncated[1] == "c.jsonl: no exit event from ktstr-vmm: the run was cut short");
    CHECK(r.scenarios.size() == 1);
    CHECK_THROWS_WITH(read_text(head + "{\"schema\":\"ktstr.vmm/1\",\"ev\n" + vmm("exit", 2), "d.jsonl"),
                      doctest::Contains("d.jsonl:3: invalid JSON"));
    // A truncated monitor sample: the good samples before it are kept.
    std::string mon = sample(100, {{1, 0, 5}}) + sample(200, {{1, 0, 6}});
    Run m = read_text(mon + mon.substr(0, 40), "m.jsonl");
    CHECK(m.monitor.samples.size() == 2);
    CHECK(m.monitor.readings.size() == 2);   // the partial line's readings were rolled back
    REQUIRE(m.truncated.size() == 2);
    CHECK(m.truncated[1] == "m.jsonl: no end event from ktstr-monitor: the monitor was cut short");
    Run e = read_text("", "e.jsonl");
    CHECK(e.truncated == std::vector<std::string>{"e.jsonl: empty input"});
}

TEST_CASE("a sample with wrongly typed cpu fields is an input error, not a crash") {
    CHECK_THROWS_WITH(read_text("{\"schema\":\"ktstr.monitor/1\",\"event\":\"sample\",\"cpus\":[{\"nr_running\":\"3\"}]}\n" + MON_END, "s.jsonl"),
                      doctest::Contains("s.jsonl:1: sample"));
}

// ---- monitor summary and verdict (monitor.md 8) ------------------------------------------
//
// The rules themselves are libktstr/monitor's and tested in test_monitor.cpp;
// these tests cover what report adds: the rebuilt samples, indices and times
// on the stream, warmup, thresholds from the scenario's checks.

TEST_CASE("stored samples rebuild as the monitor library's samples") {
    Run r = read_text(sample(612.4, {{3, 7, 99, 5}, {1, 0, 2}}, "{\"select_cpu_fallback\":4,\"dispatch_keep_last\":1}") +
                      sample(700, {{0, 0, 3}}));
    monitor::Sample s;
    monitor_sample(r.monitor, 0, s);
    CHECK(s.elapsed_ms == 612);
    REQUIRE(s.cpus.size() == 2);
    CHECK(s.cpus[0].nr_running == 3);
    CHECK(s.cpus[0].local_dsq_depth == 7);
    CHECK(s.cpus[0].rq_clock == 99);
    CHECK(s.cpus[0].vcpu_cpu_time_ns == 5u);
    CHECK_FALSE(s.cpus[1].vcpu_cpu_time_ns);
    // per-CPU counters 4 + 4 and 1 + 1, summed on ingest: the sums are what the monitor reads
    CHECK(monitor::sum_event(s, monitor::SCX_EV_SELECT_CPU_FALLBACK) == 8);
    CHECK(monitor::sum_event(s, monitor::SCX_EV_DISPATCH_KEEP_LAST) == 2);
    monitor_sample(r.monitor, 1, s);   // storage reused: nothing of the previous sample survives
    REQUIRE(s.cpus.size() == 1);
    CHECK_FALSE(s.cpus[0].events);
    CHECK_FALSE(monitor::sum_event(s, 0));
}

TEST_CASE("sustained imbalance: findings carry stream indices and host times") {
    monitor::Thresholds t;   // ratio 4.0, 5 samples
    MonitorData five = monitor_series(12, [](size_t i) { return i >= 3 && i < 8; });
    MonitorEvaluation e = evaluate_monitor(five, t, 0);
    CHECK(e.verdict.evaluated);
    CHECK_FALSE(e.verdict.passed);
    REQUIRE(e.verdict.violations.size() == 1);
    const auto &v = e.verdict.violations[0];
    CHECK(v.message == "imbalance ratio 10.0 exceeded threshold 4.0 for 5 consecutive samples (ending at sample 7)");
    CHECK(v.first() == 3);
    CHECK(violation_span(five, v).start_ms == 300);
    CHECK(violation_span(five, v).end_ms == 700);
    CHECK(e.verdict.summary == "monitor FAILED: 1 violation(s)");
    // after skipping 2 samples the indices still count from the start of the stream
    MonitorEvaluation skipped = evaluate_monitor(five, t, 2);
    REQUIRE(skipped.verdict.violations.size() == 1);
    CHECK(skipped.verdict.violations[0].at == 7);
    CHECK(skipped.summary.total_samples == 10);

    MonitorData four = monitor_series(12, [](size_t i) { return i >= 3 && i < 7; });
    CHECK(evaluate_monitor(four, t, 0).verdict.passed);
    CHECK(evaluate_monitor(four, t, 0).verdict.summary == "monitor OK");
}

TEST_CASE("monitor evaluation: no samples, not initialized, stall per cpu, rates, warmup, checks") {
    monitor::Thresholds t;
    MonitorEvaluation e0 = evaluate_monitor(MonitorData{}, t, 0);
    CHECK(e0.verdict.passed);
    CHECK_FALSE(e0.verdict.evaluated);
    CHECK(e0.verdict.summary == "no monitor samples");
    CHECK(evaluate_monitor(monitor_series(3, [](size_t) { return false; }), t, 5).verdict.summary == "no monitor samples");

    std::string same;
    for (int i = 0; i < 8; ++i) same += sample(100.0 * i, {{5, 0, 42}, {1, 0, 42}});
    MonitorEvaluation e1 = evaluate_monitor(read_text(same).monitor, t, 0);
    CHECK(e1.verdict.passed);
    CHECK_FALSE(e1.verdict.evaluated);
    CHECK(e1.verdict.summary == "monitor data not yet initialized (every rq_clock is identical)");

    std::string garbage = sample(0, {{1, 0, 1}}) + sample(100, {{1, 20000, 2}});
    CHECK(evaluate_monitor(read_text(garbage).monitor, t, 0).verdict.summary ==
          "monitor data not yet initialized (sample 1 has a local DSQ depth over 10000)");

    // cpu1's clock freezes for 6 samples while busy; cpu0 is fine
    std::string st;
    for (int i = 0; i < 10; ++i)
        st += sample(100.0 * i, {{1, 0, 1000u + i * 100u}, {1, 0, i >= 2 && i < 8 ? 777u : 1000u + i * 100u}});
    MonitorEvaluation e2 = evaluate_monitor(read_text(st).monitor, t, 0);
    REQUIRE(e2.verdict.violations.size() == 1);
    CHECK(e2.verdict.violations[0].check == "stall");
    CHECK(e2.verdict.violations[0].cpu == 1u);
    CHECK(e2.verdict.violations[0].message ==
          "cpu1 stalled: rq_clock stuck at 777 with runnable tasks for 5 consecutive samples (ending at sample 7)");
    CHECK(e2.summary.stall_detected);
    monitor::Thresholds no_stall = t;
    no_stall.fail_on_stall = false;
    CHECK(evaluate_monitor(read_text(st).monitor, no_stall, 0).verdict.passed);

    // fallback rate: +30 per 100 ms = 300/s > 200/s for 6 intervals; one zero-length interval
    std::string ev;
    for (int i = 0; i < 8; ++i)
        ev += sample(i == 7 ? 600.0 : 100.0 * i, {{1, 0, 1000u + i}}, cat("{\"select_cpu_fallback\":", 30 * i, "}"));
    MonitorEvaluation e3 = evaluate_monitor(read_text(ev).monitor, t, 0);
    REQUIRE(e3.verdict.violations.size() == 1);
    CHECK(e3.verdict.violations[0].message ==
          "select_cpu_fallback rate 300.0/s exceeded threshold 200.0/s for 6 consecutive samples (ending at sample 6)");
    REQUIRE(e3.summary.event_deltas);
    CHECK((*e3.summary.event_deltas)[monitor::SCX_EV_SELECT_CPU_FALLBACK] == 210);
    CHECK(e3.summary.fallback_rate == doctest::Approx(350.0));

    // warmup: 20 samples skipped only when there are more than 20
    CHECK(warmup_skip(monitor_series(20, [](size_t) { return false; })) == 0);
    CHECK(warmup_skip(monitor_series(21, [](size_t) { return false; })) == 20);
    MonitorData early = monitor_series(30, [](size_t i) { return i < 10; });
    CHECK_FALSE(evaluate_monitor(early, t, 0).verdict.passed);
    CHECK(evaluate_monitor(early, t, warmup_skip(early)).verdict.passed);

    // the meta line's threshold wins; else 10 ticks of its HZ; else HZ 250
    MonitorData m;
    CHECK(preemption_threshold_ns(m) == 40000000);
    m.hz = 1000;
    CHECK(preemption_threshold_ns(m) == 10000000);
    m.preemption_threshold_ns = 123;
    CHECK(preemption_threshold_ns(m) == 123);

    CHECK_THROWS_WITH(thresholds_from_checks(t, json{{"sustained_samples", 0}}), doctest::Contains("at least 1"));
    monitor::Thresholds t2 = thresholds_from_checks(t, json{{"max_imbalance_ratio", 12.5}, {"fail_on_stall", false}, {"unknown", 1}});
    CHECK(t2.max_imbalance_ratio == 12.5);
    CHECK_FALSE(t2.fail_on_stall);
}

TEST_CASE("event counters near the int64 limits saturate instead of overflowing") {
    std::string big = sample(0, {{1, 0, 1}, {1, 0, 2}}, "{\"select_cpu_fallback\":9223372036854775807}") +
                      sample(100, {{1, 0, 3}, {1, 0, 4}}, "{\"select_cpu_fallback\":-9223372036854775807}");
    Run r = read_text(big);
    CHECK(r.monitor.samples[0].events.sum[0] == INT64_MAX);
    MonitorEvaluation e = evaluate_monitor(r.monitor, monitor::Thresholds{}, 0);
    REQUIRE(e.summary.event_deltas);
    CHECK((*e.summary.event_deltas)[0] == 0);   // a drop is clamped to 0
}

TEST_CASE("differing CPU counts between samples do not read past the shorter one") {
    std::string t;
    for (int i = 0; i < 8; ++i)
        t += i % 2 ? sample(100.0 * i, {{1, 0, 5}}) : sample(100.0 * i, {{1, 0, 5}, {3, 0, 7}, {1, 0, 9}});
    monitor::Verdict v = evaluate_monitor(read_text(t).monitor, monitor::Thresholds{}, 0).verdict;
    CHECK(v.evaluated);
    REQUIRE(v.violations.size() == 1);   // cpu0 frozen at clock 5 while busy
    CHECK(v.violations[0].cpu == 0u);
}

// ---- cgroup stats and verdicts --------------------------------------------------------

TEST_CASE("cgroup stats: spread, worst gap keeps its cpu, percentiles") {
    std::vector<WorkerReport> w(3);
    w[0].cgroup = w[1].cgroup = "a";
    w[2].cgroup = "b";
    w[0].wall_time_ns = 1000; w[0].off_cpu_ns = 100; w[0].max_gap_ms = 30; w[0].max_gap_cpu = 2; w[0].cpus_used = {0, 1};
    w[1].wall_time_ns = 1000; w[1].off_cpu_ns = 350; w[1].max_gap_ms = 80; w[1].max_gap_cpu = 3; w[1].cpus_used = {1, 3};
    w[0].iterations = 100; w[1].iterations = 300; w[0].migration_count = 4;
    for (uint64_t i = 1; i <= 100; ++i) w[0].resume_latencies_ns.push_back(i * 1000);
    w[2].wall_time_ns = 1000; w[2].off_cpu_ns = 0;
    w[2].resume_latencies_ns = {5000, 1000, 3000, 2000};
    auto s = cgroup_stats(w);
    REQUIRE(s.size() == 2);
    CHECK(s[0].name == "a");
    CHECK(s[0].workers == 2);
    CHECK(s[0].cpus == std::vector<int>{0, 1, 3});
    CHECK(s[0].spread_pct == doctest::Approx(25.0));
    CHECK(s[0].max_gap_ms == 80);
    CHECK(s[0].max_gap_cpu == 3);
    CHECK(s[0].migration_ratio == doctest::Approx(0.01));
    CHECK(s[0].p99_wake_us == 99.0);         // n=100: sorted[98]
    CHECK(s[0].median_wake_us == 51.0);      // sorted[n/2]
    CHECK(s[1].spread_pct == 0);             // one worker: no spread
    CHECK(s[1].median_wake_us == 3.0);       // median of 4 = sorted[2]
    CHECK(s[1].p99_wake_us == 5.0);
    std::vector<WorkerReport> one(1);
    one[0].resume_latencies_ns = {777};
    CHECK(cgroup_stats(one)[0].p99_wake_us == doctest::Approx(0.777));
}

namespace {
std::string passing_scenario(const std::string &name, double t0, const std::string &sched = "") {
    std::string extra = sched.empty() ? "" : cat(",\"scheduler\":\"", sched, "\"");
    return vmm("scenario_start", t0, cat("\"scenario\":\"", name, "\"", extra)) +
           vmm("step", t0 + 0.5, "\"step_index\":0") + vmm("step", t0 + 1.5, "\"step_index\":1") +
           vmm("check", t0 + 2, "\"check\":\"starvation\",\"passed\":true") +
           vmm("scenario_end", t0 + 2, "\"passed\":true");
}
const std::string EXIT0 = vmm("exit", 9, "\"reason\":\"guest_exit\",\"exit_code\":0");
} // namespace

TEST_CASE("verdict: pass, fail, and a failure before a crash stays a failure") {
    Run ok = read_text(vmm("boot", 0) + passing_scenario("steady", 1) + EXIT0);
    RunResult r = evaluate_run(ok);
    CHECK(r.verdict == Verdict::pass);
    CHECK(exit_code_of(r.verdict) == 0);

    std::string failing = vmm("scenario_start", 1, "\"scenario\":\"steady\"") +
                          vmm("check", 2, R"J("passed":false,"kind":"Stuck","cgroup":"cg_1","message":"stuck 2500ms on cpu3 at +700ms (threshold 2000ms)")J");
    Run crashed = read_text(vmm("boot", 0) + failing);   // no scenario_end, no exit
    RunResult rc = evaluate_run(crashed);
    CHECK(rc.verdict == Verdict::fail);
    REQUIRE(rc.scenarios.size() == 1);
    REQUIRE(rc.scenarios[0].findings.size() == 1);
    const Finding &f = rc.scenarios[0].findings[0];
    CHECK(f.cpu == 3);
    CHECK(f.duration_ms == 2500);
    CHECK(f.at_s == doctest::Approx(1.7));
    CHECK(f.cgroup == "cg_1");
    CHECK(rc.reason.find("also: ") != std::string::npos);   // and it says the input was cut short
    std::vector<Run> runs{crashed};
    Report rep = evaluate_runs(runs);
    CHECK(rep.verdict == Verdict::fail);
    CHECK(exit_code_of(rep.verdict) == 1);
}

TEST_CASE("finding details read out of upstream wording") {
    auto finding = [](const std::string &message) {
        Run r = read_text(vmm("scenario_start", 10, "\"scenario\":\"s\"") +
                          vmm("check", 12, cat("\"passed\":false,\"kind\":\"Other\",\"message\":\"", message, "\"")));
        REQUIRE(r.scenarios.size() == 1);
        REQUIRE(r.scenarios[0].findings.size() == 1);
        return r.scenarios[0].findings[0];
    };
    Finding pinned = finding("pinned worker 7 on CPU 2 had 450ms gap (dispatch contention stall)");
    CHECK(pinned.cpu == 2);
    CHECK(pinned.duration_ms == 450);
    Finding died = finding("scheduler process died unexpectedly during workload (3.5s into test)");
    CHECK_FALSE(died.cpu);
    CHECK(died.at_s == doctest::Approx(13.5));
    CHECK(finding("local DSQ depth 60 on CPU 3 exceeded threshold 50").cpu == 3);   // "cpu N", any case
    CHECK(finding("cpu12 stalled").cpu == 12);
    CHECK_FALSE(finding("scpu12 and cpu12x").cpu);                                  // not inside words
    CHECK(finding("cpu99999999999999999999 stalled").cpu == 1000000000);          // clamped, no exception
}

TEST_CASE("verdict: inconclusive cases") {
    std::vector<Run> keep;   // results point into their runs
    keep.reserve(8);
    auto verdict_of = [&](const std::string &text) { keep.push_back(read_text(text)); return evaluate_run(keep.back()); };
    RunResult never = verdict_of(vmm("boot", 0) + vmm("exit", 30, R"("reason":"timeout","exit_code":3)"));
    CHECK(never.verdict == Verdict::inconclusive);
    CHECK(never.reason == "VM run failed: timeout (exit code 3); the guest never reached a scenario");

    RunResult cut = verdict_of(vmm("boot", 0) + passing_scenario("steady", 1));   // no exit event
    CHECK(cut.verdict == Verdict::inconclusive);
    CHECK(cut.scenarios[0].verdict == Verdict::pass);

    RunResult unfinished = verdict_of(vmm("scenario_start", 1, "\"scenario\":\"steady\"") + EXIT0);
    CHECK(unfinished.verdict == Verdict::inconclusive);
    CHECK(unfinished.scenarios[0].reason == "scenario did not finish (no scenario_end event)");

    RunResult nochecks = verdict_of(vmm("scenario_start", 1, "\"scenario\":\"s\"") + vmm("scenario_end", 2) + EXIT0);
    CHECK(nochecks.scenarios[0].verdict == Verdict::inconclusive);
    CHECK(nochecks.scenarios[0].reason == "no checks ran");

    Run skipped = read_text(vmm("scenario_start", 1, "\"scenario\":\"s\"") +
                            vmm("scenario_end", 2, R"("passed":true,"skipped":true,"details":[{"kind":"Skip","message":"not enough LLCs"}])") + EXIT0);
    RunResult rs = evaluate_run(skipped);
    CHECK(rs.verdict == Verdict::skip);
    CHECK(rs.scenarios[0].reason == "skipped: not enough LLCs");
    std::vector<Run> runs{skipped};
    Report rep = evaluate_runs(runs);
    CHECK(rep.verdict == Verdict::inconclusive);
    CHECK(exit_code_of(rep.verdict) == 2);

    std::vector<Run> none;
    CHECK(evaluate_runs(none).verdict == Verdict::inconclusive);
}

TEST_CASE("verdict: guest exit code 1 without any failing check fails the run") {
    Run run = read_text(vmm("boot", 0) + vmm("exit", 3, R"("reason":"scheduler died","exit_code":1)"));
    RunResult r = evaluate_run(run);
    CHECK(r.verdict == Verdict::fail);
    REQUIRE(r.findings.size() == 1);
    CHECK(r.findings[0].message == "guest reported a failed verdict (exit code 1, scheduler died)");
}

TEST_CASE("monitor findings: counted with a sched_ext scheduler, placed on the step, informational under EEVDF") {
    std::string mon;
    for (int i = 0; i < 40; ++i) {
        uint64_t clk = 1000 + i * 100000000ull;
        bool bad = i >= 26 && i < 33;   // 2.6 s .. 3.2 s, inside step 1 (from 2.5 s)
        mon += sample(100.0 * i, bad ? std::vector<Cpu>{{9, 0, clk}, {1, 0, clk + 1}} : std::vector<Cpu>{{2, 0, clk}, {2, 0, clk + 1}});
    }
    mon += MON_END;
    auto run_with = [&](const std::string &sched) {
        Run r = read_text(vmm("boot", 0) + passing_scenario("steady", 1, sched) + EXIT0);
        Run m = read_text(mon, "m.jsonl");
        r.monitor = m.monitor;
        return r;
    };
    Run scx = run_with("scx_simple");
    RunResult rr = evaluate_run(scx);
    CHECK(rr.monitor_counts);
    CHECK(rr.verdict == Verdict::fail);
    REQUIRE(rr.scenarios[0].findings.size() == 1);
    const Finding &f = rr.scenarios[0].findings[0];
    CHECK(f.source == "monitor");
    CHECK(f.step == 1);
    CHECK(f.at_s == doctest::Approx(2.6));
    CHECK(f.duration_ms == doctest::Approx(600));
    CHECK(rr.scenarios[0].reason == "passed scenario but monitor failed");

    Run eevdf = run_with("");
    RunResult re = evaluate_run(eevdf);
    CHECK_FALSE(re.monitor_counts);
    CHECK(re.verdict == Verdict::pass);
    REQUIRE(re.scenarios[0].notes.size() == 1);
    EvaluateOptions always;
    always.monitor = MonitorPolicy::always;
    CHECK(evaluate_run(eevdf, always).verdict == Verdict::fail);
    EvaluateOptions never;
    never.monitor = MonitorPolicy::never;
    CHECK(evaluate_run(scx, never).verdict == Verdict::pass);
}

TEST_CASE("step_at picks the step in force") {
    ScenarioRun s;
    s.steps = {StepMark{0, 1.0}, StepMark{1, 2.0}, StepMark{2, 3.0}};
    CHECK(step_at(s, 0.5) == -1);
    CHECK(step_at(s, 1.0) == 0);
    CHECK(step_at(s, 2.9) == 1);
    CHECK(step_at(s, 30) == 2);
}

// ---- renderers ----------------------------------------------------------------------------

namespace {
Run failing_run() {
    return read_text(vmm("boot", 0, R"("topology":"1n2l2c1t","kernel":"6.12.0")") +
                     vmm("scenario_start", 1, R"("scenario":"steady","topology":"1n2l2c1t")") +
                     vmm("worker_report", 2, R"("cgroup":"cg_0","tid":5,"work_units":0,"wall_time_ns":10)") +
                     vmm("check", 2, R"("passed":false,"kind":"Starved","cgroup":"cg_0","message":"tid 5 starved (0 work units) <&>")") +
                     vmm("scenario_end", 2.5, "\"passed\":false") + passing_scenario("cpuset_apply", 3) +
                     vmm("exit", 6, R"("reason":"guest_exit","exit_code":1,"console_tail":"bad\u0001byte")"));
}
} // namespace

TEST_CASE("text summary carries the upstream wording and the cgroup table") {
    std::vector<Run> runs{failing_run()};
    Report rep = evaluate_runs(runs);
    std::string t = render_text(rep);
    CHECK(t.find("FAIL  steady [1n2l2c1t]") != std::string::npos);
    CHECK(t.find("      tid 5 starved (0 work units) <&>\n") != std::string::npos);
    CHECK(t.find("cgroup cg_0") != std::string::npos);
    CHECK(t.find("PASS  cpuset_apply [1n2l2c1t]") != std::string::npos);
    CHECK(t.find("RESULT: FAIL (1 failed, 1 passed, 0 skipped, 0 inconclusive") != std::string::npos);
    CHECK(t.find("\033[") == std::string::npos);
    CHECK(render_text(rep, true).find("\033[1;31mRESULT: FAIL") != std::string::npos);
}

TEST_CASE("text summary: a run that never reached a scenario says so instead of zero counts") {
    std::vector<Run> runs{read_text(vmm("boot", 0, R"("topology":"1n1l2c1t","kernel":"6.12.0")") +
                                    vmm("exit", 3, R"("reason":"timeout","exit_code":3,"console_tail":"x")"))};
    Report rep = evaluate_runs(runs);
    std::string t = render_text(rep);
    CHECK(t.find("RESULT: INCONCLUSIVE (no scenario reported in 1 run; ") != std::string::npos);
    CHECK(t.find("0 failed") == std::string::npos);
}

TEST_CASE("JSON report: schema, verdict, exit code, findings") {
    std::vector<Run> runs{failing_run()};
    ojson j = render_json(evaluate_runs(runs));
    CHECK(j["schema"] == "ktstr.report/1");
    CHECK(j["verdict"] == "fail");
    CHECK(j["exit_code"] == 1);
    CHECK(j["counts"]["failed"] == 1);
    CHECK(j["runs"][0]["scenarios"][0]["findings"][0]["message"] == "tid 5 starved (0 work units) <&>");
    CHECK(j["runs"][0]["scenarios"][0]["cgroups"][0]["name"] == "cg_0");
    CHECK(j["runs"][0]["exit"]["exit_code"] == 1);
    // round-trips through the generic parser
    CHECK(json::parse(j.dump())["runs"].size() == 1);
}

TEST_CASE("JUnit: one testcase per scenario and topology, escaped, counts agree") {
    Run r = failing_run();
    Run r2 = read_text(vmm("boot", 0, R"("topology":"1n1l4c1t")") + vmm("exit", 30, R"("reason":"timeout","exit_code":3)"), "hung.jsonl");
    std::vector<Run> runs{r, r2};
    std::string x = render_junit(evaluate_runs(runs));
    CHECK(x.find("<testsuites name=\"ktstr\" tests=\"3\" failures=\"1\" errors=\"1\" skipped=\"0\"") != std::string::npos);
    CHECK(x.find("<testcase name=\"steady\" classname=\"ktstr.1n2l2c1t\"") != std::string::npos);
    CHECK(x.find("<testcase name=\"cpuset_apply\" classname=\"ktstr.1n2l2c1t\"") != std::string::npos);
    CHECK(x.find("<failure message=\"tid 5 starved (0 work units) &lt;&amp;&gt;\" type=\"Starved\">") != std::string::npos);
    CHECK(x.find("<error message=\"inconclusive: VM run failed: timeout (exit code 3)") != std::string::npos);
    CHECK(x.find("bad\\x01byte") != std::string::npos);     // control characters never reach the XML
    CHECK(x.find('\x01') == std::string::npos);
    size_t open = 0, close = 0;
    for (size_t p = 0; (p = x.find("<testcase ", p)) != std::string::npos; ++p) ++open;
    for (size_t p = 0; (p = x.find("</testcase>", p)) != std::string::npos; ++p) ++close;
    CHECK(open == 3);
    CHECK(close == 3);
}

TEST_CASE("HTML: self-contained, verdict banner first, one timeline row per CPU, step marks") {
    Run r = read_text(vmm("boot", 0) + passing_scenario("steady", 1, "scx_simple") + EXIT0);
    std::string mon;
    for (int i = 0; i < 30; ++i) mon += sample(100.0 * i, {{2, 1, 1000u + i}, {1, 0, 2000u + i}, {3, 2, 3000u + i}});
    r.monitor = read_text(mon + MON_END).monitor;
    std::vector<Run> runs{r};
    std::string h = render_html(evaluate_runs(runs));
    CHECK(h.rfind("<!DOCTYPE html>", 0) == 0);
    size_t banner = h.find("<div class=\"banner\" id=\"verdict\" style=\"background:#2e7d32\">PASS");
    CHECK(banner != std::string::npos);
    CHECK(banner < h.find("<svg"));
    CHECK(h.find("<g id=\"cpu2\">") != std::string::npos);
    CHECK(h.find("<g id=\"cpu3\">") == std::string::npos);
    CHECK(h.find("class=\"step-mark\"") != std::string::npos);
    CHECK(h.find("class=\"nr_running\"") != std::string::npos);
    CHECK(h.find("class=\"dsq\"") != std::string::npos);
    // nothing fetched from anywhere: no src/href attributes, no url(), no scripts
    CHECK(h.find("src=") == std::string::npos);
    CHECK(h.find("href=") == std::string::npos);
    CHECK(h.find("url(") == std::string::npos);
    CHECK(h.find("<script") == std::string::npos);
    CHECK(h.find("<link") == std::string::npos);
}

TEST_CASE("scheduler name: the binary's name from scenario_start, the ops name from older streams") {
    auto start = [](const std::string &sched) {
        return vmm("boot", 0) + vmm("scenario_start", 1, cat("\"scenario\":\"steady\",\"scheduler\":", sched)) +
               vmm("scenario_end", 3, "\"passed\":true") + EXIT0;
    };
    Run now = read_text(start(R"({"name":"scx_simple","path":"/ktstr-sched/scx_simple","pid":7,"ops":"simple"})"));
    REQUIRE(now.scenarios.size() == 1);
    CHECK(now.scenarios[0].scheduler == "scx_simple");
    Run older = read_text(start(R"({"pid":7,"ops":"simple","enable_s":0.1})"));
    CHECK(older.scenarios[0].scheduler == "simple");
    CHECK(read_text(start("\"eevdf\"")).scenarios[0].scheduler == "eevdf");
    // Arguments are part of the name: runs with and without -f stay apart.
    Run args = read_text(start(R"({"name":"scx_simple","args":["-f","-s","20000"],"ops":"simple"})"));
    CHECK(args.scenarios[0].scheduler == "scx_simple -f -s 20000");
}

TEST_CASE("per-step cpusets: read from step events, one line per step in text, CPU lists in JSON") {
    std::string stream = vmm("boot", 0) + vmm("scenario_start", 1, "\"scenario\":\"resize\"") +
                         vmm("step", 1.5, R"("step_index":0,"cpusets":{"cg_0":[0,1,2],"cg_1":null})") +
                         vmm("step", 2.5, R"("step_index":1,"cpusets":{"cg_0":[0],"cg_1":[1,3]})") +
                         vmm("scenario_end", 3, "\"passed\":true") + EXIT0;
    std::vector<Run> runs{read_text(stream)};
    REQUIRE(runs[0].scenarios.at(0).steps.size() == 2);
    CHECK(runs[0].scenarios[0].steps[0].cpusets.size() == 2);
    std::string t = render_text(evaluate_runs(runs));
    CHECK(t.find("    step 0 cpusets:  cg_0 0-2  cg_1 all\n") != std::string::npos);
    CHECK(t.find("    step 1 cpusets:  cg_0 0  cg_1 1,3\n") != std::string::npos);
    ojson j = render_json(evaluate_runs(runs));
    CHECK(j["runs"][0]["scenarios"][0]["steps"][1]["cpusets"] == ojson{{"cg_0", "0"}, {"cg_1", "1,3"}});
    CHECK(j["runs"][0]["scenarios"][0]["steps"][0]["cpusets"]["cg_1"].is_null());
    std::string h = render_html(evaluate_runs(runs));
    CHECK(h.find("<p class=\"muted\">step 1 cpusets:  cg_0 0  cg_1 1,3</p>") != std::string::npos);
    // Without any cpuset there is no such line.
    std::vector<Run> plain{read_text(vmm("boot", 0) + passing_scenario("steady", 1) + EXIT0)};
    CHECK(render_text(evaluate_runs(plain)).find("cpusets:") == std::string::npos);
}

TEST_CASE("text summary: with several runs the RESULT line counts runs as well as scenarios") {
    std::vector<Run> runs{read_text(vmm("boot", 0) + passing_scenario("steady", 1) + EXIT0),
                          read_text(vmm("boot", 0) + vmm("exit", 3, R"("reason":"stopped","exit_code":0)"))};
    std::string t = render_text(evaluate_runs(runs));
    CHECK(t.find("RESULT: INCONCLUSIVE (0 failed, 1 passed, 0 skipped, 0 inconclusive; runs: 1 passed, 1 inconclusive; ") !=
          std::string::npos);
}
