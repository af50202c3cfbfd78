// libktstr/kconfig: compare a final .config with what the fragments asked for.
#include "ktstr/kconfig.h"

#include <algorithm>
#include <set>

namespace ktstr::kconfig {

namespace {

constexpr const char *ABSENT = "(absent)";

// Our name for a kernel arch directory where we have one.
std::string arch_label(const std::string &dir) {
    if (dir == "x86") return "x86_64";
    if (dir == "arm64") return "aarch64";
    return dir;
}

bool numeric_equal(const std::string &a, const std::string &b) {
    try {
        size_t ua = 0, ub = 0;
        long long x = std::stoll(a, &ua, 0), y = std::stoll(b, &ub, 0);
        return ua == a.size() && ub == b.size() && x == y;
    } catch (const std::exception &) {
        return a == b;
    }
}

// "" when the final value is what was asked for, else the status word.
std::string compare_value(const Entry &want, const Entry *got) {
    if (want.kind == Entry::Kind::tristate) {
        std::string have = got ? got->value : "";
        if (want.value == "n") return !got || have == "n" ? "" : "enabled";
        if (have == want.value) return "";
        if (!got) return "missing";
        if (have == "n") return "not_set";
        if (want.value == "y" && have == "m") return "demoted";
        if (want.value == "m" && have == "y") return "promoted";
        return "different";
    }
    if (!got) return "missing";
    if (want.kind == Entry::Kind::string) return got->kind == Entry::Kind::string && got->value == want.value ? "" : "different";
    return numeric_equal(want.value, got->value) ? "" : "different";
}

struct Explainer {
    const Config &final_config;
    const KconfigDb &db;
    Arch arch;

    // Why SYM is off: the failing terms of its dependencies, then (nested, a
    // few levels) why those dependencies are off in turn.
    void explain(const std::string &sym, const std::string &prefix, int depth, std::set<std::string> &seen,
                 Finding &f) const {
        if (!seen.insert(sym).second || depth > 3) return;
        if (db.from_tree() && !db.declares(sym)) {
            f.causes.push_back(cat(prefix, "no Kconfig file of this tree declares ", sym));
            return;
        }
        std::vector<std::string> next;
        for (auto &dep : db.depends(sym, arch)) {
            std::vector<std::string> off;
            std::vector<std::string> phrases;
            try {
                phrases = explain_false(dep, final_config, &off);
            } catch (const Error &) {
                continue;   // an expression we cannot read proves nothing
            }
            if (!phrases.empty()) {
                std::string joined;
                for (auto &p : phrases) joined += (joined.empty() ? "" : "; ") + p;
                f.causes.push_back(cat(prefix, "needs ", dep, ": ", joined));
            }
            for (auto &o : off) {
                if (std::find(f.off_dependencies.begin(), f.off_dependencies.end(), o) == f.off_dependencies.end())
                    f.off_dependencies.push_back(o);
                next.push_back(o);
            }
            if (dep.find("PAHOLE_VERSION") != std::string::npos && !phrases.empty()) pahole_hint(f, prefix);
        }
        for (auto &o : next) explain(o, cat(o, " "), depth + 1, seen, f);
    }

    void pahole_hint(Finding &f, const std::string &prefix) const {
        const Entry *pv = final_config.find("PAHOLE_VERSION");
        std::string v = pv ? pv->value : "";
        std::string hint = v.empty() || v == "0"
                               ? "pahole was missing when the kernel was configured: install dwarves (pahole >= 1.16)"
                               : cat("pahole ", v.size() > 2 ? v.substr(0, v.size() - 2) + "." + v.substr(v.size() - 2) : v,
                                     " is too old for BTF: install pahole >= 1.16 (dwarves)");
        f.causes.push_back(prefix + hint);
    }
};

Finding make_finding(const std::string &name, const std::string &expected, const Entry *got, const std::string &status,
                     const std::string &origin, const Explainer &ex) {
    Finding f;
    f.name = name;
    f.expected = expected;
    f.actual = got ? display_value(*got) : ABSENT;
    f.status = status;
    f.origin = origin;
    f.critical = find_critical(name) != nullptr;
    if (status == "enabled") {
        f.causes = ex.db.why_forced_on(name, ex.arch, ex.final_config);
    } else if (status != "promoted" && status != "different") {
        std::set<std::string> seen;
        ex.explain(name, "", 0, seen, f);
    }
    if (name == "SCHED_CLASS_EXT" && ex.db.from_tree() && !ex.db.declares(name)) {
        f.causes.clear();
        f.causes.push_back("no Kconfig file declares SCHED_CLASS_EXT: this kernel predates sched_ext (needs 6.12 or later)");
    }
    return f;
}

} // namespace

Validation validate(const Config &final_config, const Config &requested, Arch arch, const KconfigDb *db) {
    const KconfigDb &kdb = db ? *db : KconfigDb::builtin();
    Explainer ex{final_config, kdb, arch};
    Validation v;
    v.arch = arch;
    v.requested = requested.entries.size();
    for (const Entry &want : requested.entries) {
        const Entry *got = final_config.find(want.name);
        std::string status = compare_value(want, got);
        if (status.empty()) {
            ++v.satisfied;
            continue;
        }
        std::string origin = cat(want.file, ":", want.line);
        // Another architecture's option: the tree's Kconfig decides when we have
        // it; else (or when the tree allows it everywhere) the fragment's tag.
        auto tree_only = kdb.from_tree() ? kdb.only_on(want.name) : std::nullopt;
        auto tag = requested.only_arch.find(want.name);
        Skipped skip;
        if (tree_only && !tree_only->empty() &&
            std::find(tree_only->begin(), tree_only->end(), kernel_arch_dir(arch)) == tree_only->end()) {
            skip.basis = "kconfig-tree";
            std::string where;
            for (auto &a : *tree_only) {
                skip.arches.push_back(arch_label(a));
                where += (where.empty() ? "" : ", ") + a;
            }
            skip.reason = cat("the tree's Kconfig lets it be enabled only under arch/{", where, "}");
        } else if (tag != requested.only_arch.end() && tag->second != arch) {
            skip.basis = "fragment";
            skip.arches.push_back(arch_name(tag->second));
            Finding f = make_finding(want.name, display_value(want), got, status, origin, ex);
            skip.reason = cat("the fragment marks it ", arch_name(tag->second), "-only");
            if (!f.causes.empty()) skip.reason += cat(" (here: ", f.causes.front(), ")");
        }
        if (!skip.basis.empty()) {
            skip.name = want.name;
            skip.expected = display_value(want);
            v.skipped.push_back(std::move(skip));
            continue;
        }
        Finding f = make_finding(want.name, display_value(want), got, status, origin, ex);
        v.differing.push_back(f);
    }
    for (auto &crit : critical_options()) {
        const Entry *got = final_config.find(crit.name);
        if (got && got->value == "y") continue;
        auto in_diff = std::find_if(v.differing.begin(), v.differing.end(),
                                    [&](const Finding &f) { return f.name == crit.name; });
        if (in_diff != v.differing.end()) {
            v.critical_lost.push_back(*in_diff);
        } else {
            std::string status = !got ? "missing" : got->value == "m" ? "demoted" : "not_set";
            v.critical_lost.push_back(make_finding(crit.name, "y", got, status, "critical list", ex));
        }
        if (v.critical_lost.back().causes.empty()) v.critical_lost.back().causes.push_back(crit.hint);
    }
    if (!v.critical_lost.empty())
        v.notes.push_back("Kconfig drops an option whose dependencies are unmet without a word; fix the cause "
                          "(install the missing tool, change the fragment) and configure again "
                          "(ktstr-kbuild: rebuild with --force)");
    return v;
}

ojson to_json(const Validation &v) {
    auto finding_json = [](const Finding &f) {
        ojson j;
        j["option"] = "CONFIG_" + f.name;
        j["expected"] = f.expected;
        j["actual"] = f.actual;
        j["status"] = f.status;
        j["critical"] = f.critical;
        j["requested_at"] = f.origin;
        j["causes"] = f.causes;
        j["off_dependencies"] = f.off_dependencies;
        return j;
    };
    ojson doc = make_doc("kconfig-validate", 1);
    doc["config"] = v.config_path;
    doc["arch"] = arch_name(v.arch);
    doc["kconfig_hash"] = v.kconfig_hash;
    doc["ok"] = v.ok();
    doc["requested"] = v.requested;
    doc["satisfied"] = v.satisfied;
    doc["critical_lost"] = ojson::array();
    for (auto &f : v.critical_lost) doc["critical_lost"].push_back(finding_json(f));
    doc["differing"] = ojson::array();
    for (auto &f : v.differing) doc["differing"].push_back(finding_json(f));
    doc["skipped"] = ojson::array();
    for (auto &s : v.skipped) {
        ojson j;
        j["option"] = "CONFIG_" + s.name;
        j["expected"] = s.expected;
        j["arches"] = s.arches;
        j["basis"] = s.basis;
        j["reason"] = s.reason;
        doc["skipped"].push_back(j);
    }
    doc["notes"] = v.notes;
    return doc;
}

std::string to_text(const Validation &v) {
    std::string out = cat(v.config_path, " (", arch_name(v.arch), ", kconfig hash ", v.kconfig_hash, "): ",
                          v.satisfied, " of ", v.requested, " requested options as asked, ", v.skipped.size(),
                          " skipped (other architecture), ", v.differing.size(), " differ, ", v.critical_lost.size(),
                          " critical lost\n");
    for (auto &s : v.skipped)
        out += cat("skipped   CONFIG_", s.name, " (", s.expected, "): ", s.reason, "\n");
    auto finding_line = [](const char *tag, const Finding &f) {
        std::string line = cat(tag, "CONFIG_", f.name, ": asked ", f.expected, ", got ", f.actual, " [", f.status, "]");
        for (auto &c : f.causes) line += cat("\n            ", c);
        return line + "\n";
    };
    for (auto &f : v.differing)
        if (!f.critical) out += finding_line("differs   ", f);
    for (auto &f : v.critical_lost) out += finding_line("CRITICAL  ", f);
    for (auto &n : v.notes) out += cat("note: ", n, "\n");
    return out;
}

} // namespace ktstr::kconfig
