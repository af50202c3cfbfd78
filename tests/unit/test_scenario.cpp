// Unit tests for libktstr/scenario: the model and its validation, cpuset math
// on odd topologies, the catalog, and every check on synthetic reports.
// Expected values are the spec's (scenarios.md sections 1, 5 and 10), worked
// out by hand from its formulas.
#include <doctest/doctest.h>

#include "ktstr/scenario.h"
#include "ktstr/topology.h"

using namespace ktstr;
using namespace ktstr::scenario;

namespace {
CpuSet S(std::initializer_list<uint32_t> l) { return CpuSet(l); }
CpuSet range_set(uint32_t a, uint32_t b) {
    CpuSet s;
    for (uint32_t c = a; c <= b; ++c) s.insert(c);
    return s;
}
CpusetSpec disjoint(uint32_t i, uint32_t of) {
    CpusetSpec s;
    s.kind = CpusetSpec::Kind::disjoint;
    s.index = i;
    s.of = of;
    return s;
}
CpusetSpec overlap(uint32_t i, uint32_t of, double f) {
    CpusetSpec s = disjoint(i, of);
    s.kind = CpusetSpec::Kind::overlap;
    s.frac = f;
    return s;
}
CpusetSpec range(double a, double b) {
    CpusetSpec s;
    s.kind = CpusetSpec::Kind::range;
    s.start = a;
    s.end = b;
    return s;
}
// A layout with exactly n CPUs on one LLC.
CpuLayout flat(uint32_t n) { return CpuLayout::uniform(1, 1, n, 1); }

Scenario load(const std::string &text) { return load_scenario_text(text, "t.json"); }

std::string load_error(const std::string &text) {
    try {
        load(text);
    } catch (const Error &e) {
        CHECK(e.kind() == ErrorKind::input);
        return e.what();
    }
    FAIL("no error for: " << text);
    return "";
}
const char *HEAD = R"({"schema":"ktstr.scenario/1","name":"x",)";
} // namespace

// ---- layouts and cpuset lists ------------------------------------------------------

TEST_CASE("uniform layouts number CPUs LLC by LLC with SMT siblings adjacent") {
    CpuLayout l = CpuLayout::parse("1n2l2c2t");
    REQUIRE(l.total() == 8);
    CHECK(l.cpus_of_llc(0) == std::vector<uint32_t>{0, 1, 2, 3});
    CHECK(l.cpus_of_llc(1) == std::vector<uint32_t>{4, 5, 6, 7});
    CHECK(l.core_of.at(0) == l.core_of.at(1));
    CHECK(l.core_of.at(1) != l.core_of.at(2));
    CHECK(l.smt());
    CHECK(l.label() == "1n2l2c2t");
    CHECK_FALSE(CpuLayout::parse("1n3l3c1t").smt());
    // Agrees with the VMM's topology (LLC and node of every CPU).
    for (const char *t : {"2n4l2c2t", "1n3l3c1t", "4n8l4c1t"}) {
        Topology topo = parse_topology(t);
        CpuLayout cl = CpuLayout::parse(t);
        for (uint32_t c = 0; c < topo.total_cpus(); ++c) {
            CHECK(cl.llc_of.at(c) == topo.llc_of_cpu(c));
            CHECK(cl.node_of.at(c) == topo.node_of_cpu(c));
        }
    }
    CHECK_THROWS_AS(CpuLayout::parse("2n3l1c1t"), Error);
    CHECK_THROWS_WITH(CpuLayout::parse("two"), doctest::Contains("expected <nodes>n<llcs>l<cores>c<threads>t"));
}

TEST_CASE("usable CPUs keep the last one for the harness when there are more than 2") {
    CHECK(flat(1).usable() == std::vector<uint32_t>{0});
    CHECK(flat(2).usable() == std::vector<uint32_t>{0, 1});
    CHECK(flat(4).usable() == std::vector<uint32_t>{0, 1, 2});
    CHECK(CpuLayout::parse("1n3l3c1t").usable().size() == 8);
}

TEST_CASE("cpuset strings") {
    CHECK(format_cpuset(S({0, 1, 2, 3, 5, 7, 8, 9})) == "0-3,5,7-9");
    CHECK(format_cpuset({}) == "");
    CHECK(format_cpuset(S({4})) == "4");
    CHECK(parse_cpuset("7-9,0-3,5") == S({0, 1, 2, 3, 5, 7, 8, 9}));
    CHECK(parse_cpuset(" 3 \n") == S({3}));
    CHECK(parse_cpuset("") == CpuSet{});
    CHECK_THROWS_WITH_AS(parse_cpuset("1,x,3"), doctest::Contains("bad element 'x'"), Error);
    CHECK_THROWS_AS(parse_cpuset("5-2"), Error);
    CHECK(parse_cpuset_lenient("1,x,3,5-2,4-5") == S({1, 3, 4, 5}));
}

TEST_CASE("sysfs layout of a fake 2-LLC, 2-node machine") {
    std::string root = "/tmp/ktstr-unit-sysfs-" + std::to_string(getpid());
    auto put = [&](const std::string &rel, const std::string &text) {
        std::string path = root + "/" + rel;
        std::string dir = path.substr(0, path.rfind('/'));
        REQUIRE(system(("mkdir -p " + dir).c_str()) == 0);
        write_file_atomic(path, text);
    };
    put("devices/system/cpu/online", "0-3\n");
    for (int c = 0; c < 4; ++c) {
        std::string b = "devices/system/cpu/cpu" + std::to_string(c);
        put(b + "/cache/index0/level", "1\n");
        put(b + "/cache/index0/type", "Data\n");
        put(b + "/cache/index0/shared_cpu_list", std::to_string(c) + "\n");
        put(b + "/cache/index3/level", "3\n");
        put(b + "/cache/index3/type", "Unified\n");
        put(b + "/cache/index3/shared_cpu_list", c < 2 ? "0-1\n" : "2-3\n");
        put(b + "/topology/thread_siblings_list", std::to_string(c) + "\n");
    }
    put("devices/system/node/node0/cpulist", "0-1\n");
    put("devices/system/node/node1/cpulist", "2-3\n");
    CpuLayout l = CpuLayout::from_sysfs(root);
    CHECK(l.total() == 4);
    CHECK(l.num_llcs == 2);
    CHECK(l.num_nodes == 2);
    CHECK(l.llc_of.at(3) == 1);
    CHECK(l.node_of.at(2) == 1);
    CHECK(l.label() == "2n2l2c1t");
    REQUIRE(system(("rm -rf " + root).c_str()) == 0);
}

// ---- cpuset math (spec 1.2 and 10) ------------------------------------------------------

TEST_CASE("disjoint halves on odd topologies") {
    CHECK(resolve_cpuset(disjoint(0, 2), flat(4)) == S({0}));
    CHECK(resolve_cpuset(disjoint(1, 2), flat(4)) == S({1, 2}));
    CpuLayout odd3 = CpuLayout::parse("1n3l3c1t");
    CHECK(resolve_cpuset(disjoint(0, 2), odd3) == range_set(0, 3));
    CHECK(resolve_cpuset(disjoint(1, 2), odd3) == range_set(4, 7));
    CpuLayout odd5 = CpuLayout::parse("1n5l3c1t");
    CHECK(resolve_cpuset(disjoint(0, 2), odd5) == range_set(0, 6));
    CHECK(resolve_cpuset(disjoint(1, 2), odd5) == range_set(7, 13));
    CpuLayout odd7 = CpuLayout::parse("1n7l2c1t");
    CHECK(resolve_cpuset(disjoint(0, 2), odd7) == range_set(0, 5));
    CHECK(resolve_cpuset(disjoint(1, 2), odd7) == range_set(6, 12));
    CHECK_THROWS_WITH_AS(resolve_cpuset(disjoint(0, 2), flat(1)),
                         doctest::Contains("not enough usable CPUs (1) for 2 partitions"), Error);
    CHECK_THROWS_WITH(resolve_cpuset(disjoint(2, 2), flat(4)), doctest::Contains("index must be below of=2"));
    CHECK_THROWS_WITH(resolve_cpuset(disjoint(0, 0), flat(4)), doctest::Contains("'of' must be at least 1"));
}

TEST_CASE("ranges resolve to nothing rather than to a cleared cpuset") {
    CHECK(resolve_cpuset(range(0, 0.25), flat(4)).empty());     // 3 usable: [0, 0)
    CHECK(resolve_cpuset(range(0, 0.25), flat(8)) == S({0}));   // 7 usable: [0, 1)
    CHECK(resolve_cpuset(range(0.5, 1), flat(4)) == S({1, 2}));
    CHECK_THROWS_WITH(resolve_cpuset(range(0.5, 0.5), flat(4)), doctest::Contains("need 0 <= start < end <= 1"));
    CHECK_THROWS_AS(resolve_cpuset(range(0, 1.5), flat(4)), Error);
    CHECK_THROWS_AS(resolve_cpuset(range(std::nan(""), 1), flat(4)), Error);
}

TEST_CASE("overlapping cpusets") {
    CpuLayout nine = flat(9);   // 8 usable
    CHECK(resolve_cpuset(overlap(1, 3, 0.5), nine) == S({1, 2, 3, 4}));
    CHECK(resolve_cpuset(overlap(2, 3, 0.5), nine) == range_set(3, 7));
    CHECK(resolve_cpuset(overlap(0, 3, 0.5), nine) == S({0, 1, 2}));
    for (uint32_t i = 0; i < 3; ++i) CHECK(resolve_cpuset(overlap(i, 3, 0), nine) == resolve_cpuset(disjoint(i, 3), nine));
    CHECK_THROWS_WITH(resolve_cpuset(overlap(0, 2, 1.5), nine), doctest::Contains("frac must be within [0, 1]"));
}

TEST_CASE("llc, numa and exact specs") {
    CpuLayout numa = CpuLayout::parse("2n4l4c1t");
    CpusetSpec n;
    n.kind = CpusetSpec::Kind::numa;
    n.index = 0;
    CHECK(resolve_cpuset(n, numa) == range_set(0, 7));
    n.index = 1;
    CHECK(resolve_cpuset(n, numa) == range_set(8, 15));
    n.index = 2;
    CHECK_THROWS_WITH(resolve_cpuset(n, numa), doctest::Contains("numa:2: the topology has 2 NUMA node(s)"));
    CpusetSpec l;
    l.kind = CpusetSpec::Kind::llc;
    l.index = 2;
    CHECK(resolve_cpuset(l, CpuLayout::parse("1n3l3c1t")) == range_set(6, 8));
    CHECK_THROWS_WITH(resolve_cpuset(l, flat(4)), doctest::Contains("llc:2: the topology has 1 LLC(s)"));
    CpusetSpec e;
    e.kind = CpusetSpec::Kind::exact;
    e.cpus = {3, 1};
    CHECK(resolve_cpuset(e, flat(4)) == S({1, 3}));
    e.cpus = {4};
    CHECK_THROWS_WITH(resolve_cpuset(e, flat(4)), doctest::Contains("CPU 4 is not in the topology (CPUs 0-3)"));
}

TEST_CASE("steady partitions") {
    using K = Partition::Kind;
    CHECK(partition_cpusets({K::split_misaligned, 0}, 2, CpuLayout::parse("1n2l2c1t")) == std::vector<CpuSet>{S({0}), S({1, 2})});
    CHECK(partition_cpusets({K::uneven, 0.75}, 2, flat(4)) == std::vector<CpuSet>{S({0, 1}), S({2})});
    CHECK(partition_cpusets({K::holdback, 0.33}, 2, flat(4)) == std::vector<CpuSet>{S({0}), S({1, 2})});
    auto one = partition_cpusets({K::holdback, 0.33}, 2, flat(1));
    CHECK(one[1].empty());   // -> skip
    CHECK(partition_cpusets({K::llc_aligned, 0}, 2, CpuLayout::parse("1n2l2c2t")) ==
          std::vector<CpuSet>{range_set(0, 3), range_set(4, 6)});
    auto single_llc = partition_cpusets({K::llc_aligned, 0}, 2, flat(4));
    CHECK(single_llc[0].empty());   // -> skip
    CHECK(partition_cpusets({K::overlap, 0.5}, 3, flat(4)) == std::vector<CpuSet>{S({0}), S({1}), S({2})});
    CHECK(partition_cpusets({K::overlap, 0.5}, 3, flat(8)) == std::vector<CpuSet>{S({0, 1}), S({1, 2}), S({2, 3})});
    CHECK(partition_cpusets({K::overlap, 0.5}, 3, flat(9)) ==
          std::vector<CpuSet>{S({0, 1, 2}), S({1, 2, 3}), S({2, 3, 4})});
    CHECK(partition_cpusets({K::split_half, 0}, 2, flat(4)) == std::vector<CpuSet>{S({0}), S({1, 2})});
    CHECK(partition_cpusets({K::none, 0}, 2, flat(4)).empty());
    CHECK_THROWS_WITH(partition_cpusets({K::split_half, 0}, 3, flat(4)), doctest::Contains("3 cgroups need one each"));
}

TEST_CASE("affinity resolution") {
    CpuLayout seven = flat(7);
    Affinity a;
    a.kind = Affinity::Kind::random_subset;
    for (uint64_t seed = 1; seed < 20; ++seed) {
        CpuSet s = resolve_affinity(a, std::nullopt, seven, seed);
        CHECK(s.size() == 3);
        for (auto c : s) CHECK(c < 7);
    }
    a.kind = Affinity::Kind::single_cpu;
    CHECK(resolve_affinity(a, S({2, 5}), seven, 1) == S({2}));
    CHECK(resolve_affinity(a, S({2, 5}), seven, 2) == S({2}));
    a.kind = Affinity::Kind::exact;
    a.cpus = {0, 1};
    CHECK(resolve_affinity(a, S({4, 5}), seven, 1).empty());   // nothing to apply: no syscall
    CHECK(resolve_affinity(a, S({1, 5}), seven, 1) == S({1}));
    CHECK(resolve_affinity(a, std::nullopt, seven, 1) == S({0, 1}));
    a.kind = Affinity::Kind::llc_aligned;
    CpuLayout two = CpuLayout::parse("1n2l2c1t");
    CHECK(resolve_affinity(a, S({1, 2, 3}), two, 1) == S({2, 3}));
    CHECK(resolve_affinity(a, S({1, 2}), two, 1) == S({1}));   // tie -> lowest LLC
    a.kind = Affinity::Kind::cross_cgroup;
    CHECK(resolve_affinity(a, S({1}), two, 1) == range_set(0, 3));
    a.kind = Affinity::Kind::inherit;
    CHECK(resolve_affinity(a, S({1}), two, 1).empty());
}

// ---- counts and holds -----------------------------------------------------------------------

TEST_CASE("worker counts") {
    RunContext ctx;
    Count c;
    c.base = Count::Base::usable_cpus;
    c.div = 2;
    c.mul = 2;
    WorkType spin;
    CHECK(resolve_count(c, spin, flat(9), ctx, "cg") == 8);
    CHECK(resolve_count(std::nullopt, spin, flat(9), ctx, "cg") == 2);
    Count fixed;
    fixed.base = Count::Base::fixed;
    fixed.n = 3;
    WorkType pipe;
    pipe.kind = WorkKind::PipeIo;
    CHECK_THROWS_WITH(resolve_count(fixed, pipe, flat(4), ctx, "cg_1"),
                      doctest::Contains("cgroup 'cg_1': PipeIo requires num_workers divisible by 2, got 3"));
    fixed.round = Count::Round::up;
    CHECK(resolve_count(fixed, pipe, flat(4), ctx, "cg") == 4);
    fixed.round = Count::Round::down;
    CHECK(resolve_count(fixed, pipe, flat(4), ctx, "cg") == 2);
    fixed.n = 1;
    CHECK(resolve_count(fixed, pipe, flat(4), ctx, "cg") == 2);   // down keeps one group
    Count zero;
    zero.base = Count::Base::num_llcs;
    zero.add = -1;
    CHECK_THROWS_WITH(resolve_count(zero, spin, flat(4), ctx, "cg_0"), doctest::Contains("cgroup 'cg_0': num_workers=0 is not allowed"));
    Count clamp;
    clamp.base = Count::Base::total_cpus;
    clamp.max = 3;
    CHECK(resolve_count(clamp, spin, flat(8), ctx, "cg") == 3);
    clamp.min = 12;
    clamp.max.reset();
    CHECK(resolve_count(clamp, spin, flat(8), ctx, "cg") == 12);
}

TEST_CASE("holds") {
    RunContext ctx;
    ctx.duration_s = 2;
    Hold h;
    h.frac = 0.5;
    h.plus_settle = true;
    CHECK(resolve_hold_ms(h, ctx) == 1500);
    h = {};
    h.ms = 250;
    CHECK(resolve_hold_ms(h, ctx) == 250);
    CHECK(load_error(std::string(HEAD) + R"("steps":[{"hold":{}}]})").find("steps[0].hold: hold {} is empty") != std::string::npos);
    CHECK(load_error(std::string(HEAD) + R"("steps":[{"hold":{"frac":0}}]})").find("steps[0].hold.frac: 0 must be in (0") !=
          std::string::npos);
    CHECK(load_error(std::string(HEAD) + R"("steps":[{"hold":{"loop_ms":0}}]})").find("steps[0].hold.loop_ms") != std::string::npos);
}

// ---- the model ----------------------------------------------------------------------------------

TEST_CASE("a full scenario loads and survives a round trip") {
    std::string text = R"({"schema":"ktstr.scenario/1","name":"demo","category":"cpuset","description":"d",
      "required_flags":["llc"],"requires":{"min_cpus":2,"requires_smt":false},
      "checks":{"max_gap_ms":1500,"isolation":true,"max_spread_pct":false},
      "sysctls":{"kernel.sched_rt_runtime_us":-1},
      "backdrop":{"cgroups":[{"name":"bg","works":[{"work_type":"YieldHeavy","workers":1}]}]},
      "steps":[
        {"setup":[{"name":"a","cpuset":{"disjoint":{"index":0,"of":2}},
                   "works":[{"work_type":{"type":"Bursty","burst_ms":10},"workers":{"of":"usable_cpus","div":2},
                             "sched_policy":{"fifo":5},"affinity":"single_cpu","mem_policy":{"bind":[0]},
                             "checks":{"max_p99_wake_latency_ns":1000000}}]},
                  {"name":"a/b","swappable":true}],
         "ops":[{"op":"add_cgroup","name":"c"}],"hold":{"frac":0.5,"plus_settle":true}},
        {"ops":[{"op":"set_cpuset","cgroup":"c","cpus":{"range":[0,0.5]}},{"op":"swap_cpusets","a":"a","b":"c"},
                {"op":"move_all_tasks","from":"a/b","to":"c"},{"op":"sleep","ms":20},
                {"op":"spawn","cgroup":"c","work":{"work_type":"PipeIo","workers":2}},{"op":"kill_scheduler","signal":"TERM"}],
         "hold":{"loop_ms":100}}]})";
    Scenario s = load(text);
    CHECK(s.name == "demo");
    CHECK(s.sysctls.at("kernel.sched_rt_runtime_us") == "-1");
    REQUIRE(s.steps.size() == 2);
    const Work &w = s.steps[0].setup[0].works[0];
    CHECK(w.type.kind == WorkKind::Bursty);
    CHECK(w.type.burst_ms == 10);
    CHECK(w.type.sleep_ms == 100);
    CHECK(w.policy.kind == SchedPolicy::Kind::fifo);
    CHECK(w.policy.priority == 5);
    CHECK(w.affinity.kind == Affinity::Kind::single_cpu);
    CHECK(w.checks.limit("max_p99_wake_latency_ns") == 1000000);
    CHECK(s.checks.limit("max_spread_pct", 15) == std::nullopt);   // explicit false disables
    CHECK(s.steps[1].hold.loop);
    CHECK(s.steps[1].ops[5].signal == 15);
    // Canonical form re-loads to the same canonical form.
    ojson canon = s.to_json();
    Scenario again = parse_scenario(json::parse(canon.dump()), "canon");
    CHECK(again.to_json() == canon);
}

TEST_CASE("validation names the field and the value at fault") {
    auto err = [](const std::string &body) { return load_error(std::string(HEAD) + body); };
    CHECK_THROWS_WITH(load(R"({"schema":"ktstr.scenario/2","name":"x","steady":{"num_cgroups":1}})"),
                      doctest::Contains("ktstr.scenario/2"));
    CHECK(err(R"("steady":{"num_cgroups":0}})").find("steady.num_cgroups: 0 is out of range [1, 1024]") != std::string::npos);
    CHECK(err(R"("steady":{"num_cgroups":2},"steps":[]})").find("exactly one of 'steps' or 'steady'") != std::string::npos);
    CHECK(err(R"("stepz":[]})").find("unknown field 'stepz'") != std::string::npos);
    CHECK(err(R"("steady":{"num_cgroups":2,"works":[{"work_type":"cpuspin"}]}})")
              .find("steady.works[0].work_type: unknown work type 'cpuspin' (did you mean 'CpuSpin'?)") != std::string::npos);
    CHECK(err(R"("steady":{"num_cgroups":2,"works":[{"work_type":{"type":"CpuSpin","burst_ms":3}}]}})")
              .find("CpuSpin has no parameter 'burst_ms' (it takes none)") != std::string::npos);
    CHECK(err(R"("steps":[{"setup":[{"name":"a","cpuset":{"disjoint":{"index":2,"of":2}}}],"hold":{"ms":5}}]})")
              .find("steps[0].setup[0].cpuset.disjoint.index: 2 must be below of=2") != std::string::npos);
    CHECK(err(R"("steps":[{"setup":[{"name":"a","cpuset":{"llc":0,"numa":0}}],"hold":{"ms":5}}]})")
              .find("steps[0].setup[0].cpuset: expected an object with exactly one of") != std::string::npos);
    CHECK(err(R"("steps":[{"setup":[{"name":"../etc"}],"hold":{"ms":5}}]})").find("'../etc'") != std::string::npos);
    CHECK(err(R"("steps":[{"setup":[{"name":"a"},{"name":"a"}],"hold":{"ms":5}}]})")
              .find("steps[0].setup[1].name: cgroup 'a' already exists") != std::string::npos);
    CHECK(err(R"("steps":[{"ops":[{"op":"set_cpuset","cgroup":"nope","cpus":{"llc":0}}],"hold":{"ms":5}}]})")
              .find("names cgroup 'nope'") != std::string::npos);
    CHECK(err(R"("steps":[{"ops":[{"op":"set_cpuset","cgroup":"a"}],"hold":{"ms":5}}]})")
              .find("steps[0].ops[0]: op set_cpuset needs field 'cpus'") != std::string::npos);
    CHECK(err(R"("steps":[{"ops":[{"op":"sleep","ms":5,"cgroup":"a"}],"hold":{"ms":5}}]})")
              .find("steps[0].ops[0].cgroup: op sleep takes no field 'cgroup'") != std::string::npos);
    CHECK(err(R"("steps":[{"ops":[{"op":"explode"}],"hold":{"ms":5}}]})").find("unknown op 'explode'") != std::string::npos);
    CHECK(err(R"("backdrop":{"cgroups":[{"name":"bg"}]},"steps":[{"ops":[{"op":"remove_cgroup","cgroup":"bg"}],"hold":{"ms":5}}]})")
              .find("a step may not remove backdrop cgroup 'bg'") != std::string::npos);
    CHECK(err(R"("backdrop":{"cgroups":[{"name":"bg"}]},"steps":[{"setup":[{"name":"s"}],"hold":{"ms":5}},
              {"ops":[{"op":"move_all_tasks","from":"bg","to":"s"}],"hold":{"ms":5}}]})")
              .find("moving backdrop workers of 'bg' into step cgroup 's'") != std::string::npos);
    CHECK(err(R"("steady":{"num_cgroups":1,"works":[{"sched_policy":{"fifo":100}}]}})")
              .find("steady.works[0].sched_policy.fifo: 100 is out of range [1, 99]") != std::string::npos);
    CHECK(err(R"("checks":{"max_gap":3},"steady":{"num_cgroups":1}})").find("unknown check 'max_gap'") != std::string::npos);
    CHECK(err(R"("checks":{"max_gap_ms":-3},"steady":{"num_cgroups":1}})").find("checks.max_gap_ms: -3 must be") != std::string::npos);
    CHECK(err(R"("checks":{"isolation":2},"steady":{"num_cgroups":1}})").find("checks.isolation: expected true or false, got 2") !=
          std::string::npos);
    CHECK(err(R"("steady":{"num_cgroups":1,"partition":{"holdback":1.0}}})").find("steady.partition.holdback: 1.0 must be in [0, 1)") !=
          std::string::npos);
    CHECK(err(R"("steady":{"num_cgroups":1,"works":[{"mpol_flags":["static_nodes","relative_nodes"]}]}})")
              .find("exclude each other") != std::string::npos);
    CHECK(err(R"("steady":{"num_cgroups":1},"required_flags":["llc"],"excluded_flags":["llc"]})").find("both required and excluded") !=
          std::string::npos);
    CHECK(load_error(R"({"schema":"ktstr.scenario/1","name":"Bad Name","steady":{"num_cgroups":1}})").find("name: 'Bad Name' is not") !=
          std::string::npos);
    CHECK(err(R"("sysctls":{"../x":1},"steady":{"num_cgroups":1}})").find("is not a sysctl name") != std::string::npos);
}

TEST_CASE("plans resolve everything before anything runs") {
    RunContext ctx;
    Scenario s = load(std::string(HEAD) + R"("steps":[{"setup":[{"name":"a","cpuset":{"range":[0,0.25]}}],"hold":{"ms":5}}]})");
    Plan p = make_plan(s, flat(4), ctx);
    CHECK(p.skip_reason.find("cgroup 'a' cpuset range[0,0.25] resolves to no CPUs on 1n1l4c1t") != std::string::npos);
    CHECK(make_plan(s, flat(8), ctx).skip_reason.empty());
    // 1 CPU cannot hold two disjoint partitions: skip, not an error.
    Scenario d = catalog_scenario("cpuset_apply");
    CHECK(make_plan(d, flat(1), ctx).skip_reason.find("not enough usable CPUs (1) for 2 partitions") != std::string::npos);
    Plan ok = make_plan(d, CpuLayout::parse("1n2l2c1t"), ctx);
    REQUIRE(ok.skip_reason.empty());
    REQUIRE(ok.steps.size() == 2);
    CHECK(ok.steps[0].hold_ms == 1500);
    CHECK(ok.steps[1].ops[0].cpus == S({0}));
    CHECK(ok.steps[1].ops[1].cpus == S({1, 2}));
    CHECK(ok.checks.flag("isolation"));
    CHECK(ok.checks.flag("not_starved"));
    // steady expands into cg_0..cg_{n-1}, works[i] else works[0].
    Plan mixed = make_plan(catalog_scenario("mixed_workloads"), flat(4), ctx);
    REQUIRE(mixed.steps.size() == 1);
    REQUIRE(mixed.steps[0].setup.size() == 3);
    CHECK(mixed.steps[0].setup[0].works[0].workers == 8);
    CHECK(mixed.steps[0].setup[1].works[0].work.type.kind == WorkKind::Bursty);
    CHECK(mixed.steps[0].setup[1].works[0].workers == 2);
    CHECK(mixed.steps[0].setup[2].name == "cg_2");
    CHECK(mixed.steady);
    // requires
    CHECK(make_plan(catalog_scenario("steady_llc"), flat(4), ctx).skip_reason == "needs at least 2 LLCs, 1n1l4c1t has 1");
    // min_cpus drops cgroups and the ops naming them
    Plan rm4 = make_plan(catalog_scenario("cgroup_remove"), flat(4), ctx);
    CHECK(rm4.steps[0].setup.size() == 3);
    CHECK(rm4.steps[1].ops.size() == 1);
    Plan rm8 = make_plan(catalog_scenario("cgroup_remove"), flat(8), ctx);
    CHECK(rm8.steps[0].setup.size() == 4);
    CHECK(rm8.steps[1].ops.size() == 2);
    CHECK(make_plan(catalog_scenario("cgroup_add"), flat(4), ctx).steps[1].setup.size() == 1);
}

TEST_CASE("the catalog") {
    for (const char *name : {"steady", "steady_llc", "oversubscribed", "cpuset_apply", "cpuset_clear", "cpuset_resize",
                             "cgroup_add", "cgroup_remove", "affinity_pinned", "mixed_workloads"}) {
        CAPTURE(name);
        Scenario s = catalog_scenario(name);
        CHECK(s.name == name);
        CHECK_FALSE(s.description.empty());
        for (const char *topo : {"1n1l1c1t", "1n2l2c1t", "1n3l3c1t", "1n2l2c2t", "2n4l4c1t"}) {
            CAPTURE(topo);
            CHECK_NOTHROW(make_plan(s, CpuLayout::parse(topo), RunContext{}));
        }
    }
    CHECK(catalog().size() == 10);
    CHECK_THROWS_WITH_AS(catalog_scenario("stedy"), doctest::Contains("unknown scenario 'stedy'"), Error);
    CHECK(format_catalog().find("cpuset_apply") != std::string::npos);
    // cpuset_resize on 4 CPUs: range [0,0.25] of 3 usable is empty -> skip, never ""
    CHECK(make_plan(catalog_scenario("cpuset_resize"), flat(4), RunContext{}).skip_reason.find("resolves to no CPUs") !=
          std::string::npos);
    CHECK(make_plan(catalog_scenario("affinity_pinned"), flat(1), RunContext{}).skip_reason == "needs at least 2 CPUs, 1n1l1c1t has 1");
}

// ---- checks on synthetic reports ---------------------------------------------------------------

namespace {
WorkerReport worker(int64_t tid, uint64_t units, double off_pct = 5, uint64_t gap = 10) {
    WorkerReport r;
    r.tid = tid;
    r.work_units = units;
    r.iterations = units / 1024 + 1;
    r.wall_time_ns = 1000000000;
    r.off_cpu_ns = static_cast<uint64_t>(off_pct / 100.0 * 1e9);
    r.cpu_time_ns = r.wall_time_ns - r.off_cpu_ns;
    r.max_gap_ms = gap;
    r.max_gap_cpu = 1;
    r.max_gap_at_ms = 700;
    r.cpus_used = {0, 1};
    r.cpus_since_cpuset = {1};
    return r;
}
GroupResult group(std::vector<WorkerReport> rs, CheckConfig extra = {}) {
    GroupResult g;
    g.cgroup = "cg_1";
    g.work = "CpuSpin";
    g.checks = CheckConfig::defaults().merged(extra);
    g.reports = std::move(rs);
    return g;
}
const CheckOutcome &find(const std::vector<CheckOutcome> &v, const std::string &name) {
    for (auto &o : v)
        if (o.check == name) return o;
    static CheckOutcome none;
    FAIL("no check " << name);
    return none;
}
bool has(const std::vector<CheckOutcome> &v, const std::string &name) {
    for (auto &o : v)
        if (o.check == name) return true;
    return false;
}
} // namespace

TEST_CASE("starvation, gap and spread by default") {
    auto out = evaluate_group(group({worker(10, 5000), worker(11, 6000)}));
    CHECK(out.size() == 3);
    for (auto &o : out) CHECK(o.passed);
    out = evaluate_group(group({worker(10, 5000), worker(11, 0, 5, 2501)}));
    CHECK_FALSE(find(out, "starvation").passed);
    CHECK(find(out, "starvation").summary == "cgroup cg_1: tid 11 starved (0 work units)");
    const auto &gap = find(out, "gap");
    CHECK_FALSE(gap.passed);
    CHECK(gap.summary == "cgroup cg_1: stuck 2501ms on cpu1 at +700ms (threshold 2000ms) [tid 11]");
    CHECK(gap.details[0].first == DetailKind::Stuck);
    CHECK(*gap.value == 2501);
    // exactly at the limit passes
    CHECK(find(evaluate_group(group({worker(1, 9, 5, 2000)})), "gap").passed);
    out = evaluate_group(group({worker(10, 5000, 2), worker(11, 6000, 20)}));
    CHECK_FALSE(find(out, "spread").passed);
    CHECK(find(out, "spread").summary == "cgroup cg_1: unfair cgroup: spread=18% (2-20%) 2 workers on 2 cpus (threshold 15%)");
    // one worker: spread never fails
    CHECK(find(evaluate_group(group({worker(10, 5000, 90)})), "spread").passed);
}

TEST_CASE("check layers: off, overrides without not_starved, command-line text") {
    CheckConfig off;
    off.fields["not_starved"] = Limit::disabled();
    auto out = evaluate_group(group({worker(10, 0, 50, 9000)}, off));
    CHECK(out.empty());
    off.fields["max_gap_ms"] = Limit::of(100);
    out = evaluate_group(group({worker(10, 0, 50, 9000)}, off));
    REQUIRE(out.size() == 1);
    CHECK(out[0].check == "gap");
    CHECK_FALSE(out[0].passed);
    CheckConfig cli;
    cli.set_from_text("max_gap_ms=false");
    cli.set_from_text("max_migration_ratio=0.5");
    cli.set_from_text("isolation=true");
    CheckConfig eff = CheckConfig::defaults().merged(off).merged(cli);
    CHECK_FALSE(eff.limit("max_gap_ms", 2000).has_value());
    CHECK(eff.limit("max_migration_ratio") == 0.5);
    CHECK(eff.flag("isolation"));
    CHECK_THROWS_WITH_AS(cli.set_from_text("max_gap=3"), doctest::Contains("unknown check 'max_gap'"), Error);
    CHECK_THROWS_WITH_AS(cli.set_from_text("max_gap_ms"), doctest::Contains("expected NAME=VALUE"), Error);
    CHECK_THROWS_WITH_AS(cli.set_from_text("max_gap_ms=abc"), doctest::Contains("value 'abc' is not a number"), Error);
    CHECK(eff.to_json().dump() == R"({"not_starved":false,"isolation":true,"max_gap_ms":false,"max_migration_ratio":0.5})");
}

TEST_CASE("isolation uses the CPUs seen since the cpuset was applied") {
    CheckConfig iso;
    iso.fields["isolation"] = Limit::of(1);
    GroupResult g = group({worker(10, 5000), worker(11, 5000)}, iso);
    CHECK_FALSE(has(evaluate_group(g), "isolation"));   // no cpuset recorded
    g.cpuset = S({1, 2});
    CHECK(find(evaluate_group(g), "isolation").passed);
    CHECK(find(evaluate_group(g), "isolation").summary == "cgroup cg_1: isolation held: 2 of 2 workers stayed within cpuset 1-2");
    g.reports[1].cpus_since_cpuset = {1, 3, 4};
    const auto o = find(evaluate_group(g), "isolation");
    CHECK_FALSE(o.passed);
    CHECK(o.summary == "cgroup cg_1: tid 11 ran on unexpected CPUs {3, 4} (cpuset 1-2)");
    g.reports[1].cpuset_epoch_current = false;   // never ran after the change: not judged
    CHECK(find(evaluate_group(g), "isolation").passed);
}

TEST_CASE("throughput, wake latency, iteration rate and migration ratio") {
    CheckConfig c;
    c.fields["max_throughput_cv"] = Limit::of(0.1);
    c.fields["min_work_rate"] = Limit::of(1000);
    c.fields["max_p99_wake_latency_ns"] = Limit::of(500);
    c.fields["max_wake_latency_cv"] = Limit::of(0.5);
    c.fields["min_iteration_rate"] = Limit::of(3);
    c.fields["max_migration_ratio"] = Limit::of(0.1);
    WorkerReport a = worker(1, 1000, 0), b = worker(2, 3000, 0);   // 1 s of CPU each
    a.iterations = 2;
    b.iterations = 10;
    a.migration_count = 1;
    b.migration_count = 2;
    for (uint64_t i = 1; i <= 100; ++i) a.resume_latencies_ns.push_back(i * 10);   // 10..1000
    WorkerReport idle = worker(3, 0, 100);   // no CPU time: out of the CV
    auto out = evaluate_group(group({a, b, idle}, c));
    const auto &tp = find(out, "throughput");
    CHECK_FALSE(tp.passed);
    // rates 1000 and 3000: mean 2000, population sd 1000 -> CV 0.5
    CHECK(tp.details[0].second == "cgroup cg_1: throughput CV 0.500 exceeds limit 0.100 (mean=2000 work/cpu_s)");
    const auto &p99 = find(out, "wake_latency_p99");
    CHECK(*p99.value == 990);   // sorted[98]
    CHECK(p99.summary == "cgroup cg_1: p99 wake latency 990ns exceeds limit 500ns (100 samples)");
    const auto &wcv = find(out, "wake_latency_cv");
    // 10..1000 step 10: mean 505, population sd 288.66 -> CV 0.572 > 0.5
    CHECK(*wcv.value == doctest::Approx(288.6607 / 505.0).epsilon(0.001));
    CHECK(wcv.summary == "cgroup cg_1: wake latency CV 0.572 exceeds limit 0.500 (mean=505ns)");
    CHECK_FALSE(find(out, "iteration_rate").passed);
    CHECK(find(out, "iteration_rate").details[0].second == "cgroup cg_1: worker 1 iteration rate 2.0/s below floor 3.0/s");
    const auto &mig = find(out, "migration_ratio");
    // 3 migrations / (2 + 10 + 1) iterations
    CHECK(*mig.value == doctest::Approx(3.0 / 13));
    CHECK(mig.summary == "cgroup cg_1: migration ratio 0.2308 exceeds threshold 0.1000 (3 migrations / 13 iterations)");
    // no samples -> no wake verdicts
    auto quiet = evaluate_group(group({worker(1, 10), worker(2, 10)}, c));
    CHECK_FALSE(has(quiet, "wake_latency_p99"));
    CHECK_FALSE(has(quiet, "wake_latency_cv"));
}

TEST_CASE("percentiles and statistics") {
    CHECK(percentile({7}, 0.99) == 7);
    std::vector<uint64_t> hundred;
    for (uint64_t i = 100; i >= 1; --i) hundred.push_back(i);
    CHECK(percentile(hundred, 0.99) == 99);
    CHECK(percentile({}, 0.99) == 0);
    GroupResult g = group({worker(1, 10, 10, 30), worker(2, 10, 30, 50)});
    g.reports[0].resume_latencies_ns = {1, 2, 3, 4};
    g.reports[1].max_gap_cpu = 3;
    GroupStats s = group_stats(g);
    CHECK(s.median_wake_latency_us == doctest::Approx(0.003));   // sorted[4/2] = 3 ns
    CHECK(s.spread == doctest::Approx(20));
    CHECK(s.max_gap_ms == 50);
    CHECK(s.max_gap_cpu == 3);
    GroupStats t = s;
    t.max_gap_ms = 80;
    t.max_gap_cpu = 7;
    ojson roll = rollup_stats({s, t});
    CHECK(roll["worst_gap_ms"] == 80);
    CHECK(roll["worst_gap_cpu"] == 7);   // the worst gap keeps its CPU
    CHECK(roll["total_workers"] == 4);
}

TEST_CASE("scheduler death wording") {
    SchedulerFate f;
    CHECK(evaluate_scheduler(f).passed);
    f.present = true;
    CHECK(evaluate_scheduler(f).passed);
    f.died = true;
    f.died_at_s = 2.34;
    f.how = "killed by signal 9";
    CHECK(evaluate_scheduler(f).summary == "scheduler process died unexpectedly during workload (2.3s into test): killed by signal 9");
    f.steps_completed = 1;
    f.steps_total = 2;
    CHECK(evaluate_scheduler(f).summary ==
          "scheduler process died unexpectedly after completing step 1 of 2 (2.3s into test): killed by signal 9");
    f.after_all_steps = true;
    auto o = evaluate_scheduler(f);
    CHECK_FALSE(o.passed);
    CHECK(o.details[0].first == DetailKind::SchedulerDied);
    CHECK(o.summary == "scheduler process died unexpectedly (detected after all 2 steps completed, 2.3s elapsed): killed by signal 9");
    Verdict v;
    v.add(o);
    CHECK_FALSE(v.passed);
    CHECK(v.to_json()["details"][0]["kind"] == "SchedulerDied");
}

TEST_CASE("worker reports round-trip through JSON") {
    WorkerReport r = worker(42, 77);
    r.migrations = {{5, 0, 1}};
    r.migration_count = 1;
    r.resume_latencies_ns = {3, 4};
    r.exit_info = "signaled";
    WorkerReport back = WorkerReport::from_json(json::parse(r.to_json().dump()), "w");
    CHECK(back.to_json() == r.to_json());
    CHECK_THROWS_AS(WorkerReport::from_json(json::parse("{}"), "w"), Error);
}

TEST_CASE("the e2e scenario files validate") {
    const char *top = getenv("KTSTR_TOP");
    std::string dir = std::string(top ? top : ".") + "/tests/e2e/scenarios/";
    for (const char *f : {"starve_fifo.json", "kill_scheduler.json"}) {
        CAPTURE(f);
        Scenario s = load_scenario_arg(dir + f);
        CHECK(make_plan(s, CpuLayout::parse("1n2l2c1t"), RunContext{}).skip_reason.empty());
    }
    Scenario starve = load_scenario_arg(dir + "starve_fifo.json");
    CHECK(starve.sysctls.at("kernel.sched_rt_runtime_us") == "-1");
    CHECK_THROWS_WITH_AS(load_scenario_arg(dir + "missing.json"), doctest::Contains("missing.json"), Error);
}
