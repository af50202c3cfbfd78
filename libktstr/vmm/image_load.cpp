// libktstr/vmm: kernel and initramfs bytes into guest RAM, eagerly or on demand
// through userfaultfd (see ktstr/image_load.h).
#include "ktstr/image_load.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace ktstr::vmm {

namespace {

// The background fill copies this much between looks at the fault queue, so
// a faulting vCPU waits at most about one such copy.
constexpr uint64_t FILL_CHUNK = 256 * 1024;

// A userfaultfd that sees kernel-mode faults too (KVM touches guest pages from
// the kernel): the syscall needs CAP_SYS_PTRACE or vm.unprivileged_userfaultfd=1;
// /dev/userfaultfd (Linux 6.1) needs only access to that node.
int open_userfaultfd(std::string &why_not) {
    int fd = int(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
    if (fd >= 0) return fd;
    const std::string sys_err = std::strerror(errno);
    int dev = ::open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev >= 0) {
        fd = ::ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
        const std::string dev_err = std::strerror(errno);
        ::close(dev);
        if (fd >= 0) return fd;
        why_not = cat("userfaultfd(2): ", sys_err, "; /dev/userfaultfd: ", dev_err);
        return -1;
    }
    why_not = cat("userfaultfd(2): ", sys_err, " (needs CAP_SYS_PTRACE or vm.unprivileged_userfaultfd=1); /dev/userfaultfd: ",
                  std::strerror(errno));
    return -1;
}

}  // namespace

ImageLoadMode parse_image_load_mode(const std::string &s) {
    if (s == "auto") return ImageLoadMode::automatic;
    if (s == "lazy") return ImageLoadMode::lazy;
    if (s == "eager") return ImageLoadMode::eager;
    fail(ErrorKind::usage, "--kvm-image-load: '", s, "' is not a mode (auto, lazy or eager)");
}

namespace {

[[noreturn]] void fail_outside_ram(const GuestRam &ram, const ImageSpan &s) {
    fail(ErrorKind::usage, s.what, ": ", s.len >> 10, " KiB at guest address 0x", hex16(s.gpa),
         " do not fit in guest RAM (", ram.total_size() >> 20, " MiB); give the guest more memory");
}

}  // namespace

void check_image_span(const GuestRam &ram, const ImageSpan &s) {
    if (!ram.host(s.gpa, s.len)) fail_outside_ram(ram, s);
    check_file_range(s.fd, s.file_offset, s.len, s.what);
}

ImageLoadStats load_images_now(const GuestRam &ram, const std::vector<ImageSpan> &spans) {
    const Clock::time_point t0 = Clock::now();
    ImageLoadStats st;
    for (auto &s : spans) {
        // load_file makes check_image_span's checks; false: not inside guest RAM.
        if (!ram.load_file(s.gpa, s.fd, s.file_offset, s.len, s.what)) fail_outside_ram(ram, s);
        st.bytes += s.len;
    }
    st.fill_ms = seconds_since(t0) * 1000;
    return st;
}

std::unique_ptr<LazyImageLoader> LazyImageLoader::start(const GuestRam &ram, const std::vector<ImageSpan> &spans,
                                                        std::string &why_not, bool background_fill) {
    std::unique_ptr<LazyImageLoader> l(new LazyImageLoader());
    l->start_ = Clock::now();
    l->page_ = uint64_t(::sysconf(_SC_PAGESIZE));
    l->fill_.store(background_fill);
    const uint64_t pg = l->page_;
    for (auto &s : spans) {
        check_image_span(ram, s);
        if (s.len == 0) continue;
        Span sp{s.gpa, s.len, s.file_offset, unique_fd(::fcntl(s.fd, F_DUPFD_CLOEXEC, 0)), s.what, {}, 0};
        if (!sp.fd) fail_errno(ErrorKind::environment, cat(s.what, ": dup"));
        l->stats_.bytes += s.len;
        l->spans_.push_back(std::move(sp));
    }
    std::sort(l->spans_.begin(), l->spans_.end(), [](const Span &a, const Span &b) { return a.gpa < b.gpa; });
    // Overlapping spans have no single page content (an eager copy lets the
    // later one win): leave them to the eager copy.
    for (size_t i = 1; i < l->spans_.size(); ++i)
        if (l->spans_[i].gpa < l->spans_[i - 1].gpa + l->spans_[i - 1].len) {
            why_not = cat(l->spans_[i].what, " at guest address 0x", hex16(l->spans_[i].gpa), " overlaps ",
                          l->spans_[i - 1].what);
            return nullptr;
        }
    // Page-aligned stretches to register, merged where spans share or touch pages.
    for (auto &s : l->spans_) {
        uint64_t a = s.gpa / pg * pg, e = (s.gpa + s.len + pg - 1) / pg * pg;
        if (!l->ranges_.empty() && a <= l->ranges_.back().end && ram.host(l->ranges_.back().gpa, e - l->ranges_.back().gpa))
            l->ranges_.back().end = std::max(l->ranges_.back().end, e);
        else
            l->ranges_.push_back({a, e, nullptr});
    }
    for (auto &r : l->ranges_) {
        r.host = ram.host(r.gpa, r.end - r.gpa);
        if (!r.host) fail(ErrorKind::usage, "image pages at guest address 0x", hex16(r.gpa), " cross a RAM region boundary");
    }
    if (l->ranges_.empty()) {
        l->joined_ = true;   // nothing to do
        l->finished_ = true;
        return l;
    }

    l->uffd_ = unique_fd(open_userfaultfd(why_not));
    if (!l->uffd_) return nullptr;
    uffdio_api api{};
    api.api = UFFD_API;
    api.features = UFFD_FEATURE_MISSING_SHMEM;
    if (::ioctl(l->uffd_.get(), UFFDIO_API, &api) != 0) {
        why_not = cat("userfaultfd: no missing-page support for shared memory here (UFFDIO_API: ", std::strerror(errno), ")");
        return nullptr;
    }
    for (auto &r : l->ranges_) {
        uffdio_register reg{};
        reg.range.start = uint64_t(uintptr_t(r.host));
        reg.range.len = r.end - r.gpa;
        reg.mode = UFFDIO_REGISTER_MODE_MISSING;
        if (::ioctl(l->uffd_.get(), UFFDIO_REGISTER, &reg) != 0) {
            why_not = cat("userfaultfd: registering guest RAM failed (", std::strerror(errno), ")");
            return nullptr;   // closing the descriptor drops any earlier registration
        }
        if (!(reg.ioctls & (uint64_t(1) << _UFFDIO_COPY))) {
            why_not = "userfaultfd: UFFDIO_COPY is not offered for guest RAM";
            return nullptr;
        }
    }
    l->go_ = unique_fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    l->done_ = unique_fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!l->go_ || !l->done_) fail_errno(ErrorKind::environment, "eventfd for the image loader");
    l->thread_ = std::thread([p = l.get()] { p->run(); });
    return l;
}

LazyImageLoader::~LazyImageLoader() {
    if (thread_.joinable()) {
        quit_.store(true);
        notify_eventfd(go_.get());
        thread_.join();
    }
}

void LazyImageLoader::fill_rest() {
    fill_.store(true);
    notify_eventfd(go_.get());
}

ImageLoadStats LazyImageLoader::wait() {
    if (!joined_) {
        fill_rest();
        thread_.join();
        joined_ = true;
    }
    if (error_) std::rethrow_exception(error_);
    return stats();
}

ImageLoadStats LazyImageLoader::stats() const {
    ImageLoadStats s = stats_;
    s.lazy = true;
    s.faults_served = faults_.load();
    return s;
}

const LazyImageLoader::Range *LazyImageLoader::range_at(const uint8_t *host) const {
    for (auto &r : ranges_)
        if (host >= r.host && host < r.host + (r.end - r.gpa)) return &r;
    return nullptr;
}

namespace {

// pread all of [file_offset, +len) into buf; Error(input) if the file is short now.
void pread_exact(int fd, uint64_t file_offset, uint8_t *buf, uint64_t len, const std::string &what) {
    uint64_t done = 0;
    while (done < len) {
        ssize_t r = ::pread(fd, buf + done, len - done, off_t(file_offset + done));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) fail_errno(ErrorKind::input, cat(what, ": reading offset ", file_offset + done));
        if (r == 0)
            fail(ErrorKind::input, what, ": ends before offset ", file_offset + len, " (did it shrink while loading?)");
        done += uint64_t(r);
    }
}

}  // namespace

// The page at gpa as the eager copy leaves it: zero, with the bytes of every
// span that overlaps it (read with pread: a fault needs no source mapping).
void LazyImageLoader::build_page(uint64_t gpa, uint8_t *buf) {
    std::memset(buf, 0, page_);
    for (auto &s : spans_) {
        uint64_t a = std::max(gpa, s.gpa), e = std::min(gpa + page_, s.gpa + s.len);
        if (a < e) pread_exact(s.fd.get(), s.file_offset + (a - s.gpa), buf + (a - gpa), e - a, s.what);
    }
}

// UFFDIO_COPY of [src, src+len) to dst, waking anyone waiting on those pages.
// Returns false when it stopped at a page that is already present (dst+done).
bool LazyImageLoader::copy(uint8_t *dst, const uint8_t *src, uint64_t len, uint64_t &done) {
    done = 0;
    int idle = 0;   // EAGAIN in a row without progress
    while (done < len) {
        uffdio_copy c{};
        c.dst = uint64_t(uintptr_t(dst + done));
        c.src = uint64_t(uintptr_t(src + done));
        c.len = len - done;
        c.mode = 0;   // wake
        int rc = ::ioctl(uffd_.get(), UFFDIO_COPY, &c);
        const int err = errno;
        if (c.copy > 0) done += uint64_t(c.copy);
        if (rc == 0) continue;
        if (err == EEXIST) return false;
        // EAGAIN: stopped part way (copy > 0), or the mm is changing; again.
        if (err == EINTR || (err == EAGAIN && (c.copy > 0 || ++idle < 1000))) continue;
        if (err == EFAULT)
            fail(ErrorKind::input, "cannot read image bytes for guest RAM (did a file shrink while loading?)");
        // ENOENT: the range is no longer registered (nothing here unregisters it).
        errno = err;
        fail_errno(ErrorKind::environment, "userfaultfd copy into guest RAM");
    }
    return true;
}

// Fills the page for a fault; false if it was there already (then only wakes).
bool LazyImageLoader::fill_page(uint64_t gpa, uint8_t *host) {
    std::vector<uint8_t> &buf = bounce_;
    buf.resize(page_);
    build_page(gpa, buf.data());
    uint64_t done = 0;
    if (copy(host, buf.data(), page_, done)) return true;
    uffdio_range r{uint64_t(uintptr_t(host)), page_};
    if (::ioctl(uffd_.get(), UFFDIO_WAKE, &r) != 0) fail_errno(ErrorKind::environment, "userfaultfd wake");
    return false;
}

void LazyImageLoader::serve_faults() {
    uffd_msg msgs[16];
    for (;;) {
        ssize_t n = ::read(uffd_.get(), msgs, sizeof msgs);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;
        if (n < 0) fail_errno(ErrorKind::environment, "reading userfaultfd events");
        for (size_t i = 0; i < size_t(n) / sizeof msgs[0]; ++i) {
            if (msgs[i].event != UFFD_EVENT_PAGEFAULT) continue;
            uint8_t *host = reinterpret_cast<uint8_t *>(uintptr_t(msgs[i].arg.pagefault.address & ~(page_ - 1)));
            const Range *r = range_at(host);
            if (!r) continue;   // only registered pages fault here
            if (fill_page(r->gpa + uint64_t(host - r->host), host)) faults_.fetch_add(1);
        }
    }
}

void LazyImageLoader::run() {
    try {
        const uint64_t pg = page_;
        for (auto &s : spans_) {
            s.src_skip = s.file_offset % pg;
            void *p = ::mmap(nullptr, s.len + s.src_skip, PROT_READ, MAP_SHARED, s.fd.get(), off_t(s.file_offset - s.src_skip));
            if (p == MAP_FAILED) fail_errno(ErrorKind::input, cat(s.what, ": mmap"));
            s.src = Mapping(p, s.len + s.src_skip);
        }
        pollfd fds[2] = {{uffd_.get(), POLLIN, 0}, {go_.get(), POLLIN, 0}};
        while (!fill_.load() && !quit_.load()) {   // faults only, until fill_rest()
            if (::poll(fds, 2, -1) < 0 && errno != EINTR) fail_errno(ErrorKind::environment, "poll on userfaultfd");
            serve_faults();
        }
        for (auto &r : ranges_) {
            for (uint64_t gpa = r.gpa; gpa < r.end && !quit_.load();) {
                serve_faults();
                uint8_t *host = r.host + (gpa - r.gpa);
                // Whole pages of one span go straight from the file's mapping.
                const Span *s = nullptr;
                for (auto &sp : spans_)
                    if (gpa >= sp.gpa && gpa + pg <= sp.gpa + sp.len) s = &sp;
                if (!s) {
                    (void)fill_page(gpa, host);
                    gpa += pg;
                    continue;
                }
                const uint64_t whole_end = gpa + (s->gpa + s->len - gpa) / pg * pg;
                const uint64_t end = std::min({r.end, gpa + FILL_CHUNK, whole_end});
                uint64_t done = 0;
                if (copy(host, s->src.data() + s->src_skip + (gpa - s->gpa), end - gpa, done)) {
                    gpa = end;
                } else {
                    gpa += done + pg;   // touched first and filled then: leave it
                }
            }
        }
        serve_faults();
    } catch (...) {
        error_ = std::current_exception();
    }
    stats_.fill_ms = seconds_since(start_) * 1000;
    // Closing unregisters every range and wakes anyone still waiting; after an
    // error a page not filled reads as zero.
    uffd_.reset();
    for (auto &s : spans_) s.src.reset();
    finished_.store(true);
    notify_eventfd(done_.get());
}

}  // namespace ktstr::vmm
