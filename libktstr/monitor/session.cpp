// libktstr/monitor: the live session: receive guest memory from ktstr-vmm,
// wait for the kernel, sample every interval, report (spec 1, 6, 7, 10).
#include "ktstr/monitor.h"
#include "ktstr/wire.h"

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <set>
#include <thread>

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "ktstr/fdpass.h"

namespace ktstr::monitor {

using namespace guestmem;

namespace {

uint64_t mono_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

std::string hex(uint64_t v) { return cat("0x", std::hex, v); }

// The peer hung up (the VM went away)?  Never blocks.
bool peer_gone(const unique_fd &sock) {
    if (!sock) return false;
    pollfd p{sock.get(), POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLHUP | POLLERR)) return true;
    if (p.revents & POLLIN) {
        char c;
        ssize_t n = ::recv(sock.get(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
        return n == 0;
    }
    return false;
}

// Is the VMM process still there (and not a zombie)?
bool process_alive(int64_t pid) {
    auto stat = try_read_file(cat("/proc/", pid, "/stat"));
    if (!stat) return false;
    size_t close = stat->rfind(") ");
    if (close == std::string::npos || close + 2 >= stat->size()) return true;
    char state = (*stat)[close + 2];
    return state != 'Z' && state != 'X';
}

} // namespace

std::vector<int64_t> discover_vcpu_tids(int64_t pid, uint32_t num_cpus) {
    // QEMU names its vCPU threads "CPU <n>/TCG" or "CPU <n>/KVM".
    std::vector<int64_t> tids(num_cpus, 0);
    namespace fs = std::filesystem;
    std::error_code ec;
    bool any = false;
    for (const auto &e : fs::directory_iterator(cat("/proc/", pid, "/task"), ec)) {
        auto tid = parse_u64(e.path().filename().string());
        auto comm = try_read_file(e.path().string() + "/comm");
        if (!tid || !comm || !starts_with(*comm, "CPU ")) continue;
        auto parts = split(trim(comm->substr(4)), '/');
        auto n = parts.empty() ? std::nullopt : parse_u64(parts[0]);
        if (n && *n < num_cpus) { tids[*n] = int64_t(*tid); any = true; }
    }
    if (!any) tids.clear();
    return tids;
}

bool vm_gone(const AttachedGuest &g) {
    // ktstr-vmm may close the monitor connection right after the layout
    // message, so with a known VMM pid its liveness decides; without one,
    // the socket's EOF does.
    if (g.vmm_pid > 0) return !process_alive(g.vmm_pid);
    return peer_gone(g.sock);
}

AttachedGuest attach_from_message(const std::string &text, std::vector<unique_fd> fds, bool read_only) {
    const std::string where = "monitor socket layout";
    json doc = parse_json(text, where);
    require_schema(doc, "layout", 1, where);
    std::string arch = get_field_or<std::string>(doc, "arch", "x86_64", where);
    if (arch != "x86_64") fail(ErrorKind::input, where, ": field 'arch': '", arch, "' is not supported (x86_64)");
    if (!doc.contains("regions") || !doc["regions"].is_array() || doc["regions"].empty())
        fail(ErrorKind::input, where, ": field 'regions': expected a non-empty array");
    AttachedGuest g;
    std::vector<Region> regions;
    int prot = PROT_READ | (read_only ? 0 : PROT_WRITE);
    size_t i = 0;
    for (const json &r : doc["regions"]) {
        std::string w = cat(where, ": regions[", i++, "]");
        uint64_t gpa = get_field<uint64_t>(r, "gpa", w), size = get_field<uint64_t>(r, "size", w);
        uint64_t idx = get_field<uint64_t>(r, "fd_index", w), off = get_field_or<uint64_t>(r, "fd_offset", 0, w);
        if (idx >= fds.size())
            fail(ErrorKind::input, w, ": fd_index ", idx, " but only ", fds.size(), " descriptor(s) came with the message");
        if (off % 4096 || size == 0 || size % 4096)
            fail(ErrorKind::input, w, ": fd_offset and size must be non-zero multiples of 4096");
        struct stat st{};
        if (::fstat(fds[idx].get(), &st) != 0) fail_errno(ErrorKind::input, cat(w, ": fstat of fd ", idx));
        if (uint64_t(st.st_size) < off + size)
            fail(ErrorKind::input, w, ": memory fd holds ", st.st_size, " bytes, the region needs ", off + size);
        Mapping m = Mapping::map_fd(fds[idx].get(), size, prot, off_t(off));
        regions.push_back({m.data(), gpa, size});
        g.mappings.push_back(std::move(m));
    }
    g.mem = GuestMem(std::move(regions));
    g.num_cpus = get_field<uint32_t>(doc, "num_cpus", where);
    if (g.num_cpus == 0 || g.num_cpus > 8192) fail(ErrorKind::input, where, ": field 'num_cpus': ", g.num_cpus, " out of range 1..8192");
    if (doc.contains("vmm_pid") && doc["vmm_pid"].is_number_integer()) g.vmm_pid = doc["vmm_pid"].get<int64_t>();
    if (doc.contains("vcpu_tids") && doc["vcpu_tids"].is_array())
        for (const json &t : doc["vcpu_tids"]) g.vcpu_tids.push_back(t.is_number_integer() ? t.get<int64_t>() : 0);
    if (doc.contains("run_start_mono_ns") && doc["run_start_mono_ns"].is_number_unsigned())
        g.run_start_mono_ns = doc["run_start_mono_ns"].get<uint64_t>();
    if (const json *shm = doc.contains("shm") ? &doc["shm"] : nullptr;
        shm && shm->is_object() && shm->contains("base_pa") && (*shm)["base_pa"].is_number_unsigned())
        g.shm_base_pa = (*shm)["base_pa"].get<uint64_t>();
    bool have_tids = std::any_of(g.vcpu_tids.begin(), g.vcpu_tids.end(), [](int64_t t) { return t > 0; });
    if (!have_tids && g.vmm_pid > 0) g.vcpu_tids = discover_vcpu_tids(g.vmm_pid, g.num_cpus);
    g.layout = std::move(doc);
    return g;
}

AttachedGuest attach(const SessionOptions &opt) {
    if (!opt.memory_file.empty()) {
        if (opt.memory_file_cpus == 0) fail(ErrorKind::usage, "--memory-file needs --cpus N");
        unique_fd fd(::open(opt.memory_file.c_str(), (opt.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC));
        if (!fd) fail_errno(ErrorKind::input, cat("memory file '", opt.memory_file, "'"));
        struct stat st{};
        ::fstat(fd.get(), &st);
        uint64_t size = uint64_t(st.st_size) & ~4095ull;
        json layout = {{"schema", "ktstr.layout/1"}, {"arch", "x86_64"}, {"num_cpus", opt.memory_file_cpus},
                       {"regions", {{{"gpa", 0}, {"size", size}, {"fd_index", 0}, {"fd_offset", 0}}}}};
        std::vector<unique_fd> fds;
        fds.push_back(std::move(fd));
        if (opt.vmm_pid > 0) layout["vmm_pid"] = opt.vmm_pid;
        return attach_from_message(layout.dump(), std::move(fds), opt.read_only);
    }
    // ktstr-vmm creates the socket while it starts; give it a few seconds.
    unique_fd sock;
    auto t0 = Clock::now();
    for (;;) {
        try {
            sock = unix_connect(opt.socket_path);
            break;
        } catch (const Error &e) {
            if (seconds_since(t0) > 10) throw;
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
    }
    Received msg = recv_with_fds(sock.get(), 1 << 20, 64);
    if (msg.data.empty())
        fail(ErrorKind::environment, "ktstr-vmm closed the monitor socket '", opt.socket_path, "' without sending a layout");
    std::string text = msg.data;
    // A stream socket may split a long message: read on until it parses.
    while (!json::accept(text)) {
        char buf[65536];
        ssize_t n = ::recv(sock.get(), buf, sizeof buf, 0);
        if (n <= 0) break;
        text.append(buf, size_t(n));
    }
    AttachedGuest g = attach_from_message(text, std::move(msg.fds), opt.read_only);
    g.sock = std::move(sock);
    return g;
}

std::optional<uint64_t> vcpu_cpu_time_ns(int64_t pid, int64_t tid) {
    if (pid <= 0 || tid <= 0) return std::nullopt;
    auto text = try_read_file(cat("/proc/", pid, "/task/", tid, "/schedstat"));
    if (!text) return std::nullopt;
    auto fields = split(trim(*text), ' ', false);
    if (fields.empty()) return std::nullopt;
    return parse_u64(fields[0]);
}

ReadyKernel wait_for_kernel(const AttachedGuest &g, const Vmlinux &vm, double timeout_s,
                            const std::function<void(const ojson &)> &emit, const std::function<bool()> &stop) {
    auto t0 = Clock::now();
    std::string last_detail;
    std::optional<KernelLayout> hint;
    int foreign_seen = 0;
    auto last_scan = Clock::now() - std::chrono::seconds(10);
    for (;;) {
        std::string detail;
        Located loc = locate_kernel(g.mem, vm, hint ? &*hint : nullptr);
        if (loc.status == Located::Status::found) {
            hint = loc.layout;
            AddressSpace as(g.mem, loc.layout);
            if (auto pas = resolve_rq_pas(as, vm, g.num_cpus, &detail)) return {loc.layout, std::move(*pas)};
        } else {
            detail = loc.detail;
            if (seconds_since(last_scan) >= 1.0) {   // a full scan of guest memory: not every tick
                last_scan = Clock::now();
                std::string foreign = find_foreign_banner(g.mem, vm.banner);
                foreign_seen = foreign.empty() ? 0 : foreign_seen + 1;
                if (foreign_seen >= 2)
                    fail(ErrorKind::input, "vmlinux '", vm.elf.path(), "' does not match the guest kernel: guest runs \"",
                         trim(foreign), "\", vmlinux is \"", trim(vm.banner), "\"");
            }
        }
        if (detail != last_detail) {
            ojson st = make_doc("monitor", 1);
            st["event"] = "status";
            st["status"] = "waiting_for_kernel";
            st["message"] = detail;
            emit(st);
            last_detail = detail;
        }
        if (stop() || vm_gone(g)) throw Error(ErrorKind::guest, "stopped");
        if (seconds_since(t0) > timeout_s)
            fail(ErrorKind::guest, "guest kernel not ready after ", timeout_s, " s: ", detail);
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
}

namespace {

ojson meta_doc(const AttachedGuest &g, const Vmlinux &vm, const KernelLayout &k, uint64_t threshold_ns) {
    const KernelOffsets &o = vm.off;
    const KernelSymbols &s = vm.syms;
    ojson m;
    m["vmlinux"] = vm.elf.path();
    m["banner"] = std::string(trim(vm.banner));
    m["num_cpus"] = g.num_cpus;
    ojson syms;
    syms["runqueues"] = hex(s.runqueues);
    syms["__per_cpu_offset"] = hex(s.per_cpu_offset);
    syms["linux_banner"] = hex(s.linux_banner);
    auto opt = [&](const char *name, const std::optional<uint64_t> &v) { if (v) syms[name] = hex(*v); };
    opt("page_offset_base", s.page_offset_base);
    opt("init_top_pgt", s.init_top_pgt);
    opt("__pgtable_l5_enabled", s.pgtable_l5_enabled);
    opt("phys_base", s.phys_base);
    opt("scx_root", s.scx_root);
    opt("scx_watchdog_timeout", s.scx_watchdog_timeout);
    opt("map_idr", s.map_idr);
    opt("prog_idr", s.prog_idr);
    m["symbols"] = syms;
    m["kaslr"] = k.image_delta != 0 || k.text_slide != 0 || k.page_offset != default_page_offset(k.l5);
    m["text_slide"] = hex(k.text_slide);
    m["phys_base"] = hex(k.phys_base());
    m["image_delta"] = hex(k.image_delta);
    m["page_offset"] = hex(k.page_offset);
    m["l5"] = k.l5;
    m["hz"] = vm.hz.hz;
    m["hz_source"] = vm.hz.source;
    m["preemption_threshold_ns"] = threshold_ns;
    ojson f;
    f["scx"] = o.scx;
    f["events"] = o.events == KernelOffsets::Events::v6_18 ? "6.18" : o.events == KernelOffsets::Events::v6_16 ? "6.16" : "none";
    f["schedstat"] = o.schedstat;
    f["sched_domains"] = bool(o.rq_sd && o.domain);
    f["watchdog"] = o.scx_sched_watchdog_timeout && s.scx_root ? "scx_sched" : s.scx_watchdog_timeout ? "static" : "none";
    f["prog_stats"] = false;
    f["bpf_maps"] = o.bpf_map && o.idr && s.map_idr && k.pgt_root_pa;
    f["bpf_progs"] = o.bpf_prog && o.idr && s.prog_idr && k.pgt_root_pa;
    f["vcpu_times"] = !g.vcpu_tids.empty();
    m["features"] = f;
    return m;
}

ojson violation_doc(const Verdict::Violation &v) {
    ojson j;
    j["check"] = v.check;
    if (v.cpu) j["cpu"] = *v.cpu;
    j["value"] = v.value;
    j["run"] = v.run;
    j["at_sample"] = v.at;
    j["message"] = v.message;
    return j;
}

} // namespace

int run_session(AttachedGuest &g, const Vmlinux &vm, const SessionOptions &opt,
                const std::function<void(const ojson &)> &emit_body, const std::function<bool()> &stop) {
    opt.thresholds.validate();
    uint64_t start_ns = g.run_start_mono_ns.value_or(mono_ns());
    auto elapsed_ms = [&] { uint64_t now = mono_ns(); return now > start_ns ? (now - start_ns) / 1000000 : 0; };
    auto emit = [&](const char *event, ojson body) {
        ojson d = make_doc("monitor", 1);
        d["event"] = event;
        d["elapsed_ms"] = elapsed_ms();
        for (auto &[k, v] : body.items()) d[k] = v;
        emit_body(d);
    };
    auto emit_status = [&](const ojson &st) {
        ojson b;
        b["status"] = st["status"];
        b["message"] = st["message"];
        emit("status", b);
    };

    ReadyKernel ready;
    try {
        ready = wait_for_kernel(g, vm, opt.ready_timeout_s, emit_status, stop);
    } catch (const Error &e) {
        if (e.kind() == ErrorKind::guest && std::string(e.what()) == "stopped") {
            emit("end", {{"reason", stop() ? "signal" : "eof"}, {"samples", 0}});
            return EXIT_OK;
        }
        throw;
    }
    AddressSpace as(g.mem, ready.layout);
    uint64_t threshold_ns = preemption_threshold_ns(vm.hz.hz);
    emit("meta", meta_doc(g, vm, ready.layout, threshold_ns));
    emit("status", {{"status", "ready"}, {"message", cat("kernel found: text slide ", hex(ready.layout.text_slide),
                                                         ", phys_base ", hex(ready.layout.phys_base()),
                                                         ", page_offset ", hex(ready.layout.page_offset))}});

    Sampler sampler(as, vm, ready.rq_pas);
    // Summary and verdict are built as the samples come: a long run is not kept in memory.
    ViolationChecker checker(opt.thresholds, threshold_ns);
    SummaryBuilder summary(threshold_ns);
    uint64_t samples = 0;
    Sample cur;
    std::map<std::string, uint32_t> verified;       // struct_ops prog name -> max verified_insns
    uint32_t last_prog_next = UINT32_MAX;
    std::string reason = "eof";
    // The agent marks the shared region's slot 1 when the guest goes down (the
    // kernel then stops every CPU on its way to reset): sampling ends there, so a
    // guest frozen by its own shutdown is never judged a scheduler stall.
    auto guest_shutting_down = [&] {
        const auto &shm = g.shm_base_pa;
        return shm && g.mem.read_u32(*shm, wire::off::MAGIC) == wire::SHM_MAGIC &&
               g.mem.read_u8(*shm, wire::off::SLOT1) == wire::SLOT1_SHUTDOWN;
    };
    timespec deadline{};
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    for (;;) {
        if (stop()) { reason = "signal"; break; }
        if (vm_gone(g)) { reason = "eof"; break; }
        if (guest_shutting_down()) { reason = "guest_shutdown"; break; }
        sampler.sample(elapsed_ms(), cur);
        for (size_t c = 0; c < cur.cpus.size() && c < g.vcpu_tids.size(); c++)
            cur.cpus[c].vcpu_cpu_time_ns = vcpu_cpu_time_ns(g.vmm_pid, g.vcpu_tids[c]);
        ojson body = sample_to_json(cur);
        body.erase("elapsed_ms");
        emit("sample", body);
        for (const auto &v : checker.add(cur)) emit("violation", violation_doc(v));
        summary.add(cur);
        samples++;

        // Verifier report: re-walk prog_idr when its allocation cursor moves.
        if (vm.off.idr && vm.syms.prog_idr) {
            uint32_t next = g.mem.read_u32(as.symbol_pa(*vm.syms.prog_idr), vm.off.idr_next);
            if (next != last_prog_next) {
                last_prog_next = next;
                bool changed = false;
                for (const auto &p : list_progs(as, vm)) {
                    if (p.type != BPF_PROG_TYPE_STRUCT_OPS) continue;
                    uint32_t &best = verified[p.name];
                    if (p.verified_insns > best) { best = p.verified_insns; changed = true; }
                }
                if (changed) {
                    ojson progs = ojson::array();
                    for (auto &[name, n] : verified) progs.push_back({{"name", name}, {"verified_insns", n}});
                    emit("verifier", {{"progs", progs}});
                }
            }
        }
        if (opt.max_samples && samples >= opt.max_samples) { reason = "count"; break; }
        deadline.tv_nsec += long(opt.interval_ms % 1000) * 1000000L;
        deadline.tv_sec += time_t(opt.interval_ms / 1000) + deadline.tv_nsec / 1000000000L;
        deadline.tv_nsec %= 1000000000L;
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, nullptr) == EINTR)
            if (stop()) break;
    }
    Verdict verdict = checker.verdict();
    ojson sb = summary_to_json(summary.result());
    sb["verdict"] = {{"passed", verdict.passed}, {"summary", verdict.summary}, {"details", verdict.details}};
    emit("summary", sb);
    emit("end", {{"reason", reason}, {"samples", samples}});
    return verdict.passed ? EXIT_OK : EXIT_VERDICT_FAILED;
}

} // namespace ktstr::monitor
