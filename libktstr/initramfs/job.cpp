// The agent's boot image: the cached base (agent, busybox, includes, libraries) followed by
// the per-run suffix describing the job (see libktstr/guest for how the agent reads it).
#include "ktstr/initramfs.h"

#include <fcntl.h>
#include <unistd.h>

namespace ktstr::initramfs {

std::vector<SuffixFile> job_suffix_files(const JobSpec &job) {
    if (job.kind.empty() || job.kind.find('\n') != std::string::npos)
        fail(ErrorKind::usage, "invalid job kind '", job.kind, "'");
    std::string args = job.kind + "\n";
    for (const std::string &a : job.args) {
        if (a.find('\n') != std::string::npos)
            fail(ErrorKind::usage, "job argument '", a, "' contains a newline");
        args += a + "\n";
    }
    std::vector<SuffixFile> files = {{"/args", args, 0644}};
    if (job.exec_cmd) files.push_back({"/exec_cmd", *job.exec_cmd, 0644});
    for (const SuffixFile &f : job.files) files.push_back(f);
    return files;
}

BaseSpec agent_base(const std::vector<Include> &includes, std::string agent,
                    std::string busybox_path) {
    BaseSpec spec;
    if (agent.empty()) agent = find_companion("ktstr-guest");
    if (agent.empty())
        fail(ErrorKind::environment, "the guest agent ktstr-guest was not found beside ",
             self_dir(), " (build it with make, or install it in libexec/ktstr)");
    spec.init = agent;
    if (!busybox_path.empty() && ::access(busybox_path.c_str(), R_OK) == 0)
        spec.busybox = busybox_path;
    spec.includes = includes;
    return spec;
}

void BootImage::write(const std::string &path) const {
    std::string all = join();
    replace_file(path, all, 0644);
}

std::string BootImage::join() const {
    std::string out;
    out.reserve(size());
    out.append(base.bytes());
    out.append(suffix);
    return out;
}

BootImage build_boot_image(const BaseSpec &base, const JobSpec &job, const BuildOptions &opt) {
    BootImage img;
    img.base = build_base(base, opt);
    img.suffix = build_suffix(job_suffix_files(job), opt.compression);
    return img;
}

} // namespace ktstr::initramfs
