// The LZ4 "legacy" framing that the kernel's lib/decompress_unlz4.c reads for an initramfs
// (CONFIG_RD_LZ4): the magic 02 21 4C 18, then blocks {u32 LE compressed size, raw LZ4
// block} whose uncompressed size is at most 8 MiB each.  A zero size or the end of the
// input ends the stream; the magic may reappear between blocks (concatenated streams).
#include "ktstr/initramfs.h"

#include <cstring>
#include <memory>
#include <thread>

#include <lz4.h>

namespace ktstr::initramfs {

namespace {
void put_le32(char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = char(uint8_t(v >> (8 * i)));
}
uint32_t get_le32(const char *p) {
    const auto *u = reinterpret_cast<const uint8_t *>(p);
    return uint32_t(u[0]) | uint32_t(u[1]) << 8 | uint32_t(u[2]) << 16 | uint32_t(u[3]) << 24;
}
} // namespace

bool is_lz4_legacy(std::string_view d) {
    return d.size() >= 4 && get_le32(d.data()) == LZ4_LEGACY_MAGIC;
}

std::string lz4_legacy_compress(std::string_view in, size_t chunk, unsigned threads) {
    if (chunk == 0 || chunk > LZ4_LEGACY_CHUNK) chunk = LZ4_LEGACY_CHUNK;
    size_t nchunks = (in.size() + chunk - 1) / chunk;
    if (threads == 0) threads = std::min(8u, std::max(1u, std::thread::hardware_concurrency()));
    threads = unsigned(std::min<size_t>(threads, std::max<size_t>(nchunks, 1)));

    // Each chunk compresses into its own slot of a bound-sized buffer; the slots are then
    // packed behind their sizes.
    const int bound = LZ4_compressBound(int(chunk));
    std::unique_ptr<char[]> scratch(new char[std::max<size_t>(nchunks, 1) * size_t(bound)]);
    std::vector<int> sizes(nchunks, 0);
    auto work = [&](size_t first, size_t step) {
        for (size_t i = first; i < nchunks; i += step) {
            size_t n = std::min(chunk, in.size() - i * chunk);
            sizes[i] = LZ4_compress_default(in.data() + i * chunk, scratch.get() + i * size_t(bound),
                                            int(n), bound);
        }
    };
    if (threads <= 1) {
        work(0, 1);
    } else {
        std::vector<std::thread> pool;
        for (unsigned t = 1; t < threads; t++) pool.emplace_back(work, t, threads);
        work(0, threads);
        for (auto &t : pool) t.join();
    }
    size_t total = 4;
    for (int s : sizes) {
        if (s <= 0) fail(ErrorKind::environment, "LZ4 compression failed");
        total += 4 + size_t(s);
    }
    std::string out;
    out.reserve(total);
    char le[4];
    put_le32(le, LZ4_LEGACY_MAGIC);
    out.append(le, 4);
    for (size_t i = 0; i < nchunks; i++) {
        put_le32(le, uint32_t(sizes[i]));
        out.append(le, 4);
        out.append(scratch.get() + i * size_t(bound), size_t(sizes[i]));
    }
    return out;
}

std::string lz4_legacy_decompress(std::string_view in) {
    if (!is_lz4_legacy(in)) fail(ErrorKind::input, "not LZ4 legacy data (bad magic)");
    std::string out;
    std::string block(LZ4_LEGACY_CHUNK, '\0');
    size_t pos = 4;
    while (in.size() - pos >= 4) {
        uint32_t n = get_le32(in.data() + pos);
        pos += 4;
        if (n == LZ4_LEGACY_MAGIC) continue;
        if (n == 0) break;
        if (n > uint32_t(LZ4_compressBound(int(LZ4_LEGACY_CHUNK))) || n > in.size() - pos)
            fail(ErrorKind::input, "LZ4 block at offset ", pos - 4, " claims ", n,
                 " bytes; ", in.size() - pos, " remain");
        int got = LZ4_decompress_safe(in.data() + pos, block.data(), int(n), int(block.size()));
        if (got < 0) fail(ErrorKind::input, "corrupt LZ4 block at offset ", pos - 4);
        out.append(block.data(), size_t(got));
        pos += n;
    }
    return out;
}

} // namespace ktstr::initramfs
