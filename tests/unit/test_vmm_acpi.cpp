// Unit tests for libktstr/vmm firmware tables: RSDP/XSDT/RSDT/MADT/SRAT/SLIT/
// FADT/DSDT and the MP table, byte for byte, for 1n1l1c1t, 1l2c1t (the spec's
// offsets), 1n2l4c2t, 2n3l3c2t (explicit nodes, not powers of two) and
// 1n14l9c2t (APIC ids up to 433: x2APIC entries).
#include <doctest/doctest.h>

#include "ktstr/x86.h"
#include "vmm_test_util.h"

using namespace ktstr;
using namespace ktstr::vmm;
using namespace vmm_test;

namespace {

constexpr uint64_t MB = 1 << 20;

// 3 LLCs cannot be spread evenly over 2 nodes; the JSON form says how.
Topology topo_2n3l3c2t() {
    return load_topology(R"({"schema":"ktstr.topology/1","numa_nodes":2,"llcs":3,"cores_per_llc":3,
        "threads_per_core":2,"nodes":[{"llcs":2,"memory_mb":384},{"llcs":1,"memory_mb":128}],
        "distances":[[10,21],[21,10]]})");
}

// The bytes of table `sig` (header included) inside the blob.
std::vector<uint8_t> table_bytes(const AcpiTables &a, const std::string &sig) {
    for (auto &t : a.tables)
        if (t.signature == sig) return slice(a.bytes, t.gpa - ACPI_GPA, t.length);
    FAIL("no table ", sig);
    return {};
}

// Every SDT: signature, length field, revision, checksum, OEM fields.
void check_sdt_header(const std::vector<uint8_t> &t, const std::string &sig, uint8_t rev) {
    CHECK(str(t, 0, 4) == sig);
    CHECK(u32(t, 4) == t.size());
    CHECK(t[8] == rev);
    CHECK(byte_sum(t, 0, t.size()) == 0);
    CHECK(str(t, 10, 6) == std::string("KTSTR\0", 6));
    CHECK(str(t, 16, 8) == "KTSR" + sig);
    CHECK(u32(t, 24) == 1);
    CHECK(str(t, 28, 4) == "KTSR");
    CHECK(u32(t, 32) == 1);
}

void check_common(const Topology &t, const MemoryLayout &m) {
    AcpiTables a = build_acpi_tables(t, m);
    const uint32_t n = t.total_cpus();
    // RSDP
    const auto &b = a.bytes;
    CHECK(str(b, 0, 8) == "RSD PTR ");
    CHECK(byte_sum(b, 0, 20) == 0);
    CHECK(byte_sum(b, 0, 36) == 0);
    CHECK(b[15] == 2);
    CHECK(u32(b, 16) == a.address_of("RSDT"));
    CHECK(u32(b, 20) == 36);
    CHECK(u64(b, 24) == a.address_of("XSDT"));
    // Tables packed back to back, in order.
    const char *order[] = {"RSDP", "DSDT", "APIC", "FACP", "SRAT", "SLIT", "RSDT", "XSDT"};
    REQUIRE(a.tables.size() == 8);
    uint64_t at = ACPI_GPA;
    for (size_t i = 0; i < 8; ++i) {
        CHECK(a.tables[i].signature == order[i]);
        CHECK(a.tables[i].gpa == at);
        at += a.tables[i].length;
    }
    CHECK(at == ACPI_GPA + b.size());

    auto dsdt = table_bytes(a, "DSDT");
    check_sdt_header(dsdt, "DSDT", 2);
    CHECK(dsdt.size() == 36);

    auto fadt = table_bytes(a, "FACP");
    check_sdt_header(fadt, "FACP", 6);
    CHECK(fadt.size() == 276);
    CHECK(u32(fadt, 40) == a.address_of("DSDT"));
    CHECK(u64(fadt, 140) == a.address_of("DSDT"));
    CHECK(u32(fadt, 112) == 0x30);
    CHECK(fadt[131] == 5);

    // MADT: one entry per CPU with the topology's APIC id, then IOAPIC, ISO, NMI.
    auto madt = table_bytes(a, "APIC");
    check_sdt_header(madt, "APIC", 3);
    CHECK(u32(madt, 36) == 0xFEE00000);
    CHECK(u32(madt, 40) == 1);
    size_t off = 44;
    bool any8 = false, any32 = false;
    for (uint32_t cpu = 0; cpu < n; ++cpu) {
        uint32_t apic = t.apic_id(cpu);
        if (apic < 255) {
            CHECK(madt[off] == 0);
            CHECK(madt[off + 1] == 8);
            CHECK(madt[off + 2] == uint8_t(cpu));
            CHECK(madt[off + 3] == apic);
            CHECK(u32(madt, off + 4) == 1);
            off += 8;
            any8 = true;
        } else {
            CHECK(madt[off] == 9);
            CHECK(madt[off + 1] == 16);
            CHECK(u16(madt, off + 2) == 0);
            CHECK(u32(madt, off + 4) == apic);
            CHECK(u32(madt, off + 8) == 1);
            CHECK(u32(madt, off + 12) == cpu);
            off += 16;
            any32 = true;
        }
    }
    const std::vector<uint8_t> ioapic = {1, 12, 0, 0, 0x00, 0x00, 0xC0, 0xFE, 0, 0, 0, 0};
    const std::vector<uint8_t> iso = {2, 10, 0, 0, 2, 0, 0, 0, 0, 0};
    CHECK(slice(madt, off, 12) == ioapic);
    CHECK(slice(madt, off + 12, 10) == iso);
    off += 22;
    if (any8) {
        CHECK(slice(madt, off, 6) == std::vector<uint8_t>{4, 6, 0xFF, 0, 0, 1});
        off += 6;
    }
    if (any32) {
        CHECK(slice(madt, off, 12) == std::vector<uint8_t>{0xA, 12, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 1, 0, 0, 0});
        off += 12;
    }
    CHECK(off == madt.size());

    // SRAT: x2APIC affinity per CPU with its node, memory affinity per region.
    auto srat = table_bytes(a, "SRAT");
    check_sdt_header(srat, "SRAT", 3);
    CHECK(u32(srat, 36) == 1);
    CHECK(u64(srat, 40) == 0);
    off = 48;
    for (uint32_t cpu = 0; cpu < n; ++cpu, off += 24) {
        CHECK(srat[off] == 2);
        CHECK(srat[off + 1] == 24);
        CHECK(u16(srat, off + 2) == 0);
        CHECK(u32(srat, off + 4) == t.node_of_cpu(cpu));
        CHECK(u32(srat, off + 8) == t.apic_id(cpu));
        CHECK(u32(srat, off + 12) == 1);
        CHECK(u64(srat, off + 16) == 0);
    }
    for (auto &r : m.regions) {
        CHECK(srat[off] == 1);
        CHECK(srat[off + 1] == 40);
        CHECK(u32(srat, off + 2) == r.node);
        CHECK(u16(srat, off + 6) == 0);
        CHECK(u64(srat, off + 8) == r.gpa);
        CHECK(u64(srat, off + 16) == r.size);
        CHECK(u32(srat, off + 24) == 0);
        CHECK(u32(srat, off + 28) == 1);
        CHECK(u64(srat, off + 32) == 0);
        off += 40;
    }
    CHECK(off == srat.size());

    // SLIT
    auto slit = table_bytes(a, "SLIT");
    check_sdt_header(slit, "SLIT", 1);
    CHECK(u64(slit, 36) == t.numa_nodes);
    CHECK(slit.size() == 44 + t.numa_nodes * t.numa_nodes);
    for (uint32_t i = 0; i < t.numa_nodes; ++i)
        for (uint32_t j = 0; j < t.numa_nodes; ++j) CHECK(slit[44 + i * t.numa_nodes + j] == t.distance(i, j));

    // RSDT/XSDT list FADT, MADT, SRAT, SLIT.
    auto rsdt = table_bytes(a, "RSDT"), xsdt = table_bytes(a, "XSDT");
    check_sdt_header(rsdt, "RSDT", 1);
    check_sdt_header(xsdt, "XSDT", 1);
    const char *listed[] = {"FACP", "APIC", "SRAT", "SLIT"};
    REQUIRE(rsdt.size() == 36 + 16);
    REQUIRE(xsdt.size() == 36 + 32);
    for (int i = 0; i < 4; ++i) {
        CHECK(u32(rsdt, 36 + 4 * i) == a.address_of(listed[i]));
        CHECK(u64(xsdt, 36 + 8 * i) == a.address_of(listed[i]));
    }
}

} // namespace

TEST_CASE("ACPI 1l2c1t offsets (vmm.md section 16)") {
    Topology t = parse_topology("1n1l2c1t");
    AcpiTables a = build_acpi_tables(t, plan_memory(t, 256, 0));
    CHECK(a.address_of("RSDP") == 0xE0000);
    CHECK(a.address_of("DSDT") == 0xE0024);
    CHECK(a.address_of("APIC") == 0xE0048);
    CHECK(a.address_of("FACP") == 0xE00A0);
    CHECK(a.address_of("SRAT") == 0xE01B4);
    CHECK(a.address_of("SLIT") == 0xE023C);
    CHECK(a.address_of("RSDT") == 0xE0269);
    CHECK(a.address_of("XSDT") == 0xE029D);
    CHECK(a.tables[2].length == 88);
    CHECK(a.tables[4].length == 136);
    CHECK(a.tables[5].length == 45);
    CHECK(a.tables[6].length == 52);
    CHECK(a.tables[7].length == 68);
    check_common(t, plan_memory(t, 256, 0));
}

TEST_CASE("ACPI 1n1l1c1t, full bytes") {
    Topology t = parse_topology("1n1l1c1t");
    MemoryLayout m = plan_memory(t, 256, 16 * MB);
    check_common(t, m);
    AcpiTables a = build_acpi_tables(t, m);
    // MADT body after the 36-byte header, computed by hand.
    const std::vector<uint8_t> madt_body = {
        0x00, 0x00, 0xE0, 0xFE, 0x01, 0x00, 0x00, 0x00,               // LAPIC address, PCAT_COMPAT
        0x00, 0x08, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,               // CPU 0, APIC 0, enabled
        0x01, 0x0C, 0x00, 0x00, 0x00, 0x00, 0xC0, 0xFE, 0, 0, 0, 0,   // IOAPIC
        0x02, 0x0A, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,   // ISO IRQ0 -> GSI2
        0x04, 0x06, 0xFF, 0x00, 0x00, 0x01};                          // NMI LINT1
    auto madt = table_bytes(a, "APIC");
    CHECK(madt.size() == 80);
    CHECK(slice(madt, 36, madt.size() - 36) == madt_body);
    const std::vector<uint8_t> srat_body = {
        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,                           // reserved
        2, 24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        1, 40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0,
        0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    auto srat = table_bytes(a, "SRAT");
    CHECK(slice(srat, 36, srat.size() - 36) == srat_body);
    auto slit = table_bytes(a, "SLIT");
    CHECK(slice(slit, 36, 9) == std::vector<uint8_t>{1, 0, 0, 0, 0, 0, 0, 0, 10});
    // RSDP bytes 0..35 except the checksums.
    const auto &b = a.bytes;
    CHECK(str(b, 9, 6) == std::string("KTSTR\0", 6));
    CHECK(u32(b, 16) == 0xE0000 + 36 + 36 + 80 + 276 + 112 + 45);   // RSDT after SLIT
}

TEST_CASE("ACPI 1n2l4c2t") {
    Topology t = parse_topology("1n2l4c2t");
    CHECK(t.apic_id(15) == 15);
    CHECK(t.apic_id(8) == 8);
    check_common(t, plan_memory(t, 1024, 16 * MB));
}

TEST_CASE("ACPI 2n3l3c2t (explicit nodes, non-power-of-two cores)") {
    CHECK_THROWS_WITH_AS(parse_topology("2n3l3c2t"), doctest::Contains("multiple of nodes"), Error);
    Topology t = topo_2n3l3c2t();
    // 3 cores -> 2 bits, 2 threads -> 1 bit: LLC l starts at l << 3.
    CHECK(t.apic_id(6) == 8);
    CHECK(t.apic_id(12) == 16);
    CHECK(t.node_of_cpu(11) == 0);
    CHECK(t.node_of_cpu(12) == 1);
    MemoryLayout m = plan_memory(t, 512, 16 * MB);
    REQUIRE(m.regions.size() == 2);
    CHECK(m.regions[1].gpa == 384 * MB);
    check_common(t, m);
    auto slit = table_bytes(build_acpi_tables(t, m), "SLIT");
    CHECK(slice(slit, 44, 4) == std::vector<uint8_t>{10, 21, 21, 10});
}

TEST_CASE("ACPI 1n14l9c2t (APIC ids above 254: x2APIC entries)") {
    Topology t = parse_topology("1n14l9c2t");
    CHECK(t.max_apic_id() == 433);
    CHECK(t.apic_id(127) == 225);       // llc 7, core 0, thread 1: 7<<5 | 0<<1 | 1
    CHECK(t.apic_id(251) == 433);       // llc 13, core 8, thread 1
    check_common(t, plan_memory(t, 2048, 16 * MB));
    AcpiTables a = build_acpi_tables(t, plan_memory(t, 2048, 16 * MB));
    auto madt = table_bytes(a, "APIC");
    // Count entries by type.
    size_t xapic = 0, x2apic = 0;
    for (uint32_t cpu = 0; cpu < t.total_cpus(); ++cpu) (t.apic_id(cpu) < 255 ? xapic : x2apic)++;
    CHECK(madt.size() == 44 + 8 * xapic + 16 * x2apic + 12 + 10 + 6 + 12);
    CHECK(x2apic > 0);
    CHECK(build_mptable(t).empty());   // 8-bit APIC ids cannot describe it
}

TEST_CASE("MP table N=2 (vmm.md section 16) and 1n2l4c2t") {
    Topology t = parse_topology("1n1l2c1t");
    auto mp = build_mptable(t);
    REQUIRE(mp.size() == 16 + 308);
    // Floating pointer
    CHECK(str(mp, 0, 4) == "_MP_");
    CHECK(u32(mp, 4) == 0x9FC10);
    CHECK(mp[8] == 1);
    CHECK(mp[9] == 4);
    CHECK(mp[11] == 0);
    CHECK(mp[12] == 0x80);
    CHECK(byte_sum(mp, 0, 16) == 0);
    // Configuration table header
    CHECK(str(mp, 16, 4) == "PCMP");
    CHECK(u16(mp, 20) == 308);
    CHECK(mp[22] == 4);
    CHECK(byte_sum(mp, 16, 308) == 0);
    CHECK(str(mp, 24, 8) == "KTSTR   ");
    CHECK(str(mp, 32, 12) == "000000000000");
    CHECK(u16(mp, 16 + 34) == 30);
    CHECK(u32(mp, 16 + 36) == 0xFEE00000);
    // CPU entries
    const std::vector<uint8_t> cpu0 = {0, 0, 0x14, 3, 0x00, 0x06, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    const std::vector<uint8_t> cpu1 = {0, 1, 0x14, 1, 0x00, 0x06, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    CHECK(slice(mp, 60, 20) == cpu0);
    CHECK(slice(mp, 80, 20) == cpu1);
    CHECK(slice(mp, 100, 8) == std::vector<uint8_t>{1, 0, 'I', 'S', 'A', ' ', ' ', ' '});
    CHECK(slice(mp, 108, 8) == std::vector<uint8_t>{2, 0xFE, 0x14, 1, 0x00, 0x00, 0xC0, 0xFE});
    for (uint8_t irq = 0; irq < 24; ++irq)
        CHECK(slice(mp, 116 + 8 * irq, 8) == std::vector<uint8_t>{3, 0, 0, 0, 0, irq, 0xFE, irq});
    CHECK(slice(mp, 308, 8) == std::vector<uint8_t>{4, 3, 0, 0, 0, 0, 0xFF, 0});
    CHECK(slice(mp, 316, 8) == std::vector<uint8_t>{4, 1, 0, 0, 0, 0, 0xFF, 1});

    for (const char *s : {"1n1l1c1t", "1n2l4c2t"}) {
        Topology tt = parse_topology(s);
        auto m = build_mptable(tt);
        uint32_t n = tt.total_cpus();
        REQUIRE(m.size() == 16 + 268 + 20 * n);
        CHECK(byte_sum(m, 16, 268 + 20 * n) == 0);
        CHECK(u16(m, 16 + 34) == n + 28);
        for (uint32_t cpu = 0; cpu < n; ++cpu) CHECK(m[60 + 20 * cpu + 1] == tt.apic_id(cpu));
    }
    Topology t3 = topo_2n3l3c2t();
    auto m3 = build_mptable(t3);
    CHECK(m3[60 + 20 * 17 + 1] == t3.apic_id(17));
    CHECK(t3.apic_id(17) == 21);
}
