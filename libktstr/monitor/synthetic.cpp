// libktstr/monitor: a synthetic guest memory image laid out the way a booted
// x86-64 kernel lays itself out, for unit tests, offline end-to-end tests and
// the sampling benchmark.  Page tables are built by the same rules the
// walker reads (spec 5.3): tables entries "next | 0x63", large leaves
// "pa | 0xe3".
#include "ktstr/monitor.h"

#include <cstring>

namespace ktstr::monitor {

using namespace guestmem;

namespace {

constexpr uint64_t PAGE = 4096;
constexpr uint64_t TABLE_FLAGS = 0x63;   // present, rw, accessed, dirty
constexpr uint64_t LEAF_LARGE = 0xe3;    // + PS

uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

struct Builder {
    std::vector<uint8_t> &mem;
    uint64_t next_table;
    bool l5;
    uint64_t root;

    void put64(uint64_t pa, uint64_t v) { std::memcpy(&mem.at(pa + 7) - 7, &v, 8); }
    uint64_t get64(uint64_t pa) { uint64_t v; std::memcpy(&v, &mem.at(pa + 7) - 7, 8); return v; }
    uint64_t alloc_table() { uint64_t t = next_table; next_table += PAGE; mem.at(t + PAGE - 1) = 0; return t; }

    // The table below entry (table, index), created on demand.
    uint64_t child(uint64_t table, uint64_t index) {
        uint64_t e = get64(table + 8 * index);
        if (!(e & 1)) { e = alloc_table() | TABLE_FLAGS; put64(table + 8 * index, e); }
        return e & 0x000ffffffffff000ull;
    }
    // Map one page of `size` (4 KiB, 2 MiB or 1 GiB) at kva -> pa.
    void map(uint64_t kva, uint64_t pa, uint64_t size) {
        uint64_t t = root;
        if (l5) t = child(t, (kva >> 48) & 511);
        t = child(t, (kva >> 39) & 511);
        if (size == (1ull << 30)) { put64(t + 8 * ((kva >> 30) & 511), pa | LEAF_LARGE); return; }
        t = child(t, (kva >> 30) & 511);
        if (size == (2ull << 20)) { put64(t + 8 * ((kva >> 21) & 511), pa | LEAF_LARGE); return; }
        t = child(t, (kva >> 21) & 511);
        put64(t + 8 * ((kva >> 12) & 511), pa | TABLE_FLAGS);
    }
};

uint64_t rq_extent(const KernelOffsets &o) {
    uint64_t m = std::max(o.rq_nr_running + 4, o.rq_clock + 8);
    if (o.rq_cpu) m = std::max(m, *o.rq_cpu + 4);
    if (o.scx) m = std::max({m, o.scx_nr_running + 4, o.scx_flags + 4, o.scx_local_dsq_nr + 4});
    if (o.schedstat) m = std::max({m, o.run_delay + 8, o.pcount + 8, o.ttwu_local + 4, o.yld_count + 4});
    if (o.rq_sd) m = std::max(m, *o.rq_sd + 8);
    return m;
}

} // namespace

void SyntheticGuest::map(uint64_t kva, uint64_t pa, uint64_t size) {
    Builder b{bytes, next_table, layout.l5, layout.pgt_root_pa};
    b.map(kva, pa, size);
    if (b.next_table > free_pa) fail(ErrorKind::input, "synthetic guest: out of page-table space");
    next_table = b.next_table;
}

SyntheticGuest build_synthetic_guest(const Vmlinux &vm, const SyntheticSpec &spec) {
    const KernelSymbols &s = vm.syms;
    SyntheticGuest g;
    KernelLayout &k = g.layout;
    k.image_delta = spec.image_delta;
    k.text_slide = spec.text_slide;
    k.page_offset = spec.page_offset;
    k.l5 = spec.l5;
    auto symbol_pa = [&](uint64_t link) { return link - START_KERNEL_MAP + k.image_delta; };

    // Every symbol we place must land inside the image; find its extent.
    uint64_t text = s.text.value_or(START_KERNEL_MAP + 0x1000000);
    uint64_t image_end_link = s.per_cpu_offset + 8ull * spec.cpus;
    for (auto v : {s.linux_banner + vm.banner.size() + 1, s.page_offset_base.value_or(0) + 8,
                   s.init_top_pgt.value_or(0) + PAGE, s.pgtable_l5_enabled.value_or(0) + 4,
                   s.phys_base.value_or(0) + 8, s.scx_root.value_or(0) + 8, s.map_idr.value_or(0) + 64,
                   s.prog_idr.value_or(0) + 64})
        image_end_link = std::max(image_end_link, v);
    uint64_t image_end_pa = round_up(symbol_pa(image_end_link), 2ull << 20);
    uint64_t stride = round_up(rq_extent(vm.off), 64);
    uint64_t percpu_base = image_end_pa;
    uint64_t tables = round_up(percpu_base + stride * spec.cpus, PAGE);
    uint64_t extra = round_up(tables + 64 * PAGE, PAGE);
    const uint64_t domain_stride = 512;
    bool domains = spec.domain_levels && vm.off.rq_sd && vm.off.domain;
    uint64_t domain_base = extra;
    if (domains) extra = round_up(extra + domain_stride * spec.domain_levels * spec.cpus, PAGE);
    uint64_t total = round_up(extra + spec.extra_bytes, 2ull << 20);
    g.bytes.assign(total, 0);

    if (!s.init_top_pgt) fail(ErrorKind::input, "synthetic guest: vmlinux has no init_top_pgt");
    k.pgt_root_pa = symbol_pa(*s.init_top_pgt);
    Builder b{g.bytes, tables, spec.l5, k.pgt_root_pa};
    for (uint64_t pa = 0; pa < total; pa += 1ull << 30) b.map(spec.page_offset + pa, pa, 1ull << 30);
    uint64_t text_pa = symbol_pa(text) & ~((2ull << 20) - 1);
    for (uint64_t pa = text_pa; pa < image_end_pa; pa += 2ull << 20)
        b.map(text + spec.text_slide - symbol_pa(text) + pa, pa, 2ull << 20);

    std::memcpy(&g.bytes.at(symbol_pa(s.linux_banner)), vm.banner.c_str(), vm.banner.size() + 1);
    if (s.page_offset_base) b.put64(symbol_pa(*s.page_offset_base), spec.page_offset);
    if (s.phys_base) b.put64(symbol_pa(*s.phys_base), k.phys_base());
    if (s.pgtable_l5_enabled) g.bytes.at(symbol_pa(*s.pgtable_l5_enabled)) = spec.l5 ? 1 : 0;

    g.next_table = b.next_table;
    g.free_pa = extra;   // after the domain objects
    GuestMem mem = g.mem();
    for (uint32_t cpu = 0; cpu < spec.cpus; cpu++) {
        uint64_t rq = percpu_base + stride * cpu;
        g.rq_pa.push_back(rq);
        // runqueues + __per_cpu_offset[cpu] == the rq's direct-map KVA
        b.put64(symbol_pa(s.per_cpu_offset) + 8ull * cpu, spec.page_offset + rq - s.runqueues);
        if (vm.off.rq_cpu) mem.write_u32(rq, *vm.off.rq_cpu, cpu);
        mem.write_u64(rq, vm.off.rq_clock, 1000000 + cpu);
        if (!domains) continue;
        // rq->sd -> level 0 -> ... -> level N-1 -> NULL, kmalloc'd (direct map);
        // names point into the image (runtime KVAs), like the kernel's string literals.
        const DomainOffsets &d = *vm.off.domain;
        for (uint32_t l = 0; l < spec.domain_levels; l++) {
            uint64_t pa = domain_base + domain_stride * (uint64_t(cpu) * spec.domain_levels + l);
            if (l == 0) mem.write_u64(rq, *vm.off.rq_sd, spec.page_offset + pa);
            mem.write_u64(pa, d.parent, l + 1 < spec.domain_levels ? spec.page_offset + pa + domain_stride : 0);
            mem.write_u32(pa, d.level, l);
            mem.write_u32(pa, d.span_weight, 2u << l);
            if (d.name) mem.write_u64(pa, *d.name, s.linux_banner + spec.text_slide);
        }
    }
    return g;
}

} // namespace ktstr::monitor
