// libktstr/monitor: samples as JSON, and the summary / verdict over them
// (spec section 8).  Pure functions: ktstr-report calls the same ones.
#include "ktstr/monitor.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <tuple>

#include "ktstr/saturating.h"

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
        if (c.events && (*c.events)[i]) sum = saturating_add(sum.value_or(0), *(*c.events)[i]);
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

bool shared_vcpu_thread(const Sample &s) {
    if (s.cpus.size() < 2 || !s.cpus[0].vcpu_cpu_time_ns) return false;
    for (const auto &c : s.cpus)
        if (c.vcpu_cpu_time_ns != s.cpus[0].vcpu_cpu_time_ns) return false;
    return true;
}

uint32_t stall_run_needed(uint32_t base, size_t vcpus, bool shared_thread) {
    return shared_thread ? std::max<uint32_t>(base, uint32_t(vcpus)) : base;
}

void SustainedTracker::record(bool violated, double value, size_t index) {
    if (!violated) { consecutive = 0; return; }
    consecutive++;
    if (consecutive > worst_run) { worst_run = consecutive; worst_value = value; worst_at = index; }
}

// ---- summary -------------------------------------------------------------------------------

namespace {
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

double seconds_between(uint64_t from_ms, uint64_t to_ms) {
    return to_ms > from_ms ? double(to_ms - from_ms) / 1000.0 : 0.0;
}
} // namespace

void SummaryBuilder::add(const Sample &s) {
    r_.total_samples++;
    if (s.cpus.empty() || !sample_looks_valid(s)) return;
    r_.valid_samples++;
    double ratio = imbalance_ratio(s);
    r_.max_imbalance_ratio = std::max(r_.max_imbalance_ratio, ratio);
    ratio_sum_ += ratio;
    for (const auto &c : s.cpus) {
        r_.max_local_dsq_depth = std::max(r_.max_local_dsq_depth, c.local_dsq_depth);
        nr_sum_ += c.nr_running;
        dsq_sum_ += c.local_dsq_depth;
        readings_++;
    }
    if (prev_valid_ && !r_.stall_detected) {
        size_t n = std::min(prev_valid_->cpus.size(), s.cpus.size());
        const uint32_t needed = stall_run_needed(1, n, shared_vcpu_thread(*prev_valid_) && shared_vcpu_thread(s));
        if (stuck_.size() < n) stuck_.resize(n);
        for (size_t c = 0; c < n && !r_.stall_detected; c++) {
            stuck_[c].record(stalled(prev_valid_->cpus[c], s.cpus[c], threshold_ns_), 0, 0);
            r_.stall_detected = stuck_[c].consecutive >= needed;
        }
    }
    if (!r_.stall_detected) prev_valid_ = s;   // once set, the flag needs no more neighbours

    // Event counters: the first and the latest sample that carry them.
    if (sum_event(s, SCX_EV_SELECT_CPU_FALLBACK)) {
        Counters now{s.elapsed_ms, {}};
        for (size_t i = 0; i < SCX_EVENT_COUNT; i++) now.sum[i] = sum_event(s, i).value_or(0);
        if (last_events_)
            r_.max_fallback_burst = std::max<int64_t>(
                r_.max_fallback_burst, std::max<int64_t>(0, saturating_sub(now.sum[SCX_EV_SELECT_CPU_FALLBACK],
                                                                           last_events_->sum[SCX_EV_SELECT_CPU_FALLBACK])));
        if (!first_events_) first_events_ = now;
        last_events_ = now;
    }
    if (auto t = schedstat_sum(s)) {
        if (!first_ss_) first_ss_ = Schedstats{s.elapsed_ms, *t};
        last_ss_ = Schedstats{s.elapsed_ms, *t};
    }
}

Summary SummaryBuilder::result() const {
    Summary r = r_;
    if (r.valid_samples) r.avg_imbalance_ratio = ratio_sum_ / double(r.valid_samples);
    if (readings_) { r.avg_nr_running = nr_sum_ / double(readings_); r.avg_local_dsq_depth = dsq_sum_ / double(readings_); }
    if (first_events_) {
        auto &d = r.event_deltas.emplace();
        for (size_t i = 0; i < SCX_EVENT_COUNT; i++)
            d[i] = std::max<int64_t>(0, saturating_sub(last_events_->sum[i], first_events_->sum[i]));
        double secs = seconds_between(first_events_->elapsed_ms, last_events_->elapsed_ms);
        r.fallback_rate = secs > 0 ? double(d[SCX_EV_SELECT_CPU_FALLBACK]) / secs : 0;
        r.keep_last_rate = secs > 0 ? double(d[SCX_EV_DISPATCH_KEEP_LAST]) / secs : 0;
    }
    if (first_ss_) {
        const Schedstat &f = first_ss_->sum, &l = last_ss_->sum;
        Schedstat &d = r.schedstat_deltas.emplace();
        d.run_delay = saturating_sub(l.run_delay, f.run_delay); d.pcount = saturating_sub(l.pcount, f.pcount);
        d.yld_count = saturating_sub(l.yld_count, f.yld_count); d.sched_count = saturating_sub(l.sched_count, f.sched_count);
        d.sched_goidle = saturating_sub(l.sched_goidle, f.sched_goidle); d.ttwu_count = saturating_sub(l.ttwu_count, f.ttwu_count);
        d.ttwu_local = saturating_sub(l.ttwu_local, f.ttwu_local);
        double secs = seconds_between(first_ss_->elapsed_ms, last_ss_->elapsed_ms);
        r.run_delay_rate = secs > 0 ? double(d.run_delay) / secs : 0;
        r.sched_count_rate = secs > 0 ? double(d.sched_count) / secs : 0;
    }
    return r;
}

Summary summarize(const std::vector<Sample> &samples, uint64_t threshold_ns) {
    SummaryBuilder b(threshold_ns);
    for (const auto &s : samples) b.add(s);
    return b.result();
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
std::string fixed(const char *format, double v) {
    char buf[64];
    snprintf(buf, sizeof buf, format, v);
    return buf;
}
} // namespace

Verdict evaluate(const std::vector<Sample> &samples, const Thresholds &t, uint64_t threshold_ns) {
    ViolationChecker checker(t, threshold_ns);
    for (const auto &s : samples) checker.add(s);
    return checker.verdict();
}

std::vector<Verdict::Violation> ViolationChecker::add(const Sample &s) {
    size_t i = index_++;
    if (!first_implausible_ && !sample_looks_valid(s)) first_implausible_ = i;
    for (const auto &c : s.cpus) {
        readings_++;
        if (!first_clock_) first_clock_ = c.rq_clock;
        else if (c.rq_clock != *first_clock_) all_same_clock_ = false;
    }
    if (s.cpus.empty()) {
        imbalance_.record(false, 0, i);
        dsq_.record(false, 0, i);
    } else {
        double ratio = imbalance_ratio(s);
        imbalance_.record(ratio > t_.max_imbalance_ratio, ratio, i);
        uint32_t worst = 0, worst_cpu = 0;
        for (size_t c = 0; c < s.cpus.size(); c++)
            if (s.cpus[c].local_dsq_depth > worst) { worst = s.cpus[c].local_dsq_depth; worst_cpu = uint32_t(c); }
        uint32_t run_before = dsq_.worst_run;
        dsq_.record(worst > t_.max_local_dsq_depth, worst, i);
        if (dsq_.worst_run != run_before) dsq_worst_cpu_ = worst_cpu;
    }
    if (prev_) {
        const Sample &p = *prev_;
        if (t_.fail_on_stall) {
            size_t n = std::min(p.cpus.size(), s.cpus.size());
            if (stall_.size() < n) stall_.resize(n);
            for (size_t c = 0; c < n; c++)
                stall_[c].record(stalled(p.cpus[c], s.cpus[c], threshold_ns_), double(s.cpus[c].rq_clock), i);
            shared_thread_ |= shared_vcpu_thread(p) && shared_vcpu_thread(s);
        }
        double interval = (double(s.elapsed_ms) - double(p.elapsed_ms)) / 1000.0;
        for (auto [idx, tracker, limit] :
             {std::tuple{SCX_EV_SELECT_CPU_FALLBACK, &fallback_, t_.max_fallback_rate},
              std::tuple{SCX_EV_DISPATCH_KEEP_LAST, &keep_last_, t_.max_keep_last_rate}}) {
            auto a = sum_event(p, idx), b = sum_event(s, idx);
            if (interval <= 0 || !a || !b) { tracker->record(false, 0, i); continue; }
            double rate = double(saturating_sub(*b, *a)) / interval;
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
    // The wording of scenarios.md 5.4: "<what> exceeded threshold <limit> for <k>
    // consecutive samples (ending at sample <i>)".
    auto add = [&](const char *check, std::optional<uint32_t> cpu, const SustainedTracker &tr, const std::string &what,
                   const std::string &limit) {
        out.push_back({check, cpu, tr.worst_value, tr.worst_run, tr.worst_at,
                       cat(what, " exceeded threshold ", limit, " for ", tr.worst_run,
                           " consecutive samples (ending at sample ", tr.worst_at, ")")});
    };
    if (imbalance_.sustained(n))
        add("imbalance", std::nullopt, imbalance_, cat("imbalance ratio ", fixed("%.1f", imbalance_.worst_value)),
            fixed("%.1f", t_.max_imbalance_ratio));
    if (dsq_.sustained(n))
        add("local_dsq_depth", dsq_worst_cpu_, dsq_,
            cat("local DSQ depth ", fixed("%.0f", dsq_.worst_value), " on cpu", dsq_worst_cpu_),
            cat(t_.max_local_dsq_depth));
    // A stall has no threshold to exceed: its run length is the finding.
    const uint32_t stall_n = stall_run_needed(n, stall_.size(), shared_thread_);
    for (size_t c = 0; c < stall_.size(); c++)
        if (stall_[c].sustained(stall_n)) {
            const SustainedTracker &tr = stall_[c];
            out.push_back({"stall", uint32_t(c), tr.worst_value, tr.worst_run, tr.worst_at,
                           cat("cpu", c, " stalled: rq_clock stuck at ", fixed("%.0f", tr.worst_value),
                               " with runnable tasks for ", tr.worst_run, " consecutive samples (ending at sample ",
                               tr.worst_at, ")")});
        }
    if (fallback_.sustained(n))
        add("fallback_rate", std::nullopt, fallback_, cat("select_cpu_fallback rate ", fixed("%.1f", fallback_.worst_value), "/s"),
            cat(fixed("%.1f", t_.max_fallback_rate), "/s"));
    if (keep_last_.sustained(n))
        add("keep_last_rate", std::nullopt, keep_last_,
            cat("dispatch_keep_last rate ", fixed("%.1f", keep_last_.worst_value), "/s"),
            cat(fixed("%.1f", t_.max_keep_last_rate), "/s"));
    return out;
}

Verdict ViolationChecker::verdict() const {
    Verdict v;
    if (index_ == first_index_) { v.summary = "no monitor samples"; return v; }
    // Spec 8.6 step 2: one implausible sample anywhere, or clocks that never
    // moved, mean the data cannot be judged.  Said loudly, with the sample.
    if (first_implausible_) {
        v.summary = cat("monitor data not yet initialized (sample ", *first_implausible_, " has a local DSQ depth over ",
                        DSQ_PLAUSIBILITY_CEILING, ")");
        return v;
    }
    if (readings_ >= 2 && all_same_clock_) {
        v.summary = "monitor data not yet initialized (every rq_clock is identical)";
        return v;
    }
    v.evaluated = true;
    v.violations = sustained();
    for (const auto &x : v.violations) v.details.push_back(x.message);
    v.passed = v.violations.empty();
    v.summary = v.passed ? "monitor OK" : cat("monitor FAILED: ", v.violations.size(), " violation(s)");
    return v;
}

std::vector<Sample> trim_warmup(const std::vector<Sample> &samples) {
    if (samples.size() <= MONITOR_WARMUP_SAMPLES) return samples;
    return std::vector<Sample>(samples.begin() + MONITOR_WARMUP_SAMPLES, samples.end());
}

} // namespace ktstr::monitor
