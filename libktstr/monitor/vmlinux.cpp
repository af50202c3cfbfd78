// libktstr/monitor: symbols and BTF offsets of one kernel build (spec 2, 3).
#include "ktstr/monitor.h"

namespace ktstr::monitor {

const std::array<const char *, SCX_EVENT_COUNT> &scx_event_names() {
    static const std::array<const char *, SCX_EVENT_COUNT> names = {
        "select_cpu_fallback", "dispatch_local_dsq_offline", "dispatch_keep_last",
        "enq_skip_exiting", "enq_skip_migration_disabled", "reenq_immed", "reenq_local_repeat",
        "refill_slice_dfl", "bypass_duration", "bypass_dispatch", "bypass_activate",
        "insert_not_owned", "sub_bypass_dispatch"};
    return names;
}

std::optional<size_t> scx_event_index(std::string_view name) {
    const auto &names = scx_event_names();
    for (size_t i = 0; i < names.size(); i++)
        if (name == names[i]) return i;
    if (name == "enq_slice_dfl") return 7;   // refill_slice_dfl before its rename (spec 3.2)
    return std::nullopt;
}

namespace {

// The first five are required for the group; the rest read absent.
constexpr size_t REQUIRED_EVENTS = 5;

std::string upper_event_name(const char *lower) {
    std::string s = "SCX_EV_";
    for (const char *p = lower; *p; p++) s += char(std::toupper(static_cast<unsigned char>(*p)));
    return s;
}

// All members of `fields` in `strct`, or nullopt if any is missing.
template <size_t N>
std::optional<std::array<uint64_t, N>> all_of(const sym::Btf &btf, const char *strct,
                                              const std::array<const char *, N> &fields) {
    std::array<uint64_t, N> out{};
    for (size_t i = 0; i < N; i++) {
        auto v = btf.offset_of(strct, fields[i]);
        if (!v) return std::nullopt;
        out[i] = *v;
    }
    return out;
}

void resolve_scx(const sym::Btf &btf, KernelOffsets &o) {
    auto rq_scx = btf.member("rq", "scx");
    if (!rq_scx) return;
    int scx_rq = btf.resolve_to_struct(rq_scx->type_id);
    if (!scx_rq) return;
    auto nr = btf.member(scx_rq, "nr_running");
    auto flags = btf.member(scx_rq, "flags");
    auto dsq = btf.member(scx_rq, "local_dsq");
    if (!nr || !flags || !dsq) return;
    int dsq_t = btf.resolve_to_struct(dsq->type_id);
    auto dsq_nr = dsq_t ? btf.member(dsq_t, "nr") : std::nullopt;
    if (!dsq_nr) return;
    o.scx = true;
    o.scx_nr_running = rq_scx->offset + nr->offset;
    o.scx_flags = rq_scx->offset + flags->offset;
    o.scx_local_dsq_nr = rq_scx->offset + dsq->offset + dsq_nr->offset;
}

void resolve_events(const sym::Btf &btf, KernelOffsets &o) {
    int sched = btf.find_struct("scx_sched");
    if (!sched) return;
    o.scx_sched_watchdog_timeout = btf.offset_of("scx_sched", "watchdog_timeout");
    int stats = 0;
    if (auto pcpu = btf.member(sched, "pcpu")) {
        int pcpu_t = btf.resolve_to_struct(pcpu->type_id);
        auto es = pcpu_t ? btf.member(pcpu_t, "event_stats") : std::nullopt;
        if (es) {
            stats = btf.resolve_to_struct(es->type_id);
            o.events = KernelOffsets::Events::v6_18;
            o.scx_sched_pcpu = pcpu->offset;
            o.event_stats_off = es->offset;
        }
    }
    if (!stats) {
        if (auto esc = btf.member(sched, "event_stats_cpu")) {
            stats = btf.resolve_to_struct(esc->type_id);
            o.events = KernelOffsets::Events::v6_16;
            o.scx_sched_pcpu = esc->offset;
            o.event_stats_off = 0;
        }
    }
    if (!stats) { o.events = KernelOffsets::Events::none; return; }
    const auto &names = scx_event_names();
    for (size_t i = 0; i < SCX_EVENT_COUNT; i++) {
        auto m = btf.member(stats, upper_event_name(names[i]));
        if (!m && std::string(names[i]) == "refill_slice_dfl") m = btf.member(stats, "SCX_EV_ENQ_SLICE_DFL");
        if (m) o.event_off[i] = m->offset;
        else if (i < REQUIRED_EVENTS) { o.events = KernelOffsets::Events::none; o.event_off = {}; return; }
    }
}

void resolve_schedstat(const sym::Btf &btf, KernelOffsets &o) {
    auto si = btf.member("rq", "rq_sched_info");
    auto scal = all_of<5>(btf, "rq", {"yld_count", "sched_count", "sched_goidle", "ttwu_count", "ttwu_local"});
    if (!si || !scal) return;
    int si_t = btf.resolve_to_struct(si->type_id);
    auto rd = si_t ? btf.member(si_t, "run_delay") : std::nullopt;
    auto pc = si_t ? btf.member(si_t, "pcount") : std::nullopt;
    if (!rd || !pc) return;
    o.schedstat = true;
    o.run_delay = si->offset + rd->offset;
    o.pcount = si->offset + pc->offset;
    o.yld_count = (*scal)[0]; o.sched_count = (*scal)[1]; o.sched_goidle = (*scal)[2];
    o.ttwu_count = (*scal)[3]; o.ttwu_local = (*scal)[4];
}

void resolve_domains(const sym::Btf &btf, KernelOffsets &o) {
    o.rq_sd = btf.offset_of("rq", "sd");
    auto req = all_of<7>(btf, "sched_domain", {"parent", "level", "flags", "span_weight", "balance_interval",
                                               "nr_balance_failed", "max_newidle_lb_cost"});
    if (!o.rq_sd || !req) { o.rq_sd.reset(); return; }
    DomainOffsets d;
    d.parent = (*req)[0]; d.level = (*req)[1]; d.flags = (*req)[2]; d.span_weight = (*req)[3];
    d.balance_interval = (*req)[4]; d.nr_balance_failed = (*req)[5]; d.max_newidle_lb_cost = (*req)[6];
    d.name = btf.offset_of("sched_domain", "name");   // CONFIG_SCHED_DEBUG only on some kernels
    d.newidle = all_of<3>(btf, "sched_domain", {"newidle_call", "newidle_success", "newidle_ratio"});
    o.domain = d;
}

void resolve_bpf(const sym::Btf &btf, KernelOffsets &o) {
    auto rt = btf.offset_of("idr", "idr_rt");
    auto head = btf.offset_of("xarray", "xa_head");
    auto next = btf.offset_of("idr", "idr_next");
    auto node = all_of<2>(btf, "xa_node", {"shift", "slots"});
    if (rt && head && next && node) {
        o.idr = true;
        o.idr_xa_head = *rt + *head;
        o.idr_next = *next;
        o.xa_node_shift = (*node)[0];
        o.xa_node_slots = (*node)[1];
    }
    auto map = all_of<8>(btf, "bpf_map", {"name", "map_type", "map_flags", "key_size", "value_size",
                                          "max_entries", "btf", "btf_value_type_id"});
    auto value = btf.offset_of("bpf_array", "value");   // inside an anonymous union
    if (map && value) {
        o.bpf_map = true;
        o.map_name = (*map)[0]; o.map_type = (*map)[1]; o.map_flags = (*map)[2]; o.map_key_size = (*map)[3];
        o.map_value_size = (*map)[4]; o.map_max_entries = (*map)[5]; o.map_btf = (*map)[6];
        o.map_btf_value_type_id = (*map)[7]; o.array_value = *value;
        o.map_id = btf.offset_of("bpf_map", "id");
    }
    auto prog = all_of<2>(btf, "bpf_prog", {"type", "aux"});
    auto aux = all_of<2>(btf, "bpf_prog_aux", {"verified_insns", "name"});
    if (prog && aux) {
        o.bpf_prog = true;
        o.prog_type = (*prog)[0]; o.prog_aux = (*prog)[1];
        o.aux_verified_insns = (*aux)[0]; o.aux_name = (*aux)[1];
        o.aux_id = btf.offset_of("bpf_prog_aux", "id");
    }
}

} // namespace

KernelOffsets resolve_offsets(const sym::Btf &btf) {
    KernelOffsets o;
    if (!btf.find_struct("rq")) fail(ErrorKind::input, "BTF has no struct rq (not a kernel vmlinux?)");
    auto nr = btf.offset_of("rq", "nr_running");
    auto clock = btf.offset_of("rq", "clock");
    if (!nr) fail(ErrorKind::input, "BTF: struct rq has no member nr_running");
    if (!clock) fail(ErrorKind::input, "BTF: struct rq has no member clock");
    o.rq_nr_running = *nr;
    o.rq_clock = *clock;
    o.rq_cpu = btf.offset_of("rq", "cpu");
    resolve_scx(btf, o);
    resolve_events(btf, o);
    resolve_schedstat(btf, o);
    resolve_domains(btf, o);
    resolve_bpf(btf, o);
    return o;
}

KernelSymbols resolve_symbols(const sym::ElfSymbols &elf) {
    KernelSymbols s;
    s.linux_banner = elf.require("linux_banner", "not a Linux kernel vmlinux");
    s.runqueues = elf.require("runqueues", "not a Linux kernel vmlinux, or .data..percpu was stripped");
    s.per_cpu_offset = elf.require("__per_cpu_offset", "kernel built without CONFIG_SMP?");
    s.page_offset_base = elf.find("page_offset_base");
    s.init_top_pgt = elf.find("init_top_pgt");
    if (!s.init_top_pgt) s.init_top_pgt = elf.find("swapper_pg_dir");
    s.pgtable_l5_enabled = elf.find("__pgtable_l5_enabled");
    s.phys_base = elf.find("phys_base");
    s.text = elf.find("_text");
    s.scx_root = elf.find("scx_root");
    s.scx_watchdog_timeout = elf.find("scx_watchdog_timeout");
    s.map_idr = elf.find("map_idr");
    s.prog_idr = elf.find("prog_idr");
    return s;
}

Vmlinux Vmlinux::load(const std::string &path, std::optional<uint32_t> explicit_hz) {
    Vmlinux vm{sym::ElfSymbols::load(path), {}, {}, {}, {}};
    vm.syms = resolve_symbols(vm.elf);
    auto banner = vm.elf.cstring_at(vm.syms.linux_banner, 1024);
    if (!banner || !starts_with(*banner, "Linux version "))
        fail(ErrorKind::input, "vmlinux '", path, "': linux_banner does not hold a \"Linux version\" string");
    vm.banner = *banner;
    auto btf = sym::Btf::parse(path);
    try {
        vm.off = resolve_offsets(btf);
    } catch (const Error &e) {
        fail(ErrorKind::input, "vmlinux '", path, "': ", e.what());
    }
    vm.hz = sym::resolve_hz(explicit_hz, &vm.elf);
    return vm;
}

} // namespace ktstr::monitor
