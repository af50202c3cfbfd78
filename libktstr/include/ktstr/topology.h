// libktstr/vmm: the guest CPU topology both accelerators build.
//
// Text form "{n}n{l}l{c}c{t}t": n NUMA nodes, l LLCs in total (spread evenly
// over the nodes unless a JSON topology says otherwise), c cores per LLC,
// t SMT threads per core.  CPUs are numbered thread-fastest:
//   thread = cpu % t, core = (cpu / t) % c, llc = cpu / (t * c).
// Every LLC looks like its own package to the guest; APIC ids pack
// llc | core | thread into bit fields (see apic_id()).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ktstr/json.h"

namespace ktstr {

struct TopologyNode {
    uint32_t llcs = 0;        // LLCs on this node (0 = memory-only node)
    uint64_t memory_mb = 0;   // 0 in a uniform topology: split evenly at boot
};

struct Topology {
    uint32_t numa_nodes = 1;
    uint32_t llcs = 1;
    uint32_t cores_per_llc = 1;
    uint32_t threads_per_core = 1;
    std::vector<TopologyNode> nodes;               // empty: uniform
    std::vector<std::vector<uint32_t>> distances;  // empty: 10 local / 20 remote

    uint32_t total_cpus() const { return llcs * cores_per_llc * threads_per_core; }
    uint32_t cpus_per_llc() const { return cores_per_llc * threads_per_core; }

    uint32_t thread_of_cpu(uint32_t cpu) const { return cpu % threads_per_core; }
    uint32_t core_of_cpu(uint32_t cpu) const { return (cpu / threads_per_core) % cores_per_llc; }
    uint32_t llc_of_cpu(uint32_t cpu) const { return cpu / cpus_per_llc(); }
    uint32_t node_of_llc(uint32_t llc) const;
    uint32_t node_of_cpu(uint32_t cpu) const { return node_of_llc(llc_of_cpu(cpu)); }
    uint32_t llcs_of_node(uint32_t node) const;
    // First LLC of a node (LLC ids are global and assigned to nodes in order).
    uint32_t first_llc_of_node(uint32_t node) const;
    std::vector<uint32_t> cpus_of_node(uint32_t node) const;
    std::vector<uint32_t> cpus_of_llc(uint32_t llc) const;
    uint32_t distance(uint32_t from, uint32_t to) const;

    // APIC id layout.
    uint32_t smt_shift() const;
    uint32_t core_shift() const;
    uint32_t apic_id(uint32_t cpu) const;
    uint32_t max_apic_id() const { return apic_id(total_cpus() - 1); }

    // Memory per node in MiB for a guest of total_mb: explicit sizes, or an
    // even split with the remainder on the last node (100/3 -> 33,33,34).
    std::vector<uint64_t> node_memory_mb(uint64_t total_mb) const;

    std::string to_string() const;   // "2n4l2c2t"
    ojson to_json() const;           // schema ktstr.topology/1
};

// ceil(log2(n)) bits for n values: 1->0, 2->1, 3->2, 4->2, 5->3.
uint32_t topology_bits(uint32_t n);

// Parse "2n4l2c2t" (also the spec's "n,l,c,t") and validate.  Throws
// Error(usage) naming the text and what is wrong.
Topology parse_topology(const std::string &text);
// Parse a ktstr.topology/1 JSON document (explicit nodes, memory, distances).
Topology topology_from_json(const json &doc, const std::string &where);
// Accept either form: a file path ending in .json, inline JSON, or text.
Topology load_topology(const std::string &arg);

// Throws Error(usage) with the reason; called by the parsers.
void validate_topology(const Topology &t);

} // namespace ktstr
