// libktstr/vmm: what both accelerators share — accelerator choice, the kernel
// image, configuration checks, stop requests, observers and exit results.
#include "ktstr/vmm.h"

#include "ktstr/kvm.h"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>

#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

namespace ktstr::vmm {

namespace fs = std::filesystem;

// ---- accelerators -------------------------------------------------------------

const char *accel_name(Accel a) {
    switch (a) {
    case Accel::automatic: return "auto";
    case Accel::kvm: return "kvm";
    case Accel::tcg: return "tcg";
    }
    return "?";
}

Accel parse_accel(const std::string &text) {
    if (text == "auto") return Accel::automatic;
    if (text == "kvm") return Accel::kvm;
    if (text == "tcg") return Accel::tcg;
    fail(ErrorKind::usage, "--accel: '", text, "' is not an accelerator; use kvm, tcg or auto");
}

AccelChoice choose_accel(Accel requested) {
    if (requested == Accel::kvm) return {Accel::kvm, "requested with --accel kvm"};
    if (requested == Accel::tcg) return {Accel::tcg, "requested with --accel tcg"};
    int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return {Accel::tcg, cat("/dev/kvm is not usable (", std::strerror(errno), "); using QEMU TCG")};
    ::close(fd);
    // A nested, emulated /dev/kvm opens fine but runs guests at a few million
    // instructions a second; only a measured run tells.
    KvmSpeed speed = kvm_speed_probe();
    if (speed.available && speed.hardware_speed) return {Accel::kvm, speed.reason};
    return {Accel::tcg, cat(speed.reason, "; using QEMU TCG")};
}

// ---- the kernel ---------------------------------------------------------------

namespace {
template <typename T> T le_at(std::string_view b, size_t off) {
    T v{};
    std::memcpy(&v, b.data() + off, sizeof v);
    return v;
}
} // namespace

BzImageHeader parse_bzimage_header(std::string_view img, const std::string &where) {
    if (img.size() < 0x270) fail(ErrorKind::input, where, ": not a bzImage (only ", img.size(), " bytes)");
    if (le_at<uint16_t>(img, 0x1FE) != 0xAA55)
        fail(ErrorKind::input, where, ": not a bzImage (no boot signature 0xAA55 at 0x1FE)");
    if (le_at<uint32_t>(img, 0x202) != 0x53726448)
        fail(ErrorKind::input, where, ": not a bzImage (no \"HdrS\" setup header at 0x202)");
    BzImageHeader h;
    h.protocol = le_at<uint16_t>(img, 0x206);
    h.setup_sects = static_cast<uint8_t>(img[0x1F1]);
    h.loadflags = static_cast<uint8_t>(img[0x211]);
    h.initrd_addr_max = le_at<uint32_t>(img, 0x22C);
    h.kernel_alignment = le_at<uint32_t>(img, 0x230);
    h.xloadflags = le_at<uint16_t>(img, 0x236);
    h.cmdline_size = le_at<uint32_t>(img, 0x238);
    h.init_size = le_at<uint32_t>(img, 0x260);
    if (h.protocol < 0x020C)
        fail(ErrorKind::input, where, ": boot protocol ", h.protocol >> 8, ".", h.protocol & 0xFF,
             " is too old (need 2.12 or newer)");
    if (!(h.loadflags & 1)) fail(ErrorKind::input, where, ": not a bzImage (LOADED_HIGH not set)");
    if (!(h.xloadflags & 1)) fail(ErrorKind::input, where, ": kernel has no 64-bit entry point (XLF_KERNEL_64)");
    return h;
}

std::optional<std::string> bzimage_version(std::string_view head) {
    if (head.size() < 0x210 || head.substr(0x202, 4) != "HdrS") return std::nullopt;
    const uint16_t ptr = le_at<uint16_t>(head, 0x20E);
    if (ptr == 0) return std::nullopt;   // no version string
    size_t off = 0x200 + size_t(ptr);
    if (off >= head.size()) return std::nullopt;
    std::string_view s = head.substr(off);
    s = s.substr(0, std::min(s.find('\0'), s.find(' ')));
    // A release is printable ASCII ("6.12.118", "6.13.0-rc1+"); anything else is not one.
    if (s.empty() || s.size() > 64 ||
        std::any_of(s.begin(), s.end(), [](char c) { return c < 0x21 || c > 0x7E; }))
        return std::nullopt;
    return std::string(s);
}

namespace {
KernelImage load_bzimage(const std::string &path, std::string vmlinux, std::string version) {
    KernelImage k;
    k.bzimage = fs::absolute(path).lexically_normal().string();
    // 64 KiB: the setup header and the setup sectors, where the version string
    // is (0x44A0 in the fixture's bzImage).
    std::string head = read_file(path, 0x10000);
    k.header = parse_bzimage_header(head, path);
    if (version.empty()) version = bzimage_version(head).value_or("");
    if (vmlinux.empty()) {
        // Beside the image (fixture and build-tree layouts).
        fs::path dir = fs::path(k.bzimage).parent_path();
        for (fs::path cand : {dir / "vmlinux", dir / "../../../vmlinux"})
            if (fs::is_regular_file(cand)) { vmlinux = fs::weakly_canonical(cand).string(); break; }
    }
    k.vmlinux = vmlinux;
    k.version = std::move(version);
    return k;
}
} // namespace

KernelImage resolve_kernel(const std::string &path) {
    if (path.empty()) fail(ErrorKind::usage, "--kernel is required (a bzImage, a directory holding one, or kernel.json)");
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
        std::vector<fs::path> tried;
        for (fs::path cand : {fs::path(path) / "bzImage", fs::path(path) / "arch/x86/boot/bzImage"}) {
            tried.push_back(cand);
            if (fs::is_regular_file(cand)) return load_bzimage(cand.string(), "", "");
        }
        if (fs::is_regular_file(fs::path(path) / "kernel.json")) return resolve_kernel((fs::path(path) / "kernel.json").string());
        std::string list;
        for (auto &t : tried) list += (list.empty() ? "" : ", ") + t.string();
        fail(ErrorKind::input, "--kernel ", path, ": no kernel in this directory (tried ", list, ", kernel.json)");
    }
    if (!fs::exists(path, ec)) fail(ErrorKind::input, "--kernel ", path, ": no such file or directory");
    if (ends_with(path, ".json")) {
        json doc = parse_json(read_file(path), path);
        require_schema(doc, "kernel", 1, path);
        auto bz = get_field<std::string>(doc, "bzimage", path);
        std::string vmlinux = doc.contains("vmlinux") && doc["vmlinux"].is_string() ? doc["vmlinux"].get<std::string>() : "";
        std::string version = doc.contains("version") && doc["version"].is_string() ? doc["version"].get<std::string>() : "";
        fs::path base = fs::path(path).parent_path();
        auto rel = [&](const std::string &p) { return p.empty() || p[0] == '/' ? p : (base / p).string(); };
        return load_bzimage(rel(bz), rel(vmlinux), version);
    }
    return load_bzimage(path, "", "");
}

// ---- configuration -------------------------------------------------------------

void validate_config(const VmConfig &c) {
    if (c.memory_mb == 0) fail(ErrorKind::usage, "--memory-mb must be at least 1");
    if (c.shm_size && (c.shm_size < 40 || c.shm_size % 4096))
        fail(ErrorKind::usage, "shared region size ", c.shm_size, " must be 0 or a multiple of 4096 (at least 40 bytes)");
    if (c.shm_size >= c.memory_mb * MiB)
        fail(ErrorKind::usage, "shared region (", c.shm_size / MiB, " MiB) must be smaller than guest memory (",
             c.memory_mb, " MiB)");
    validate_topology(c.topology);
    auto nodes = c.topology.node_memory_mb(c.memory_mb);
    uint64_t sum = 0;
    for (size_t i = 0; i < nodes.size(); ++i) {
        if (nodes[i] == 0)
            fail(ErrorKind::usage, "NUMA node ", i, " would get no memory (", c.memory_mb, " MiB over ",
                 nodes.size(), " nodes); give each node at least 1 MiB");
        sum += nodes[i];
    }
    if (sum != c.memory_mb)
        fail(ErrorKind::usage, "the topology's node memory adds up to ", sum, " MiB but --memory-mb is ", c.memory_mb);
    if (c.timeout_s < 0) fail(ErrorKind::usage, "--timeout must not be negative");
}

// ---- results --------------------------------------------------------------------

const char *exit_reason_name(ExitReason r) {
    switch (r) {
    case ExitReason::shutdown: return "shutdown";
    case ExitReason::reboot: return "reboot";
    case ExitReason::timeout: return "timeout";
    case ExitReason::signal: return "signal";
    case ExitReason::stopped: return "stopped";
    case ExitReason::panic: return "panic";
    case ExitReason::triple_fault: return "triple_fault";
    case ExitReason::error: return "error";
    }
    return "error";
}

int process_exit_code(const ExitResult &r) {
    if (r.guest_exit_code) return *r.guest_exit_code == 0 ? EXIT_OK : EXIT_VERDICT_FAILED;
    return r.reason == ExitReason::shutdown ? EXIT_OK : EXIT_ENVIRONMENT;
}

ojson boot_event_fields(const VmConfig &c, const std::string &cmdline) {
    ojson e;
    e["event"] = "boot";
    e["accel"] = accel_name(c.accel);
    e["kernel"] = c.kernel.bzimage;
    e["kernel_version"] = c.kernel.version.empty() ? ojson(nullptr) : ojson(c.kernel.version);
    e["vmlinux"] = c.kernel.vmlinux.empty() ? ojson(nullptr) : ojson(c.kernel.vmlinux);
    e["initrd"] = c.initrd.empty() ? ojson(nullptr) : ojson(c.initrd);
    e["topology"] = c.topology.to_string();
    e["cpus"] = c.topology.total_cpus();
    e["memory_mb"] = c.memory_mb;
    e["cmdline"] = cmdline;
    return e;
}

ExitResult run_vm(const VmConfig &c, Observer &o, StopSource &stop) {
    switch (c.accel) {
    case Accel::tcg: return run_tcg(c, o, stop);
    case Accel::kvm: return run_kvm(c, o, stop);
    case Accel::automatic: break;
    }
    fail(ErrorKind::usage, "run_vm: resolve --accel auto with choose_accel() first");
}

// ---- stop requests ----------------------------------------------------------------

StopSource::StopSource() : event_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (!event_) fail_errno(ErrorKind::environment, "eventfd");
}

void StopSource::request(ExitReason reason, int sig) {
    int expected = -1;
    if (reason_.compare_exchange_strong(expected, static_cast<int>(reason))) signal_.store(sig);
    notify_eventfd(event_.get());   // async-signal-safe
}

std::optional<ExitReason> StopSource::reason() const {
    int r = reason_.load();
    if (r < 0) return std::nullopt;
    return static_cast<ExitReason>(r);
}

namespace {
std::atomic<StopSource *> g_signal_target{nullptr};
void on_stop_signal(int sig) {
    if (StopSource *s = g_signal_target.load()) s->request(ExitReason::signal, sig);
}
} // namespace

std::shared_ptr<void> StopSource::install_signal_handlers() {
    g_signal_target.store(this);
    struct Saved {
        struct sigaction old[3];
    };
    auto saved = std::make_shared<Saved>();
    const int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
    for (int i = 0; i < 3; ++i) {
        struct sigaction sa {};
        sa.sa_handler = on_stop_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART;
        ::sigaction(sigs[i], &sa, &saved->old[i]);
    }
    return std::shared_ptr<void>(saved.get(), [saved, sigs](void *) {
        for (int i = 0; i < 3; ++i) ::sigaction(sigs[i], &saved->old[i], nullptr);
        g_signal_target.store(nullptr);
    });
}

// ---- observers --------------------------------------------------------------------

void ObserverList::on_ram_ready(const GuestRam &ram, const Layout &l) {
    for (auto *o : list_) o->on_ram_ready(ram, l);
}
void ObserverList::on_started(const GuestRam &ram, const Layout &l, const ojson &boot) {
    for (auto *o : list_) o->on_started(ram, l, boot);
}
void ObserverList::on_console(std::string_view b) {
    for (auto *o : list_) o->on_console(b);
}
void ObserverList::on_com2(std::string_view b) {
    for (auto *o : list_) o->on_com2(b);
}
void ObserverList::on_tick(const GuestRam &ram, StopSource &s) {
    for (auto *o : list_) o->on_tick(ram, s);
}
void ObserverList::on_exit(const GuestRam &ram, ExitResult &r) {
    for (auto *o : list_) o->on_exit(ram, r);
}
bool ObserverList::wants_com2_input() const {
    for (auto *o : list_)
        if (!o->wants_com2_input()) return false;
    return true;
}

} // namespace ktstr::vmm
