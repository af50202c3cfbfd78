// libktstr/vmm: topology parsing, validation and CPU/LLC/node arithmetic.
#include "ktstr/topology.h"

#include <array>
#include <optional>

#include "ktstr/util.h"

namespace ktstr {

uint32_t topology_bits(uint32_t n) {
    if (n <= 1) return 0;
    return 32u - static_cast<uint32_t>(__builtin_clz(n - 1));
}

uint32_t Topology::smt_shift() const { return topology_bits(threads_per_core); }
uint32_t Topology::core_shift() const { return topology_bits(threads_per_core) + topology_bits(cores_per_llc); }

uint32_t Topology::apic_id(uint32_t cpu) const {
    return (llc_of_cpu(cpu) << core_shift()) | (core_of_cpu(cpu) << smt_shift()) | thread_of_cpu(cpu);
}

uint32_t Topology::node_of_llc(uint32_t llc) const {
    if (nodes.empty()) return llc / (llcs / numa_nodes);
    uint32_t seen = 0;
    for (uint32_t n = 0; n < nodes.size(); ++n) {
        seen += nodes[n].llcs;
        if (llc < seen) return n;
    }
    return numa_nodes - 1;
}

uint32_t Topology::llcs_of_node(uint32_t node) const {
    if (nodes.empty()) return llcs / numa_nodes;
    return node < nodes.size() ? nodes[node].llcs : 0;
}

uint32_t Topology::first_llc_of_node(uint32_t node) const {
    uint32_t first = 0;
    for (uint32_t n = 0; n < node; ++n) first += llcs_of_node(n);
    return first;
}

std::vector<uint32_t> Topology::cpus_of_llc(uint32_t llc) const {
    std::vector<uint32_t> out;
    for (uint32_t i = 0; i < cpus_per_llc(); ++i) out.push_back(llc * cpus_per_llc() + i);
    return out;
}

std::vector<uint32_t> Topology::cpus_of_node(uint32_t node) const {
    std::vector<uint32_t> out;
    uint32_t first = first_llc_of_node(node);
    for (uint32_t l = first; l < first + llcs_of_node(node); ++l)
        for (uint32_t c : cpus_of_llc(l)) out.push_back(c);
    return out;
}

uint32_t Topology::distance(uint32_t from, uint32_t to) const {
    if (!distances.empty()) return distances.at(from).at(to);
    return from == to ? 10 : 20;
}

std::vector<uint64_t> Topology::node_memory_mb(uint64_t total_mb) const {
    std::vector<uint64_t> out;
    bool explicit_mem = !nodes.empty();
    for (auto &n : nodes)
        if (n.memory_mb == 0 && n.llcs > 0) explicit_mem = false;
    if (explicit_mem) {
        for (auto &n : nodes) out.push_back(n.memory_mb);
        return out;
    }
    uint64_t each = total_mb / numa_nodes;
    for (uint32_t n = 0; n < numa_nodes; ++n) out.push_back(each);
    out.back() += total_mb - each * numa_nodes;
    return out;
}

std::string Topology::to_string() const {
    return cat(numa_nodes, "n", llcs, "l", cores_per_llc, "c", threads_per_core, "t");
}

ojson Topology::to_json() const {
    ojson d = make_doc("topology", 1);
    d["numa_nodes"] = numa_nodes;
    d["llcs"] = llcs;
    d["cores_per_llc"] = cores_per_llc;
    d["threads_per_core"] = threads_per_core;
    d["cpus"] = total_cpus();
    if (!nodes.empty()) {
        ojson arr = ojson::array();
        for (auto &n : nodes) arr.push_back({{"llcs", n.llcs}, {"memory_mb", n.memory_mb}});
        d["nodes"] = arr;
    }
    if (!distances.empty()) d["distances"] = distances;
    return d;
}

void validate_topology(const Topology &t) {
    std::string name = t.to_string();
    auto bad = [&](const std::string &why) { fail(ErrorKind::usage, "topology ", name, ": ", why); };
    if (t.numa_nodes == 0) bad("NUMA nodes must be at least 1");
    if (t.cores_per_llc == 0) bad("cores per LLC must be at least 1");
    if (t.threads_per_core == 0) bad("threads per core must be at least 1");
    if (t.llcs == 0) bad("LLCs must be at least 1");
    uint64_t cpus = uint64_t(t.llcs) * t.cores_per_llc * t.threads_per_core;
    if (cpus > 0xFFFFFFFFull) bad("CPU count does not fit in 32 bits");
    if (t.nodes.empty()) {
        if (t.llcs % t.numa_nodes != 0)
            bad(cat(t.llcs, " LLCs cannot be spread evenly over ", t.numa_nodes,
                    " NUMA nodes (LLCs must be a multiple of nodes)"));
    } else {
        if (t.nodes.size() != t.numa_nodes)
            bad(cat("'nodes' lists ", t.nodes.size(), " nodes but numa_nodes is ", t.numa_nodes));
        uint64_t sum = 0;
        bool any_cpu = false;
        for (size_t i = 0; i < t.nodes.size(); ++i) {
            sum += t.nodes[i].llcs;
            if (t.nodes[i].llcs > 0) any_cpu = true;
        }
        if (sum != t.llcs) bad(cat("nodes[].llcs add up to ", sum, " but llcs is ", t.llcs));
        if (!any_cpu) bad("no node has any LLC (at least one node needs CPUs)");
        bool any_mem = false;
        for (auto &n : t.nodes) any_mem |= n.memory_mb != 0;
        if (any_mem)
            for (size_t i = 0; i < t.nodes.size(); ++i)
                if (t.nodes[i].llcs > 0 && t.nodes[i].memory_mb == 0)
                    bad(cat("nodes[", i, "] has CPUs but memory_mb 0"));
    }
    if (!t.distances.empty()) {
        uint32_t n = t.numa_nodes;
        if (t.distances.size() != n) bad(cat("distances must be a ", n, "x", n, " matrix"));
        for (uint32_t i = 0; i < n; ++i) {
            if (t.distances[i].size() != n) bad(cat("distances must be a ", n, "x", n, " matrix"));
            for (uint32_t j = 0; j < n; ++j) {
                uint32_t d = t.distances[i][j];
                if (i == j && d != 10) bad(cat("distances[", i, "][", i, "] must be 10, got ", d));
                if (i != j && d <= 10) bad(cat("distances[", i, "][", j, "] must be above 10, got ", d));
                if (i != j && d > 255) bad(cat("distances[", i, "][", j, "] must be at most 255, got ", d));
            }
        }
        for (uint32_t i = 0; i < n; ++i)
            for (uint32_t j = 0; j < n; ++j)
                if (t.distances[i][j] != t.distances[j][i])
                    bad(cat("distances must be symmetric: [", i, "][", j, "]=", t.distances[i][j], " but [", j,
                            "][", i, "]=", t.distances[j][i]));
    }
}

Topology parse_topology(const std::string &text) {
    std::string s(trim(text));
    // Four digit runs, each followed by its separator ('\0': the end).  By
    // hand: <regex> trips g++ 12's -Wmaybe-uninitialized in the sanitizer build.
    auto fields = [&](const char (&seps)[4]) -> std::optional<std::array<std::string, 4>> {
        std::array<std::string, 4> out;
        size_t pos = 0;
        for (size_t i = 0; i < 4; ++i) {
            size_t from = pos;
            while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') ++pos;
            if (pos == from) return std::nullopt;
            out[i] = s.substr(from, pos - from);
            if (i < 3 || seps[3]) {
                if (pos >= s.size() || s[pos] != seps[i]) return std::nullopt;
                ++pos;
            }
        }
        if (pos != s.size()) return std::nullopt;
        return out;
    };
    auto m = fields({'n', 'l', 'c', 't'});
    if (!m) m = fields({',', ',', ',', '\0'});
    if (!m)
        fail(ErrorKind::usage, "topology '", text,
             "': expected NnNlNcNt (NUMA nodes, LLCs, cores per LLC, threads per core), e.g. 1n2l2c2t");
    auto num = [&](int i) -> uint32_t {
        const std::string &digits = (*m)[static_cast<size_t>(i - 1)];
        auto v = parse_u64(digits);
        if (!v || *v > 0xFFFFFFFFull) fail(ErrorKind::usage, "topology '", text, "': number '", digits, "' too large");
        return static_cast<uint32_t>(*v);
    };
    Topology t;
    t.numa_nodes = num(1);
    t.llcs = num(2);
    t.cores_per_llc = num(3);
    t.threads_per_core = num(4);
    validate_topology(t);
    return t;
}

Topology topology_from_json(const json &doc, const std::string &where) {
    require_schema(doc, "topology", 1, where);
    Topology t;
    t.numa_nodes = get_field<uint32_t>(doc, "numa_nodes", where);
    t.llcs = get_field<uint32_t>(doc, "llcs", where);
    t.cores_per_llc = get_field<uint32_t>(doc, "cores_per_llc", where);
    t.threads_per_core = get_field<uint32_t>(doc, "threads_per_core", where);
    if (doc.contains("nodes")) {
        if (!doc["nodes"].is_array()) fail(ErrorKind::input, where, ": field 'nodes': expected array");
        size_t i = 0;
        for (auto &n : doc["nodes"]) {
            std::string w = cat(where, ": nodes[", i++, "]");
            TopologyNode node;
            node.llcs = get_field<uint32_t>(n, "llcs", w);
            node.memory_mb = get_field_or<uint64_t>(n, "memory_mb", 0, w);
            t.nodes.push_back(node);
        }
    }
    if (doc.contains("distances")) {
        try {
            t.distances = doc["distances"].get<std::vector<std::vector<uint32_t>>>();
        } catch (const std::exception &) {
            fail(ErrorKind::input, where, ": field 'distances': expected an array of arrays of numbers");
        }
    }
    try {
        validate_topology(t);
    } catch (const Error &e) {
        fail(ErrorKind::input, where, ": ", e.what());
    }
    return t;
}

Topology load_topology(const std::string &arg) {
    std::string s(trim(arg));
    if (!s.empty() && s[0] == '{') return topology_from_json(parse_json(s, "topology"), "topology");
    if (ends_with(s, ".json")) return topology_from_json(parse_json(read_file(s), s), s);
    return parse_topology(s);
}

} // namespace ktstr
