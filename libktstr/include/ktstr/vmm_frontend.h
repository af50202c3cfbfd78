// libktstr/vmm: the observers ktstr-vmm composes around run_vm() — the
// ktstr.vmm/1 event stream, console/COM2 sinks and the monitor socket.
// They hold the front end's logic so that tests reach it and the tool stays thin.
#pragma once

#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>

#include "ktstr/vmm.h"

namespace ktstr::vmm {

// ktstr.vmm/1 JSON lines: each event gets "schema" and "elapsed_s" (seconds
// since t0, the start of ktstr-vmm) and is flushed at once.
class EventStream {
public:
    explicit EventStream(Clock::time_point t0, FILE *out = stdout) : t0_(t0), out_(out) {}
    // `event` must carry "event"; its other fields follow the stamp in order.
    void emit(const ojson &event);
    double elapsed() const { return seconds_since(t0_); }
    // Send later events elsewhere (--exec keeps stdout for the command's output);
    // nullptr drops them.
    void set_output(FILE *out) {
        std::lock_guard lk(mu_);
        out_ = out;
    }

private:
    Clock::time_point t0_;
    FILE *out_;
    std::mutex mu_;
};

// The `exit` event for a run: reason, exit_code, detail, console_tail, ...
ojson exit_event(const ExitResult &r, int exit_code);

// Prints `boot` (and `layout` when asked) once the guest is about to run.
class BootEventObserver : public Observer {
public:
    // `extra` fields are added to the boot event (e.g. accel_reason).
    BootEventObserver(EventStream &events, bool print_layout, ojson extra = ojson::object())
        : events_(events), print_layout_(print_layout), extra_(std::move(extra)) {}
    void on_started(const GuestRam &, const Layout &l, const ojson &boot) override;

private:
    EventStream &events_;
    bool print_layout_;
    ojson extra_;
};

// Copies COM1 (the kernel console) or COM2 bytes to an fd as they arrive.
class StreamSink : public Observer {
public:
    enum class Port { console, com2 };
    // Writes to `fd` (not owned), e.g. STDERR_FILENO.
    StreamSink(Port port, int fd) : port_(port), fd_(fd) {}
    // Creates/truncates `path` (0644) and owns it.
    StreamSink(Port port, const std::string &path);
    void on_console(std::string_view b) override;
    void on_com2(std::string_view b) override;

private:
    void put(std::string_view b);
    Port port_;
    unique_fd owned_;
    int fd_ = -1;
    bool broken_ = false;
};

// --monitor-socket PATH: listens from construction (so a client may connect
// before the guest starts) and answers every client with one message, the
// ktstr.layout/1 JSON with the guest-RAM memfds attached (fd i = fd_index i),
// as soon as the layout is known; then closes that connection.  The socket
// file is unlinked on destruction.
class MonitorSocketServer : public Observer {
public:
    explicit MonitorSocketServer(const std::string &path);
    ~MonitorSocketServer() override;
    MonitorSocketServer(const MonitorSocketServer &) = delete;
    MonitorSocketServer &operator=(const MonitorSocketServer &) = delete;

    void on_started(const GuestRam &ram, const Layout &l, const ojson &) override;
    void on_exit(const GuestRam &, ExitResult &) override;   // stop serving: RAM goes away
    size_t clients_served() const { return served_; }

private:
    void serve();
    std::string path_;
    unique_fd listen_, wake_;
    std::thread thread_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::string message_;            // layout JSON + "\n"; empty until published
    std::vector<int> fds_;           // RAM fds (owned by GuestRam, valid until on_exit)
    bool closed_ = false;
    std::atomic<size_t> served_{0};
};

} // namespace ktstr::vmm
