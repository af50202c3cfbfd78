// libktstr/scenario: the canned catalog.  Each entry is a ktstr.scenario/1
// document loaded through the same validator as a user's file, so the catalog
// doubles as the reference examples of the format (man 5 ktstr-scenario).
#include "ktstr/scenario.h"

#include <sys/stat.h>

namespace ktstr::scenario {

namespace {

// "s+d/2" in the spec = {"frac":0.5,"plus_settle":true}.
const std::vector<CatalogEntry> kCatalog = {
    {"steady", R"({"schema":"ktstr.scenario/1","name":"steady","category":"basic",
      "description":"2 cgroups x pc CpuSpin, no cpusets, for the whole run",
      "steady":{"num_cgroups":2}})"},

    {"steady_llc", R"({"schema":"ktstr.scenario/1","name":"steady_llc","category":"cpuset",
      "description":"2 cgroups x pc CpuSpin on LLC 0 and LLC 1; isolation checked",
      "requires":{"min_llcs":2},"checks":{"isolation":true},
      "steps":[{"setup":[{"name":"cg_0","cpuset":{"llc":0}},{"name":"cg_1","cpuset":{"llc":1}}],
                "hold":{"frac":1}}]})"},

    {"oversubscribed", R"({"schema":"ktstr.scenario/1","name":"oversubscribed","category":"stress",
      "description":"2 cgroups x 32 Mixed (spin + yield) workers",
      "steady":{"num_cgroups":2,"works":[{"work_type":"Mixed","workers":32}]}})"},

    {"cpuset_apply", R"({"schema":"ktstr.scenario/1","name":"cpuset_apply","category":"cpuset",
      "description":"2 cgroups without cpusets; disjoint halves applied after settle + d/2; isolation checked",
      "checks":{"isolation":true},
      "steps":[{"setup":[{"name":"cg_0"},{"name":"cg_1"}],"hold":{"frac":0.5,"plus_settle":true}},
               {"ops":[{"op":"set_cpuset","cgroup":"cg_0","cpus":{"disjoint":{"index":0,"of":2}}},
                       {"op":"set_cpuset","cgroup":"cg_1","cpus":{"disjoint":{"index":1,"of":2}}}],
                "hold":{"frac":0.5}}]})"},

    {"cpuset_clear", R"({"schema":"ktstr.scenario/1","name":"cpuset_clear","category":"cpuset",
      "description":"2 cgroups on disjoint halves; cpusets cleared after settle + d/2",
      "steps":[{"setup":[{"name":"cg_0","cpuset":{"disjoint":{"index":0,"of":2}}},
                         {"name":"cg_1","cpuset":{"disjoint":{"index":1,"of":2}}}],
                "hold":{"frac":0.5,"plus_settle":true}},
               {"ops":[{"op":"clear_cpuset","cgroup":"cg_0"},{"op":"clear_cpuset","cgroup":"cg_1"}],
                "hold":{"frac":0.5}}]})"},

    {"cpuset_resize", R"({"schema":"ktstr.scenario/1","name":"cpuset_resize","category":"cpuset",
      "description":"2 cgroups on ranges 50/50, then 25/75, then 75/25, a third each; isolation checked",
      "requires":{"min_cpus":4},"checks":{"isolation":true},
      "steps":[{"setup":[{"name":"cg_0","cpuset":{"range":[0,0.5]}},{"name":"cg_1","cpuset":{"range":[0.5,1]}}],
                "hold":{"frac":0.3333,"plus_settle":true}},
               {"ops":[{"op":"set_cpuset","cgroup":"cg_0","cpus":{"range":[0,0.25]}},
                       {"op":"set_cpuset","cgroup":"cg_1","cpus":{"range":[0.25,1]}}],
                "hold":{"frac":0.3333}},
               {"ops":[{"op":"set_cpuset","cgroup":"cg_0","cpus":{"range":[0,0.75]}},
                       {"op":"set_cpuset","cgroup":"cg_1","cpus":{"range":[0.75,1]}}],
                "hold":{"frac":0.3334}}]})"},

    {"cgroup_add", R"({"schema":"ktstr.scenario/1","name":"cgroup_add","category":"cgroup",
      "description":"2 cgroups; min(N-3,2) more join for the last half",
      "requires":{"min_cpus":4},
      "steps":[{"setup":[{"name":"cg_0"},{"name":"cg_1"}],"hold":{"frac":0.5,"plus_settle":true}},
               {"setup":[{"name":"cg_2"},{"name":"cg_3","min_cpus":5}],"hold":{"frac":0.5}}]})"},

    {"cgroup_remove", R"({"schema":"ktstr.scenario/1","name":"cgroup_remove","category":"cgroup",
      "description":"n=min(4,N-1) cgroups; the upper floor(n/2) removed after settle + d/2",
      "requires":{"min_cpus":4},
      "steps":[{"setup":[{"name":"cg_0"},{"name":"cg_1"},{"name":"cg_2","min_cpus":4},{"name":"cg_3","min_cpus":5}],
                "hold":{"frac":0.5,"plus_settle":true}},
               {"ops":[{"op":"remove_cgroup","cgroup":"cg_3"},{"op":"remove_cgroup","cgroup":"cg_2"}],
                "hold":{"frac":0.5}}]})"},

    {"affinity_pinned", R"({"schema":"ktstr.scenario/1","name":"affinity_pinned","category":"affinity",
      "description":"2 cgroups; after settle every worker is pinned to CPUs {0,1}; spread <= 75%",
      "required_flags":["reject-pin"],"requires":{"min_cpus":2},"checks":{"max_spread_pct":75},
      "steps":[{"setup":[{"name":"cg_0"},{"name":"cg_1"}],"hold":{"plus_settle":true}},
               {"ops":[{"op":"set_affinity","cgroup":"cg_0","affinity":{"exact":[0,1]}},
                       {"op":"set_affinity","cgroup":"cg_1","affinity":{"exact":[0,1]}}],
                "hold":{"frac":1}}]})"},

    {"mixed_workloads", R"({"schema":"ktstr.scenario/1","name":"mixed_workloads","category":"interaction",
      "description":"8 CpuSpin / pc Bursty(100,50) / pc IoSync in three cgroups",
      "required_flags":["borrow","rebal"],
      "steady":{"num_cgroups":3,"works":[
        {"work_type":"CpuSpin","workers":8},
        {"work_type":{"type":"Bursty","burst_ms":100,"sleep_ms":50}},
        {"work_type":"IoSync"}]}})"},
};

} // namespace

const std::vector<CatalogEntry> &catalog() { return kCatalog; }

Scenario catalog_scenario(const std::string &name) {
    for (auto &e : kCatalog)
        if (e.name == name) return load_scenario_text(e.json_text, "catalog");
    std::string names;
    for (auto &e : kCatalog) names += (names.empty() ? "" : ", ") + e.name;
    fail(ErrorKind::usage, "unknown scenario '", name, "' (catalog: ", names, "; or give a ktstr.scenario/1 file)");
}

Scenario load_scenario_arg(const std::string &arg) {
    struct stat st;
    bool file = arg.find('/') != std::string::npos || ends_with(arg, ".json") || stat(arg.c_str(), &st) == 0;
    if (!file) return catalog_scenario(arg);
    return load_scenario_text(read_file(arg), arg);
}

std::string format_catalog() {
    std::string out;
    for (auto &e : kCatalog) {
        Scenario s = load_scenario_text(e.json_text, "catalog");
        char line[512];
        snprintf(line, sizeof line, "%-16s %-12s %s\n", s.name.c_str(), s.category.c_str(), s.description.c_str());
        out += line;
    }
    return out;
}

} // namespace ktstr::scenario
