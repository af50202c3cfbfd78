// Unit tests for libktstr/vmm topology: parsing, validation, APIC ids, nodes.
#include <doctest/doctest.h>

#include "ktstr/topology.h"

using namespace ktstr;

TEST_CASE("bits") {
    CHECK(topology_bits(1) == 0);
    CHECK(topology_bits(2) == 1);
    CHECK(topology_bits(3) == 2);
    CHECK(topology_bits(4) == 2);
    CHECK(topology_bits(5) == 3);
}

TEST_CASE("parse the compact and the comma forms") {
    Topology t = parse_topology("2n4l2c2t");
    CHECK(t.numa_nodes == 2);
    CHECK(t.llcs == 4);
    CHECK(t.cores_per_llc == 2);
    CHECK(t.threads_per_core == 2);
    CHECK(t.total_cpus() == 16);
    CHECK(t.to_string() == "2n4l2c2t");
    CHECK(parse_topology("1,2,3,1").to_string() == "1n2l3c1t");
}

TEST_CASE("invalid topologies are rejected with the reason") {
    CHECK_THROWS_WITH_AS(parse_topology("0n1l1c1t"), doctest::Contains("NUMA nodes must be at least 1"), Error);
    CHECK_THROWS_WITH_AS(parse_topology("1n0l1c1t"), doctest::Contains("LLCs must be at least 1"), Error);
    CHECK_THROWS_WITH_AS(parse_topology("1n1l0c1t"), doctest::Contains("cores per LLC"), Error);
    CHECK_THROWS_WITH_AS(parse_topology("1n1l1c0t"), doctest::Contains("threads per core"), Error);
    CHECK_THROWS_WITH_AS(parse_topology("2n3l1c1t"), doctest::Contains("multiple of nodes"), Error);
    CHECK_THROWS_WITH_AS(parse_topology("2x"), doctest::Contains("expected NnNlNcNt"), Error);
    for (const char *bad : {"1n2l2c2tx", "1n2l2c2", "n2l2c2t", "1,2,3", "1,2,3,4,", "1n2l,2c2t", "1n2l2c2t1", ""})
        CHECK_THROWS_WITH_AS(parse_topology(bad), doctest::Contains("expected NnNlNcNt"), Error);
    CHECK(parse_topology(" 1n2l2c2t\n").to_string() == "1n2l2c2t");
    CHECK_THROWS_WITH_AS(parse_topology("1n99999999999l1c1t"), doctest::Contains("too large"), Error);
    CHECK_THROWS_WITH_AS(parse_topology("1n65536l65536c2t"), doctest::Contains("32 bits"), Error);
}

TEST_CASE("APIC ids: 2l3c2t packs llc|core|thread") {
    Topology t = parse_topology("1n2l3c2t");
    std::vector<uint32_t> ids;
    for (uint32_t c = 0; c < t.total_cpus(); ++c) ids.push_back(t.apic_id(c));
    CHECK(ids == std::vector<uint32_t>{0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13});
    CHECK(parse_topology("1n14l9c2t").max_apic_id() == 433);
    CHECK(parse_topology("1n15l8c2t").max_apic_id() == 239);
    Topology u = parse_topology("1n1l4c2t");
    CHECK(u.apic_id(3) == 3);
    CHECK(u.smt_shift() == 1);
    CHECK(u.core_shift() == 3);
}

TEST_CASE("nodes, LLCs and CPUs") {
    Topology t = parse_topology("2n4l2c1t");
    CHECK(t.node_of_llc(0) == 0);
    CHECK(t.node_of_llc(1) == 0);
    CHECK(t.node_of_llc(2) == 1);
    CHECK(t.node_of_cpu(5) == 1);
    CHECK(t.cpus_of_node(1) == std::vector<uint32_t>{4, 5, 6, 7});
    CHECK(t.cpus_of_llc(1) == std::vector<uint32_t>{2, 3});
    CHECK(t.distance(0, 1) == 20);
    CHECK(t.distance(1, 1) == 10);
    CHECK(parse_topology("3n3l1c1t").node_memory_mb(100) == std::vector<uint64_t>{33, 33, 34});
}

TEST_CASE("JSON topology with explicit nodes and distances") {
    auto t = topology_from_json(json::parse(R"({"schema":"ktstr.topology/1","numa_nodes":2,"llcs":3,
        "cores_per_llc":2,"threads_per_core":1,"nodes":[{"llcs":1,"memory_mb":128},{"llcs":2,"memory_mb":384}],
        "distances":[[10,31],[31,10]]})"), "t.json");
    CHECK(t.node_of_llc(0) == 0);
    CHECK(t.node_of_llc(1) == 1);
    CHECK(t.node_of_llc(2) == 1);
    CHECK(t.cpus_of_node(1) == std::vector<uint32_t>{2, 3, 4, 5});
    CHECK(t.distance(0, 1) == 31);
    CHECK(t.node_memory_mb(512) == std::vector<uint64_t>{128, 384});
    auto round = topology_from_json(json::parse(t.to_json().dump()), "round");
    CHECK(round.to_json() == t.to_json());

    CHECK_THROWS_WITH_AS(topology_from_json(json::parse(R"({"schema":"ktstr.topology/1","numa_nodes":2,"llcs":3,
        "cores_per_llc":2,"threads_per_core":1,"nodes":[{"llcs":1},{"llcs":1}]})"), "t.json"),
        doctest::Contains("add up to 2 but llcs is 3"), Error);
    CHECK_THROWS_WITH_AS(topology_from_json(json::parse(R"({"schema":"ktstr.topology/1","numa_nodes":2,"llcs":2,
        "cores_per_llc":1,"threads_per_core":1,"distances":[[10,20],[21,10]]})"), "t.json"),
        doctest::Contains("symmetric"), Error);
    CHECK_THROWS_WITH_AS(topology_from_json(json::parse(R"({"schema":"ktstr.topology/1","numa_nodes":1,"llcs":1,
        "cores_per_llc":"2","threads_per_core":1})"), "t.json"),
        "t.json: field 'cores_per_llc': expected number, got string", Error);
}
