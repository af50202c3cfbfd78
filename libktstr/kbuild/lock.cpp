// libktstr/kbuild: flock()-based locks on cache entries, builds and source
// trees, and who holds them (from /proc/locks), spec 2.7.
#include "ktstr/kbuild.h"

#include <cerrno>
#include <filesystem>
#include <thread>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/statfs.h>
#include <unistd.h>

namespace ktstr::kbuild {

namespace fs = std::filesystem;

std::optional<std::string> remote_fs_name(uint64_t magic) {
    switch (magic) {
    case 0x6969: return "NFS";
    case 0xFF534D42: return "CIFS";
    case 0xFE534D42: return "SMB2";
    case 0x00C36400: return "Ceph";
    case 0x6B414653: return "AFS";
    case 0x65735546: return "FUSE";
    }
    return std::nullopt;
}

void require_local_fs(const std::string &path) {
    std::string p = path;
    struct statfs sf{};
    // The nearest existing ancestor decides (the lock file may not exist yet).
    while (::statfs(p.c_str(), &sf) != 0) {
        if (errno != ENOENT || p.empty() || p == "/") return;
        std::string parent = fs::path(p).parent_path().string();
        if (parent == p) return;
        p = parent;
    }
    if (auto name = remote_fs_name(static_cast<uint64_t>(static_cast<uint32_t>(sf.f_type))))
        fail(ErrorKind::environment, path, " is on a ", *name,
             " filesystem where flock() is unreliable; move the kernel cache to a local filesystem "
             "(set KTSTR_CACHE_DIR)");
}

namespace {
unique_fd open_lock_file(const std::string &path) {
    std::error_code ec;
    fs::create_directories(fs::path(path).parent_path(), ec);
    require_local_fs(path);
    unique_fd fd(::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0666));
    if (!fd) fail_errno(ErrorKind::environment, "cannot open lock file " + path);
    return fd;
}
const char *mode_name(LockMode m) { return m == LockMode::shared ? "shared" : "exclusive"; }
} // namespace

std::optional<FileLock> try_lock(const std::string &path, LockMode mode) {
    unique_fd fd = open_lock_file(path);
    int op = (mode == LockMode::shared ? LOCK_SH : LOCK_EX) | LOCK_NB;
    while (::flock(fd.get(), op) != 0) {
        if (errno == EINTR) continue;
        if (errno == EWOULDBLOCK) return std::nullopt;
        fail_errno(ErrorKind::environment, "flock " + path);
    }
    return FileLock(std::move(fd), path);
}

FileLock wait_lock(const std::string &path, LockMode mode, double timeout_s, const std::string &what,
                   const std::function<void()> &on_wait) {
    auto t0 = Clock::now();
    bool told = false;
    for (;;) {
        if (auto l = try_lock(path, mode)) return std::move(*l);
        if (!told && on_wait) on_wait();
        told = true;
        if (timeout_s >= 0 && seconds_since(t0) >= timeout_s)
            fail(ErrorKind::environment, "timed out after ", timeout_s, " s waiting for a ", mode_name(mode),
                 " lock on ", what, " (", path, "); held by:\n", format_holders(lock_holders(path)),
                 "\n(see ktstr-kbuild locks)");
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
}

std::vector<ProcLock> parse_proc_locks(std::string_view text) {
    // "1: FLOCK  ADVISORY  WRITE 1234 08:01:1835010 0 EOF"
    // "1: -> FLOCK  ADVISORY  WRITE 1240 08:01:1835010 0 EOF"   (a waiter)
    std::vector<ProcLock> out;
    for (auto &line : split(text, '\n', false)) {
        auto words = split(line, ' ', false);
        size_t i = 1;   // skip "N:"
        if (words.size() < 2) continue;
        ProcLock l;
        if (words[i] == "->") { l.blocked = true; ++i; }
        if (words.size() < i + 5) continue;
        l.type = words[i];
        l.access = words[i + 2];
        auto pid = parse_i64(words[i + 3]);
        auto id = split(words[i + 4], ':');
        if (!pid || id.size() != 3) continue;
        auto maj = parse_u64("0x" + id[0]), min = parse_u64("0x" + id[1]), ino = parse_u64(id[2]);
        if (!maj || !min || !ino) continue;
        l.pid = static_cast<pid_t>(*pid);
        l.dev_major = static_cast<uint32_t>(*maj);
        l.dev_minor = static_cast<uint32_t>(*min);
        l.inode = *ino;
        out.push_back(l);
    }
    return out;
}

std::optional<std::pair<uint32_t, uint32_t>> mount_dev_of(std::string_view mountinfo, const std::string &path) {
    // "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw"
    std::optional<std::pair<uint32_t, uint32_t>> best;
    size_t best_len = 0;
    for (auto &line : split(mountinfo, '\n', false)) {
        auto w = split(line, ' ', false);
        if (w.size() < 5) continue;
        std::string mnt = w[4];
        // Mount points escape spaces etc. as \040; good enough for prefix tests.
        bool covers = mnt == "/" || path == mnt || starts_with(path, mnt + "/");
        if (!covers || mnt.size() < best_len) continue;
        auto mm = split(w[2], ':');
        if (mm.size() != 2) continue;
        auto maj = parse_u64(mm[0]), min = parse_u64(mm[1]);
        if (!maj || !min) continue;
        best = std::pair(static_cast<uint32_t>(*maj), static_cast<uint32_t>(*min));
        best_len = mnt.size();
    }
    return best;
}

std::string render_cmdline(std::string_view raw) {
    std::string s(raw);
    while (!s.empty() && s.back() == '\0') s.pop_back();
    for (char &c : s)
        if (c == '\0') c = ' ';
    // Count characters, not bytes, so a UTF-8 command line is not cut mid-sequence.
    size_t chars = 0, i = 0;
    for (; i < s.size(); ++i) {
        if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
            if (chars == 100) break;
            ++chars;
        }
    }
    if (i < s.size()) s = s.substr(0, i) + "…";
    return s;
}

std::vector<LockHolder> lock_holders(const std::string &lock_path) {
    std::vector<LockHolder> out;
    struct stat st{};
    if (::stat(lock_path.c_str(), &st) != 0) return out;
    std::error_code ec;
    std::string canon = fs::canonical(lock_path, ec).string();
    auto locks = try_read_file("/proc/locks");
    if (!locks) return out;
    // st_dev lies on btrfs/overlayfs: take the covering mount's device first,
    // and accept st_dev as well.
    auto minfo = try_read_file("/proc/self/mountinfo");
    std::optional<std::pair<uint32_t, uint32_t>> mdev;
    if (minfo && !ec) mdev = mount_dev_of(*minfo, canon);
    for (auto &l : parse_proc_locks(*locks)) {
        if (l.blocked || l.type != "FLOCK" || l.inode != st.st_ino) continue;
        bool dev_ok = (mdev && l.dev_major == mdev->first && l.dev_minor == mdev->second) ||
                      (l.dev_major == major(st.st_dev) && l.dev_minor == minor(st.st_dev));
        if (!dev_ok) continue;
        LockHolder h;
        h.pid = l.pid;
        auto cmd = try_read_file(cat("/proc/", l.pid, "/cmdline"));
        h.cmdline = cmd && !cmd->empty() ? render_cmdline(*cmd) : "<cmdline unavailable>";
        out.push_back(h);
    }
    return out;
}

std::string format_holders(const std::vector<LockHolder> &holders) {
    if (holders.empty()) return "  <none recorded>";
    std::string s;
    for (auto &h : holders) s += cat(s.empty() ? "" : "\n", "  pid=", h.pid, " cmd=", h.cmdline);
    return s;
}

} // namespace ktstr::kbuild
