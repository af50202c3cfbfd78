// Unit tests for libktstr/vmm x86 boot pieces: memory layout, e820, zero
// page, GDT, segments, identity page tables, kernel image parsing.
// Expected values are computed by hand from vmm.md sections 4-6 and
// Documentation/arch/x86/{boot,zero-page}.rst.
#include <doctest/doctest.h>

#include <elf.h>

#include "ktstr/console_watch.h"
#include "ktstr/kvm.h"
#include "ktstr/vmm.h"
#include "ktstr/x86.h"
#include "vmm_test_util.h"

using namespace ktstr;
using namespace ktstr::vmm;
using namespace vmm_test;

namespace {
constexpr uint64_t MB = 1 << 20;
}

TEST_CASE("memory layout: flat below 3 GiB, split around the hole, nodes in order") {
    MemoryLayout m = plan_memory(parse_topology("1n1l1c1t"), 512, 0);
    REQUIRE(m.regions.size() == 1);
    CHECK(m.regions[0].gpa == 0);
    CHECK(m.regions[0].size == 512 * MB);
    CHECK(m.low_end == 512 * MB);
    CHECK(m.high_end == 0);

    // 5 GiB: [0,3G) and [4G,6G).
    m = plan_memory(parse_topology("1n1l1c1t"), 5120, 0);
    REQUIRE(m.regions.size() == 2);
    CHECK(m.regions[0].gpa == 0);
    CHECK(m.regions[0].size == 3072 * MB);
    CHECK(m.regions[1].gpa == 0x100000000ull);
    CHECK(m.regions[1].size == 2048 * MB);
    CHECK(m.regions[1].ram_offset == 3072 * MB);
    CHECK(m.high_end == 0x180000000ull);

    // 2 nodes x 2560 MiB over 5 GiB: node 1 crosses 3 GiB -> two regions.
    m = plan_memory(parse_topology("2n2l1c1t"), 5120, 16 * MB);
    REQUIRE(m.regions.size() == 3);
    CHECK(m.regions[0].node == 0);
    CHECK(m.regions[0].size == 2560 * MB);
    CHECK(m.regions[1].node == 1);
    CHECK(m.regions[1].gpa == 2560 * MB);
    CHECK(m.regions[1].size == 512 * MB);
    CHECK(m.regions[2].node == 1);
    CHECK(m.regions[2].gpa == 0x100000000ull);
    CHECK(m.regions[2].size == 2048 * MB);
    CHECK(m.shm_base == 0x180000000ull - 16 * MB);

    // Uneven split: 100 MiB over 3 nodes -> 33, 33, 34.
    m = plan_memory(parse_topology("3n3l1c1t"), 100, 0);
    REQUIRE(m.regions.size() == 3);
    CHECK(m.regions[0].size == 33 * MB);
    CHECK(m.regions[2].size == 34 * MB);
    CHECK(m.regions[2].gpa == 66 * MB);
}

TEST_CASE("memory layout errors") {
    Topology t = parse_topology("1n1l1c1t");
    CHECK_THROWS_WITH_AS(plan_memory(t, 0, 0), doctest::Contains("0 MiB"), Error);
    CHECK_THROWS_WITH_AS(plan_memory(t, 256, 100), doctest::Contains("multiple of 4 KiB"), Error);
    CHECK_THROWS_WITH_AS(plan_memory(t, 256, 32), doctest::Contains("at least 40"), Error);
    CHECK_THROWS_WITH_AS(plan_memory(t, 64, 16 * MB), doctest::Contains("does not fit"), Error);
    CHECK_THROWS_WITH_AS(plan_memory(parse_topology("4n4l1c1t"), 3, 0), doctest::Contains("without memory"), Error);
}

TEST_CASE("e820 (vmm.md section 16)") {
    Topology t = parse_topology("1n1l1c1t");
    auto e = e820_table(plan_memory(t, 512, 0));
    REQUIRE(e.size() == 2);
    CHECK(e[0] == E820Entry{0, 0x9FC00, 1});
    CHECK(e[1] == E820Entry{0x100000, 0x1FF00000, 1});

    e = e820_table(plan_memory(t, 5120, 0));
    REQUIRE(e.size() == 3);
    CHECK(e[1] == E820Entry{0x100000, 0xC0000000 - 0x100000, 1});
    CHECK(e[2] == E820Entry{0x100000000ull, 0x40000000ull * 2, 1});

    e = e820_table(plan_memory(t, 4096, 0));
    REQUIRE(e.size() == 3);   // 3 GiB low + 1 GiB high (hole model)
    CHECK(e[2] == E820Entry{0x100000000ull, 0x40000000ull, 1});

    // The SHM shortens the last RAM range and is listed as reserved.
    e = e820_table(plan_memory(t, 512, 16 * MB));
    REQUIRE(e.size() == 3);
    CHECK(e[1] == E820Entry{0x100000, 0x1FF00000 - 0x1000000, 1});
    CHECK(e[2] == E820Entry{0x1F000000, 0x1000000, 2});

    e = e820_table(plan_memory(t, 5120, 16 * MB));
    REQUIRE(e.size() == 4);
    CHECK(e[2] == E820Entry{0x100000000ull, 0x80000000ull - 0x1000000, 1});
    CHECK(e[3] == E820Entry{0x17F000000ull, 0x1000000, 2});
}

TEST_CASE("GDT entries and segments (vmm.md section 6)") {
    auto g = boot_gdt();
    CHECK(g[0] == 0);
    CHECK(g[1] == 0x00AF9B000000FFFFull);
    CHECK(g[2] == 0x00CF93000000FFFFull);
    CHECK(g[3] == 0x008F8B000000FFFFull);
    CHECK(gdt_entry(0xA09B, 0x12345678, 0xABCDE) == 0x12AA9B345678BCDEull);

    kvm_segment cs = segment_from_descriptor(g[1], 8);
    CHECK(cs.selector == 8);
    CHECK(cs.base == 0);
    CHECK(cs.limit == 0xFFFFFFFF);
    CHECK(cs.type == 0xB);
    CHECK(cs.s == 1);
    CHECK(cs.present == 1);
    CHECK(cs.dpl == 0);
    CHECK(cs.l == 1);
    CHECK(cs.db == 0);
    CHECK(cs.g == 1);
    CHECK(cs.unusable == 0);
    kvm_segment ds = segment_from_descriptor(g[2], 16);
    CHECK(ds.type == 3);
    CHECK(ds.db == 1);
    CHECK(ds.l == 0);
    kvm_segment tr = segment_from_descriptor(g[3], 24);
    CHECK(tr.type == 0xB);
    CHECK(tr.s == 0);
    CHECK(tr.g == 1);
    CHECK(segment_from_descriptor(0, 0).unusable == 1);
}

TEST_CASE("identity page tables") {
    auto pt = identity_page_tables();
    REQUIRE(pt.size() == 3 * 4096);
    CHECK(u64(pt, 0) == 0xA003);
    CHECK(u64(pt, 8) == 0);
    CHECK(u64(pt, 0x1000) == 0xB003);
    CHECK(u64(pt, 0x1008) == 0);
    CHECK(u64(pt, 0x2000) == 0x83);
    CHECK(u64(pt, 0x2008) == 0x200083);   // PD[1]
    CHECK(u64(pt, 0x2000 + 511 * 8) == ((511ull << 21) | 0x83));
}

namespace {

// A minimal bzImage: setup sectors, header fields a real one has, a payload.
std::string fake_bzimage(uint16_t version = 0x20F, uint8_t loadflags = 1, uint16_t xloadflags = 0x7F) {
    std::string d(0x2000, '\0');
    auto p16 = [&](size_t o, uint16_t v) { std::memcpy(&d[o], &v, 2); };
    auto p32 = [&](size_t o, uint32_t v) { std::memcpy(&d[o], &v, 4); };
    d[0x1F1] = 3;                  // setup_sects: payload at 4*512
    p16(0x1FE, 0xAA55);
    p32(0x202, 0x53726448);
    p16(0x206, version);
    d[0x211] = char(loadflags);
    p32(0x22C, 0x7FFFFFFF);        // initrd_addr_max
    p16(0x236, xloadflags);
    p32(0x238, 2047);              // cmdline_size
    p32(0x260, 0x2000000);         // init_size
    d[0x800] = char(0xAB);         // first payload byte
    return d;
}

std::string fake_elf(uint64_t entry, uint64_t paddr, uint64_t filesz, uint64_t memsz) {
    Elf64_Ehdr eh{};
    std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS64;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    eh.e_type = ET_EXEC;
    eh.e_machine = EM_X86_64;
    eh.e_entry = entry;
    eh.e_phoff = sizeof eh;
    eh.e_phentsize = sizeof(Elf64_Phdr);
    eh.e_phnum = 1;
    Elf64_Phdr ph{};
    ph.p_type = PT_LOAD;
    ph.p_offset = 0x1000;
    ph.p_vaddr = ph.p_paddr = paddr;
    ph.p_filesz = filesz;
    ph.p_memsz = memsz;
    std::string d(0x1000 + filesz, '\0');
    std::memcpy(&d[0], &eh, sizeof eh);
    std::memcpy(&d[sizeof eh], &ph, sizeof ph);
    return d;
}

} // namespace

TEST_CASE("bzImage parsing") {
    BootImage k = parse_boot_image(fake_bzimage(), "bz");
    CHECK(k.kind == BootImage::Kind::bzimage);
    CHECK(k.entry == 0x100200);
    REQUIRE(k.segments.size() == 1);
    CHECK(k.segments[0].gpa == 0x100000);
    CHECK(k.segments[0].file_offset == 0x800);
    CHECK(k.segments[0].file_size == 0x1800);
    CHECK(k.setup_header.size() == 0x26C - 0x1F1);
    CHECK(k.end == 0x1000000 + 0x2000000);
    CHECK(k.cmdline_max == 2047);
    CHECK_THROWS_WITH_AS(parse_boot_image(fake_bzimage(0x20B), "bz"), doctest::Contains("too old"), Error);
    CHECK_THROWS_WITH_AS(parse_boot_image(fake_bzimage(0x20F, 0), "bz"), doctest::Contains("LOADED_HIGH"), Error);
    CHECK_THROWS_WITH_AS(parse_boot_image(fake_bzimage(0x20F, 1, 0), "bz"), doctest::Contains("64-bit"), Error);
    CHECK_THROWS_WITH_AS(parse_boot_image(std::string(0x3000, 'x'), "junk"), doctest::Contains("junk: not a kernel"),
                         Error);
}

TEST_CASE("ELF parsing") {
    BootImage k = parse_boot_image(fake_elf(0x1000000, 0x1000000, 0x100, 0x3000), "vmlinux");
    CHECK(k.kind == BootImage::Kind::elf);
    CHECK(k.entry == 0x1000000);
    REQUIRE(k.segments.size() == 1);
    CHECK(k.segments[0].file_offset == 0x1000);
    CHECK(k.segments[0].mem_size == 0x3000);
    CHECK(k.end == 0x1003000);
    // A virtual entry point is turned into the physical one.
    CHECK(parse_boot_image(fake_elf(0xFFFFFFFF81000000ull, 0x1000000, 0x10, 0x10), "v").entry == 0x1000000);
    CHECK_THROWS_WITH_AS(parse_boot_image(fake_elf(0x5000, 0x1000000, 0x10, 0x10), "v"),
                         doctest::Contains("not inside a loaded segment"), Error);
    CHECK_THROWS_WITH_AS(parse_boot_image(fake_elf(0x1000000, 0x1000000, 0x10, 0x8), "v"),
                         doctest::Contains("p_memsz < p_filesz"), Error);
}

TEST_CASE("initrd placement") {
    Topology t = parse_topology("1n1l1c1t");
    BootImage k = parse_boot_image(fake_bzimage(), "bz");   // ends at 48 MiB
    MemoryLayout m = plan_memory(t, 512, 16 * MB);
    CHECK(place_initrd(k, m, 10 * MB) == 0x8000000);
    // Too big for 128 MiB..: goes to the top of low usable RAM, page aligned.
    CHECK(place_initrd(k, m, 400 * MB + 123) == ((496 * MB - 400 * MB - 123) & ~0xFFFull));
    CHECK_THROWS_WITH_AS(place_initrd(k, m, 480 * MB), doctest::Contains("does not fit"), Error);
}

TEST_CASE("zero page (boot_params)") {
    BootImage k = parse_boot_image(fake_bzimage(), "bz");
    BootParamsInput in;
    in.kernel = &k;
    in.cmdline_len = 42;
    in.initrd_gpa = 0x8000000;
    in.initrd_size = 0x123456;
    in.e820 = {{0, 0x9FC00, 1}, {0x100000, 0x1FF00000, 1}};
    auto bp = build_boot_params(in);
    REQUIRE(bp.size() == 4096);
    CHECK(bp[0x1F1] == 3);                  // setup_sects copied from the image
    CHECK(u16(bp, 0x1FE) == 0xAA55);
    CHECK(u32(bp, 0x202) == 0x53726448);
    CHECK(u16(bp, 0x206) == 0x20F);
    CHECK(bp[0x210] == 0xFF);
    CHECK(bp[0x211] == 1);
    CHECK(u32(bp, 0x214) == 0x100000);
    CHECK(u32(bp, 0x218) == 0x8000000);
    CHECK(u32(bp, 0x21C) == 0x123456);
    CHECK(u32(bp, 0x228) == 0x20000);
    CHECK(u32(bp, 0x230) == 0x1000000);
    CHECK(u32(bp, 0x238) == 42);
    CHECK(u32(bp, 0x260) == 0x2000000);     // init_size kept
    CHECK(u64(bp, 0x70) == 0xE0000);
    CHECK(bp[0x1E8] == 2);
    CHECK(u64(bp, 0x2D0) == 0);
    CHECK(u64(bp, 0x2D8) == 0x9FC00);
    CHECK(u32(bp, 0x2E0) == 1);
    CHECK(u64(bp, 0x2E4) == 0x100000);
    CHECK(u64(bp, 0x2EC) == 0x1FF00000);
    CHECK(u32(bp, 0x2F4) == 1);
    // Everything outside the fields written is zero.
    for (size_t i = 0; i < 0x70; ++i) CHECK(bp[i] == 0);
    for (size_t i = 0x2F8; i < 4096; ++i) CHECK(bp[i] == 0);

    // ELF boot: no setup header in the image; we state protocol 2.15.
    BootImage e = parse_boot_image(fake_elf(0x1000000, 0x1000000, 0x10, 0x10), "v");
    in.kernel = &e;
    bp = build_boot_params(in);
    CHECK(u16(bp, 0x206) == 0x20F);
    CHECK(bp[0x1F1] == 0);
    CHECK(u32(bp, 0x202) == 0x53726448);
}

TEST_CASE("KVM memory plan: one memfd, regions at their memfd offsets, SHM at the top") {
    Topology t = parse_topology("2n2l1c1t");
    MemoryLayout m = plan_memory(t, 5120, 16 * MB);
    MemoryPlan p = kvm_memory_plan(m);
    REQUIRE(p.fd_sizes.size() == 1);
    CHECK(p.fd_sizes[0] == 5120 * MB);
    REQUIRE(p.regions.size() == 3);
    CHECK(p.regions[1] == RamRegion{2560 * MB, 512 * MB, 0, 2560 * MB, 1});
    CHECK(p.regions[2] == RamRegion{0x100000000ull, 2048 * MB, 0, 3072 * MB, 1});
    REQUIRE(p.shm);
    CHECK(p.shm->base_pa == 0x180000000ull - 16 * MB);
    CHECK(p.shm->size == 16 * MB);
    CHECK_FALSE(kvm_memory_plan(plan_memory(t, 512, 0)).shm);
}

TEST_CASE("--stop-on: stops once every text appeared in a console line") {
    ConsoleStopObserver o({"e820", "Allowing 4 present CPUs"});
    StopSource stop;
    GuestRam ram;
    o.on_console("BIOS-e8");
    o.on_console("20: [mem 0x0-0x9fbff] usable\nCPU topo: Allowing 4 present");
    o.on_tick(ram, stop);
    CHECK_FALSE(stop.requested());   // the second text's line is not complete yet
    o.on_console(" CPUs plus 0 hotplug CPUs\n");
    CHECK(o.all_seen());
    o.on_tick(ram, stop);
    CHECK(stop.requested());
    CHECK(stop.reason() == ExitReason::stopped);
    ExitResult r;
    r.reason = ExitReason::stopped;
    o.on_exit(ram, r);
    CHECK(r.guest_exit_code == 0);
    CHECK(r.detail.find("--stop-on") != std::string::npos);
    CHECK(r.extra["stop_on"].size() == 2);
    ConsoleStopObserver none({"never"});
    none.on_console("something else\n");
    CHECK_FALSE(none.all_seen());
}
