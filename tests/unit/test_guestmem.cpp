// Unit tests for libktstr/guestmem: bounds-checked guest memory, page walks
// over hand-built tables, and the kernel address arithmetic.
#include <doctest/doctest.h>

#include <cstring>

#include "ktstr/guestmem.h"

using namespace ktstr;
using namespace ktstr::guestmem;

namespace {

struct Image {
    std::vector<uint8_t> bytes;
    explicit Image(size_t n) : bytes(n, 0) {}
    GuestMem mem() { return GuestMem({{bytes.data(), 0, bytes.size()}}); }
    void put64(uint64_t pa, uint64_t v) { std::memcpy(&bytes.at(pa + 7) - 7, &v, 8); }
};

// Table entries as the spec's test recipe writes them: next | 0x63.
constexpr uint64_t T = 0x63, LARGE = 0x80;

} // namespace

TEST_CASE("GuestMem: out-of-range reads are 0 and writes are no-ops") {
    Image img(0x2000);
    GuestMem m = img.mem();
    CHECK(m.end() == 0x2000);
    CHECK(m.write_u64(0x1ff8, 0, 0x1122334455667788ull));
    CHECK(m.read_u64(0x1ff8) == 0x1122334455667788ull);   // exact boundary
    CHECK(m.read_u64(0x1ff9) == 0);                        // would cross the end
    CHECK(m.read_u32(0x1ffc) == 0x11223344u);
    CHECK(m.read_u32(0x1ffd) == 0);
    CHECK(m.read_u8(0x2000) == 0);
    CHECK_FALSE(m.write_u32(0x1ffe, 0, 1));
    CHECK(img.bytes[0x1ffe] == 0x22);                     // untouched
    // pa + offset overflow wraps to a small address: must not read it
    m.write_u64(0x10, 0, 42);
    CHECK(m.read_u64(~0ull - 7, 0x19) == 0);
    CHECK(m.read_u64(0x8, 0x8) == 42);
    CHECK_FALSE(m.write_u64(~0ull, 1, 5));
}

TEST_CASE("GuestMem: misaligned scalars and short read_bytes") {
    Image img(0x1000);
    GuestMem m = img.mem();
    CHECK(m.write_u64(0x101, 0, 0xa1b2c3d4e5f60718ull));
    CHECK(m.read_u64(0x100, 1) == 0xa1b2c3d4e5f60718ull);
    CHECK(img.bytes[0x101] == 0x18);                       // little endian, byte by byte
    uint8_t buf[32];
    CHECK(m.read_bytes(0xff0, buf, sizeof buf) == 16);     // stops at the end
    CHECK(m.read_bytes(0x1000, buf, sizeof buf) == 0);
}

TEST_CASE("GuestMem: regions are routed by gpa and accesses never straddle two") {
    std::vector<uint8_t> lo(0x1000, 0), hi(0x1000, 0);
    GuestMem m({{hi.data(), 0x3000, hi.size()}, {lo.data(), 0x1000, lo.size()}});   // unsorted on purpose
    CHECK(m.end() == 0x4000);
    CHECK(m.write_u32(0x3004, 0, 7));
    CHECK(hi[4] == 7);
    CHECK(m.write_u32(0x1000, 0, 9));
    CHECK(lo[0] == 9);
    CHECK(m.read_u32(0x0) == 0);          // hole below the first region
    CHECK(m.read_u32(0x2800) == 0);       // hole between regions
    CHECK_FALSE(m.write_u32(0x1ffe, 0, 1)); // would run from the first region into the hole
    uint8_t buf[16];
    CHECK(m.read_bytes(0x1ff8, buf, sizeof buf) == 8);
    // contiguous regions still do not merge: no access crosses them
    std::vector<uint8_t> a(0x1000), b(0x1000);
    GuestMem ab({{a.data(), 0, 0x1000}, {b.data(), 0x1000, 0x1000}});
    CHECK(ab.read_u64(0xffc) == 0);
    CHECK(ab.span(0xff8, 8) == a.data() + 0xff8);
}

TEST_CASE("GuestMem: overlapping or empty regions are rejected") {
    std::vector<uint8_t> a(0x2000), b(0x1000);
    CHECK_THROWS_WITH_AS(GuestMem({{a.data(), 0, 0x2000}, {b.data(), 0x1000, 0x1000}}),
                         doctest::Contains("overlap"), Error);
    CHECK_THROWS_WITH_AS(GuestMem({{a.data(), 0, 0}}), doctest::Contains("empty"), Error);
}

TEST_CASE("page walk: 4 KiB, 2 MiB and 1 GiB leaves under 4-level paging") {
    Image img(0x400000);
    const uint64_t root = 0x10000;
    // Direct map KVA 0xffff888000005000: PGD 273, PUD 0, PMD 0, PTE 5 -> 4 KiB page at 0x200000
    const uint64_t dm = 0xffff888000005000ull;
    CHECK(((dm >> 39) & 511) == 273);
    img.put64(root + 273 * 8, 0x11000 | T);
    img.put64(0x11000 + 0 * 8, 0x12000 | T);
    img.put64(0x12000 + 0 * 8, 0x13000 | T);
    img.put64(0x13000 + 5 * 8, 0x200000 | T | (1ull << 63));   // NX bit must be dropped
    CHECK(page_walk(img.mem(), root, dm + 0x123, false) == 0x200123);
    // vmalloc KVA 0xffffc90000000000: PGD 402, a 2 MiB PMD leaf at 0x200000
    const uint64_t vm = 0xffffc90000000000ull;
    CHECK(((vm >> 39) & 511) == 402);
    img.put64(root + 402 * 8, 0x14000 | T);
    img.put64(0x14000, 0x15000 | T);
    img.put64(0x15000, 0x200000 | T | LARGE);
    CHECK(page_walk(img.mem(), root, vm + 0x1abcde, false) == 0x200000 + 0x1abcde);
    // image KVA 0xffffffff81000000: PGD 511, PUD 510 -> a 1 GiB leaf
    const uint64_t kt = 0xffffffff81000000ull;
    CHECK(((kt >> 39) & 511) == 511);
    CHECK(((kt >> 30) & 511) == 510);
    img.put64(root + 511 * 8, 0x16000 | T);
    img.put64(0x16000 + 510 * 8, 0x40000000ull | T | LARGE);
    CHECK(page_walk(img.mem(), root, kt, false) == 0x40000000ull + 0x1000000);
    // bit 7 in a PTE is PAT, not "large": still a 4 KiB translation
    img.put64(0x13000 + 6 * 8, 0x300000 | T | LARGE);
    CHECK(page_walk(img.mem(), root, dm + 0x1000 + 8, false) == 0x300008);
}

TEST_CASE("page walk: not present at each level is 'unmapped'") {
    Image img(0x100000);
    const uint64_t root = 0x10000, kva = 0xffff888000005000ull;
    auto walk = [&] { return page_walk(img.mem(), root, kva, false); };
    CHECK_FALSE(walk());                                   // PGD empty
    img.put64(root + 273 * 8, 0x11000 | T);
    CHECK_FALSE(walk());                                   // PUD empty
    img.put64(0x11000, 0x12000 | T);
    CHECK_FALSE(walk());                                   // PMD empty
    img.put64(0x12000, 0x13000 | T);
    CHECK_FALSE(walk());                                   // PTE empty
    img.put64(0x13000 + 5 * 8, 0x13000 | 0x62);            // present bit clear
    CHECK_FALSE(walk());
    img.put64(0x13000 + 5 * 8, 0x13000 | T);
    CHECK(walk() == 0x13000);
    // a table pointer outside guest memory reads as not present
    img.put64(0x12000, 0x7000000000ull | T);
    CHECK_FALSE(walk());
}

TEST_CASE("page walk: 5-level, and the same tables walked in 4- and 5-level mode") {
    Image img(0x100000);
    const uint64_t root = 0x10000;
    // 5-level direct map KVA 0xff11000000003000: PML5 index 0x111 (273), P4D 0
    const uint64_t kva = 0xff11000000003000ull;
    CHECK(((kva >> 48) & 511) == 273);
    CHECK(((kva >> 39) & 511) == 0);
    img.put64(root + 273 * 8, 0x11000 | T);                // PML5 -> P4D table
    img.put64(0x11000 + 0, 0x12000 | T);                   // P4D -> PUD
    img.put64(0x12000 + 0, 0x13000 | T);                   // PUD -> PMD
    img.put64(0x13000 + 0, 0x14000 | T);                   // PMD -> PT
    img.put64(0x14000 + 3 * 8, 0x55000 | T);
    CHECK(page_walk(img.mem(), root, kva + 0x10, true) == 0x55010);
    // In 4-level mode the same KVA uses PGD index 0 of the root: not present.
    CHECK_FALSE(page_walk(img.mem(), root, kva, false));
    // Make root[0] a PUD chain: 4-level now finds something else entirely.
    img.put64(root + 0, 0x12000 | T);
    CHECK(page_walk(img.mem(), root, kva + 0x10, false) == 0x55010);
    CHECK(page_walk(img.mem(), root, kva + 0x10, true) == 0x55010);
    // 5-level: a 1 GiB leaf under the P4D
    img.put64(0x11000 + 1 * 8, 0x15000 | T);
    img.put64(0x15000, 0x40000000ull | T | LARGE);
    CHECK(page_walk(img.mem(), root, 0xff11008000000000ull + 0x1234, true) == 0x40001234);
}

TEST_CASE("page_offset plausibility") {
    CHECK(plausible_page_offset(PAGE_OFFSET_L4, false));
    CHECK(plausible_page_offset(PAGE_OFFSET_L4 + (37ull << 30), false));
    CHECK_FALSE(plausible_page_offset(PAGE_OFFSET_L4 + 0x1000, false));   // not 1 GiB aligned
    CHECK_FALSE(plausible_page_offset(0, false));
    CHECK_FALSE(plausible_page_offset(0x7fff888000000000ull, false));      // bit 63 clear
    CHECK(plausible_page_offset(0xff11000000000000ull, true));
    CHECK(plausible_page_offset(0xff18c3b400000000ull, true));
    CHECK_FALSE(plausible_page_offset(0xff18c3b400000000ull - 0x1000000000000000ull, true));
    CHECK_FALSE(plausible_page_offset(PAGE_OFFSET_L4, true));              // 4-level base in 5-level mode
}

TEST_CASE("AddressSpace: text, direct map, any; per-CPU arithmetic") {
    Image img(0x4000000);
    KernelLayout k;
    k.image_delta = 0x1200000;     // the image sits 18 MiB above its link PA
    k.text_slide = 0x800000;       // and 8 MiB above its link VA
    k.page_offset = PAGE_OFFSET_L4 + (3ull << 30);
    GuestMem mem = img.mem();
    AddressSpace as(mem, k);
    CHECK(k.phys_base() == 0xa00000);
    // link-time symbol: PA = link - START_KERNEL_MAP + image_delta
    CHECK(as.symbol_pa(0xffffffff81000000ull) == 0x2200000);
    CHECK(as.runtime_kva(0xffffffff81000000ull) == 0xffffffff81800000ull);
    // runtime KVA of the same byte maps to the same PA
    CHECK(as.image_pa(0xffffffff81800000ull) == 0x2200000);
    CHECK(as.any_pa(0xffffffff81800000ull) == 0x2200000);
    CHECK(as.direct_pa(k.page_offset + 0x1000) == 0x1000);
    CHECK_FALSE(as.direct_pa(k.page_offset + 0x4000000));          // past the end of memory
    CHECK_FALSE(as.direct_pa(k.page_offset - 0x1000));             // below the direct map (wraps)
    CHECK_FALSE(as.any_pa(0xffffc90000000000ull));                  // vmalloc, no page tables
    // per-CPU: base + offset wraps like the kernel's unsigned arithmetic
    CHECK(percpu_kva(0x2f780, k.page_offset + 0x100000 - 0x2f780) == k.page_offset + 0x100000);
    CHECK(percpu_kva(0xffffffff00000000ull, 0x200000000ull) == 0x100000000ull);
}

TEST_CASE("AddressSpace: chunked virtual I/O across non-adjacent pages; unmapped is refused whole") {
    Image img(0x100000);
    const uint64_t root = 0x10000;
    // vmalloc 0xffffc90000000000 (PGD 402) -> PA 0x40000, next page -> PA 0x20000
    img.put64(root + 402 * 8, 0x11000 | T);
    img.put64(0x11000, 0x12000 | T);
    img.put64(0x12000, 0x13000 | T);
    img.put64(0x13000 + 0, 0x40000 | T);
    img.put64(0x13000 + 8, 0x20000 | T);
    KernelLayout k;
    k.pgt_root_pa = root;
    GuestMem mem = img.mem();
    AddressSpace as(mem, k);
    const uint64_t va = 0xffffc90000000ff8ull;
    const char msg[] = "0123456789abcdef";
    CHECK(as.write_virt(va, msg, 16));
    CHECK(std::memcmp(&img.bytes[0x40ff8], "01234567", 8) == 0);
    CHECK(std::memcmp(&img.bytes[0x20000], "89abcdef", 8) == 0);
    char back[17] = {};
    CHECK(as.read_virt(va, back, 16));
    CHECK(std::string(back) == msg);
    // the third page is unmapped: nothing is written at all
    const uint64_t va2 = 0xffffc90000001ff8ull;
    CHECK_FALSE(as.write_virt(va2, msg, 16));
    CHECK(img.bytes[0x20ff8] == 0);
    CHECK_FALSE(as.read_virt(va2, back, 16));
}
