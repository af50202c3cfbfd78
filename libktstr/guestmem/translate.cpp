// libktstr/guestmem: x86-64 kernel virtual -> guest physical translation.
#include "ktstr/guestmem.h"

#include <cstring>

namespace ktstr::guestmem {

namespace {
constexpr uint64_t PRESENT = 1ull << 0;
constexpr uint64_t LARGE = 1ull << 7;
constexpr uint64_t ADDR_MASK = 0x000ffffffffff000ull;   // bits 51:12, drops NX and flags

// Entry `index` of the table at table_pa; 0 (not present) when outside memory.
inline uint64_t entry(const GuestMem &mem, uint64_t table_pa, uint64_t index) {
    return mem.read_u64(table_pa, index * 8);
}
} // namespace

bool plausible_page_offset(uint64_t v, bool l5) {
    uint64_t dflt = default_page_offset(l5);
    if (!(v >> 63) || v < dflt || v >= (l5 ? VADDR_END_L5 : VADDR_END_L4)) return false;
    return ((v - dflt) & ((1ull << 30) - 1)) == 0;
}

std::optional<uint64_t> page_walk(const GuestMem &mem, uint64_t root_pa, uint64_t kva, bool l5) {
    uint64_t table = root_pa;
    if (l5) {
        uint64_t e = entry(mem, table, (kva >> 48) & 511);
        if (!(e & PRESENT)) return std::nullopt;
        table = e & ADDR_MASK;
    }
    uint64_t e = entry(mem, table, (kva >> 39) & 511);          // PGD (P4D under 5-level)
    if (!(e & PRESENT)) return std::nullopt;
    e = entry(mem, e & ADDR_MASK, (kva >> 30) & 511);             // PUD
    if (!(e & PRESENT)) return std::nullopt;
    if (e & LARGE) return (e & ADDR_MASK & ~((1ull << 30) - 1)) | (kva & ((1ull << 30) - 1));
    e = entry(mem, e & ADDR_MASK, (kva >> 21) & 511);             // PMD
    if (!(e & PRESENT)) return std::nullopt;
    if (e & LARGE) return (e & ADDR_MASK & ~((1ull << 21) - 1)) | (kva & ((1ull << 21) - 1));
    e = entry(mem, e & ADDR_MASK, (kva >> 12) & 511);             // PTE (bit 7 is PAT here)
    if (!(e & PRESENT)) return std::nullopt;
    return (e & ADDR_MASK) | (kva & 0xfff);
}

std::optional<uint64_t> AddressSpace::direct_pa(uint64_t kva) const {
    uint64_t pa = kva - k_.page_offset;
    if (pa >= mem_->end()) return std::nullopt;
    return pa;
}

std::optional<uint64_t> AddressSpace::image_pa(uint64_t kva) const {
    if (kva - START_KERNEL_MAP >= KERNEL_IMAGE_SIZE) return std::nullopt;
    uint64_t pa = kva - START_KERNEL_MAP + k_.phys_base();
    if (pa >= mem_->end()) return std::nullopt;
    return pa;
}

std::optional<uint64_t> AddressSpace::walk(uint64_t kva) const {
    if (!k_.pgt_root_pa) return std::nullopt;
    return page_walk(*mem_, k_.pgt_root_pa, kva, k_.l5);
}

std::optional<uint64_t> AddressSpace::any_pa(uint64_t kva) const {
    if (auto pa = image_pa(kva)) return pa;
    if (auto pa = direct_pa(kva)) return pa;
    return walk(kva);
}

namespace {
template <typename Fn>
bool per_page(const AddressSpace &as, uint64_t kva, size_t len, Fn &&fn) {
    size_t done = 0;
    while (done < len) {
        uint64_t va = kva + done;
        size_t chunk = std::min<size_t>(len - done, 4096 - (va & 0xfff));
        auto pa = as.any_pa(va);
        if (!pa || !as.mem().span(*pa, chunk)) return false;
        fn(*pa, done, chunk);
        done += chunk;
    }
    return true;
}
} // namespace

bool AddressSpace::read_virt(uint64_t kva, void *buf, size_t len) const {
    auto *out = static_cast<uint8_t *>(buf);
    return per_page(*this, kva, len,
                    [&](uint64_t pa, size_t at, size_t n) { mem_->read_bytes(pa, out + at, n); });
}

bool AddressSpace::write_virt(uint64_t kva, const void *buf, size_t len) const {
    // Translate everything first so an unmapped page leaves memory untouched.
    if (!per_page(*this, kva, len, [](uint64_t, size_t, size_t) {})) return false;
    const auto *in = static_cast<const uint8_t *>(buf);
    return per_page(*this, kva, len,
                    [&](uint64_t pa, size_t at, size_t n) { mem_->write_bytes(pa, in + at, n); });
}

} // namespace ktstr::guestmem
