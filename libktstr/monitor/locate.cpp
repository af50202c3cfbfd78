// libktstr/monitor: finding the running kernel in guest memory without any
// help from the VMM (no CR3, no MSRs: TCG cannot give us vCPU registers), and
// deciding when its per-CPU data is valid.
//
// KASLR moves the image physically (image_delta) and virtually (text_slide),
// both in steps of CONFIG_PHYSICAL_ALIGN (>= 2 MiB), and randomizes the
// direct map base (page_offset_base).  The image stays physically
// contiguous, so one anchor fixes every image symbol's PA:
//   linux_banner's bytes sit at PA == link - START_KERNEL_MAP + image_delta,
//   i.e. at a PA congruent to its link address modulo 2 MiB: at most
//   mem_size / 2 MiB candidates to compare.
// The kernel itself records the rest in its image: phys_base (set by
// __startup_64 to image_delta - text_slide), page_offset_base,
// __pgtable_l5_enabled and init_top_pgt.  We trust the result only once the
// kernel's own page tables map _text + slide and linux_banner + slide onto
// the PAs found from the banner.
#include "ktstr/monitor.h"

#include <cstring>

namespace ktstr::monitor {

using namespace guestmem;

namespace {

bool banner_at(const GuestMem &mem, uint64_t pa, const std::string &want_with_nul) {
    const uint8_t *p = mem.span(pa, want_with_nul.size());
    return p && std::memcmp(p, want_with_nul.data(), want_with_nul.size()) == 0;
}

std::optional<uint64_t> find_banner_pa(const GuestMem &mem, const Vmlinux &vm, const KernelLayout *hint) {
    std::string want = vm.banner;
    want.push_back('\0');
    uint64_t link_pa = vm.syms.linux_banner - START_KERNEL_MAP;
    if (hint && banner_at(mem, link_pa + hint->image_delta, want)) return link_pa + hint->image_delta;
    if (banner_at(mem, link_pa, want)) return link_pa;                 // nokaslr
    for (uint64_t pa = link_pa % PHYSICAL_ALIGN_MIN; pa < mem.end(); pa += PHYSICAL_ALIGN_MIN)
        if (banner_at(mem, pa, want)) return pa;
    return std::nullopt;
}

} // namespace

Located locate_kernel(const GuestMem &mem, const Vmlinux &vm, const KernelLayout *hint) {
    Located r;
    auto banner_pa = find_banner_pa(mem, vm, hint);
    if (!banner_pa) {
        r.detail = "linux_banner not in guest memory yet (kernel not decompressed?)";
        return r;
    }
    const KernelSymbols &s = vm.syms;
    KernelLayout k;
    k.image_delta = *banner_pa - (s.linux_banner - START_KERNEL_MAP);
    AddressSpace image(mem, k);
    k.l5 = s.pgtable_l5_enabled && mem.read_u32(image.symbol_pa(*s.pgtable_l5_enabled)) != 0;
    if (s.phys_base) k.text_slide = k.image_delta - mem.read_u64(image.symbol_pa(*s.phys_base));
    if (s.page_offset_base) {
        uint64_t pob = mem.read_u64(image.symbol_pa(*s.page_offset_base));
        if (!plausible_page_offset(pob, k.l5)) {
            r.detail = cat("page_offset_base 0x", std::hex, pob, " not plausible yet");
            return r;
        }
        k.page_offset = pob;
    } else {
        k.page_offset = default_page_offset(k.l5);
    }
    if (k.text_slide % PHYSICAL_ALIGN_MIN != 0) {
        r.detail = cat("text slide 0x", std::hex, k.text_slide, " not 2 MiB aligned (phys_base not set yet)");
        return r;
    }
    if (s.init_top_pgt) {
        k.pgt_root_pa = image.symbol_pa(*s.init_top_pgt);
        uint64_t text = s.text.value_or(START_KERNEL_MAP + 0x1000000);
        auto text_pa = page_walk(mem, k.pgt_root_pa, text + k.text_slide, k.l5);
        auto ban_pa = page_walk(mem, k.pgt_root_pa, s.linux_banner + k.text_slide, k.l5);
        if (!text_pa || *text_pa != image.symbol_pa(text) || !ban_pa || *ban_pa != *banner_pa) {
            r.detail = cat("kernel page tables do not map the image at slide 0x", std::hex, k.text_slide,
                           " yet");
            return r;
        }
    } else if (k.text_slide != 0) {
        r.detail = "no init_top_pgt symbol to verify a KASLR slide";
        return r;
    }
    r.status = Located::Status::found;
    r.layout = k;
    return r;
}

std::string find_foreign_banner(const GuestMem &mem, const std::string &ours) {
    // Every NUL-terminated one-line "Linux version ...\n" string in memory.
    // Our own banner anywhere (e.g. in the decompressed ELF before the
    // kernel moves its segments into place) means "not placed yet", never a
    // mismatch; kernels also carry a second, weak banner without the build
    // number, so the foreign one only counts when ours is nowhere.
    static constexpr std::string_view prefix = "Linux version ";
    std::string foreign;
    for (const Region &reg : mem.regions()) {
        const uint8_t *p = reg.host, *end = reg.host + reg.size;
        while (p < end) {
            auto *hit = static_cast<const uint8_t *>(memmem(p, size_t(end - p), prefix.data(), prefix.size()));
            if (!hit) break;
            p = hit + 1;
            size_t room = std::min<size_t>(size_t(end - hit), 1024);
            const void *nul = std::memchr(hit, 0, room);
            if (!nul) continue;
            std::string found(reinterpret_cast<const char *>(hit), static_cast<const uint8_t *>(nul) - hit);
            if (found == ours) return "";
            // A half-written copy of ours is a prefix of it; a banner is one
            // line.  Report the longest (the full one, not the weak variant).
            if (found.size() > foreign.size() && found.size() > 24 && found.back() == '\n' &&
                found.find('\n') == found.size() - 1 && !starts_with(ours, found))
                foreign = found;
        }
    }
    return foreign;
}

std::optional<std::vector<uint64_t>> resolve_rq_pas(const AddressSpace &as, const Vmlinux &vm,
                                                    uint32_t num_cpus, std::string *why) {
    const GuestMem &mem = as.mem();
    uint64_t pco_pa = as.symbol_pa(vm.syms.per_cpu_offset);
    std::vector<uint64_t> offsets(num_cpus), pas(num_cpus);
    auto no = [&](std::string msg) -> std::optional<std::vector<uint64_t>> {
        if (why) *why = std::move(msg);
        return std::nullopt;
    };
    for (uint32_t cpu = 0; cpu < num_cpus; cpu++) {
        offsets[cpu] = mem.read_u64(pco_pa, 8ull * cpu);
        uint64_t kva = percpu_kva(vm.syms.runqueues, offsets[cpu]);
        auto pa = as.direct_pa(kva);
        if (!pa || !mem.span(*pa, vm.off.rq_clock + 8))
            return no(cat("cpu ", cpu, ": runqueue at 0x", std::hex, kva, " not in the direct map yet"));
        pas[cpu] = *pa;
    }
    if (num_cpus > 1) {
        std::vector<uint64_t> sorted = offsets;
        std::sort(sorted.begin(), sorted.end());
        if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
            return no("__per_cpu_offset not set up yet (duplicate offsets)");
    }
    if (vm.off.rq_cpu)
        for (uint32_t cpu = 0; cpu < num_cpus; cpu++) {
            uint32_t seen = mem.read_u32(pas[cpu], *vm.off.rq_cpu);
            if (seen != cpu) return no(cat("cpu ", cpu, ": rq->cpu reads ", seen, " (per-CPU areas not initialized)"));
        }
    return pas;
}

} // namespace ktstr::monitor
