// libktstr/vmm: the Intel MultiProcessor Specification 1.4 table (floating
// pointer + configuration table) at MPTABLE_GPA.  Linux ignores it when the
// MADT is valid; it is there for kernels booted with acpi=off.
#include "bytes.h"
#include "ktstr/x86.h"

namespace ktstr::vmm {

using le::Writer;

std::vector<uint8_t> build_mptable(const Topology &t) {
    if (t.max_apic_id() > MAX_XAPIC_ID) return {};
    constexpr uint8_t IOAPIC_ID = 0xFE, APIC_VERSION = 0x14;
    constexpr uint32_t HEADER_GPA = uint32_t(MPTABLE_GPA) + 16;

    Writer entries;
    for (uint32_t cpu = 0; cpu < t.total_cpus(); ++cpu)
        // Processor: apic id, version, flags (enabled | BSP), signature (family 6), features (FPU, APIC).
        entries.u8(0).u8(uint8_t(t.apic_id(cpu))).u8(APIC_VERSION).u8(1 | (cpu == 0 ? 2 : 0))
            .u32(0x600).u32(0x201).zeros(8);
    entries.u8(1).u8(0).str("ISA   ");                                          // bus 0: ISA
    entries.u8(2).u8(IOAPIC_ID).u8(APIC_VERSION).u8(1).u32(uint32_t(IOAPIC_GPA));  // I/O APIC, enabled
    for (uint8_t irq = 0; irq < 24; ++irq)                                       // ISA IRQ n -> INTIN n
        entries.u8(3).u8(0).u16(0).u8(0).u8(irq).u8(IOAPIC_ID).u8(irq);
    entries.u8(4).u8(3).u16(0).u8(0).u8(0).u8(0xFF).u8(0);   // ExtINT -> LINT0 of every CPU
    entries.u8(4).u8(1).u16(0).u8(0).u8(0).u8(0xFF).u8(1);   // NMI -> LINT1 of every CPU
    const uint16_t count = uint16_t(t.total_cpus() + 28);

    Writer header;
    header.str("PCMP").u16(0).u8(4).u8(0).str("KTSTR   ").str("000000000000");
    header.u32(0).u16(0).u16(count).u32(uint32_t(LAPIC_GPA)).u16(0).u8(0).u8(0);
    std::vector<uint8_t> table = header.bytes;
    table.insert(table.end(), entries.bytes.begin(), entries.bytes.end());
    le::put16(table, 4, uint16_t(table.size()));
    table[7] = acpi_checksum(table.data(), table.size());

    Writer mpf;
    mpf.str("_MP_").u32(HEADER_GPA).u8(1).u8(4).u8(0).u8(0).u8(0x80).zeros(3);
    mpf.bytes[10] = acpi_checksum(mpf.bytes.data(), 16);

    std::vector<uint8_t> out = mpf.bytes;
    out.insert(out.end(), table.begin(), table.end());
    return out;
}

} // namespace ktstr::vmm
