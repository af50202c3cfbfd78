// libktstr/vmm: event stream, console/COM2 sinks and the monitor socket server.
#include "ktstr/vmm_frontend.h"

#include <cerrno>
#include <cmath>

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ktstr/fdpass.h"

namespace ktstr::vmm {

void EventStream::emit(const ojson &event) {
    ojson line = make_doc("vmm", 1);
    line["event"] = event.value("event", "unknown");
    line["elapsed_s"] = std::round(elapsed() * 1e6) / 1e6;
    for (auto it = event.begin(); it != event.end(); ++it)
        if (it.key() != "event" && it.key() != "schema" && it.key() != "elapsed_s") line[it.key()] = it.value();
    std::lock_guard lk(mu_);
    if (out_) emit_line(line, out_);
}

ojson exit_event(const ExitResult &r, int exit_code) {
    ojson e;
    e["event"] = "exit";
    e["reason"] = exit_reason_name(r.reason);
    e["exit_code"] = exit_code;
    e["guest_exit_code"] = r.guest_exit_code ? ojson(*r.guest_exit_code) : ojson(nullptr);
    e["run_s"] = std::round(r.elapsed_s * 1e6) / 1e6;
    e["detail"] = r.detail;
    if (r.signal) e["signal"] = r.signal;
    e["console_tail"] = r.console_tail;
    for (auto it = r.extra.begin(); it != r.extra.end(); ++it)
        if (!e.contains(it.key())) e[it.key()] = it.value();
    return e;
}

void BootEventObserver::on_started(const GuestRam &, const Layout &l, const ojson &boot) {
    ojson b = boot;
    for (auto it = extra_.begin(); it != extra_.end(); ++it) b[it.key()] = it.value();
    events_.emit(b);
    if (print_layout_) {
        ojson ev = l.to_json();
        ev.erase("schema");   // the line's schema is ktstr.vmm/1; the layout's own goes along
        ojson e;
        e["event"] = "layout";
        e["layout_schema"] = schema_name("layout", 1);
        for (auto it = ev.begin(); it != ev.end(); ++it) e[it.key()] = it.value();
        events_.emit(e);
    }
}

// ---- console / COM2 ---------------------------------------------------------------

StreamSink::StreamSink(Port port, const std::string &path) : port_(port) {
    owned_.reset(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!owned_) fail_errno(ErrorKind::input, cat("cannot write ", port == Port::console ? "--console " : "--com2 ", path));
    fd_ = owned_.get();
}

void StreamSink::on_console(std::string_view b) {
    if (port_ == Port::console) put(b);
}
void StreamSink::on_com2(std::string_view b) {
    if (port_ == Port::com2) put(b);
}

void StreamSink::put(std::string_view b) {
    if (broken_) return;
    try {
        write_all(fd_, b);
    } catch (const Error &e) {
        broken_ = true;   // a closed reader must not stop the VM; say it once
        log::warn(port_ == Port::console ? "console" : "COM2", " output stopped: ", e.what());
    }
}

// ---- monitor socket -----------------------------------------------------------------

MonitorSocketServer::MonitorSocketServer(const std::string &path) : path_(path) {
    listen_ = unix_listen(path);
    wake_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!wake_) {
        ::unlink(path_.c_str());
        fail_errno(ErrorKind::environment, "eventfd");
    }
    thread_ = std::thread([this] { serve(); });
}

MonitorSocketServer::~MonitorSocketServer() {
    {
        std::lock_guard lk(mu_);
        closed_ = true;
    }
    cv_.notify_all();
    notify_eventfd(wake_.get());
    if (thread_.joinable()) thread_.join();
    ::unlink(path_.c_str());
}

void MonitorSocketServer::on_started(const GuestRam &ram, const Layout &l, const ojson &) {
    std::lock_guard lk(mu_);
    message_ = l.to_json().dump() + "\n";
    fds_ = ram.fds();
    cv_.notify_all();
}

void MonitorSocketServer::on_exit(const GuestRam &, ExitResult &) {
    {
        std::lock_guard lk(mu_);
        closed_ = true;
        fds_.clear();
    }
    cv_.notify_all();
}

void MonitorSocketServer::serve() {
    for (;;) {
        pollfd p[2] = {{listen_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
        int n = ::poll(p, 2, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 || (p[1].revents & POLLIN)) return;
        if (!(p[0].revents & POLLIN)) continue;
        unique_fd client(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!client) continue;
        std::unique_lock lk(mu_);
        // A client that comes before the layout waits for it (or for the end).
        cv_.wait(lk, [&] { return closed_ || !message_.empty(); });
        if (closed_ || fds_.empty()) return;   // RAM is gone: nothing to hand out
        try {
            send_with_fds(client.get(), message_, fds_);
            ++served_;
        } catch (const Error &e) {
            log::warn("monitor socket: a client went away before its layout was sent: ", e.what());
        }
    }
}

} // namespace ktstr::vmm
