// libktstr/vmm: the guest side of a run as ktstr-vmm sees it — the agent's boot image
// (--exec, --shell, --include) and GuestJobObserver, which writes the shared-ring header
// before boot, drains the ring every tick, parses COM2, prints guest events as ktstr.vmm/1
// lines, streams job output, and resolves the guest's exit code (spec vmm.md 10-13).
// Accelerator-neutral: it only sees guest RAM and COM2 bytes.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ktstr/initramfs.h"
#include "ktstr/vmm.h"
#include "ktstr/vmm_frontend.h"
#include "ktstr/wire.h"

namespace ktstr::vmm {

// The agent's initramfs for a job, written to a private temporary file that is removed
// with this object.
class GuestImage {
public:
    // includes: --include HOST[:GUEST]; the base is cached (initramfs::default_cache_dir()).
    GuestImage(const initramfs::JobSpec &job, const std::vector<initramfs::Include> &includes);
    ~GuestImage();
    GuestImage(const GuestImage &) = delete;
    GuestImage &operator=(const GuestImage &) = delete;
    const std::string &path() const { return path_; }
    ojson describe() const;   // for the boot event: bytes, cache hit, build_ms

private:
    std::string dir_, path_;
    ojson info_;
};

class GuestJobObserver : public Observer {
public:
    struct Options {
        int out_fd = -1;            // job stdout (OUTP); -1 drops it
        int err_fd = -1;            // job stderr (ERRP); -1 drops it
        bool print_diagnostics = true;   // guest text lines on COM2 -> log::info
        std::function<void(const ojson &)> on_event;   // each guest event, after it was printed
    };
    GuestJobObserver(EventStream &events, Options opt);

    void on_ram_ready(const GuestRam &ram, const Layout &l) override;
    void on_com2(std::string_view b) override;
    void on_tick(const GuestRam &ram, StopSource &stop) override;
    void on_exit(const GuestRam &ram, ExitResult &r) override;

    const wire::HostSession &session() const { return session_; }

private:
    EventStream &events_;
    Options opt_;
    wire::HostSession session_;
    uint8_t *shm_ = nullptr;
    size_t shm_size_ = 0;
};

// --exec's process status: the guest command's own status, 255 when it is unknown.
int exec_exit_status(const ExitResult &r);

} // namespace ktstr::vmm
