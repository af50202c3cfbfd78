// libktstr/vmm: guest RAM as memfds, and the ktstr.layout/1 description of it.
#include "ktstr/vmm.h"

#include <cerrno>
#include <cstring>

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace ktstr::vmm {

uint64_t MemoryPlan::total() const {
    uint64_t t = 0;
    for (auto &r : regions) t += r.size;
    return t;
}

GuestRam GuestRam::create(const MemoryPlan &plan) {
    GuestRam ram;
    for (size_t i = 0; i < plan.fd_sizes.size(); ++i) {
        // The pid makes a run's memfds recognisable in /proc/*/fd (teardown tests).
        std::string name = cat("ktstr-guest-ram-", ::getpid(), "-", i);
        // No MFD_ALLOW_SEALING: QEMU and the monitor map it shared and writable.
        unique_fd fd(::memfd_create(name.c_str(), MFD_CLOEXEC));
        if (!fd) fail_errno(ErrorKind::environment, "memfd_create for guest RAM");
        if (::ftruncate(fd.get(), static_cast<off_t>(plan.fd_sizes[i])) != 0)
            fail_errno(ErrorKind::environment, cat("sizing guest RAM memfd to ", plan.fd_sizes[i] / MiB, " MiB"));
        ram.maps_.push_back(Mapping::map_fd(fd.get(), plan.fd_sizes[i], PROT_READ | PROT_WRITE));
        ram.fds_.push_back(std::move(fd));
    }
    for (auto &r : plan.regions) {
        if (r.fd_index >= plan.fd_sizes.size() || r.fd_offset > plan.fd_sizes[r.fd_index] ||
            r.size > plan.fd_sizes[r.fd_index] - r.fd_offset)
            fail(ErrorKind::environment, "memory plan: region at gpa 0x", hex16(r.gpa), " lies outside memfd ", r.fd_index);
    }
    ram.regions_ = plan.regions;
    return ram;
}

std::vector<int> GuestRam::fds() const {
    std::vector<int> v;
    for (auto &f : fds_) v.push_back(f.get());
    return v;
}

uint64_t GuestRam::total_size() const {
    uint64_t t = 0;
    for (auto &r : regions_) t += r.size;
    return t;
}

const RamRegion *GuestRam::region_of(uint64_t gpa, uint64_t len) const {
    for (auto &r : regions_)
        if (gpa >= r.gpa && gpa - r.gpa <= r.size && len <= r.size - (gpa - r.gpa)) return &r;
    return nullptr;
}

uint8_t *GuestRam::host(uint64_t gpa, uint64_t len) const {
    const RamRegion *r = region_of(gpa, len);
    return r ? maps_[r->fd_index].data() + r->fd_offset + (gpa - r->gpa) : nullptr;
}

bool GuestRam::read(uint64_t gpa, void *dst, uint64_t len) const {
    const uint8_t *p = host(gpa, len);
    if (!p) return false;
    std::memcpy(dst, p, len);
    return true;
}

bool GuestRam::write(uint64_t gpa, const void *src, uint64_t len) const {
    uint8_t *p = host(gpa, len);
    if (!p) return false;
    std::memcpy(p, src, len);
    return true;
}

void check_file_range(int fd, uint64_t file_offset, uint64_t len, const std::string &what) {
    struct stat st;
    if (::fstat(fd, &st) != 0) fail_errno(ErrorKind::input, what);
    if (!S_ISREG(st.st_mode)) fail(ErrorKind::input, what, ": not a regular file");
    if (uint64_t(st.st_size) < file_offset || uint64_t(st.st_size) - file_offset < len)
        fail(ErrorKind::input, what, ": needs bytes up to offset ", file_offset + len, " but the file has ", st.st_size,
             " (did it change while loading?)");
}

bool GuestRam::load_file(uint64_t gpa, int fd, uint64_t file_offset, uint64_t len, const std::string &what) const {
    const RamRegion *reg = region_of(gpa, len);
    if (!reg) return false;
    if (len == 0) return true;
    check_file_range(fd, file_offset, len, what);
    const uint64_t page = uint64_t(::sysconf(_SC_PAGESIZE));
    const uint64_t skip = file_offset % page;
    // MAP_POPULATE: the source pages are mapped in one pass, not faulted in
    // one by one during the copy.
    void *p = ::mmap(nullptr, len + skip, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, off_t(file_offset - skip));
    if (p == MAP_FAILED) fail_errno(ErrorKind::input, cat(what, ": mmap"));
    Mapping src(p, len + skip);
    const int memfd = fds_[reg->fd_index].get();
    const uint64_t dst = reg->fd_offset + (gpa - reg->gpa);
    uint64_t done = 0;
    while (done < len) {
        ssize_t w = ::pwrite(memfd, src.data() + skip + done, len - done, off_t(dst + done));
        if (w < 0 && errno == EINTR) continue;
        // EFAULT: a source page could not be read (the file was truncated, or
        // an I/O error; MAP_POPULATE does not report those).
        if (w < 0 && errno == EFAULT)
            fail(ErrorKind::input, what, ": cannot read bytes ", file_offset + done,
                 " onwards (did the file shrink while loading, or is the disk failing?)");
        if (w < 0) fail_errno(ErrorKind::environment, cat("writing ", what, " into guest RAM"));
        if (w == 0) fail(ErrorKind::environment, "writing ", what, " into guest RAM: no progress");
        done += uint64_t(w);
    }
    return true;
}

// ---- ktstr.layout/1 -------------------------------------------------------------

ojson Layout::to_json() const {
    ojson d = make_doc("layout", 1);
    d["arch"] = arch;
    d["accel"] = accel_name(accel);
    ojson regs = ojson::array();
    for (auto &r : regions)
        regs.push_back({{"gpa", r.gpa}, {"size", r.size}, {"fd_index", r.fd_index}, {"fd_offset", r.fd_offset},
                        {"node", r.node}});
    d["regions"] = regs;
    d["mem_size"] = mem_size;
    d["num_cpus"] = num_cpus;
    d["vcpu_ids"] = vcpu_ids;
    d["vmm_pid"] = vmm_pid;
    d["vcpu_tids"] = vcpu_tids ? ojson(*vcpu_tids) : ojson(nullptr);
    d["run_start_mono_ns"] = run_start_mono_ns;
    d["kernel"] = kernel;
    d["vmlinux"] = vmlinux.empty() ? ojson(nullptr) : ojson(vmlinux);
    d["shm"] = shm ? ojson{{"base_pa", shm->base_pa}, {"size", shm->size}} : ojson(nullptr);
    d["cmdline"] = cmdline;
    return d;
}

Layout Layout::from_json(const json &d, const std::string &where) {
    require_schema(d, "layout", 1, where);
    Layout l;
    l.arch = get_field<std::string>(d, "arch", where);
    l.accel = parse_accel(get_field<std::string>(d, "accel", where));
    if (!d.contains("regions") || !d["regions"].is_array()) fail(ErrorKind::input, where, ": field 'regions': expected array");
    size_t i = 0;
    for (auto &r : d["regions"]) {
        std::string w = cat(where, ": regions[", i++, "]");
        l.regions.push_back({get_field<uint64_t>(r, "gpa", w), get_field<uint64_t>(r, "size", w),
                             get_field<uint32_t>(r, "fd_index", w), get_field<uint64_t>(r, "fd_offset", w),
                             get_field<uint32_t>(r, "node", w)});
    }
    l.mem_size = get_field<uint64_t>(d, "mem_size", where);
    l.num_cpus = get_field<uint32_t>(d, "num_cpus", where);
    if (d.contains("vcpu_ids") && d["vcpu_ids"].is_array())
        for (auto &v : d["vcpu_ids"]) l.vcpu_ids.push_back(v.get<uint32_t>());
    l.vmm_pid = get_field<pid_t>(d, "vmm_pid", where);
    if (d.contains("vcpu_tids") && d["vcpu_tids"].is_array()) {
        l.vcpu_tids.emplace();
        for (auto &v : d["vcpu_tids"]) l.vcpu_tids->push_back(v.get<pid_t>());
    }
    l.run_start_mono_ns = get_field_or<uint64_t>(d, "run_start_mono_ns", 0, where);
    l.kernel = get_field_or<std::string>(d, "kernel", "", where);
    if (d.contains("vmlinux") && d["vmlinux"].is_string()) l.vmlinux = d["vmlinux"].get<std::string>();
    if (d.contains("shm") && d["shm"].is_object())
        l.shm = ShmRegion{get_field<uint64_t>(d["shm"], "base_pa", where + ": shm"),
                          get_field<uint64_t>(d["shm"], "size", where + ": shm")};
    l.cmdline = get_field_or<std::string>(d, "cmdline", "", where);
    return l;
}

} // namespace ktstr::vmm
