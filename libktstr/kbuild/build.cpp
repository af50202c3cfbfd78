// libktstr/kbuild: the build pipeline (spec 2.3-2.5): source -> cache key ->
// lookup -> build lock -> acquire -> configure (kconfig library) -> make ->
// check -> sched_ext schedulers -> strip + atomic store.
#include "ktstr/kbuild.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "ktstr/kconfig.h"
#include "ktstr/process.h"

namespace ktstr::kbuild {

namespace fs = std::filesystem;

unsigned allowed_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof set, &set) != 0) return 1;
    int n = CPU_COUNT(&set);
    return n > 0 ? static_cast<unsigned>(n) : 1;
}

// ---- progress -------------------------------------------------------------------------

Progress::Progress(bool tty) : tty_(tty), t0_(Clock::now()), last_(Clock::now() - std::chrono::hours(1)) {}

double Progress::elapsed() const { return seconds_since(t0_); }

namespace {
std::string clock_text(double s) {
    char b[32];
    std::snprintf(b, sizeof b, "%02u:%02u", unsigned(s) / 60, unsigned(s) % 60);
    return b;
}
} // namespace

void Progress::step(const std::string &what) {
    phase_ = what;
    last_ = Clock::now();   // piped: the next activity line comes a minute after the step line
    if (line_open_) std::fputs("\r\033[K", stderr);
    line_open_ = false;
    std::fprintf(stderr, "%s: [%s] %s\n", log::program().c_str(), clock_text(elapsed()).c_str(), what.c_str());
    std::fflush(stderr);
}

void Progress::activity(const std::string &line) {
    auto now = Clock::now();
    double since = std::chrono::duration<double>(now - last_).count();
    if (tty_) {
        if (since < 0.1) return;
        last_ = now;
        std::string l = line.substr(0, 100);
        std::fprintf(stderr, "\r\033[K[%s] %s: %s", clock_text(elapsed()).c_str(), phase_.c_str(), l.c_str());
        line_open_ = true;
    } else {
        // Piped (CI logs): a plain line a minute, enough to show it is alive.
        if (since < 60) return;
        last_ = now;
        std::fprintf(stderr, "%s: [%s] %s: %s\n", log::program().c_str(), clock_text(elapsed()).c_str(),
                     phase_.c_str(), line.c_str());
    }
    std::fflush(stderr);
}

void Progress::done() {
    if (line_open_) std::fputs("\r\033[K", stderr);
    line_open_ = false;
    std::fflush(stderr);
}

namespace {

bool is_file(const std::string &p) {
    std::error_code ec;
    return fs::is_regular_file(p, ec);
}

// A temporary directory for unpacked archives, downloads and clones.
struct WorkDir {
    std::string path;
    bool keep = false;
    WorkDir() = default;
    WorkDir(const WorkDir &) = delete;
    WorkDir &operator=(const WorkDir &) = delete;
    ~WorkDir() {
        if (path.empty()) return;
        if (keep) {
            log::info("work directory kept: ", path);
            return;
        }
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    void create(const Getenv &env, const std::string &key) {
        const char *b = env("KTSTR_BUILD_DIR");
        const char *t = env("TMPDIR");
        std::string base = b && *b ? b : t && *t ? t : "/tmp";
        std::error_code ec;
        fs::create_directories(base, ec);
        std::string tmpl = cat(base, "/ktstr-kbuild-", key, "-XXXXXX");
        std::vector<char> buf(tmpl.begin(), tmpl.end());
        buf.push_back('\0');
        if (!::mkdtemp(buf.data()))
            fail_errno(ErrorKind::environment, cat("cannot create a work directory under ", base,
                                                   " (set KTSTR_BUILD_DIR)"));
        path = buf.data();
        struct statvfs sv{};
        if (::statvfs(path.c_str(), &sv) == 0) {
            double gib = double(sv.f_bavail) * double(sv.f_frsize) / (1024.0 * 1024 * 1024);
            if (gib < 3)
                fail(ErrorKind::environment, "only ", gib, " GiB free in ", base,
                     "; a kernel build with debug info needs about 10 GiB (set KTSTR_BUILD_DIR elsewhere)");
            if (gib < 10) log::warn("only ", int(gib), " GiB free in ", base, "; a kernel build with debug info needs about 10 GiB");
        }
    }
};

// First line of `tool --version`, for the metadata.
std::string tool_version(const std::vector<std::string> &argv) {
    if (which(argv[0]).empty()) return "";
    RunResult r = run_capture(argv, 10);
    if (r.status != 0) return "";
    std::string all = r.out.empty() ? r.err : r.out;
    return std::string(trim(all.substr(0, all.find('\n'))));
}

// Run a build command: output merged into `log` (appended), progress fed
// line by line.  On failure the log's tail is replayed and the error names
// the command and the log.
void run_logged(const std::vector<std::string> &argv, const std::string &log_path, Progress &progress,
                const std::string &what, double timeout_s = 0) {
    unique_fd logfd(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    if (!logfd) fail_errno(ErrorKind::environment, "cannot open log " + log_path);
    write_all(logfd.get(), "$ " + shell_join(argv) + "\n");
    log::debug("running: ", shell_join(argv));
    SpawnOptions o;
    o.merge_stderr = true;
    Child c = Child::spawn(argv, o);
    auto t0 = Clock::now();
    std::string pending;
    char buf[65536];
    for (;;) {
        pollfd p{c.stdout_fd(), POLLIN, 0};
        int n = ::poll(&p, 1, 1000);
        if (n < 0 && errno != EINTR) fail_errno(ErrorKind::environment, "poll");
        if (timeout_s > 0 && seconds_since(t0) > timeout_s) {
            c.terminate();
            fail(ErrorKind::environment, what, " timed out after ", timeout_s, " s and was killed; log: ", log_path);
        }
        if (n <= 0) {
            progress.activity(pending.empty() ? "..." : pending);
            continue;
        }
        ssize_t k = ::read(c.stdout_fd(), buf, sizeof buf);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        write_all(logfd.get(), buf, static_cast<size_t>(k));
        pending.append(buf, static_cast<size_t>(k));
        size_t nl = pending.rfind('\n');
        if (nl != std::string::npos) {
            std::string chunk = pending.substr(0, nl);
            pending.erase(0, nl + 1);
            size_t prev = chunk.rfind('\n');
            std::string last = prev == std::string::npos ? chunk : chunk.substr(prev + 1);
            if (!last.empty() && last.back() == '\r') last.pop_back();
            progress.activity(std::string(trim(last)));
        }
    }
    int st = c.wait();
    if (exit_status_code(st) != 0) {
        progress.done();
        auto text = try_read_file(log_path).value_or("");
        auto lines = split(text, '\n', false);
        size_t from = lines.size() > 40 ? lines.size() - 40 : 0;
        for (size_t i = from; i < lines.size(); ++i) std::fprintf(stderr, "  | %s\n", lines[i].c_str());
        fail(ErrorKind::environment, what, " failed (", describe_wait_status(st), "): ", shell_join(argv),
             "; full log: ", log_path);
    }
}

// The LLVM= suffix that gives clang >= 16 (tools/sched_ext needs it).  LLVM=<s>
// makes the tools build use clang<s>, ld.lld<s>, llvm-ar<s> and llvm-strip<s>, so
// all four must be there before the kernel's long compile starts.
std::string detect_llvm_suffix(const std::string &requested) {
    auto major_of = [](const std::string &clang) -> int {
        std::string v = tool_version({clang, "--version"});
        auto p = v.find("version ");
        if (p == std::string::npos) return 0;
        return static_cast<int>(parse_u64(v.substr(p + 8, v.find('.', p + 8) - (p + 8))).value_or(0));
    };
    auto missing = [](const std::string &s) -> std::string {
        for (const char *t : {"clang", "ld.lld", "llvm-ar", "llvm-strip"})
            if (which(t + s).empty()) return t + s;
        return "";
    };
    const char *install = "install clang-16 lld-16 llvm-16 (scripts/install-deps.sh)";
    if (!requested.empty()) {
        std::string s = requested == "1" ? "" : requested;
        if (std::string m = missing(s); !m.empty())
            fail(ErrorKind::environment, m, " not found (--llvm ", requested, "); ", install);
        return requested;
    }
    std::string first_missing;
    for (int v = 20; v >= 16; --v) {
        std::string s = cat("-", v);
        if (which("clang" + s).empty()) continue;
        std::string m = missing(s);
        if (m.empty()) return s;
        if (first_missing.empty()) first_missing = m;
    }
    if (!which("clang").empty() && major_of("clang") >= 16) {
        std::string m = missing("");
        if (m.empty()) return "1";
        if (first_missing.empty()) first_missing = m;
    }
    if (!first_missing.empty())
        fail(ErrorKind::environment, "building the sched_ext schedulers needs ", first_missing,
             " beside clang >= 16; ", install);
    int found = which("clang").empty() ? 0 : major_of("clang");
    fail(ErrorKind::environment, "building the sched_ext schedulers needs clang >= 16 (",
         found ? cat("found clang ", found) : std::string("no clang found"), "); ", install);
}

struct Preflight {
    std::string cc;
    std::string llvm;   // LLVM= value
};

Preflight preflight(const BuildRequest &req) {
    Preflight p;
    std::vector<std::string> missing;
    for (const char *t : {"make", "flex", "bison", "bc", "perl"})
        if (which(t).empty()) missing.push_back(t);
    if (req.kind != SourceKind::local && which("tar").empty()) missing.push_back("tar");
    if (req.kind == SourceKind::archive && ends_with(req.source, ".xz") && which("xz").empty()) missing.push_back("xz");
    if (req.kind == SourceKind::git && which("git").empty()) missing.push_back("git");
    if (!missing.empty()) {
        std::string m;
        for (auto &t : missing) m += (m.empty() ? "" : " ") + t;
        fail(ErrorKind::environment, "missing build tools: ", m, "; install them (scripts/install-deps.sh)");
    }
    p.cc = req.cc.empty() ? "gcc" : req.cc;
    if (which(p.cc).empty())
        fail(ErrorKind::environment, "C compiler '", p.cc, "' not found in PATH; install gcc (scripts/install-deps.sh)",
             req.cc.empty() ? " or pass --cc" : "");
    if (req.schedulers) p.llvm = detect_llvm_suffix(req.llvm_suffix);
    return p;
}

std::string one_line_critical(const kconfig::Validation &v, const std::string &when) {
    std::string s = cat("critical kernel config options lost ", when, ":");
    for (auto &f : v.critical_lost) {
        std::string why = f.causes.empty() ? "" : f.causes.front();
        if (why.empty())
            if (auto *c = kconfig::find_critical(f.name)) why = c->hint;
        s += cat(" CONFIG_", f.name, " not set", why.empty() ? "" : " (" + why + ")", ";");
    }
    s += " Kconfig drops options with unmet dependencies silently: install what is missing and rebuild with --force";
    return s;
}

// Where the key comes from and where the build happens.
struct Plan {
    std::string key;
    bool cacheable = true;
    std::string dirty_hint;
    std::string tree;              // source tree (set after acquisition for archives)
    std::string out;               // O= directory
    SourceInfo source;
    std::optional<std::string> version;
    TreeState state;               // local
    std::string archive;           // archive file
    std::string url;               // download
    bool temporary = false;        // tree lives in a work dir: a failed store is fatal
};

std::string default_local_build_dir(const Cache &cache, const std::string &tree, Arch a) {
    return cat(cache.root(), "/.builds/", fs::path(tree).filename().string(), "-", hex8(crc32_of(tree)), "-", arch_name(a));
}

Plan plan_local(const Cache &cache, const BuildRequest &req, const std::string &kc) {
    Plan p;
    p.tree = require_kernel_tree(req.source);
    p.version = makefile_kernel_version(try_read_file(p.tree + "/Makefile").value_or(""));
    p.state = inspect_tree(p.tree);
    if (req.in_tree) {
        p.out = p.tree;
    } else {
        // The kernel refuses O= builds from a tree configured in place.
        if (is_file(p.tree + "/.config") || fs::exists(p.tree + "/include/config"))
            fail(ErrorKind::input, p.tree, ": the tree has been configured or built in place (.config or "
                 "include/config present); out-of-tree builds need a clean tree: run 'make mrproper' in it, "
                 "or pass --in-tree to build inside it");
        p.out = req.build_dir.empty() ? default_local_build_dir(cache, p.tree, req.arch)
                                      : fs::absolute(req.build_dir).lexically_normal().string();
    }
    p.source.type = SourceType::local;
    p.source.source_tree_path = p.tree;
    if (p.state.dirty) {
        p.cacheable = false;
        p.key = local_unknown_key(p.tree, req.arch, kc);
        p.dirty_hint = p.state.is_git
                           ? cat(p.tree, " has uncommitted changes (", p.state.why,
                                 "): built but not cached; commit or stash them to enable caching")
                           : cat(p.tree, " is ", p.state.why,
                                 ": built but not cached; put it under git, or build from --tarball, --version or --git");
        return p;
    }
    p.source.git_hash = p.state.head;
    std::optional<uint32_t> cfg;
    if (auto c = try_read_file(p.out + "/.config")) cfg = crc32_of(*c);
    p.key = local_key(*p.state.head, cfg, req.arch, kc);
    return p;
}

Plan plan_request(const Cache &cache, const BuildRequest &req, const std::string &kc) {
    Plan p;
    switch (req.kind) {
    case SourceKind::local:
        return plan_local(cache, req, kc);
    case SourceKind::archive: {
        ArchiveIdentity id = archive_identity(req.source, &cache);
        p.key = archive_key(id.version, id.crc, req.arch, kc);
        p.version = id.version;
        p.archive = fs::canonical(req.source).string();
        p.source.type = SourceType::tarball;
        p.source.archive_path = p.archive;
        p.temporary = true;
        return p;
    }
    case SourceKind::version: {
        auto v = parse_version(req.source);
        if (!v) fail(ErrorKind::usage, "--version '", req.source, "' is not a kernel version (MAJOR.MINOR.PATCH, e.g. 6.12.8)");
        if (v->is_series_prefix())
            fail(ErrorKind::usage, "--version ", req.source, " names a series; give the full version (e.g. ", req.source,
                 ".8)");
        p.key = tarball_key(req.source, req.arch, kc);
        p.version = req.source;
        p.url = v->rc ? cat("https://git.kernel.org/torvalds/t/linux-", req.source, ".tar.gz")
                      : cat("https://cdn.kernel.org/pub/linux/kernel/v", v->major, ".x/linux-", req.source, ".tar.xz");
        p.source.type = SourceType::tarball;
        p.source.url = p.url;
        p.temporary = true;
        return p;
    }
    case SourceKind::git:
        p.source.type = SourceType::git;
        p.source.url = req.git_url;
        p.source.ref = req.git_ref;
        p.temporary = true;
        return p;   // the key needs the clone's HEAD
    }
    return p;
}

// Unpack an archive into work/; it must hold exactly one top-level directory.
std::string unpack(const std::string &archive, const std::string &work, Progress &progress, const std::string &log) {
    std::string dest = work + "/src";
    fs::create_directories(dest);
    progress.step("unpacking " + archive);
    run_logged({"tar", "-xf", archive, "-C", dest}, log, progress, "unpacking " + archive);
    std::vector<std::string> tops;
    for (auto &d : fs::directory_iterator(dest)) tops.push_back(d.path().string());
    if (tops.size() != 1 || !fs::is_directory(tops[0]))
        fail(ErrorKind::input, archive, ": expected one top-level directory, found ", tops.size(), " entries");
    return require_kernel_tree(tops[0]);
}

void download(const Plan &p, const std::string &work, Progress &progress, const std::string &log, const Getenv &env,
              std::string *file_out) {
    const char *off = env("KTSTR_OFFLINE");
    std::string alt = "; build from a local tree (--source DIR) or archive (--tarball /usr/src/linux-source-6.12.tar.xz "
                      "from Debian's linux-source-6.12)";
    if (off && *off && std::string(off) != "0")
        fail(ErrorKind::environment, "KTSTR_OFFLINE is set: not downloading ", p.url, alt);
    if (which("curl").empty()) fail(ErrorKind::environment, "curl is not installed: cannot download ", p.url, alt);
    std::string file = work + "/" + fs::path(p.url).filename().string();
    progress.step("downloading " + p.url);
    RunResult r = run_capture({"curl", "-fsSL", "--connect-timeout", "10", "-o", file, p.url}, 0);
    if (r.status != 0) {
        std::string err(trim(r.err));
        if (err.find("404") != std::string::npos)
            fail(ErrorKind::input, "kernel version ", *p.version, " not found at ", p.url,
                 p.url.find("git.kernel.org") != std::string::npos
                     ? " (rc tarballs disappear after the release; use --git)"
                     : " (check the version on kernel.org)");
        fail(ErrorKind::environment, "cannot download ", p.url, " (", err.empty() ? cat("curl exit ", r.status) : err,
             "; no internet?)", alt);
    }
    auto head = try_read_file(file, 16).value_or("");
    bool xz = starts_with(head, "\xFD" "7zXZ"), gz = starts_with(head, "\x1F\x8B");
    if (!xz && !gz)
        fail(ErrorKind::environment, "download of ", p.url, " is not a compressed tarball (an HTML page?)", alt);
    write_all(unique_fd(::open(log.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644)).get(),
              cat("downloaded ", p.url, " in ", r.seconds, " s\n"));
    *file_out = file;
}

std::string clone(const BuildRequest &req, const std::string &work, Progress &progress, const std::string &log) {
    std::string dest = work + "/src";
    progress.step("cloning " + req.git_url + " at " + req.git_ref);
    bool sha = req.git_ref.size() >= 7 && req.git_ref.size() <= 40 &&
               req.git_ref.find_first_not_of("0123456789abcdef") == std::string::npos;
    if (!sha) {
        run_logged({"git", "clone", "--depth", "1", "--branch", req.git_ref, req.git_url, dest}, log, progress,
                   "git clone of " + req.git_url);
    } else {
        run_logged({"git", "init", "-q", dest}, log, progress, "git init");
        run_logged({"git", "-C", dest, "fetch", "--depth", "1", req.git_url, req.git_ref}, log, progress,
                   "git fetch of " + req.git_ref);
        run_logged({"git", "-C", dest, "checkout", "-q", "FETCH_HEAD"}, log, progress, "git checkout");
    }
    return require_kernel_tree(dest);
}

BuildOutcome hit(const CacheEntry &e, const Clock::time_point t0, const std::string &how) {
    BuildOutcome o;
    o.key = e.key;
    o.cache_hit = true;
    o.seconds = seconds_since(t0);
    o.descriptor = descriptor_of(e, true);
    o.descriptor.resolved_by = how;
    return o;
}

} // namespace

std::optional<std::string> request_key(const Cache &cache, const BuildRequest &req, std::string *why) {
    auto frags = kconfig::load_fragments(req.extra_kconfig);
    Plan p = plan_request(cache, req, kconfig::fragment_hash(frags));
    if (why) *why = p.dirty_hint;
    if (p.key.empty()) return std::nullopt;
    return p.key;
}

BuildOutcome build_kernel(const Cache &cache, const BuildRequest &req, Progress &progress) {
    auto t0 = Clock::now();
    Getenv env = process_env();
    // The fragment first: a bad extra is rejected before anything else runs.
    auto frags = kconfig::load_fragments(req.extra_kconfig);
    kconfig::reject_critical_disables(frags);
    std::string kc = kconfig::fragment_hash(frags);

    Plan plan = plan_request(cache, req, kc);
    // A cached entry answers when it has what was asked for: an entry built
    // without schedulers does not answer --schedulers (it is rebuilt with them).
    auto cached = [&]() -> std::optional<CacheEntry> {
        if (req.force || !plan.cacheable || plan.key.empty()) return std::nullopt;
        auto e = cache.lookup(plan.key);
        if (e && req.schedulers && e->meta->schedulers.empty()) {
            log::info("cache entry ", plan.key, " has no schedulers; rebuilding it with them");
            return std::nullopt;
        }
        return e;
    };
    if (auto e = cached()) return hit(*e, t0, "cache");

    Preflight pre = preflight(req);
    cache.ensure_writable();
    WorkDir work;
    work.keep = req.keep_work;
    std::optional<FileLock> build_lock, source_lock;

    auto take_build_lock = [&]() -> std::optional<BuildOutcome> {
        build_lock = wait_lock(cache.build_lock_path(plan.key), LockMode::exclusive, -1, "build of " + plan.key, [&] {
            progress.step(cat("another process is building ", plan.key, "; waiting for it:\n",
                              format_holders(lock_holders(cache.build_lock_path(plan.key)))));
        });
        if (auto e = cached()) return hit(*e, t0, "cache (built by a concurrent build)");
        if (req.force && fs::exists(cache.entry_dir(plan.key))) {
            // --force replaces an entry: refuse while a VM is using it.
            std::string lp = cache.entry_lock_path(plan.key);
            if (!try_lock(lp, LockMode::exclusive))
                fail(ErrorKind::environment, "cache entry ", plan.key, " is in use; not rebuilding it now. Held by:\n",
                     format_holders(lock_holders(lp)), "\n(see ktstr-kbuild locks)");
        }
        return std::nullopt;
    };

    if (plan.cacheable && !plan.key.empty())
        if (auto o = take_build_lock()) return *o;

    std::string logs;
    auto start_logs = [&] {
        logs = cache.log_dir(plan.key);
        std::error_code ec;
        fs::remove_all(logs, ec);
        fs::create_directories(logs, ec);
        if (ec) fail(ErrorKind::environment, "cannot create log directory ", logs, ": ", ec.message());
    };
    if (!plan.key.empty()) start_logs();

    // Acquire the source.
    if (req.kind == SourceKind::local) {
        const char *bypass = env("KTSTR_BYPASS_LLC_LOCKS");
        if (!(bypass && *bypass)) {
            std::string lp = cache.source_lock_path(plan.tree);
            source_lock = try_lock(lp, LockMode::exclusive);
            if (!source_lock)
                fail(ErrorKind::environment, "source tree ", plan.tree, " is being built by another process (lock ", lp,
                     "); held by:\n", format_holders(lock_holders(lp)), "\n(see ktstr-kbuild locks)");
        }
        if (!plan.cacheable) log::warn(plan.dirty_hint);
    } else {
        work.create(env, plan.key.empty() ? "git" : plan.key);
        if (logs.empty()) {   // git: the key needs the clone; log the clone by URL and ref
            logs = cat(cache.root(), "/.logs/git-", hex8(crc32_of(req.git_url + "#" + req.git_ref)));
            std::error_code ec;
            fs::remove_all(logs, ec);
            fs::create_directories(logs, ec);
        }
        std::string acquire_log = logs + "/acquire.log";
        if (req.kind == SourceKind::archive) {
            plan.tree = unpack(plan.archive, work.path, progress, acquire_log);
        } else if (req.kind == SourceKind::version) {
            std::string file;
            download(plan, work.path, progress, acquire_log, env, &file);
            plan.tree = unpack(file, work.path, progress, acquire_log);
        } else {
            plan.tree = clone(req, work.path, progress, acquire_log);
            TreeState st = inspect_tree(plan.tree);
            plan.source.git_hash = st.head;
            plan.version = makefile_kernel_version(try_read_file(plan.tree + "/Makefile").value_or(""));
            plan.key = git_key(req.git_ref, st.head.value_or("unknown"), req.arch, kc);
            if (auto e = cached()) return hit(*e, t0, "cache");
            if (auto o = take_build_lock()) return *o;
            start_logs();
            std::error_code ec;
            fs::copy_file(acquire_log, logs + "/acquire.log", ec);
            fs::remove_all(fs::path(acquire_log).parent_path(), ec);
        }
        plan.out = work.path + "/out";
    }
    if (!plan.version) plan.version = makefile_kernel_version(try_read_file(plan.tree + "/Makefile").value_or(""));
    log::info("building ", plan.key, " (", plan.version.value_or("unknown version"), ") from ", plan.tree,
              plan.out == plan.tree ? " in place" : " into " + plan.out);

    // Configure: defconfig + fragment + olddefconfig, critical options checked
    // before a single object is compiled.
    progress.step("configuring (defconfig, ktstr fragment " + kc + ", olddefconfig)");
    kconfig::ApplyOptions ao;
    ao.tree = plan.tree;
    ao.out = plan.out == plan.tree ? "" : plan.out;
    ao.arch = req.arch;
    ao.fragments = frags;
    ao.timeout_seconds = req.make_timeout_s > 0 ? req.make_timeout_s : 1800;
    kconfig::ApplyResult applied = kconfig::apply(ao);
    write_file_atomic(logs + "/configure.log", kconfig::to_text(applied.validation));
    if (!applied.validation.ok())
        fail(ErrorKind::environment, one_line_critical(applied.validation, "after olddefconfig"), " (details: ", logs,
             "/configure.log)");

    // Compile.
    unsigned jobs = req.jobs ? req.jobs : allowed_cpus();
    std::vector<std::string> make = {"make", "-C", plan.tree};
    if (plan.out != plan.tree) make.push_back("O=" + plan.out);
    make.push_back(cat("ARCH=", kconfig::make_arch(ao.arch)));
    make.push_back(cat("-j", jobs));
    make.push_back("KCFLAGS=-Wno-error");
    make.push_back("CC=" + pre.cc);
    make.push_back(image_name(req.arch));
    make.push_back("vmlinux");
    progress.step(cat("compiling ", image_name(req.arch), " and vmlinux with -j", jobs, " (log: ", logs, "/build.log)"));
    auto t_make = Clock::now();
    run_logged(make, logs + "/build.log", progress, "kernel build");
    double make_seconds = seconds_since(t_make);
    progress.done();

    std::string image = plan.out + "/" + image_build_path(req.arch);
    if (!is_file(image))
        fail(ErrorKind::environment, "the build finished but ", image, " is missing; log: ", logs, "/build.log");
    std::optional<std::string> vmlinux;
    if (is_file(plan.out + "/vmlinux")) vmlinux = plan.out + "/vmlinux";
    else log::warn("the build produced no vmlinux; the monitor will lack symbols and BTF");

    // The configuration the compiler saw must still hold the critical options.
    kconfig::Validation late = kconfig::validate(kconfig::parse_file(plan.out + "/.config"),
                                                 kconfig::requested_config(frags), ao.arch);
    if (!late.ok()) fail(ErrorKind::environment, one_line_critical(late, "after the build"));

    // The sched_ext example schedulers, against this build's BTF.
    std::map<std::string, std::string> schedulers;
    if (req.schedulers) {
        if (!vmlinux) fail(ErrorKind::environment, "cannot build the schedulers: no vmlinux (its BTF is needed)");
        std::string scx_out = plan.out + "/tools-sched_ext";
        // tools/scripts/Makefile.include refuses an O= directory that does not exist.
        std::error_code mk_ec;
        fs::create_directories(scx_out, mk_ec);
        if (mk_ec) fail(ErrorKind::environment, "cannot create ", scx_out, ": ", mk_ec.message());
        std::vector<std::string> smake = {"make", "-C", plan.tree + "/tools/sched_ext", "O=" + scx_out,
                                          "LLVM=" + pre.llvm, "VMLINUX_BTF=" + *vmlinux, cat("-j", jobs)};
        progress.step(cat("building tools/sched_ext schedulers (LLVM=", pre.llvm, ")"));
        run_logged(smake, logs + "/schedulers.log", progress, "sched_ext scheduler build");
        progress.done();
        std::error_code ec;
        for (auto &d : fs::directory_iterator(scx_out + "/build/bin", ec)) {
            std::string name = d.path().filename().string();
            if (starts_with(name, "scx_") && ::access(d.path().c_str(), X_OK) == 0) schedulers[name] = d.path().string();
        }
        if (schedulers.empty())
            fail(ErrorKind::environment, "the scheduler build produced nothing in ", scx_out, "/build/bin; log: ", logs,
                 "/schedulers.log");
    }
    double seconds = seconds_since(t0);

    // Did the tree change while we built?  Then the key no longer describes it.
    if (req.kind == SourceKind::local && plan.cacheable) {
        TreeState after = inspect_tree(plan.tree);
        if (after.dirty || after.head != plan.state.head) {
            plan.cacheable = false;
            log::warn(plan.tree, " changed during the build (", after.dirty ? after.why : "HEAD moved",
                      "): built but not cached");
        }
    }

    BuildOutcome o;
    o.key = plan.key;
    o.seconds = seconds;
    o.dirty = !plan.cacheable;
    auto uncached_descriptor = [&] {
        KernelDescriptor d = *kernel_at_path(plan.out, req.arch);
        d.config = plan.out + "/.config";
        d.vmlinux = vmlinux;
        d.schedulers = schedulers;
        d.version = plan.version;
        d.kconfig_hash = kc;
        d.dirty = !plan.cacheable;
        d.source = plan.source;
        d.resolved_by = "build (not cached)";
        return d;
    };
    if (!plan.cacheable) {
        o.descriptor = uncached_descriptor();
        progress.step(cat("built in ", int(seconds), " s (not cached): ", image));
        return o;
    }

    StoreInput in;
    in.key = plan.key;
    in.image = image;
    in.vmlinux = vmlinux;
    in.config = plan.out + "/.config";
    in.schedulers = schedulers;
    for (const char *l : {"acquire.log", "configure.log", "build.log", "schedulers.log"})
        if (is_file(logs + "/" + l)) in.logs.push_back(logs + "/" + l);
    EntryMetadata &m = in.meta;
    m.version = plan.version;
    m.source = plan.source;
    m.arch = arch_name(req.arch);
    m.image_name = image_name(req.arch);
    m.built_at = utc_timestamp();
    m.kconfig_hash = kc;
    for (size_t i = 1; i < frags.size(); ++i)
        m.extra_kconfig.emplace_back(fs::path(frags[i].path).filename().string(), hex8(crc32_of(frags[i].text)));
    m.build_seconds = seconds;
    m.tool_versions["ktstr"] = KTSTR_VERSION;
    m.tool_versions["make"] = tool_version({"make", "--version"});
    m.tool_versions["cc"] = tool_version({pre.cc, "--version"});
    m.tool_versions["pahole"] = tool_version({"pahole", "--version"});
    if (req.schedulers) m.tool_versions["clang"] = tool_version({pre.llvm == "1" ? "clang" : "clang" + pre.llvm, "--version"});
    if (req.kind == SourceKind::local && vmlinux) {
        struct stat st{};
        if (::stat(vmlinux->c_str(), &st) == 0) {
            m.source_vmlinux_size = static_cast<uint64_t>(st.st_size);
            m.source_vmlinux_mtime_secs = st.st_mtim.tv_sec;
        }
    }
    progress.step("storing " + plan.key + " (stripping vmlinux)");
    try {
        CacheEntry e = cache.store(in);
        o.stored = true;
        o.descriptor = descriptor_of(e, false);
        o.descriptor.resolved_by = "build";
    } catch (const Error &err) {
        if (plan.temporary) throw;   // the build tree goes away with the work dir: nothing to hand out
        log::warn("built, but storing in the cache failed: ", err.what());
        o.descriptor = uncached_descriptor();
    }
    progress.step(cat("built ", plan.key, " in ", int(seconds), " s (make ", int(make_seconds), " s)"));
    return o;
}

} // namespace ktstr::kbuild
