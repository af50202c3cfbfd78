// The guest's end of the two channels to the host: the shared-memory ring (mapped through
// /dev/mem at the address the host put on the command line) and COM2.
#include "ktstr/guest.h"

#include <cstring>

#include <fcntl.h>
#include <sys/mman.h>
#include <termios.h>
#include <unistd.h>

namespace ktstr::guest {

namespace {
// How long one job-output write waits for the host to drain a full ring.
constexpr double STREAM_WAIT_S = 10.0;
} // namespace

std::string HostChannel::open(const std::string &cmdline, const std::string &com2_path,
                              bool use_ring) {
    own_com2_.reset(::open(com2_path.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (own_com2_) {
        com2_fd_ = own_com2_.get();
        struct termios t;
        if (::tcgetattr(com2_fd_, &t) == 0) {   // raw: no CRLF translation inside frames
            ::cfmakeraw(&t);
            ::tcsetattr(com2_fd_, TCSANOW, &t);
        }
    }
    if (!use_ring) return "the ring is disabled";
    auto loc = wire::parse_shm_cmdline(cmdline);
    if (!loc) return "no KTSTR_SHM_BASE/KTSTR_SHM_SIZE on the command line";
    long page = ::sysconf(_SC_PAGESIZE);
    if (loc->base % uint64_t(page) != 0)
        return cat("KTSTR_SHM_BASE 0x", std::hex, loc->base, " is not page-aligned");
    if (loc->size < wire::SHM_HEADER_SIZE || loc->size > (1ull << 32))
        return cat("KTSTR_SHM_SIZE 0x", std::hex, loc->size, " is out of range");
    // Without O_SYNC: the region is ordinary RAM the kernel was told to leave alone, mapped
    // write-back (an uncached request conflicts with its memtype and fails with EAGAIN).
    mem_fd_.reset(::open("/dev/mem", O_RDWR | O_CLOEXEC));
    if (!mem_fd_) return cat("cannot open /dev/mem: ", strerror(errno));
    void *p = ::mmap(nullptr, size_t(loc->size), PROT_READ | PROT_WRITE, MAP_SHARED, mem_fd_.get(),
                     off_t(loc->base));
    if (p == MAP_FAILED)
        return cat("cannot map the shared region at 0x", std::hex, loc->base, " through /dev/mem: ",
                   strerror(errno), " (needs iomem=relaxed lockdown=none)");
    shm_ = Mapping(p, size_t(loc->size));
    own_ring_ = std::make_unique<wire::RingWriter>(shm_.data(), shm_.size());
    if (own_ring_->max_payload() == 0) {
        own_ring_.reset();
        shm_.reset();
        return "the shared region has no valid ring header";
    }
    ring_ = own_ring_.get();
    return "";
}

void HostChannel::attach(int com2_fd, wire::RingWriter *ring) {
    com2_fd_ = com2_fd;
    ring_ = ring;
}

void HostChannel::line(std::string_view text) {
    if (com2_fd_ < 0 || (com2_terminal_ && ring_)) return;
    std::string l(text);
    l += '\n';
    try {
        write_all(com2_fd_, l);
    } catch (const Error &) {   // nowhere left to report it
    }
}

void HostChannel::send(uint32_t type, std::string_view payload, bool stream) {
    if (ring_) {
        using S = wire::RingWriter::Status;
        S st;
        if (stream && host_draining_) {
            st = ring_->write_wait(type, payload, STREAM_WAIT_S);
            if (st == S::full) host_draining_ = false;   // stop waiting for a host that does not read
        } else {
            st = ring_->write(type, payload);
        }
        if (st == S::ok) return;
        if (st == S::full) {
            if (stream) stream_drops_++;
            return;   // counted in the ring's drop counter
        }
        ring_ = nullptr;   // unusable from now on: fall back to COM2
        line("ktstr-guest: the ring became unusable; continuing on COM2");
    }
    if (com2_fd_ < 0) return;
    std::string frame = wire::com2_frame_header(type, payload);
    frame.append(payload);
    frame += '\n';
    try {
        write_all(com2_fd_, frame);
    } catch (const Error &) {
    }
}

void HostChannel::event(const ojson &ev) {
    send(wire::msg::EVNT, ev.dump(-1, ' ', false, json::error_handler_t::replace));
}

void HostChannel::report_exit(int code) {
    if (ring_) ring_->write(wire::msg::EXIT, wire::encode_i32(code));
    line(cat(wire::sentinel::EXIT_PREFIX, code));
    drain();
}

void HostChannel::drain() {
    if (com2_fd_ >= 0 && ::isatty(com2_fd_)) ::tcdrain(com2_fd_);
}

void HostChannel::crash(std::string_view text) {
    if (ring_) ring_->try_write(wire::msg::CRSH, text);
    if (com2_fd_ >= 0) {
        std::string l = cat(wire::sentinel::PANIC_PREFIX, text, '\n');
        ssize_t n = ::write(com2_fd_, l.data(), l.size());
        (void)n;
    }
}

} // namespace ktstr::guest
