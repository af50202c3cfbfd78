// libktstr/vmm (private): little-endian byte writers/readers for building
// firmware tables and boot structures in byte vectors.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

namespace ktstr::vmm::le {

inline void put8(std::vector<uint8_t> &b, size_t off, uint8_t v) { b.at(off) = v; }
inline void put16(std::vector<uint8_t> &b, size_t off, uint16_t v) {
    for (int i = 0; i < 2; ++i) b.at(off + i) = uint8_t(v >> (8 * i));
}
inline void put32(std::vector<uint8_t> &b, size_t off, uint32_t v) {
    for (int i = 0; i < 4; ++i) b.at(off + i) = uint8_t(v >> (8 * i));
}
inline void put64(std::vector<uint8_t> &b, size_t off, uint64_t v) {
    for (int i = 0; i < 8; ++i) b.at(off + i) = uint8_t(v >> (8 * i));
}
inline void put_bytes(std::vector<uint8_t> &b, size_t off, std::string_view s) {
    if (off + s.size() > b.size()) b.at(off + s.size() - 1);  // throws out_of_range
    std::memcpy(b.data() + off, s.data(), s.size());
}

inline uint16_t get16(const void *p) { uint16_t v; std::memcpy(&v, p, 2); return v; }
inline uint32_t get32(const void *p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
inline uint64_t get64(const void *p) { uint64_t v; std::memcpy(&v, p, 8); return v; }

// Appends fields to a growing byte vector (tables built entry by entry).
class Writer {
public:
    std::vector<uint8_t> bytes;
    Writer &u8(uint8_t v) { bytes.push_back(v); return *this; }
    Writer &u16(uint16_t v) { for (int i = 0; i < 2; ++i) bytes.push_back(uint8_t(v >> (8 * i))); return *this; }
    Writer &u32(uint32_t v) { for (int i = 0; i < 4; ++i) bytes.push_back(uint8_t(v >> (8 * i))); return *this; }
    Writer &u64(uint64_t v) { for (int i = 0; i < 8; ++i) bytes.push_back(uint8_t(v >> (8 * i))); return *this; }
    Writer &str(std::string_view s) { bytes.insert(bytes.end(), s.begin(), s.end()); return *this; }
    Writer &zeros(size_t n) { bytes.insert(bytes.end(), n, 0); return *this; }
    size_t size() const { return bytes.size(); }
};

} // namespace ktstr::vmm::le
