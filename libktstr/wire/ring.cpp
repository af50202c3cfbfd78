// The shared-memory ring (vmm spec section 10): guest writer, host reader.
//
// The region lives in guest RAM that both sides map.  Header words are accessed with
// atomics (the guest publishes write_ptr with release after copying the entry; the host
// publishes read_ptr after consuming), the data bytes with plain copies.  The host never
// trusts a value it reads: capacity, pointers and lengths are checked on every drain.
#include "ktstr/wire.h"

#include <chrono>
#include <cstring>
#include <thread>

#include "ktstr/util.h"

namespace ktstr::wire {

namespace {

uint32_t load_u32(const uint8_t *p) {
    return __atomic_load_n(reinterpret_cast<const uint32_t *>(p), __ATOMIC_ACQUIRE);
}
uint64_t load_u64(const uint8_t *p) {
    return __atomic_load_n(reinterpret_cast<const uint64_t *>(p), __ATOMIC_ACQUIRE);
}
void store_u64(uint8_t *p, uint64_t v) {
    __atomic_store_n(reinterpret_cast<uint64_t *>(p), v, __ATOMIC_RELEASE);
}
void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = uint8_t(v >> (8 * i));
}
uint32_t get_u32(const uint8_t *p) {
    return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

// Copy between the ring's data area and a linear buffer, wrapping at capacity.
void ring_read(const uint8_t *data, uint64_t cap, uint64_t pos, uint8_t *out, size_t len) {
    uint64_t at = pos % cap;
    size_t first = size_t(std::min<uint64_t>(len, cap - at));
    std::memcpy(out, data + at, first);
    if (first < len) std::memcpy(out + first, data, len - first);
}
void ring_write(uint8_t *data, uint64_t cap, uint64_t pos, const uint8_t *in, size_t len) {
    uint64_t at = pos % cap;
    size_t first = size_t(std::min<uint64_t>(len, cap - at));
    std::memcpy(data + at, in, first);
    if (first < len) std::memcpy(data, in + first, len - first);
}

void check_aligned(const uint8_t *shm) {
    if (reinterpret_cast<uintptr_t>(shm) % 8 != 0)
        fail(ErrorKind::environment, "shared ring mapping is not 8-byte aligned");
}

} // namespace

std::string type_name(uint32_t type) {
    std::string s;
    for (int shift = 24; shift >= 0; shift -= 8) {
        char c = char(type >> shift);
        if (c < 0x20 || c > 0x7e) return "0x" + hex8(type);
        s += c;
    }
    return s;
}

uint32_t ring_capacity_for(uint64_t shm_size) {
    if (shm_size <= SHM_HEADER_SIZE) return 0;
    return uint32_t(std::min<uint64_t>(shm_size - SHM_HEADER_SIZE, UINT32_MAX));
}

void init_header(uint8_t *shm, size_t size) {
    check_aligned(shm);
    if (size < SHM_HEADER_SIZE)
        fail(ErrorKind::usage, "shared ring of ", size, " bytes is smaller than its ",
             SHM_HEADER_SIZE, "-byte header");
    std::memset(shm, 0, SHM_HEADER_SIZE);
    put_u32(shm + off::MAGIC, SHM_MAGIC);
    put_u32(shm + off::VERSION, SHM_VERSION);
    put_u32(shm + off::CAPACITY, ring_capacity_for(size));
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

std::string encode_entry(uint32_t type, std::string_view payload) {
    std::string out(ENTRY_HEADER_SIZE + payload.size(), '\0');
    uint8_t *p = reinterpret_cast<uint8_t *>(out.data());
    put_u32(p, type);
    put_u32(p + 4, uint32_t(payload.size()));
    put_u32(p + 8, crc32_of(payload));
    put_u32(p + 12, 0);
    if (!payload.empty()) std::memcpy(p + ENTRY_HEADER_SIZE, payload.data(), payload.size());
    return out;
}

std::string encode_i32(int32_t v) {
    std::string s(4, '\0');
    put_u32(reinterpret_cast<uint8_t *>(s.data()), uint32_t(v));
    return s;
}

std::optional<int32_t> decode_i32(std::string_view payload) {
    if (payload.size() != 4) return std::nullopt;
    return int32_t(get_u32(reinterpret_cast<const uint8_t *>(payload.data())));
}

// ---- guest writer ------------------------------------------------------------------

size_t RingWriter::max_payload() const {
    if (!shm_) return 0;
    uint32_t cap = load_u32(shm_ + off::CAPACITY);
    if (cap == 0 || cap > size_ - SHM_HEADER_SIZE || cap < ENTRY_HEADER_SIZE) return 0;
    return cap - ENTRY_HEADER_SIZE;
}

RingWriter::Status RingWriter::write_locked(uint32_t type, std::string_view payload) {
    if (!shm_ || size_ < SHM_HEADER_SIZE) return Status::unusable;
    uint64_t cap = load_u32(shm_ + off::CAPACITY);
    if (cap == 0 || cap > size_ - SHM_HEADER_SIZE) return Status::unusable;
    uint64_t wp = load_u64(shm_ + off::WRITE_PTR);
    uint64_t rp = load_u64(shm_ + off::READ_PTR);
    uint64_t used = wp - rp;   // wrapping
    if (used > cap) return Status::unusable;
    uint64_t need = ENTRY_HEADER_SIZE + payload.size();
    if (used + need > cap) {
        uint64_t d = load_u64(shm_ + off::DROPS);
        if (d != UINT64_MAX) store_u64(shm_ + off::DROPS, d + 1);
        return Status::full;
    }
    uint8_t *data = shm_ + SHM_HEADER_SIZE;
    uint8_t hdr[ENTRY_HEADER_SIZE];
    put_u32(hdr, type);
    put_u32(hdr + 4, uint32_t(payload.size()));
    put_u32(hdr + 8, crc32_of(payload));
    put_u32(hdr + 12, 0);
    ring_write(data, cap, wp, hdr, sizeof hdr);
    ring_write(data, cap, wp + ENTRY_HEADER_SIZE,
               reinterpret_cast<const uint8_t *>(payload.data()), payload.size());
    store_u64(shm_ + off::WRITE_PTR, wp + need);   // publish last
    return Status::ok;
}

RingWriter::Status RingWriter::write(uint32_t type, std::string_view payload) {
    std::lock_guard<std::mutex> lock(mu_);
    return write_locked(type, payload);
}

RingWriter::Status RingWriter::try_write(uint32_t type, std::string_view payload) {
    std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
    if (!lock.owns_lock()) return Status::full;
    return write_locked(type, payload);
}

RingWriter::Status RingWriter::write_wait(uint32_t type, std::string_view payload,
                                          double timeout_s) {
    auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                       std::chrono::duration<double>(timeout_s));
    auto pause = std::chrono::microseconds(200);
    for (;;) {
        {
            std::lock_guard<std::mutex> lock(mu_);
            uint64_t cap = shm_ ? load_u32(shm_ + off::CAPACITY) : 0;
            if (!shm_ || cap == 0 || cap > size_ - SHM_HEADER_SIZE) return Status::unusable;
            uint64_t need = ENTRY_HEADER_SIZE + payload.size();
            uint64_t used = load_u64(shm_ + off::WRITE_PTR) - load_u64(shm_ + off::READ_PTR);
            // Write (or count the drop) when it fits, can never fit, or time is up.
            if (used > cap || need > cap || used + need <= cap || Clock::now() >= deadline)
                return write_locked(type, payload);
        }
        std::this_thread::sleep_for(pause);   // let the host drain
        pause = std::min(pause * 2, decltype(pause)(5000));
    }
}

uint8_t RingWriter::load_byte(size_t offset) const {
    return __atomic_load_n(shm_ + offset, __ATOMIC_ACQUIRE);
}
void RingWriter::store_byte(size_t offset, uint8_t v) {
    __atomic_store_n(shm_ + offset, v, __ATOMIC_RELEASE);
}
uint64_t RingWriter::drops() const { return shm_ ? load_u64(shm_ + off::DROPS) : 0; }

// ---- host reader ------------------------------------------------------------------

DrainResult drain_ring(uint8_t *shm, size_t size, bool consume, size_t max_bytes) {
    DrainResult r;
    if (!shm || size < SHM_HEADER_SIZE) {
        r.rejected = cat("region of ", size, " bytes is smaller than the ring header");
        return r;
    }
    check_aligned(shm);
    uint32_t magic = load_u32(shm + off::MAGIC);
    if (magic != SHM_MAGIC) {
        r.rejected = cat("bad magic 0x", hex8(magic), " (expected 0x", hex8(SHM_MAGIC), ")");
        return r;
    }
    uint64_t cap = load_u32(shm + off::CAPACITY);
    if (cap == 0 || cap > MAX_READER_CAPACITY || cap > size - SHM_HEADER_SIZE) {
        r.rejected = cat("capacity ", cap, " is outside (0, ",
                         std::min<uint64_t>(MAX_READER_CAPACITY, size - SHM_HEADER_SIZE), "]");
        return r;
    }
    r.drops = load_u64(shm + off::DROPS);
    uint64_t wp = load_u64(shm + off::WRITE_PTR);
    uint64_t rp = load_u64(shm + off::READ_PTR);
    if (wp - rp > cap) {
        r.rejected = cat("write_ptr ", wp, " - read_ptr ", rp, " exceeds capacity ", cap);
        return r;
    }
    const uint8_t *data = shm + SHM_HEADER_SIZE;
    uint64_t copied = 0;
    while (wp - rp >= ENTRY_HEADER_SIZE) {
        uint8_t hdr[ENTRY_HEADER_SIZE];
        ring_read(data, cap, rp, hdr, sizeof hdr);
        uint32_t len = get_u32(hdr + 4);
        if (len > cap - ENTRY_HEADER_SIZE) {
            r.corrupt = cat(type_name(get_u32(hdr)), " entry at ", rp, " claims ", len,
                            " bytes, more than the ring holds");
            break;
        }
        if (ENTRY_HEADER_SIZE + uint64_t(len) > wp - rp) {
            r.corrupt = cat(type_name(get_u32(hdr)), " entry at ", rp, " of ", len,
                            " bytes is incomplete (", wp - rp - ENTRY_HEADER_SIZE, " written)");
            break;
        }
        if (max_bytes && copied && copied + len > max_bytes) break;
        Message m;
        m.type = get_u32(hdr);
        m.payload.resize(len);
        ring_read(data, cap, rp + ENTRY_HEADER_SIZE, reinterpret_cast<uint8_t *>(m.payload.data()),
                  len);
        m.crc_ok = crc32_of(m.payload) == get_u32(hdr + 8);
        if (!m.crc_ok) r.bad_crc++;
        copied += len;
        rp += ENTRY_HEADER_SIZE + len;
        r.messages.push_back(std::move(m));
    }
    // On a corrupt entry a live drain skips everything written so far: the guest's next
    // message starts at write_ptr, so the stream resynchronises there.
    if (!r.corrupt.empty()) rp = wp;
    if (consume) store_u64(shm + off::READ_PTR, rp);
    return r;
}

} // namespace ktstr::wire
