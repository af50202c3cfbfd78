// libktstr/report: the monitor's summary and verdict over ingested samples.
//
// The judging itself is libktstr/monitor's (monitor.md 8: thresholds,
// sustained runs, violation wording); this file only turns report's compact
// sample store back into monitor::Sample values, one at a time, and places
// the result on the stream (warmup, sample indices, host times).
#include "ktstr/report.h"

#include "ktstr/util.h"

namespace ktstr::report {

monitor::Thresholds thresholds_from_checks(monitor::Thresholds t, const json &checks) {
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
    // The checks come from the input stream: a bad value there is bad input, not bad usage.
    if (t.sustained_samples == 0)
        fail(ErrorKind::input, "checks: sustained_samples must be at least 1 (0 would fail every run)");
    return t;
}

uint64_t preemption_threshold_ns(const MonitorData &m) {
    if (m.preemption_threshold_ns) return m.preemption_threshold_ns;
    return monitor::preemption_threshold_ns(m.hz > 0 ? static_cast<uint32_t>(m.hz) : 0);
}

void monitor_sample(const MonitorData &m, size_t i, monitor::Sample &out) {
    const MonitorSample &smp = m.samples[i];
    const CpuReading *c = m.cpus(smp);
    // elapsed_ms comes from the input: clamp before converting.
    out.elapsed_ms = !(smp.elapsed_ms > 0) ? 0 : smp.elapsed_ms >= 1.8e19 ? UINT64_MAX
                                                                          : static_cast<uint64_t>(smp.elapsed_ms + 0.5);
    out.cpus.resize(smp.count);
    for (uint32_t k = 0; k < smp.count; ++k) {
        monitor::CpuSample &o = out.cpus[k];
        o.nr_running = c[k].nr_running;
        o.rq_clock = c[k].rq_clock;
        o.has_scx = true;
        o.scx_nr_running = c[k].scx_nr_running;
        o.local_dsq_depth = c[k].local_dsq_depth;
        o.scx_flags = c[k].scx_flags;
        o.vcpu_cpu_time_ns = c[k].vcpu_cpu_time_ns >= 0 ? std::optional<uint64_t>(c[k].vcpu_cpu_time_ns) : std::nullopt;
        o.events.reset();
    }
    if (smp.events.present && smp.count > 0) {
        auto &ev = out.cpus[0].events.emplace();
        for (size_t e = 0; e < monitor::SCX_EVENT_COUNT; ++e) ev[e] = smp.events.sum[e];
    }
}

MonitorEvaluation evaluate_monitor(const MonitorData &m, const monitor::Thresholds &t, size_t first) {
    MonitorEvaluation r;
    r.first = std::min(first, m.samples.size());
    const uint64_t threshold_ns = preemption_threshold_ns(m);
    monitor::SummaryBuilder summary(threshold_ns);
    monitor::ViolationChecker checker(t, threshold_ns, r.first);
    monitor::Sample s;
    for (size_t i = r.first; i < m.samples.size(); ++i) {
        monitor_sample(m, i, s);
        summary.add(s);
        checker.add(s);
    }
    r.summary = summary.result();
    r.verdict = checker.verdict();
    return r;
}

size_t warmup_skip(const MonitorData &m) {
    return m.samples.size() > monitor::MONITOR_WARMUP_SAMPLES ? monitor::MONITOR_WARMUP_SAMPLES : 0;
}

ViolationSpan violation_span(const MonitorData &m, const monitor::Verdict::Violation &v) {
    ViolationSpan sp;
    if (v.at < m.samples.size()) sp.end_ms = m.samples[v.at].elapsed_ms;
    if (v.first() < m.samples.size()) sp.start_ms = m.samples[v.first()].elapsed_ms;
    return sp;
}

} // namespace ktstr::report
