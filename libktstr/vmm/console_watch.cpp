// libktstr/vmm: ConsoleStopObserver (--stop-on).
#include "ktstr/console_watch.h"

#include <algorithm>

namespace ktstr::vmm {

ConsoleStopObserver::ConsoleStopObserver(std::vector<std::string> texts)
    : texts_(std::move(texts)), seen_at_(texts_.size(), -1) {}

void ConsoleStopObserver::check_line() {
    for (size_t i = 0; i < texts_.size(); ++i)
        if (seen_at_[i] < 0 && line_.find(texts_[i]) != std::string::npos) seen_at_[i] = seconds_since(t0_);
    line_.clear();
}

void ConsoleStopObserver::on_console(std::string_view bytes) {
    for (char c : bytes) {
        if (c == '\n') check_line();
        else if (line_.size() < 4096) line_.push_back(c);
    }
}

bool ConsoleStopObserver::all_seen() const {
    return !texts_.empty() && std::all_of(seen_at_.begin(), seen_at_.end(), [](double t) { return t >= 0; });
}

void ConsoleStopObserver::on_tick(const GuestRam &, StopSource &stop) {
    if (!requested_ && all_seen()) {
        requested_ = true;
        stop.request(ExitReason::stopped);
    }
}

void ConsoleStopObserver::on_exit(const GuestRam &, ExitResult &r) {
    if (texts_.empty()) return;
    ojson seen = ojson::array();
    for (size_t i = 0; i < texts_.size(); ++i)
        seen.push_back({{"text", texts_[i]}, {"seen_s", seen_at_[i] < 0 ? ojson(nullptr) : ojson(seen_at_[i])}});
    r.extra["stop_on"] = seen;
    if (r.reason == ExitReason::stopped && requested_) {
        // What the guest had not done yet (reached init ...) is no failure here.
        r.detail = "every --stop-on text appeared on the console";
        r.guest_exit_code = 0;   // the run did what was asked
    }
}

} // namespace ktstr::vmm
