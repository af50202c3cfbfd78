// libktstr/report: the text summary, ktstr.report/1 JSON and JUnit XML.
#include <algorithm>
#include <map>
#include <sstream>
#include <utility>

#include "format.h"
#include "ktstr/util.h"

namespace ktstr::report {

namespace detail {

std::string cpulist(const std::vector<int> &cpus) {
    std::string out;
    for (size_t i = 0; i < cpus.size();) {
        size_t j = i;
        while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
        if (!out.empty()) out += ',';
        out += std::to_string(cpus[i]);
        if (j > i) out += cat("-", cpus[j]);
        i = j + 1;
    }
    return out;
}

std::string finding_context(const Finding &f) {
    std::vector<std::string> parts;
    if (f.source == "monitor") parts.push_back("monitor");
    if (!f.cgroup.empty()) parts.push_back("cgroup " + f.cgroup);
    if (f.cpu) parts.push_back(cat("cpu ", *f.cpu));
    if (f.duration_ms) parts.push_back(cat("lasted ", fmtd("%.0f", *f.duration_ms), "ms"));
    if (f.at_s) parts.push_back(cat("at +", fmtd("%.2f", *f.at_s), "s"));
    if (f.step) parts.push_back(cat("during step ", *f.step));
    std::string out;
    for (auto &p : parts) out += (out.empty() ? "" : ", ") + p;
    return out;
}

std::string run_scheduler(const Run &r) {
    std::string sched = r.scheduler;
    for (const auto &s : r.scenarios)
        if (sched.empty()) sched = s.scheduler;   // the runner names it per scenario
    return sched.empty() ? "eevdf" : sched;
}

std::string run_header(const Run &r) {
    std::vector<std::string> parts;
    if (!r.kernel.empty()) parts.push_back("kernel " + r.kernel);
    if (!r.topology.empty()) parts.push_back("topology " + r.topology + (r.cpus ? cat(" (", r.cpus, " cpus)") : ""));
    if (!r.accel.empty()) parts.push_back("accel " + r.accel);
    parts.push_back("scheduler " + run_scheduler(r));
    std::string out;
    for (auto &p : parts) out += (out.empty() ? "" : "  ") + p;
    return out;
}

std::vector<std::string> step_cpuset_lines(const std::vector<StepMark> &steps) {
    bool any = false;
    for (const auto &st : steps)
        for (const auto &[name, cpus] : st.cpusets) any = any || cpus.has_value();
    std::vector<std::string> lines;
    if (!any) return lines;
    for (const auto &st : steps) {
        std::string l = cat("step ", st.index, " cpusets:");
        for (const auto &[name, cpus] : st.cpusets) l += cat("  ", name, " ", !cpus ? "all" : cpus->empty() ? "-" : cpulist(*cpus));
        lines.push_back(l);
    }
    return lines;
}

std::string xml_escape(const std::string &s) {
    std::string o;
    o.reserve(s.size());
    for (unsigned char c : s) {
        switch (c) {
        case '<': o += "&lt;"; break;
        case '>': o += "&gt;"; break;
        case '&': o += "&amp;"; break;
        case '"': o += "&quot;"; break;
        case '\'': o += "&apos;"; break;
        default:
            // XML 1.0 forbids most control characters even escaped; guest
            // console text can carry them.
            if (c < 0x20 && c != '\n' && c != '\t' && c != '\r') o += cat("\\x", "0123456789abcdef"[c >> 4], "0123456789abcdef"[c & 15]);
            else o += static_cast<char>(c);
        }
    }
    return o;
}

std::string scenario_title(const ScenarioRun &s) {
    std::string t = s.name;
    if (!s.topology.empty()) t += " [" + s.topology + "]";
    if (!s.flags.empty()) {
        std::string f;
        for (auto &x : s.flags) f += (f.empty() ? "" : "+") + x;
        t += " {" + f + "}";
    }
    return t;
}

} // namespace detail

using namespace detail;

namespace {

const char *upper(Verdict v) {
    switch (v) {
    case Verdict::pass: return "PASS";
    case Verdict::fail: return "FAIL";
    case Verdict::skip: return "SKIP";
    default: return "INCONCLUSIVE";
    }
}

std::string paint(const std::string &s, Verdict v, bool color) {
    if (!color) return s;
    const char *c = v == Verdict::pass ? "\033[32m" : v == Verdict::fail ? "\033[1;31m" : v == Verdict::skip ? "\033[36m" : "\033[33m";
    return cat(c, s, "\033[0m");
}

std::string pad(std::string s, size_t w, bool right = false) {
    if (s.size() >= w) return s;
    return right ? std::string(w - s.size(), ' ') + s : s + std::string(w - s.size(), ' ');
}

void cgroup_table(std::ostringstream &o, const std::vector<CgroupStats> &cgs) {
    if (cgs.empty()) return;
    o << "    " << pad("cgroup", 16) << pad("workers", 8, true) << "  " << pad("ran on", 10) << pad("spread", 8, true)
      << pad("max gap", 14, true) << pad("migrations", 12, true) << pad("iterations", 14, true) << "\n";
    for (const auto &c : cgs) {
        std::string gap = cat(c.max_gap_ms, "ms", c.max_gap_cpu >= 0 ? cat("@cpu", c.max_gap_cpu) : "");
        o << "    " << pad(c.name, 16) << pad(std::to_string(c.workers), 8, true) << "  "
          << pad(c.cpus.empty() ? "-" : cpulist(c.cpus), 10) << pad(fmtd("%.1f%%", c.spread_pct), 8, true)
          << pad(gap, 14, true) << pad(std::to_string(c.migrations), 12, true)
          << pad(std::to_string(c.iterations), 14, true) << "\n";
    }
}

void finding_lines(std::ostringstream &o, const std::vector<Finding> &fs, const char *indent) {
    for (const auto &f : fs) {
        o << indent << f.message << "\n";
        std::string ctx = finding_context(f);
        if (!ctx.empty()) o << indent << "    " << ctx << "\n";
    }
}

} // namespace

std::string render_text(const Report &rep, bool color) {
    std::ostringstream o;
    for (const auto &rr : rep.runs) {
        const Run &r = *rr.run;
        std::string srcs;
        for (auto &s : r.sources) srcs += (srcs.empty() ? "" : " + ") + s;
        o << "== " << srcs << "\n";
        if (r.has_vmm) o << run_header(r) << "\n";
        if (r.exit)
            o << "exit: " << (r.exit->reason.empty() ? "exit" : r.exit->reason) << ", code "
              << (r.exit->exit_code ? std::to_string(*r.exit->exit_code) : "?") << ", after "
              << fmtd("%.2f", r.exit->elapsed_s) << "s\n";
        for (const auto &t : r.truncated) o << "cut short: " << t << "\n";
        if (r.exit && !r.exit->console_tail.empty() && rr.verdict != Verdict::pass) {
            o << "console tail:\n";
            for (const auto &l : split(r.exit->console_tail, '\n', false)) o << "  | " << l << "\n";
        }
        o << "\n";
        for (const auto &sr : rr.scenarios) {
            const ScenarioRun &s = *sr.scenario;
            o << paint(pad(upper(sr.verdict), 5), sr.verdict, color) << " " << scenario_title(s);
            if (sr.duration_s > 0) o << "  " << fmtd("%.2f", sr.duration_s) << "s";
            if (sr.verdict != Verdict::pass) o << "  (" << sr.reason << ")";
            o << "\n";
            finding_lines(o, sr.findings, "      ");
            if (!sr.notes.empty()) {
                o << "      not counted (no sched_ext scheduler under test):\n";
                finding_lines(o, sr.notes, "        ");
            }
            if (!s.steps.empty()) {
                o << "    steps:";
                for (const auto &st : s.steps) o << " " << st.index << "@+" << fmtd("%.2f", st.at_s) << "s";
                o << "\n";
                for (auto &line : step_cpuset_lines(s.steps)) o << "    " << line << "\n";
            }
            cgroup_table(o, sr.cgroups);
        }
        if (!rr.findings.empty()) {
            o << "run:\n";
            finding_lines(o, rr.findings, "      ");
        }
        const MonitorData &m = r.monitor;
        if (m.present) {
            const monitor::Summary &ms = rr.monitor.summary;
            o << "monitor: " << m.samples.size() << " samples";
            if (rr.monitor.first) o << " (first " << rr.monitor.first << " skipped as warmup)";
            o << ", max imbalance " << fmtd("%.1f", ms.max_imbalance_ratio) << ", mean imbalance "
              << fmtd("%.2f", ms.avg_imbalance_ratio) << ", max local DSQ depth " << ms.max_local_dsq_depth
              << ", mean nr_running " << fmtd("%.2f", ms.avg_nr_running) << ", stall seen: "
              << (ms.stall_detected ? "yes" : "no") << "\n";
            if (ms.event_deltas)
                o << "         select_cpu_fallback " << (*ms.event_deltas)[monitor::SCX_EV_SELECT_CPU_FALLBACK] << " ("
                  << fmtd("%.1f", ms.fallback_rate) << "/s), dispatch_keep_last "
                  << (*ms.event_deltas)[monitor::SCX_EV_DISPATCH_KEEP_LAST] << " (" << fmtd("%.1f", ms.keep_last_rate)
                  << "/s)\n";
            o << "         " << rr.monitor.verdict.summary
              << (rr.monitor_counts ? "" : " (informational: no sched_ext scheduler under test)") << "\n";
            for (const auto &w : m.warnings) o << "         warning: " << w << "\n";
        }
        o << paint(cat("run: ", upper(rr.verdict)), rr.verdict, color) << " (" << rr.reason << ")\n\n";
    }
    o << paint(cat("RESULT: ", upper(rep.verdict)), rep.verdict, color) << " (";
    if (rep.failed + rep.passed + rep.skipped + rep.inconclusive == 0)
        o << "no scenario reported in " << rep.runs.size() << (rep.runs.size() == 1 ? " run" : " runs");
    else
        o << rep.failed << " failed, " << rep.passed << " passed, " << rep.skipped << " skipped, " << rep.inconclusive
          << " inconclusive";
    if (rep.runs.size() > 1) {
        // Scenario counts leave out runs that never reached one: count runs too.
        std::map<Verdict, size_t> by;
        for (const auto &rr : rep.runs) by[rr.verdict]++;
        o << "; runs:";
        const char *sep = " ";
        const std::pair<Verdict, const char *> kinds[] = {
            {Verdict::fail, "failed"}, {Verdict::pass, "passed"}, {Verdict::skip, "skipped"}, {Verdict::inconclusive, "inconclusive"}};
        for (auto [v, word] : kinds)
            if (by[v]) o << std::exchange(sep, ", ") << by[v] << " " << word;
    }
    o << "; " << rep.reason << ")\n";
    return o.str();
}

// ---- JSON -------------------------------------------------------------------------

namespace {

ojson finding_json(const Finding &f) {
    ojson j = ojson::object();
    j["source"] = f.source;
    if (!f.kind.empty()) j["kind"] = f.kind;
    if (!f.check.empty()) j["check"] = f.check;
    j["message"] = f.message;
    if (!f.cgroup.empty()) j["cgroup"] = f.cgroup;
    if (f.cpu) j["cpu"] = *f.cpu;
    if (f.at_s) j["at_s"] = *f.at_s;
    if (f.duration_ms) j["duration_ms"] = *f.duration_ms;
    if (f.step) j["step"] = *f.step;
    j["counts"] = f.failed;
    return j;
}

ojson findings_json(const std::vector<Finding> &fs) {
    ojson a = ojson::array();
    for (const auto &f : fs) a.push_back(finding_json(f));
    return a;
}

} // namespace

ojson render_json(const Report &rep) {
    ojson d = make_doc("report", 1);
    d["verdict"] = verdict_name(rep.verdict);
    d["exit_code"] = exit_code_of(rep.verdict);
    d["reason"] = rep.reason;
    d["counts"] = {{"passed", rep.passed}, {"failed", rep.failed}, {"skipped", rep.skipped}, {"inconclusive", rep.inconclusive}};
    ojson runs = ojson::array();
    for (const auto &rr : rep.runs) {
        const Run &r = *rr.run;
        ojson jr = ojson::object();
        jr["sources"] = r.sources;
        jr["verdict"] = verdict_name(rr.verdict);
        jr["reason"] = rr.reason;
        if (r.has_vmm) {
            jr["kernel"] = r.kernel;
            jr["topology"] = r.topology;
            jr["accel"] = r.accel;
            jr["scheduler"] = run_scheduler(r);   // "eevdf" or the scheduler binary's name
            jr["cpus"] = r.cpus;
        }
        if (r.exit) {
            ojson e = {{"reason", r.exit->reason}, {"elapsed_s", r.exit->elapsed_s}};
            e["exit_code"] = r.exit->exit_code ? ojson(*r.exit->exit_code) : ojson(nullptr);
            jr["exit"] = e;
        }
        jr["truncated"] = r.truncated;
        ojson scen = ojson::array();
        for (const auto &sr : rr.scenarios) {
            const ScenarioRun &s = *sr.scenario;
            ojson js = ojson::object();
            js["name"] = s.name;
            js["topology"] = s.topology;
            if (!s.scheduler.empty()) js["scheduler"] = s.scheduler;
            if (!s.flags.empty()) js["flags"] = s.flags;
            js["verdict"] = verdict_name(sr.verdict);
            js["reason"] = sr.reason;
            js["duration_s"] = sr.duration_s;
            js["findings"] = findings_json(sr.findings);
            if (!sr.notes.empty()) js["notes"] = findings_json(sr.notes);
            ojson steps = ojson::array();
            for (const auto &st : s.steps) {
                ojson cs = ojson::object();
                for (const auto &[name, cpus] : st.cpusets) cs[name] = cpus ? ojson(cpulist(*cpus)) : ojson(nullptr);
                steps.push_back({{"index", st.index}, {"at_s", st.at_s}, {"op_count", st.op_count},
                                 {"cgroups", st.cgroups}, {"workers", st.workers}, {"cpusets", cs}});
            }
            js["steps"] = steps;
            ojson cgs = ojson::array();
            for (const auto &c : sr.cgroups)
                cgs.push_back({{"name", c.name}, {"workers", c.workers}, {"cpus", cpulist(c.cpus)},
                               {"spread_pct", c.spread_pct}, {"min_off_cpu_pct", c.min_off_cpu_pct},
                               {"max_off_cpu_pct", c.max_off_cpu_pct}, {"max_gap_ms", c.max_gap_ms},
                               {"max_gap_cpu", c.max_gap_cpu}, {"migrations", c.migrations},
                               {"migration_ratio", c.migration_ratio}, {"iterations", c.iterations},
                               {"p99_wake_us", c.p99_wake_us}, {"median_wake_us", c.median_wake_us},
                               {"mean_run_delay_us", c.mean_run_delay_us}});
            js["cgroups"] = cgs;
            scen.push_back(js);
        }
        jr["scenarios"] = scen;
        jr["findings"] = findings_json(rr.findings);
        if (r.monitor.present) {
            const monitor::Summary &ms = rr.monitor.summary;
            const monitor::Verdict &mv = rr.monitor.verdict;
            ojson jm = ojson::object();
            jm["samples"] = r.monitor.samples.size();
            jm["warmup_skipped"] = rr.monitor.first;
            jm["ended"] = r.monitor.ended;
            jm["counts"] = rr.monitor_counts;
            jm["verdict"] = mv.evaluated ? (mv.passed ? "pass" : "fail") : "not_evaluated";
            jm["text"] = mv.summary;
            // ktstr.report/1 keeps its own member names (mean_*, event_totals) for the monitor library's summary.
            jm["summary"] = {{"max_imbalance_ratio", ms.max_imbalance_ratio}, {"mean_imbalance_ratio", ms.avg_imbalance_ratio},
                             {"max_local_dsq_depth", ms.max_local_dsq_depth}, {"mean_nr_running", ms.avg_nr_running},
                             {"mean_local_dsq_depth", ms.avg_local_dsq_depth}, {"stall_detected", ms.stall_detected}};
            if (ms.event_deltas) {
                ojson ev = ojson::object();
                for (size_t k = 0; k < monitor::SCX_EVENT_COUNT; ++k) ev[monitor::scx_event_names()[k]] = (*ms.event_deltas)[k];
                jm["summary"]["event_totals"] = ev;
                jm["summary"]["fallback_rate"] = ms.fallback_rate;
                jm["summary"]["keep_last_rate"] = ms.keep_last_rate;
            }
            ojson vs = ojson::array();
            for (const auto &v : mv.violations) {
                ViolationSpan span = violation_span(r.monitor, v);
                vs.push_back({{"check", v.check}, {"message", v.message}, {"cpu", v.cpu ? int64_t(*v.cpu) : -1},
                              {"first_sample", v.first()}, {"last_sample", v.at}, {"start_ms", span.start_ms},
                              {"end_ms", span.end_ms}});
            }
            jm["violations"] = vs;
            jr["monitor"] = jm;
        }
        runs.push_back(jr);
    }
    d["runs"] = runs;
    return d;
}

// ---- JUnit -----------------------------------------------------------------------------
//
// The layout Jenkins, GitLab and Ant read: <testsuites> of one <testsuite>
// per run, one <testcase> per scenario and topology (classname = the
// topology, name = the scenario), <failure> with the first failing check as
// message and all of them in the body, <skipped/>, and <error> for
// inconclusive scenarios (they did not produce a verdict).

std::string render_junit(const Report &rep) {
    std::ostringstream o;
    size_t tests = 0, failures = 0, errors = 0, skipped = 0;
    double total_time = 0;
    for (const auto &rr : rep.runs) {
        tests += std::max<size_t>(rr.scenarios.size(), 1);
        for (const auto &s : rr.scenarios) {
            failures += s.verdict == Verdict::fail;
            errors += s.verdict == Verdict::inconclusive;
            skipped += s.verdict == Verdict::skip;
            total_time += s.duration_s;
        }
        if (rr.scenarios.empty()) (rr.verdict == Verdict::fail ? failures : errors) += 1;
    }
    o << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
    o << "<testsuites name=\"ktstr\" tests=\"" << tests << "\" failures=\"" << failures << "\" errors=\"" << errors
      << "\" skipped=\"" << skipped << "\" time=\"" << fmtd("%.3f", total_time) << "\">\n";
    for (const auto &rr : rep.runs) {
        const Run &r = *rr.run;
        size_t f = 0, e = 0, s = 0;
        double t = 0;
        for (const auto &sr : rr.scenarios) {
            f += sr.verdict == Verdict::fail;
            e += sr.verdict == Verdict::inconclusive;
            s += sr.verdict == Verdict::skip;
            t += sr.duration_s;
        }
        size_t n = rr.scenarios.size();
        if (n == 0) { n = 1; (rr.verdict == Verdict::fail ? f : e) += 1; }
        o << "  <testsuite name=\"" << xml_escape(r.label.empty() ? "ktstr" : r.label) << "\" tests=\"" << n
          << "\" failures=\"" << f << "\" errors=\"" << e << "\" skipped=\"" << s << "\" time=\"" << fmtd("%.3f", t)
          << "\">\n";
        o << "    <properties>\n";
        auto prop = [&](const char *k, const std::string &v) {
            if (!v.empty()) o << "      <property name=\"" << k << "\" value=\"" << xml_escape(v) << "\"/>\n";
        };
        prop("kernel", r.kernel);
        prop("topology", r.topology);
        prop("accel", r.accel);
        prop("scheduler", run_scheduler(r));
        std::string srcs;
        for (auto &x : r.sources) srcs += (srcs.empty() ? "" : " ") + x;
        prop("sources", srcs);
        prop("verdict", verdict_name(rr.verdict));
        o << "    </properties>\n";
        auto body = [&](const std::vector<Finding> &fs) {
            std::string b;
            for (const auto &x : fs) {
                b += x.message;
                std::string ctx = finding_context(x);
                if (!ctx.empty()) b += "\n    " + ctx;
                b += "\n";
            }
            return xml_escape(b);
        };
        for (const auto &sr : rr.scenarios) {
            const ScenarioRun &sc = *sr.scenario;
            std::string cls = "ktstr." + (sc.topology.empty() ? std::string("unknown") : sc.topology);
            o << "    <testcase name=\"" << xml_escape(sc.name) << "\" classname=\"" << xml_escape(cls) << "\" time=\""
              << fmtd("%.3f", sr.duration_s) << "\">\n";
            if (sr.verdict == Verdict::fail) {
                o << "      <failure message=\"" << xml_escape(sr.findings.empty() ? sr.reason : sr.findings.front().message)
                  << "\" type=\"" << xml_escape(sr.findings.empty() ? "Other" : sr.findings.front().kind) << "\">"
                  << body(sr.findings) << "</failure>\n";
            } else if (sr.verdict == Verdict::skip) {
                o << "      <skipped message=\"" << xml_escape(sr.reason) << "\"/>\n";
            } else if (sr.verdict == Verdict::inconclusive) {
                o << "      <error message=\"" << xml_escape("inconclusive: " + sr.reason) << "\" type=\"inconclusive\"/>\n";
            }
            if (!sr.notes.empty()) o << "      <system-out>" << body(sr.notes) << "</system-out>\n";
            o << "    </testcase>\n";
        }
        if (rr.scenarios.empty()) {
            o << "    <testcase name=\"run\" classname=\"ktstr." << xml_escape(r.topology.empty() ? "unknown" : r.topology)
              << "\" time=\"0\">\n";
            if (rr.verdict == Verdict::fail)
                o << "      <failure message=\"" << xml_escape(rr.reason) << "\" type=\"Other\">" << body(rr.findings)
                  << "</failure>\n";
            else if (rr.verdict != Verdict::pass)
                o << "      <error message=\"" << xml_escape("inconclusive: " + rr.reason) << "\" type=\"inconclusive\"/>\n";
            o << "    </testcase>\n";
        }
        std::string out;
        for (const auto &x : r.truncated) out += "cut short: " + x + "\n";
        if (r.exit && !r.exit->console_tail.empty()) out += "console tail:\n" + r.exit->console_tail + "\n";
        if (!out.empty()) o << "    <system-err>" << xml_escape(out) << "</system-err>\n";
        o << "  </testsuite>\n";
    }
    o << "</testsuites>\n";
    return o.str();
}

} // namespace ktstr::report
