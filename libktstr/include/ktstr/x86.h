// libktstr/vmm: the pure x86_64 pieces of booting a guest, independent of KVM.
//
// Guest physical layout (vmm.md section 4), e820, the Linux zero page
// (boot_params), the boot GDT and identity page tables, kernel image parsing
// (bzImage 64-bit boot protocol and ELF vmlinux entry), the firmware tables
// (ACPI RSDP/XSDT/RSDT/MADT/SRAT/SLIT/FADT/DSDT and the MP table) and per-vCPU
// CPUID patching.  Everything returns bytes or plain structs so unit tests can
// compare them byte for byte with values computed from the specifications;
// the KVM backend (kvm_machine.cpp) only copies them into guest RAM.
// Files: vmm/boot.cpp (layout, e820, zero page, GDT, page tables, images),
// vmm/acpi.cpp, vmm/mptable.cpp, vmm/cpuid.cpp.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <linux/kvm.h>

#include "ktstr/topology.h"

namespace ktstr::vmm {

// ---- guest physical layout (vmm.md section 4) ------------------------------
inline constexpr uint64_t GDT_GPA = 0x500;
inline constexpr uint64_t IDT_GPA = 0x520;
inline constexpr uint64_t ZERO_PAGE_GPA = 0x7000;
inline constexpr uint64_t BOOT_STACK_GPA = 0x8FF0;
inline constexpr uint64_t PML4_GPA = 0x9000;
inline constexpr uint64_t PDPT_GPA = 0xA000;
inline constexpr uint64_t PD_GPA = 0xB000;
inline constexpr uint64_t CMDLINE_GPA = 0x20000;
inline constexpr uint64_t EBDA_GPA = 0x9FC00;        // end of conventional RAM; MP table lives here
inline constexpr uint64_t MPTABLE_GPA = 0x9FC00;
inline constexpr uint64_t ACPI_GPA = 0xE0000;        // RSDP, then the tables
inline constexpr uint64_t HIGH_MEMORY_GPA = 0x100000;  // 1 MiB: bzImage payload
inline constexpr uint64_t BZIMAGE_ENTRY_GPA = 0x100200;   // 64-bit entry of the payload
inline constexpr uint64_t KERNEL_LOAD_GPA = 0x1000000;    // 16 MiB: where the kernel runs (nokaslr)
inline constexpr uint64_t INITRD_GPA = 0x8000000;
inline constexpr uint64_t LOW_RAM_LIMIT = 0xC0000000;    // RAM stops at 3 GiB ...
inline constexpr uint64_t HIGH_RAM_GPA = 0x100000000;    // ... and resumes at 4 GiB
inline constexpr uint64_t IOAPIC_GPA = 0xFEC00000;
inline constexpr uint64_t LAPIC_GPA = 0xFEE00000;
inline constexpr uint64_t KVM_TSS_GPA = 0xFFFBD000;
inline constexpr uint64_t KVM_IDENTITY_MAP_GPA = 0xFFFC0000;
// Largest APIC id the full in-kernel irqchip (xAPIC, 8-bit ids, 0xFF broadcast) can address.
inline constexpr uint32_t MAX_XAPIC_ID = 254;

// One guest RAM region, one KVM memory slot: a NUMA node's share of one RAM
// range.  ram_offset is its offset in the guest-RAM memfd.
struct MemRegion {
    uint64_t gpa = 0;
    uint64_t size = 0;
    uint64_t ram_offset = 0;
    uint32_t node = 0;
};

struct MemoryLayout {
    uint64_t mem_size = 0;                 // bytes of RAM (memfd size)
    std::vector<MemRegion> regions;        // in GPA order
    uint64_t shm_base = 0, shm_size = 0;   // top of the highest range; 0 size = none
    uint64_t low_end = 0;                  // end of RAM below 4 GiB
    uint64_t high_end = 0;                 // end of RAM above 4 GiB (0: none)
};

// RAM [0, min(mem,3G)) and, above 3 GiB, [4G, 4G + mem - 3G); each range cut
// into per-node regions in node order (node_memory_mb).  The SHM region is the
// last shm_size bytes of the highest range.  Throws Error(usage) for memory 0,
// memory below what the nodes need, or a SHM region that is unaligned (4 KiB),
// under 40 bytes or not smaller than the top region.
MemoryLayout plan_memory(const Topology &topo, uint64_t mem_mb, uint64_t shm_size);

// ---- e820 ------------------------------------------------------------------
enum E820Type : uint32_t { E820_RAM = 1, E820_RESERVED = 2 };
struct E820Entry {
    uint64_t addr, size;
    uint32_t type;
    bool operator==(const E820Entry &) const = default;
};
// [0, 0x9FC00) RAM; [1M, low_end) RAM; [4G, high_end) RAM; the SHM cut from
// the top and listed as reserved (the guest maps it through /dev/mem with
// iomem=relaxed; the kernel never allocates from it).
std::vector<E820Entry> e820_table(const MemoryLayout &m);

// ---- kernel images ---------------------------------------------------------
struct ImageSegment {
    uint64_t gpa = 0;
    uint64_t file_offset = 0, file_size = 0;
    uint64_t mem_size = 0;        // >= file_size; the rest is zeroed
};
struct BootImage {
    enum class Kind { bzimage, elf } kind = Kind::elf;
    std::string path;
    std::string data;             // the file, or its first bytes (headers) when loaded from disk
    uint64_t file_size = 0;
    std::vector<ImageSegment> segments;
    uint64_t entry = 0;           // 64-bit entry point (GPA)
    uint64_t end = 0;             // first byte above the kernel while it runs
    std::string setup_header;     // bzImage bytes [0x1F1, 0x26C); empty for ELF
    uint16_t protocol = 0;        // bzImage boot protocol version
    uint32_t cmdline_max = 2047;  // longest command line the image accepts (bytes, no NUL)
    uint64_t initrd_addr_max = 0x7FFFFFFF;
};
// Detects ELF (\x7fELF) or bzImage ("HdrS"); throws Error(input) naming the
// path and the check that failed (not a kernel, protocol < 2.12, no 64-bit
// entry, ELF not x86_64 / not ELF64, no PT_LOAD).
// file_size 0: data is the whole file.
BootImage parse_boot_image(std::string data, const std::string &path, uint64_t file_size = 0);
// Reads only the headers; the segments' bytes stay in the file (file_offset,
// file_size) for the loader to copy into guest RAM.
BootImage load_boot_image(const std::string &path);

// Where the initrd goes: INITRD_GPA if it fits above the kernel in low RAM,
// else page-aligned at the top of low usable RAM.  Throws Error(usage).
uint64_t place_initrd(const BootImage &k, const MemoryLayout &m, uint64_t initrd_size);

// ---- zero page ---------------------------------------------------------------
struct BootParamsInput {
    const BootImage *kernel = nullptr;
    uint32_t cmdline_len = 0;           // without the NUL
    uint64_t initrd_gpa = 0, initrd_size = 0;
    std::vector<E820Entry> e820;
};
// The 4 KiB boot_params at ZERO_PAGE_GPA (Documentation/arch/x86/boot.rst,
// zero-page.rst).
std::vector<uint8_t> build_boot_params(const BootParamsInput &in);

// ---- CPU state -------------------------------------------------------------
// Descriptor from (flags, base, limit), flags as 0xA09B style (G/DB/L/AVL + access).
uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit);
// {null, code64, data, tss}
std::array<uint64_t, 4> boot_gdt();
// The KVM segment register a descriptor loads as.
kvm_segment segment_from_descriptor(uint64_t desc, uint16_t selector);
// PML4, PDPT and PD (3 pages from PML4_GPA) identity-mapping the first GiB with 2 MiB pages.
std::vector<uint8_t> identity_page_tables();

// ---- firmware tables ---------------------------------------------------------
struct FirmwareTable {
    std::string signature;   // "RSDP", "DSDT", "APIC", "FACP", "SRAT", "SLIT", "RSDT", "XSDT"
    uint64_t gpa = 0;
    uint32_t length = 0;
};
struct AcpiTables {
    std::vector<uint8_t> bytes;            // to copy at ACPI_GPA
    std::vector<FirmwareTable> tables;     // in placement order
    uint64_t rsdp_gpa = ACPI_GPA;
    uint64_t address_of(const std::string &sig) const;
};
AcpiTables build_acpi_tables(const Topology &topo, const MemoryLayout &m);
// 8-bit checksum byte making the sum of `len` bytes zero.
uint8_t acpi_checksum(const uint8_t *p, size_t len);
// The Intel MultiProcessor table at MPTABLE_GPA; empty when an APIC id does
// not fit its 8-bit field (the MADT alone describes such machines).
std::vector<uint8_t> build_mptable(const Topology &topo);

// ---- CPUID -----------------------------------------------------------------
enum class CpuVendor { intel, amd, other };
CpuVendor cpuid_vendor(const std::vector<kvm_cpuid_entry2> &entries);
// The host-supported CPUID patched for vCPU `cpu` (vmm.md section 3.3): APIC
// ids, SMT/core/LLC shifts in 0x1/0x4/0xB/0x1F and the AMD leaves, no PMU, the
// KVM signature leaves.
std::vector<kvm_cpuid_entry2> cpuid_for_vcpu(const std::vector<kvm_cpuid_entry2> &supported, const Topology &topo,
                                             uint32_t cpu);
// The CPUID the host CPU itself reports (cpuid instruction), shaped like
// KVM_GET_SUPPORTED_CPUID's answer: for a KVM that cannot tell us (emulated
// KVM here fails that ioctl with EINVAL).  Sets the hypervisor bit, clears
// VMX/SVM/MONITOR/OSXSAVE/power management, adds the KVM signature leaves.
std::vector<kvm_cpuid_entry2> host_cpuid_entries();
// Clear one feature bit in the entries of `function` (subleaf `index`, or
// every subleaf with -1): a host-quirk mask. Returns true if one had it set.
enum class CpuidReg { eax, ebx, ecx, edx };
bool cpuid_clear_bit(std::vector<kvm_cpuid_entry2> &entries, uint32_t function, CpuidReg reg, unsigned bit,
                     int64_t index = -1);
const kvm_cpuid_entry2 *cpuid_find(const std::vector<kvm_cpuid_entry2> &entries, uint32_t function,
                                   uint32_t index = 0);

// ---- userspace emulation of instructions a host's KVM refuses ----------------
//
// Emulated (software) KVM stops with KVM_EXIT_INTERNAL_ERROR on instructions
// its in-kernel emulator does not know.  These functions decode the bytes at
// RIP and apply the instruction to the registers (vmm/emulate.cpp).
struct GuestMemoryAccess {
    // Read/write guest *physical* memory; false when outside RAM.
    std::function<bool(uint64_t gpa, void *buf, size_t len)> read;
    std::function<bool(uint64_t gpa, const void *buf, size_t len)> write;
};
// Guest virtual -> physical through the page tables at CR3 (4- or 5-level,
// 1 GiB/2 MiB/4 KiB pages); identity when paging is off.  nullopt if unmapped.
std::optional<uint64_t> guest_virt_to_phys(const GuestMemoryAccess &mem, const kvm_sregs &s, uint64_t gva);

struct EmulationOutcome {
    enum class Kind { handled, inject_breakpoint, unknown } kind = Kind::unknown;
    std::string name;        // "clac", "popcnt", "int3", ...
    unsigned length = 0;     // bytes consumed (RIP already advanced when handled)
};
// `code` holds the bytes at RIP (up to 15).  On handled/inject_breakpoint the
// registers are updated (RIP advanced, flags, destination register); the
// caller injects #BP for inject_breakpoint.
EmulationOutcome emulate_refused_instruction(const uint8_t *code, size_t n, kvm_regs &regs, const kvm_sregs &sregs,
                                             const GuestMemoryAccess &mem);

} // namespace ktstr::vmm
