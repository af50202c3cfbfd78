// libktstr/vmm: /dev/kvm, VM and vCPU fds (RAII), the kick signal.
#include "ktstr/kvm.h"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <mutex>

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

namespace ktstr::vmm {

Kvm::Kvm() {
    int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT) fail(ErrorKind::environment, "/dev/kvm does not exist (no KVM on this host; try --accel tcg)");
        if (e == EACCES || e == EPERM)
            fail(ErrorKind::environment, "/dev/kvm: permission denied (add yourself to group 'kvm' or use --accel tcg)");
        fail_errno(ErrorKind::environment, "open /dev/kvm", e);
    }
    fd_.reset(fd);
    int api = ::ioctl(fd, KVM_GET_API_VERSION, 0);
    if (api != KVM_API_VERSION) fail(ErrorKind::environment, "/dev/kvm: API version ", api, ", expected ", KVM_API_VERSION);
    int sz = ::ioctl(fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (sz <= 0) fail_errno(ErrorKind::environment, "KVM_GET_VCPU_MMAP_SIZE");
    mmap_size_ = static_cast<size_t>(sz);
}

int Kvm::check_extension(long cap) const {
    int r = ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap);
    return r < 0 ? 0 : r;
}

void Kvm::require(long cap, const char *name) const {
    if (check_extension(cap) <= 0) fail(ErrorKind::environment, "KVM lacks capability ", name);
}

namespace {
template <typename Header, typename Entry> std::vector<uint8_t> flex_buffer(const std::vector<Entry> &entries) {
    static_assert(sizeof(Header) % alignof(Entry) == 0);
    std::vector<uint8_t> buf(sizeof(Header) + entries.size() * sizeof(Entry));
    const uint32_t n = uint32_t(entries.size());
    std::memcpy(buf.data(), &n, sizeof n);   // nent / nmsrs, then padding 0
    if (!entries.empty()) std::memcpy(buf.data() + sizeof(Header), entries.data(), entries.size() * sizeof(Entry));
    return buf;
}
} // namespace

std::vector<uint8_t> cpuid2_buffer(const std::vector<kvm_cpuid_entry2> &entries) {
    return flex_buffer<KvmCpuid2Header>(entries);
}

std::vector<uint8_t> msrs_buffer(const std::vector<kvm_msr_entry> &entries) {
    return flex_buffer<KvmMsrsHeader>(entries);
}

std::vector<kvm_cpuid_entry2> Kvm::supported_cpuid() const {
    for (uint32_t n = 128;; n *= 2) {
        std::vector<uint8_t> buf = cpuid2_buffer(std::vector<kvm_cpuid_entry2>(n));
        if (::ioctl(fd_.get(), IOCTL_GET_SUPPORTED_CPUID, buf.data()) == 0) {
            uint32_t got = 0;
            std::memcpy(&got, buf.data(), sizeof got);
            std::vector<kvm_cpuid_entry2> out(std::min(got, n));
            std::memcpy(out.data(), buf.data() + sizeof(KvmCpuid2Header), out.size() * sizeof(kvm_cpuid_entry2));
            return out;
        }
        if (errno != E2BIG || n >= 65536) fail_errno(ErrorKind::environment, "KVM_GET_SUPPORTED_CPUID");
    }
}

KvmVm::KvmVm(const Kvm &kvm) : kvm_(&kvm) {
    // KVM_CREATE_VM can fail with EINTR under load; retry with a short backoff.
    int fd = -1;
    for (int attempt = 0;; ++attempt) {
        fd = ::ioctl(kvm.fd(), KVM_CREATE_VM, 0);
        if (fd >= 0 || errno != EINTR || attempt >= 5) break;
        struct timespec ts = {0, 2000L << attempt};
        nanosleep(&ts, nullptr);
    }
    if (fd < 0) fail_errno(ErrorKind::environment, "KVM_CREATE_VM");
    fd_.reset(fd);
}

int KvmVm::check_extension(long cap) const {
    int r = ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap);
    return r < 0 ? 0 : r;
}

int KvmVm::ioctl_or_fail(unsigned long req, const void *arg, const char *what) const {
    int r = ::ioctl(fd_.get(), req, arg);
    if (r < 0) fail_errno(ErrorKind::environment, what);
    return r;
}

void KvmVm::set_memory_region(uint32_t slot, uint64_t gpa, uint64_t size, void *host) {
    kvm_userspace_memory_region r{};
    r.slot = slot;
    r.guest_phys_addr = gpa;
    r.memory_size = size;
    r.userspace_addr = reinterpret_cast<uint64_t>(host);
    if (::ioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &r) < 0) {
        int e = errno;
        if (e == EEXIST)
            fail(ErrorKind::environment, "KVM_SET_USER_MEMORY_REGION slot ", slot, " [0x", hex16(gpa), ", +0x",
                 hex16(size), "): overlaps another slot or a KVM-private page (the MMIO hole below 4 GiB)");
        fail_errno(ErrorKind::environment, cat("KVM_SET_USER_MEMORY_REGION slot ", slot, " gpa 0x", hex16(gpa)), e);
    }
}

KvmVcpu KvmVm::create_vcpu(uint32_t id) {
    int fd = ::ioctl(fd_.get(), KVM_CREATE_VCPU, static_cast<unsigned long>(id));
    if (fd < 0) {
        int e = errno;
        int max_id = check_extension(KVM_CAP_MAX_VCPU_ID);
        fail_errno(ErrorKind::environment,
                   cat("KVM_CREATE_VCPU id ", id, " (KVM_CAP_MAX_VCPU_ID ", max_id, ", KVM_CAP_MAX_VCPUS ",
                       check_extension(KVM_CAP_MAX_VCPUS), ")"),
                   e);
    }
    unique_fd vfd(fd);
    Mapping run = Mapping::map_fd(vfd.get(), kvm_->vcpu_mmap_size(), PROT_READ | PROT_WRITE, 0);
    return KvmVcpu(std::move(vfd), std::move(run), id);
}

int KvmVcpu::ioctl_or_fail(unsigned long req, void *arg, const char *what) const {
    int r = ::ioctl(fd_.get(), req, arg);
    if (r < 0) fail_errno(ErrorKind::environment, cat(what, " (vCPU ", id_, ")"));
    return r;
}

kvm_regs KvmVcpu::get_regs() const {
    kvm_regs r{};
    ioctl_or_fail(KVM_GET_REGS, &r, "KVM_GET_REGS");
    return r;
}
void KvmVcpu::set_regs(const kvm_regs &r) const { ioctl_or_fail(KVM_SET_REGS, const_cast<kvm_regs *>(&r), "KVM_SET_REGS"); }
kvm_sregs KvmVcpu::get_sregs() const {
    kvm_sregs s{};
    ioctl_or_fail(KVM_GET_SREGS, &s, "KVM_GET_SREGS");
    return s;
}
void KvmVcpu::set_sregs(const kvm_sregs &s) const {
    ioctl_or_fail(KVM_SET_SREGS, const_cast<kvm_sregs *>(&s), "KVM_SET_SREGS");
}

kvm_vcpu_events KvmVcpu::get_events() const {
    kvm_vcpu_events e{};
    ioctl_or_fail(KVM_GET_VCPU_EVENTS, &e, "KVM_GET_VCPU_EVENTS");
    return e;
}
void KvmVcpu::set_events(const kvm_vcpu_events &e) const {
    ioctl_or_fail(KVM_SET_VCPU_EVENTS, const_cast<kvm_vcpu_events *>(&e), "KVM_SET_VCPU_EVENTS");
}

int KvmVcpu::run_once() const {
    if (::ioctl(fd_.get(), KVM_RUN, 0) == 0) return 0;
    int e = errno;
    if (e == EINTR || e == EAGAIN) return -e;
    fail_errno(ErrorKind::environment, cat("KVM_RUN (vCPU ", id_, ")"), e);
}

// SIGRTMIN itself may be used by the threading library on some libcs; one
// above it is ours.
int kick_signal() { return SIGRTMIN + 1; }

void install_kick_handler() {
    static std::once_flag once;
    std::call_once(once, [] {
        struct sigaction sa{};
        sa.sa_sigaction = [](int, siginfo_t *, void *) {};
        sa.sa_flags = SA_SIGINFO;
        sigemptyset(&sa.sa_mask);
        sigaction(kick_signal(), &sa, nullptr);
    });
}

} // namespace ktstr::vmm
