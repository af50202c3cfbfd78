// libktstr/report: verdicts per scenario, per run and overall.
//
//   pass          every scenario that ran passed, nothing was cut short
//   fail          a check failed, a scenario reported failure, the guest
//                 reported a failed verdict, or the monitor's verdict failed
//                 while a sched_ext scheduler was under test
//   inconclusive  nothing failed, but the evidence is incomplete: the input
//                 was cut short (no exit / end event, a broken last line),
//                 the guest never reached a scenario, a scenario did not
//                 finish, no check ran, the VM run failed for infrastructure
//                 reasons, or every scenario was skipped
// A failure outranks incompleteness: a failed check seen before a crash is a
// failure.
#include "ktstr/report.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "ktstr/util.h"

namespace ktstr::report {

const char *verdict_name(Verdict v) {
    switch (v) {
    case Verdict::pass: return "pass";
    case Verdict::fail: return "fail";
    case Verdict::skip: return "skip";
    default: return "inconclusive";
    }
}

int exit_code_of(Verdict v) {
    switch (v) {
    case Verdict::pass: return 0;
    case Verdict::fail: return 1;
    default: return 2;
    }
}

std::vector<CgroupStats> cgroup_stats(const std::vector<WorkerReport> &workers) {
    std::vector<CgroupStats> out;
    std::map<std::string, size_t> index;
    std::vector<std::vector<const WorkerReport *>> members;
    for (const auto &w : workers) {
        auto [it, fresh] = index.emplace(w.cgroup, out.size());
        if (fresh) {
            out.emplace_back();
            out.back().name = w.cgroup.empty() ? "(unknown)" : w.cgroup;
            members.emplace_back();
        }
        members[it->second].push_back(&w);
    }
    for (size_t g = 0; g < out.size(); ++g) {
        CgroupStats &s = out[g];
        std::set<int> cpus;
        std::vector<double> off;
        std::vector<uint64_t> wake;
        uint64_t summary_p99 = 0, summary_p50 = 0;   // workers that sent percentiles only
        double delay_sum = 0;
        size_t delay_n = 0;
        for (const WorkerReport *w : members[g]) {
            ++s.workers;
            cpus.insert(w->cpus_used.begin(), w->cpus_used.end());
            if (w->wall_time_ns > 0)
                off.push_back(100.0 * static_cast<double>(std::min(w->off_cpu_ns, w->wall_time_ns)) /
                              static_cast<double>(w->wall_time_ns));
            if (w->max_gap_ms > s.max_gap_ms || (s.max_gap_cpu < 0 && w->max_gap_ms == s.max_gap_ms)) {
                s.max_gap_ms = w->max_gap_ms;
                s.max_gap_cpu = w->max_gap_cpu;
            }
            s.migrations += w->migration_count;
            s.iterations += w->iterations;
            if (w->schedstat_run_count > 0) {
                double d = static_cast<double>(w->schedstat_run_delay_ns) / static_cast<double>(w->schedstat_run_count) / 1000.0;
                delay_sum += d;
                ++delay_n;
                s.worst_run_delay_us = std::max(s.worst_run_delay_us, d);
            }
            wake.insert(wake.end(), w->resume_latencies_ns.begin(), w->resume_latencies_ns.end());
            if (w->resume_latencies_ns.empty() && w->wake_p99_ns) {
                summary_p99 = std::max(summary_p99, w->wake_p99_ns);
                summary_p50 = std::max(summary_p50, w->wake_p50_ns);
            }
        }
        s.cpus.assign(cpus.begin(), cpus.end());
        if (!off.empty()) {
            auto [mn, mx] = std::minmax_element(off.begin(), off.end());
            s.min_off_cpu_pct = *mn;
            s.max_off_cpu_pct = *mx;
            s.spread_pct = off.size() >= 2 ? *mx - *mn : 0;
        }
        s.migration_ratio = s.iterations ? static_cast<double>(s.migrations) / static_cast<double>(s.iterations) : 0;
        if (delay_n) s.mean_run_delay_us = delay_sum / static_cast<double>(delay_n);
        s.wake_samples = wake.size();
        if (wake.empty() && summary_p99) {
            // Without the pooled samples the worst worker's percentiles are
            // the best available bound (the guest's own check used the pool).
            s.p99_wake_us = static_cast<double>(summary_p99) / 1000.0;
            s.median_wake_us = static_cast<double>(summary_p50) / 1000.0;
            s.wake_samples = 1;
        }
        if (!wake.empty()) {
            std::sort(wake.begin(), wake.end());
            size_t n = wake.size();
            // nearest rank: index ceil(0.99 n) - 1, computed in integers (no float ceil surprises)
            size_t p99 = (99 * n + 99) / 100 - 1;
            s.p99_wake_us = static_cast<double>(wake[std::min(p99, n - 1)]) / 1000.0;
            s.median_wake_us = static_cast<double>(wake[n / 2]) / 1000.0;
            double mean = 0;
            for (auto x : wake) mean += static_cast<double>(x);
            mean /= static_cast<double>(n);
            if (n >= 2 && mean > 0) {
                double var = 0;
                for (auto x : wake) var += (static_cast<double>(x) - mean) * (static_cast<double>(x) - mean);
                s.wake_cv = std::sqrt(var / static_cast<double>(n)) / mean;
            }
        }
    }
    return out;
}

int step_at(const ScenarioRun &s, double t) {
    int found = -1;
    for (size_t i = 0; i < s.steps.size(); ++i)
        if (s.steps[i].at_s >= 0 && s.steps[i].at_s <= t) found = static_cast<int>(i);
    return found;
}

namespace {

bool scheduler_under_test(const std::string &s) {
    return !s.empty() && s != "eevdf" && s != "EEVDF" && s != "none" && s != "cfs";
}

// What the run's exit event says, as (verdict contribution, one-line reason).
// exit_code follows ktstr-vmm's process status: 0 passed, 1 the guest's
// verdict failed, 2/3 usage/infrastructure (timeout, crash, unknown exit).
std::pair<Verdict, std::string> classify_exit(const ExitInfo &e) {
    std::string why = e.reason.empty() ? std::string("exit") : e.reason;
    if (!e.exit_code) return {Verdict::inconclusive, cat("VM run ended without an exit code (", why, ")")};
    int64_t c = *e.exit_code;
    if (c == 0) return {Verdict::pass, ""};
    if (c == 1) return {Verdict::fail, cat("guest reported a failed verdict (exit code 1, ", why, ")")};
    return {Verdict::inconclusive, cat("VM run failed: ", why, " (exit code ", c, ")")};
}

Finding monitor_finding(const monitor::Verdict::Violation &v, const Run &run, bool counts) {
    Finding f;
    f.source = "monitor";
    f.kind = "Monitor";
    f.check = v.check;
    f.message = v.message;
    if (v.cpu) f.cpu = static_cast<int>(*v.cpu);
    ViolationSpan span = violation_span(run.monitor, v);
    f.at_s = span.start_ms / 1000.0;
    f.duration_ms = span.end_ms - span.start_ms;
    f.failed = counts;
    return f;
}

} // namespace

RunResult evaluate_run(const Run &run, const EvaluateOptions &opt) {
    RunResult rr;
    rr.run = &run;

    // ---- the monitor --------------------------------------------------------
    bool sched = scheduler_under_test(run.scheduler);
    for (const auto &s : run.scenarios) sched = sched || scheduler_under_test(s.scheduler);
    rr.monitor_counts = run.monitor.present &&
                        (opt.monitor == MonitorPolicy::always ||
                         (opt.monitor == MonitorPolicy::automatic && (sched || !run.has_vmm)));
    monitor::Thresholds thr;
    for (const auto &s : run.scenarios) thr = thresholds_from_checks(thr, s.checks_config);
    if (run.monitor.present) rr.monitor = evaluate_monitor(run.monitor, thr, opt.warmup ? warmup_skip(run.monitor) : 0);
    const auto &violations = rr.monitor.verdict.violations;
    std::vector<bool> placed(violations.size(), false);

    // ---- scenarios --------------------------------------------------------------
    for (size_t si = 0; si < run.scenarios.size(); ++si) {
        const ScenarioRun &s = run.scenarios[si];
        ScenarioResult res;
        res.scenario = &s;
        res.cgroups = cgroup_stats(s.workers);
        double end = s.end_s >= 0 ? s.end_s : run.exit ? run.exit->elapsed_s : -1;
        if (s.start_s >= 0 && end >= s.start_s) res.duration_s = end - s.start_s;
        for (const auto &f : s.findings) {
            Finding g = f;
            if (g.at_s) {
                int st = step_at(s, *g.at_s);
                if (st >= 0) g.step = s.steps[static_cast<size_t>(st)].index;
            }
            res.findings.push_back(std::move(g));
        }
        // Monitor findings inside this scenario's window (start .. end, or the
        // next scenario's start when it did not end).
        double lo = s.start_s >= 0 ? s.start_s : 0;
        double hi = s.end_s >= 0 ? s.end_s
                    : si + 1 < run.scenarios.size() && run.scenarios[si + 1].start_s >= 0 ? run.scenarios[si + 1].start_s
                                                                                           : 1e300;
        bool monitor_failed_here = false;
        for (size_t k = 0; k < violations.size(); ++k) {
            ViolationSpan span = violation_span(run.monitor, violations[k]);
            double t_end = span.end_ms / 1000.0, t_start = span.start_ms / 1000.0;
            if (placed[k] || t_end < lo || t_start > hi) continue;
            placed[k] = true;
            Finding f = monitor_finding(violations[k], run, rr.monitor_counts);
            int st = step_at(s, *f.at_s);
            if (st >= 0) f.step = s.steps[static_cast<size_t>(st)].index;
            if (rr.monitor_counts) {
                res.findings.push_back(std::move(f));
                monitor_failed_here = true;
            } else {
                res.notes.push_back(std::move(f));
            }
        }
        if (s.skipped) {
            res.verdict = Verdict::skip;
            res.reason = s.skip_reason.empty() ? "skipped" : cat("skipped: ", s.skip_reason);
        } else if (!res.findings.empty() || s.passed == false) {
            res.verdict = Verdict::fail;
            if (res.findings.empty()) {
                Finding f;
                f.source = "scenario";
                f.kind = "Other";
                f.message = "scenario reported failure without details";
                res.findings.push_back(f);
            }
            size_t n = res.findings.size();
            res.reason = monitor_failed_here && s.passed != false && s.findings.empty()
                             ? "passed scenario but monitor failed"
                             : cat(n, " failing check", n == 1 ? "" : "s");
        } else if (!s.ended) {
            res.verdict = Verdict::inconclusive;
            res.reason = "scenario did not finish (no scenario_end event)";
        } else if (s.checks_seen == 0 && !s.passed) {
            res.verdict = Verdict::inconclusive;
            res.reason = "no checks ran";
        } else {
            res.verdict = Verdict::pass;
            res.reason = s.checks_seen ? cat(s.checks_seen, " check event", s.checks_seen == 1 ? "" : "s", ", all passed")
                                       : "scenario passed";
        }
        rr.scenarios.push_back(std::move(res));
    }
    // Monitor findings outside every scenario window belong to the run.
    for (size_t k = 0; k < violations.size(); ++k)
        if (!placed[k]) rr.findings.push_back(monitor_finding(violations[k], run, rr.monitor_counts));

    // ---- the run -------------------------------------------------------------------
    std::vector<std::string> incomplete;
    bool failed = false;
    for (const auto &f : rr.findings) failed = failed || f.failed;
    if (run.exit) {
        auto [v, why] = classify_exit(*run.exit);
        if (v == Verdict::fail) {
            bool explained = std::any_of(rr.scenarios.begin(), rr.scenarios.end(),
                                         [](const ScenarioResult &r) { return r.verdict == Verdict::fail; });
            if (!explained) {
                Finding f;
                f.source = "exit";
                f.kind = "Other";
                f.message = why;
                f.at_s = run.exit->elapsed_s;
                rr.findings.push_back(f);
                failed = true;
            }
        } else if (v == Verdict::inconclusive) {
            incomplete.push_back(why);
        }
    }
    for (const auto &t : run.truncated) incomplete.push_back(t);
    if (run.has_vmm && run.scenarios.empty()) incomplete.push_back("the guest never reached a scenario");
    if (!run.has_vmm && !run.monitor.present && run.truncated.empty())
        incomplete.push_back("no ktstr.vmm/1 or ktstr.monitor/1 events in the input");
    if (!run.has_vmm && run.monitor.present && !rr.monitor.verdict.evaluated)
        incomplete.push_back(rr.monitor.verdict.summary.empty() ? "monitor verdict not evaluated" : rr.monitor.verdict.summary);

    size_t n_fail = 0, n_incon = 0, n_skip = 0;
    for (const auto &r : rr.scenarios) {
        n_fail += r.verdict == Verdict::fail;
        n_incon += r.verdict == Verdict::inconclusive;
        n_skip += r.verdict == Verdict::skip;
    }
    if (failed || n_fail) {
        rr.verdict = Verdict::fail;
        rr.reason = n_fail ? cat(n_fail, " scenario", n_fail == 1 ? "" : "s", " failed")
                           : rr.findings.front().message;
        if (!incomplete.empty()) rr.reason += cat("; also: ", incomplete.front());
    } else if (!incomplete.empty() || n_incon) {
        rr.verdict = Verdict::inconclusive;
        if (incomplete.empty()) rr.reason = cat(n_incon, " scenario(s) inconclusive");
        for (const auto &why : incomplete) rr.reason += (rr.reason.empty() ? "" : "; ") + why;
    } else if (!rr.scenarios.empty() && n_skip == rr.scenarios.size()) {
        rr.verdict = Verdict::skip;
        rr.reason = "every scenario was skipped";
    } else {
        rr.verdict = Verdict::pass;
        rr.reason = run.has_vmm ? "all scenarios passed" : rr.monitor.verdict.summary;
    }
    return rr;
}

Report evaluate_runs(const std::vector<Run> &runs, const EvaluateOptions &opt) {
    Report rep;
    for (const auto &r : runs) rep.runs.push_back(evaluate_run(r, opt));
    size_t runs_failed = 0, runs_incon = 0, runs_skip = 0;
    for (const auto &rr : rep.runs) {
        runs_failed += rr.verdict == Verdict::fail;
        runs_incon += rr.verdict == Verdict::inconclusive;
        runs_skip += rr.verdict == Verdict::skip;
        for (const auto &s : rr.scenarios) {
            rep.passed += s.verdict == Verdict::pass;
            rep.failed += s.verdict == Verdict::fail;
            rep.skipped += s.verdict == Verdict::skip;
            rep.inconclusive += s.verdict == Verdict::inconclusive;
        }
    }
    if (rep.runs.empty()) {
        rep.verdict = Verdict::inconclusive;
        rep.reason = "no input";
    } else if (runs_failed) {
        rep.verdict = Verdict::fail;
        rep.reason = cat(runs_failed, " of ", rep.runs.size(), " run", rep.runs.size() == 1 ? "" : "s", " failed");
    } else if (runs_incon) {
        rep.verdict = Verdict::inconclusive;
        for (const auto &rr : rep.runs)
            if (rr.verdict == Verdict::inconclusive) { rep.reason = rr.reason; break; }
    } else if (runs_skip == rep.runs.size()) {
        rep.verdict = Verdict::inconclusive;
        rep.reason = "every scenario was skipped";
    } else {
        rep.verdict = Verdict::pass;
        rep.reason = rep.runs.size() == 1 ? rep.runs.front().reason : "all runs passed";
    }
    return rep;
}

} // namespace ktstr::report
