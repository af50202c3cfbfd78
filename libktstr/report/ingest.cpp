// libktstr/report: reading ktstr.vmm/1 and ktstr.monitor/1 JSON lines into Runs.
//
// Liberal in what it accepts: unknown fields and unknown event kinds are
// ignored, field names the producers might reasonably use are accepted in
// either spelling (scenario/name, step_index/index ...).  Strict where it
// matters: an unknown *major* schema or a broken line in the middle of a
// stream is an input error naming file:line.  A broken last line is what a
// crashed producer leaves behind; it is recorded as truncation.
#include "ktstr/report.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fcntl.h>
#include <unistd.h>

#include "jsonscan.h"
#include "ktstr/saturating.h"
#include "ktstr/util.h"

namespace ktstr::report {

namespace {

using detail::JsonScan;

// ---- tolerant field access ------------------------------------------------------

const json *field(const json &doc, std::initializer_list<const char *> names) {
    if (!doc.is_object()) return nullptr;
    for (const char *n : names) {
        auto it = doc.find(n);
        if (it != doc.end() && !it->is_null()) return &*it;
    }
    return nullptr;
}

std::string str_of(const json &doc, std::initializer_list<const char *> names, const std::string &dflt = "") {
    const json *v = field(doc, names);
    if (!v) return dflt;
    if (v->is_string()) return v->get<std::string>();
    if (v->is_number() || v->is_boolean()) return v->dump();
    return dflt;
}

// A value that is either a string or an object naming itself under one of
// `keys` (scenario_start's "topology" is a layout object with a "label",
// its "scheduler" is "eevdf" or {pid, ops, ...}).
std::string name_of(const json &doc, std::initializer_list<const char *> names, std::initializer_list<const char *> keys,
                    const std::string &dflt = "") {
    const json *v = field(doc, names);
    if (!v) return dflt;
    if (v->is_string()) return v->get<std::string>();
    if (v->is_object())
        for (const char *k : keys) {
            auto it = v->find(k);
            if (it != v->end() && it->is_string() && !it->get_ref<const std::string &>().empty()) return it->get<std::string>();
        }
    return dflt;
}

// A scenario's scheduler as reports name it: "eevdf", or the binary's name
// followed by its arguments ("scx_simple -f"), so runs that differ only in
// them stay apart (older streams: the ops name).
std::string scheduler_of(const json &doc, const std::string &dflt) {
    std::string name = name_of(doc, {"scheduler"}, {"name", "ops", "path"}, dflt);
    const json *v = field(doc, {"scheduler"});
    if (v && v->is_object())
        if (auto it = v->find("args"); it != v->end() && it->is_array())
            for (auto &arg : *it)
                if (arg.is_string()) name += " " + arg.get<std::string>();
    return name;
}

std::optional<double> num_of(const json &doc, std::initializer_list<const char *> names) {
    const json *v = field(doc, names);
    if (v && v->is_number()) return v->get<double>();
    return std::nullopt;
}

// Non-negative counters: negative or non-numeric values read as 0 (they come
// from the guest; we report what is plausible rather than trusting it).
uint64_t u64_of(const json &doc, std::initializer_list<const char *> names) {
    const json *v = field(doc, names);
    if (!v || !v->is_number()) return 0;
    if (v->is_number_unsigned()) return v->get<uint64_t>();
    if (v->is_number_integer()) return std::max<int64_t>(0, v->get<int64_t>());
    double d = v->get<double>();
    return d > 0 && d < 1.8e19 ? static_cast<uint64_t>(d) : 0;
}

std::optional<bool> bool_of(const json &doc, std::initializer_list<const char *> names) {
    const json *v = field(doc, names);
    if (v && v->is_boolean()) return v->get<bool>();
    return std::nullopt;
}

// ---- finding details out of upstream wording (scenarios.md 5.4) ----------------------

struct Parsed {
    std::optional<int> cpu;
    std::optional<double> at_ms;          // scenario-relative
    std::optional<double> at_s_run;       // "(s.s s into test)"
    std::optional<double> duration_ms;
};

// Finds `pattern` in msg and returns its number fields.  The pattern is
// literal text (ASCII case-insensitive with icase) where "#" stands for a run
// of digits, "%" for digits with an optional ".digits" fraction and "~" for
// an optional space; with
// `word`, the match must not start or end inside a word.  (Hand-written:
// <regex> trips g++ 12's -Wmaybe-uninitialized under the sanitizer build.)
std::optional<std::vector<double>> find_numbers(std::string_view msg, std::string_view pattern, bool icase = false,
                                                bool word = false) {
    auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
    auto is_alpha = [](char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; };
    auto is_word = [&](char c) { return is_digit(c) || is_alpha(c) || c == '_'; };
    auto same = [&](char a, char b) { return a == b || (icase && is_alpha(a) && (a | 0x20) == (b | 0x20)); };
    for (size_t start = 0; start < msg.size(); ++start) {
        if (word && start > 0 && is_word(msg[start - 1])) continue;
        std::vector<double> nums;
        size_t i = start;
        bool ok = true;
        for (char pc : pattern) {
            if (pc == '~') {   // an optional space
                if (i < msg.size() && msg[i] == ' ') ++i;
            } else if (pc == '#' || pc == '%') {
                size_t from = i;
                while (i < msg.size() && is_digit(msg[i])) ++i;
                if (i == from) { ok = false; break; }
                if (pc == '%' && i + 1 < msg.size() && msg[i] == '.' && is_digit(msg[i + 1]))
                    for (++i; i < msg.size() && is_digit(msg[i]); ++i) {}
                nums.push_back(std::strtod(std::string(msg.substr(from, i - from)).c_str(), nullptr));
            } else if (i < msg.size() && same(msg[i], pc)) {
                ++i;
            } else {
                ok = false;
                break;
            }
        }
        if (ok && word && i < msg.size() && is_word(msg[i])) ok = false;
        if (ok) return nums;
    }
    return std::nullopt;
}

Parsed parse_message(const std::string &msg) {
    Parsed p;
    if (auto n = find_numbers(msg, "stuck #ms on cpu# at +#ms")) {
        p.duration_ms = (*n)[0];
        p.cpu = static_cast<int>(std::min((*n)[1], 1e9));
        p.at_ms = (*n)[2];
    } else if (auto n2 = find_numbers(msg, "on CPU # had #ms gap")) {
        p.cpu = static_cast<int>(std::min((*n2)[0], 1e9));
        p.duration_ms = (*n2)[1];
    } else if (auto n3 = find_numbers(msg, "cpu~#", true, true)) {
        p.cpu = static_cast<int>(std::min((*n3)[0], 1e9));
    }
    if (auto n = find_numbers(msg, "(%s into test)")) p.at_s_run = (*n)[0];
    return p;
}

std::string check_for_kind(const std::string &kind) {
    static const std::map<std::string, std::string> m = {
        {"Starved", "starvation"}, {"Stuck", "gap"}, {"Unfair", "spread"}, {"Isolation", "isolation"},
        {"Benchmark", "throughput"}, {"Migration", "migration_ratio"}, {"Monitor", "monitor"},
        {"SchedulerDied", "scheduler"}, {"Skip", "skip"}};
    auto it = m.find(kind);
    return it == m.end() ? "" : it->second;
}

Finding finding_from(const json &d, const ScenarioRun &s, const std::string &source, const json *parent) {
    Finding f;
    f.source = source;
    f.kind = str_of(d, {"kind"}, parent ? str_of(*parent, {"kind"}) : "");
    f.check = str_of(d, {"check", "name"}, parent ? str_of(*parent, {"check", "name"}) : "");
    f.message = str_of(d, {"message", "msg", "text"});
    f.cgroup = str_of(d, {"cgroup", "group"}, parent ? str_of(*parent, {"cgroup", "group"}) : "");
    if (f.check.empty()) f.check = check_for_kind(f.kind);
    Parsed p = parse_message(f.message);
    if (auto c = num_of(d, {"cpu"})) p.cpu = static_cast<int>(*c);
    if (auto a = num_of(d, {"at_ms"})) p.at_ms = *a;
    if (auto du = num_of(d, {"duration_ms", "gap_ms"})) p.duration_ms = *du;
    f.cpu = p.cpu;
    f.duration_ms = p.duration_ms;
    if (p.at_ms && s.start_s >= 0) f.at_s = s.start_s + *p.at_ms / 1000.0;
    else if (p.at_s_run && s.start_s >= 0) f.at_s = s.start_s + *p.at_s_run;
    return f;
}

bool has_message(const std::vector<Finding> &v, const std::string &msg) {
    return std::any_of(v.begin(), v.end(), [&](const Finding &f) { return f.message == msg; });
}

// A result object {passed, skipped, details:[{kind,message}]} or a single
// check {check, passed, kind, message, ...}: add its failing details.
void absorb_result(ScenarioRun &s, const json &doc, const std::string &source) {
    auto passed = bool_of(doc, {"passed", "ok"});
    bool skipped = bool_of(doc, {"skipped"}).value_or(false);
    const json *details = field(doc, {"details"});
    bool any_detail = false;
    if (details && details->is_array()) {
        for (const json &d : *details) {
            if (!d.is_object()) continue;
            std::string kind = str_of(d, {"kind"});
            if (kind == "Skip") {
                s.skip_reason = str_of(d, {"message"});
                continue;
            }
            // Details of a passing result are informational (upstream attaches
            // notes to passing results too); keep only failures.
            if (passed.value_or(false) && !bool_of(d, {"failed"}).value_or(false)) continue;
            Finding f = finding_from(d, s, source, &doc);
            if (f.message.empty()) continue;
            any_detail = true;
            if (!has_message(s.findings, f.message)) s.findings.push_back(std::move(f));
        }
    }
    if (skipped) {
        s.skipped = true;
        if (s.skip_reason.empty()) s.skip_reason = str_of(doc, {"reason", "message"});
    }
    if (passed == false && !any_detail && !skipped) {
        Finding f = finding_from(doc, s, source, nullptr);
        if (f.message.empty())
            f.message = f.check.empty() ? "check failed" : cat("check '", f.check, "' failed");
        if (!has_message(s.findings, f.message)) s.findings.push_back(std::move(f));
    }
}

WorkerReport worker_from(const json &ev) {
    // The report may be flat in the event or nested as "report".
    const json *nested = field(ev, {"report"});
    const json &r = nested && nested->is_object() ? *nested : ev;
    WorkerReport w;
    w.cgroup = str_of(ev, {"cgroup", "group"}, str_of(r, {"cgroup", "group"}));
    w.work_type = str_of(ev, {"work_type", "work"}, str_of(r, {"work_type", "work"}));
    if (auto t = num_of(r, {"tid", "pid"})) w.tid = static_cast<int64_t>(*t);
    w.work_units = u64_of(r, {"work_units"});
    w.iterations = u64_of(r, {"iterations"});
    w.cpu_time_ns = u64_of(r, {"cpu_time_ns"});
    w.wall_time_ns = u64_of(r, {"wall_time_ns"});
    w.off_cpu_ns = u64_of(r, {"off_cpu_ns"});
    if (!field(r, {"off_cpu_ns"}) && w.wall_time_ns > w.cpu_time_ns) w.off_cpu_ns = w.wall_time_ns - w.cpu_time_ns;
    w.migration_count = u64_of(r, {"migration_count"});
    if (const json *c = field(r, {"cpus_used"}); c && c->is_array())
        for (const json &x : *c)
            if (x.is_number_integer() && x.get<int64_t>() >= 0 && x.get<int64_t>() < 65536)
                w.cpus_used.push_back(static_cast<int>(x.get<int64_t>()));
    std::sort(w.cpus_used.begin(), w.cpus_used.end());
    w.cpus_used.erase(std::unique(w.cpus_used.begin(), w.cpus_used.end()), w.cpus_used.end());
    w.max_gap_ms = u64_of(r, {"max_gap_ms"});
    if (auto c = num_of(r, {"max_gap_cpu"})) w.max_gap_cpu = static_cast<int>(*c);
    w.max_gap_at_ms = u64_of(r, {"max_gap_at_ms"});
    w.schedstat_run_delay_ns = u64_of(r, {"schedstat_run_delay_ns"});
    w.schedstat_run_count = u64_of(r, {"schedstat_run_count"});
    if (const json *l = field(r, {"resume_latencies_ns"}); l && l->is_array())
        for (const json &x : *l)
            if (x.is_number() && x.get<double>() >= 0) w.resume_latencies_ns.push_back(x.get<uint64_t>());
    // The guest may keep the reservoir and send its percentiles instead.
    w.wake_p50_ns = u64_of(r, {"wake_latency_p50_ns"});
    w.wake_p99_ns = u64_of(r, {"wake_latency_p99_ns"});
    w.exit_info = str_of(r, {"exit_info"});
    return w;
}

std::vector<std::string> flags_of(const json &doc) {
    std::vector<std::string> out;
    const json *f = field(doc, {"flags", "profile"});
    if (!f) return out;
    if (f->is_array()) {
        for (const json &x : *f)
            if (x.is_string()) out.push_back(x.get<std::string>());
    } else if (f->is_string()) {
        std::string s = f->get<std::string>();
        if (s != "default")
            for (auto &p : split(s, '+', false)) out.push_back(p);
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

std::string where_of(const std::string &source, uint64_t line) { return cat(source, ":", line); }

} // namespace

// ---- StreamReader --------------------------------------------------------------

StreamReader::StreamReader(Run &run, std::string source) : run_(run), source_(std::move(source)) {}

ScenarioRun &StreamReader::current_scenario(const std::string &where) {
    if (run_.scenarios.empty() || run_.scenarios.back().ended) {
        // An event that belongs to a scenario arrived without scenario_start
        // (the start line was lost, or the producer omits it): open one.
        log::debug(where, ": scenario event without scenario_start; opening an unnamed scenario");
        ScenarioRun s;
        s.name = "(unnamed)";
        s.topology = run_.topology;
        s.scheduler = run_.scheduler;
        run_.scenarios.push_back(std::move(s));
    }
    return run_.scenarios.back();
}

void StreamReader::handle_vmm(const json &doc, const std::string &where) {
    saw_vmm_ = true;
    run_.has_vmm = true;
    std::string event = str_of(doc, {"event"});
    double t = num_of(doc, {"elapsed_s"}).value_or(-1);
    if (event == "boot") {
        run_.kernel = str_of(doc, {"kernel_version", "version", "kernel"}, run_.kernel);
        run_.topology = name_of(doc, {"topology"}, {"label"}, run_.topology);
        run_.accel = str_of(doc, {"accel"}, run_.accel);
        run_.scheduler = scheduler_of(doc, run_.scheduler);
        if (auto c = num_of(doc, {"cpus", "num_cpus"})) run_.cpus = static_cast<int>(*c);
    } else if (event == "scenario_start") {
        ScenarioRun s;
        s.name = str_of(doc, {"scenario", "name"}, "(unnamed)");
        s.topology = name_of(doc, {"topology"}, {"label"}, run_.topology);
        s.scheduler = scheduler_of(doc, run_.scheduler);
        s.work_type = str_of(doc, {"work_type"});
        s.flags = flags_of(doc);
        if (const json *c = field(doc, {"checks"}); c && c->is_object()) s.checks_config = *c;
        s.start_s = t;
        run_.scenarios.push_back(std::move(s));
    } else if (event == "step" || event == "stimulus") {
        ScenarioRun &s = current_scenario(where);
        StepMark m;
        m.index = static_cast<int>(num_of(doc, {"step_index", "index", "step"}).value_or(s.steps.size()));
        m.scenario_ms = num_of(doc, {"elapsed_ms"}).value_or(-1);
        m.at_s = t >= 0 ? t : (s.start_s >= 0 && m.scenario_ms >= 0 ? s.start_s + m.scenario_ms / 1000 : -1);
        m.op_count = static_cast<int>(u64_of(doc, {"op_count", "ops"}));
        m.op_kinds = static_cast<uint32_t>(u64_of(doc, {"op_kinds"}));
        m.cgroups = static_cast<int>(u64_of(doc, {"cgroup_count", "cgroups"}));
        m.workers = static_cast<int>(u64_of(doc, {"worker_count", "workers"}));
        m.total_iterations = u64_of(doc, {"total_iterations", "iterations"});
        if (const json *c = field(doc, {"cpusets"}); c && c->is_object())
            for (auto it = c->begin(); it != c->end(); ++it) {
                std::optional<std::vector<int>> cpus;
                if (it->is_array()) {
                    cpus.emplace();
                    for (auto &v : *it)
                        if (v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() < 65536) cpus->push_back(v.get<int>());
                }
                m.cpusets.emplace_back(it.key(), std::move(cpus));
            }
        s.steps.push_back(m);
    } else if (event == "worker_report") {
        current_scenario(where).workers.push_back(worker_from(doc));
    } else if (event == "check") {
        ScenarioRun &s = current_scenario(where);
        ++s.checks_seen;
        absorb_result(s, doc, "check");
    } else if (event == "scenario_end") {
        ScenarioRun &s = current_scenario(where);
        s.ended = true;
        s.end_s = t;
        const json *res = field(doc, {"result"});
        const json &r = res && res->is_object() ? *res : doc;
        s.passed = bool_of(r, {"passed"});
        absorb_result(s, r, "scenario");
        if (const json *st = field(r, {"stats"}); st && st->is_object()) s.stats = *st;
        if (s.start_s < 0) {
            if (auto d = num_of(r, {"duration_s"}); d && t >= 0) s.start_s = t - *d;
        }
    } else if (event == "exit") {
        ExitInfo e;
        e.reason = str_of(doc, {"reason"});
        if (auto c = num_of(doc, {"exit_code", "status"})) e.exit_code = static_cast<int64_t>(*c);
        e.elapsed_s = t;
        e.console_tail = str_of(doc, {"console_tail"});
        run_.exit = e;
    } else {
        ++run_.ignored_events;
    }
}

void StreamReader::handle_monitor(const json &doc, const std::string &where) {
    saw_monitor_ = true;
    MonitorData &m = run_.monitor;
    m.present = true;
    std::string event = str_of(doc, {"event"});
    if (event == "meta") {
        m.preemption_threshold_ns = u64_of(doc, {"preemption_threshold_ns"});
        m.hz = static_cast<int>(u64_of(doc, {"hz"}));
    } else if (event == "status") {
        std::string st = str_of(doc, {"status", "state"});
        if (st == "warning") m.warnings.push_back(str_of(doc, {"message"}));
    } else if (event == "violation") {
        std::string msg = str_of(doc, {"message"});
        if (!msg.empty()) m.reported_violations.push_back(msg);
    } else if (event == "end") {
        m.ended = true;
        m.end_reason = str_of(doc, {"reason"});
    } else if (event == "sample") {
        // Reached only when the fast path refused a line nlohmann accepts:
        // a value of the wrong type somewhere in cpus[].
        fail(ErrorKind::input, where, ": sample: 'cpus' must be an array of objects with numeric fields ",
             "(nr_running, scx_nr_running, local_dsq_depth, rq_clock, scx_flags)");
    } else {
        ++run_.ignored_events;
    }
}

namespace {

// The fast path for monitor sample lines: returns true when the line was a
// well-formed ktstr.monitor/1 sample and has been stored.
bool fast_sample(std::string_view text, MonitorData &m) {
    JsonScan s(text);
    bool first;
    if (!s.begin_object(first)) return false;
    std::string_view key, schema, event;
    double elapsed = 0;
    const size_t base = m.readings.size();
    EventSums ev;
    bool have_cpus = false;
    while (s.next_key(first, key)) {
        if (key == "schema") {
            if (!s.string(schema)) break;
        } else if (key == "event") {
            if (!s.string(event)) break;
            if (event != "sample") break;
        } else if (key == "elapsed_ms") {
            if (!s.number(elapsed) && !s.ok()) break;
        } else if (key == "cpus") {
            bool afirst;
            if (!s.begin_array(afirst)) break;
            have_cpus = true;
            while (s.next_element(afirst)) {
                CpuReading r;
                bool ofirst;
                if (!s.begin_object(ofirst)) break;
                std::string_view k;
                while (s.next_key(ofirst, k)) {
                    int64_t v = 0;
                    if (k == "nr_running") { if (s.integer(v)) r.nr_running = static_cast<uint32_t>(std::clamp<int64_t>(v, 0, UINT32_MAX)); }
                    else if (k == "local_dsq_depth") { if (s.integer(v)) r.local_dsq_depth = static_cast<uint32_t>(std::clamp<int64_t>(v, 0, UINT32_MAX)); }
                    else if (k == "rq_clock") { double d; if (s.number(d)) r.rq_clock = d >= 1.8e19 ? UINT64_MAX : d > 0 ? static_cast<uint64_t>(d) : 0; }
                    else if (k == "scx_nr_running") { if (s.integer(v)) r.scx_nr_running = static_cast<uint32_t>(std::clamp<int64_t>(v, 0, UINT32_MAX)); }
                    else if (k == "scx_flags") { if (s.integer(v)) r.scx_flags = static_cast<uint32_t>(std::clamp<int64_t>(v, 0, UINT32_MAX)); }
                    else if (k == "vcpu_cpu_time_ns") { if (s.integer(v)) r.vcpu_cpu_time_ns = std::max<int64_t>(v, 0); }
                    else if (k == "event_counters") {
                        bool efirst;
                        if (s.is_next('{')) {
                            if (!s.begin_object(efirst)) break;
                            ev.present = true;
                            std::string_view name;
                            while (s.next_key(efirst, name)) {
                                auto idx = monitor::scx_event_index(name);
                                if (!idx || !s.integer(v)) { if (!idx) s.skip(); continue; }
                                ev.sum[*idx] = saturating_add(ev.sum[*idx], v);
                            }
                        } else if (!s.skip()) break;
                    } else if (!s.skip()) break;
                    if (!s.ok()) break;
                }
                if (!s.ok()) break;
                m.readings.push_back(r);
            }
        } else if (!s.skip()) break;
        if (!s.ok()) break;
    }
    if (!s.ok() || !s.at_end() || event != "sample" || schema != "ktstr.monitor/1" || !have_cpus) {
        m.readings.resize(base);
        return false;
    }
    MonitorSample smp;
    smp.elapsed_ms = elapsed;
    smp.first = static_cast<uint32_t>(base);
    smp.count = static_cast<uint32_t>(m.readings.size() - base);
    smp.events = ev;
    m.samples.push_back(smp);
    m.present = true;
    return true;
}

} // namespace

void StreamReader::line(std::string_view text) {
    ++lineno_;
    if (!pending_error_.empty()) fail(ErrorKind::input, pending_error_);   // a broken line that was not the last
    while (!text.empty() && (text.back() == '\r' || text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
    size_t lead = 0;
    while (lead < text.size() && (text[lead] == ' ' || text[lead] == '\t')) ++lead;
    text.remove_prefix(lead);
    if (text.empty()) return;
    if (fast_sample(text, run_.monitor)) {
        saw_monitor_ = true;
        return;
    }
    std::string where = where_of(source_, lineno_);
    json doc;
    try {
        doc = json::parse(text);
    } catch (const json::parse_error &e) {
        std::string what = e.what();
        auto p = what.find("parse error");
        pending_error_ = cat(where, ": invalid JSON: ", p == std::string::npos ? what : what.substr(p));
        return;
    }
    if (!doc.is_object())
        fail(ErrorKind::input, where, ": expected a JSON object per line, got ", doc.type_name());
    const json *schema = field(doc, {"schema"});
    if (!schema || !schema->is_string())
        fail(ErrorKind::input, where, ": line has no \"schema\" (expected \"ktstr.vmm/1\" or \"ktstr.monitor/1\")");
    std::string sname = schema->get<std::string>();
    SchemaId id = parse_schema(sname);
    if (id.kind == "vmm" || id.kind == "monitor") {
        if (id.major != 1)
            fail(ErrorKind::input, where, ": unsupported schema version \"", sname, "\" (this build reads \"ktstr.",
                 id.kind, "/1\")");
        if (id.kind == "vmm") handle_vmm(doc, where);
        else handle_monitor(doc, where);
        return;
    }
    // Someone else's document in the stream (a layout, a kernel descriptor):
    // not ours to judge.
    if (!warned_kinds_) {
        log::warn(where, ": ignoring lines with schema \"", sname, "\" (reads ktstr.vmm/1 and ktstr.monitor/1)");
        warned_kinds_ = true;
    }
    ++run_.ignored_events;
}

void StreamReader::finish(bool last_line_unterminated) {
    if (!pending_error_.empty()) {
        run_.truncated.push_back(cat(source_, ":", lineno_, ": last line is incomplete",
                                     last_line_unterminated ? " (no newline)" : "", ": input cut short"));
        log::debug(pending_error_);
        pending_error_.clear();
    }
    if (lineno_ == 0) run_.truncated.push_back(cat(source_, ": empty input"));
    if (saw_vmm_ && !run_.exit)
        run_.truncated.push_back(cat(source_, ": no exit event from ktstr-vmm: the run was cut short"));
    if (saw_monitor_ && !run_.monitor.ended)
        run_.truncated.push_back(cat(source_, ": no end event from ktstr-monitor: the monitor was cut short"));
}

// ---- files -----------------------------------------------------------------------

void read_stream(Run &run, const std::string &path) {
    const bool is_stdin = path == "-";
    const std::string name = is_stdin ? "<stdin>" : path;
    unique_fd own;
    int fd = 0;
    if (!is_stdin) {
        own.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!own) fail_errno(ErrorKind::input, cat("cannot open '", path, "'"));
        fd = own.get();
        ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    }
    run.sources.push_back(name);
    StreamReader reader(run, name);
    std::string buf;
    const size_t chunk = 1 << 20;
    size_t start = 0;     // beginning of the unconsumed part of buf
    for (;;) {
        if (start > 0 && start >= buf.size() / 2) {
            buf.erase(0, start);
            start = 0;
        }
        size_t old = buf.size();
        buf.resize(old + chunk);
        ssize_t n;
        do n = ::read(fd, buf.data() + old, chunk);
        while (n < 0 && errno == EINTR);
        if (n < 0) fail_errno(ErrorKind::input, cat("reading '", name, "'"));
        buf.resize(old + static_cast<size_t>(n));
        if (n == 0) break;
        size_t nl;
        while ((nl = buf.find('\n', std::max(start, old))) != std::string::npos) {
            reader.line(std::string_view(buf).substr(start, nl - start));
            start = nl + 1;
            old = start;
        }
    }
    bool unterminated = start < buf.size();
    if (unterminated) reader.line(std::string_view(buf).substr(start));
    reader.finish(unterminated);
}

namespace {

std::string stem_of(const std::string &path) {
    if (path == "-") return "<stdin>";
    std::filesystem::path p(path);
    std::string base = p.filename().string();
    for (const char *ext : {".jsonl", ".ndjson", ".json", ".log", ".txt"})
        if (ends_with(base, ext)) { base.resize(base.size() - std::strlen(ext)); break; }
    for (const char *suf : {".monitor", "-monitor", "_monitor", ".vmm", "-vmm", "_vmm"})
        if (ends_with(base, suf)) { base.resize(base.size() - std::strlen(suf)); break; }
    return (p.parent_path() / base).string();
}

// Only monitor-only streams are merged (into a vmm run); two vmm streams never are.
void merge_into(Run &dst, Run &&src) {
    for (auto &s : src.sources) dst.sources.push_back(s);
    for (auto &t : src.truncated) dst.truncated.push_back(t);
    dst.ignored_events += src.ignored_events;
    if (src.monitor.present) {
        if (dst.monitor.present)
            fail(ErrorKind::input, "two ktstr-monitor streams for run '", dst.label, "' (", dst.sources.front(),
                 " and ", src.sources.back(), "); give them separately");
        dst.monitor = std::move(src.monitor);
    }
}

} // namespace

std::vector<Run> read_runs(const std::vector<std::string> &inputs) {
    std::vector<std::string> files;
    for (const auto &in : inputs) {
        std::error_code ec;
        if (in != "-" && std::filesystem::is_directory(in, ec)) {
            std::vector<std::string> found;
            for (auto it = std::filesystem::recursive_directory_iterator(in, ec);
                 !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
                std::string p = it->path().string();
                if (it->is_regular_file() && (ends_with(p, ".jsonl") || ends_with(p, ".ndjson"))) found.push_back(p);
            }
            if (ec) fail(ErrorKind::input, "cannot read directory '", in, "': ", ec.message());
            if (found.empty()) fail(ErrorKind::input, "directory '", in, "' holds no *.jsonl files");
            std::sort(found.begin(), found.end());
            files.insert(files.end(), found.begin(), found.end());
        } else {
            files.push_back(in);
        }
    }
    std::vector<Run> singles;
    for (const auto &f : files) {
        Run r;
        r.label = stem_of(f);
        read_stream(r, f);
        singles.push_back(std::move(r));
    }
    // Pair monitor-only streams with the vmm stream of the same stem, or with
    // the one vmm stream when there is exactly one.
    std::vector<Run> runs;
    std::vector<Run> monitors;
    for (auto &r : singles) {
        if (!r.has_vmm && r.monitor.present) monitors.push_back(std::move(r));
        else runs.push_back(std::move(r));
    }
    size_t vmm_runs = std::count_if(runs.begin(), runs.end(), [](const Run &r) { return r.has_vmm; });
    std::vector<Run> unpaired;
    for (auto &m : monitors) {
        Run *dst = nullptr;
        for (auto &r : runs)
            if (r.has_vmm && r.label == m.label && !r.monitor.present) dst = &r;
        if (!dst && vmm_runs == 1 && monitors.size() == 1)
            for (auto &r : runs)
                if (r.has_vmm && !r.monitor.present) dst = &r;
        if (dst) merge_into(*dst, std::move(m));
        else unpaired.push_back(std::move(m));
    }
    for (auto &m : unpaired) runs.push_back(std::move(m));
    return runs;
}

} // namespace ktstr::report
