// libktstr/scenario: check configuration layers, worker reports, the worker
// checks (spec 5.2), group statistics and the verdict roll-up (5.3).  The
// failure texts keep upstream's wording (5.4) so existing greps still match;
// each is prefixed by the group it concerns.
#include "ktstr/scenario.h"

#include <algorithm>
#include <cmath>

namespace ktstr::scenario {

// ---- configuration ------------------------------------------------------------------

const std::vector<std::string> &CheckConfig::known_fields() {
    static const std::vector<std::string> f = {
        "not_starved", "isolation", "max_gap_ms", "max_spread_pct", "max_throughput_cv", "min_work_rate",
        "max_p99_wake_latency_ns", "max_wake_latency_cv", "min_iteration_rate", "max_migration_ratio",
        "min_page_locality", "max_cross_node_migration_ratio", "max_slow_tier_ratio", "max_imbalance_ratio",
        "max_local_dsq_depth", "fail_on_stall", "sustained_samples", "max_fallback_rate", "max_keep_last_rate"};
    return f;
}

bool CheckConfig::is_flag(const std::string &f) {
    return f == "not_starved" || f == "isolation" || f == "fail_on_stall";
}

CheckConfig CheckConfig::defaults() {
    CheckConfig c;
    c.fields["not_starved"] = Limit::of(1);
    return c;
}

CheckConfig CheckConfig::merged(const CheckConfig &over) const {
    CheckConfig c = *this;
    for (auto &[k, v] : over.fields)
        if (v.set()) c.fields[k] = v;
    return c;
}

Limit CheckConfig::get(const std::string &field) const {
    auto it = fields.find(field);
    return it == fields.end() ? Limit{} : it->second;
}

std::optional<double> CheckConfig::limit(const std::string &field, std::optional<double> fallback) const {
    Limit l = get(field);
    if (l.state == Limit::State::off) return std::nullopt;
    if (l.state == Limit::State::on) return l.value;
    return fallback;
}

namespace {
std::string known_list() {
    std::string s;
    for (auto &f : CheckConfig::known_fields()) s += (s.empty() ? "" : ", ") + f;
    return s;
}

Limit limit_from_json(const std::string &field, const json &v, const std::string &where) {
    bool flag = CheckConfig::is_flag(field);
    if (v.is_boolean()) return v.get<bool>() ? (flag ? Limit::of(1) : Limit{Limit::State::unset, 0}) : Limit::disabled();
    if (!flag && v.is_number()) {
        double d = v.get<double>();
        if (!std::isfinite(d) || d < 0)
            fail(ErrorKind::input, where, "checks.", field, ": ", v.dump(), " must be a finite number >= 0");
        return Limit::of(d);
    }
    fail(ErrorKind::input, where, "checks.", field, ": expected ", flag ? "true or false" : "a number or false", ", got ",
         v.dump());
}
} // namespace

CheckConfig CheckConfig::from_json(const json &j, const std::string &where) {
    if (!j.is_object()) fail(ErrorKind::input, where, "checks: expected an object, got ", j.dump());
    CheckConfig c;
    const auto &known = known_fields();
    for (auto &[k, v] : j.items()) {
        if (std::find(known.begin(), known.end(), k) == known.end())
            fail(ErrorKind::input, where, "checks: unknown check '", k, "' (valid: ", known_list(), ")");
        Limit l = limit_from_json(k, v, where);
        if (l.set()) c.fields[k] = l;
    }
    return c;
}

void CheckConfig::set_from_text(const std::string &assignment) {
    auto eq = assignment.find('=');
    if (eq == std::string::npos)
        fail(ErrorKind::usage, "check override '", assignment, "': expected NAME=VALUE (VALUE a number, true or false)");
    std::string field = std::string(trim(assignment.substr(0, eq)));
    std::string value = std::string(trim(assignment.substr(eq + 1)));
    const auto &known = known_fields();
    if (std::find(known.begin(), known.end(), field) == known.end())
        fail(ErrorKind::usage, "check override '", assignment, "': unknown check '", field, "' (valid: ", known_list(), ")");
    json v;
    try {
        v = json::parse(value);
    } catch (const std::exception &) {
        fail(ErrorKind::usage, "check override '", assignment, "': value '", value, "' is not a number, true or false");
    }
    try {
        Limit l = limit_from_json(field, v, "");
        if (l.set()) fields[field] = l;
    } catch (const Error &e) {
        fail(ErrorKind::usage, "check override '", assignment, "': ", e.what());
    }
}

ojson CheckConfig::to_json() const {
    ojson j = ojson::object();
    for (auto &f : known_fields()) {
        Limit l = get(f);
        if (!l.set()) continue;
        if (l.state == Limit::State::off) j[f] = false;
        else if (is_flag(f)) j[f] = l.value != 0;
        else j[f] = l.value;
    }
    return j;
}

// ---- reports -------------------------------------------------------------------------

ojson WorkerReport::to_json() const {
    ojson j;
    j["tid"] = tid;
    j["work_units"] = work_units;
    j["iterations"] = iterations;
    j["cpu_time_ns"] = cpu_time_ns;
    j["wall_time_ns"] = wall_time_ns;
    j["off_cpu_ns"] = off_cpu_ns;
    j["migration_count"] = migration_count;
    ojson m = ojson::array();
    for (auto &x : migrations) m.push_back({{"at_ns", x.at_ns}, {"from_cpu", x.from_cpu}, {"to_cpu", x.to_cpu}});
    j["migrations"] = m;
    j["cpus_used"] = std::vector<uint32_t>(cpus_used.begin(), cpus_used.end());
    j["cpus_since_cpuset"] = std::vector<uint32_t>(cpus_since_cpuset.begin(), cpus_since_cpuset.end());
    j["cpuset_epoch_current"] = cpuset_epoch_current;
    j["max_gap_ms"] = max_gap_ms;
    j["max_gap_cpu"] = max_gap_cpu;
    j["max_gap_at_ms"] = max_gap_at_ms;
    j["resume_latencies_ns"] = resume_latencies_ns;
    j["wake_sample_total"] = wake_sample_total;
    j["schedstat_cpu_time_ns"] = schedstat_cpu_time_ns;
    j["schedstat_run_delay_ns"] = schedstat_run_delay_ns;
    j["schedstat_run_count"] = schedstat_run_count;
    j["completed"] = completed;
    j["is_messenger"] = is_messenger;
    if (!exit_info.empty()) j["exit_info"] = exit_info;
    return j;
}

WorkerReport WorkerReport::from_json(const json &j, const std::string &where) {
    WorkerReport r;
    if (!j.is_object()) fail(ErrorKind::input, where, ": worker report is not an object");
    r.tid = get_field<int64_t>(j, "tid", where);
    auto u64 = [&](const char *f) { return get_field_or<uint64_t>(j, f, 0, where); };
    r.work_units = u64("work_units");
    r.iterations = u64("iterations");
    r.cpu_time_ns = u64("cpu_time_ns");
    r.wall_time_ns = u64("wall_time_ns");
    r.off_cpu_ns = u64("off_cpu_ns");
    r.migration_count = u64("migration_count");
    r.max_gap_ms = u64("max_gap_ms");
    r.max_gap_cpu = static_cast<uint32_t>(u64("max_gap_cpu"));
    r.max_gap_at_ms = u64("max_gap_at_ms");
    r.wake_sample_total = u64("wake_sample_total");
    r.schedstat_cpu_time_ns = u64("schedstat_cpu_time_ns");
    r.schedstat_run_delay_ns = u64("schedstat_run_delay_ns");
    r.schedstat_run_count = u64("schedstat_run_count");
    r.completed = get_field_or<bool>(j, "completed", false, where);
    r.is_messenger = get_field_or<bool>(j, "is_messenger", false, where);
    r.cpuset_epoch_current = get_field_or<bool>(j, "cpuset_epoch_current", true, where);
    r.exit_info = get_field_or<std::string>(j, "exit_info", "", where);
    auto cpus = [&](const char *f) {
        CpuSet s;
        if (j.contains(f) && j.at(f).is_array())
            for (auto &c : j.at(f))
                if (c.is_number_unsigned() && c.get<uint64_t>() < 65536) s.insert(c.get<uint32_t>());
        return s;
    };
    r.cpus_used = cpus("cpus_used");
    r.cpus_since_cpuset = cpus("cpus_since_cpuset");
    if (j.contains("migrations") && j.at("migrations").is_array())
        for (auto &m : j.at("migrations"))
            r.migrations.push_back({get_field_or<uint64_t>(m, "at_ns", 0, where),
                                    get_field_or<uint32_t>(m, "from_cpu", 0, where),
                                    get_field_or<uint32_t>(m, "to_cpu", 0, where)});
    if (j.contains("resume_latencies_ns") && j.at("resume_latencies_ns").is_array())
        for (auto &s : j.at("resume_latencies_ns"))
            if (s.is_number_unsigned()) r.resume_latencies_ns.push_back(s.get<uint64_t>());
    return r;
}

// ---- statistics ------------------------------------------------------------------------

uint64_t percentile(std::vector<uint64_t> samples, double p) {
    if (samples.empty()) return 0;
    std::sort(samples.begin(), samples.end());
    // Nearest rank: index ceil(p*n) - 1.  p*n is computed with a small
    // tolerance so that 0.99*100 (= 98.99999...) still ranks 99.
    double rank = std::ceil(p * static_cast<double>(samples.size()) - 1e-9);
    size_t idx = rank < 1 ? 0 : static_cast<size_t>(rank) - 1;
    return samples[std::min(idx, samples.size() - 1)];
}

namespace {

double off_cpu_pct(const WorkerReport &r) {
    if (r.wall_time_ns == 0) return 0;
    return static_cast<double>(r.off_cpu_ns) / static_cast<double>(r.wall_time_ns) * 100.0;
}

struct MeanSd {
    double mean = 0, sd = 0;
};
MeanSd mean_sd(const std::vector<double> &v) {
    MeanSd m;
    if (v.empty()) return m;
    for (double x : v) m.mean += x;
    m.mean /= static_cast<double>(v.size());
    for (double x : v) m.sd += (x - m.mean) * (x - m.mean);
    m.sd = std::sqrt(m.sd / static_cast<double>(v.size()));
    return m;
}

std::vector<uint64_t> pooled_samples(const GroupResult &g) {
    std::vector<uint64_t> s;
    for (auto &r : g.reports) s.insert(s.end(), r.resume_latencies_ns.begin(), r.resume_latencies_ns.end());
    return s;
}

std::string fixed(double v, int decimals) {
    char buf[64];
    snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return buf;
}

std::string cpu_list_braces(const CpuSet &s) {
    std::string out = "{";
    for (auto c : s) out += (out.size() > 1 ? ", " : "") + std::to_string(c);
    return out + "}";
}

} // namespace

GroupStats group_stats(const GroupResult &g) {
    GroupStats s;
    s.workers = static_cast<uint32_t>(g.reports.size());
    CpuSet cpus;
    std::vector<double> offs;
    uint64_t delay = 0, runs = 0;
    for (auto &r : g.reports) {
        cpus.insert(r.cpus_used.begin(), r.cpus_used.end());
        if (r.wall_time_ns > 0) offs.push_back(off_cpu_pct(r));
        if (&r == &g.reports.front() || r.max_gap_ms > s.max_gap_ms)
            s.max_gap_ms = r.max_gap_ms, s.max_gap_cpu = r.max_gap_cpu;
        s.total_migrations += r.migration_count;
        s.total_iterations += r.iterations;
        delay += r.schedstat_run_delay_ns;
        runs += r.schedstat_run_count;
        if (r.schedstat_run_count)
            s.worst_run_delay_us = std::max(s.worst_run_delay_us, static_cast<double>(r.schedstat_run_delay_ns) /
                                                                     static_cast<double>(r.schedstat_run_count) / 1000.0);
    }
    s.cpus = static_cast<uint32_t>(cpus.size());
    if (!offs.empty()) {
        s.min_off_cpu_pct = *std::min_element(offs.begin(), offs.end());
        s.max_off_cpu_pct = *std::max_element(offs.begin(), offs.end());
        s.avg_off_cpu_pct = mean_sd(offs).mean;
        s.spread = s.max_off_cpu_pct - s.min_off_cpu_pct;
    }
    s.migration_ratio = s.total_iterations ? static_cast<double>(s.total_migrations) / static_cast<double>(s.total_iterations) : 0;
    auto samples = pooled_samples(g);
    if (!samples.empty()) {
        s.p99_wake_latency_us = static_cast<double>(percentile(samples, 0.99)) / 1000.0;
        std::vector<uint64_t> sorted = samples;
        std::sort(sorted.begin(), sorted.end());
        s.median_wake_latency_us = static_cast<double>(sorted[sorted.size() / 2]) / 1000.0;
        std::vector<double> d(samples.begin(), samples.end());
        MeanSd m = mean_sd(d);
        s.wake_latency_cv = m.mean > 0 ? m.sd / m.mean : 0;
        s.wake_latency_tail_ratio = s.median_wake_latency_us > 0 ? s.p99_wake_latency_us / s.median_wake_latency_us : 0;
    }
    s.mean_run_delay_us = runs ? static_cast<double>(delay) / static_cast<double>(runs) / 1000.0 : 0;
    s.iterations_per_worker = s.workers ? static_cast<double>(s.total_iterations) / s.workers : 0;
    return s;
}

ojson GroupStats::to_json() const {
    ojson j;
    j["workers"] = workers;
    j["cpus"] = cpus;
    j["avg_off_cpu_pct"] = avg_off_cpu_pct;
    j["min_off_cpu_pct"] = min_off_cpu_pct;
    j["max_off_cpu_pct"] = max_off_cpu_pct;
    j["spread"] = spread;
    j["max_gap_ms"] = max_gap_ms;
    j["max_gap_cpu"] = max_gap_cpu;
    j["total_migrations"] = total_migrations;
    j["migration_ratio"] = migration_ratio;
    j["p99_wake_latency_us"] = p99_wake_latency_us;
    j["median_wake_latency_us"] = median_wake_latency_us;
    j["wake_latency_cv"] = wake_latency_cv;
    j["total_iterations"] = total_iterations;
    j["mean_run_delay_us"] = mean_run_delay_us;
    j["worst_run_delay_us"] = worst_run_delay_us;
    j["wake_latency_tail_ratio"] = wake_latency_tail_ratio;
    j["iterations_per_worker"] = iterations_per_worker;
    return j;
}

// ---- checks ----------------------------------------------------------------------------------

const char *detail_kind_name(DetailKind k) {
    switch (k) {
    case DetailKind::Starved: return "Starved";
    case DetailKind::Stuck: return "Stuck";
    case DetailKind::Unfair: return "Unfair";
    case DetailKind::Isolation: return "Isolation";
    case DetailKind::Benchmark: return "Benchmark";
    case DetailKind::Migration: return "Migration";
    case DetailKind::SchedulerDied: return "SchedulerDied";
    case DetailKind::Skip: return "Skip";
    case DetailKind::Other: return "Other";
    }
    return "Other";
}

ojson CheckOutcome::to_json() const {
    ojson j;
    j["check"] = check;
    j["group"] = group;
    j["passed"] = passed;
    if (value) j["value"] = *value;
    if (threshold) j["threshold"] = *threshold;
    j["message"] = summary;
    if (!details.empty()) {
        j["details"] = ojson::array();
        for (auto &[k, m] : details) j["details"].push_back({{"kind", detail_kind_name(k)}, {"message", m}});
    }
    return j;
}

std::vector<CheckOutcome> evaluate_group(const GroupResult &g) {
    std::vector<CheckOutcome> out;
    const CheckConfig &c = g.checks;
    const std::string group = g.cgroup.empty() ? cat("(harness) ", g.work) : cat(g.cgroup, " ", g.work);
    const std::string where = g.cgroup.empty() ? std::string("harness cgroup: ") : cat("cgroup ", g.cgroup, ": ");
    auto outcome = [&](const char *name) {
        CheckOutcome o;
        o.check = name;
        o.group = group;
        return o;
    };
    auto fail_with = [&](CheckOutcome &o, DetailKind k, const std::string &msg) {
        o.passed = false;
        o.details.push_back({k, where + msg});
    };
    auto finish = [&](CheckOutcome &o, const std::string &pass_text) {
        o.summary = o.passed ? where + pass_text : o.details.front().second +
                                                   (o.details.size() > 1 ? cat(" (+", o.details.size() - 1, " more)") : "");
        out.push_back(std::move(o));
    };
    const bool starved_on = c.flag("not_starved");
    const size_t n = g.reports.size();

    if (starved_on) {
        CheckOutcome o = outcome("starvation");
        uint64_t least = UINT64_MAX;
        for (auto &r : g.reports) {
            least = std::min(least, r.work_units);
            if (r.work_units == 0)
                fail_with(o, DetailKind::Starved,
                          cat("tid ", r.tid, " starved (0 work units)", r.exit_info.empty() ? "" : cat(" [", r.exit_info, "]")));
        }
        o.value = n ? static_cast<double>(least) : 0.0;
        o.threshold = 1;
        finish(o, cat(n, " workers all made progress (least ", n ? least : 0, " work units)"));
    }

    if (auto lim = c.limit("max_gap_ms", starved_on ? std::optional<double>(2000) : std::nullopt)) {
        CheckOutcome o = outcome("gap");
        o.threshold = *lim;
        const WorkerReport *worst = nullptr;
        for (auto &r : g.reports) {
            if (!worst || r.max_gap_ms > worst->max_gap_ms) worst = &r;
            if (static_cast<double>(r.max_gap_ms) > *lim)
                fail_with(o, DetailKind::Stuck,
                          cat("stuck ", r.max_gap_ms, "ms on cpu", r.max_gap_cpu, " at +", r.max_gap_at_ms, "ms (threshold ",
                              fixed(*lim, 0), "ms) [tid ", r.tid, "]"));
        }
        o.value = worst ? static_cast<double>(worst->max_gap_ms) : 0.0;
        finish(o, worst ? cat("longest gap ", worst->max_gap_ms, "ms on cpu", worst->max_gap_cpu, " (threshold ", fixed(*lim, 0), "ms)")
                        : std::string("no workers"));
    }

    if (auto lim = c.limit("max_spread_pct", starved_on ? std::optional<double>(15) : std::nullopt)) {
        CheckOutcome o = outcome("spread");
        o.threshold = *lim;
        GroupStats s = group_stats(g);
        o.value = s.spread;
        size_t with_wall = 0;
        for (auto &r : g.reports) with_wall += r.wall_time_ns > 0;
        if (with_wall >= 2 && s.spread > *lim)
            fail_with(o, DetailKind::Unfair,
                      cat("unfair cgroup: spread=", fixed(s.spread, 0), "% (", fixed(s.min_off_cpu_pct, 0), "-",
                          fixed(s.max_off_cpu_pct, 0), "%) ", n, " workers on ", s.cpus, " cpus (threshold ", fixed(*lim, 0), "%)"));
        finish(o, cat("off-CPU spread ", fixed(s.spread, 1), "% (", fixed(s.min_off_cpu_pct, 1), "-",
                      fixed(s.max_off_cpu_pct, 1), "%) within ", fixed(*lim, 0), "%"));
    }

    if (c.flag("isolation") && g.cpuset) {
        CheckOutcome o = outcome("isolation");
        size_t checked = 0;
        for (auto &r : g.reports) {
            if (!r.cpuset_epoch_current) continue;   // never ran since the cpuset changed: starvation's job
            ++checked;
            CpuSet outside;
            for (uint32_t cpu : r.cpus_since_cpuset)
                if (!g.cpuset->count(cpu)) outside.insert(cpu);
            if (!outside.empty())
                fail_with(o, DetailKind::Isolation,
                          cat("tid ", r.tid, " ran on unexpected CPUs ", cpu_list_braces(outside), " (cpuset ",
                              format_cpuset(*g.cpuset), ")"));
        }
        o.value = static_cast<double>(checked);
        finish(o, cat("isolation held: ", checked, " of ", n, " workers stayed within cpuset ", format_cpuset(*g.cpuset)));
    }

    auto max_cv = c.limit("max_throughput_cv");
    auto min_rate = c.limit("min_work_rate");
    if (max_cv || min_rate) {
        CheckOutcome o = outcome("throughput");
        std::vector<double> rates;
        for (auto &r : g.reports) {
            if (r.cpu_time_ns == 0) continue;   // zero-CPU workers stay out of the CV
            double rate = static_cast<double>(r.work_units) / (static_cast<double>(r.cpu_time_ns) / 1e9);
            rates.push_back(rate);
            if (min_rate && rate < *min_rate)
                fail_with(o, DetailKind::Benchmark,
                          cat("worker ", r.tid, " throughput ", fixed(rate, 0), " work/cpu_s below floor ", fixed(*min_rate, 0)));
        }
        MeanSd m = mean_sd(rates);
        double cv = m.mean > 0 ? m.sd / m.mean : 0;
        o.value = cv;
        if (max_cv) {
            o.threshold = *max_cv;
            if (rates.size() >= 2 && m.mean > 0 && cv > *max_cv)
                fail_with(o, DetailKind::Benchmark,
                          cat("throughput CV ", fixed(cv, 3), " exceeds limit ", fixed(*max_cv, 3), " (mean=", fixed(m.mean, 0),
                              " work/cpu_s)"));
        }
        finish(o, cat("throughput CV ", fixed(cv, 3), " (mean=", fixed(m.mean, 0), " work/cpu_s)"));
    }

    if (auto lim = c.limit("max_p99_wake_latency_ns")) {
        auto samples = pooled_samples(g);
        if (!samples.empty()) {   // no samples: no verdict
            CheckOutcome o = outcome("wake_latency_p99");
            uint64_t p99 = percentile(samples, 0.99);
            o.value = static_cast<double>(p99);
            o.threshold = *lim;
            if (static_cast<double>(p99) > *lim)
                fail_with(o, DetailKind::Benchmark,
                          cat("p99 wake latency ", p99, "ns exceeds limit ", fixed(*lim, 0), "ns (", samples.size(), " samples)"));
            finish(o, cat("p99 wake latency ", p99, "ns (", samples.size(), " samples)"));
        }
    }

    if (auto lim = c.limit("max_wake_latency_cv")) {
        auto samples = pooled_samples(g);
        std::vector<double> d(samples.begin(), samples.end());
        MeanSd m = mean_sd(d);
        if (d.size() >= 2 && m.mean > 0) {
            CheckOutcome o = outcome("wake_latency_cv");
            double cv = m.sd / m.mean;
            o.value = cv;
            o.threshold = *lim;
            if (cv > *lim)
                fail_with(o, DetailKind::Benchmark,
                          cat("wake latency CV ", fixed(cv, 3), " exceeds limit ", fixed(*lim, 3), " (mean=", fixed(m.mean, 0), "ns)"));
            finish(o, cat("wake latency CV ", fixed(cv, 3)));
        }
    }

    if (auto lim = c.limit("min_iteration_rate")) {
        CheckOutcome o = outcome("iteration_rate");
        o.threshold = *lim;
        double lowest = -1;
        for (auto &r : g.reports) {
            double rate = r.wall_time_ns ? static_cast<double>(r.iterations) / (static_cast<double>(r.wall_time_ns) / 1e9) : 0;
            if (lowest < 0 || rate < lowest) lowest = rate;
            if (rate < *lim)
                fail_with(o, DetailKind::Benchmark,
                          cat("worker ", r.tid, " iteration rate ", fixed(rate, 1), "/s below floor ", fixed(*lim, 1), "/s"));
        }
        o.value = std::max(lowest, 0.0);
        finish(o, cat("lowest iteration rate ", fixed(std::max(lowest, 0.0), 1), "/s"));
    }

    if (auto lim = c.limit("max_migration_ratio")) {
        CheckOutcome o = outcome("migration_ratio");
        GroupStats s = group_stats(g);
        o.value = s.migration_ratio;
        o.threshold = *lim;
        if (s.migration_ratio > *lim)
            fail_with(o, DetailKind::Migration,
                      cat("migration ratio ", fixed(s.migration_ratio, 4), " exceeds threshold ", fixed(*lim, 4), " (",
                          s.total_migrations, " migrations / ", s.total_iterations, " iterations)"));
        finish(o, cat("migration ratio ", fixed(s.migration_ratio, 4), " (", s.total_migrations, " migrations / ",
                      s.total_iterations, " iterations)"));
    }
    return out;
}

CheckOutcome evaluate_scheduler(const SchedulerFate &f) {
    CheckOutcome o;
    o.check = "scheduler";
    o.group = "scheduler";
    if (!f.present) {
        o.summary = "no scheduler under test (EEVDF)";
        return o;
    }
    if (!f.died) {
        o.summary = "scheduler alive through the run";
        return o;
    }
    o.passed = false;
    std::string when;
    if (f.after_all_steps)
        when = cat(" (detected after all ", f.steps_total, " steps completed, ", fixed(f.died_at_s, 1), "s elapsed)");
    else if (f.steps_completed >= 0)
        when = cat(" after completing step ", f.steps_completed, " of ", f.steps_total, " (", fixed(f.died_at_s, 1), "s into test)");
    else
        when = cat(" during workload (", fixed(f.died_at_s, 1), "s into test)");
    std::string msg = "scheduler process died unexpectedly" + when;
    if (!f.how.empty()) msg += ": " + f.how;
    o.details.push_back({DetailKind::SchedulerDied, msg});
    o.summary = msg;
    o.value = f.died_at_s;
    return o;
}

// ---- roll-up --------------------------------------------------------------------------------

void Verdict::add(const CheckOutcome &c) {
    passed = passed && c.passed;
    details.insert(details.end(), c.details.begin(), c.details.end());
}

ojson Verdict::to_json() const {
    ojson j;
    j["passed"] = passed;
    j["skipped"] = skipped;
    j["details"] = ojson::array();
    for (auto &[k, m] : details) j["details"].push_back({{"kind", detail_kind_name(k)}, {"message", m}});
    j["stats"] = stats.is_null() ? ojson::object() : stats;
    return j;
}

ojson rollup_stats(const std::vector<GroupStats> &groups) {
    ojson j;
    uint64_t workers = 0, migrations = 0, iterations = 0, cpus = 0;
    double spread = 0, ratio = 0, p99 = 0, median = 0, cv = 0, mean_delay = 0, worst_delay = 0, tail = 0;
    uint64_t gap = 0;
    uint32_t gap_cpu = 0;
    double min_ipw = 0;
    for (auto &g : groups) {
        workers += g.workers;
        migrations += g.total_migrations;
        iterations += g.total_iterations;
        cpus += g.cpus;
        spread = std::max(spread, g.spread);
        ratio = std::max(ratio, g.migration_ratio);
        p99 = std::max(p99, g.p99_wake_latency_us);
        median = std::max(median, g.median_wake_latency_us);
        cv = std::max(cv, g.wake_latency_cv);
        mean_delay = std::max(mean_delay, g.mean_run_delay_us);
        worst_delay = std::max(worst_delay, g.worst_run_delay_us);
        tail = std::max(tail, g.wake_latency_tail_ratio);
        if (&g == &groups.front() || g.max_gap_ms > gap) gap = g.max_gap_ms, gap_cpu = g.max_gap_cpu;
        if (g.iterations_per_worker > 0 && (min_ipw == 0 || g.iterations_per_worker < min_ipw)) min_ipw = g.iterations_per_worker;
    }
    j["groups"] = groups.size();
    j["total_workers"] = workers;
    j["total_cpus"] = cpus;
    j["worst_spread"] = spread;
    j["worst_gap_ms"] = gap;
    j["worst_gap_cpu"] = gap_cpu;
    j["total_migrations"] = migrations;
    j["worst_migration_ratio"] = ratio;
    j["worst_p99_wake_latency_us"] = p99;
    j["worst_median_wake_latency_us"] = median;
    j["worst_wake_latency_cv"] = cv;
    j["total_iterations"] = iterations;
    j["worst_mean_run_delay_us"] = mean_delay;
    j["worst_run_delay_us"] = worst_delay;
    if (iterations >= 100) j["worst_wake_latency_tail_ratio"] = tail;
    j["worst_iterations_per_worker"] = min_ipw;
    return j;
}

} // namespace ktstr::scenario
