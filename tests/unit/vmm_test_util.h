// Helpers shared by the tests/unit/test_vmm_*.cpp files.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "ktstr/vmm.h"

namespace vmm_test {

inline uint16_t u16(const std::vector<uint8_t> &b, size_t off) { return uint16_t(b.at(off) | b.at(off + 1) << 8); }
inline uint32_t u32(const std::vector<uint8_t> &b, size_t off) { return uint32_t(u16(b, off)) | uint32_t(u16(b, off + 2)) << 16; }
inline uint64_t u64(const std::vector<uint8_t> &b, size_t off) { return uint64_t(u32(b, off)) | uint64_t(u32(b, off + 4)) << 32; }
inline std::string str(const std::vector<uint8_t> &b, size_t off, size_t n) {
    return std::string(reinterpret_cast<const char *>(b.data()) + off, n);
}
inline std::vector<uint8_t> slice(const std::vector<uint8_t> &b, size_t off, size_t n) {
    return std::vector<uint8_t>(b.begin() + off, b.begin() + off + n);
}
inline unsigned byte_sum(const std::vector<uint8_t> &b, size_t off, size_t n) {
    unsigned s = 0;
    for (size_t i = 0; i < n; ++i) s += b.at(off + i);
    return s & 0xFF;
}

// The fixture kernel's relevant bzImage header fields (init_size 0x2ecb000 = 46.8 MiB).
inline ktstr::vmm::BzImageHeader fixture_header() {
    ktstr::vmm::BzImageHeader h;
    h.protocol = 0x020F;
    h.initrd_addr_max = 0x7FFFFFFF;
    h.init_size = 0x2ECB000;
    h.cmdline_size = 0x7FF;
    return h;
}

} // namespace vmm_test
