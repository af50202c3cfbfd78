// libktstr/monitor: reading one sample of per-CPU scheduler state (spec 7).
#include "ktstr/monitor.h"

#include <cstring>

namespace ktstr::monitor {

using namespace guestmem;

Sampler::Sampler(const AddressSpace &as, const Vmlinux &vm, std::vector<uint64_t> rq_pas)
    : as_(as), vm_(vm), rq_pas_(std::move(rq_pas)) {
    uint64_t pco_pa = as_.symbol_pa(vm_.syms.per_cpu_offset);
    for (size_t cpu = 0; cpu < rq_pas_.size(); cpu++) cpu_offsets_.push_back(as_.mem().read_u64(pco_pa, 8 * cpu));
}

void Sampler::read_events(std::vector<CpuSample> &cpus) {
    const KernelOffsets &o = vm_.off;
    const GuestMem &mem = as_.mem();
    uint64_t root = mem.read_u64(as_.symbol_pa(*vm_.syms.scx_root));
    if (!root) return;                                  // no scheduler loaded: no counters
    auto sched_pa = as_.any_pa(root);
    if (!sched_pa) return;
    uint64_t pcpu = mem.read_u64(*sched_pa, o.scx_sched_pcpu);
    if (!pcpu) return;
    if (root != cached_root_ || pcpu != cached_pcpu_) {
        // A (re)loaded scheduler has a new scx_sched and per-CPU area.
        event_pas_.assign(cpus.size(), std::nullopt);
        for (size_t cpu = 0; cpu < cpus.size(); cpu++)
            event_pas_[cpu] = as_.any_pa(percpu_kva(pcpu, cpu_offsets_[cpu]) + o.event_stats_off);
        cached_root_ = root;
        cached_pcpu_ = pcpu;
    }
    for (size_t cpu = 0; cpu < cpus.size(); cpu++) {
        if (!event_pas_[cpu]) continue;
        auto &ev = cpus[cpu].events.emplace();
        for (size_t i = 0; i < SCX_EVENT_COUNT; i++)
            if (o.event_off[i]) ev[i] = mem.read_i64(*event_pas_[cpu], *o.event_off[i]);
    }
}

void read_domains(const AddressSpace &as, const KernelOffsets &off, uint64_t sd_kva, std::vector<DomainLevel> &out) {
    // Reuses out's elements: this runs for every CPU on every sample.
    size_t n = 0;
    if (off.domain) {
        const DomainOffsets &d = *off.domain;
        const GuestMem &mem = as.mem();
        constexpr size_t MAX_LEVELS = 8;
        std::array<uint64_t, MAX_LEVELS> seen{};
        for (; n < MAX_LEVELS && sd_kva; n++) {
            if (std::find(seen.begin(), seen.begin() + n, sd_kva) != seen.begin() + n) break;   // a loop in guest data
            seen[n] = sd_kva;
            auto pa = as.any_pa(sd_kva);
            if (!pa) break;
            if (out.size() <= n) out.emplace_back();
            DomainLevel &l = out[n];
            l.level = int32_t(mem.read_u32(*pa, d.level));
            l.flags = int32_t(mem.read_u32(*pa, d.flags));
            l.span_weight = mem.read_u32(*pa, d.span_weight);
            l.balance_interval = mem.read_u32(*pa, d.balance_interval);
            l.nr_balance_failed = mem.read_u32(*pa, d.nr_balance_failed);
            l.max_newidle_lb_cost = mem.read_u64(*pa, d.max_newidle_lb_cost);
            if (d.newidle)
                l.newidle = std::array<uint32_t, 3>{mem.read_u32(*pa, (*d.newidle)[0]),
                                                    mem.read_u32(*pa, (*d.newidle)[1]),
                                                    mem.read_u32(*pa, (*d.newidle)[2])};
            l.name.clear();
            if (d.name) {
                char buf[16] = {};
                uint64_t name_kva = mem.read_u64(*pa, *d.name);
                if (name_kva && as.read_virt(name_kva, buf, sizeof buf)) l.name.assign(buf, strnlen(buf, sizeof buf));
            }
            sd_kva = mem.read_u64(*pa, d.parent);
        }
    }
    out.resize(n);
}

void Sampler::sample(uint64_t elapsed_ms, Sample &out) {
    const KernelOffsets &o = vm_.off;
    const GuestMem &mem = as_.mem();
    out.elapsed_ms = elapsed_ms;
    out.cpus.resize(rq_pas_.size());
    for (size_t cpu = 0; cpu < rq_pas_.size(); cpu++) {
        uint64_t rq = rq_pas_[cpu];
        CpuSample &c = out.cpus[cpu];
        c.nr_running = mem.read_u32(rq, o.rq_nr_running);
        c.rq_clock = mem.read_u64(rq, o.rq_clock);
        c.has_scx = o.scx;
        if (o.scx) {
            c.scx_nr_running = mem.read_u32(rq, o.scx_nr_running);
            c.local_dsq_depth = mem.read_u32(rq, o.scx_local_dsq_nr);
            c.scx_flags = mem.read_u32(rq, o.scx_flags);
        }
        c.events.reset();
        c.vcpu_cpu_time_ns.reset();
        if (o.schedstat) {
            Schedstat &s = c.schedstat.emplace();
            s.run_delay = mem.read_u64(rq, o.run_delay);
            s.pcount = mem.read_u64(rq, o.pcount);
            s.yld_count = mem.read_u32(rq, o.yld_count);
            s.sched_count = mem.read_u32(rq, o.sched_count);
            s.sched_goidle = mem.read_u32(rq, o.sched_goidle);
            s.ttwu_count = mem.read_u32(rq, o.ttwu_count);
            s.ttwu_local = mem.read_u32(rq, o.ttwu_local);
        }
        if (domains_enabled && o.rq_sd && o.domain) {
            if (!c.domains) c.domains.emplace();
            read_domains(as_, o, mem.read_u64(rq, *o.rq_sd), *c.domains);
        } else {
            c.domains.reset();
        }
    }
    if (o.events != KernelOffsets::Events::none && vm_.syms.scx_root) read_events(out.cpus);
}

} // namespace ktstr::monitor
