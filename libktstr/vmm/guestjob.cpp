// The guest side of a ktstr-vmm run: the agent's boot image and the observer that talks
// to the agent through the shared ring and COM2.  See ktstr/vmm_guest.h.
#include "ktstr/vmm_guest.h"

#include <cmath>
#include <cstdlib>

#include <sys/ioctl.h>
#include <unistd.h>

namespace ktstr::vmm {

GuestImage::GuestImage(const initramfs::JobSpec &job, const std::vector<initramfs::Include> &includes) {
    const char *tmp = getenv("TMPDIR");
    std::string tmpl = cat(tmp && *tmp ? tmp : "/tmp", "/ktstr-vmm-initrd.XXXXXX");
    if (!::mkdtemp(tmpl.data())) fail_errno(ErrorKind::environment, cat("mkdtemp ", tmpl));
    dir_ = tmpl;
    path_ = dir_ + "/initramfs.cpio.lz4";
    try {
        initramfs::BuildOptions opt;
        opt.cache_dir = initramfs::default_cache_dir();
        auto t0 = Clock::now();
        initramfs::BootImage img = initramfs::build_boot_image(initramfs::agent_base(includes), job, opt);
        img.write(path_);
        info_["initrd_bytes"] = img.size();
        info_["initrd_cache"] = img.base.cache_hit ? "hit" : "miss";
        info_["initrd_build_ms"] = std::round(seconds_since(t0) * 1e6) / 1e3;
    } catch (...) {
        ::unlink(path_.c_str());
        ::rmdir(dir_.c_str());
        throw;
    }
}

GuestImage::~GuestImage() {
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
}

ojson GuestImage::describe() const { return info_; }

namespace {
void write_fd(int fd, std::string_view s) {
    if (fd < 0) return;
    try {
        write_all(fd, s);
    } catch (const Error &) {   // a closed pipe downstream: keep the run going
    }
}
} // namespace

GuestJobObserver::GuestJobObserver(EventStream &events, Options opt)
    : events_(events), opt_(opt),
      session_({[this](std::string_view s) { write_fd(opt_.out_fd, s); },
                [this](std::string_view s) { write_fd(opt_.err_fd, s); },
                [this](const std::string &text) {
                    // EVNT payloads were validated as objects with a string "event"
                    ojson ev = ojson::parse(text, nullptr, false);
                    if (ev.is_discarded()) return;
                    if (ev.value("event", "") == "shell_ready") shell_ready_ = true;
                    events_.emit(ev);
                    if (opt_.on_event) opt_.on_event(ev);
                },
                [this](std::string_view line) {
                    if (opt_.print_diagnostics) log::info("guest: ", line);
                }}) {}

void GuestJobObserver::on_ram_ready(const GuestRam &ram, const Layout &l) {
    if (!l.shm || l.shm->size < wire::SHM_HEADER_SIZE) return;
    uint8_t *p = ram.host(l.shm->base_pa, l.shm->size);
    if (!p) {
        log::warn("shared region at 0x", std::hex, l.shm->base_pa, " is not inside guest RAM; ring disabled");
        return;
    }
    wire::init_header(p, size_t(l.shm->size));
    shm_ = p;
    shm_size_ = size_t(l.shm->size);
}

void GuestJobObserver::on_com2(std::string_view b) {
    if (opt_.com2_raw_fd >= 0) write_fd(opt_.com2_raw_fd, b);   // the shell's terminal
    else session_.on_com2(b);
}

void GuestJobObserver::on_tick(const GuestRam &, StopSource &) { session_.poll_ring(shm_, shm_size_); }

void GuestJobObserver::on_exit(const GuestRam &, ExitResult &r) {
    session_.finish(shm_, shm_size_);
    const wire::Outcome &o = session_.outcome();
    r.guest_exit_code = o.exit_code();
    // The agent ends every run with a reboot once it has reported: that reset
    // is the normal end, not a crash (the backend alone cannot tell).
    if (o.exit_code() && r.reason == ExitReason::reboot)
        r.detail = cat("the guest agent reported exit code ", *o.exit_code(), " and rebooted to end the run");
    auto st = session_.stats();
    r.extra["guest_exit_source"] = o.exit_source();
    if (o.crash()) r.extra["guest_crash"] = *o.crash();
    ojson ring;
    ring["used"] = shm_ != nullptr && st.ring_messages > 0;
    ring["messages"] = st.ring_messages;
    ring["bad_crc"] = st.ring_bad_crc;
    ring["drops"] = st.ring_drops;
    ring["com2_messages"] = st.com2_messages;
    ring["com2_bad_frames"] = st.com2_bad_frames;
    ring["bad_events"] = st.bad_events;
    ring["out_bytes"] = st.out_bytes;
    ring["err_bytes"] = st.err_bytes;
    if (!st.ring_problem.empty()) ring["problem"] = st.ring_problem;
    r.extra["guest_channel"] = ring;
    if (!o.exit_code()) {
        // In a shell session COM2 is the terminal, so the sentinels the diagnosis
        // looks for were never parsed; the shell_ready event says how far it got.
        std::string why = opt_.com2_raw_fd >= 0 && shell_ready_
                              ? "the guest shell was still running (leave it with exit or ^D)"
                              : o.diagnosis();
        r.detail = r.detail.empty() ? why : cat(r.detail, "; ", why);
    }
}

std::vector<std::string> shell_environment(int fd) {
    std::vector<std::string> words;
    struct winsize ws{};
    if (::isatty(fd) && ::ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col) {
        words.push_back(cat("KTSTR_ROWS=", ws.ws_row));
        words.push_back(cat("KTSTR_COLS=", ws.ws_col));
    }
    const char *term = std::getenv("TERM");
    // A command-line word cannot hold spaces or quotes; such a TERM is not real anyway.
    if (term && *term && std::string_view(term).find_first_of(" \t\"'") == std::string_view::npos)
        words.push_back(cat("KTSTR_TERM=", term));
    return words;
}

RawTerminal::RawTerminal(int fd) : fd_(fd) {
    if (::tcgetattr(fd_, &old_) != 0) return;
    saved_ = true;
    ::termios raw = old_;
    ::cfmakeraw(&raw);
    ::tcsetattr(fd_, TCSANOW, &raw);
}

RawTerminal::~RawTerminal() {
    if (saved_) ::tcsetattr(fd_, TCSANOW, &old_);
}

int exec_exit_status(const ExitResult &r) {
    if (!r.guest_exit_code) return 255;
    return *r.guest_exit_code & 0xff;
}

} // namespace ktstr::vmm
