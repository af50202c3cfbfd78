// libktstr/vmm: putting file bytes (kernel segments, initramfs) into guest RAM,
// either copied before the guest starts (eager) or on demand (lazy).
//
// Lazy loading registers the guest pages under the images with userfaultfd
// (missing-page mode) so the vCPUs can start at once: a page the guest, KVM
// or the VMM touches first is filled on the spot, and one thread fills the
// rest in order in the background. Every page ends up exactly as the eager
// copy leaves it: the file bytes, zero elsewhere, and nothing the guest wrote
// in the meantime is overwritten (UFFDIO_COPY never replaces a present page).
#pragma once

#include "ktstr/util.h"
#include "ktstr/vmm.h"

#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace ktstr::vmm {

// Bytes [file_offset, file_offset+len) of a regular file, for guest [gpa, gpa+len).
struct ImageSpan {
    uint64_t gpa = 0;
    int fd = -1;                    // borrowed; the loader keeps its own duplicate
    uint64_t file_offset = 0;
    uint64_t len = 0;
    std::string what;               // names the file in errors ("kernel /boot/vmlinux")
};

enum class ImageLoadMode { automatic, lazy, eager };
// "auto", "lazy", "eager"; anything else is Error(usage) naming --kvm-image-load.
ImageLoadMode parse_image_load_mode(const std::string &s);

struct ImageLoadStats {
    bool lazy = false;
    uint64_t bytes = 0;             // file bytes placed
    uint64_t faults_served = 0;     // pages filled because something touched them first
    double fill_ms = 0;             // start of loading to the last byte in place
};

// Checks a span against guest RAM and its file: Error(usage) if it does not
// fit in one RAM region, Error(input) if the file is shorter than the span.
void check_image_span(const GuestRam &ram, const ImageSpan &s);

// Eager: copies every span (GuestRam::load_file) before returning.
ImageLoadStats load_images_now(const GuestRam &ram, const std::vector<ImageSpan> &spans);

class LazyImageLoader {
public:
    // Registers the spans' pages and starts the loader thread. Returns nullptr
    // with `why_not` set when lazy loading is not possible here (userfaultfd
    // not permitted, a kernel without shmem support, overlapping spans); other
    // failures throw. With background_fill false only touched pages are filled
    // until fill_rest(). The spans' pages must not have been touched yet: a
    // page already present keeps what it holds.
    static std::unique_ptr<LazyImageLoader> start(const GuestRam &ram, const std::vector<ImageSpan> &spans,
                                                  std::string &why_not, bool background_fill = true);
    ~LazyImageLoader();
    LazyImageLoader(const LazyImageLoader &) = delete;
    LazyImageLoader &operator=(const LazyImageLoader &) = delete;

    void fill_rest();               // start the background fill now (if it was held back)
    // Waits until every page is in place and the thread has ended; rethrows its
    // error (Error(input) when a file shrank under it, Error(environment) else).
    // After an error the registration is gone: pages not filled read as zero.
    ImageLoadStats wait();
    ImageLoadStats stats() const;   // so far (all of it once wait() returned or threw)
    // Readable (eventfd) once the thread has ended, successfully or not.
    int done_fd() const { return done_.get(); }
    bool finished() const { return finished_.load(); }
    uint64_t faults_served() const { return faults_.load(); }

private:
    struct Span {
        uint64_t gpa, len, file_offset;
        unique_fd fd;
        std::string what;
        Mapping src;                // read-only mapping of the file from the page holding file_offset
        uint64_t src_skip = 0;      // file_offset within that page
    };
    struct Range { uint64_t gpa, end; uint8_t *host; };   // a registered, page-aligned stretch

    LazyImageLoader() = default;
    void run();
    void serve_faults();
    bool fill_page(uint64_t gpa, uint8_t *host);
    void build_page(uint64_t gpa, uint8_t *buf);
    const Range *range_at(const uint8_t *host) const;
    bool copy(uint8_t *dst, const uint8_t *src, uint64_t len, uint64_t &done);

    std::vector<Span> spans_;
    std::vector<Range> ranges_;
    unique_fd uffd_;
    unique_fd go_;                  // eventfd: fill_rest() and teardown
    unique_fd done_;                // eventfd: the thread has ended
    std::atomic<bool> fill_{true}, quit_{false}, finished_{false};
    std::atomic<uint64_t> faults_{0};
    ImageLoadStats stats_;
    std::exception_ptr error_;
    std::vector<uint8_t> bounce_;  // one page, loader thread only
    std::thread thread_;
    bool joined_ = false;
    uint64_t page_ = 4096;
    Clock::time_point start_;       // loading began (fill_ms)
};

}  // namespace ktstr::vmm
