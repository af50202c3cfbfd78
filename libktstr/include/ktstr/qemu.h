// libktstr/vmm: the TCG accelerator — qemu-system-x86_64 as a supervised child.
//
// The pure parts (machine choice, memory plan, argv) live here so that they are
// unit-tested; run_tcg() in vmm.h puts them together.
//
// How the requested topology reaches the guest (spec vmm.md §18): in QEMU 7.2
// the L3 cache follows the socket, so each LLC becomes a socket
// (-smp sockets=LLCS,dies=1,cores=C,threads=T); CPUs are numbered thread-fastest
// like ours, so QEMU's APIC ids equal Topology::apic_id().  Sockets go to NUMA
// nodes with -numa cpu,node-id=N,socket-id=S, and each node's memory is its own
// memfd (memory-backend-file over /proc/self/fd/N, share=on), because 7.2's
// memory-backend-file has no offset property.  QEMU lays the node backends out
// back to back in one RAM space: [0, min(total, 3G)) below 4 GiB, the rest from
// 4 GiB up (microvm always; pc with max-ram-below-4g=3G).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ktstr/vmm.h"

namespace ktstr::vmm {

inline constexpr uint64_t QEMU_LOW_RAM_MAX = 3 * GiB;
inline constexpr uint64_t QEMU_HIGH_RAM_BASE = 4 * GiB;

// microvm (lean: no PCI, no SeaBIOS, ACPI tables for the CPUs) when the guest
// has one NUMA node; microvm builds no SRAT, so NUMA guests use pc -nodefaults.
// A non-empty `override_machine` ("pc", "q35", "microvm" ...) wins.
std::string qemu_machine_for(const Topology &t, const std::string &override_machine);

// Where guest RAM and the shared region go under QEMU.  One memfd per NUMA
// node.  The shared region must stay clear of what QEMU's loader and firmware
// put into RAM: with RAM above 4 GiB it is the top of that range; otherwise it
// ends 2 MiB-aligned below the window where QEMU places the initrd (the top of
// low RAM, capped by the kernel's initrd_addr_max) with a 2 MiB margin for the
// firmware, and must start above the kernel's decompression buffer
// [16 MiB, 16 MiB + init_size).  Error(usage) when memory is too small.
MemoryPlan plan_qemu_memory(const Topology &t, uint64_t memory_mb, uint64_t shm_size,
                            const BzImageHeader &kernel, uint64_t initrd_size);

// The fds ktstr-vmm hands to QEMU (inherited, numbers as seen by QEMU).
struct QemuFds {
    std::vector<int> ram;      // one per MemoryPlan::fd_sizes entry
    int com1 = -1;             // write end of the console pipe
    int com2 = -1;             // write end of the COM2 pipe, or QEMU's end of a socketpair
    int qmp = -1;              // QEMU's end of the QMP socketpair
    bool com2_socket = false;  // com2 is a socket (bidirectional: --shell input)
};

// The complete argv (argv[0] = binary).
std::vector<std::string> qemu_argv(const std::string &binary, const VmConfig &c, const MemoryPlan &plan,
                                   const std::string &machine, const std::string &cmdline,
                                   const QemuFds &fds);

// "QEMU emulator version 7.2.22 (Debian ...)" -> {7,2,22}
struct QemuVersion {
    int major = 0, minor = 0, micro = 0;
    auto operator<=>(const QemuVersion &) const = default;
    std::string to_string() const;
};
std::optional<QemuVersion> parse_qemu_version(std::string_view version_output);
// Oldest QEMU whose options we use (microvm acpi=on, -machine memory-backend=,
// -numa cpu, chardev socket fd=).  Tested with 7.2.
inline constexpr QemuVersion QEMU_MIN_VERSION{6, 2, 0};

// Find the binary (override or $PATH); Error(environment) that says what is
// missing and how to install it (qemu-system-x86).  The version is checked
// from QMP's greeting at start (no extra process on the fast path).
std::string find_qemu(const std::string &override_path);
// Error(environment) when `v` is older than QEMU_MIN_VERSION.
void require_qemu_version(const std::string &path, const QemuVersion &v);
// `qemu --version`, for explaining a QEMU that failed before QMP answered.
std::optional<QemuVersion> query_qemu_version(const std::string &path);

// The host TSC rate in kHz (x86-64), measured against CLOCK_MONOTONIC_RAW over
// ~30 ms; nullopt when it cannot be measured plausibly.  Under TCG the guest
// TSC runs at this rate (QEMU reads the host TSC).
std::optional<uint64_t> host_tsc_khz();

// QMP SHUTDOWN event reason -> our ExitReason ("guest-shutdown" -> shutdown,
// "guest-reset" -> reboot, "guest-panic" -> panic); nullopt for host-side reasons.
std::optional<ExitReason> exit_reason_from_qmp(std::string_view qmp_reason);

} // namespace ktstr::vmm
