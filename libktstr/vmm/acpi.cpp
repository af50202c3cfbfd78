// libktstr/vmm: ACPI tables (RSDP, DSDT, MADT, FADT, SRAT, SLIT, RSDT, XSDT)
// describing the topology to the guest (vmm.md section 7; ACPI 6.x).
#include <algorithm>

#include "bytes.h"
#include "ktstr/util.h"
#include "ktstr/x86.h"

namespace ktstr::vmm {

using le::Writer;

uint8_t acpi_checksum(const uint8_t *p, size_t len) {
    uint8_t sum = 0;
    for (size_t i = 0; i < len; ++i) sum = uint8_t(sum + p[i]);
    return uint8_t(-sum);
}

namespace {

constexpr size_t SDT_HEADER = 36;

// A System Description Table: 36-byte header, then `body`; length and checksum filled in.
std::vector<uint8_t> sdt(const char *sig, uint8_t revision, const std::vector<uint8_t> &body) {
    Writer w;
    w.str(std::string_view(sig, 4)).u32(0).u8(revision).u8(0);
    w.str(std::string_view("KTSTR\0", 6));
    w.str("KTSR").str(std::string_view(sig, 4));   // oem_table_id
    w.u32(1).str("KTSR").u32(1);                   // oem_revision, creator id, creator revision
    w.bytes.insert(w.bytes.end(), body.begin(), body.end());
    le::put32(w.bytes, 4, uint32_t(w.size()));
    w.bytes[9] = acpi_checksum(w.bytes.data(), w.size());
    return w.bytes;
}

std::vector<uint8_t> madt_body(const Topology &t) {
    Writer w;
    w.u32(uint32_t(LAPIC_GPA)).u32(1);   // local APIC address, flags PCAT_COMPAT
    bool any_xapic = false, any_x2apic = false;
    for (uint32_t cpu = 0; cpu < t.total_cpus(); ++cpu) {
        uint32_t apic = t.apic_id(cpu);
        if (apic < 255) {
            // Processor Local APIC: uid, apic id, flags enabled.
            w.u8(0).u8(8).u8(uint8_t(cpu)).u8(uint8_t(apic)).u32(1);
            any_xapic = true;
        } else {
            // Processor Local x2APIC.
            w.u8(9).u8(16).u16(0).u32(apic).u32(1).u32(cpu);
            any_x2apic = true;
        }
    }
    w.u8(1).u8(12).u8(0).u8(0).u32(uint32_t(IOAPIC_GPA)).u32(0);   // I/O APIC id 0, GSI base 0
    w.u8(2).u8(10).u8(0).u8(0).u32(2).u16(0);                       // ISA IRQ 0 -> GSI 2
    if (any_xapic) w.u8(4).u8(6).u8(0xFF).u16(0).u8(1);             // LAPIC NMI on LINT1, all CPUs
    if (any_x2apic) w.u8(0xA).u8(12).u16(0).u32(0xFFFFFFFF).u8(1).zeros(3);  // x2APIC NMI
    return w.bytes;
}

std::vector<uint8_t> fadt_body(uint64_t dsdt) {
    std::vector<uint8_t> b(276 - SDT_HEADER, 0);
    le::put32(b, 40 - SDT_HEADER, uint32_t(dsdt));     // DSDT
    le::put32(b, 112 - SDT_HEADER, 0x30);              // flags: PWR_BUTTON | SLP_BUTTON (no fixed buttons)
    le::put8(b, 131 - SDT_HEADER, 5);                  // FADT minor version
    le::put64(b, 140 - SDT_HEADER, dsdt);              // X_DSDT
    return b;
}

std::vector<uint8_t> srat_body(const Topology &t, const MemoryLayout &m) {
    Writer w;
    w.u32(1).zeros(8);   // reserved (1 for compatibility), reserved
    for (uint32_t cpu = 0; cpu < t.total_cpus(); ++cpu)
        // Processor Local x2APIC Affinity: node, apic id, enabled.
        w.u8(2).u8(24).u16(0).u32(t.node_of_cpu(cpu)).u32(t.apic_id(cpu)).u32(1).u32(0).u32(0);
    for (auto &r : m.regions)
        // Memory Affinity: node, base, length, enabled.
        w.u8(1).u8(40).u32(r.node).u16(0).u64(r.gpa).u64(r.size).u32(0).u32(1).u64(0);
    return w.bytes;
}

std::vector<uint8_t> slit_body(const Topology &t) {
    Writer w;
    w.u64(t.numa_nodes);
    for (uint32_t i = 0; i < t.numa_nodes; ++i)
        for (uint32_t j = 0; j < t.numa_nodes; ++j) w.u8(uint8_t(t.distance(i, j)));
    return w.bytes;
}

} // namespace

uint64_t AcpiTables::address_of(const std::string &sig) const {
    for (auto &t : tables)
        if (t.signature == sig) return t.gpa;
    return 0;
}

AcpiTables build_acpi_tables(const Topology &topo, const MemoryLayout &m) {
    AcpiTables out;
    out.rsdp_gpa = ACPI_GPA;
    std::vector<uint8_t> &bytes = out.bytes;
    bytes.assign(36, 0);   // RSDP, filled in last
    out.tables.push_back({"RSDP", ACPI_GPA, 36});
    auto place = [&](const char *sig, const std::vector<uint8_t> &table) {
        uint64_t gpa = ACPI_GPA + bytes.size();
        bytes.insert(bytes.end(), table.begin(), table.end());
        out.tables.push_back({sig, gpa, uint32_t(table.size())});
        return gpa;
    };
    uint64_t dsdt = place("DSDT", sdt("DSDT", 2, {}));
    uint64_t madt = place("APIC", sdt("APIC", 3, madt_body(topo)));
    uint64_t fadt = place("FACP", sdt("FACP", 6, fadt_body(dsdt)));
    uint64_t srat = place("SRAT", sdt("SRAT", 3, srat_body(topo, m)));
    uint64_t slit = place("SLIT", sdt("SLIT", 1, slit_body(topo)));
    const uint64_t listed[] = {fadt, madt, srat, slit};
    Writer rsdt_body, xsdt_body;
    for (uint64_t a : listed) {
        rsdt_body.u32(uint32_t(a));
        xsdt_body.u64(a);
    }
    uint64_t rsdt = place("RSDT", sdt("RSDT", 1, rsdt_body.bytes));
    uint64_t xsdt = place("XSDT", sdt("XSDT", 1, xsdt_body.bytes));
    if (ACPI_GPA + bytes.size() > HIGH_MEMORY_GPA)
        fail(ErrorKind::usage, "ACPI tables for ", topo.total_cpus(), " CPUs (", bytes.size(),
             " bytes) do not fit below 1 MiB");

    // RSDP (ACPI 2.0+): checksum over the first 20 bytes, extended over all 36.
    le::put_bytes(bytes, 0, "RSD PTR ");
    le::put_bytes(bytes, 9, std::string_view("KTSTR\0", 6));
    le::put8(bytes, 15, 2);
    le::put32(bytes, 16, uint32_t(rsdt));
    le::put32(bytes, 20, 36);
    le::put64(bytes, 24, xsdt);
    bytes[8] = acpi_checksum(bytes.data(), 20);
    bytes[32] = acpi_checksum(bytes.data(), 36);
    return out;
}

} // namespace ktstr::vmm
