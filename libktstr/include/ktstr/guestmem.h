// libktstr/guestmem: guest physical memory as the host sees it, and the x86-64
// kernel's address translations on top of it (text mapping, direct map,
// page-table walks with 4/5 levels and large pages, per-CPU arithmetic).
//
// Guest memory is untrusted and changes under our feet: every access is
// bounds-checked; an address outside memory reads as 0 and ignores writes;
// an unmapped virtual address is an answer (nullopt), never a crash.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ktstr/util.h"

namespace ktstr::guestmem {

// One contiguous piece of guest physical memory mapped into this process.
struct Region {
    uint8_t *host = nullptr;
    uint64_t gpa = 0;
    uint64_t size = 0;
};

class GuestMem {
public:
    GuestMem() = default;
    // Regions are sorted by gpa; overlapping or empty regions are an
    // Error(input) naming the pair.
    explicit GuestMem(std::vector<Region> regions);

    // One past the highest guest physical address backed by a region.
    uint64_t end() const { return end_; }
    const std::vector<Region> &regions() const { return regions_; }

    // Host pointer to [pa, pa+len) if it lies inside one region, else null.
    uint8_t *span(uint64_t pa, uint64_t len) const;

    // Scalars at pa + field_offset (both untrusted; overflow-checked).
    // Reads are relaxed loads from shared memory (never cached by the compiler).
    uint8_t read_u8(uint64_t pa, uint64_t off = 0) const;
    uint32_t read_u32(uint64_t pa, uint64_t off = 0) const;
    uint64_t read_u64(uint64_t pa, uint64_t off = 0) const;
    int64_t read_i64(uint64_t pa, uint64_t off = 0) const { return int64_t(read_u64(pa, off)); }
    // Writes that fall outside memory are silently dropped; returns whether written.
    bool write_u8(uint64_t pa, uint64_t off, uint8_t v) const;
    bool write_u32(uint64_t pa, uint64_t off, uint32_t v) const;
    bool write_u64(uint64_t pa, uint64_t off, uint64_t v) const;

    // Copies up to len bytes (stopping at the end of the region or memory);
    // returns the number copied.
    size_t read_bytes(uint64_t pa, void *buf, size_t len) const;
    size_t write_bytes(uint64_t pa, const void *buf, size_t len) const;

private:
    template <typename T> T load(uint64_t pa, uint64_t off) const;
    template <typename T> bool store(uint64_t pa, uint64_t off, T v) const;
    const Region *region_for(uint64_t pa) const;

    std::vector<Region> regions_;
    uint64_t end_ = 0;
};

// ---- x86-64 kernel address space ------------------------------------------------

inline constexpr uint64_t START_KERNEL_MAP = 0xffffffff80000000ull;
inline constexpr uint64_t KERNEL_IMAGE_SIZE = 1ull << 30;       // with KASLR
inline constexpr uint64_t PAGE_OFFSET_L4 = 0xffff888000000000ull;
inline constexpr uint64_t PAGE_OFFSET_L5 = 0xff11000000000000ull;
// End of the randomized region (KASAN shadow start) per paging mode.
inline constexpr uint64_t VADDR_END_L4 = 0xffffec0000000000ull;
inline constexpr uint64_t VADDR_END_L5 = 0xffdf000000000000ull;
inline constexpr uint64_t PHYSICAL_ALIGN_MIN = 2ull << 20;         // x86-64 kernels: >= 2 MiB

inline uint64_t default_page_offset(bool l5) { return l5 ? PAGE_OFFSET_L5 : PAGE_OFFSET_L4; }
// A runtime page_offset_base is plausible when it lies in [default, VADDR_END)
// for the paging mode and is 1 GiB aligned relative to the default.
bool plausible_page_offset(uint64_t v, bool l5);

// Walk the page tables rooted at root_pa (the PA of init_top_pgt) for kva.
// Bit 0 present, bit 7 large page at PUD (1 GiB) and PMD (2 MiB) only,
// next-table address bits 51:12.  nullopt when not mapped at any level.
std::optional<uint64_t> page_walk(const GuestMem &mem, uint64_t root_pa, uint64_t kva, bool l5);

// Where the running kernel put itself, recovered at run time (see
// monitor's locate_kernel).  With nokaslr every offset is zero and the
// page offset is the default.
struct KernelLayout {
    // Physical delta of the image: PA of a link-time image address is
    //   link_va - START_KERNEL_MAP + image_delta
    uint64_t image_delta = 0;
    // Virtual KASLR slide: runtime KVA of an image symbol = link_va + text_slide.
    uint64_t text_slide = 0;
    uint64_t page_offset = PAGE_OFFSET_L4;
    bool l5 = false;
    uint64_t pgt_root_pa = 0;     // PA of init_top_pgt; 0 = no page walks
    // The kernel's phys_base: PA of a *runtime* image KVA = kva - START_KERNEL_MAP + phys_base.
    uint64_t phys_base() const { return image_delta - text_slide; }
};

// The address arithmetic of one guest kernel over its memory.
class AddressSpace {
public:
    AddressSpace(const GuestMem &mem, KernelLayout layout) : mem_(&mem), k_(layout) {}
    const GuestMem &mem() const { return *mem_; }
    const KernelLayout &layout() const { return k_; }

    // PA of a link-time symbol address (st_value) in the kernel image.
    uint64_t symbol_pa(uint64_t link_va) const { return link_va - START_KERNEL_MAP + k_.image_delta; }
    // Runtime KVA of a link-time image address.
    uint64_t runtime_kva(uint64_t link_va) const { return link_va + k_.text_slide; }
    // Direct map: kva - page_offset when that lies inside guest memory.
    std::optional<uint64_t> direct_pa(uint64_t kva) const;
    // Runtime image KVA (kernel text/data/rodata/bss) -> PA.
    std::optional<uint64_t> image_pa(uint64_t kva) const;
    std::optional<uint64_t> walk(uint64_t kva) const;
    // For pointers read from guest memory: image window, then direct map,
    // then page walk (vmalloc, modules, dynamic per-CPU chunks).
    std::optional<uint64_t> any_pa(uint64_t kva) const;

    // Copy len bytes at a KVA translating every 4 KiB page separately;
    // false (and nothing useful in buf) if any page is unmapped.
    bool read_virt(uint64_t kva, void *buf, size_t len) const;
    bool write_virt(uint64_t kva, const void *buf, size_t len) const;

private:
    const GuestMem *mem_;
    KernelLayout k_;
};

// Per-CPU address: base (a per-CPU symbol's raw st_value, or a __percpu
// pointer read from the guest) plus __per_cpu_offset[cpu], wrapping.
inline uint64_t percpu_kva(uint64_t base, uint64_t cpu_offset) { return base + cpu_offset; }

} // namespace ktstr::guestmem
