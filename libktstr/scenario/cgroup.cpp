// libktstr/scenario: the scenario's cgroup2 tree (spec 1.3 and 10).
//
// Layout: <root>/<parent>/<name...>.  On the way down, "+cpuset +cpu" is
// written to each level's cgroup.subtree_control so that cpuset.cpus exists
// in the leaves (failures there only warn: a kernel without the cpu
// controller still runs cpuset scenarios).  A plain directory as root (the
// unit tests) gets the same writes as ordinary files.
#include "ktstr/scenario_run.h"

#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

namespace ktstr::scenario {

namespace {
// The errno name for messages: "EBUSY" reads better in a verdict than prose.
std::string errno_name(int e) {
    switch (e) {
    case EBUSY: return "EBUSY";
    case EINVAL: return "EINVAL";
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case ESRCH: return "ESRCH";
    case ENOSPC: return "ENOSPC";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ENOTEMPTY: return "ENOTEMPTY";
    case ENODEV: return "ENODEV";
    default: return cat("errno ", e);
    }
}

int write_once(const std::string &path, const std::string &value) {
    unique_fd fd(open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd) return errno;
    ssize_t n = ::write(fd.get(), value.data(), value.size());
    if (n < 0) return errno;
    return 0;
}
} // namespace

Cgroups::Cgroups(std::string root, std::string parent) : root_(std::move(root)), parent_(std::move(parent)) {
    struct statfs sf;
    if (statfs(root_.c_str(), &sf) != 0) fail_errno(ErrorKind::environment, cat("cgroup root ", root_));
    cgroup2_ = static_cast<unsigned long>(sf.f_type) == CGROUP2_SUPER_MAGIC;
    if (cgroup2_) enable_controllers(root_);
    if (mkdir(path("").c_str(), 0755) != 0 && errno != EEXIST)
        fail_errno(ErrorKind::environment, cat("mkdir ", path("")));
    created_.push_back("");
    enable_controllers(path(""));
}

Cgroups::~Cgroups() {
    const auto list = created_;   // remove() edits created_
    for (auto it = list.rbegin(); it != list.rend(); ++it) {
        try {
            remove(*it);
        } catch (const Error &e) {
            log::warn(e.what());
        }
    }
}

std::string Cgroups::path(const std::string &name) const {
    return name.empty() ? root_ + "/" + parent_ : root_ + "/" + parent_ + "/" + name;
}

void Cgroups::write(const std::string &file, const std::string &value) const {
    int err = write_once(file, value);
    if (err) fail(ErrorKind::environment, "write ", file, " (", errno_name(err), ": ", strerror(err), ") value '", value, "'");
}

void Cgroups::enable_controllers(const std::string &dir) {
    for (const char *c : {"+cpuset", "+cpu"}) {
        int err = write_once(dir + "/cgroup.subtree_control", c);
        if (err && !controllers_warned_) {
            controllers_warned_ = true;
            log::warn("cannot enable ", c, " in ", dir, "/cgroup.subtree_control (", errno_name(err), "); continuing");
        }
    }
}

void Cgroups::create(const std::string &name) {
    std::string so_far;
    for (auto &part : split(name, '/', false)) {
        std::string parent_dir = path(so_far);
        so_far = so_far.empty() ? part : so_far + "/" + part;
        std::string dir = path(so_far);
        if (mkdir(dir.c_str(), 0755) == 0) {
            created_.push_back(so_far);
        } else if (errno != EEXIST) {
            int e = errno;
            fail(ErrorKind::environment, "mkdir ", dir, " (", errno_name(e), ": ", strerror(e), ")");
        }
        if (so_far != name) enable_controllers(dir);   // intermediate levels
    }
}

void Cgroups::set_cpus(const std::string &name, const CpuSet &cpus) {
    if (cpus.empty()) fail(ErrorKind::input, "refusing to write an empty cpuset to ", path(name), "/cpuset.cpus");
    write(path(name) + "/cpuset.cpus", format_cpuset(cpus));
}

void Cgroups::clear_cpus(const std::string &name) { write(path(name) + "/cpuset.cpus", ""); }

std::string Cgroups::read_cpus(const std::string &name) const {
    auto s = try_read_file(path(name) + "/cpuset.cpus");
    return s ? std::string(trim(*s)) : std::string();
}

bool Cgroups::move(pid_t pid, const std::string &name) {
    std::string file = (name == "/" ? root_ : path(name)) + "/cgroup.procs";
    for (int attempt = 0;; ++attempt) {
        int err = write_once(file, std::to_string(pid));
        if (!err) return true;
        if (err == ESRCH) {
            log::warn("pid ", pid, " vanished before it could join ", file);
            return false;
        }
        if (err == EBUSY && attempt < 3) {
            usleep(100000);
            continue;
        }
        fail(ErrorKind::environment, "write ", file, " (", errno_name(err), ": ", strerror(err), ") pid ", pid,
             err == EBUSY ? " - a cgroup with controllers in subtree_control cannot hold tasks" : "");
    }
}

std::vector<pid_t> Cgroups::procs(const std::string &name) const {
    std::vector<pid_t> out;
    auto s = try_read_file(path(name) + "/cgroup.procs");
    if (!s) return out;
    for (auto &w : split(*s, '\n', false))
        if (auto v = parse_u64(trim(w))) out.push_back(static_cast<pid_t>(*v));
    return out;
}

void Cgroups::clear_subtree_control(const std::string &name) {
    for (const char *c : {"-cpu", "-cpuset"}) {
        int err = write_once(path(name) + "/cgroup.subtree_control", c);
        if (err) log::debug("clearing ", c, " in ", path(name), ": ", errno_name(err));
    }
}

void Cgroups::remove(const std::string &name) {
    std::string dir = path(name);
    struct stat st;
    if (stat(dir.c_str(), &st) != 0) return;
    // Children first (a nested name created by another path).
    if (DIR *d = opendir(dir.c_str())) {
        std::vector<std::string> subdirs, files;
        while (auto *e = readdir(d)) {
            std::string n = e->d_name;
            if (n == "." || n == "..") continue;
            if (e->d_type == DT_DIR) subdirs.push_back(n);
            else files.push_back(n);
        }
        closedir(d);
        for (auto &s : subdirs) remove(name.empty() ? s : name + "/" + s);
        if (!cgroup2_)
            for (auto &f : files) unlink((dir + "/" + f).c_str());
    }
    if (cgroup2_)
        for (pid_t p : procs(name)) {
            // Drain to the cgroup2 root: a controller-bearing parent cannot hold tasks.
            if (write_once(root_ + "/cgroup.procs", std::to_string(p)) != 0) {}
        }
    for (int attempt = 0; attempt < 20; ++attempt) {
        if (rmdir(dir.c_str()) == 0 || errno == ENOENT) {
            std::erase(created_, name);
            return;
        }
        if (errno != EBUSY) break;
        usleep(50000);   // dying tasks leave the cgroup asynchronously
    }
    int e = errno;
    std::erase(created_, name);
    fail(ErrorKind::environment, "rmdir ", dir, " (", errno_name(e), ": ", strerror(e), ")",
         e == EBUSY ? ": live tasks remain in it" : e == EACCES ? ": no permission (cgroup delegation?)" : "");
}

} // namespace ktstr::scenario
