// libktstr/guestmem: bounds-checked access to guest physical memory.
#include "ktstr/guestmem.h"

#include <algorithm>
#include <cstring>

namespace ktstr::guestmem {

GuestMem::GuestMem(std::vector<Region> regions) : regions_(std::move(regions)) {
    std::sort(regions_.begin(), regions_.end(), [](const Region &a, const Region &b) { return a.gpa < b.gpa; });
    for (size_t i = 0; i < regions_.size(); i++) {
        const Region &r = regions_[i];
        if (r.size == 0 || !r.host)
            fail(ErrorKind::input, "guest memory region ", i, " at gpa 0x", std::hex, r.gpa, " is empty");
        if (r.gpa + r.size < r.gpa)
            fail(ErrorKind::input, "guest memory region at gpa 0x", std::hex, r.gpa, " wraps around");
        if (i > 0 && regions_[i - 1].gpa + regions_[i - 1].size > r.gpa)
            fail(ErrorKind::input, "guest memory regions overlap: gpa 0x", std::hex, regions_[i - 1].gpa,
                 "+0x", regions_[i - 1].size, " and 0x", r.gpa);
        end_ = std::max(end_, r.gpa + r.size);
    }
}

const Region *GuestMem::region_for(uint64_t pa) const {
    // The common case (one region from 0) costs one compare.
    if (regions_.size() == 1) {
        const Region &r = regions_[0];
        return pa - r.gpa < r.size ? &r : nullptr;
    }
    auto it = std::upper_bound(regions_.begin(), regions_.end(), pa,
                               [](uint64_t v, const Region &r) { return v < r.gpa; });
    if (it == regions_.begin()) return nullptr;
    --it;
    return pa - it->gpa < it->size ? &*it : nullptr;
}

uint8_t *GuestMem::span(uint64_t pa, uint64_t len) const {
    const Region *r = region_for(pa);
    if (!r) return nullptr;
    uint64_t off = pa - r->gpa;
    if (len > r->size - off) return nullptr;
    return r->host + off;
}

template <typename T>
T GuestMem::load(uint64_t pa, uint64_t off) const {
    uint64_t addr = pa + off;
    if (addr < pa) return 0;
    const uint8_t *p = span(addr, sizeof(T));
    if (!p) return 0;
    T v;
    if (reinterpret_cast<uintptr_t>(p) % alignof(T) == 0) {
        v = __atomic_load_n(reinterpret_cast<const T *>(p), __ATOMIC_RELAXED);
    } else {
        // Misaligned: byte-wise volatile copy (may tear; statistics tolerate it).
        uint8_t b[sizeof(T)];
        for (size_t i = 0; i < sizeof(T); i++) b[i] = static_cast<const volatile uint8_t *>(p)[i];
        std::memcpy(&v, b, sizeof(T));
    }
    return v;
}

template <typename T>
bool GuestMem::store(uint64_t pa, uint64_t off, T v) const {
    uint64_t addr = pa + off;
    if (addr < pa) return false;
    uint8_t *p = span(addr, sizeof(T));
    if (!p) return false;
    if (reinterpret_cast<uintptr_t>(p) % alignof(T) == 0) {
        __atomic_store_n(reinterpret_cast<T *>(p), v, __ATOMIC_RELAXED);
    } else {
        uint8_t b[sizeof(T)];
        std::memcpy(b, &v, sizeof(T));
        for (size_t i = 0; i < sizeof(T); i++) static_cast<volatile uint8_t *>(p)[i] = b[i];
    }
    return true;
}

uint8_t GuestMem::read_u8(uint64_t pa, uint64_t off) const { return load<uint8_t>(pa, off); }
uint32_t GuestMem::read_u32(uint64_t pa, uint64_t off) const { return load<uint32_t>(pa, off); }
uint64_t GuestMem::read_u64(uint64_t pa, uint64_t off) const { return load<uint64_t>(pa, off); }
bool GuestMem::write_u8(uint64_t pa, uint64_t off, uint8_t v) const { return store(pa, off, v); }
bool GuestMem::write_u32(uint64_t pa, uint64_t off, uint32_t v) const { return store(pa, off, v); }
bool GuestMem::write_u64(uint64_t pa, uint64_t off, uint64_t v) const { return store(pa, off, v); }

size_t GuestMem::read_bytes(uint64_t pa, void *buf, size_t len) const {
    const Region *r = region_for(pa);
    if (!r) return 0;
    size_t n = size_t(std::min<uint64_t>(len, r->size - (pa - r->gpa)));
    std::memcpy(buf, r->host + (pa - r->gpa), n);
    return n;
}

size_t GuestMem::write_bytes(uint64_t pa, const void *buf, size_t len) const {
    const Region *r = region_for(pa);
    if (!r) return 0;
    size_t n = size_t(std::min<uint64_t>(len, r->size - (pa - r->gpa)));
    std::memcpy(r->host + (pa - r->gpa), buf, n);
    return n;
}

} // namespace ktstr::guestmem
