// libktstr/report: the monitor summary and verdict of monitor.md section 8.
//
// Provisional: these pure functions belong to libktstr/monitor (its owner is
// writing them); report carries them from the spec until that lands, then
// calls the monitor's.  Upstream's traps are fixed as the spec asks:
// sustained_samples 0 is rejected, a missing vCPU time never hides a stall.
#include "ktstr/report.h"

#include <algorithm>
#include <cstdio>

#include "ktstr/util.h"

namespace ktstr::report {

namespace {
constexpr uint32_t DSQ_PLAUSIBILITY_CEILING = 10000;
constexpr size_t MONITOR_WARMUP_SAMPLES = 20;

std::string fmt(const char *f, double v) {
    char b[64];
    std::snprintf(b, sizeof b, f, v);
    return b;
}

// Sustained-violation tracker (8.4), remembering where the worst run ended.
struct Tracker {
    uint32_t consecutive = 0, worst_run = 0;
    double worst_value = 0;
    size_t worst_at = 0;
    int worst_cpu = -1;
    void record(bool violated, double value, size_t idx, int cpu = -1) {
        if (!violated) { consecutive = 0; return; }
        ++consecutive;
        if (consecutive > worst_run) {
            worst_run = consecutive;
            worst_value = value;
            worst_at = idx;
            worst_cpu = cpu;
        }
    }
    bool sustained(uint32_t n) const { return worst_run >= n; }
};
} // namespace

std::string MonitorVerdict::text() const {
    return passed ? "monitor OK" : cat("monitor FAILED: ", findings.size(), " violation(s)");
}

MonitorThresholds thresholds_from_checks(MonitorThresholds t, const json &checks) {
    if (!checks.is_object()) return t;
    auto num = [&](const char *k, auto &dst) {
        auto it = checks.find(k);
        if (it != checks.end() && it->is_number() && it->template get<double>() >= 0)
            dst = static_cast<std::remove_reference_t<decltype(dst)>>(it->template get<double>());
    };
    num("max_imbalance_ratio", t.max_imbalance_ratio);
    num("max_local_dsq_depth", t.max_local_dsq_depth);
    num("sustained_samples", t.sustained_samples);
    num("max_fallback_rate", t.max_fallback_rate);
    num("max_keep_last_rate", t.max_keep_last_rate);
    auto st = checks.find("fail_on_stall");
    if (st != checks.end() && st->is_boolean()) t.fail_on_stall = st->get<bool>();
    if (t.sustained_samples == 0)
        fail(ErrorKind::input, "checks: sustained_samples must be at least 1 (0 would fail every run)");
    return t;
}

double imbalance_ratio(const CpuReading *cpus, uint32_t n) {
    if (n == 0) return 1.0;
    uint32_t mx = 0, mn = UINT32_MAX;
    for (uint32_t i = 0; i < n; ++i) {
        mx = std::max(mx, cpus[i].nr_running);
        mn = std::min(mn, cpus[i].nr_running);
    }
    if (mx == 0) return 0.0;
    return static_cast<double>(mx) / std::max<uint32_t>(1, mn);
}

bool sample_looks_valid(const CpuReading *cpus, uint32_t n) {
    for (uint32_t i = 0; i < n; ++i)
        if (cpus[i].local_dsq_depth > DSQ_PLAUSIBILITY_CEILING) return false;
    return true;
}

bool stalled(const CpuReading &prev, const CpuReading &curr, uint64_t threshold_ns) {
    if (curr.rq_clock == 0 || curr.rq_clock != prev.rq_clock) return false;
    if (prev.nr_running == 0 && curr.nr_running == 0) return false;   // idle, not stalled
    if (prev.vcpu_cpu_time_ns >= 0 && curr.vcpu_cpu_time_ns >= 0) {
        int64_t ran = curr.vcpu_cpu_time_ns - prev.vcpu_cpu_time_ns;
        if (ran < 0) ran = 0;
        if (static_cast<uint64_t>(ran) < threshold_ns) return false;  // the vCPU was preempted by the host
    }
    return true;
}

uint64_t effective_preemption_threshold_ns(const MonitorData &m) {
    if (m.preemption_threshold_ns) return m.preemption_threshold_ns;
    int hz = m.hz > 0 ? m.hz : 250;
    return static_cast<uint64_t>(1e9 / hz) * 10;
}

size_t warmup_skip(const MonitorData &m) {
    return m.samples.size() > MONITOR_WARMUP_SAMPLES ? MONITOR_WARMUP_SAMPLES : 0;
}

MonitorSummary summarize(const MonitorData &m, size_t first) {
    MonitorSummary s;
    const uint64_t thr = effective_preemption_threshold_ns(m);
    double ratio_sum = 0, nr_sum = 0, dsq_sum = 0;
    size_t readings = 0;
    const MonitorSample *prev = nullptr;
    const MonitorSample *ev_first = nullptr, *ev_last = nullptr;
    for (size_t i = first; i < m.samples.size(); ++i) {
        const MonitorSample &smp = m.samples[i];
        const CpuReading *c = m.cpus(smp);
        if (smp.count == 0 || !sample_looks_valid(c, smp.count)) continue;
        ++s.samples;
        double r = imbalance_ratio(c, smp.count);
        s.max_imbalance_ratio = std::max(s.max_imbalance_ratio, r);
        ratio_sum += r;
        for (uint32_t k = 0; k < smp.count; ++k) {
            s.max_local_dsq_depth = std::max(s.max_local_dsq_depth, c[k].local_dsq_depth);
            nr_sum += c[k].nr_running;
            dsq_sum += c[k].local_dsq_depth;
            ++readings;
        }
        if (prev && !s.stall_detected) {
            const CpuReading *p = m.cpus(*prev);
            uint32_t n = std::min(prev->count, smp.count);
            for (uint32_t k = 0; k < n && !s.stall_detected; ++k) s.stall_detected = stalled(p[k], c[k], thr);
        }
        prev = &smp;
        if (smp.events.present) {
            if (!ev_first) ev_first = &smp;
            ev_last = &smp;
        }
    }
    if (s.samples) s.mean_imbalance_ratio = ratio_sum / static_cast<double>(s.samples);
    if (readings) {
        s.mean_nr_running = nr_sum / static_cast<double>(readings);
        s.mean_local_dsq_depth = dsq_sum / static_cast<double>(readings);
    }
    if (ev_first) {
        s.events = true;
        for (size_t k = 0; k < NUM_EVENT_COUNTERS; ++k)
            s.event_totals[k] = std::max<int64_t>(0, ev_last->events.sum[k] - ev_first->events.sum[k]);
        double dt = (ev_last->elapsed_ms - ev_first->elapsed_ms) / 1000.0;
        if (dt > 0) {
            s.fallback_rate = static_cast<double>(s.event_totals[EV_SELECT_CPU_FALLBACK]) / dt;
            s.keep_last_rate = static_cast<double>(s.event_totals[EV_DISPATCH_KEEP_LAST]) / dt;
        }
    }
    return s;
}

MonitorVerdict evaluate(const MonitorData &m, const MonitorThresholds &t, size_t first) {
    MonitorVerdict v;
    if (t.sustained_samples == 0) fail(ErrorKind::input, "monitor thresholds: sustained_samples must be at least 1");
    if (first >= m.samples.size()) {
        v.note = "no monitor samples";
        return v;
    }
    // Plausibility over every considered sample (8.6 step 2).
    size_t readings = 0;
    bool all_same_clock = true;
    bool have_clock = false;
    uint64_t clock0 = 0;
    for (size_t i = first; i < m.samples.size(); ++i) {
        const MonitorSample &smp = m.samples[i];
        const CpuReading *c = m.cpus(smp);
        if (!sample_looks_valid(c, smp.count)) {
            v.note = cat("monitor data not yet initialized (sample ", i, " has a local DSQ depth over ",
                         DSQ_PLAUSIBILITY_CEILING, ")");
            return v;
        }
        for (uint32_t k = 0; k < smp.count; ++k, ++readings) {
            if (!have_clock) { clock0 = c[k].rq_clock; have_clock = true; }
            else if (c[k].rq_clock != clock0) all_same_clock = false;
        }
    }
    if (readings >= 2 && all_same_clock) {
        v.note = "monitor data not yet initialized (every rq_clock is identical)";
        return v;
    }
    v.evaluated = true;

    const uint64_t thr = effective_preemption_threshold_ns(m);
    Tracker imbalance, dsq, fallback, keep_last;
    std::vector<Tracker> stall;
    for (size_t i = first; i < m.samples.size(); ++i) {
        const MonitorSample &smp = m.samples[i];
        const CpuReading *c = m.cpus(smp);
        if (smp.count == 0) {
            imbalance.record(false, 0, i);
            dsq.record(false, 0, i);
        } else {
            double r = imbalance_ratio(c, smp.count);
            imbalance.record(r > t.max_imbalance_ratio, r, i);
            uint32_t worst = 0;
            int worst_cpu = -1;
            for (uint32_t k = 0; k < smp.count; ++k)
                if (c[k].local_dsq_depth > worst || worst_cpu < 0) { worst = c[k].local_dsq_depth; worst_cpu = static_cast<int>(k); }
            dsq.record(worst > t.max_local_dsq_depth, worst, i, worst_cpu);
        }
        if (i == first) continue;
        const MonitorSample &prev = m.samples[i - 1];
        const CpuReading *p = m.cpus(prev);
        if (t.fail_on_stall) {
            uint32_t n = std::min(prev.count, smp.count);
            if (stall.size() < n) stall.resize(n);
            for (uint32_t k = 0; k < n; ++k)
                stall[k].record(stalled(p[k], c[k], thr), static_cast<double>(c[k].rq_clock), i, static_cast<int>(k));
        }
        double interval = (smp.elapsed_ms - prev.elapsed_ms) / 1000.0;
        auto rate = [&](Tracker &tr, size_t idx, double max) {
            if (interval <= 0 || !smp.events.present || !prev.events.present) { tr.record(false, 0, i); return; }
            double r = static_cast<double>(smp.events.sum[idx] - prev.events.sum[idx]) / interval;
            tr.record(r > max, r, i);
        };
        rate(fallback, EV_SELECT_CPU_FALLBACK, t.max_fallback_rate);
        rate(keep_last, EV_DISPATCH_KEEP_LAST, t.max_keep_last_rate);
    }

    auto add = [&](const Tracker &tr, const std::string &check, std::string msg) {
        MonitorFinding f;
        f.check = check;
        f.message = std::move(msg);
        f.cpu = tr.worst_cpu;
        f.last_sample = tr.worst_at;
        f.first_sample = tr.worst_at + 1 - tr.worst_run;
        f.start_ms = m.samples[f.first_sample].elapsed_ms;
        f.end_ms = m.samples[f.last_sample].elapsed_ms;
        v.findings.push_back(std::move(f));
    };
    const uint32_t n = t.sustained_samples;
    auto run_text = [](const Tracker &tr) {
        return cat(" for ", tr.worst_run, " consecutive samples (ending at sample ", tr.worst_at, ")");
    };
    if (imbalance.sustained(n))
        add(imbalance, "imbalance",
            cat("imbalance ratio ", fmt("%.1f", imbalance.worst_value), " exceeded threshold ",
                fmt("%.1f", t.max_imbalance_ratio), run_text(imbalance)));
    if (dsq.sustained(n))
        add(dsq, "dsq_depth",
            cat("local DSQ depth ", fmt("%.0f", dsq.worst_value), " on cpu", dsq.worst_cpu, " exceeded threshold ",
                t.max_local_dsq_depth, run_text(dsq)));
    for (size_t k = 0; k < stall.size(); ++k)
        if (stall[k].sustained(n))
            add(stall[k], "stall",
                cat("cpu", k, " stalled: rq_clock stuck at ", fmt("%.0f", stall[k].worst_value), run_text(stall[k])));
    if (fallback.sustained(n))
        add(fallback, "fallback_rate",
            cat("select_cpu_fallback rate ", fmt("%.1f", fallback.worst_value), "/s exceeded threshold ",
                fmt("%.1f", t.max_fallback_rate), "/s", run_text(fallback)));
    if (keep_last.sustained(n))
        add(keep_last, "keep_last_rate",
            cat("dispatch_keep_last rate ", fmt("%.1f", keep_last.worst_value), "/s exceeded threshold ",
                fmt("%.1f", t.max_keep_last_rate), "/s", run_text(keep_last)));
    v.passed = v.findings.empty();
    return v;
}

} // namespace ktstr::report
