// libktstr/kbuild: kernel source trees (git state, dirty detection) and source
// archives (identity without unpacking), spec 2.3, 2.4.
#include "ktstr/kbuild.h"

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ktstr/process.h"

namespace ktstr::kbuild {

namespace fs = std::filesystem;

std::string require_kernel_tree(const std::string &dir) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) fail(ErrorKind::input, dir, ": no such directory");
    if (!fs::is_regular_file(dir + "/Makefile", ec) || !fs::is_regular_file(dir + "/Kconfig", ec))
        fail(ErrorKind::input, dir, ": not a kernel source tree (missing Makefile or Kconfig)");
    std::string canon = fs::canonical(dir, ec).string();
    if (ec) fail(ErrorKind::input, dir, ": ", ec.message());
    return canon;
}

TreeState inspect_tree(const std::string &dir) {
    TreeState t;
    if (which("git").empty()) {
        t.why = "git is not installed";
        return t;
    }
    auto git = [&](std::vector<std::string> args) {
        std::vector<std::string> argv = {"git", "-C", dir};
        argv.insert(argv.end(), args.begin(), args.end());
        SpawnOptions o;
        o.env_add = {"LC_ALL=C"};
        return run_capture(argv, 60, o);
    };
    auto top = git({"rev-parse", "--show-toplevel"});
    std::error_code ec;
    std::string canon = fs::canonical(dir, ec).string();
    if (top.status != 0) {
        t.why = "not a git repository";
        return t;
    }
    std::string toplevel = std::string(trim(top.out));
    std::string top_canon = fs::canonical(toplevel, ec).string();
    if (ec || top_canon != canon) {
        // Upward repo discovery would hand this tree another repository's HEAD.
        t.why = cat("not the top of a git repository (inside ", toplevel, ")");
        return t;
    }
    t.is_git = true;
    auto head = git({"rev-parse", "HEAD"});
    if (head.status != 0 || trim(head.out).size() < 7) {
        t.why = "the git repository has no commit";
        return t;
    }
    t.head = std::string(trim(head.out));
    auto st = git({"status", "--porcelain", "--untracked-files=no", "--ignore-submodules=all"});
    if (st.status != 0) {
        t.why = cat("git status failed: ", trim(st.err));
        return t;
    }
    if (!trim(st.out).empty()) {
        size_t n = split(trim(st.out), '\n', false).size();
        t.why = cat(n, " tracked file", n == 1 ? "" : "s", " modified");
        return t;
    }
    t.dirty = false;
    return t;
}

namespace {

struct ArchiveStat {
    std::string path;
    uint64_t dev = 0, ino = 0, size = 0;
    int64_t mtime_ns = 0;
};

ArchiveStat stat_archive(const std::string &archive) {
    std::error_code ec;
    ArchiveStat s;
    s.path = fs::canonical(archive, ec).string();
    if (ec) fail(ErrorKind::input, archive, ": ", ec.message());
    struct stat st{};
    if (::stat(s.path.c_str(), &st) != 0) fail_errno(ErrorKind::input, archive);
    if (!S_ISREG(st.st_mode)) fail(ErrorKind::input, archive, ": not a regular file");
    s.dev = st.st_dev;
    s.ino = st.st_ino;
    s.size = static_cast<uint64_t>(st.st_size);
    s.mtime_ns = int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    return s;
}

// The first line tar lists, without decompressing the whole archive: stop
// reading as soon as we have it (the Child is killed on scope exit).
std::string first_member(const std::string &archive) {
    SpawnOptions o;
    o.capture_stdout = true;
    o.capture_stderr = true;
    Child c = Child::spawn({"tar", "-tf", archive}, o);
    std::string out;
    char buf[4096];
    while (out.find('\n') == std::string::npos) {
        ssize_t n = ::read(c.stdout_fd(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        out.append(buf, static_cast<size_t>(n));
    }
    if (out.find('\n') == std::string::npos) {
        std::string err;
        while (true) {
            ssize_t n = ::read(c.stderr_fd(), buf, sizeof buf);
            if (n <= 0) break;
            err.append(buf, static_cast<size_t>(n));
        }
        c.wait();
        auto lines = split(trim(err), '\n', false);
        fail(ErrorKind::input, archive, ": not a readable tar archive",
             lines.empty() ? std::string() : " (tar: " + std::string(trim(lines.front())) + ")");
    }
    return out.substr(0, out.find('\n'));
}

} // namespace

ArchiveIdentity archive_identity(const std::string &archive, const Cache *cache) {
    ArchiveStat s = stat_archive(archive);
    std::string index = cache ? cat(cache->root(), "/.archives/", hex8(crc32_of(s.path)), ".json") : "";
    if (!index.empty()) {
        if (auto text = try_read_file(index)) {
            try {
                json j = json::parse(*text);
                if (j.value("path", "") == s.path && j.value("dev", uint64_t(0)) == s.dev &&
                    j.value("ino", uint64_t(0)) == s.ino && j.value("size", uint64_t(0)) == s.size &&
                    j.value("mtime_ns", int64_t(0)) == s.mtime_ns && j.contains("crc32") && j.contains("version")) {
                    auto crc = parse_u64("0x" + j.at("crc32").get<std::string>());
                    if (crc) return {j.at("version").get<std::string>(), static_cast<uint32_t>(*crc),
                                     j.value("top_dir", "")};
                }
            } catch (const std::exception &) {
                // A damaged index entry is recomputed below.
            }
        }
    }
    ArchiveIdentity id;
    std::string first = first_member(s.path);
    id.top_dir = first.substr(0, first.find('/'));
    if (id.top_dir.empty() || id.top_dir == "." || id.top_dir == "..")
        fail(ErrorKind::input, archive, ": not a kernel source archive (first member '", first,
             "' is not inside one top-level directory)");
    auto mk = run_capture({"tar", "-xOf", s.path, "--occurrence=1", id.top_dir + "/Makefile"}, 600);
    auto version = mk.status == 0 ? makefile_kernel_version(mk.out) : std::nullopt;
    if (!version)
        fail(ErrorKind::input, archive, ": not a kernel source archive (no ", id.top_dir,
             "/Makefile with VERSION/PATCHLEVEL)");
    id.version = *version;
    {
        unique_fd fd(::open(s.path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd) fail_errno(ErrorKind::input, archive);
        Mapping m = s.size ? Mapping::map_fd(fd.get(), s.size, PROT_READ) : Mapping();
        ::madvise(m.data(), m.size(), MADV_SEQUENTIAL);
        id.crc = crc32_of(m.data(), m.size());
    }
    if (!index.empty()) {
        ojson j = make_doc("archive-id", 1);
        j["path"] = s.path;
        j["dev"] = s.dev;
        j["ino"] = s.ino;
        j["size"] = s.size;
        j["mtime_ns"] = s.mtime_ns;
        j["crc32"] = hex8(id.crc);
        j["version"] = id.version;
        j["top_dir"] = id.top_dir;
        std::error_code ec;
        fs::create_directories(fs::path(index).parent_path(), ec);
        try {
            write_file_atomic(index, j.dump() + "\n");
        } catch (const Error &e) {
            log::debug("archive identity not remembered: ", e.what());
        }
    }
    return id;
}

} // namespace ktstr::kbuild
