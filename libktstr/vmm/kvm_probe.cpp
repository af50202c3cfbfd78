// libktstr/vmm: the KVM speed probe (does guest code run at hardware speed?).
#include "ktstr/kvm.h"

#include <atomic>
#include <chrono>
#include <csignal>
#include <thread>

#include <pthread.h>
#include <sys/mman.h>

namespace ktstr::vmm {

namespace {

// Real-mode loop at 0x1000:  66 40  inc eax ;  EB FC  jmp 0x1000
constexpr uint8_t PROBE_LOOP[] = {0x66, 0x40, 0xEB, 0xFC};
constexpr uint64_t PROBE_CODE_GPA = 0x1000;
constexpr size_t PROBE_RAM = 0x10000;

// Run the vCPU until another thread kicks it after `ms`; returns wall ms.
double run_for(const KvmVcpu &vcpu, double ms) {
    std::atomic<bool> done{false};
    pthread_t self = pthread_self();
    kvm_run *run = vcpu.run();
    auto t0 = Clock::now();
    std::thread kicker([&] {
        auto deadline = t0 + std::chrono::microseconds(static_cast<long>(ms * 1000));
        while (!done.load(std::memory_order_acquire)) {
            if (Clock::now() >= deadline) {
                run->immediate_exit = 1;
                std::atomic_thread_fence(std::memory_order_release);
                pthread_kill(self, kick_signal());
            }
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
    });
    int rc = 0;
    std::string err;
    try {
        // The loop never exits by itself: only the kick (EINTR) or a failure ends it.
        while ((rc = vcpu.run_once()) == 0 && run->exit_reason == KVM_EXIT_INTR) {}
    } catch (const Error &e) {
        err = e.what();
    }
    double wall = seconds_since(t0) * 1000.0;
    done.store(true, std::memory_order_release);
    kicker.join();
    run->immediate_exit = 0;
    if (!err.empty()) throw Error(ErrorKind::environment, err);
    if (rc == 0)
        fail(ErrorKind::environment, "probe loop stopped with KVM exit reason ", run->exit_reason,
             " (expected to run until kicked)");
    return wall;
}

} // namespace

KvmSpeed kvm_speed_probe(double run_ms, double threshold) {
    KvmSpeed out;
    out.threshold = threshold;
    try {
        install_kick_handler();
        Kvm kvm;
        KvmVm vm(kvm);
        Mapping ram = Mapping::anonymous(PROBE_RAM);
        std::copy(std::begin(PROBE_LOOP), std::end(PROBE_LOOP), ram.data() + PROBE_CODE_GPA);
        vm.set_memory_region(0, 0, PROBE_RAM, ram.data());
        KvmVcpu vcpu = vm.create_vcpu(0);
        kvm_sregs s = vcpu.get_sregs();
        s.cs.base = 0;
        s.cs.selector = 0;
        vcpu.set_sregs(s);
        kvm_regs r{};
        r.rip = PROBE_CODE_GPA;
        r.rflags = 2;
        vcpu.set_regs(r);
        // Warm-up: the first entry pays for VMCS/page-table setup.
        run_for(vcpu, run_ms / 4);
        uint64_t before = vcpu.get_regs().rax & 0xFFFFFFFFu;
        double ms = run_for(vcpu, run_ms);
        uint64_t after = vcpu.get_regs().rax & 0xFFFFFFFFu;
        uint64_t iterations = (after - before) & 0xFFFFFFFFu;
        out.available = true;
        out.measured_ms = ms;
        out.instructions_per_second = ms > 0 ? 2.0 * double(iterations) / (ms / 1000.0) : 0;
        out.hardware_speed = out.instructions_per_second >= threshold;
        char buf[160];
        snprintf(buf, sizeof buf, "KVM ran %.3g guest instructions/s over %.1f ms (hardware speed is >= %.3g)",
                 out.instructions_per_second, ms, threshold);
        out.reason = buf;
        if (!out.hardware_speed) out.reason += ": KVM here is emulated or heavily nested";
    } catch (const std::exception &e) {
        out.available = false;
        out.reason = cat("KVM unusable: ", e.what());
    }
    return out;
}

} // namespace ktstr::vmm
