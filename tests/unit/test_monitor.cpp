// Unit tests for libktstr/monitor over synthetic guest memory images:
// KASLR recovery, readiness, the sampler, IDR/xarray and BPF maps, the
// summary/verdict of spec section 8, and an offline session over a socket.
#include <doctest/doctest.h>

#include <cstring>
#include <thread>

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <atomic>
#include <pthread.h>
#include <unistd.h>

#include "ktstr/fdpass.h"
#include "ktstr/monitor.h"

using namespace ktstr;
using namespace ktstr::monitor;
using namespace ktstr::guestmem;

namespace {

// A small made-up kernel: the image links at 2 MiB so synthetic images stay small.
constexpr uint64_t TEXT = 0xffffffff80200000ull;
constexpr uint64_t BANNER = TEXT + 0x80010, POB = TEXT + 0x100000, L5 = POB + 8, PHYS_BASE = POB + 16,
                   PCO = TEXT + 0x101000, MAP_IDR = TEXT + 0x102000, PROG_IDR = MAP_IDR + 0x40,
                   SCX_ROOT = MAP_IDR + 0x80, PGT = TEXT + 0x180000, RUNQUEUES = 0x20000;

Vmlinux test_vmlinux() {
    Vmlinux vm{sym::ElfSymbols::from_table({}), {}, {}, {}, {}};
    KernelSymbols &s = vm.syms;
    s.runqueues = RUNQUEUES; s.per_cpu_offset = PCO; s.linux_banner = BANNER; s.page_offset_base = POB;
    s.pgtable_l5_enabled = L5; s.phys_base = PHYS_BASE; s.text = TEXT; s.init_top_pgt = PGT;
    s.map_idr = MAP_IDR; s.prog_idr = PROG_IDR; s.scx_root = SCX_ROOT;
    vm.banner = "Linux version 6.99.0-test (t@h) (gcc) #7 SMP PREEMPT_DYNAMIC\n";
    KernelOffsets &o = vm.off;
    o.rq_nr_running = 4; o.rq_clock = 64; o.rq_cpu = 72;
    o.scx = true; o.scx_nr_running = 128; o.scx_flags = 132; o.scx_local_dsq_nr = 160;
    o.schedstat = true; o.pcount = 200; o.run_delay = 208; o.yld_count = 216; o.sched_count = 220;
    o.sched_goidle = 224; o.ttwu_count = 228; o.ttwu_local = 232;
    o.rq_sd = 240;
    DomainOffsets d;
    d.parent = 0; d.level = 8; d.flags = 12; d.span_weight = 16; d.balance_interval = 20; d.nr_balance_failed = 24;
    d.max_newidle_lb_cost = 32; d.name = 40;
    o.domain = d;
    o.events = KernelOffsets::Events::v6_18;
    o.scx_sched_pcpu = 16; o.event_stats_off = 8;
    for (size_t i = 0; i < 5; i++) o.event_off[i] = 8 * i;
    o.idr = true; o.idr_xa_head = 8; o.idr_next = 20; o.xa_node_shift = 0; o.xa_node_slots = 40;
    o.bpf_map = true; o.map_type = 24; o.map_key_size = 28; o.map_value_size = 32; o.map_max_entries = 36;
    o.map_flags = 48; o.map_id = 52; o.map_btf_value_type_id = 72; o.map_btf = 80; o.map_name = 88; o.array_value = 256;
    o.bpf_prog = true; o.prog_type = 4; o.prog_aux = 56; o.aux_verified_insns = 100; o.aux_name = 120;
    return vm;
}

SyntheticSpec kaslr_spec(bool l5) {
    SyntheticSpec s;
    s.cpus = 4;
    s.image_delta = 0x1e00000;
    s.text_slide = 0x3400000;
    s.page_offset = l5 ? 0xff18c3b400000000ull : PAGE_OFFSET_L4 + (37ull << 30);
    s.l5 = l5;
    s.extra_bytes = 4 << 20;
    return s;
}

void put64(SyntheticGuest &g, uint64_t pa, uint64_t v) { g.mem().write_u64(pa, 0, v); }

// A synthetic guest of test_vmlinux() placed by KASLR, its memory and the
// address space recovered from it: what most tests below start from.
struct KaslrGuest {
    Vmlinux vm = test_vmlinux();
    SyntheticSpec spec;
    SyntheticGuest g;
    GuestMem mem;
    AddressSpace as;
    explicit KaslrGuest(bool l5 = false)
        : spec(kaslr_spec(l5)), g(build_synthetic_guest(vm, spec)), mem(g.mem()), as(mem, g.layout) {}
    uint64_t direct(uint64_t pa) const { return spec.page_offset + pa; }   // direct-map KVA of a PA
};
struct KaslrGuestL5 : KaslrGuest {
    KaslrGuestL5() : KaslrGuest(true) {}
};

} // namespace

TEST_CASE("locate_kernel: nokaslr, KASLR with 4-level and 5-level paging") {
    Vmlinux vm = test_vmlinux();
    SyntheticSpec plain;
    plain.cpus = 2;
    for (const SyntheticSpec &spec : {plain, kaslr_spec(false), kaslr_spec(true)}) {
        CAPTURE(spec.l5);
        CAPTURE(spec.image_delta);
        SyntheticGuest g = build_synthetic_guest(vm, spec);
        GuestMem mem = g.mem();
        Located loc = locate_kernel(mem, vm);
        REQUIRE(loc.status == Located::Status::found);
        CHECK(loc.layout.image_delta == spec.image_delta);
        CHECK(loc.layout.text_slide == spec.text_slide);
        CHECK(loc.layout.page_offset == spec.page_offset);
        CHECK(loc.layout.l5 == spec.l5);
        CHECK(loc.layout.pgt_root_pa == PGT - START_KERNEL_MAP + spec.image_delta);
        // the recovered address space reads known data through every mapping
        AddressSpace as(mem, loc.layout);
        char buf[14] = {};
        REQUIRE(as.read_virt(as.runtime_kva(BANNER), buf, 13));
        CHECK(std::string(buf) == "Linux version");
        CHECK(as.walk(as.runtime_kva(BANNER)) == as.symbol_pa(BANNER));
        CHECK(as.walk(spec.page_offset + 0x5000) == 0x5000);           // direct map, 1 GiB page
        auto pas = resolve_rq_pas(as, vm, spec.cpus);
        REQUIRE(pas);
        CHECK(*pas == g.rq_pa);
        // the hint path finds it again
        CHECK(locate_kernel(mem, vm, &loc.layout).status == Located::Status::found);
    }
}

TEST_CASE_FIXTURE(KaslrGuest, "locate_kernel: not yet while the banner is missing or phys_base is not set") {
    uint64_t banner_pa = BANNER - START_KERNEL_MAP + spec.image_delta;
    uint64_t pb_pa = PHYS_BASE - START_KERNEL_MAP + spec.image_delta;
    // before __startup_64: phys_base still 0 => slide guess == image_delta, page tables disagree
    put64(g, pb_pa, 0);
    Located loc = locate_kernel(mem, vm);
    CHECK(loc.status == Located::Status::not_yet);
    CHECK(loc.detail.find("page tables") != std::string::npos);
    put64(g, pb_pa, spec.image_delta - spec.text_slide);
    CHECK(locate_kernel(mem, vm).status == Located::Status::found);
    // the banner is half written (decompression in progress)
    g.bytes[banner_pa + 20] = 0;
    loc = locate_kernel(mem, vm);
    CHECK(loc.status == Located::Status::not_yet);
    CHECK(find_foreign_banner(mem, vm.banner).empty());                // a prefix of ours is not foreign
    // an implausible page_offset_base
    std::memcpy(&g.bytes[banner_pa], vm.banner.c_str(), vm.banner.size() + 1);
    put64(g, POB - START_KERNEL_MAP + spec.image_delta, 0x1234);
    CHECK(locate_kernel(mem, vm).detail.find("page_offset_base") != std::string::npos);
}

TEST_CASE_FIXTURE(KaslrGuest, "a different kernel's banner is reported; ours anywhere in memory is not a mismatch") {
    uint64_t banner_pa = BANNER - START_KERNEL_MAP + spec.image_delta;
    std::memset(&g.bytes[banner_pa], 0, vm.banner.size());
    const std::string other = "Linux version 6.1.0-other (a@b) (gcc) #1 SMP\n";
    std::memcpy(&g.bytes[g.free_pa + 3], other.c_str(), other.size() + 1);
    CHECK(locate_kernel(mem, vm).status == Located::Status::not_yet);
    CHECK(find_foreign_banner(mem, vm.banner) == other);
    // the kernel's second, weak banner (no build number) is not the one reported
    const std::string weak = "Linux version 6.1.0-other (a@b) (gcc) # SMP\n";
    std::memcpy(&g.bytes[g.free_pa + 0x200], weak.c_str(), weak.size() + 1);
    CHECK(find_foreign_banner(mem, vm.banner) == other);
    // our banner at an unaligned place (the decompressed ELF before the move)
    std::memcpy(&g.bytes[g.free_pa + 0x10001], vm.banner.c_str(), vm.banner.size() + 1);
    CHECK(find_foreign_banner(mem, vm.banner).empty());
}

TEST_CASE_FIXTURE(KaslrGuest, "readiness: per-CPU offsets must be set up and rq->cpu must agree") {
    uint64_t pco_pa = as.symbol_pa(PCO);
    std::string why;
    REQUIRE(resolve_rq_pas(as, vm, 4, &why));
    uint64_t off1 = mem.read_u64(pco_pa, 8);
    // boot placeholder: every CPU's offset points into the kernel image
    for (int c = 0; c < 4; c++) put64(g, pco_pa + 8 * c, as.runtime_kva(TEXT + 0x1000));
    CHECK_FALSE(resolve_rq_pas(as, vm, 4, &why));
    CHECK(why.find("not in the direct map") != std::string::npos);
    // all equal but in the direct map
    for (int c = 0; c < 4; c++) put64(g, pco_pa + 8 * c, off1);
    CHECK_FALSE(resolve_rq_pas(as, vm, 4, &why));
    CHECK(why.find("duplicate") != std::string::npos);
    for (int c = 0; c < 4; c++) put64(g, pco_pa + 8 * c, spec.page_offset + g.rq_pa[c] - RUNQUEUES);
    mem.write_u32(g.rq_pa[2], 72, 0);
    CHECK_FALSE(resolve_rq_pas(as, vm, 4, &why));
    CHECK(why.find("cpu 2") != std::string::npos);
    mem.write_u32(g.rq_pa[2], 72, 2);
    CHECK(resolve_rq_pas(as, vm, 4, &why));
    // an offset that puts the rq past the end of memory
    put64(g, pco_pa + 24, spec.page_offset + g.bytes.size() - 8 - RUNQUEUES);
    CHECK_FALSE(resolve_rq_pas(as, vm, 4, &why));
}

TEST_CASE_FIXTURE(KaslrGuestL5, "sampler: rq, sched_ext, schedstat, domains and event counters") {
    for (uint32_t c = 0; c < 4; c++) {
        uint64_t rq = g.rq_pa[c];
        mem.write_u32(rq, 4, 10 + c);
        mem.write_u64(rq, 64, 5000000 + c);
        mem.write_u32(rq, 128, 20 + c);
        mem.write_u32(rq, 132, 1);
        mem.write_u32(rq, 160, 30 + c);
        mem.write_u64(rq, 208, 777);
        mem.write_u32(rq, 220, 99);
    }
    // CPU 0: three domains, the last pointing back to the first (a loop in guest data)
    uint64_t sd = g.free_pa, name = g.free_pa + 0x800;
    std::memcpy(&g.bytes[name], "MC\0", 3);
    for (int l = 0; l < 3; l++) {
        uint64_t pa = sd + 0x100 * l;
        put64(g, pa + 0, direct(sd + 0x100 * ((l + 1) % 3)));
        mem.write_u32(pa, 8, l);
        mem.write_u32(pa, 16, 2 << l);
        put64(g, pa + 40, direct(name));
    }
    put64(g, g.rq_pa[0] + 240, direct(sd));
    // CPU 1: a chain longer than 8 levels
    uint64_t chain = g.free_pa + 0x1000;
    for (int l = 0; l < 12; l++) {
        put64(g, chain + 0x40 * l, l < 11 ? direct(chain + 0x40 * (l + 1)) : 0);
        mem.write_u32(chain + 0x40 * l, 8, l);
    }
    put64(g, g.rq_pa[1] + 240, direct(chain));
    // scx_root -> scx_sched whose pcpu area (a __percpu pointer) holds event counters
    uint64_t sched = g.free_pa + 0x2000, pcpu_base = g.free_pa + 0x4000;
    uint64_t pco_pa = as.symbol_pa(PCO);
    uint64_t cpu0_off = mem.read_u64(pco_pa, 0);
    uint64_t pcpu_ptr = direct(pcpu_base) - cpu0_off;   // so that cpu 0's copy lands at pcpu_base
    put64(g, sched + 16, pcpu_ptr);
    Sampler sampler(as, vm, g.rq_pa);
    Sample s;
    sampler.sample(123, s);
    REQUIRE(s.cpus.size() == 4);
    CHECK_FALSE(s.cpus[0].events);                                       // scx_root still NULL
    put64(g, as.symbol_pa(SCX_ROOT), direct(sched));
    put64(g, pcpu_base + 8 + 0, 41);                                     // select_cpu_fallback
    put64(g, pcpu_base + 8 + 16, 43);                                    // dispatch_keep_last
    sampler.sample(223, s);
    CHECK(s.elapsed_ms == 223);
    for (uint32_t c = 0; c < 4; c++) {
        CHECK(s.cpus[c].nr_running == 10 + c);
        CHECK(s.cpus[c].rq_clock == 5000000 + c);
        CHECK(s.cpus[c].scx_nr_running == 20 + c);
        CHECK(s.cpus[c].scx_flags == 1);
        CHECK(s.cpus[c].local_dsq_depth == 30 + c);
        REQUIRE(s.cpus[c].schedstat);
        CHECK(s.cpus[c].schedstat->run_delay == 777);
        CHECK(s.cpus[c].schedstat->sched_count == 99);
    }
    REQUIRE(s.cpus[0].domains);
    CHECK(s.cpus[0].domains->size() == 3);                               // stopped at the loop
    CHECK((*s.cpus[0].domains)[2].span_weight == 8);
    CHECK((*s.cpus[0].domains)[0].name == "MC");
    CHECK(s.cpus[1].domains->size() == 8);                               // capped
    CHECK(s.cpus[2].domains->empty());                                   // rq->sd NULL
    REQUIRE(s.cpus[0].events);
    CHECK((*s.cpus[0].events)[0] == 41);
    CHECK((*s.cpus[0].events)[2] == 43);
    CHECK_FALSE((*s.cpus[0].events)[6]);                                 // no offset: absent, not 0
    // cpu 1's per-CPU copy lies elsewhere in the direct map: reads what is there (zero here)
    REQUIRE(s.cpus[1].events);
    CHECK((*s.cpus[1].events)[0] == 0);
    // JSON: omitted members stay omitted, values round-trip
    ojson j = sample_to_json(s);
    CHECK(j["cpus"][0]["event_counters"]["select_cpu_fallback"] == 41);
    CHECK_FALSE(j["cpus"][0]["event_counters"].contains("reenq_local_repeat"));
    CHECK(j["cpus"][0]["sched_domains"][0]["name"] == "MC");
    Sample back = sample_from_json(json::parse(j.dump()), "test");
    CHECK(back.cpus[3].local_dsq_depth == 33);
    CHECK((*back.cpus[0].events)[2] == 43);
    CHECK(back.cpus[0].schedstat->run_delay == 777);
}

namespace {
// An xarray node at pa with `shift`, slots set from the map.
void xa_node(SyntheticGuest &g, uint64_t pa, uint8_t shift, std::vector<std::pair<int, uint64_t>> slots) {
    g.bytes[pa + 0] = shift;
    for (auto [i, v] : slots) put64(g, pa + 40 + 8 * i, v);
}
} // namespace

TEST_CASE_FIXTURE(KaslrGuest, "IDR walk: empty, single entry, one and two levels, internal markers, idr_next bound") {
    uint64_t idr = as.symbol_pa(MAP_IDR);
    CHECK(idr_entries(as, vm.off, idr).empty());
    // single entry: the head itself is the object pointer at index 0
    put64(g, idr + 8, direct(0x123000));
    auto e = idr_entries(as, vm.off, idr);
    REQUIRE(e.size() == 1);
    CHECK(e[0] == std::pair<uint32_t, uint64_t>{0, direct(0x123000)});
    // one level: node at N with ids 1 and 5, and a retry marker (0x402) at 3
    uint64_t n1 = g.free_pa;
    xa_node(g, n1, 0, {{1, direct(0x200000)}, {3, 0x402}, {5, direct(0x201000)}});
    put64(g, idr + 8, direct(n1) | 2);
    mem.write_u32(idr, 20, 6);
    e = idr_entries(as, vm.off, idr);
    REQUIRE(e.size() == 2);
    CHECK(e[0].first == 1);
    CHECK(e[1] == std::pair<uint32_t, uint64_t>{5, direct(0x201000)});
    mem.write_u32(idr, 20, 2);                                   // idr_next bounds the scan
    CHECK(idr_entries(as, vm.off, idr).size() == 1);
    // two levels: root shift 6, child for ids 64..127
    uint64_t root = g.free_pa + 0x1000, child = g.free_pa + 0x2000;
    xa_node(g, root, 6, {{0, direct(n1) | 2}, {1, direct(child) | 2}});
    xa_node(g, child, 0, {{2, direct(0x202000)}});
    put64(g, idr + 8, direct(root) | 2);
    mem.write_u32(idr, 20, 200);
    e = idr_entries(as, vm.off, idr);
    REQUIRE(e.size() == 3);
    CHECK(e[2] == std::pair<uint32_t, uint64_t>{66, direct(0x202000)});
    // a node pointer that translates nowhere: entries below it are skipped, no crash
    xa_node(g, root, 6, {{0, 0xffffc90000000002ull}, {1, direct(child) | 2}});
    e = idr_entries(as, vm.off, idr);
    REQUIRE(e.size() == 1);
    CHECK(e[0].first == 66);
}

TEST_CASE_FIXTURE(KaslrGuest, "BPF maps: names, types, array values through vmalloc mappings, bounds and ambiguity") {
    uint64_t node = g.free_pa;
    // map 1: array "sched.bss" (vmalloc'd: two non-adjacent physical pages)
    const uint64_t vmap = 0xffffc90000010000ull;
    uint64_t m1 = g.free_pa + 0x10000, m1b = g.free_pa + 0x30000;
    g.map(vmap, m1, 4096);
    g.map(vmap + 4096, m1b, 4096);
    mem.write_u32(m1, 24, BPF_MAP_TYPE_ARRAY);
    mem.write_u32(m1, 32, 4000);              // value_size: the value runs into the second page
    mem.write_u32(m1, 36, 1);
    mem.write_u32(m1, 52, 1);
    std::memcpy(&g.bytes[m1 + 88], "sched.bss\0", 10);
    // map 2: a hash map whose 16-byte name has no NUL
    uint64_t m2 = g.free_pa + 0x20000;
    mem.write_u32(m2, 24, 1);
    mem.write_u32(m2, 52, 2);
    std::memcpy(&g.bytes[m2 + 88], "abcdefghijklmnop", 16);
    // map 3: another array ending in ".bss"
    uint64_t m3 = g.free_pa + 0x21000;
    mem.write_u32(m3, 24, BPF_MAP_TYPE_ARRAY);
    mem.write_u32(m3, 32, 8);
    mem.write_u32(m3, 52, 3);
    std::memcpy(&g.bytes[m3 + 88], "other.bss\0", 10);
    xa_node(g, node, 0, {{1, vmap}, {2, direct(m2)}, {3, direct(m3)}, {4, 0xffffc90000900000ull}});
    uint64_t idr = as.symbol_pa(MAP_IDR);
    put64(g, idr + 8, direct(node) | 2);
    mem.write_u32(idr, 20, 5);
    auto maps = list_maps(as, vm);
    REQUIRE(maps.size() == 3);                                          // id 4 untranslatable: skipped
    CHECK(maps[0].name == "sched.bss");
    CHECK(maps[0].value_size == 4000);
    CHECK(maps[1].name == "abcdefghijklmnop");
    CHECK(std::string(map_type_name(maps[1].type)) == "hash");
    CHECK(find_array_map(maps, "sched.bss").id == 1);
    CHECK_THROWS_WITH_AS(find_array_map(maps, ".bss"), doctest::Contains("ambiguous"), Error);
    CHECK_THROWS_WITH_AS(find_array_map(maps, "abcdefghijklmnop"), doctest::Contains("no array map"), Error);
    // the value starts at +256 of the map and crosses onto the second physical page
    MapInfo m = maps[0];
    std::string payload(100, 'x');
    write_array_value(as, vm, m, 3800, payload);
    CHECK(g.bytes[m1 + 256 + 3800] == 'x');
    CHECK(g.bytes[m1b + (256 + 3899 - 4096)] == 'x');
    CHECK(read_array_value(as, vm, m, 3800, 100) == payload);
    CHECK_THROWS_WITH_AS(read_array_value(as, vm, m, 3950, 51), doctest::Contains("past its value size"), Error);
    CHECK_THROWS_AS(write_array_value(as, vm, maps[1], 0, "ab"), Error);   // not an array
    // unmap the second page: refused whole, no partial write
    g.map(vmap + 4096, 0, 4096);   // present, but...
    put64(g, g.next_table - 4096 + 8 * 17, 0);                            // ...clear the PTE again
    g.bytes[m1 + 256 + 3800] = 'y';
    CHECK_THROWS_WITH_AS(write_array_value(as, vm, m, 3800, payload), doctest::Contains("not mapped"), Error);
    CHECK(g.bytes[m1 + 256 + 3800] == 'y');
}

TEST_CASE_FIXTURE(KaslrGuest, "BPF programs: struct_ops type, aux name and verified_insns") {
    uint64_t prog = g.free_pa + 0x100, aux = g.free_pa + 0x1000, noaux = g.free_pa + 0x2000;
    mem.write_u32(prog, 4, BPF_PROG_TYPE_STRUCT_OPS);
    put64(g, prog + 56, direct(aux));
    mem.write_u32(aux, 100, 1234);
    std::memcpy(&g.bytes[aux + 120], "simple_enqueue\0", 15);
    put64(g, as.symbol_pa(PROG_IDR) + 8, direct(prog));                    // single entry at id 0
    put64(g, noaux + 56, 0);
    auto progs = list_progs(as, vm);
    REQUIRE(progs.size() == 1);
    CHECK(progs[0].name == "simple_enqueue");
    CHECK(progs[0].verified_insns == 1234);
    CHECK(progs[0].type == BPF_PROG_TYPE_STRUCT_OPS);
}

// ---- summary and verdict (spec 8) -------------------------------------------------------

namespace {
CpuSample cpu(uint32_t nr, uint64_t clock, uint32_t dsq = 0, std::optional<uint64_t> vcpu = std::nullopt) {
    CpuSample c;
    c.nr_running = nr;
    c.rq_clock = clock;
    c.has_scx = true;
    c.local_dsq_depth = dsq;
    c.vcpu_cpu_time_ns = vcpu;
    return c;
}
Sample sample(uint64_t ms, std::vector<CpuSample> cpus) { return Sample{ms, std::move(cpus)}; }
constexpr uint64_t THR = 10000000;   // 10 ms
} // namespace

TEST_CASE("per-sample helpers") {
    CHECK(imbalance_ratio(sample(0, {})) == 1.0);
    CHECK(imbalance_ratio(sample(0, {cpu(0, 1), cpu(0, 2)})) == 0.0);
    CHECK(imbalance_ratio(sample(0, {cpu(8, 1), cpu(2, 2)})) == 4.0);
    CHECK(imbalance_ratio(sample(0, {cpu(5, 1), cpu(0, 2)})) == 5.0);   // min clamps to 1
    CHECK(sample_looks_valid(sample(0, {cpu(1, 1, 10000)})));
    CHECK_FALSE(sample_looks_valid(sample(0, {cpu(1, 1, 10001)})));
    CHECK(preemption_threshold_ns(1000) == 10000000);
    CHECK(preemption_threshold_ns(250) == 40000000);
    CHECK(preemption_threshold_ns(100) == 100000000);
    CHECK(preemption_threshold_ns(0) == 40000000);
}

TEST_CASE("stall predicate: idle, preempted and missing vCPU time") {
    CHECK(stalled(cpu(1, 100), cpu(1, 100), THR));
    CHECK_FALSE(stalled(cpu(1, 100), cpu(1, 101), THR));               // clock advanced
    CHECK_FALSE(stalled(cpu(0, 100), cpu(0, 100), THR));               // idle both times
    CHECK(stalled(cpu(0, 100), cpu(2, 100), THR));                     // idle -> busy is not exempt
    CHECK_FALSE(stalled(cpu(1, 0), cpu(1, 0), THR));                   // clock 0: not initialized
    CHECK_FALSE(stalled(cpu(1, 100, 0, 50), cpu(1, 100, 0, 50 + THR - 1), THR));   // vCPU preempted
    CHECK(stalled(cpu(1, 100, 0, 50), cpu(1, 100, 0, 50 + THR), THR)); // it ran: a real stall
    CHECK(stalled(cpu(1, 100, 0, 50), cpu(1, 100), THR));              // missing time still fires
    CHECK_FALSE(stalled(cpu(1, 100, 0, 500), cpu(1, 100, 0, 400), THR));   // backwards saturates to 0
}

TEST_CASE("sustained tracker") {
    SustainedTracker t;
    for (size_t i = 0; i < 4; i++) t.record(true, double(i), i);
    CHECK_FALSE(t.sustained(5));
    t.record(false, 0, 4);
    CHECK(t.consecutive == 0);
    for (size_t i = 5; i < 10; i++) t.record(true, double(i), i);
    CHECK(t.sustained(5));
    CHECK(t.worst_run == 5);
    CHECK(t.worst_at == 9);
    CHECK(t.worst_value == 9.0);
}

TEST_CASE("verdict: stall sustained at N fails, N-1 passes, a good sample resets") {
    Thresholds t;   // sustained 5
    auto run = [&](int stuck, bool reset_in_middle) {
        std::vector<Sample> s;
        uint64_t clock = 1000;
        s.push_back(sample(0, {cpu(1, clock), cpu(1, 5)}));
        for (int i = 1; i <= stuck; i++) {
            if (reset_in_middle && i == 3) clock++;
            s.push_back(sample(100 * i, {cpu(1, clock), cpu(1, 5 + i)}));
        }
        return evaluate(s, t, THR);
    };
    CHECK_FALSE(run(5, false).passed);
    CHECK(run(4, false).passed);
    CHECK(run(6, true).passed);
    Verdict v = run(5, false);
    REQUIRE(v.violations.size() == 1);
    CHECK(v.violations[0].check == "stall");
    CHECK(v.violations[0].cpu == 0u);
    CHECK(v.details[0] == "cpu0 stalled: rq_clock stuck at 1000 with runnable tasks for 5 consecutive samples "
                         "(ending at sample 5)");
    CHECK(v.summary == "monitor FAILED: 1 violation(s)");
    t.fail_on_stall = false;
    CHECK(run(5, false).passed);
}

TEST_CASE("verdict: imbalance, DSQ depth, plausibility, event rates") {
    Thresholds t;
    std::vector<Sample> s;
    for (int i = 0; i < 6; i++) s.push_back(sample(100 * i, {cpu(9, 10 + i, 60), cpu(2, 20 + i)}));
    Verdict v = evaluate(s, t, THR);
    CHECK_FALSE(v.passed);
    REQUIRE(v.violations.size() == 2);
    CHECK(v.violations[0].check == "imbalance");
    CHECK(v.details[0] == "imbalance ratio 4.5 exceeded threshold 4.0 for 6 consecutive samples (ending at sample 5)");
    CHECK(v.violations[1].check == "local_dsq_depth");
    CHECK(v.violations[1].cpu == 0u);
    CHECK(v.details[1] == "local DSQ depth 60 on cpu0 exceeded threshold 50 for 6 consecutive samples (ending at sample 5)");
    // one implausible sample anywhere: "not yet initialized", no checks
    s[3].cpus[1].local_dsq_depth = 20000;
    v = evaluate(s, t, THR);
    CHECK(v.passed);
    CHECK_FALSE(v.evaluated);
    CHECK(v.summary == "monitor data not yet initialized (sample 3 has a local DSQ depth over 10000)");
    // identical clocks everywhere: not initialized either
    std::vector<Sample> same;
    for (int i = 0; i < 6; i++) same.push_back(sample(100 * i, {cpu(3, 7), cpu(3, 7)}));
    CHECK(evaluate(same, t, THR).summary == "monitor data not yet initialized (every rq_clock is identical)");
    CHECK(evaluate({}, t, THR).summary == "no monitor samples");
    // fallback rate: 100 events per 100 ms = 1000/s > 200/s for 5 intervals
    std::vector<Sample> ev;
    for (int i = 0; i < 6; i++) {
        Sample x = sample(100 * i, {cpu(1, 10 + i), cpu(1, 20 + i)});
        x.cpus[0].events.emplace();
        (*x.cpus[0].events)[0] = 100 * i;
        (*x.cpus[0].events)[2] = 0;
        ev.push_back(x);
    }
    v = evaluate(ev, t, THR);
    REQUIRE(v.violations.size() == 1);
    CHECK(v.violations[0].check == "fallback_rate");
    CHECK(v.violations[0].value == doctest::Approx(1000.0));
    CHECK(v.details[0] == "select_cpu_fallback rate 1000.0/s exceeded threshold 200.0/s for 5 consecutive samples "
                          "(ending at sample 5)");
    // a zero-length interval never violates; a counter reset (negative rate) neither
    for (auto &x : ev) x.elapsed_ms = 0;
    CHECK(evaluate(ev, t, THR).passed);
    Thresholds bad;
    bad.sustained_samples = 0;
    CHECK_THROWS_AS(bad.validate(), Error);
}

TEST_CASE("verdict: differing CPU counts between samples compare the common CPUs") {
    Thresholds t;
    std::vector<Sample> s;
    for (int i = 0; i < 6; i++) {
        std::vector<CpuSample> c = {cpu(1, 50), cpu(1, 100 + i)};
        if (i % 2) c.push_back(cpu(1, 7));
        s.push_back(sample(100 * i, c));
    }
    Verdict v = evaluate(s, t, THR);
    REQUIRE(v.violations.size() == 1);
    CHECK(v.violations[0].cpu == 0u);
}

TEST_CASE("summary: averages, stall flag, clamped event deltas and rates, warmup trim") {
    std::vector<Sample> s;
    for (int i = 0; i < 5; i++) {
        Sample x = sample(1000 * i, {cpu(2, 10 + i, 4), cpu(4, 20 + i, 0)});
        x.cpus[0].events.emplace();
        (*x.cpus[0].events)[0] = i == 3 ? 0 : 10 * i;   // a reset at sample 3
        (*x.cpus[0].events)[2] = 5 * i;
        x.cpus[1].schedstat = Schedstat{};
        x.cpus[1].schedstat->run_delay = 1000 * i;
        x.cpus[1].schedstat->sched_count = 10 * i;
        s.push_back(x);
    }
    s.push_back(sample(5000, {cpu(2, 14, 0), cpu(4, 30, 0)}));     // cpu 0 clock stuck, busy
    s.push_back(sample(5100, {cpu(1, 1, 20000)}));                   // implausible: ignored
    Summary r = summarize(s, THR);
    CHECK(r.total_samples == 7);
    CHECK(r.valid_samples == 6);
    CHECK(r.max_imbalance_ratio == 2.0);
    CHECK(r.max_local_dsq_depth == 4);
    CHECK(r.avg_nr_running == 3.0);
    CHECK(r.stall_detected);
    REQUIRE(r.event_deltas);
    CHECK((*r.event_deltas)[0] == 40);
    CHECK((*r.event_deltas)[2] == 20);
    CHECK(r.fallback_rate == doctest::Approx(10.0));
    CHECK(r.keep_last_rate == doctest::Approx(5.0));
    CHECK(r.max_fallback_burst == 40);                               // 0 -> 40 after the reset
    REQUIRE(r.schedstat_deltas);
    CHECK(r.schedstat_deltas->run_delay == 4000);
    CHECK(r.run_delay_rate == doctest::Approx(1000.0));
    CHECK(r.sched_count_rate == doctest::Approx(10.0));
    ojson j = summary_to_json(r);
    CHECK(j["event_deltas"]["select_cpu_fallback"] == 40);
    std::vector<Sample> many(25, sample(0, {cpu(1, 1)}));
    for (size_t i = 0; i < many.size(); i++) many[i].elapsed_ms = i;
    auto trimmed = trim_warmup(many);
    CHECK(trimmed.size() == 5);
    CHECK(trimmed[0].elapsed_ms == 20);
    CHECK(trim_warmup(std::vector<Sample>(20)).size() == 20);
}

TEST_CASE("ViolationChecker reports each check once, when it becomes sustained") {
    Thresholds t;
    t.sustained_samples = 3;
    ViolationChecker c(t, THR);
    std::vector<size_t> fired;
    for (int i = 0; i < 8; i++) {
        auto v = c.add(sample(100 * i, {cpu(1, 77), cpu(1, 100 + i)}));
        if (!v.empty()) fired.push_back(size_t(i));
    }
    CHECK(fired == std::vector<size_t>{3});   // samples 1,2,3 are the 3 stalled intervals
    CHECK(c.verdict().violations.size() == 1);
    CHECK(c.verdict().summary == "monitor FAILED: 1 violation(s)");
}

TEST_CASE("stall under one host thread for all vCPUs (TCG single-threaded): only after as many samples as vCPUs") {
    // Four vCPUs, one QEMU thread: every CPU reports the thread's time, which
    // advances by 100 ms per sample. CPU 2 is busy and its rq clock is stuck.
    auto shared = [](uint64_t i, uint64_t stuck_until) {
        std::vector<CpuSample> cs;
        for (uint32_t c = 0; c < 4; c++)
            cs.push_back(cpu(1, c == 2 && i <= stuck_until ? 500 : 1000 + i, 0, 100000000 * i));
        return sample(100 * i, cs);
    };
    CHECK(shared_vcpu_thread(shared(1, 0)));
    CHECK_FALSE(shared_vcpu_thread(sample(0, {cpu(1, 1, 0, 5), cpu(1, 1, 0, 6)})));
    CHECK_FALSE(shared_vcpu_thread(sample(0, {cpu(1, 1, 0, 5)})));      // one vCPU
    CHECK_FALSE(shared_vcpu_thread(sample(0, {cpu(1, 1), cpu(1, 1)})));   // no times
    // Stuck for 3 intervals (samples 0..3): round-robin can do that to 1 of 4 vCPUs.
    std::vector<Sample> rr;
    for (uint64_t i = 0; i < 8; i++) rr.push_back(shared(i, 3));
    CHECK_FALSE(summarize(rr, THR).stall_detected);
    Thresholds t;
    t.sustained_samples = 2;
    ViolationChecker c(t, THR);
    for (auto &s : rr) c.add(s);
    CHECK(c.verdict().violations.empty());
    // Stuck for 4 intervals: a stall.
    std::vector<Sample> stuck;
    for (uint64_t i = 0; i < 8; i++) stuck.push_back(shared(i, 4));
    CHECK(summarize(stuck, THR).stall_detected);
    ViolationChecker c2(t, THR);
    for (auto &s : stuck) c2.add(s);
    REQUIRE(c2.verdict().violations.size() == 1);
    CHECK(c2.verdict().violations[0].cpu == std::optional<uint32_t>(2));
    // With a thread per vCPU one stuck interval in which the vCPU ran is enough.
    std::vector<Sample> own{sample(0, {cpu(1, 500, 0, 0), cpu(1, 1, 0, 0)}),
                            sample(100, {cpu(1, 500, 0, 100000000), cpu(1, 2, 0, 50)})};
    CHECK(summarize(own, THR).stall_detected);
}

TEST_CASE("ViolationChecker: indices from first_index, the CPU of the worst DSQ run, no samples") {
    Thresholds t;
    t.sustained_samples = 2;
    ViolationChecker c(t, THR, 20);   // a caller that skipped 20 warmup samples
    CHECK(c.verdict().summary == "no monitor samples");
    // cpu 1 deep for 2 samples, then cpu 0 deep for 3: the worst run is cpu 0's
    for (int i = 0; i < 5; i++) {
        bool early = i < 2;
        c.add(sample(100 * i, {cpu(1, 10 + i, early ? 0 : 70), cpu(1, 20 + i, early ? 80 : 0)}));
    }
    Verdict v = c.verdict();
    REQUIRE(v.violations.size() == 1);
    CHECK(v.violations[0].check == "local_dsq_depth");
    CHECK(v.violations[0].cpu == 0u);
    CHECK(v.violations[0].run == 5);   // deep somewhere in every sample
    CHECK(v.violations[0].at == 24);
    CHECK(v.violations[0].first() == 20);
    CHECK(v.details[0] == "local DSQ depth 70 on cpu0 exceeded threshold 50 for 5 consecutive samples (ending at sample 24)");
}

// ---- offline session: the real protocol over a Unix socket ------------------------------

TEST_CASE_FIXTURE(KaslrGuest, "session over a socket: layout + memfd -> meta, samples, violation, summary, end") {
    // rq clocks of cpu 1 stay still with a runnable task: a stall after 2 samples
    for (uint32_t c = 0; c < 4; c++) g.mem().write_u32(g.rq_pa[c], 4, 1);
    unique_fd memfd(memfd_create("ktstr-test-guest", MFD_CLOEXEC));
    REQUIRE(memfd);
    write_all(memfd.get(), g.bytes.data(), g.bytes.size());
    std::string path = cat("/tmp/ktstr-monitor-test.", getpid(), ".sock");
    unique_fd listener = unix_listen(path);
    ojson layout = make_doc("layout", 1);
    layout["arch"] = "x86_64";
    layout["accel"] = "tcg";
    layout["regions"] = ojson::array({{{"gpa", 0}, {"size", g.bytes.size()}, {"fd_index", 0}, {"fd_offset", 0}, {"node", 0}}});
    layout["mem_size"] = g.bytes.size();
    layout["num_cpus"] = 4;
    layout["vcpu_tids"] = nullptr;
    std::thread server([&] {
        unique_fd c(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
        send_with_fds(c.get(), layout.dump(), {memfd.get()});
        // keep the connection open while the guest "runs"; the client closing ends it
        char b;
        while (::read(c.get(), &b, 1) > 0) {}
    });
    SessionOptions opt;
    opt.socket_path = path;
    opt.interval_ms = 5;
    opt.max_samples = 4;
    opt.thresholds.sustained_samples = 2;
    std::vector<ojson> lines;
    int rc;
    {
        AttachedGuest ag = attach(opt);
        CHECK(ag.num_cpus == 4);
        // the guest moves on: cpu 0's clock advances between samples (written through the shared memfd)
        rc = run_session(ag, vm, opt, [&](const ojson &d) {
            lines.push_back(d);
            if (d["event"] == "sample")
                ag.mem.write_u64(g.rq_pa[0], 64, ag.mem.read_u64(g.rq_pa[0], 64) + 1000);
        }, [] { return false; });
    }
    server.join();
    ::unlink(path.c_str());
    CHECK(rc == EXIT_VERDICT_FAILED);
    std::vector<std::string> events;
    for (auto &l : lines) {
        CHECK(l["schema"] == "ktstr.monitor/1");
        events.push_back(l["event"].get<std::string>());
    }
    REQUIRE(std::find(events.begin(), events.end(), "meta") != events.end());
    auto meta = *std::find_if(lines.begin(), lines.end(), [](auto &l) { return l["event"] == "meta"; });
    CHECK(meta["kaslr"] == true);
    CHECK(meta["text_slide"] == "0x3400000");
    CHECK(std::count(events.begin(), events.end(), "sample") == 4);
    auto viol = std::find_if(lines.begin(), lines.end(), [](auto &l) { return l["event"] == "violation"; });
    REQUIRE(viol != lines.end());
    CHECK((*viol)["check"] == "stall");
    CHECK((*viol)["cpu"] != 0);
    CHECK(events[events.size() - 2] == "summary");
    CHECK(lines.back()["event"] == "end");
    CHECK(lines.back()["reason"] == "count");
    CHECK(lines[lines.size() - 2]["verdict"]["passed"] == false);
}

TEST_CASE("layout errors are input errors naming the field") {
    std::vector<unique_fd> none;
    CHECK_THROWS_WITH_AS(attach_from_message("{\"schema\":\"ktstr.layout/2\"}", {}, true), doctest::Contains("layout"), Error);
    CHECK_THROWS_WITH_AS(attach_from_message("{\"schema\":\"ktstr.layout/1\",\"regions\":[]}", {}, true),
                         doctest::Contains("regions"), Error);
    CHECK_THROWS_WITH_AS(
        attach_from_message("{\"schema\":\"ktstr.layout/1\",\"num_cpus\":1,\"regions\":[{\"gpa\":0,\"size\":4096,\"fd_index\":0}]}",
                            {}, true),
        doctest::Contains("fd_index 0"), Error);
    std::vector<unique_fd> fds;
    fds.emplace_back(memfd_create("small", MFD_CLOEXEC));
    CHECK_THROWS_WITH_AS(
        attach_from_message("{\"schema\":\"ktstr.layout/1\",\"num_cpus\":1,\"regions\":[{\"gpa\":0,\"size\":4096,\"fd_index\":0}]}",
                            std::move(fds), true),
        doctest::Contains("holds 0 bytes"), Error);
}

TEST_CASE("vCPU threads by QEMU's names; the VM is gone when the VMM pid exits") {
    std::atomic<bool> done{false};
    std::atomic<pid_t> tid{0};
    std::thread t([&] {
        pthread_setname_np(pthread_self(), "CPU 1/TCG");
        tid = gettid();
        while (!done) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    });
    while (!tid) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    auto tids = discover_vcpu_tids(getpid(), 2);
    REQUIRE(tids.size() == 2);
    CHECK(tids[0] == 0);
    CHECK(tids[1] == tid);
    auto ns = vcpu_cpu_time_ns(getpid(), tid);
    CHECK(ns.has_value());
    CHECK_FALSE(vcpu_cpu_time_ns(getpid(), 0x7fffffff));
    done = true;
    t.join();
    CHECK(discover_vcpu_tids(getpid(), 2).empty());

    AttachedGuest g;
    g.vmm_pid = getpid();
    CHECK_FALSE(vm_gone(g));
    pid_t child = fork();
    if (child == 0) _exit(0);
    // an exited, not yet reaped child is a zombie: gone
    g.vmm_pid = child;
    for (int i = 0; i < 200 && !vm_gone(g); i++) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    CHECK(vm_gone(g));
    waitpid(child, nullptr, 0);
    CHECK(vm_gone(g));
}
