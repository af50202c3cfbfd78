// ktstr-monitor: watch a running guest kernel from the host by reading its
// memory (a memfd handed out by ktstr-vmm --monitor-socket).
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <thread>

#include "ktstr/cli.h"
#include "ktstr/json.h"
#include "ktstr/monitor.h"

using namespace ktstr;
using namespace ktstr::monitor;

namespace {

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

const std::vector<cli::Option> OPTIONS = {
    {"socket", 's', "PATH", "the Unix socket of ktstr-vmm --monitor-socket"},
    {"memory-file", 0, "FILE", "instead of --socket: a file holding guest RAM from GPA 0 (e.g. QEMU's mem-path)"},
    {"cpus", 0, "N", "with --memory-file: number of guest CPUs"},
    {"vmm-pid", 0, "PID", "with --memory-file: the VMM (QEMU) process: stop when it exits, read vCPU times"},
    {"vmlinux", 'k', "FILE", "the guest kernel's vmlinux (symbols and BTF); required"},
    {"interval-ms", 'i', "N", "sampling period in milliseconds (default 100)"},
    {"samples", 'n', "N", "stop after N samples (default: until the VM goes away or a signal)"},
    {"ready-timeout-s", 0, "S", "give up when the kernel is not found/ready after S seconds (default 120)"},
    {"hz", 0, "N", "the guest's CONFIG_HZ (default: from the vmlinux's IKCONFIG, else 250)"},
    {"read-only", 0, "", "map guest memory read-only (map-write is then refused)"},
    {"max-imbalance-ratio", 0, "X", "violation threshold for max/min nr_running (default 4.0)"},
    {"max-local-dsq-depth", 0, "N", "violation threshold for a CPU's local DSQ depth (default 50)"},
    {"sustained-samples", 0, "N", "consecutive samples a condition must hold to count (default 5)"},
    {"no-stall-check", 0, "", "do not report stalls"},
    {"max-fallback-rate", 0, "X", "select_cpu fallback events per second (default 200)"},
    {"max-keep-last-rate", 0, "X", "dispatch keep-last events per second (default 100)"},
    {"offset", 0, "N", "map-dump: first byte (default 0)"},
    {"length", 0, "N", "map-dump: bytes to dump (default: the whole value)"},
    {"size", 0, "N", "map-write: width of the integer written, 1, 2, 4 or 8 (default 4)"},
    {"iterations", 0, "N", "bench: samples to time (default 2000)"},
    {"domain-levels", 0, "N", "bench: sched_domain levels per CPU in the synthetic guest (default 3)"},
};

const std::string HELP = std::string(
    "Usage: ktstr-monitor --socket PATH --vmlinux FILE [options] [COMMAND [ARGS]]\n"
    "\n"
    "Reads the guest kernel's memory from the host (no guest instrumentation) and writes JSON\n"
    "lines (schema ktstr.monitor/1) on stdout.  KASLR is recovered from guest memory alone.\n"
    "\n"
    "Commands:\n"
    "  sample                 (default) one \"sample\" line per interval with per-CPU nr_running,\n"
    "                         sched_ext runnable count, rq clock, local DSQ depth, sched_ext flags,\n"
    "                         event counters, schedstats, sched domains; \"violation\" lines for\n"
    "                         sustained stalls / imbalance / DSQ depth; \"summary\" and \"end\"\n"
    "  maps                   list the guest's BPF maps, one \"map\" line each\n"
    "  progs                  list the guest's BPF programs with verified instruction counts\n"
    "  map-dump NAME          hex dump of an array map's value (NAME or a suffix: .bss)\n"
    "  map-write NAME OFFSET VALUE   write an integer into an array map's value\n"
    "  bench                  cost of one sample per vCPU on a synthetic guest (--cpus, --iterations)\n"
    "\n"
    "Options:\n") +
    cli::format_options(OPTIONS) +
    "  -h, --help, --version\n"
    "\n" + cli::EXIT_CODES_HELP +
    "  (1 from 'sample': a threshold was violated for the sustained number of samples;\n"
    "   2 also when the vmlinux does not match the guest kernel)\n";

Thresholds thresholds_from(const cli::Args &a) {
    Thresholds t;
    t.max_imbalance_ratio = a.get_double("max-imbalance-ratio", t.max_imbalance_ratio);
    t.max_local_dsq_depth = uint32_t(a.get_u64("max-local-dsq-depth", t.max_local_dsq_depth));
    t.sustained_samples = uint32_t(a.get_u64("sustained-samples", t.sustained_samples));
    t.fail_on_stall = !a.has("no-stall-check");
    t.max_fallback_rate = a.get_double("max-fallback-rate", t.max_fallback_rate);
    t.max_keep_last_rate = a.get_double("max-keep-last-rate", t.max_keep_last_rate);
    t.validate();
    return t;
}

ojson line(const char *event) {
    ojson d = make_doc("monitor", 1);
    d["event"] = event;
    return d;
}

std::string hex_bytes(const std::string &b) {
    static const char *digits = "0123456789abcdef";
    std::string out;
    for (unsigned char c : b) { out += digits[c >> 4]; out += digits[c & 15]; }
    return out;
}

// The BPF commands need a located kernel but no sampling loop.
struct Attached {
    AttachedGuest guest;
    ReadyKernel ready;
};

Attached attach_ready(const SessionOptions &opt, const Vmlinux &vm) {
    Attached a{attach(opt), {}};
    auto quiet = [](const ojson &st) { log::debug(st["message"].get<std::string>()); };
    a.ready = wait_for_kernel(a.guest, vm, opt.ready_timeout_s, quiet, [] { return g_stop != 0; });
    return a;
}

// Retry until a named array map exists (the scheduler may still be loading).
MapInfo wait_for_map(const AddressSpace &as, const Vmlinux &vm, const std::string &name, double timeout_s) {
    auto t0 = Clock::now();
    for (;;) {
        try {
            return find_array_map(list_maps(as, vm), name);
        } catch (const Error &e) {
            if (seconds_since(t0) >= timeout_s || g_stop || std::string(e.what()).find("ambiguous") != std::string::npos)
                throw;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
}

int run_bench(const Vmlinux &vm, const cli::Args &a) {
    SyntheticSpec spec;
    spec.cpus = uint32_t(a.get_u64("cpus", 252));
    if (spec.cpus == 0 || spec.cpus > 8192) fail(ErrorKind::usage, "--cpus: 1..8192");
    spec.image_delta = 0x2e00000;            // a KASLR-like placement
    spec.text_slide = 0x1c00000;
    spec.page_offset = guestmem::PAGE_OFFSET_L4 + (37ull << 30);
    spec.domain_levels = uint32_t(a.get_u64("domain-levels", 3));   // SMT, MC, NUMA-ish
    uint64_t iterations = std::max<uint64_t>(a.get_u64("iterations", 2000), 10);
    SyntheticGuest g = build_synthetic_guest(vm, spec);
    GuestMem mem = g.mem();
    AddressSpace as(mem, g.layout);
    Sampler sampler(as, vm, g.rq_pa);
    Sample s;
    std::vector<double> per_cpu_ns;
    for (uint64_t i = 0; i < iterations; i++) {
        auto t0 = Clock::now();
        sampler.sample(i, s);
        double ns = std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
        per_cpu_ns.push_back(ns / spec.cpus);
    }
    std::sort(per_cpu_ns.begin(), per_cpu_ns.end());
    ojson d = line("bench");
    d["cpus"] = spec.cpus;
    d["iterations"] = iterations;
    d["median_ns_per_cpu"] = per_cpu_ns[per_cpu_ns.size() / 2];
    d["p90_ns_per_cpu"] = per_cpu_ns[per_cpu_ns.size() * 9 / 10];
    d["schedstat"] = vm.off.schedstat;
    d["domain_levels"] = bool(vm.off.domain) ? spec.domain_levels : 0;
    emit_line(d);
    return EXIT_OK;
}

int body(const std::vector<std::string> &tokens) {
    cli::Args a = cli::parse(tokens, OPTIONS);
    std::vector<std::string> pos = a.positional();
    std::string verb = pos.empty() ? "sample" : pos[0];
    if (!pos.empty()) pos.erase(pos.begin());
    static const std::vector<std::string> verbs = {"sample", "maps", "progs", "map-dump", "map-write", "bench"};
    if (std::find(verbs.begin(), verbs.end(), verb) == verbs.end())
        fail(ErrorKind::usage, "unknown command '", verb, "'; one of: sample, maps, progs, map-dump, map-write, bench");
    if (!a.has("vmlinux")) fail(ErrorKind::usage, "--vmlinux FILE is required");

    std::optional<uint32_t> hz;
    if (a.has("hz")) hz = uint32_t(a.get_u64("hz", 0));
    Vmlinux vm = Vmlinux::load(a.get("vmlinux"), hz);
    if (verb == "bench") return run_bench(vm, a);

    SessionOptions opt;
    opt.socket_path = a.get("socket");
    opt.memory_file = a.get("memory-file");
    opt.memory_file_cpus = uint32_t(a.get_u64("cpus", 0));
    opt.vmm_pid = int64_t(a.get_u64("vmm-pid", 0));
    if (opt.socket_path.empty() == opt.memory_file.empty())
        fail(ErrorKind::usage, "give exactly one of --socket PATH or --memory-file FILE");
    opt.interval_ms = a.get_u64("interval-ms", 100);
    if (opt.interval_ms == 0 || opt.interval_ms > 3600000) fail(ErrorKind::usage, "--interval-ms: 1..3600000");
    opt.max_samples = a.get_u64("samples", 0);
    opt.ready_timeout_s = a.get_double("ready-timeout-s", 120);
    opt.read_only = a.has("read-only");
    opt.thresholds = thresholds_from(a);

    struct sigaction sa{};
    sa.sa_handler = on_signal;   // no SA_RESTART: sleeps return early
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);

    if (verb == "sample") {
        if (!pos.empty()) fail(ErrorKind::usage, "sample takes no arguments");
        AttachedGuest g = attach(opt);
        return run_session(g, vm, opt, [](const ojson &d) { emit_line(d); }, [] { return g_stop != 0; });
    }

    Attached at = attach_ready(opt, vm);
    AddressSpace as(at.guest.mem, at.ready.layout);
    if (verb == "maps") {
        for (const MapInfo &m : list_maps(as, vm)) {
            ojson d = line("map");
            d["id"] = m.id; d["name"] = m.name; d["type"] = map_type_name(m.type); d["type_id"] = m.type;
            d["flags"] = m.flags; d["key_size"] = m.key_size; d["value_size"] = m.value_size;
            d["max_entries"] = m.max_entries; d["kva"] = cat("0x", std::hex, m.kva);
            emit_line(d);
        }
        return EXIT_OK;
    }
    if (verb == "progs") {
        for (const ProgInfo &p : list_progs(as, vm)) {
            ojson d = line("prog");
            d["id"] = p.id; d["name"] = p.name; d["type"] = p.type;
            d["struct_ops"] = p.type == BPF_PROG_TYPE_STRUCT_OPS;
            d["verified_insns"] = p.verified_insns;
            d["verified_insns_pct"] = double(p.verified_insns) / 10000.0;   // of the 1,000,000 limit
            emit_line(d);
        }
        return EXIT_OK;
    }
    if (pos.empty()) fail(ErrorKind::usage, verb, " needs a map NAME");
    MapInfo m = wait_for_map(as, vm, pos[0], opt.ready_timeout_s);
    if (verb == "map-dump") {
        if (pos.size() != 1) fail(ErrorKind::usage, "map-dump takes one NAME");
        uint64_t off = a.get_u64("offset", 0);
        uint64_t len = a.has("length") ? a.get_u64("length", 0) : (off <= m.value_size ? m.value_size - off : 0);
        std::string bytes = read_array_value(as, vm, m, off, len);
        ojson d = line("map_value");
        d["id"] = m.id; d["name"] = m.name; d["offset"] = off; d["length"] = len; d["hex"] = hex_bytes(bytes);
        emit_line(d);
        return EXIT_OK;
    }
    // map-write NAME OFFSET VALUE
    if (pos.size() != 3) fail(ErrorKind::usage, "map-write takes NAME OFFSET VALUE");
    if (opt.read_only) fail(ErrorKind::usage, "map-write with --read-only");
    auto off = parse_u64(pos[1]);
    auto val = parse_u64(pos[2]);
    if (!off) fail(ErrorKind::usage, "map-write: OFFSET '", pos[1], "' is not a non-negative integer");
    if (!val) fail(ErrorKind::usage, "map-write: VALUE '", pos[2], "' is not a non-negative integer");
    uint64_t size = a.get_u64("size", 4);
    if (size != 1 && size != 2 && size != 4 && size != 8) fail(ErrorKind::usage, "--size: 1, 2, 4 or 8");
    if (size < 8 && *val >> (8 * size)) fail(ErrorKind::usage, "map-write: VALUE ", *val, " does not fit in ", size, " bytes");
    std::string bytes(reinterpret_cast<const char *>(&*val), size);   // x86-64: little endian like the guest
    write_array_value(as, vm, m, *off, bytes);
    std::string back = read_array_value(as, vm, m, *off, size);
    ojson d = line("map_write");
    d["id"] = m.id; d["name"] = m.name; d["offset"] = *off; d["size"] = size; d["value"] = *val;
    d["readback_hex"] = hex_bytes(back);
    emit_line(d);
    return EXIT_OK;
}

} // namespace

int main(int argc, char **argv) {
    return cli::tool_main(argc, argv, {"ktstr-monitor", HELP}, body);
}
