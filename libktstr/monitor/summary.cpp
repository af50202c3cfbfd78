// libktstr/monitor: samples as JSON, and the summary / verdict over them
// (spec section 8).  Pure functions: ktstr-report calls the same ones.
#include "ktstr/monitor.h"

#include <algorithm>
#include <cmath>

namespace ktstr::monitor {

// ---- JSON ------------------------------------------------------------------------

ojson sample_to_json(const Sample &s) {
    ojson cpus = ojson::array();
    for (const CpuSample &c : s.cpus) {
        ojson j;
        j["nr_running"] = c.nr_running;
        if (c.has_scx) {
            j["scx_nr_running"] = c.scx_nr_running;
            j["local_dsq_depth"] = c.local_dsq_depth;
        }
        j["rq_clock"] = c.rq_clock;
        if (c.has_scx) j["scx_flags"] = c.scx_flags;
        if (c.events) {
            ojson ev = ojson::object();
            for (size_t i = 0; i < SCX_EVENT_COUNT; i++)
                if ((*c.events)[i]) ev[scx_event_names()[i]] = *(*c.events)[i];
            j["event_counters"] = ev;
        }
        if (c.schedstat) {
            const Schedstat &t = *c.schedstat;
            j["schedstat"] = {{"run_delay", t.run_delay}, {"pcount", t.pcount}, {"yld_count", t.yld_count},
                              {"sched_count", t.sched_count}, {"sched_goidle", t.sched_goidle},
                              {"ttwu_count", t.ttwu_count}, {"ttwu_local", t.ttwu_local}};
        }
        if (c.vcpu_cpu_time_ns) j["vcpu_cpu_time_ns"] = *c.vcpu_cpu_time_ns;
        if (c.domains) {
            ojson ds = ojson::array();
            for (const DomainLevel &d : *c.domains) {
                ojson dj;
                dj["level"] = d.level;
                dj["name"] = d.name;
                dj["flags"] = d.flags;
                dj["span_weight"] = d.span_weight;
                dj["balance_interval"] = d.balance_interval;
                dj["nr_balance_failed"] = d.nr_balance_failed;
                dj["max_newidle_lb_cost"] = d.max_newidle_lb_cost;
                if (d.newidle) {
                    dj["newidle_call"] = (*d.newidle)[0];
                    dj["newidle_success"] = (*d.newidle)[1];
                    dj["newidle_ratio"] = (*d.newidle)[2];
                }
                ds.push_back(dj);
            }
            j["sched_domains"] = ds;
        }
        cpus.push_back(std::move(j));
    }
    ojson out;
    out["elapsed_ms"] = s.elapsed_ms;
    out["cpus"] = std::move(cpus);
    return out;
}

Sample sample_from_json(const json &doc, const std::string &where) {
    Sample s;
    s.elapsed_ms = get_field<uint64_t>(doc, "elapsed_ms", where);
    if (!doc.contains("cpus") || !doc["cpus"].is_array())
        fail(ErrorKind::input, where, ": field 'cpus': expected array");
    size_t idx = 0;
    for (const json &c : doc["cpus"]) {
        std::string w = cat(where, ": cpus[", idx++, "]");
        CpuSample cs;
        cs.nr_running = get_field<uint32_t>(c, "nr_running", w);
        cs.rq_clock = get_field<uint64_t>(c, "rq_clock", w);
        if (c.contains("scx_nr_running")) {
            cs.has_scx = true;
            cs.scx_nr_running = get_field<uint32_t>(c, "scx_nr_running", w);
            cs.local_dsq_depth = get_field_or<uint32_t>(c, "local_dsq_depth", 0, w);
            cs.scx_flags = get_field_or<uint32_t>(c, "scx_flags", 0, w);
        }
        if (c.contains("event_counters") && c["event_counters"].is_object()) {
            auto &ev = cs.events.emplace();
            for (size_t i = 0; i < SCX_EVENT_COUNT; i++)
                if (c["event_counters"].contains(scx_event_names()[i]))
                    ev[i] = get_field<int64_t>(c["event_counters"], scx_event_names()[i], w);
        }
        if (c.contains("schedstat") && c["schedstat"].is_object()) {
            const json &t = c["schedstat"];
            Schedstat &ss = cs.schedstat.emplace();
            ss.run_delay = get_field_or<uint64_t>(t, "run_delay", 0, w);
            ss.pcount = get_field_or<uint64_t>(t, "pcount", 0, w);
            ss.yld_count = get_field_or<uint32_t>(t, "yld_count", 0, w);
            ss.sched_count = get_field_or<uint32_t>(t, "sched_count", 0, w);
            ss.sched_goidle = get_field_or<uint32_t>(t, "sched_goidle", 0, w);
            ss.ttwu_count = get_field_or<uint32_t>(t, "ttwu_count", 0, w);
            ss.ttwu_local = get_field_or<uint32_t>(t, "ttwu_local", 0, w);
        }
        if (c.contains("vcpu_cpu_time_ns")) cs.vcpu_cpu_time_ns = get_field<uint64_t>(c, "vcpu_cpu_time_ns", w);
        s.cpus.push_back(std::move(cs));
    }
    return s;
}

// ---- per-sample helpers ----------------------------------------------------------------

void Thresholds::validate() const {
    if (sustained_samples == 0) fail(ErrorKind::usage, "thresholds: sustained_samples must be at least 1");
    for (auto [name, v] : {std::pair{"max_imbalance_ratio", max_imbalance_ratio},
                           std::pair{"max_fallback_rate", max_fallback_rate},
                           std::pair{"max_keep_last_rate", max_keep_last_rate}})
        if (!(v >= 0) || std::isinf(v)) fail(ErrorKind::usage, "thresholds: ", name, " must be a finite number >= 0");
}

uint64_t preemption_threshold_ns(uint32_t hz) {
    if (hz == 0) hz = 250;
    return 1000000000ull / hz * 10;
}

double imbalance_ratio(const Sample &s) {
    if (s.cpus.empty()) return 1.0;
    uint32_t lo = UINT32_MAX, hi = 0;
    for (const auto &c : s.cpus) { lo = std::min(lo, c.nr_running); hi = std::max(hi, c.nr_running); }
    if (hi == 0) return 0.0;
    return double(hi) / double(std::max<uint32_t>(1, lo));
}

bool sample_looks_valid(const Sample &s) {
    return std::all_of(s.cpus.begin(), s.cpus.end(),
                       [](const CpuSample &c) { return c.local_dsq_depth <= DSQ_PLAUSIBILITY_CEILING; });
}

std::optional<int64_t> sum_event(const Sample &s, size_t i) {
    std::optional<int64_t> sum;
    for (const auto &c : s.cpus)
        if (c.events && (*c.events)[i]) sum = sum.value_or(0) + *(*c.events)[i];
    return sum;
}

bool stalled(const CpuSample &prev, const CpuSample &curr, uint64_t threshold_ns) {
    if (curr.rq_clock == 0 || curr.rq_clock != prev.rq_clock) return false;
    if (prev.nr_running == 0 && curr.nr_running == 0) return false;          // idle
    if (prev.vcpu_cpu_time_ns && curr.vcpu_cpu_time_ns) {
        uint64_t ran = *curr.vcpu_cpu_time_ns > *prev.vcpu_cpu_time_ns ? *curr.vcpu_cpu_time_ns - *prev.vcpu_cpu_time_ns : 0;
        if (ran < threshold_ns) return false;                                  // the vCPU itself was preempted
    }
    return true;
}

void SustainedTracker::record(bool violated, double value, size_t index) {
    if (!violated) { consecutive = 0; return; }
    consecutive++;
    if (consecutive > worst_run) { worst_run = consecutive; worst_value = value; worst_at = index; }
}

// ---- summary -------------------------------------------------------------------------------

namespace {
constexpr size_t EV_FALLBACK = 0, EV_KEEP_LAST = 2;   // indices in scx_event_names()

std::optional<Schedstat> schedstat_sum(const Sample &s) {
    std::optional<Schedstat> sum;
    for (const auto &c : s.cpus) {
        if (!c.schedstat) continue;
        Schedstat &t = sum ? *sum : sum.emplace();
        t.run_delay += c.schedstat->run_delay; t.pcount += c.schedstat->pcount;
        t.yld_count += c.schedstat->yld_count; t.sched_count += c.schedstat->sched_count;
        t.sched_goidle += c.schedstat->sched_goidle; t.ttwu_count += c.schedstat->ttwu_count;
        t.ttwu_local += c.schedstat->ttwu_local;
    }
    return sum;
}

template <typename T> T sat_sub(T a, T b) { return a > b ? T(a - b) : T(0); }

double seconds_between(const Sample &a, const Sample &b) {
    return b.elapsed_ms > a.elapsed_ms ? double(b.elapsed_ms - a.elapsed_ms) / 1000.0 : 0.0;
}
} // namespace

Summary summarize(const std::vector<Sample> &samples, uint64_t threshold_ns) {
    Summary r;
    r.total_samples = samples.size();
    std::vector<const Sample *> valid;
    for (const auto &s : samples)
        if (!s.cpus.empty() && sample_looks_valid(s)) valid.push_back(&s);
    r.valid_samples = valid.size();
    double ratio_sum = 0, nr_sum = 0, dsq_sum = 0;
    size_t readings = 0;
    for (const Sample *s : valid) {
        double ratio = imbalance_ratio(*s);
        r.max_imbalance_ratio = std::max(r.max_imbalance_ratio, ratio);
        ratio_sum += ratio;
        for (const auto &c : s->cpus) {
            r.max_local_dsq_depth = std::max(r.max_local_dsq_depth, c.local_dsq_depth);
            nr_sum += c.nr_running;
            dsq_sum += c.local_dsq_depth;
            readings++;
        }
    }
    if (!valid.empty()) r.avg_imbalance_ratio = ratio_sum / double(valid.size());
    if (readings) { r.avg_nr_running = nr_sum / double(readings); r.avg_local_dsq_depth = dsq_sum / double(readings); }
    for (size_t i = 1; i < valid.size() && !r.stall_detected; i++) {
        size_t n = std::min(valid[i - 1]->cpus.size(), valid[i]->cpus.size());
        for (size_t c = 0; c < n; c++)
            if (stalled(valid[i - 1]->cpus[c], valid[i]->cpus[c], threshold_ns)) { r.stall_detected = true; break; }
    }

    // Event counters: first and last samples that carry them.
    std::vector<const Sample *> with_events;
    for (const Sample *s : valid)
        if (sum_event(*s, EV_FALLBACK)) with_events.push_back(s);
    if (with_events.size() >= 1) {
        const Sample &first = *with_events.front(), &last = *with_events.back();
        auto &d = r.event_deltas.emplace();
        for (size_t i = 0; i < SCX_EVENT_COUNT; i++)
            d[i] = std::max<int64_t>(0, sum_event(last, i).value_or(0) - sum_event(first, i).value_or(0));
        double secs = seconds_between(first, last);
        r.fallback_rate = secs > 0 ? double(d[EV_FALLBACK]) / secs : 0;
        r.keep_last_rate = secs > 0 ? double(d[EV_KEEP_LAST]) / secs : 0;
        for (size_t i = 1; i < with_events.size(); i++)
            r.max_fallback_burst = std::max<int64_t>(
                r.max_fallback_burst, std::max<int64_t>(0, *sum_event(*with_events[i], EV_FALLBACK) -
                                                               *sum_event(*with_events[i - 1], EV_FALLBACK)));
    }

    std::vector<std::pair<const Sample *, Schedstat>> with_ss;
    for (const Sample *s : valid)
        if (auto t = schedstat_sum(*s)) with_ss.emplace_back(s, *t);
    if (!with_ss.empty()) {
        const auto &[fs, f] = with_ss.front();
        const auto &[ls, l] = with_ss.back();
        Schedstat &d = r.schedstat_deltas.emplace();
        d.run_delay = sat_sub(l.run_delay, f.run_delay); d.pcount = sat_sub(l.pcount, f.pcount);
        d.yld_count = sat_sub(l.yld_count, f.yld_count); d.sched_count = sat_sub(l.sched_count, f.sched_count);
        d.sched_goidle = sat_sub(l.sched_goidle, f.sched_goidle); d.ttwu_count = sat_sub(l.ttwu_count, f.ttwu_count);
        d.ttwu_local = sat_sub(l.ttwu_local, f.ttwu_local);
        double secs = seconds_between(*fs, *ls);
        r.run_delay_rate = secs > 0 ? double(d.run_delay) / secs : 0;
        r.sched_count_rate = secs > 0 ? double(d.sched_count) / secs : 0;
    }
    return r;
}

ojson summary_to_json(const Summary &s) {
    ojson j;
    j["total_samples"] = s.total_samples;
    j["valid_samples"] = s.valid_samples;
    j["max_imbalance_ratio"] = s.max_imbalance_ratio;
    j["avg_imbalance_ratio"] = s.avg_imbalance_ratio;
    j["max_local_dsq_depth"] = s.max_local_dsq_depth;
    j["avg_nr_running"] = s.avg_nr_running;
    j["avg_local_dsq_depth"] = s.avg_local_dsq_depth;
    j["stall_detected"] = s.stall_detected;
    if (s.event_deltas) {
        ojson ev;
        for (size_t i = 0; i < SCX_EVENT_COUNT; i++) ev[scx_event_names()[i]] = (*s.event_deltas)[i];
        j["event_deltas"] = ev;
        j["fallback_rate"] = s.fallback_rate;
        j["keep_last_rate"] = s.keep_last_rate;
        j["max_fallback_burst"] = s.max_fallback_burst;
    }
    if (s.schedstat_deltas) {
        const Schedstat &t = *s.schedstat_deltas;
        j["schedstat_deltas"] = {{"run_delay", t.run_delay}, {"pcount", t.pcount}, {"yld_count", t.yld_count},
                                 {"sched_count", t.sched_count}, {"sched_goidle", t.sched_goidle},
                                 {"ttwu_count", t.ttwu_count}, {"ttwu_local", t.ttwu_local}};
        j["run_delay_rate"] = s.run_delay_rate;
        j["sched_count_rate"] = s.sched_count_rate;
    }
    return j;
}

// ---- verdict ---------------------------------------------------------------------------------

namespace {
std::string fixed1(double v) {
    char buf[64];
    snprintf(buf, sizeof buf, "%.1f", v);
    return buf;
}
} // namespace

Verdict evaluate(const std::vector<Sample> &samples, const Thresholds &t, uint64_t threshold_ns) {
    Verdict v;
    if (samples.empty()) { v.summary = "no monitor samples"; return v; }
    size_t readings = 0;
    bool all_same_clock = true, any_invalid = false;
    std::optional<uint64_t> first_clock;
    for (const auto &s : samples) {
        if (!sample_looks_valid(s)) any_invalid = true;
        for (const auto &c : s.cpus) {
            readings++;
            if (!first_clock) first_clock = c.rq_clock;
            else if (c.rq_clock != *first_clock) all_same_clock = false;
        }
    }
    if (any_invalid || (readings >= 2 && all_same_clock)) {
        v.summary = "monitor data not yet initialized";
        v.details.push_back(any_invalid ? cat("a sample has a local DSQ depth above ", DSQ_PLAUSIBILITY_CEILING,
                                              ": monitor data implausible, no checks run")
                                        : "every rq_clock reading is identical: monitor data not initialized, no checks run");
        return v;
    }

    ViolationChecker checker(t, threshold_ns);
    for (const auto &s : samples) checker.add(s);
    v.violations = checker.sustained();
    for (const auto &x : v.violations) v.details.push_back(x.message);
    v.passed = v.violations.empty();
    v.summary = v.passed ? "monitor OK" : cat("monitor FAILED: ", v.violations.size(), " violation(s)");
    return v;
}

std::vector<Verdict::Violation> ViolationChecker::add(const Sample &s) {
    size_t i = index_++;
    if (s.cpus.empty()) {
        imbalance_.record(false, 0, i);
        dsq_.record(false, 0, i);
        dsq_cpu_at_.push_back(0);
    } else {
        double ratio = imbalance_ratio(s);
        imbalance_.record(ratio > t_.max_imbalance_ratio, ratio, i);
        uint32_t worst = 0, worst_cpu = 0;
        for (size_t c = 0; c < s.cpus.size(); c++)
            if (s.cpus[c].local_dsq_depth > worst) { worst = s.cpus[c].local_dsq_depth; worst_cpu = uint32_t(c); }
        dsq_cpu_at_.push_back(worst_cpu);
        dsq_.record(worst > t_.max_local_dsq_depth, worst, i);
    }
    if (prev_) {
        const Sample &p = *prev_;
        if (t_.fail_on_stall) {
            size_t n = std::min(p.cpus.size(), s.cpus.size());
            if (stall_.size() < n) stall_.resize(n);
            for (size_t c = 0; c < n; c++)
                stall_[c].record(stalled(p.cpus[c], s.cpus[c], threshold_ns_), double(s.cpus[c].rq_clock), i);
        }
        double interval = (double(s.elapsed_ms) - double(p.elapsed_ms)) / 1000.0;
        for (auto [idx, tracker, limit] : {std::tuple{EV_FALLBACK, &fallback_, t_.max_fallback_rate},
                                           std::tuple{EV_KEEP_LAST, &keep_last_, t_.max_keep_last_rate}}) {
            auto a = sum_event(p, idx), b = sum_event(s, idx);
            if (interval <= 0 || !a || !b) { tracker->record(false, 0, i); continue; }
            double rate = double(*b - *a) / interval;
            tracker->record(rate > limit, rate, i);
        }
    }
    prev_ = s;
    std::vector<Verdict::Violation> fresh;
    for (auto &v : sustained()) {
        std::string key = cat(v.check, "/", v.cpu ? int64_t(*v.cpu) : -1);
        if (std::find(reported_.begin(), reported_.end(), key) != reported_.end()) continue;
        reported_.push_back(key);
        fresh.push_back(std::move(v));
    }
    return fresh;
}

std::vector<Verdict::Violation> ViolationChecker::sustained() const {
    std::vector<Verdict::Violation> out;
    uint32_t n = t_.sustained_samples;
    auto add = [&](const char *check, std::optional<uint32_t> cpu, const SustainedTracker &tr, std::string msg) {
        out.push_back({check, cpu, tr.worst_value, tr.worst_run, tr.worst_at, std::move(msg)});
    };
    if (imbalance_.sustained(n))
        add("imbalance", std::nullopt, imbalance_,
            cat("imbalance ratio ", fixed1(imbalance_.worst_value), " above ", fixed1(t_.max_imbalance_ratio), " for ",
                imbalance_.worst_run, " samples (ending at sample ", imbalance_.worst_at, ")"));
    if (dsq_.sustained(n)) {
        uint32_t cpu = dsq_cpu_at_[dsq_.worst_at];
        add("local_dsq_depth", cpu, dsq_,
            cat("local DSQ depth ", uint64_t(dsq_.worst_value), " on cpu ", cpu, " above ", t_.max_local_dsq_depth,
                " for ", dsq_.worst_run, " samples (ending at sample ", dsq_.worst_at, ")"));
    }
    for (size_t c = 0; c < stall_.size(); c++)
        if (stall_[c].sustained(n))
            add("stall", uint32_t(c), stall_[c],
                cat("cpu ", c, " stalled: rq_clock stuck at ", uint64_t(stall_[c].worst_value),
                    " with runnable tasks for ", stall_[c].worst_run, " samples (ending at sample ",
                    stall_[c].worst_at, ")"));
    if (fallback_.sustained(n))
        add("fallback_rate", std::nullopt, fallback_,
            cat("select_cpu fallback rate ", fixed1(fallback_.worst_value), "/s above ", fixed1(t_.max_fallback_rate),
                "/s for ", fallback_.worst_run, " samples"));
    if (keep_last_.sustained(n))
        add("keep_last_rate", std::nullopt, keep_last_,
            cat("dispatch keep-last rate ", fixed1(keep_last_.worst_value), "/s above ", fixed1(t_.max_keep_last_rate),
                "/s for ", keep_last_.worst_run, " samples"));
    return out;
}

std::vector<Sample> trim_warmup(const std::vector<Sample> &samples) {
    if (samples.size() <= MONITOR_WARMUP_SAMPLES) return samples;
    return std::vector<Sample>(samples.begin() + MONITOR_WARMUP_SAMPLES, samples.end());
}

} // namespace ktstr::monitor
