// Unit/integration tests for the scenario runner on the host, in short runs:
// work types measuring themselves, worker groups (paired types, synthetic
// reports), the cgroup file operations against a temporary directory, the
// scheduler lifecycle against a fake sched_ext directory, and whole scenarios
// through run_scenario with a temp dir as cgroup root.  Real cgroup2 and
// sched_ext behaviour is exercised in the guest (tests/e2e/scenario_*.sh).
#include <doctest/doctest.h>

#include "temp_dir.h"

#include <csignal>
#include <thread>
#include <sys/stat.h>
#include <unistd.h>

#include "ktstr/scenario_run.h"

using namespace ktstr;
using namespace ktstr::scenario;

namespace {
bool is_dir(const std::string &p) {
    struct stat st;
    return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
WorkType type(WorkKind k) {
    WorkType t;
    t.kind = k;
    return t;
}
} // namespace

TEST_CASE("every single-process work type measures itself") {
    for (WorkKind k : {WorkKind::CpuSpin, WorkKind::YieldHeavy, WorkKind::Mixed, WorkKind::IoSync, WorkKind::Bursty,
                       WorkKind::CachePressure}) {
        CAPTURE(work_kind_name(k));
        WorkType t = type(k);
        t.burst_ms = 20;
        t.sleep_ms = 10;
        WorkerReport r = run_worker_inline(t, 0.25);
        CHECK(r.work_units > 0);
        CHECK(r.iterations > 0);
        CHECK(r.cpu_time_ns > 0);
        CHECK(r.wall_time_ns >= 200000000);
        CHECK(r.wall_time_ns >= r.cpu_time_ns / 2);   // thread clock vs monotonic: same order
        CHECK(r.off_cpu_ns == (r.wall_time_ns > r.cpu_time_ns ? r.wall_time_ns - r.cpu_time_ns : 0));
        CHECK_FALSE(r.cpus_used.empty());
        CHECK(r.migration_count == r.migrations.size());
        CHECK(r.completed);
        if (k == WorkKind::IoSync || k == WorkKind::Bursty) {
            CHECK(r.wake_sample_total > 0);
            CHECK(r.resume_latencies_ns.size() == r.wake_sample_total);
        } else {
            CHECK(r.wake_sample_total == 0);
        }
    }
    // Bursty's gap includes its sleep (spec 3.1 quirk).
    WorkType b = type(WorkKind::Bursty);
    b.burst_ms = 5;
    b.sleep_ms = 60;
    CHECK(run_worker_inline(b, 0.3).max_gap_ms >= 55);
    WorkType none = type(WorkKind::CachePressure);
    none.size_kb = 0;
    CHECK(run_worker_inline(none, 0.1).work_units == 0);
    CHECK_THROWS_AS(run_worker_inline(type(WorkKind::PipeIo), 0.1), Error);
}

TEST_CASE("worker groups: paired types exchange wake-ups, reports come back per worker") {
    for (WorkKind k : {WorkKind::PipeIo, WorkKind::FutexPingPong}) {
        CAPTURE(work_kind_name(k));
        WorkerGroup::Options o;
        o.work.type = type(k);
        o.count = 2;
        auto g = WorkerGroup::spawn(o);
        REQUIRE(g->pids().size() == 2);
        g->start();
        usleep(300000);
        CHECK(g->total_iterations() > 0);
        auto reports = g->collect();
        REQUIRE(reports.size() == 2);
        for (size_t i = 0; i < 2; ++i) {
            CHECK(reports[i].tid == g->pids()[i]);
            CHECK(reports[i].exit_info.empty());
            CHECK(reports[i].work_units > 0);
            CHECK(reports[i].wake_sample_total > 0);
        }
        CHECK(reports[0].is_messenger);
        CHECK_FALSE(reports[1].is_messenger);
    }
    WorkerGroup::Options odd;
    odd.work.type = type(WorkKind::PipeIo);
    odd.count = 3;
    CHECK_THROWS_WITH_AS(WorkerGroup::spawn(odd), doctest::Contains("PipeIo requires num_workers divisible by 2, got 3"), Error);
}

TEST_CASE("a worker that dies gets a synthetic report that fails as starved") {
    WorkerGroup::Options o;
    o.count = 2;
    auto g = WorkerGroup::spawn(o);
    g->start();
    usleep(100000);
    kill(g->pids()[1], SIGKILL);
    auto reports = g->collect();
    REQUIRE(reports.size() == 2);
    CHECK(reports[0].exit_info.empty());
    CHECK(reports[0].work_units > 0);
    CHECK(reports[1].tid == g->pids()[1]);
    CHECK(reports[1].work_units == 0);
    CHECK(reports[1].exit_info.find("signaled: killed by signal 9") == 0);
    GroupResult r;
    r.cgroup = "cg_0";
    r.checks = CheckConfig::defaults();
    r.reports = reports;
    auto out = evaluate_group(r);
    CHECK_FALSE(out[0].passed);
    CHECK(out[0].summary.find("starved (0 work units) [signaled") != std::string::npos);
}

TEST_CASE("a worker collected before start reports promptly; one never started times out by itself") {
    WorkerGroup::Options o;
    o.count = 1;
    o.start_timeout_s = 0.2;
    auto g = WorkerGroup::spawn(o);
    usleep(500000);   // past its start timeout: it exited 1 on its own
    auto reports = g->collect(1.0);
    REQUIRE(reports.size() == 1);
    CHECK(reports[0].exit_info.find("exited") == 0);
}

TEST_CASE("cpuset epochs reset the CPUs seen for isolation") {
    WorkerGroup::Options o;
    o.count = 1;
    auto g = WorkerGroup::spawn(o);
    g->start();
    usleep(50000);
    g->bump_cpuset_epoch();
    usleep(50000);
    auto r = g->collect();
    REQUIRE(r.size() == 1);
    CHECK(r[0].cpuset_epoch_current);
    CHECK_FALSE(r[0].cpus_since_cpuset.empty());
    for (auto c : r[0].cpus_since_cpuset) CHECK(r[0].cpus_used.count(c));
}

TEST_CASE("cgroup file operations on a plain directory") {
    TempDir t;
    {
        Cgroups cg(t.path, "ktstr");
        CHECK_FALSE(cg.is_cgroup2());
        CHECK(is_dir(t.path + "/ktstr"));
        cg.create("a/b");
        CHECK(is_dir(t.path + "/ktstr/a/b"));
        // intermediate levels got the controllers
        CHECK(read_file(t.path + "/ktstr/a/cgroup.subtree_control") == "+cpu");
        cg.set_cpus("a/b", {0, 1, 2, 5});
        CHECK(read_file(t.path + "/ktstr/a/b/cpuset.cpus") == "0-2,5");
        CHECK(cg.read_cpus("a/b") == "0-2,5");
        CHECK_THROWS_WITH_AS(cg.set_cpus("a/b", {}), doctest::Contains("refusing to write an empty cpuset"), Error);
        cg.clear_cpus("a/b");
        CHECK(cg.read_cpus("a/b") == "");
        CHECK(cg.move(getpid(), "a/b"));
        CHECK(cg.procs("a/b") == std::vector<pid_t>{getpid()});
        cg.create("c");
        cg.remove("c");
        CHECK_FALSE(is_dir(t.path + "/ktstr/c"));
        CHECK_THROWS_WITH_AS(cg.set_cpus("missing", {1}), doctest::Contains(("write " + t.path + "/ktstr/missing/cpuset.cpus (ENOENT").c_str()),
                             Error);
    }
    CHECK_FALSE(is_dir(t.path + "/ktstr"));   // torn down with its owner
    CHECK_THROWS_WITH_AS(Cgroups("/nonexistent/cgroup"), doctest::Contains("cgroup root /nonexistent/cgroup"), Error);
}

namespace {
// A fake scheduler: a script that "attaches" by writing the fake sysfs.
std::string fake_scheduler(const std::string &dir, const std::string &body) {
    std::string path = dir + "/fake_sched.sh";
    write_file_atomic(path, "#!/bin/sh\n" + body + "\n", 0755);
    mkdir((dir + "/sched_ext").c_str(), 0755);
    mkdir((dir + "/sched_ext/root").c_str(), 0755);
    write_file_atomic(dir + "/sched_ext/state", "disabled\n");
    return path;
}
SchedulerOptions sched_opts(const TempDir &t, const std::string &body, double timeout = 3) {
    SchedulerOptions o;
    o.path = fake_scheduler(t.path, body);
    o.sched_ext_dir = t.path + "/sched_ext";
    o.log_path = t.path + "/sched.log";
    o.kmsg_path = t.path + "/no-kmsg";
    o.enable_timeout_s = timeout;
    return o;
}
const char *ATTACH = "d=$(dirname $0)/sched_ext; echo fake > $d/root/ops; echo enabled > $d/state; echo attached; "
                     "trap 'echo EXIT: unregistered; echo disabled > $d/state; exit 0' INT; while :; do sleep 0.05; done";
} // namespace

TEST_CASE("scheduler lifecycle: attach, death with its output, refusal to start") {
    TempDir t;
    auto s = Scheduler::start(sched_opts(t, ATTACH));
    CHECK(s->ops_name() == "fake");
    CHECK(s->alive());
    CHECK(s->end_record()["status"] == "running");
    s->signal(SIGKILL);
    for (int i = 0; i < 50 && s->alive(); ++i) usleep(20000);
    CHECK_FALSE(s->alive());
    ojson end = s->end_record();
    CHECK(end["status"] == "exited");
    CHECK(end["exit"] == "killed by signal 9 (Killed)");
    CHECK(end["output_tail"].get<std::string>().find("attached") != std::string::npos);
    CHECK(s->describe_end().find("killed by signal 9") == 0);

    TempDir t2;
    CHECK_THROWS_WITH_AS(Scheduler::start(sched_opts(t2, "echo 'bpf load failed: -22' >&2; exit 3")),
                         doctest::Contains("exited with status 3 before sched_ext was enabled"), Error);
    TempDir t3;
    try {
        Scheduler::start(sched_opts(t3, "echo starting; sleep 5", 0.3));
        FAIL("no timeout");
    } catch (const Error &e) {
        CHECK(std::string(e.what()).find("not attached after 0.3 s (sched_ext state 'disabled'") != std::string::npos);
        CHECK(std::string(e.what()).find("starting") != std::string::npos);
        CHECK(e.kind() == ErrorKind::guest);
    }
    TempDir t4;
    auto graceful = Scheduler::start(sched_opts(t4, ATTACH));
    graceful->stop();
    CHECK(graceful->end_record()["status"] == "stopped");
    CHECK(graceful->end_record()["output_tail"].get<std::string>().find("EXIT: unregistered") != std::string::npos);
}

TEST_CASE("scheduler end record waits for the kernel's side of a kill (state, reason line)") {
    // After a SIGKILL the kernel reports 'disabling' while the process exits, and logs
    // 'disabled (<reason>)' only later: a record taken at the first sign of death must
    // still carry the wait status and the kernel's reason.
    TempDir t;
    SchedulerOptions o = sched_opts(t, ATTACH);
    o.kmsg_path = t.path + "/kmsg";
    write_file_atomic(o.kmsg_path, "6,1,1,-;boot noise\n");
    auto s = Scheduler::start(o);
    write_file_atomic(t.path + "/sched_ext/state", "disabling\n");
    s->signal(SIGKILL);
    std::thread kernel([&] {
        usleep(300000);
        write_file_atomic(t.path + "/sched_ext/state", "disabled\n");
        FILE *f = fopen(o.kmsg_path.c_str(), "a");
        fputs("6,2,2,-;sched_ext: BPF scheduler \"fake\" disabled (unregistered from user space)\n", f);
        fclose(f);
    });
    CHECK_FALSE(s->alive());
    ojson end = s->end_record();
    kernel.join();
    CHECK(end["exit"] == "killed by signal 9 (Killed)");
    CHECK(end["status"] == "exited");
    CHECK(end["sched_ext_state"] == "disabled");
    CHECK(end["exit_kind"] == "unregistered from user space");
    CHECK(s->describe_end().find("killed by signal 9 (Killed); sched_ext state 'disabled'; kernel: disabled (unregistered from user space)") == 0);
}

namespace {
struct Captured {
    std::vector<ojson> events;
    EmitFn fn() {
        return [this](const ojson &e) { events.push_back(e); };
    }
    std::vector<ojson> of(const std::string &name) const {
        std::vector<ojson> v;
        for (auto &e : events)
            if (e["event"] == name) v.push_back(e);
        return v;
    }
};
RunOptions host_options(const TempDir &t) {
    RunOptions o;
    o.ctx.duration_s = 0.6;
    o.ctx.settle_ms = 50;
    o.cgroup_root = t.path;
    o.proc_sys = t.path + "/sys";
    // The host is shared and busy: these runs test the engine, not fairness.
    o.check_overrides.set_from_text("max_spread_pct=false");
    o.check_overrides.set_from_text("max_gap_ms=false");
    return o;
}
} // namespace

TEST_CASE("run_scenario end to end on the host (temp dir as cgroup root)") {
    TempDir t;
    Captured c;
    CpuLayout layout = CpuLayout::parse("1n2l2c1t");
    RunOutcome out = run_scenario(catalog_scenario("steady"), layout, host_options(t), c.fn());
    CHECK(out.exit_code == 0);
    CHECK(out.verdict.passed);
    REQUIRE(c.events.size() >= 4);
    CHECK(c.events.front()["event"] == "scenario_start");
    CHECK(c.events.front()["scheduler"] == "eevdf");
    CHECK(c.events.front()["checks"]["max_spread_pct"] == false);
    CHECK(c.events.back()["event"] == "scenario_end");
    CHECK(c.events.back()["passed"] == true);
    CHECK(c.of("step").size() == 1);
    auto reports = c.of("worker_report");
    REQUIRE(reports.size() == 4);
    for (auto &r : reports) {
        CHECK(r["work_units"].get<uint64_t>() > 0);
        CHECK((r["cgroup"] == "cg_0" || r["cgroup"] == "cg_1"));
        CHECK_FALSE(r.contains("resume_latencies_ns"));
    }
    auto checks = c.of("check");
    REQUIRE(checks.size() == 2);   // starvation per group
    for (auto &k : checks) CHECK(k["check"] == "starvation");
    CHECK(c.events.back()["stats"]["total_workers"] == 4);
    CHECK_FALSE(is_dir(t.path + "/ktstr"));   // cleaned up
}

TEST_CASE("run_scenario: each step event carries every cgroup's cpuset (null: none)") {
    TempDir t;
    CpuLayout layout = CpuLayout::parse("1n2l2c1t");
    Scenario s = load_scenario_text(R"({"schema":"ktstr.scenario/1","name":"sets",
      "steps":[{"setup":[{"name":"a","cpuset":{"exact":[2,3]},"works":[{"work_type":"YieldHeavy","workers":1}]},
                         {"name":"b","works":[{"work_type":"YieldHeavy","workers":1}]}],"hold":{"ms":100}},
               {"ops":[{"op":"clear_cpuset","cgroup":"a"},{"op":"set_cpuset","cgroup":"b","cpus":{"exact":[0]}}],
                "hold":{"ms":100}}]})",
                                    "sets.json");
    Captured c;
    RunOutcome out = run_scenario(s, layout, host_options(t), c.fn());
    auto steps = c.of("step");
    REQUIRE(steps.size() == 2);
    CHECK(steps[0]["cpusets"] == ojson{{"a", {2, 3}}, {"b", nullptr}});
    CHECK(steps[1]["cpusets"] == ojson{{"a", nullptr}, {"b", {0}}});
    CHECK(out.verdict.passed);
}

TEST_CASE("run_scenario: steps, ops, skips, sysctls") {
    TempDir t;
    CpuLayout layout = CpuLayout::parse("1n2l2c1t");
    mkdir((t.path + "/sys").c_str(), 0755);
    mkdir((t.path + "/sys/kernel").c_str(), 0755);
    write_file_atomic(t.path + "/sys/kernel/sched_rt_runtime_us", "950000\n");
    Scenario s = load_scenario_text(R"({"schema":"ktstr.scenario/1","name":"ops","sysctls":{"kernel.sched_rt_runtime_us":-1},
      "checks":{"isolation":true},
      "steps":[{"setup":[{"name":"a"},{"name":"b","works":[{"work_type":"PipeIo","workers":2}]}],"hold":{"ms":200}},
               {"ops":[{"op":"set_cpuset","cgroup":"a","cpus":{"disjoint":{"index":0,"of":2}}},
                       {"op":"spawn","cgroup":"b","work":{"work_type":"YieldHeavy","workers":1}},
                       {"op":"add_cgroup","name":"c"},{"op":"sleep","ms":20},
                       {"op":"move_all_tasks","from":"b","to":"c"},{"op":"remove_cgroup","cgroup":"a"}],
                "hold":{"ms":200}}]})",
                                    "ops.json");
    Captured c;
    RunOptions o = host_options(t);
    RunOutcome out = run_scenario(s, layout, o, c.fn());
    CHECK(out.verdict.passed);
    CHECK(c.of("step").size() == 2);
    CHECK(c.of("step")[1]["op_count"] == 6);
    CHECK(c.of("step")[1]["op_kinds"] == ((1 << 0) | (1 << 1) | (1 << 2) | (1 << 5) | (1 << 9) | (1 << 13)));
    // a was removed (results discarded): 2 PipeIo + 1 YieldHeavy remain, now keyed under c
    auto reports = c.of("worker_report");
    REQUIRE(reports.size() == 3);
    for (auto &r : reports) CHECK(r["cgroup"] == "c");
    // the sysctl was set for the run and restored after
    CHECK(trim(read_file(t.path + "/sys/kernel/sched_rt_runtime_us")) == "950000");

    Captured skip;
    RunOutcome sk = run_scenario(catalog_scenario("cpuset_resize"), layout, o, skip.fn());
    CHECK(sk.exit_code == 0);
    CHECK(sk.verdict.skipped);
    CHECK(skip.events.size() == 2);
    CHECK(skip.events.back()["skipped"] == true);
    CHECK(skip.events.back()["skip_reason"].get<std::string>().find("resolves to no CPUs") != std::string::npos);
    CHECK_FALSE(is_dir(t.path + "/ktstr"));   // a skip creates nothing
}

TEST_CASE("run_scenario: a step failure is a failed verdict naming the step") {
    TempDir t;
    Scenario s = load_scenario_text(R"({"schema":"ktstr.scenario/1","name":"bad",
      "steps":[{"setup":[{"name":"a"}],"hold":{"ms":100}},
               {"ops":[{"op":"swap_cpusets","a":"a","b":"a2"}],"hold":{"ms":100}}],
      "backdrop":{"cgroups":[{"name":"a2","works":[{"workers":1}]}]}})",
                                    "bad.json");
    // swap of a (no cpuset file) with a2: reading "" from both is fine; make
    // the write fail instead by removing the directory under the runner.
    Captured c;
    RunOptions o = host_options(t);
    RunOutcome out = run_scenario(s, CpuLayout::parse("1n1l2c1t"), o, c.fn());
    CHECK(out.verdict.passed);   // nothing to swap: both empty, not copied
    Scenario broken = load_scenario_text(R"({"schema":"ktstr.scenario/1","name":"broken",
      "steps":[{"setup":[{"name":"a"}],"hold":{"ms":100}},
               {"ops":[{"op":"spawn","cgroup":"a","work":{"work_type":"PipeIo","workers":{"of":"total_cpus","add":1}}}],
                "hold":{"ms":100}}]})",
                                         "broken.json");
    CHECK_THROWS_WITH_AS(run_scenario(broken, CpuLayout::parse("1n1l2c1t"), o, c.fn()),
                         doctest::Contains("PipeIo requires num_workers divisible by 2, got 3"), Error);
}

TEST_CASE("run_scenario: a scheduler killed from a step is reported as scheduler death") {
    TempDir t;
    auto sched = Scheduler::start(sched_opts(t, ATTACH));
    Scenario s = load_scenario_text(R"({"schema":"ktstr.scenario/1","name":"kill",
      "steps":[{"setup":[{"name":"a"}],"hold":{"ms":200}},
               {"ops":[{"op":"kill_scheduler","signal":"KILL"}],"hold":{"ms":400}},
               {"ops":[{"op":"sleep","ms":10}],"hold":{"ms":100}}]})",
                                    "kill.json");
    Captured c;
    RunOptions o = host_options(t);
    o.scheduler = sched.get();
    RunOutcome out = run_scenario(s, CpuLayout::parse("1n1l2c1t"), o, c.fn());
    CHECK(out.exit_code == 1);
    CHECK_FALSE(out.verdict.passed);
    auto checks = c.of("check");
    bool found = false;
    for (auto &k : checks)
        if (k["check"] == "scheduler") {
            found = true;
            CHECK(k["passed"] == false);
            std::string msg = k["message"];
            CHECK(msg.find("scheduler process died unexpectedly during workload (") == 0);
            CHECK(msg.find("killed by signal 9") != std::string::npos);
        }
    CHECK(found);
    CHECK(c.events.back()["scheduler"]["status"] == "exited");
    CHECK(c.events.back()["details"].back()["kind"] == "SchedulerDied");
    // the workers were still collected
    CHECK(c.of("worker_report").size() == 2);
    // the third step never ran
    CHECK(c.of("step").size() == 2);
}

#include "ktstr/scenario_job.h"

TEST_CASE("the agent's scenario job: host-side arguments, guest-side run") {
    ScenarioJobOptions o;
    o.duration_s = 0.4;
    o.settle_ms = 20;
    o.checks = {"max_spread_pct=false", "max_gap_ms=false"};
    CHECK(o.args() == std::vector<std::string>{"--duration", "0.4", "--workers", "2", "--settle", "20", "--check",
                                               "max_spread_pct=false", "--check", "max_gap_ms=false"});
    CHECK_NOTHROW(o.validate());
    ScenarioJobOptions bad = o;
    bad.checks = {"max_gap=1"};
    CHECK_THROWS_WITH_AS(bad.validate(), doctest::Contains("unknown check 'max_gap'"), Error);
    bad = o;
    bad.duration_s = 0;
    CHECK_THROWS_WITH_AS(bad.validate(), doctest::Contains("--duration 0"), Error);
    ScenarioJobOptions sched = o;
    sched.scheduler_guest_path = "/ktstr-sched/scx_simple";
    sched.sched_args = {"-v"};
    auto a = sched.args();
    CHECK(std::find(a.begin(), a.end(), "--scheduler") != a.end());
    CHECK(a.back() == "-v");

    TempDir t;
    write_file_atomic(t.path + "/scenario.json", catalog_scenario("steady").to_json().dump());
    auto args = o.args();
    // Outside the guest's PID 1 both roots are required: never the host's own.
    Captured refused;
    CHECK_THROWS_WITH_AS(run_scenario_job(args, t.path, refused.fn()), doctest::Contains("--cgroup-root and --proc-sys"),
                         Error);
    CHECK(refused.events.empty());
    args.insert(args.end(), {"--cgroup-root", t.path, "--proc-sys", t.path + "/sys"});
    Captured c;
    CHECK(run_scenario_job(args, t.path, c.fn()) == 0);
    CHECK(c.events.front()["event"] == "scenario_start");
    CHECK(c.events.front()["duration_s"] == 0.4);
    CHECK(c.events.back()["passed"] == true);
    CHECK(c.of("worker_report").size() == 4);

    // Several scenarios: job files scenario.json, scenario-2.json, run in order; the
    // job's status is the worst of theirs (a scenario invalid on this guest: 2).
    ScenarioJobOptions two = o;
    two.scenario_count = 2;
    auto a2 = two.args();
    CHECK(std::count(a2.begin(), a2.end(), "--file") == 2);
    CHECK(std::find(a2.begin(), a2.end(), "scenario-2.json") != a2.end());
    CHECK(job_scenario_file(0) == "scenario.json");
    CHECK(job_scenario_file(1) == "scenario-2.json");
    write_file_atomic(t.path + "/scenario-2.json",
                      R"({"schema":"ktstr.scenario/1","name":"toobig","steps":[{"setup":[{"name":"a","cpuset":{"exact":[4096]}}],"hold":{"ms":10}}]})");
    a2.insert(a2.end(), {"--cgroup-root", t.path, "--proc-sys", t.path + "/sys"});
    Captured c2;
    CHECK(run_scenario_job(a2, t.path, c2.fn()) == JOB_EXIT_BAD_INPUT);
    auto ends = c2.of("scenario_end");
    REQUIRE(ends.size() == 2);
    CHECK(ends[0]["scenario"] == "steady");
    CHECK(ends[0]["passed"] == true);
    CHECK(ends[1]["scenario"] == "toobig");
    CHECK(ends[1]["passed"] == false);
    CHECK(ends[1]["exit_code"] == JOB_EXIT_BAD_INPUT);
    CHECK(ends[1]["details"][0]["message"].get<std::string>().find("could not run") != std::string::npos);
    // the scenario that never ran still has its start and a failed check
    auto starts = c2.of("scenario_start");
    REQUIRE(starts.size() == 2);
    CHECK(starts[1]["scenario"] == "toobig");
    CHECK(starts[1]["not_run"] == true);
    CHECK(c2.of("check").back()["check"] == "run");
    CHECK(c2.of("check").back()["passed"] == false);
}

TEST_CASE("run_scenario refuses to run without explicit cgroup and sysctl roots") {
    RunOptions o;   // defaults: nothing set, so no host side effects by omission
    CHECK(o.cgroup_root.empty());
    CHECK(o.proc_sys.empty());
    Captured c;
    CHECK_THROWS_WITH_AS(run_scenario(catalog_scenario("steady"), CpuLayout::parse("1n1l2c1t"), o, c.fn()),
                         doctest::Contains("cgroup_root and .proc_sys must be set"), Error);
    CHECK(c.events.empty());
}
