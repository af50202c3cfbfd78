// libktstr/vmm: --stop-on: end a run once given texts appeared on the console.
//
// For early-boot checks ("boot until the kernel printed its e820 map, ACPI
// and NUMA setup and CPU count, then stop") under any accelerator.  Lines are
// matched by substring, each text at most once; when every text has been
// seen the run is stopped with ExitReason::stopped and the detail says so.
#pragma once

#include <string>
#include <vector>

#include "ktstr/vmm.h"

namespace ktstr::vmm {

class ConsoleStopObserver : public Observer {
public:
    explicit ConsoleStopObserver(std::vector<std::string> texts);
    void on_console(std::string_view bytes) override;
    void on_tick(const GuestRam &, StopSource &stop) override;
    void on_exit(const GuestRam &, ExitResult &r) override;
    bool all_seen() const;
    // Seconds since construction at which each text first appeared (-1: not yet).
    const std::vector<double> &seen_at() const { return seen_at_; }

private:
    void check_line();
    std::vector<std::string> texts_;
    std::vector<double> seen_at_;
    std::string line_;
    Clock::time_point t0_ = Clock::now();
    bool requested_ = false;
};

} // namespace ktstr::vmm
