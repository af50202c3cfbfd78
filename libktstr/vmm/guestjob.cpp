// The guest side of a ktstr-vmm run: the agent's boot image and the observer that talks
// to the agent through the shared ring and COM2.  See ktstr/vmm_guest.h.
#include "ktstr/vmm_guest.h"

#include <cmath>
#include <cstdlib>

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

void GuestJobObserver::on_com2(std::string_view b) { session_.on_com2(b); }

void GuestJobObserver::on_tick(const GuestRam &, StopSource &) { session_.poll_ring(shm_, shm_size_); }

void GuestJobObserver::on_exit(const GuestRam &, ExitResult &r) {
    session_.finish(shm_, shm_size_);
    const wire::Outcome &o = session_.outcome();
    r.guest_exit_code = o.exit_code();
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
        std::string why = o.diagnosis();
        r.detail = r.detail.empty() ? why : cat(r.detail, "; ", why);
    }
}

int exec_exit_status(const ExitResult &r) {
    if (!r.guest_exit_code) return 255;
    return *r.guest_exit_code & 0xff;
}

} // namespace ktstr::vmm
