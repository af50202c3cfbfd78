// libktstr/scenario: loading and validating ktstr.scenario/1 documents, their
// canonical JSON form, and resolving a scenario into a Plan for one topology.
//
// Every error names the document, the scenario, the JSON path of the field and
// the value at fault, e.g.
//   x.json: scenario 'demo': steps[1].ops[0].cpus.disjoint.index: 2 must be below of=2
#include "ktstr/scenario.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <csignal>
#include <cstring>

namespace ktstr::scenario {

namespace {

std::string show(const json &v) {
    std::string s = v.dump();
    if (s.size() > 60) s = s.substr(0, 57) + "...";
    return s;
}

std::string join(const std::vector<std::string> &v, const char *sep = ", ") {
    std::string out;
    for (auto &s : v) out += (out.empty() ? "" : sep) + s;
    return out;
}

// Case-insensitive match for "did you mean".
std::string closest(const std::string &word, const std::vector<std::string> &choices) {
    auto lower = [](std::string s) {
        for (auto &c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        return s;
    };
    for (auto &c : choices)
        if (lower(c) == lower(word)) return c;
    return {};
}

// A name pattern without <regex> (which trips g++ 12 warnings under the
// sanitizers): parts separated by `sep` (0: one part), each 1+ characters of
// `allowed`, at least min_parts of them; optionally the first character from
// `first`; at most max_len characters in all.
struct NamePattern {
    const char *allowed;
    char sep = 0;
    size_t min_parts = 1;
    size_t max_len = 4096;
    const char *first = nullptr;
    bool match(std::string_view s) const {
        if (s.empty() || s.size() > max_len) return false;
        if (first && !std::strchr(first, s[0])) return false;
        size_t parts = 1, len = 0;
        for (char c : s) {
            if (sep && c == sep) {
                if (len == 0) return false;
                ++parts, len = 0;
            } else if (c == '\0' || !std::strchr(allowed, c)) {
                return false;
            } else {
                ++len;
            }
        }
        return len > 0 && parts >= min_parts;
    }
};
#define LOWER "abcdefghijklmnopqrstuvwxyz"
#define DIGIT "0123456789"
const NamePattern kScenarioName{LOWER DIGIT "_", 0, 1, 64};
const NamePattern kCategory{LOWER DIGIT "_", 0, 1, 64, LOWER};
const NamePattern kCgroupName{LOWER "ABCDEFGHIJKLMNOPQRSTUVWXYZ" DIGIT "_.-", '/', 1, 4096};
const NamePattern kFlag{LOWER DIGIT "-", 0, 1, 64, LOWER};
const NamePattern kSysctl{LOWER DIGIT "_", '.', 2, 256};
#undef LOWER
#undef DIGIT

class Loader {
public:
    Loader(std::string where) : where_(std::move(where)) {}
    std::string name = "?";

    [[noreturn]] void bad(const std::string &path, const std::string &msg) const {
        fail(ErrorKind::input, where_, ": scenario '", name, "': ", path, ": ", msg);
    }

    const json &obj(const json &j, const std::string &path, const std::set<std::string> &allowed) const {
        if (!j.is_object()) bad(path, cat("expected an object, got ", show(j)));
        for (auto &[k, v] : j.items())
            if (!allowed.count(k))
                bad(path, cat("unknown field '", k, "' (valid: ", join({allowed.begin(), allowed.end()}), ")"));
        return j;
    }

    // An object with exactly one key out of `keys` (the spec's "one").
    std::pair<std::string, const json *> one(const json &j, const std::string &path,
                                             const std::vector<std::string> &keys) const {
        if (!j.is_object() || j.size() != 1)
            bad(path, cat("expected an object with exactly one of ", join(keys), ", got ", show(j)));
        auto it = j.begin();
        if (std::find(keys.begin(), keys.end(), it.key()) == keys.end())
            bad(path, cat("unknown kind '", it.key(), "' (valid: ", join(keys), ")"));
        return {it.key(), &it.value()};
    }

    uint64_t uint(const json &j, const std::string &path, uint64_t min = 0, uint64_t max = UINT64_MAX) const {
        if (!j.is_number_integer() || (j.is_number_integer() && !j.is_number_unsigned() && j.get<int64_t>() < 0))
            bad(path, cat("expected an integer >= ", min, ", got ", show(j)));
        uint64_t v = j.get<uint64_t>();
        if (v < min || v > max) bad(path, cat(v, " is out of range [", min, ", ", max, "]"));
        return v;
    }

    int64_t sint(const json &j, const std::string &path) const {
        if (!j.is_number_integer()) bad(path, cat("expected an integer, got ", show(j)));
        return j.get<int64_t>();
    }

    double num(const json &j, const std::string &path, double min, double max, bool min_exclusive = false,
               bool max_exclusive = false) const {
        if (!j.is_number()) bad(path, cat("expected a number, got ", show(j)));
        double v = j.get<double>();
        if (!std::isfinite(v) || v < min || v > max || (min_exclusive && v == min) || (max_exclusive && v == max))
            bad(path, cat(show(j), " must be in ", min_exclusive ? "(" : "[", min, ", ", max,
                          max_exclusive ? ")" : "]"));
        return v;
    }

    std::string str(const json &j, const std::string &path, const NamePattern *re = nullptr,
                    const char *what = nullptr) const {
        if (!j.is_string()) bad(path, cat("expected a string, got ", show(j)));
        std::string s = j.get<std::string>();
        if (re && !re->match(s)) bad(path, cat("'", s, "' is not ", what));
        return s;
    }

    bool boolean(const json &j, const std::string &path) const {
        if (!j.is_boolean()) bad(path, cat("expected true or false, got ", show(j)));
        return j.get<bool>();
    }

    std::vector<uint32_t> ids(const json &j, const std::string &path) const {
        if (!j.is_array() || j.empty()) bad(path, cat("expected a non-empty array of ids, got ", show(j)));
        std::vector<uint32_t> out;
        for (size_t i = 0; i < j.size(); ++i) {
            uint32_t v = static_cast<uint32_t>(uint(j[i], cat(path, "[", i, "]"), 0, 65535));
            if (std::find(out.begin(), out.end(), v) != out.end()) bad(path, cat("id ", v, " is listed twice"));
            out.push_back(v);
        }
        return out;
    }

    std::string cgroup_name(const json &j, const std::string &path) const {
        std::string s = str(j, path, &kCgroupName, "a cgroup name (letters, digits, _ . -, nested with /)");
        for (auto &part : split(s, '/'))
            if (part == "." || part == "..") bad(path, cat("'", s, "': '.' and '..' are not cgroup names"));
        return s;
    }

    CpusetSpec cpuset(const json &j, const std::string &path) const {
        auto [kind, v] = one(j, path, {"llc", "numa", "exact", "range", "disjoint", "overlap"});
        std::string p = path + "." + kind;
        CpusetSpec s;
        using K = CpusetSpec::Kind;
        if (kind == "llc" || kind == "numa") {
            s.kind = kind == "llc" ? K::llc : K::numa;
            s.index = static_cast<uint32_t>(uint(*v, p, 0, 65535));
        } else if (kind == "exact") {
            s.kind = K::exact;
            s.cpus = ids(*v, p);
        } else if (kind == "range") {
            s.kind = K::range;
            if (!v->is_array() || v->size() != 2) bad(p, cat("expected [start, end], got ", show(*v)));
            s.start = num((*v)[0], p + "[0]", 0, 1);
            s.end = num((*v)[1], p + "[1]", 0, 1);
            if (s.start >= s.end) bad(p, cat("start ", s.start, " must be below end ", s.end));
        } else {
            s.kind = kind == "disjoint" ? K::disjoint : K::overlap;
            obj(*v, p, kind == "disjoint" ? std::set<std::string>{"index", "of"}
                                          : std::set<std::string>{"index", "of", "frac"});
            for (const char *f : {"index", "of"})
                if (!v->contains(f)) bad(p, cat("missing field '", f, "'"));
            s.index = static_cast<uint32_t>(uint(v->at("index"), p + ".index", 0, 65535));
            s.of = static_cast<uint32_t>(uint(v->at("of"), p + ".of", 1, 65535));
            if (s.index >= s.of) bad(p + ".index", cat(s.index, " must be below of=", s.of));
            if (kind == "overlap") {
                if (!v->contains("frac")) bad(p, "missing field 'frac'");
                s.frac = num(v->at("frac"), p + ".frac", 0, 1);
            }
        }
        return s;
    }

    Count count(const json &j, const std::string &path) const {
        Count c;
        if (j.is_number()) {
            c.base = Count::Base::fixed;
            c.n = static_cast<uint32_t>(uint(j, path, 1, 100000));
            return c;
        }
        obj(j, path, {"of", "div", "mul", "add", "min", "max", "round_to_group"});
        if (!j.contains("of")) bad(path, "missing field 'of' (per_cgroup, total_cpus, usable_cpus, num_llcs)");
        std::string of = str(j.at("of"), path + ".of");
        static const std::map<std::string, Count::Base> bases = {{"per_cgroup", Count::Base::per_cgroup},
            {"total_cpus", Count::Base::total_cpus}, {"usable_cpus", Count::Base::usable_cpus},
            {"num_llcs", Count::Base::num_llcs}};
        if (!bases.count(of)) bad(path + ".of", cat("'", of, "' is not one of per_cgroup, total_cpus, usable_cpus, num_llcs"));
        c.base = bases.at(of);
        if (j.contains("div")) c.div = static_cast<uint32_t>(uint(j.at("div"), path + ".div", 1, 100000));
        if (j.contains("mul")) c.mul = static_cast<uint32_t>(uint(j.at("mul"), path + ".mul", 1, 100000));
        if (j.contains("add")) c.add = sint(j.at("add"), path + ".add");
        if (j.contains("min")) c.min = static_cast<uint32_t>(uint(j.at("min"), path + ".min", 1, 100000));
        if (j.contains("max")) c.max = static_cast<uint32_t>(uint(j.at("max"), path + ".max", 1, 100000));
        if (c.min && c.max && *c.min > *c.max) bad(path, cat("min ", *c.min, " is above max ", *c.max));
        if (j.contains("round_to_group")) {
            std::string r = str(j.at("round_to_group"), path + ".round_to_group");
            if (r == "down") c.round = Count::Round::down;
            else if (r == "up") c.round = Count::Round::up;
            else bad(path + ".round_to_group", cat("'", r, "' is not down or up"));
        }
        return c;
    }

    WorkType work_type(const json &j, const std::string &path) const {
        WorkType t;
        std::string type;
        if (j.is_string()) type = j.get<std::string>();
        else if (j.is_object() && j.contains("type")) type = str(j.at("type"), path + ".type");
        else bad(path, cat("expected a work type name or {\"type\": NAME, ...}, got ", show(j)));
        auto names = work_kind_names();
        auto it = std::find(names.begin(), names.end(), type);
        if (it == names.end()) {
            std::string hint = closest(type, names);
            bad(path, cat("unknown work type '", type, "'", hint.empty() ? "" : cat(" (did you mean '", hint, "'?)"),
                          "; valid: ", join(names)));
        }
        t.kind = static_cast<WorkKind>(it - names.begin());
        std::map<WorkKind, std::vector<std::pair<std::string, uint64_t *>>> params = {
            {WorkKind::Bursty, {{"burst_ms", &t.burst_ms}, {"sleep_ms", &t.sleep_ms}}},
            {WorkKind::PipeIo, {{"burst_iters", &t.burst_iters}}},
            {WorkKind::FutexPingPong, {{"spin_iters", &t.spin_iters}}},
            {WorkKind::CachePressure, {{"size_kb", &t.size_kb}, {"stride", &t.stride}}},
        };
        if (j.is_object())
            for (auto &[k, v] : j.items()) {
                if (k == "type") continue;
                auto &ps = params[t.kind];
                auto p = std::find_if(ps.begin(), ps.end(), [&](auto &e) { return e.first == k; });
                if (p == ps.end()) {
                    std::vector<std::string> valid;
                    for (auto &e : ps) valid.push_back(e.first);
                    bad(path + "." + k, cat(type, " has no parameter '", k, "'",
                                            valid.empty() ? std::string(" (it takes none)") : cat(" (valid: ", join(valid), ")")));
                }
                *p->second = uint(v, path + "." + k, 0, 1ull << 32);
            }
        if (t.kind == WorkKind::Bursty && t.burst_ms == 0) bad(path + ".burst_ms", "must be at least 1");
        if (t.kind == WorkKind::PipeIo && t.burst_iters == 0) bad(path + ".burst_iters", "must be at least 1");
        return t;
    }

    SchedPolicy policy(const json &j, const std::string &path) const {
        SchedPolicy p;
        using K = SchedPolicy::Kind;
        if (j.is_string()) {
            std::string s = j.get<std::string>();
            if (s == "normal") p.kind = K::normal;
            else if (s == "batch") p.kind = K::batch;
            else if (s == "idle") p.kind = K::idle;
            else bad(path, cat("'", s, "' is not normal, batch, idle, {\"fifo\":PRIO} or {\"rr\":PRIO}"));
            return p;
        }
        auto [kind, v] = one(j, path, {"fifo", "rr"});
        p.kind = kind == "fifo" ? K::fifo : K::rr;
        p.priority = static_cast<int>(uint(*v, path + "." + kind, 1, 99));
        return p;
    }

    Affinity affinity(const json &j, const std::string &path) const {
        Affinity a;
        using K = Affinity::Kind;
        if (j.is_string()) {
            static const std::map<std::string, K> kinds = {{"inherit", K::inherit}, {"random_subset", K::random_subset},
                {"llc_aligned", K::llc_aligned}, {"cross_cgroup", K::cross_cgroup}, {"single_cpu", K::single_cpu}};
            std::string s = j.get<std::string>();
            if (!kinds.count(s))
                bad(path, cat("'", s, "' is not inherit, random_subset, llc_aligned, cross_cgroup, single_cpu or {\"exact\":[...]}"));
            a.kind = kinds.at(s);
            return a;
        }
        auto [kind, v] = one(j, path, {"exact"});
        a.kind = K::exact;
        a.cpus = ids(*v, path + ".exact");
        return a;
    }

    MemPolicy mem_policy(const json &j, const std::string &path) const {
        MemPolicy m;
        using K = MemPolicy::Kind;
        if (j.is_string()) {
            std::string s = j.get<std::string>();
            if (s == "default") m.kind = K::default_;
            else if (s == "local") m.kind = K::local;
            else bad(path, cat("'", s, "' is not default, local, or an object"));
            return m;
        }
        auto [kind, v] = one(j, path, {"preferred", "bind", "interleave", "preferred_many", "weighted_interleave"});
        if (kind == "preferred") {
            m.kind = K::preferred;
            m.nodes = {static_cast<uint32_t>(uint(*v, path + ".preferred", 0, 1023))};
            return m;
        }
        m.kind = kind == "bind" ? K::bind : kind == "interleave" ? K::interleave
               : kind == "preferred_many" ? K::preferred_many : K::weighted_interleave;
        m.nodes = ids(*v, path + "." + kind);
        return m;
    }

    CheckConfig checks(const json &j, const std::string &path) const {
        try {
            return CheckConfig::from_json(j, "");
        } catch (const Error &e) {
            bad(path, e.what());
        }
    }

    Work work(const json &j, const std::string &path) const {
        obj(j, path, {"work_type", "workers", "sched_policy", "affinity", "mem_policy", "checks", "mpol_flags"});
        Work w;
        if (j.contains("work_type")) w.type = work_type(j.at("work_type"), path + ".work_type");
        if (j.contains("workers")) w.workers = count(j.at("workers"), path + ".workers");
        if (j.contains("sched_policy")) w.policy = policy(j.at("sched_policy"), path + ".sched_policy");
        if (j.contains("affinity")) w.affinity = affinity(j.at("affinity"), path + ".affinity");
        if (j.contains("mem_policy")) w.mem_policy = mem_policy(j.at("mem_policy"), path + ".mem_policy");
        if (j.contains("checks")) w.checks = checks(j.at("checks"), path + ".checks");
        if (j.contains("mpol_flags")) {
            const json &f = j.at("mpol_flags");
            if (!f.is_array()) bad(path + ".mpol_flags", cat("expected an array, got ", show(f)));
            for (size_t i = 0; i < f.size(); ++i) {
                std::string s = str(f[i], cat(path, ".mpol_flags[", i, "]"));
                if (s != "static_nodes" && s != "relative_nodes" && s != "numa_balancing")
                    bad(cat(path, ".mpol_flags[", i, "]"), cat("'", s, "' is not static_nodes, relative_nodes or numa_balancing"));
                w.mpol_flags.push_back(s);
            }
            bool st = std::count(w.mpol_flags.begin(), w.mpol_flags.end(), "static_nodes");
            bool rel = std::count(w.mpol_flags.begin(), w.mpol_flags.end(), "relative_nodes");
            if (st && rel) bad(path + ".mpol_flags", "static_nodes and relative_nodes exclude each other");
        }
        return w;
    }

    CgroupDef cgroup(const json &j, const std::string &path) const {
        obj(j, path, {"name", "cpuset", "works", "swappable", "min_cpus"});
        if (!j.contains("name")) bad(path, "missing field 'name'");
        CgroupDef c;
        c.name = cgroup_name(j.at("name"), path + ".name");
        if (j.contains("cpuset")) c.cpuset = cpuset(j.at("cpuset"), path + ".cpuset");
        if (j.contains("works")) {
            const json &ws = j.at("works");
            if (!ws.is_array()) bad(path + ".works", cat("expected an array, got ", show(ws)));
            for (size_t i = 0; i < ws.size(); ++i) c.works.push_back(work(ws[i], cat(path, ".works[", i, "]")));
        }
        if (j.contains("swappable")) c.swappable = boolean(j.at("swappable"), path + ".swappable");
        if (j.contains("min_cpus")) c.min_cpus = static_cast<uint32_t>(uint(j.at("min_cpus"), path + ".min_cpus", 1, 65536));
        return c;
    }

    Op op(const json &j, const std::string &path) const {
        obj(j, path, {"op", "name", "cgroup", "a", "b", "from", "to", "cpus", "work", "affinity", "ms", "signal"});
        if (!j.contains("op")) bad(path, "missing field 'op'");
        std::string kind = str(j.at("op"), path + ".op");
        Op o;
        bool found = false;
        for (int k = 0; k <= static_cast<int>(OpKind::kill_scheduler); ++k)
            if (kind == op_kind_name(static_cast<OpKind>(k))) o.kind = static_cast<OpKind>(k), found = true;
        if (!found) {
            std::vector<std::string> all;
            for (int k = 0; k <= static_cast<int>(OpKind::kill_scheduler); ++k) all.push_back(op_kind_name(static_cast<OpKind>(k)));
            bad(path + ".op", cat("unknown op '", kind, "' (valid: ", join(all), ")"));
        }
        // Which fields each op takes (required), spec 1.3.
        static const std::map<OpKind, std::vector<std::string>> required = {
            {OpKind::add_cgroup, {"name"}}, {OpKind::remove_cgroup, {"cgroup"}},
            {OpKind::set_cpuset, {"cgroup", "cpus"}}, {OpKind::clear_cpuset, {"cgroup"}},
            {OpKind::swap_cpusets, {"a", "b"}}, {OpKind::spawn, {"cgroup", "work"}},
            {OpKind::stop_cgroup, {"cgroup"}}, {OpKind::set_affinity, {"cgroup", "affinity"}},
            {OpKind::spawn_host, {"work"}}, {OpKind::move_all_tasks, {"from", "to"}},
            {OpKind::sleep, {"ms"}}, {OpKind::kill_scheduler, {}},
        };
        static const std::map<OpKind, std::vector<std::string>> optional = {{OpKind::kill_scheduler, {"signal"}}};
        const auto &req = required.at(o.kind);
        for (auto &f : req)
            if (!j.contains(f)) bad(path, cat("op ", kind, " needs field '", f, "'"));
        for (auto &[k, v] : j.items()) {
            if (k == "op") continue;
            bool ok = std::count(req.begin(), req.end(), k) ||
                      (optional.count(o.kind) && std::count(optional.at(o.kind).begin(), optional.at(o.kind).end(), k));
            if (!ok) bad(path + "." + k, cat("op ", kind, " takes no field '", k, "'"));
        }
        for (auto [f, dst] : std::vector<std::pair<const char *, std::string *>>{
                 {"name", &o.name}, {"cgroup", &o.cgroup}, {"a", &o.a}, {"b", &o.b}, {"from", &o.from}, {"to", &o.to}})
            if (j.contains(f)) *dst = cgroup_name(j.at(f), path + "." + f);
        if (j.contains("cpus")) o.cpus = cpuset(j.at("cpus"), path + ".cpus");
        if (j.contains("work")) o.work = work(j.at("work"), path + ".work");
        if (j.contains("affinity")) o.affinity = affinity(j.at("affinity"), path + ".affinity");
        if (j.contains("ms")) o.ms = uint(j.at("ms"), path + ".ms", 1, 3600u * 1000);
        if (j.contains("signal")) {
            const json &s = j.at("signal");
            static const std::map<std::string, int> names = {{"KILL", SIGKILL}, {"TERM", SIGTERM}, {"INT", SIGINT},
                                                             {"SEGV", SIGSEGV}, {"ABRT", SIGABRT}, {"USR2", SIGUSR2}};
            if (s.is_string() && names.count(s.get<std::string>())) o.signal = names.at(s.get<std::string>());
            else if (s.is_number_integer()) o.signal = static_cast<int>(uint(s, path + ".signal", 1, 64));
            else bad(path + ".signal", cat(show(s), " is not a signal (KILL, TERM, INT, SEGV, ABRT, USR2 or a number)"));
        }
        if (o.kind == OpKind::move_all_tasks && o.from == o.to) bad(path, cat("moves '", o.from, "' onto itself"));
        if (o.kind == OpKind::swap_cpusets && o.a == o.b) bad(path, cat("swaps '", o.a, "' with itself"));
        return o;
    }

    Hold hold(const json &j, const std::string &path) const {
        Hold h;
        if (j.is_object() && j.contains("loop_ms")) {
            obj(j, path, {"loop_ms"});
            h.loop = true;
            h.loop_ms = uint(j.at("loop_ms"), path + ".loop_ms", 1, 3600u * 1000);
            return h;
        }
        obj(j, path, {"frac", "ms", "plus_settle"});
        if (j.contains("frac")) h.frac = num(j.at("frac"), path + ".frac", 0, 1000, true);
        if (j.contains("ms")) h.ms = uint(j.at("ms"), path + ".ms", 0, 3600u * 1000);
        if (j.contains("plus_settle")) h.plus_settle = boolean(j.at("plus_settle"), path + ".plus_settle");
        if (h.frac == 0 && h.ms == 0 && !h.plus_settle)
            bad(path, cat("hold ", show(j), " is empty: give frac > 0, ms > 0 or plus_settle"));
        return h;
    }

    Partition partition(const json &j, const std::string &path) const {
        Partition p;
        using K = Partition::Kind;
        if (j.is_string()) {
            std::string s = j.get<std::string>();
            if (s == "none") p.kind = K::none;
            else if (s == "llc_aligned") p.kind = K::llc_aligned;
            else if (s == "split_half") p.kind = K::split_half;
            else if (s == "split_misaligned") p.kind = K::split_misaligned;
            else bad(path, cat("'", s, "' is not none, llc_aligned, split_half, split_misaligned or {overlap|uneven|holdback: f}"));
            return p;
        }
        auto [kind, v] = one(j, path, {"overlap", "uneven", "holdback"});
        p.kind = kind == "overlap" ? K::overlap : kind == "uneven" ? K::uneven : K::holdback;
        p.frac = num(*v, path + "." + kind, 0, 1, false, kind == "holdback");
        return p;
    }

    std::vector<std::string> flags(const json &j, const std::string &path) const {
        if (!j.is_array()) bad(path, cat("expected an array of flag names, got ", show(j)));
        std::vector<std::string> out;
        for (size_t i = 0; i < j.size(); ++i) out.push_back(str(j[i], cat(path, "[", i, "]"), &kFlag, "a flag name"));
        return out;
    }

    template <typename T, typename F>
    std::vector<T> array(const json &j, const std::string &path, F each, bool non_empty = false) const {
        if (!j.is_array()) bad(path, cat("expected an array, got ", show(j)));
        if (non_empty && j.empty()) bad(path, "must not be empty");
        std::vector<T> out;
        for (size_t i = 0; i < j.size(); ++i) out.push_back(each(j[i], cat(path, "[", i, "]")));
        return out;
    }

    Scenario scenario(const json &doc) {
        if (!doc.is_object()) fail(ErrorKind::input, where_, ": expected a ktstr.scenario/1 object, got ", show(doc));
        if (doc.contains("name") && doc.at("name").is_string()) name = doc.at("name").get<std::string>();
        require_schema(doc, SCHEMA_KIND, SCHEMA_MAJOR, cat(where_, ": scenario '", name, "'"));
        obj(doc, "(top level)", {"schema", "name", "category", "description", "required_flags", "excluded_flags",
                                 "requires", "checks", "backdrop", "steps", "steady", "sysctls"});
        Scenario s;
        if (!doc.contains("name")) bad("name", "missing field 'name'");
        s.name = str(doc.at("name"), "name", &kScenarioName, "a scenario name ([a-z0-9_], 1 to 64 characters)");
        if (doc.contains("category")) s.category = str(doc.at("category"), "category", &kCategory, "a category ([a-z][a-z0-9_]*)");
        if (doc.contains("description")) s.description = str(doc.at("description"), "description");
        if (doc.contains("required_flags")) s.required_flags = flags(doc.at("required_flags"), "required_flags");
        if (doc.contains("excluded_flags")) s.excluded_flags = flags(doc.at("excluded_flags"), "excluded_flags");
        for (auto &f : s.required_flags)
            if (std::count(s.excluded_flags.begin(), s.excluded_flags.end(), f))
                bad("excluded_flags", cat("flag '", f, "' is both required and excluded"));
        if (doc.contains("requires")) {
            const json &r = obj(doc.at("requires"), "requires", {"min_cpus", "min_llcs", "min_numa_nodes", "requires_smt"});
            if (r.contains("min_cpus")) s.requires_.min_cpus = static_cast<uint32_t>(uint(r.at("min_cpus"), "requires.min_cpus", 0, 65536));
            if (r.contains("min_llcs")) s.requires_.min_llcs = static_cast<uint32_t>(uint(r.at("min_llcs"), "requires.min_llcs", 0, 65536));
            if (r.contains("min_numa_nodes"))
                s.requires_.min_numa_nodes = static_cast<uint32_t>(uint(r.at("min_numa_nodes"), "requires.min_numa_nodes", 0, 1024));
            if (r.contains("requires_smt")) s.requires_.smt = boolean(r.at("requires_smt"), "requires.requires_smt");
        }
        if (doc.contains("checks")) s.checks = checks(doc.at("checks"), "checks");
        if (doc.contains("sysctls")) {
            const json &sc = doc.at("sysctls");
            if (!sc.is_object()) bad("sysctls", cat("expected an object {\"kernel.x\": value}, got ", show(sc)));
            for (auto &[k, v] : sc.items()) {
                if (!kSysctl.match(k)) bad("sysctls", cat("'", k, "' is not a sysctl name like kernel.sched_rt_runtime_us"));
                if (v.is_string()) s.sysctls[k] = v.get<std::string>();
                else if (v.is_number_integer()) s.sysctls[k] = v.dump();
                else bad("sysctls." + k, cat("expected a string or an integer, got ", show(v)));
            }
        }
        if (doc.contains("backdrop")) {
            const json &b = obj(doc.at("backdrop"), "backdrop", {"cgroups", "ops"});
            if (b.contains("cgroups"))
                s.backdrop_cgroups = array<CgroupDef>(b.at("cgroups"), "backdrop.cgroups",
                                                      [&](const json &e, const std::string &p) { return cgroup(e, p); });
            if (b.contains("ops"))
                s.backdrop_ops = array<Op>(b.at("ops"), "backdrop.ops", [&](const json &e, const std::string &p) { return op(e, p); });
        }
        bool has_steps = doc.contains("steps"), has_steady = doc.contains("steady");
        if (has_steps == has_steady) bad("(top level)", "give exactly one of 'steps' or 'steady'");
        if (has_steps)
            s.steps = array<Step>(doc.at("steps"), "steps", [&](const json &e, const std::string &p) {
                obj(e, p, {"setup", "ops", "hold"});
                if (!e.contains("hold")) bad(p, "missing field 'hold'");
                Step st;
                if (e.contains("setup"))
                    st.setup = array<CgroupDef>(e.at("setup"), p + ".setup", [&](const json &c, const std::string &q) { return cgroup(c, q); });
                if (e.contains("ops"))
                    st.ops = array<Op>(e.at("ops"), p + ".ops", [&](const json &c, const std::string &q) { return op(c, q); });
                st.hold = hold(e.at("hold"), p + ".hold");
                return st;
            }, true);
        if (has_steady) {
            const json &sd = obj(doc.at("steady"), "steady", {"num_cgroups", "partition", "works"});
            if (!sd.contains("num_cgroups")) bad("steady", "missing field 'num_cgroups'");
            Steady st;
            st.num_cgroups = static_cast<uint32_t>(uint(sd.at("num_cgroups"), "steady.num_cgroups", 1, 1024));
            if (sd.contains("partition")) st.partition = partition(sd.at("partition"), "steady.partition");
            if (sd.contains("works"))
                st.works = array<Work>(sd.at("works"), "steady.works", [&](const json &e, const std::string &p) { return work(e, p); });
            s.steady = st;
        }
        check_names(s);
        return s;
    }

    // Cross-field rules: unique names, ops naming known cgroups, backdrop
    // cgroups not removed/stopped by steps, no backdrop -> step moves.
    void check_names(const Scenario &s) const {
        std::set<std::string> backdrop, steps;
        for (size_t i = 0; i < s.backdrop_cgroups.size(); ++i)
            if (!backdrop.insert(s.backdrop_cgroups[i].name).second)
                bad(cat("backdrop.cgroups[", i, "].name"), cat("cgroup '", s.backdrop_cgroups[i].name, "' is defined twice"));
        for (size_t i = 0; i < s.backdrop_ops.size(); ++i) {
            const Op &o = s.backdrop_ops[i];
            if (o.kind == OpKind::add_cgroup && !backdrop.insert(o.name).second)
                bad(cat("backdrop.ops[", i, "].name"), cat("cgroup '", o.name, "' already exists"));
        }
        for (size_t si = 0; si < s.steps.size(); ++si) {
            const Step &st = s.steps[si];
            auto known = [&](const std::string &n) { return backdrop.count(n) || steps.count(n); };
            for (size_t i = 0; i < st.ops.size(); ++i) {
                const Op &o = st.ops[i];
                std::string p = cat("steps[", si, "].ops[", i, "]");
                if (o.kind == OpKind::add_cgroup) {
                    if (known(o.name)) bad(p + ".name", cat("cgroup '", o.name, "' already exists"));
                    steps.insert(o.name);
                    continue;
                }
                for (auto &n : o.cgroups())
                    if (!known(n)) bad(p, cat("op ", op_kind_name(o.kind), " names cgroup '", n, "', which no earlier step or the backdrop creates"));
                if ((o.kind == OpKind::remove_cgroup || o.kind == OpKind::stop_cgroup) && backdrop.count(o.cgroup))
                    bad(p + ".cgroup", cat("a step may not ", o.kind == OpKind::remove_cgroup ? "remove" : "stop",
                                           " backdrop cgroup '", o.cgroup, "'"));
                if (o.kind == OpKind::move_all_tasks && backdrop.count(o.from) && !backdrop.count(o.to))
                    bad(p + ".to", cat("moving backdrop workers of '", o.from, "' into step cgroup '", o.to, "' is not allowed"));
                if (o.kind == OpKind::remove_cgroup) steps.erase(o.cgroup);
            }
            for (size_t i = 0; i < st.setup.size(); ++i) {
                const auto &n = st.setup[i].name;
                if (known(n)) bad(cat("steps[", si, "].setup[", i, "].name"), cat("cgroup '", n, "' already exists"));
                steps.insert(n);
            }
        }
    }

private:
    std::string where_;
};

} // namespace

Scenario parse_scenario(const json &doc, const std::string &where) {
    Loader l(where);
    return l.scenario(doc);
}

Scenario load_scenario_text(const std::string &text, const std::string &where) {
    return parse_scenario(parse_json(text, where), where);
}

// ---- names and canonical JSON ------------------------------------------------------

const char *work_kind_name(WorkKind k) {
    switch (k) {
    case WorkKind::CpuSpin: return "CpuSpin";
    case WorkKind::YieldHeavy: return "YieldHeavy";
    case WorkKind::Mixed: return "Mixed";
    case WorkKind::IoSync: return "IoSync";
    case WorkKind::Bursty: return "Bursty";
    case WorkKind::PipeIo: return "PipeIo";
    case WorkKind::FutexPingPong: return "FutexPingPong";
    case WorkKind::CachePressure: return "CachePressure";
    }
    return "?";
}

std::vector<std::string> work_kind_names() {
    std::vector<std::string> v;
    for (int k = 0; k <= static_cast<int>(WorkKind::CachePressure); ++k) v.push_back(work_kind_name(static_cast<WorkKind>(k)));
    return v;
}

uint32_t WorkType::group_size() const {
    return kind == WorkKind::PipeIo || kind == WorkKind::FutexPingPong ? 2 : 1;
}

std::string WorkType::describe() const {
    switch (kind) {
    case WorkKind::Bursty: return cat("Bursty(", burst_ms, ",", sleep_ms, ")");
    case WorkKind::PipeIo: return cat("PipeIo(", burst_iters, ")");
    case WorkKind::FutexPingPong: return cat("FutexPingPong(", spin_iters, ")");
    case WorkKind::CachePressure: return cat("CachePressure(", size_kb, ",", stride, ")");
    default: return work_kind_name(kind);
    }
}

ojson WorkType::to_json() const {
    ojson j;
    j["type"] = work_kind_name(kind);
    switch (kind) {
    case WorkKind::Bursty: j["burst_ms"] = burst_ms; j["sleep_ms"] = sleep_ms; break;
    case WorkKind::PipeIo: j["burst_iters"] = burst_iters; break;
    case WorkKind::FutexPingPong: j["spin_iters"] = spin_iters; break;
    case WorkKind::CachePressure: j["size_kb"] = size_kb; j["stride"] = stride; break;
    default: return ojson(work_kind_name(kind));
    }
    return j;
}

std::string CpusetSpec::describe() const {
    switch (kind) {
    case Kind::llc: return cat("llc:", index);
    case Kind::numa: return cat("numa:", index);
    case Kind::exact: {
        std::string s;
        for (auto c : cpus) s += (s.empty() ? "" : ",") + std::to_string(c);
        return "exact[" + s + "]";
    }
    case Kind::range: return cat("range[", start, ",", end, "]");
    case Kind::disjoint: return cat("disjoint{index=", index, ",of=", of, "}");
    case Kind::overlap: return cat("overlap{index=", index, ",of=", of, ",frac=", frac, "}");
    }
    return "?";
}

ojson CpusetSpec::to_json() const {
    ojson j;
    switch (kind) {
    case Kind::llc: j["llc"] = index; break;
    case Kind::numa: j["numa"] = index; break;
    case Kind::exact: j["exact"] = cpus; break;
    case Kind::range: j["range"] = {start, end}; break;
    case Kind::disjoint: j["disjoint"] = {{"index", index}, {"of", of}}; break;
    case Kind::overlap: j["overlap"] = {{"index", index}, {"of", of}, {"frac", frac}}; break;
    }
    return j;
}

ojson Count::to_json() const {
    if (base == Base::fixed) return n;
    static const char *names[] = {"fixed", "per_cgroup", "total_cpus", "usable_cpus", "num_llcs"};
    ojson j;
    j["of"] = names[static_cast<int>(base)];
    if (div != 1) j["div"] = div;
    if (mul != 1) j["mul"] = mul;
    if (add) j["add"] = add;
    if (min) j["min"] = *min;
    if (max) j["max"] = *max;
    if (round != Round::none) j["round_to_group"] = round == Round::down ? "down" : "up";
    return j;
}

std::string SchedPolicy::describe() const {
    switch (kind) {
    case Kind::normal: return "normal";
    case Kind::batch: return "batch";
    case Kind::idle: return "idle";
    case Kind::fifo: return cat("fifo(", priority, ")");
    case Kind::rr: return cat("rr(", priority, ")");
    }
    return "?";
}

ojson SchedPolicy::to_json() const {
    if (kind == Kind::fifo) return {{"fifo", priority}};
    if (kind == Kind::rr) return {{"rr", priority}};
    return describe();
}

std::string Affinity::describe() const {
    switch (kind) {
    case Kind::inherit: return "inherit";
    case Kind::random_subset: return "random_subset";
    case Kind::llc_aligned: return "llc_aligned";
    case Kind::cross_cgroup: return "cross_cgroup";
    case Kind::single_cpu: return "single_cpu";
    case Kind::exact: return "exact{" + format_cpuset(CpuSet(cpus.begin(), cpus.end())) + "}";
    }
    return "?";
}

ojson Affinity::to_json() const {
    if (kind == Kind::exact) return {{"exact", cpus}};
    return describe();
}

ojson MemPolicy::to_json() const {
    switch (kind) {
    case Kind::default_: return "default";
    case Kind::local: return "local";
    case Kind::preferred: return {{"preferred", nodes.empty() ? 0 : nodes[0]}};
    case Kind::bind: return {{"bind", nodes}};
    case Kind::interleave: return {{"interleave", nodes}};
    case Kind::preferred_many: return {{"preferred_many", nodes}};
    case Kind::weighted_interleave: return {{"weighted_interleave", nodes}};
    }
    return "default";
}

ojson Work::to_json() const {
    ojson j;
    j["work_type"] = type.to_json();
    if (workers) j["workers"] = workers->to_json();
    if (policy.kind != SchedPolicy::Kind::normal) j["sched_policy"] = policy.to_json();
    if (affinity.kind != Affinity::Kind::inherit) j["affinity"] = affinity.to_json();
    if (mem_policy.kind != MemPolicy::Kind::default_) j["mem_policy"] = mem_policy.to_json();
    if (!mpol_flags.empty()) j["mpol_flags"] = mpol_flags;
    if (!checks.fields.empty()) j["checks"] = checks.to_json();
    return j;
}

ojson CgroupDef::to_json() const {
    ojson j;
    j["name"] = name;
    if (cpuset) j["cpuset"] = cpuset->to_json();
    if (!works.empty()) {
        j["works"] = ojson::array();
        for (auto &w : works) j["works"].push_back(w.to_json());
    }
    if (swappable) j["swappable"] = true;
    if (min_cpus) j["min_cpus"] = min_cpus;
    return j;
}

const char *op_kind_name(OpKind k) {
    switch (k) {
    case OpKind::add_cgroup: return "add_cgroup";
    case OpKind::remove_cgroup: return "remove_cgroup";
    case OpKind::set_cpuset: return "set_cpuset";
    case OpKind::clear_cpuset: return "clear_cpuset";
    case OpKind::swap_cpusets: return "swap_cpusets";
    case OpKind::spawn: return "spawn";
    case OpKind::stop_cgroup: return "stop_cgroup";
    case OpKind::set_affinity: return "set_affinity";
    case OpKind::spawn_host: return "spawn_host";
    case OpKind::move_all_tasks: return "move_all_tasks";
    case OpKind::sleep: return "sleep";
    case OpKind::kill_scheduler: return "kill_scheduler";
    }
    return "?";
}

uint32_t op_kind_bit(OpKind k) {
    // Spec 4.2: the schema's op order (add_cgroup 0 .. move_all_tasks 9),
    // payload ops 10-12, sleep 13; kill_scheduler is ours, next.
    switch (k) {
    case OpKind::sleep: return 13;
    case OpKind::kill_scheduler: return 14;
    default: return static_cast<uint32_t>(k);
    }
}

std::vector<std::string> Op::cgroups() const {
    std::vector<std::string> v;
    for (auto *s : {&cgroup, &a, &b, &from, &to})
        if (!s->empty()) v.push_back(*s);
    return v;
}

ojson Op::to_json() const {
    ojson j;
    j["op"] = op_kind_name(kind);
    if (!name.empty()) j["name"] = name;
    if (!cgroup.empty()) j["cgroup"] = cgroup;
    if (!a.empty()) j["a"] = a;
    if (!b.empty()) j["b"] = b;
    if (!from.empty()) j["from"] = from;
    if (!to.empty()) j["to"] = to;
    if (cpus) j["cpus"] = cpus->to_json();
    if (work) j["work"] = work->to_json();
    if (affinity) j["affinity"] = affinity->to_json();
    if (kind == OpKind::sleep) j["ms"] = ms;
    if (kind == OpKind::kill_scheduler) j["signal"] = signal;
    return j;
}

ojson Hold::to_json() const {
    if (loop) return {{"loop_ms", loop_ms}};
    ojson j = ojson::object();
    if (frac) j["frac"] = frac;
    if (ms) j["ms"] = ms;
    if (plus_settle) j["plus_settle"] = true;
    return j;
}

std::string Partition::describe() const {
    switch (kind) {
    case Kind::none: return "none";
    case Kind::llc_aligned: return "llc_aligned";
    case Kind::split_half: return "split_half";
    case Kind::split_misaligned: return "split_misaligned";
    case Kind::overlap: return cat("overlap:", frac);
    case Kind::uneven: return cat("uneven:", frac);
    case Kind::holdback: return cat("holdback:", frac);
    }
    return "?";
}

ojson Partition::to_json() const {
    switch (kind) {
    case Kind::overlap: return {{"overlap", frac}};
    case Kind::uneven: return {{"uneven", frac}};
    case Kind::holdback: return {{"holdback", frac}};
    default: return describe();
    }
}

ojson Scenario::to_json() const {
    ojson j = make_doc(SCHEMA_KIND, SCHEMA_MAJOR);
    j["name"] = name;
    if (!category.empty()) j["category"] = category;
    if (!description.empty()) j["description"] = description;
    if (!required_flags.empty()) j["required_flags"] = required_flags;
    if (!excluded_flags.empty()) j["excluded_flags"] = excluded_flags;
    ojson r = ojson::object();
    if (requires_.min_cpus) r["min_cpus"] = requires_.min_cpus;
    if (requires_.min_llcs) r["min_llcs"] = requires_.min_llcs;
    if (requires_.min_numa_nodes) r["min_numa_nodes"] = requires_.min_numa_nodes;
    if (requires_.smt) r["requires_smt"] = true;
    if (!r.empty()) j["requires"] = r;
    if (!checks.fields.empty()) j["checks"] = checks.to_json();
    if (!sysctls.empty()) j["sysctls"] = sysctls;
    auto cgroups = [](const std::vector<CgroupDef> &v) {
        ojson a = ojson::array();
        for (auto &c : v) a.push_back(c.to_json());
        return a;
    };
    auto ops = [](const std::vector<Op> &v) {
        ojson a = ojson::array();
        for (auto &o : v) a.push_back(o.to_json());
        return a;
    };
    if (!backdrop_cgroups.empty() || !backdrop_ops.empty()) {
        j["backdrop"] = ojson::object();
        if (!backdrop_cgroups.empty()) j["backdrop"]["cgroups"] = cgroups(backdrop_cgroups);
        if (!backdrop_ops.empty()) j["backdrop"]["ops"] = ops(backdrop_ops);
    }
    if (steady) {
        ojson s;
        s["num_cgroups"] = steady->num_cgroups;
        if (steady->partition.kind != Partition::Kind::none) s["partition"] = steady->partition.to_json();
        if (!steady->works.empty()) {
            s["works"] = ojson::array();
            for (auto &w : steady->works) s["works"].push_back(w.to_json());
        }
        j["steady"] = s;
    } else {
        j["steps"] = ojson::array();
        for (auto &st : steps) {
            ojson e;
            if (!st.setup.empty()) e["setup"] = cgroups(st.setup);
            if (!st.ops.empty()) e["ops"] = ops(st.ops);
            e["hold"] = st.hold.to_json();
            j["steps"].push_back(e);
        }
    }
    return j;
}

// ---- resolution ---------------------------------------------------------------------------

uint32_t resolve_count(const std::optional<Count> &count, const WorkType &type, const CpuLayout &layout,
                       const RunContext &ctx, const std::string &cgroup) {
    Count c = count.value_or(Count{});
    int64_t n = 0;
    if (c.base == Count::Base::fixed) {
        n = c.n;
    } else {
        int64_t base = c.base == Count::Base::per_cgroup    ? ctx.workers_per_cgroup
                       : c.base == Count::Base::total_cpus  ? layout.total()
                       : c.base == Count::Base::usable_cpus ? static_cast<int64_t>(layout.usable().size())
                                                            : layout.num_llcs;
        n = base / c.div * c.mul + c.add;
        if (c.min) n = std::max<int64_t>(n, *c.min);
        if (c.max) n = std::min<int64_t>(n, *c.max);
    }
    uint32_t g = type.group_size();
    if (g > 1 && c.round != Count::Round::none) {
        if (c.round == Count::Round::down) n = std::max<int64_t>(n / g, 1) * g;
        else n = (n + g - 1) / g * g;
    }
    if (n <= 0) fail(ErrorKind::input, "cgroup '", cgroup, "': num_workers=", n < 0 ? n : 0, " is not allowed");
    if (n % g != 0)
        fail(ErrorKind::input, "cgroup '", cgroup, "': ", work_kind_name(type.kind),
             " requires num_workers divisible by ", g, ", got ", n);
    if (n > 100000) fail(ErrorKind::input, "cgroup '", cgroup, "': ", n, " workers is more than 100000");
    return static_cast<uint32_t>(n);
}

uint64_t resolve_hold_ms(const Hold &h, const RunContext &ctx) {
    if (h.loop) return static_cast<uint64_t>(ctx.duration_s * 1000);
    return static_cast<uint64_t>(std::llround(h.frac * ctx.duration_s * 1000)) + h.ms + (h.plus_settle ? ctx.settle_ms : 0);
}

namespace {

Work default_work() { return Work{}; }

struct Resolver {
    const Scenario &s;
    const CpuLayout &layout;
    const RunContext &ctx;
    std::string skip;
    std::set<std::string> dropped;   // cgroups below their min_cpus

    [[noreturn]] void bad(const std::string &path, const std::string &msg) const {
        fail(ErrorKind::input, "scenario '", s.name, "': ", path, ": ", msg);
    }

    // Resolve a cpuset spec; an empty result becomes the skip reason.
    std::optional<CpuSet> cpus(const CpusetSpec &spec, const std::string &cgroup, const std::string &path) {
        CpuSet set;
        try {
            set = resolve_cpuset(spec, layout);
        } catch (const Error &e) {
            if (starts_with(e.what(), "not enough usable CPUs")) {
                if (skip.empty()) skip = cat("cgroup '", cgroup, "' cpuset ", spec.describe(), ": ", e.what());
                return CpuSet{};
            }
            bad(path, e.what());
        }
        if (set.empty() && skip.empty())
            skip = cat("cgroup '", cgroup, "' cpuset ", spec.describe(), " resolves to no CPUs on ", layout.label(),
                       " (refusing to write an empty cpuset)");
        return set;
    }

    std::vector<ResolvedWork> works(const std::vector<Work> &ws, const std::string &cgroup, const std::string &path) {
        std::vector<ResolvedWork> out;
        const std::vector<Work> one = {default_work()};
        const auto &list = ws.empty() ? one : ws;
        for (size_t i = 0; i < list.size(); ++i) {
            uint32_t n;
            try {
                n = resolve_count(list[i].workers, list[i].type, layout, ctx, cgroup);
            } catch (const Error &e) {
                bad(cat(path, "[", i, "]"), e.what());
            }
            if (list[i].affinity.kind == Affinity::Kind::exact)
                for (uint32_t c : list[i].affinity.cpus)
                    if (!layout.llc_of.count(c)) {
                        if (skip.empty()) skip = cat("cgroup '", cgroup, "': affinity CPU ", c, " is not in ", layout.label());
                    }
            out.push_back({list[i], n});
        }
        return out;
    }

    std::vector<ResolvedCgroup> cgroups(const std::vector<CgroupDef> &defs, const std::string &path) {
        std::vector<ResolvedCgroup> out;
        for (size_t i = 0; i < defs.size(); ++i) {
            const CgroupDef &d = defs[i];
            if (d.min_cpus > layout.total()) {
                dropped.insert(d.name);
                continue;
            }
            ResolvedCgroup rc;
            rc.name = d.name;
            if (d.cpuset) rc.cpuset = cpus(*d.cpuset, d.name, cat(path, "[", i, "].cpuset"));
            rc.works = works(d.works, d.name, cat(path, "[", i, "].works"));
            out.push_back(std::move(rc));
        }
        return out;
    }

    std::vector<ResolvedOp> ops(const std::vector<Op> &list, const std::string &path) {
        std::vector<ResolvedOp> out;
        for (size_t i = 0; i < list.size(); ++i) {
            const Op &o = list[i];
            bool drop = o.kind == OpKind::add_cgroup && dropped.count(o.name);
            for (auto &n : o.cgroups()) drop |= dropped.count(n) > 0;
            if (drop) continue;
            ResolvedOp r{o, std::nullopt, 0};
            std::string p = cat(path, "[", i, "]");
            if (o.cpus) r.cpus = cpus(*o.cpus, o.cgroup, p + ".cpus");
            if (o.work) r.workers = works({*o.work}, o.cgroup.empty() ? "(harness)" : o.cgroup, p + ".work")[0].workers;
            if (o.kind == OpKind::set_affinity && o.affinity->kind == Affinity::Kind::exact)
                for (uint32_t c : o.affinity->cpus)
                    if (!layout.llc_of.count(c) && skip.empty())
                        skip = cat("cgroup '", o.cgroup, "': affinity CPU ", c, " is not in ", layout.label());
            out.push_back(std::move(r));
        }
        return out;
    }
};

} // namespace

Plan make_plan(const Scenario &s, const CpuLayout &layout, const RunContext &ctx) {
    if (!(ctx.duration_s > 0) || !std::isfinite(ctx.duration_s))
        fail(ErrorKind::usage, "scenario duration must be a positive number of seconds, got ", ctx.duration_s);
    if (ctx.workers_per_cgroup == 0) fail(ErrorKind::usage, "workers per cgroup must be at least 1");
    Plan plan;
    plan.scenario = s;
    plan.checks = CheckConfig::defaults().merged(s.checks);
    const Requires &r = s.requires_;
    auto skip_if = [&](bool cond, std::string why) {
        if (cond && plan.skip_reason.empty()) plan.skip_reason = std::move(why);
    };
    skip_if(layout.total() < r.min_cpus, cat("needs at least ", r.min_cpus, " CPUs, ", layout.label(), " has ", layout.total()));
    skip_if(layout.num_llcs < r.min_llcs, cat("needs at least ", r.min_llcs, " LLCs, ", layout.label(), " has ", layout.num_llcs));
    skip_if(layout.num_nodes < r.min_numa_nodes,
            cat("needs at least ", r.min_numa_nodes, " NUMA nodes, ", layout.label(), " has ", layout.num_nodes));
    skip_if(r.smt && !layout.smt(), cat("needs SMT, ", layout.label(), " has none"));
    if (!plan.skip_reason.empty()) return plan;

    Resolver res{s, layout, ctx, {}, {}};
    plan.backdrop = res.cgroups(s.backdrop_cgroups, "backdrop.cgroups");
    plan.backdrop_ops = res.ops(s.backdrop_ops, "backdrop.ops");
    if (s.steady) {
        plan.steady = true;
        ResolvedStep st;
        std::vector<CpuSet> sets;
        try {
            sets = partition_cpusets(s.steady->partition, s.steady->num_cgroups, layout);
        } catch (const Error &e) {
            res.bad("steady.partition", e.what());
        }
        for (uint32_t i = 0; i < s.steady->num_cgroups; ++i) {
            ResolvedCgroup rc;
            rc.name = cat("cg_", i);
            if (!sets.empty()) {
                rc.cpuset = sets[i];
                if (sets[i].empty() && res.skip.empty())
                    res.skip = cat("not enough CPUs/LLCs for partition ", s.steady->partition.describe(), " of ",
                                   s.steady->num_cgroups, " cgroups on ", layout.label());
            }
            std::vector<Work> w;
            if (i < s.steady->works.size()) w = {s.steady->works[i]};
            else if (!s.steady->works.empty()) w = {s.steady->works[0]};
            rc.works = res.works(w, rc.name, cat("steady.works[", std::min<size_t>(i, s.steady->works.empty() ? 0 : s.steady->works.size() - 1), "]"));
            st.setup.push_back(std::move(rc));
        }
        st.hold.frac = 1;
        st.hold_ms = resolve_hold_ms(st.hold, ctx);
        plan.steps.push_back(std::move(st));
    } else {
        for (size_t i = 0; i < s.steps.size(); ++i) {
            ResolvedStep st;
            std::string p = cat("steps[", i, "]");
            st.ops = res.ops(s.steps[i].ops, p + ".ops");
            st.setup = res.cgroups(s.steps[i].setup, p + ".setup");
            st.hold = s.steps[i].hold;
            st.hold_ms = resolve_hold_ms(st.hold, ctx);
            if (st.hold_ms == 0) res.bad(p + ".hold", "resolves to 0 ms");
            plan.steps.push_back(std::move(st));
        }
    }
    plan.skip_reason = res.skip;
    return plan;
}

} // namespace ktstr::scenario
