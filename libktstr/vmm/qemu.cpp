// libktstr/vmm: the TCG accelerator — qemu-system-x86_64 as a supervised child.
//
// ktstr-vmm owns everything QEMU touches: guest RAM (memfds), the console and
// COM2 (pipes), and QMP (a socketpair).  QEMU inherits them as fds, so nothing
// of a run has a name in the filesystem, and QEMU (in its own process group,
// with PR_SET_PDEATHSIG) never outlives us.  QEMU starts paused (-S): the
// observers learn the complete layout (vCPU thread ids from QMP) before the
// guest runs its first instruction.
#include "ktstr/qemu.h"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <ctime>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ktstr/process.h"

namespace ktstr::vmm {

// ---- pure parts ---------------------------------------------------------------------

std::string qemu_machine_for(const Topology &t, const std::string &override_machine) {
    if (!override_machine.empty()) return override_machine;
    return t.numa_nodes > 1 ? "pc" : "microvm";
}

namespace {
uint64_t align_down(uint64_t v, uint64_t a) { return v / a * a; }
uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }
} // namespace

MemoryPlan plan_qemu_memory(const Topology &t, uint64_t memory_mb, uint64_t shm_size,
                            const BzImageHeader &kernel, uint64_t initrd_size) {
    MemoryPlan p;
    auto node_mb = t.node_memory_mb(memory_mb);
    uint64_t total = memory_mb * MiB;
    uint64_t low = std::min(total, QEMU_LOW_RAM_MAX);
    uint64_t offset = 0;   // running offset in QEMU's RAM space
    for (uint32_t n = 0; n < node_mb.size(); ++n) {
        uint64_t size = node_mb[n] * MiB;
        p.fd_sizes.push_back(size);
        uint64_t begin = offset, end = offset + size;
        if (begin < low) {
            uint64_t part = std::min(end, low) - begin;
            p.regions.push_back({begin, part, n, 0, n});
        }
        if (end > low) {
            uint64_t from = std::max(begin, low);
            p.regions.push_back({QEMU_HIGH_RAM_BASE + (from - low), end - from, n, from - begin, n});
        }
        offset = end;
    }
    if (shm_size == 0) return p;

    if (total > low) {
        // RAM above 4 GiB holds neither firmware nor the initrd: use its top.
        p.shm = ShmRegion{QEMU_HIGH_RAM_BASE + (total - low) - shm_size, shm_size};
        if (p.shm->base_pa < QEMU_HIGH_RAM_BASE)
            fail(ErrorKind::usage, "shared region (", shm_size / MiB, " MiB) is larger than the guest RAM above 4 GiB (",
                 (total - low) / MiB, " MiB); use a smaller region or more memory");
        return p;
    }
    // QEMU puts the initrd at the top of low RAM below min(RAM, initrd_addr_max+1)
    // minus the firmware's ACPI area; keep 2 MiB of margin for the firmware.
    const uint64_t firmware_margin = 2 * MiB;
    uint64_t initrd_top = std::min<uint64_t>(low, uint64_t(kernel.initrd_addr_max) + 1);
    uint64_t need_top = firmware_margin + align_up(initrd_size, 2 * MiB);
    uint64_t kernel_end = 16 * MiB + align_up(kernel.init_size, 2 * MiB);
    uint64_t min_mb = (kernel_end + shm_size + need_top + 2 * MiB + (total - initrd_top)) / MiB;
    if (initrd_top < need_top + shm_size || align_down(initrd_top - need_top, 2 * MiB) - shm_size < kernel_end)
        fail(ErrorKind::usage, "guest memory ", memory_mb, " MiB is too small to place the ", shm_size / MiB,
             " MiB shared region between the kernel (", kernel_end / MiB, " MiB incl. decompression) and the initrd (",
             initrd_size / MiB, " MiB); need at least ", min_mb, " MiB");
    uint64_t shm_end = align_down(initrd_top - need_top, 2 * MiB);
    p.shm = ShmRegion{shm_end - shm_size, shm_size};
    return p;
}

std::vector<std::string> qemu_argv(const std::string &binary, const VmConfig &c, const MemoryPlan &plan,
                                   const std::string &machine, const std::string &cmdline, const QemuFds &fds) {
    const Topology &t = c.topology;
    bool microvm = machine.rfind("microvm", 0) == 0;
    bool pc = machine == "pc" || machine.rfind("pc-i440fx", 0) == 0 || machine.rfind("pc,", 0) == 0;
    std::string m = machine;
    if (machine == "microvm") m += ",acpi=on";             // ACPI MADT: the kernel sees every CPU
    if (pc && machine.find("max-ram-below-4g") == std::string::npos)
        m += ",max-ram-below-4g=3G";                        // the same RAM split as microvm
    std::vector<std::string> a = {
        binary, "-accel", c.tcg_multi_thread ? "tcg,thread=multi" : "tcg,thread=single", "-cpu", "max", "-machine", m,
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-S",   // paused until the layout is published (QMP "cont")
        // Threads named "CPU N/TCG" (multi-threaded TCG): the monitor finds vCPU threads by name too.
        "-name", "ktstr-vmm,debug-threads=on",
        "-m", cat(plan.total() / MiB, "M"),
        "-smp", cat("cpus=", t.total_cpus(), ",sockets=", t.llcs, ",dies=1,cores=", t.cores_per_llc,
                    ",threads=", t.threads_per_core),
    };
    for (size_t i = 0; i < plan.fd_sizes.size(); ++i) {
        a.push_back("-object");
        a.push_back(cat("memory-backend-file,id=ram-node", i, ",size=", plan.fd_sizes[i] / MiB, "M,mem-path=/proc/self/fd/",
                        fds.ram.at(i), ",share=on"));
    }
    if (t.numa_nodes > 1) {
        for (uint32_t n = 0; n < t.numa_nodes; ++n) {
            a.push_back("-numa");
            a.push_back(cat("node,nodeid=", n, ",memdev=ram-node", n));
        }
        for (uint32_t l = 0; l < t.llcs; ++l) {
            a.push_back("-numa");
            a.push_back(cat("cpu,node-id=", t.node_of_llc(l), ",socket-id=", l));
        }
        for (uint32_t i = 0; i < t.numa_nodes; ++i)
            for (uint32_t j = 0; j < t.numa_nodes; ++j) {
                if (i == j) continue;
                a.push_back("-numa");
                a.push_back(cat("dist,src=", i, ",dst=", j, ",val=", t.distance(i, j)));
            }
    } else {
        a.push_back("-machine");
        a.push_back("memory-backend=ram-node0");
    }
    a.insert(a.end(), {"-chardev", cat("file,id=com1,path=/proc/self/fd/", fds.com1), "-serial", "chardev:com1"});
    a.insert(a.end(), {"-chardev", fds.com2_socket ? cat("socket,id=com2,fd=", fds.com2)
                                                   : cat("file,id=com2,path=/proc/self/fd/", fds.com2)});
    if (microvm)   // microvm creates one ISA UART; add COM2 at its legacy port and IRQ
        a.insert(a.end(), {"-device", "isa-serial,chardev=com2,iobase=0x2f8,irq=3"});
    else
        a.insert(a.end(), {"-serial", "chardev:com2"});
    a.insert(a.end(), {"-chardev", cat("socket,id=qmp,fd=", fds.qmp), "-mon", "chardev=qmp,mode=control"});
    a.insert(a.end(), {"-kernel", c.kernel.bzimage});
    if (!c.initrd.empty()) a.insert(a.end(), {"-initrd", c.initrd});
    a.insert(a.end(), {"-append", cmdline});
    a.insert(a.end(), c.qemu_extra_args.begin(), c.qemu_extra_args.end());
    return a;
}

std::string QemuVersion::to_string() const { return cat(major, ".", minor, ".", micro); }

std::optional<QemuVersion> parse_qemu_version(std::string_view out) {
    auto pos = out.find("version ");
    if (pos == std::string_view::npos) return std::nullopt;
    auto parts = split(out.substr(pos + 8, out.find_first_of(" \n(", pos + 8) - (pos + 8)), '.');
    if (parts.size() < 2) return std::nullopt;
    QemuVersion v;
    auto num = [](const std::string &s) { return parse_u64(s); };
    auto maj = num(parts[0]), min = num(parts[1]);
    if (!maj || !min) return std::nullopt;
    v.major = static_cast<int>(*maj);
    v.minor = static_cast<int>(*min);
    if (parts.size() > 2) {
        auto mic = num(parts[2]);
        if (!mic) return std::nullopt;
        v.micro = static_cast<int>(*mic);
    }
    return v;
}

namespace {
const char *const QEMU_INSTALL_HINT =
    "install the Debian package qemu-system-x86 (scripts/install-deps.sh) or pass --qemu PATH";
}

std::string find_qemu(const std::string &override_path) {
    std::string path = override_path.empty() ? which("qemu-system-x86_64") : override_path;
    if (path.empty()) fail(ErrorKind::environment, "qemu-system-x86_64 not found in $PATH; ", QEMU_INSTALL_HINT);
    if (::access(path.c_str(), X_OK) != 0)
        fail(ErrorKind::environment, "QEMU binary ", path, " is not executable (", std::strerror(errno), "); ",
             QEMU_INSTALL_HINT);
    return path;
}

void require_qemu_version(const std::string &path, const QemuVersion &v) {
    if (v < QEMU_MIN_VERSION)
        fail(ErrorKind::environment, path, " is QEMU ", v.to_string(), "; ktstr-vmm needs ", QEMU_MIN_VERSION.to_string(),
             " or newer; ", QEMU_INSTALL_HINT);
}

std::optional<QemuVersion> query_qemu_version(const std::string &path) {
    try {
        auto r = run_capture({path, "--version"}, 20);
        if (r.timed_out || r.status != 0) return std::nullopt;
        return parse_qemu_version(r.out);
    } catch (const Error &) {
        return std::nullopt;
    }
}

std::optional<uint64_t> host_tsc_khz() {
#if defined(__x86_64__)
    // Bracket each TSC read between two clock reads and keep the tightest
    // bracket, so preemption on a loaded host does not skew the rate.
    auto sample = [](uint64_t &tsc, uint64_t &ns) {
        uint64_t best = ~0ull;
        for (int i = 0; i < 5; ++i) {
            timespec a{}, b{};
            ::clock_gettime(CLOCK_MONOTONIC_RAW, &a);
            uint64_t t = __builtin_ia32_rdtsc();
            ::clock_gettime(CLOCK_MONOTONIC_RAW, &b);
            uint64_t na = uint64_t(a.tv_sec) * 1000000000ull + uint64_t(a.tv_nsec);
            uint64_t nb = uint64_t(b.tv_sec) * 1000000000ull + uint64_t(b.tv_nsec);
            if (nb - na < best) { best = nb - na; tsc = t; ns = na + (nb - na) / 2; }
        }
        return best;
    };
    uint64_t t0 = 0, n0 = 0, t1 = 0, n1 = 0;
    if (sample(t0, n0) > 100000) return std::nullopt;
    ::usleep(30000);
    if (sample(t1, n1) > 100000 || n1 <= n0 || t1 <= t0) return std::nullopt;
    uint64_t khz = (t1 - t0) * 1000000ull / (n1 - n0);
    if (khz < 100000 || khz > 10000000) return std::nullopt;   // 0.1 .. 10 GHz
    return khz;
#else
    return std::nullopt;
#endif
}

std::optional<ExitReason> exit_reason_from_qmp(std::string_view reason) {
    if (reason == "guest-shutdown") return ExitReason::shutdown;
    if (reason == "guest-reset") return ExitReason::reboot;
    if (reason == "guest-panic") return ExitReason::panic;
    return std::nullopt;
}

// ---- the supervised run ----------------------------------------------------------------

namespace {

struct Pipe {
    unique_fd read, write;
    static Pipe make() {
        int p[2];
        if (::pipe2(p, O_CLOEXEC) != 0) fail_errno(ErrorKind::environment, "pipe");
        Pipe x{unique_fd(p[0]), unique_fd(p[1])};
        ::fcntl(p[0], F_SETFL, O_NONBLOCK);
        return x;
    }
    // Both directions: `read` is ours (we also write into it), `write` is QEMU's.
    static Pipe make_socket() {
        int p[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) != 0) fail_errno(ErrorKind::environment, "socketpair");
        Pipe x{unique_fd(p[0]), unique_fd(p[1])};
        ::fcntl(p[0], F_SETFL, O_NONBLOCK);
        return x;
    }
};

// Last bytes of a stream, for messages and the exit event.
class Tail {
public:
    explicit Tail(size_t cap) : cap_(cap) {}
    void add(std::string_view b) {
        buf_.append(b);
        if (buf_.size() > 2 * cap_) buf_.erase(0, buf_.size() - cap_);
    }
    std::string lines(size_t max_lines) const {
        std::string s = buf_.size() > cap_ ? buf_.substr(buf_.size() - cap_) : buf_;
        std::string clean;
        for (char ch : s)
            if (ch != '\r') clean += ch;
        while (!clean.empty() && clean.back() == '\n') clean.pop_back();
        size_t pos = clean.size(), n = 0;
        while (pos > 0 && n < max_lines) {
            pos = clean.rfind('\n', pos - 1);
            if (pos == std::string::npos) { pos = 0; break; }
            ++n;
        }
        return clean.substr(pos == 0 ? 0 : pos + 1);
    }
    const std::string &raw() const { return buf_; }

private:
    size_t cap_;
    std::string buf_;
};

// QMP over our end of the socketpair: line-delimited JSON.
class Qmp {
public:
    explicit Qmp(unique_fd fd) : fd_(std::move(fd)) { ::fcntl(fd_.get(), F_SETFL, O_NONBLOCK); }
    int fd() const { return fd_.get(); }
    bool send(const std::string &cmd) {
        std::string line = cmd + "\n";
        ssize_t n;
        do n = ::send(fd_.get(), line.data(), line.size(), MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
        return n == static_cast<ssize_t>(line.size());
    }
    // Read what is available; returns false at EOF.  Complete messages go to `out`.
    bool pump(std::vector<json> &out) {
        char buf[8192];
        for (;;) {
            ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
            if (n > 0) { in_.append(buf, static_cast<size_t>(n)); continue; }
            if (n == 0) { eof_ = true; break; }
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            eof_ = true;
            break;
        }
        size_t nl;
        while ((nl = in_.find('\n')) != std::string::npos) {
            std::string line(trim(std::string_view(in_).substr(0, nl)));
            in_.erase(0, nl + 1);
            if (line.empty()) continue;
            json j = json::parse(line, nullptr, false);
            if (!j.is_discarded()) out.push_back(std::move(j));
        }
        return !eof_;
    }
    // Send a command and wait for its "return" (or "error"), keeping events.
    json command(const std::string &cmd, double timeout_s, std::vector<json> &events) {
        if (!send(cmd)) fail(ErrorKind::environment, "QMP: QEMU closed its control socket");
        auto t0 = Clock::now();
        for (;;) {
            std::vector<json> msgs;
            bool open = pump(msgs);
            for (auto &m : msgs) {
                if (m.contains("return")) return m["return"];
                if (m.contains("error"))
                    fail(ErrorKind::environment, "QMP ", cmd, ": ", m["error"].value("desc", m["error"].dump()));
                if (m.contains("event")) events.push_back(m);
            }
            if (!open) fail(ErrorKind::environment, "QMP: QEMU closed its control socket during ", cmd);
            double left = timeout_s - seconds_since(t0);
            if (left <= 0) fail(ErrorKind::environment, "QMP: no answer to ", cmd, " within ", timeout_s, " s");
            pollfd p{fd_.get(), POLLIN, 0};
            ::poll(&p, 1, static_cast<int>(left * 1000) + 1);
        }
    }

private:
    unique_fd fd_;
    std::string in_;
    bool eof_ = false;
};

uint64_t mono_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

// Read what a nonblocking fd has; false at EOF/error.
bool drain(int fd, const std::function<void(std::string_view)> &sink) {
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n > 0) { sink(std::string_view(buf, static_cast<size_t>(n))); continue; }
        if (n == 0) return false;
        if (errno == EINTR) continue;
        return errno == EAGAIN || errno == EWOULDBLOCK;
    }
}

std::string qemu_failure_text(const std::string &stderr_text) {
    std::string t(trim(stderr_text));
    if (t.size() > 2000) t = "..." + t.substr(t.size() - 2000);
    return t.empty() ? "(no message on its stderr)" : t;
}

} // namespace

ExitResult run_tcg(const VmConfig &c, Observer &observer, StopSource &stop) {
    validate_config(c);
    const std::string qemu_path = find_qemu(c.qemu_binary);
    std::string machine = qemu_machine_for(c.topology, c.qemu_machine);
    if (c.topology.numa_nodes > 1 && machine.rfind("microvm", 0) == 0)
        fail(ErrorKind::usage, "QEMU's microvm builds no SRAT, so it cannot show ", c.topology.numa_nodes,
             " NUMA nodes to the guest; use --qemu-machine pc");
    uint64_t initrd_size = 0;
    if (!c.initrd.empty()) {
        struct stat st {};
        if (::stat(c.initrd.c_str(), &st) != 0) fail_errno(ErrorKind::input, cat("--initrd ", c.initrd));
        if (!S_ISREG(st.st_mode)) fail(ErrorKind::input, "--initrd ", c.initrd, ": not a regular file");
        initrd_size = static_cast<uint64_t>(st.st_size);
    }
    MemoryPlan plan = plan_qemu_memory(c.topology, c.memory_mb, c.shm_size, c.kernel.header, initrd_size);

    CmdlineOptions co;
    co.accel = Accel::tcg;
    co.kaslr = c.kaslr;
    co.verbose = c.kernel_verbose;
    co.loglevel = c.kernel_loglevel;
    co.has_initrd = !c.initrd.empty();
    co.shm = plan.shm;
    for (auto &n : c.topology.nodes) co.has_memory_only_node |= n.llcs == 0;
    co.tsc_khz = host_tsc_khz();
    co.extra = c.cmdline_extra;
    std::string cmdline = build_cmdline(co);
    if (c.kernel.header.cmdline_size && cmdline.size() > c.kernel.header.cmdline_size)
        fail(ErrorKind::usage, "kernel command line is ", cmdline.size(), " bytes; ", c.kernel.bzimage, " accepts at most ",
             c.kernel.header.cmdline_size, " (defaults plus --cmdline)");

    GuestRam ram = GuestRam::create(plan);
    Layout layout;
    layout.accel = Accel::tcg;
    layout.regions = ram.regions();
    layout.mem_size = ram.total_size();
    layout.num_cpus = c.topology.total_cpus();
    for (uint32_t cpu = 0; cpu < layout.num_cpus; ++cpu) layout.vcpu_ids.push_back(c.topology.apic_id(cpu));
    layout.kernel = c.kernel.bzimage;
    layout.vmlinux = c.kernel.vmlinux;
    layout.shm = plan.shm;
    layout.cmdline = cmdline;
    observer.on_ram_ready(ram, layout);

    const bool com2_input = c.com2_input_fd >= 0;
    Pipe com1 = Pipe::make(), com2 = com2_input ? Pipe::make_socket() : Pipe::make();
    int sp[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0) fail_errno(ErrorKind::environment, "socketpair");
    unique_fd qmp_ours(sp[0]), qmp_theirs(sp[1]);

    QemuFds qfds;
    qfds.ram = ram.fds();
    qfds.com1 = com1.write.get();
    qfds.com2 = com2.write.get();
    qfds.com2_socket = com2_input;
    qfds.qmp = qmp_theirs.get();
    std::vector<std::string> argv = qemu_argv(qemu_path, c, plan, machine, cmdline, qfds);
    log::debug("starting ", shell_join(argv));

    SpawnOptions so;
    so.capture_stderr = true;
    so.keep_fds = qfds.ram;
    so.keep_fds.insert(so.keep_fds.end(), {qfds.com1, qfds.com2, qfds.qmp});
    auto t_start = Clock::now();
    uint64_t start_ns = mono_ns();
    Child child = Child::spawn(argv, so);
    com1.write.reset();
    com2.write.reset();
    qmp_theirs.reset();
    ::fcntl(child.stderr_fd(), F_SETFL, O_NONBLOCK);
    Qmp qmp(std::move(qmp_ours));

    Tail console(16384);
    std::string qemu_stderr;
    auto on_stderr = [&](std::string_view b) {
        if (qemu_stderr.size() < 65536) qemu_stderr.append(b.substr(0, 65536 - qemu_stderr.size()));
    };
    auto on_console = [&](std::string_view b) {
        console.add(b);
        observer.on_console(b);
    };
    auto on_com2 = [&](std::string_view b) { observer.on_com2(b); };

    ExitResult result;
    std::optional<ExitReason> guest_reason;   // from QMP events
    std::string guest_reason_text;
    std::vector<json> events;
    auto take_events = [&](std::vector<json> &msgs) {
        for (auto &m : msgs) {
            std::string ev = m.value("event", "");
            if (ev == "SHUTDOWN" && m.contains("data")) {
                std::string why = m["data"].value("reason", "");
                if (auto r = exit_reason_from_qmp(why); r && !guest_reason) {
                    guest_reason = r;
                    guest_reason_text = why;
                }
            } else if (ev == "GUEST_PANICKED") {
                guest_reason = ExitReason::panic;
                guest_reason_text = "guest-panicked";
            }
        }
        msgs.clear();
    };

    // Handshake while paused: capabilities, the vCPU threads, then publish and run.
    bool explained = false;
    QemuVersion qemu_version;   // the error already carries QEMU's stderr
    auto qemu_died = [&](const std::string &during) {
        explained = true;
        child.wait_for(2);
        drain(child.stderr_fd(), on_stderr);
        drain(com1.read.get(), on_console);
        std::string version_note;
        if (auto v = query_qemu_version(qemu_path); v && *v < QEMU_MIN_VERSION)
            version_note = cat("; it is QEMU ", v->to_string(), ", ktstr-vmm needs ", QEMU_MIN_VERSION.to_string(),
                               " or newer (", QEMU_INSTALL_HINT, ")");
        fail(ErrorKind::environment, qemu_path, " failed ", during, " (",
             child.status() ? describe_wait_status(*child.status()) : std::string("still running"), ")",
             version_note, ":\n", qemu_failure_text(qemu_stderr));
    };
    try {
        auto t0 = Clock::now();
        for (;;) {   // the greeting {"QMP": ...}
            std::vector<json> msgs;
            bool open = qmp.pump(msgs);
            std::optional<json> greeting;
            for (auto &m : msgs)
                if (m.contains("QMP")) greeting = m;
            if (greeting) {
                auto &v = (*greeting)["QMP"]["version"]["qemu"];
                qemu_version = {v.value("major", 0), v.value("minor", 0), v.value("micro", 0)};
                require_qemu_version(qemu_path, qemu_version);
                break;
            }
            if (!open) qemu_died("to start");
            if (seconds_since(t0) > 30) qemu_died("to answer on QMP within 30 s");
            pollfd p{qmp.fd(), POLLIN, 0};
            ::poll(&p, 1, 100);
        }
        qmp.command(R"({"execute":"qmp_capabilities"})", 30, events);
        json cpus = qmp.command(R"({"execute":"query-cpus-fast"})", 30, events);
        std::vector<pid_t> tids(layout.num_cpus, 0);
        bool all = cpus.is_array() && cpus.size() == layout.num_cpus;
        if (cpus.is_array())
            for (auto &cpu : cpus) {
                uint64_t idx = cpu.value("cpu-index", uint64_t(~0ull));
                if (idx < tids.size()) tids[idx] = cpu.value("thread-id", 0);
                else all = false;
            }
        if (all) layout.vcpu_tids = tids;
    } catch (const Error &e) {
        if (!child.poll()) child.terminate(1);
        drain(child.stderr_fd(), on_stderr);
        if (explained) throw;
        fail(ErrorKind::environment, e.what(), "; QEMU said:\n", qemu_failure_text(qemu_stderr));
    }
    take_events(events);
    layout.vmm_pid = child.pid();
    layout.run_start_mono_ns = start_ns;

    ojson boot = boot_event_fields(c, cmdline);
    boot["machine"] = machine;
    boot["qemu"] = qemu_path;
    boot["qemu_version"] = qemu_version.to_string();
    boot["vmm_pid"] = child.pid();
    boot["shm"] = plan.shm ? ojson{{"base_pa", plan.shm->base_pa}, {"size", plan.shm->size}} : ojson(nullptr);
    boot["qemu_argv"] = argv;
    observer.on_started(ram, layout, boot);
    double started_s = seconds_since(t_start);
    if (!qmp.send(R"({"execute":"cont"})")) qemu_died("before the guest started");

    // Supervise: console, COM2, QMP events, stderr, stop requests, the deadline.
    bool com1_open = true, com2_open = true, qmp_open = true, err_open = true, input_open = com2_input;
    std::optional<ExitReason> stop_reason;
    // Input for COM2 (the guest's shell): read only while nothing read earlier
    // waits to go out, sent without blocking (a guest that stops reading must not
    // stall this loop: COM2 output, signals and the deadline keep being served);
    // at EOF an EOT, which the guest tty turns into end-of-file for its reader,
    // and another every second after that: an EOT that arrives while a command
    // runs can be lost when the shell's line editor switches the tty mode, and
    // our input stays at end-of-file for every later reader anyway.
    std::string pending_input;
    bool input_eof = false;
    Clock::time_point next_eot{};
    auto flush_input = [&]() {
        while (!pending_input.empty()) {
            ssize_t w = ::send(com2.read.get(), pending_input.data(), pending_input.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0) { pending_input.erase(0, size_t(w)); continue; }
            if (w < 0 && errno == EINTR) continue;
            if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
            pending_input.clear();   // QEMU is gone
            input_open = false;
            return;
        }
    };
    auto forward_input = [&]() {
        char buf[4096];
        ssize_t n = ::read(c.com2_input_fd, buf, sizeof buf);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
        if (n <= 0) {
            input_open = false;
            input_eof = true;
            next_eot = Clock::now() + std::chrono::seconds(1);
            pending_input += char(4);
        } else {
            pending_input.append(buf, size_t(n));
        }
        flush_input();
    };
    Clock::time_point quit_sent{};
    bool quitting = false;
    auto next_tick = Clock::now();
    for (;;) {
        if (!stop_reason && stop.requested()) stop_reason = stop.reason();
        if (!stop_reason && c.timeout_s > 0 && seconds_since(t_start) >= c.timeout_s) {
            stop_reason = ExitReason::timeout;
            stop.request(ExitReason::timeout);
        }
        if (stop_reason && !quitting) {
            quitting = true;
            quit_sent = Clock::now();
            qmp.send(R"({"execute":"quit"})");
        }
        if (quitting && seconds_since(quit_sent) > 3) child.terminate(2);
        if (child.poll()) {
            // Gone: collect what it left in the pipes, then stop.
            if (com1_open) drain(com1.read.get(), on_console);
            if (com2_open) drain(com2.read.get(), on_com2);
            if (err_open) drain(child.stderr_fd(), on_stderr);
            if (qmp_open) {
                std::vector<json> msgs;
                qmp.pump(msgs);
                take_events(msgs);
            }
            break;
        }
        std::vector<pollfd> pf;
        if (com1_open) pf.push_back({com1.read.get(), POLLIN, 0});
        if (com2_open) pf.push_back({com2.read.get(), short(POLLIN | (pending_input.empty() ? 0 : POLLOUT)), 0});
        if (input_open && pending_input.empty() && observer.wants_com2_input())
            pf.push_back({c.com2_input_fd, POLLIN, 0});
        if (qmp_open) pf.push_back({qmp.fd(), POLLIN, 0});
        if (err_open) pf.push_back({child.stderr_fd(), POLLIN, 0});
        pf.push_back({stop.fd(), POLLIN, 0});
        auto now = Clock::now();
        double wait_s = std::chrono::duration<double>(next_tick - now).count();
        if (c.timeout_s > 0) wait_s = std::min(wait_s, c.timeout_s - seconds_since(t_start));
        int wait_ms = std::max(0, static_cast<int>(wait_s * 1000) + 1);
        if (!(com1_open || com2_open || qmp_open || err_open)) wait_ms = std::min(wait_ms, 20);   // only waitpid left
        int n = ::poll(pf.data(), pf.size(), wait_ms);
        if (n < 0 && errno != EINTR) fail_errno(ErrorKind::environment, "poll");
        for (auto &p : pf) {
            if ((p.revents & POLLOUT) && p.fd == com2.read.get()) flush_input();
            if (!(p.revents & (POLLIN | POLLHUP | POLLERR))) continue;
            if (p.fd == com1.read.get()) com1_open = drain(p.fd, on_console);
            else if (p.fd == com2.read.get()) com2_open = drain(p.fd, on_com2);
            else if (input_open && p.fd == c.com2_input_fd) forward_input();
            else if (p.fd == child.stderr_fd()) err_open = drain(p.fd, on_stderr);
            else if (p.fd == qmp.fd()) {
                std::vector<json> msgs;
                qmp_open = qmp.pump(msgs);
                take_events(msgs);
            } else if (p.fd == stop.fd()) {
                uint64_t v;
                ssize_t r = ::read(p.fd, &v, sizeof v);
                (void)r;
            }
        }
        if (input_eof && com2_open && pending_input.empty() && Clock::now() >= next_eot) {
            pending_input += char(4);
            flush_input();
            next_eot = Clock::now() + std::chrono::seconds(1);
        }
        if (Clock::now() >= next_tick) {
            observer.on_tick(ram, stop);
            next_tick = Clock::now() + std::chrono::milliseconds(static_cast<int>(TICK_INTERVAL_S * 1000));
        }
    }
    int status = child.wait();
    result.elapsed_s = seconds_since(t_start);
    result.console_tail = console.lines(20);
    const std::string &con = console.raw();
    bool panicked = con.find("Kernel panic - not syncing") != std::string::npos;

    if (stop_reason) {
        result.reason = *stop_reason;
        if (*stop_reason == ExitReason::timeout)
            result.detail = cat("guest still running after the ", c.timeout_s, " s timeout; QEMU stopped");
        else if (*stop_reason == ExitReason::signal) {
            result.signal = stop.signal();
            result.detail = cat("ktstr-vmm got ", strsignal(stop.signal()), "; QEMU stopped");
        } else
            result.detail = "stop requested; QEMU stopped";
    } else if (panicked || guest_reason == ExitReason::panic) {
        result.reason = ExitReason::panic;
        auto pos = con.rfind("Kernel panic - not syncing");
        result.detail = pos == std::string::npos ? std::string("guest kernel panicked")
                                                 : std::string(trim(con.substr(pos, con.find('\n', pos) - pos)));
    } else if (guest_reason) {
        result.reason = *guest_reason;
        result.detail = *guest_reason == ExitReason::shutdown ? "guest powered off" : "guest reset itself (reboot or triple fault)";
    } else {
        result.reason = ExitReason::error;
        result.detail = cat("QEMU ", describe_wait_status(status), " without the guest shutting down: ",
                            qemu_failure_text(qemu_stderr));
    }
    result.extra["qemu_status"] = exit_status_code(status);
    if (!qemu_stderr.empty()) result.extra["qemu_stderr"] = std::string(trim(qemu_stderr)).substr(0, 4000);
    result.extra["timings"] = {{"qemu_ready_s", started_s}, {"run_s", result.elapsed_s}};
    observer.on_exit(ram, result);
    return result;
}

} // namespace ktstr::vmm
