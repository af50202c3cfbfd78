// The agent as PID 1 (vmm spec section 13): mounts, the channel to the host, the optional
// scheduler, the job, the report, and the end of the VM.
#include "ktstr/guest.h"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <exception>
#include <thread>

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "ktstr/cli.h"
#include "ktstr/process.h"

namespace ktstr::guest {

namespace {

HostChannel g_host;   // global: the crash handler needs it

[[noreturn]] void end_vm() {
    if (g_host.ring()) g_host.ring()->store_byte(wire::off::SLOT1, wire::SLOT1_SHUTDOWN);
    g_host.drain();
    ::sync();
    ::usleep(100 * 1000);
    // Reset rather than power off: with reboot=k the kernel writes 0xFE to the i8042, which
    // both our KVM VMM and QEMU (-no-reboot) turn into a clean exit; a power-off needs ACPI
    // PM registers our own VMM does not emulate.
    ::reboot(RB_AUTOBOOT);
    for (;;) ::pause();
}

void on_fatal_signal(int sig) {
    char text[96];
    snprintf(text, sizeof text, "ktstr-guest crashed: signal %d (%s)", sig, strsignal(sig));
    g_host.crash(text);
    end_vm();
}

void on_terminate() {
    std::string what = "ktstr-guest: uncaught exception";
    if (auto e = std::current_exception()) {
        try { std::rethrow_exception(e); }
        catch (const std::exception &x) { what += cat(": ", x.what()); }
        catch (...) {}
    }
    g_host.crash(what);
    end_vm();
}

void install_crash_handlers() {
    struct sigaction sa = {};
    sa.sa_handler = on_fatal_signal;
    sa.sa_flags = SA_RESETHAND;
    for (int s : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT}) ::sigaction(s, &sa, nullptr);
    std::set_terminate(on_terminate);
}

// Spec step 3.  Returns the failures worth reporting (proc, sys, dev, tmp).
std::vector<std::string> mount_all() {
    struct M { const char *src, *dir, *type; bool report; };
    static const M mounts[] = {
        {"proc", "/proc", "proc", true},
        {"sysfs", "/sys", "sysfs", true},
        {"devtmpfs", "/dev", "devtmpfs", true},
        {"debugfs", "/sys/kernel/debug", "debugfs", false},
        {"tracefs", "/sys/kernel/tracing", "tracefs", false},
        {"bpf", "/sys/fs/bpf", "bpf", false},
        {"cgroup2", "/sys/fs/cgroup", "cgroup2", false},
        {"tmpfs", "/tmp", "tmpfs", true},
        {"tmpfs", "/dev/shm", "tmpfs", false},
        {"tmpfs", "/run", "tmpfs", false},
    };
    std::vector<std::string> errors;
    for (const M &m : mounts) {
        ::mkdir(m.dir, 0755);
        if (::mount(m.src, m.dir, m.type, 0, nullptr) != 0 && errno != EBUSY && m.report)
            errors.push_back(cat("mount ", m.type, " on ", m.dir, ": ", strerror(errno)));
    }
    ::symlink("/proc/self/fd", "/dev/fd");
    ::symlink("/proc/self/fd/0", "/dev/stdin");
    ::symlink("/proc/self/fd/1", "/dev/stdout");
    ::symlink("/proc/self/fd/2", "/dev/stderr");
    return errors;
}

bool exists(const std::string &p) { return ::access(p.c_str(), F_OK) == 0; }

void write_text(const std::string &path, const std::string &text) {
    unique_fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (fd) {
        ssize_t n = ::write(fd.get(), text.data(), text.size());
        (void)n;
    }
}

// The optional scheduler (spec steps 10, 11, 16).
struct Scheduler {
    pid_t pid = -1;
    bool died_reported = false;
};

void sched_log_block(HostChannel &host) {
    host.line(wire::sentinel::SCHED_OUTPUT_START);
    auto log = try_read_file("/tmp/sched.log").value_or("");
    if (log.size() > 64 * 1024) log = "[...]\n" + log.substr(log.size() - 64 * 1024);
    for (const std::string &l : split(log, '\n', false)) host.line(l);
    host.line(wire::sentinel::SCHED_OUTPUT_END);
}

// Returns 0 when the scheduler is up (or there is none), else the job's exit code.
int start_scheduler(HostChannel &host, Scheduler &s, const std::string &shell) {
    if (exists("/sched_enable")) run_capture({shell, "sh", "/sched_enable"}, 10);
    if (!exists("/scheduler")) return 0;
    std::vector<std::string> argv = {"/scheduler"};
    for (auto &a : split(try_read_file("/sched_args").value_or(""), ' ', false)) {
        for (auto &b : split(a, '\n', false))
            if (!trim(b).empty()) argv.emplace_back(trim(b));
    }
    for (size_t i = 0; i + 1 < argv.size(); i++) {
        if (argv[i] == "--cell-parent-cgroup") {
            std::string dir = "/sys/fs/cgroup" + argv[i + 1];
            ::mkdir(dir.c_str(), 0755);
            write_text(dir.substr(0, dir.rfind('/')) + "/cgroup.subtree_control", "+cpuset +cpu");
        }
    }
    s.pid = ::fork();
    if (s.pid == 0) {
        int log = ::open("/tmp/sched.log", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        ::dup2(log, 1);
        ::dup2(log, 2);
        std::vector<char *> cargv;
        for (auto &a : argv) cargv.push_back(a.data());
        cargv.push_back(nullptr);
        ::execv(cargv[0], cargv.data());
        ::_exit(127);
    }
    ::setenv("SCHED_PID", std::to_string(s.pid).c_str(), 1);
    auto fail_sched = [&](std::string_view why) {
        sched_log_block(host);
        host.line(why);
        return 1;
    };
    for (int i = 0; i < 20; i++) {   // dies within 1 s?
        int ws;
        if (::waitpid(s.pid, &ws, WNOHANG) == s.pid) {
            s.pid = -1;
            return fail_sched(wire::sentinel::SCHEDULER_DIED);
        }
        ::usleep(50 * 1000);
    }
    bool readable = false;
    for (int i = 0; i < 60; i++) {   // attached within 3 s?
        auto ops = try_read_file("/sys/kernel/sched_ext/root/ops");
        readable |= ops.has_value();
        if (ops && !trim(*ops).empty()) {
            if (host.ring()) host.ring()->store_byte(wire::off::SLOT1, 1);
            return 0;
        }
        ::usleep(50 * 1000);
    }
    return fail_sched(cat(wire::sentinel::SCHEDULER_NOT_ATTACHED,
                          readable ? "timeout" : "sched_ext sysfs absent"));
}

void stop_scheduler(HostChannel &host, Scheduler &s, const std::string &shell) {
    if (s.pid > 0) {
        ::kill(s.pid, SIGINT);
        for (int i = 0; i < 40; i++) {
            int ws;
            if (::waitpid(s.pid, &ws, WNOHANG) == s.pid) { s.pid = -1; break; }
            ::usleep(50 * 1000);
        }
        if (s.pid > 0) { ::kill(s.pid, SIGKILL); ::waitpid(s.pid, nullptr, 0); }
        sched_log_block(host);
    }
    if (exists("/sched_disable")) run_capture({shell, "sh", "/sched_disable"}, 10);
}

// Spec step 13/14: host requests in the ring header, and the scheduler-death watcher.
class Watcher {
public:
    Watcher(HostChannel &host, Scheduler &s) : host_(host), sched_(s) {
        thread_ = std::thread([this] { loop(); });
    }
    ~Watcher() {
        stop_ = true;
        thread_.join();
    }

private:
    void loop() {
        while (!stop_) {
            if (wire::RingWriter *r = host_.ring()) {
                if (r->load_byte(wire::off::DUMP_REQUEST) == 'D') {
                    write_text("/proc/sysrq-trigger", "D");
                    r->store_byte(wire::off::DUMP_REQUEST, 0);
                }
                if (r->load_byte(wire::off::STALL_REQUEST) == 'S') {
                    unique_fd(::open("/tmp/ktstr_stall", O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
                    r->store_byte(wire::off::STALL_REQUEST, 0);
                }
                if (r->load_byte(wire::off::SLOT0) == wire::SLOT0_FLUSH) host_.drain();
            }
            pid_t pid = sched_.pid;
            if (pid > 0 && !sched_.died_reported && !exists(cat("/proc/", pid)) ) {
                sched_.died_reported = true;
                host_.send(wire::msg::SCDX, wire::encode_i32(1));
                host_.line(wire::sentinel::SCHEDULER_DIED);
            }
            for (int i = 0; i < 4 && !stop_; i++) ::usleep(50 * 1000);
        }
    }
    HostChannel &host_;
    Scheduler &sched_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

const char *const HELP =
    "Usage: ktstr-guest\n"
    "\n"
    "The ktstr guest agent.  ktstr-vmm packs it into the initramfs as /init; the kernel\n"
    "runs it as PID 1.  It mounts the usual filesystems, maps the shared ring named by\n"
    "KTSTR_SHM_BASE/KTSTR_SHM_SIZE on the kernel command line through /dev/mem, reads its\n"
    "job from /args (first line: the job kind), runs it, reports the exit code on the ring\n"
    "and COM2, and resets the VM.  Job kinds:\n";

} // namespace

int agent_main(int argc, char **argv) {
    if (::getpid() != 1) {
        std::string help = HELP;
        for (const JobKind &k : job_kinds()) help += cat("  ", k.name, std::string(10 - std::min<size_t>(9, k.name.size()), ' '), k.summary, '\n');
        return cli::tool_main(argc, argv, {"ktstr-guest", help}, [](const std::vector<std::string> &) -> int {
            fail(ErrorKind::usage, "ktstr-guest runs as /init (PID 1) inside a ktstr guest; "
                                   "ktstr-vmm starts it");
        });
    }
    log::set_program("ktstr-guest");
    install_crash_handlers();
    auto mount_errors = mount_all();
    std::string cmdline = try_read_file("/proc/cmdline").value_or("");
    bool ring_wanted = cmdline.find("ktstr.ring=off") == std::string::npos;
    std::string no_ring = g_host.open(cmdline, "/dev/ttyS1", ring_wanted);
    if (g_host.com2_fd() >= 0) {   // stdout/stderr of the agent and its helpers go to COM2
        ::dup2(g_host.com2_fd(), 1);
        ::dup2(g_host.com2_fd(), 2);
    }
    for (const std::string &e : mount_errors) g_host.line(cat("ktstr-guest: ", e));
    if (!exists("/.ktstr_init_ok")) {
        g_host.line(cat(wire::sentinel::FATAL_PREFIX, "initramfs extraction incomplete"));
        end_vm();
    }
    write_text("/proc/sys/kernel/bpf_stats_enabled", "1");

    std::vector<std::string> args = parse_args_file(try_read_file("/args").value_or(""));
    const JobKind *kind = args.empty() ? nullptr : find_job_kind(args[0]);
    if (!kind) {
        g_host.line(cat(wire::sentinel::FATAL_PREFIX,
                        args.empty() ? std::string("no job: /args is missing or empty")
                                     : cat("unknown job kind '", args[0], "' in /args")));
        g_host.report_exit(255);
        end_vm();
    }
    if (kind->report_init) g_host.line(wire::sentinel::INIT_STARTED);
    if (!no_ring.empty()) g_host.line(cat("ktstr-guest: ring not used: ", no_ring));

    std::string shell = "/bin/busybox";
    std::string path = "/include-files:/bin:/sbin:/usr/bin:/usr/sbin";
    if (exists(shell)) run_capture({shell, "--install", "-s", "/bin"}, 10);
    ::setenv("PATH", path.c_str(), 1);
    ::setenv("KTSTR_GUEST_INIT", "1", 1);
    ::setenv("HOME", "/tmp", 0);

    Scheduler sched;
    int code = start_scheduler(g_host, sched, shell);
    if (code == 0) {
        Watcher watcher(g_host, sched);
        JobContext ctx;
        ctx.args.assign(args.begin() + 1, args.end());
        ctx.host = &g_host;
        ctx.shell = shell;
        ctx.emit = [](const ojson &ev) { g_host.event(ev); };
        if (kind->report_init) g_host.line(wire::sentinel::PAYLOAD_STARTING);
        try {
            code = kind->run(ctx);
        } catch (const std::exception &e) {
            g_host.crash(cat("job ", kind->name, " failed: ", e.what()));
            code = 255;
        }
    }
    stop_scheduler(g_host, sched, shell);
    if (g_host.stream_drops())
        g_host.line(cat("ktstr-guest: ", g_host.stream_drops(),
                        " output chunks dropped: the host did not drain the ring"));
    g_host.report_exit(code);
    end_vm();
}

} // namespace ktstr::guest
