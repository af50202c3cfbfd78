// Unit tests for the A/B comparison of libktstr/report (scenarios.md section 6).
#include <doctest/doctest.h>

#include <cmath>

#include "ktstr/report.h"
#include "ktstr/util.h"

using namespace ktstr;
using namespace ktstr::report;

namespace {

MetricRow row(const std::string &scenario, std::map<std::string, double> m, bool passed = true,
              const std::string &scheduler = "scx_simple", const std::string &source = "r") {
    MetricRow r;
    r.scenario = scenario;
    r.topology = "1n2l2c1t";
    r.scheduler = scheduler;
    r.source = source;
    r.passed = passed;
    r.metrics = std::move(m);
    return r;
}

const MetricCompare *find(const CompareResult &c, const std::string &metric) {
    for (auto &r : c.rows)
        if (r.metric == metric) return &r;
    return nullptr;
}

bool finite(const CompareResult &c) {
    for (auto &r : c.rows) {
        for (double x : {r.a, r.b, r.delta, r.rel, r.sd_a, r.sd_b, r.rel_gate})
            if (!std::isfinite(x)) return false;
        if (r.p_value && !std::isfinite(*r.p_value)) return false;
    }
    return true;
}

} // namespace

TEST_CASE("dual gate: both gates must pass; polarity decides regression vs improvement") {
    const MetricDef gap{"worst_gap_ms", "ms", 10, 0.25, false};
    double rel = -1;
    CHECK(classify(gap, 100, 130, 0.25, &rel) == Change::regression);   // |30| >= 10 and 30% >= 25%
    CHECK(rel == doctest::Approx(0.30));
    CHECK(classify(gap, 100, 70, 0.25) == Change::improvement);
    CHECK(classify(gap, 100, 120, 0.25) == Change::unchanged);          // 20% < 25%
    CHECK(classify(gap, 20, 28, 0.25) == Change::unchanged);            // 40% but |8| < 10
    CHECK(classify(gap, 0, 50, 0.25, &rel) == Change::unchanged);       // A = 0: rel is 0 (documented quirk)
    CHECK(rel == 0);
    CHECK(classify(gap, 0, 0, 0.25) == Change::unchanged);
    CHECK(classify(gap, 100, 100, 0.0) == Change::unchanged);           // a tie never counts, even with gate 0
    const MetricDef iters{"total_iterations", "", 100, 0.10, true};
    CHECK(classify(iters, 1000, 800, 0.10) == Change::regression);      // higher is better
    CHECK(classify(iters, 1000, 1200, 0.10) == Change::improvement);
    CHECK(classify(iters, -1000, -1200, 0.10) == Change::regression);   // |A| in the relative gate
}

TEST_CASE("registry values from the spec") {
    const MetricDef *m = find_metric("worst_spread");
    REQUIRE(m);
    CHECK(m->abs_gate == 5);
    CHECK(m->rel_gate == doctest::Approx(0.25));
    CHECK_FALSE(m->higher_is_better);
    CHECK(find_metric("worst_page_locality")->higher_is_better);
    CHECK(find_metric("worst_gap_ms")->abs_gate == 500);
    CHECK(find_metric("nonsense") == nullptr);
    CHECK(metric_registry().size() == 19);
}

TEST_CASE("sample sd and Mann-Whitney: constant samples, ties and one-sided changes give no NaN") {
    CHECK(sample_sd({}) == 0);
    CHECK(sample_sd({5}) == 0);
    CHECK(sample_sd({5, 5, 5}) == 0);
    CHECK(sample_sd({1, 2, 3, 4}) == doctest::Approx(1.2909944));
    CHECK_FALSE(mann_whitney_p({1, 2}, {3, 4, 5}));                      // too few runs
    CHECK(*mann_whitney_p({7, 7, 7}, {7, 7, 7}) == 1.0);                 // all tied: zero variance
    auto p_shift = mann_whitney_p({10, 10, 10, 10}, {20, 20, 20, 20});   // constant on both sides, different
    REQUIRE(p_shift);
    CHECK(std::isfinite(*p_shift));
    CHECK(*p_shift < 0.05);
    auto p_same = mann_whitney_p({1, 2, 3, 4, 5}, {1, 2, 3, 4, 5});
    CHECK(*p_same == doctest::Approx(1.0).epsilon(0.2));
    auto p_ties = mann_whitney_p({1, 1, 2, 2, 3}, {2, 3, 3, 4, 4});
    REQUIRE(p_ties);
    CHECK(*p_ties > 0);
    CHECK(*p_ties < 1);
}

TEST_CASE("compare: regression, improvement, unchanged, and the exit-relevant counts") {
    std::vector<MetricRow> a = {row("steady", {{"worst_gap_ms", 1000}, {"total_iterations", 10000}, {"worst_spread", 3}})};
    std::vector<MetricRow> b = {row("steady", {{"worst_gap_ms", 1600}, {"total_iterations", 12000}, {"worst_spread", 3}})};
    CompareResult c = compare(a, b, {});
    CHECK(c.regressions == 1);
    CHECK(c.improvements == 1);
    CHECK(c.unchanged == 1);
    const MetricCompare *gap = find(c, "worst_gap_ms");
    REQUIRE(gap);
    CHECK(gap->change == Change::regression);
    CHECK(gap->delta == 600);
    CHECK(gap->rel == doctest::Approx(0.6));
    CHECK(gap->key == "steady/1n2l2c1t/scx_simple");
    std::string t = render_compare_text(c);
    CHECK(t.find("regressed:\n  steady/1n2l2c1t/scx_simple worst_gap_ms: 1000 -> 1600 ms (+600 ms (+60.0%)") != std::string::npos);
    CHECK(t.find("improved:\n  steady/1n2l2c1t/scx_simple total_iterations: 10000 -> 12000") != std::string::npos);
    CHECK(t.find("1 regressions, 1 improvements, 1 unchanged") != std::string::npos);
    ojson j = render_compare_json(c);
    CHECK(j["schema"] == "ktstr.report/1");
    CHECK(j["regressions"] == 1);
}

TEST_CASE("compare: missing metric reads as 0, both ~0 is ignored, one-sided presence never NaN") {
    std::vector<MetricRow> a = {row("s", {{"stall_count", 0}, {"worst_gap_ms", 600}})};
    std::vector<MetricRow> b = {row("s", {{"stall_count", 0}, {"max_dsq_depth", 40}})};
    CompareResult c = compare(a, b, {});
    CHECK(find(c, "stall_count") == nullptr);          // both zero: no row
    REQUIRE(find(c, "max_dsq_depth"));
    CHECK(find(c, "max_dsq_depth")->change == Change::unchanged);   // 0 -> 40: rel 0
    REQUIRE(find(c, "worst_gap_ms"));
    CHECK(find(c, "worst_gap_ms")->b == 0);
    CHECK(find(c, "worst_gap_ms")->change == Change::improvement);  // 600 -> 0 ms
    CHECK(finite(c));
}

TEST_CASE("compare: averaging, constant samples, failed contributors, slicing dimensions") {
    std::vector<MetricRow> a, b;
    for (int i = 0; i < 4; ++i) {
        a.push_back(row("steady", {{"worst_gap_ms", 1000}, {"total_migrations", 20 + i}}, true, "scx_a"));
        b.push_back(row("steady", {{"worst_gap_ms", 1000}, {"total_migrations", 40 + i}}, true, "scx_b"));
    }
    a.push_back(row("cpuset_apply", {{"worst_gap_ms", 10}}, true, "scx_a"));
    b.push_back(row("cpuset_apply", {{"worst_gap_ms", 10}}, false, "scx_b"));   // failed on B
    b.push_back(row("cgroup_add", {{"worst_gap_ms", 10}}, true, "scx_b"));
    CompareResult c = compare(a, b, {});
    CHECK(c.slicing_dims == std::vector<std::string>{"scheduler"});
    const MetricCompare *gap = find(c, "worst_gap_ms");
    REQUIRE(gap);
    CHECK(gap->key == "steady/1n2l2c1t");
    CHECK(gap->n_a == 4);
    CHECK(gap->sd_a == 0);                      // constant samples
    CHECK(gap->p_value == 1.0);                 // all tied
    CHECK(gap->change == Change::unchanged);
    const MetricCompare *mig = find(c, "total_migrations");
    REQUIRE(mig);
    CHECK(mig->a == 22);                        // mean 21.5 of integers rounds to 22
    CHECK(mig->b == 42);
    CHECK(mig->change == Change::regression);   // +20 >= 10 and +91% >= 30%
    REQUIRE(mig->p_value);
    CHECK(*mig->p_value < 0.05);
    CHECK(c.dropped == std::vector<std::string>{"cpuset_apply/1n2l2c1t"});
    CHECK(c.added == std::vector<std::string>{"cgroup_add/1n2l2c1t"});
    CHECK(c.removed.empty());
    CHECK(c.pass_b == 5);
    CHECK(c.total_b == 6);
    CHECK(finite(c));
}

TEST_CASE("compare: --no-average rejects duplicates, --threshold and policy files set the relative gate") {
    std::vector<MetricRow> a = {row("s", {{"worst_spread", 10}}), row("s", {{"worst_spread", 10}})};
    std::vector<MetricRow> b = {row("s", {{"worst_spread", 16}})};
    ComparePolicy no_avg;
    no_avg.average = false;
    CHECK_THROWS_WITH(compare(a, b, no_avg), doctest::Contains("--no-average: 2 runs of 's/1n2l2c1t/scx_simple' on side A"));

    // +6 points = +60%: regression under the registry gate (25%), not with --threshold 80
    CHECK(compare(a, b, {}).regressions == 1);
    ComparePolicy thr;
    thr.threshold_pct = 80;
    CHECK(compare(a, b, thr).regressions == 0);
    ComparePolicy pol = parse_policy(json::parse(R"({"default_percent":70,"per_metric_percent":{"worst_gap_ms":5}})"), "p.json");
    CHECK(pol.default_pct == 70);
    CHECK(compare(a, b, pol).regressions == 0);
    ComparePolicy per = parse_policy(json::parse(R"({"default_percent":70,"per_metric_percent":{"worst_spread":50}})"), "p.json");
    CHECK(compare(a, b, per).regressions == 1);
    CHECK_THROWS_WITH(parse_policy(json::parse(R"({"per_metric_percent":{"bogus":5}})"), "p.json"),
                      doctest::Contains("p.json: per_metric_percent: unknown metric 'bogus'"));
    CHECK_THROWS_WITH(parse_policy(json::parse(R"({"default_percent":-1})"), "p.json"), doctest::Contains("non-negative"));
    CHECK_THROWS_WITH(parse_policy(json::parse(R"({"defualt_percent":1})"), "p.json"), doctest::Contains("unknown policy field"));
}

TEST_CASE("metric rows from a run: roll-up of cgroup stats and the monitor") {
    Run r;
    r.label = "x";
    r.has_vmm = true;
    r.kernel = "6.12.0";
    r.exit = ExitInfo{"guest_exit", 0, 5, ""};
    ScenarioRun s;
    s.name = "steady";
    s.topology = "1n2l2c1t";
    s.ended = true;
    s.passed = true;
    s.checks_seen = 1;
    s.start_s = 1;
    s.end_s = 3;
    for (int i = 0; i < 2; ++i) {
        WorkerReport w;
        w.cgroup = i ? "cg_1" : "cg_0";
        w.iterations = 1000 * (i + 1);
        w.migration_count = 5;
        w.wall_time_ns = 1000;
        w.off_cpu_ns = 100 * (i + 1);
        w.max_gap_ms = 40 + i;
        s.workers.push_back(w);
    }
    s.stats = json{{"ext_metrics", {{"custom_latency", 3.5}}}, {"worst_page_locality", 0.9}};
    r.scenarios.push_back(s);
    auto rows = metric_rows(r);
    REQUIRE(rows.size() == 1);
    CHECK(rows[0].passed);
    CHECK(rows[0].scheduler == "eevdf");
    CHECK(rows[0].metrics.at("total_iterations") == 3000);
    CHECK(rows[0].metrics.at("total_migrations") == 10);
    CHECK(rows[0].metrics.at("worst_gap_ms") == 41);
    CHECK(rows[0].metrics.at("worst_iterations_per_worker") == 1000);
    CHECK(rows[0].metrics.at("worst_page_locality") == 0.9);
    CHECK(rows[0].ext_metrics.at("custom_latency") == 3.5);
    CHECK(rows[0].metrics.count("max_imbalance_ratio") == 0);   // no monitor
}
