// The run's archives (vmm spec section 12): a cacheable base with the agent, busybox, the
// scheduler, included files and every shared library they need, and a small per-run suffix
// with the job description.  Both are complete cpio archives; compressed, they are LZ4
// legacy streams that the kernel decompresses one after the other.
//
// Cache: an index file, named by a hash of the request and the stat() signatures of its
// root files, lists every input file (closure included) with its signature and names the
// archive, which is itself named by the hash of its uncompressed content.  A lookup re-stats
// the inputs (like git's index) and maps the archive: no file is read again.
#include "ktstr/initramfs.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <set>

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace ktstr::initramfs {

namespace {

constexpr std::string_view INDEX_MAGIC = "ktstr-initramfs-index 1";
constexpr size_t CACHE_KEEP = 24;   // archives kept; older ones are pruned on a miss

uint64_t rotl(uint64_t v, int r) { return v << r | v >> (64 - r); }
uint64_t fmix(uint64_t h) {
    h ^= h >> 33; h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33; h *= 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 33);
}

// A file's identity for cache validation: device, inode, size, mtime and ctime (ns).
std::optional<std::string> stat_signature(const std::string &path) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return std::nullopt;
    return cat(st.st_dev, ':', st.st_ino, ':', st.st_size, ':',
               st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec, ':',
               st.st_ctim.tv_sec * 1000000000ll + st.st_ctim.tv_nsec);
}

// Directory part of an archive path ("a/b/c" -> "a/b"), "" at the top.
std::string parent_of(const std::string &p) {
    size_t s = p.rfind('/');
    return s == std::string::npos ? "" : p.substr(0, s);
}

bool has_reserved_component(const std::string &archive) {
    for (const std::string &c : split(archive, '/', false))
        if (starts_with(c, ".ktstr_")) return true;
    return false;
}

// What goes into the base, in order, before directories are added.
struct Item {
    std::string path;       // archive path
    std::string host;       // file: host path; symlink: target
    uint32_t perm = 0755;
    bool symlink = false;
};

struct Plan {
    std::vector<Item> items;
    std::vector<std::string> inputs;    // every host file read (for the cache index)
};

Plan plan_base(const BaseSpec &spec, const BuildOptions &opt) {
    Plan plan;
    std::map<std::string, std::string> claimed;   // archive path -> who
    auto claim = [&](const std::string &path, const std::string &who) {
        auto [it, fresh] = claimed.emplace(path, who);
        if (!fresh) fail(ErrorKind::input, "initramfs path /", path, " is claimed twice: by ",
                         it->second, " and by ", who);
    };
    auto regular = [](const std::string &host, const std::string &what) {
        struct stat st;
        if (::stat(host.c_str(), &st) != 0)
            fail_errno(ErrorKind::input, cat(what, " '", host, "'"));
        if (!S_ISREG(st.st_mode))
            fail(ErrorKind::input, what, " '", host, "' is not a regular file");
        return st;
    };

    std::vector<std::string> elf_roots;
    auto add_root = [&](const std::string &host, const std::string &guest, uint32_t perm,
                        const std::string &what) {
        regular(host, what);
        std::string path = archive_path(guest);
        claim(path, cat(what, " ", host));
        plan.items.push_back({path, host, perm, false});
        plan.inputs.push_back(host);
        if (is_elf(host)) elf_roots.push_back(host);
    };

    if (spec.init.empty()) fail(ErrorKind::usage, "no guest init given for the initramfs");
    add_root(spec.init, "/init", 0755, "guest init");
    if (!spec.busybox.empty()) add_root(spec.busybox, "/bin/busybox", 0755, "busybox");
    for (const ExtraFile &e : spec.extras) add_root(e.host, e.guest, e.perm, "file");
    for (const Include &inc : spec.includes) {
        std::string path = archive_path(inc.guest);
        if (has_reserved_component(path))
            fail(ErrorKind::input, "include '", inc.host, "': guest path /", path,
                 " uses the reserved prefix .ktstr_");
        struct stat st = regular(inc.host, "include");
        add_root(inc.host, inc.guest, st.st_mode & 07777, "include");
    }

    // Libraries and interpreters of every ELF root, merged by canonical file.
    Resolver resolver(opt.ld_so_cache);
    std::vector<ClosureFile> libs;
    std::map<std::string, size_t> by_canonical;
    for (const std::string &root : elf_roots) {
        for (ClosureFile &f : resolver.closure(root)) {
            auto it = by_canonical.find(f.canonical);
            if (it == by_canonical.end()) {
                by_canonical[f.canonical] = libs.size();
                libs.push_back(std::move(f));
            } else {
                auto &paths = libs[it->second].paths;
                for (auto &p : f.paths)
                    if (std::find(paths.begin(), paths.end(), p) == paths.end()) paths.push_back(p);
            }
        }
        for (const std::string &in : resolver.inputs())
            if (std::find(plan.inputs.begin(), plan.inputs.end(), in) == plan.inputs.end())
                plan.inputs.push_back(in);
    }
    for (const ClosureFile &f : libs) {
        std::string first = archive_path(f.paths[0]);
        claim(first, cat("library ", f.canonical));
        plan.items.push_back({first, f.canonical, 0755, false});
        for (size_t i = 1; i < f.paths.size(); i++) {
            std::string p = archive_path(f.paths[i]);
            if (claimed.count(p)) continue;   // e.g. the loader's default-dir alias exists
            claim(p, cat("library ", f.canonical));
            plan.items.push_back({p, "/" + first, 0777, true});
        }
    }
    return plan;
}

} // namespace

// Like write_file_atomic, without the fsync: cache entries and boot images are rebuilt
// when lost, and a 10 MB fsync would cost more than building them.  Readers still never
// see a partial file (rename), and a failure leaves nothing behind.
void replace_file(const std::string &path, std::string_view data, mode_t mode) {
    static std::atomic<unsigned> seq{0};
    std::string tmp = cat(path, ".tmp-", ::getpid(), '-', seq++);
    unique_fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
    if (!fd) fail_errno(ErrorKind::environment, "cannot create " + tmp);
    try {
        write_all(fd.get(), data);
        fd.reset();
        if (::rename(tmp.c_str(), path.c_str()) != 0)
            fail_errno(ErrorKind::environment, "cannot rename " + tmp + " to " + path);
    } catch (...) {
        ::unlink(tmp.c_str());
        throw;
    }
}

namespace {

void mkdir_p(const std::string &dir) {
    std::string cur;
    for (const std::string &c : split(dir, '/', false)) {
        cur += "/" + c;
        if (::mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST)
            fail_errno(ErrorKind::environment, cat("cannot create cache directory '", cur, "'"));
    }
}

// The request part of the index key: everything that decides the plan before the closure.
std::string request_key(const BaseSpec &spec, const BuildOptions &opt) {
    std::string k = cat(INDEX_MAGIC, '\n', opt.compression == Compression::lz4 ? "lz4" : "none",
                        '\n', opt.ld_so_cache, '\n', Resolver::env_ld_library_path(), '\n');
    auto root = [&](const std::string &host, const std::string &guest, uint32_t perm) {
        k += cat(host, '\t', guest, '\t', perm, '\t', stat_signature(host).value_or("-"), '\n');
    };
    root(spec.init, "/init", 0755);
    if (!spec.busybox.empty()) root(spec.busybox, "/bin/busybox", 0755);
    for (auto &e : spec.extras) root(e.host, e.guest, e.perm);
    for (auto &i : spec.includes) root(i.host, i.guest, 0);
    if (!opt.ld_so_cache.empty()) k += cat(stat_signature(opt.ld_so_cache).value_or("-"), '\n');
    return k;
}

Mapping map_readonly(const std::string &path) {
    unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return {};
    struct stat st;
    if (::fstat(fd.get(), &st) != 0 || st.st_size == 0) return {};
    ::futimens(fd.get(), nullptr);   // keeps the pruning order least-recently-used
    void *p = ::mmap(nullptr, size_t(st.st_size), PROT_READ, MAP_SHARED, fd.get(), 0);
    if (p == MAP_FAILED) return {};
    return Mapping(p, size_t(st.st_size));
}

// An input file, mapped read-only; an empty file maps to nothing.
Mapping map_input(const std::string &path) {
    unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) fail_errno(ErrorKind::input, cat("cannot open ", path));
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) fail_errno(ErrorKind::input, cat("cannot stat ", path));
    if (!S_ISREG(st.st_mode)) fail(ErrorKind::input, path, " is not a regular file");
    if (st.st_size == 0) return {};
    return Mapping::map_fd(fd.get(), size_t(st.st_size), PROT_READ);
}

std::optional<Archive> cache_lookup(const std::string &index_path) {
    auto text = try_read_file(index_path);
    if (!text || !starts_with(*text, INDEX_MAGIC)) return std::nullopt;
    Archive a;
    std::string archive_name;
    for (const std::string &line : split(*text, '\n', false)) {
        size_t sp = line.find(' ');
        if (sp == std::string::npos) continue;
        std::string_view key = std::string_view(line).substr(0, sp);
        std::string_view val = std::string_view(line).substr(sp + 1);
        if (key == "archive") archive_name = val;
        else if (key == "uncompressed") a.uncompressed_size = parse_u64(val).value_or(0);
        else if (key == "entries") a.entries = size_t(parse_u64(val).value_or(0));
        else if (key == "key") a.key = val;
        else if (key == "file") {
            size_t sp2 = val.find(' ');
            if (sp2 == std::string_view::npos) return std::nullopt;
            std::string path(val.substr(sp2 + 1));
            if (stat_signature(path) != std::string(val.substr(0, sp2))) return std::nullopt;
        }
    }
    if (archive_name.empty() || archive_name.find('/') != std::string::npos) return std::nullopt;
    a.cache_path = parent_of(index_path) + "/" + archive_name;
    a.mapped = map_readonly(a.cache_path);
    if (!a.mapped) return std::nullopt;
    a.cache_hit = true;
    return a;
}

// Keep the CACHE_KEEP most recently used archives; indexes of pruned archives just miss.
void cache_prune(const std::string &dir) {
    DIR *d = ::opendir(dir.c_str());
    if (!d) return;
    std::vector<std::pair<int64_t, std::string>> archives, indexes;
    while (struct dirent *e = ::readdir(d)) {
        std::string name = e->d_name;
        bool archive = starts_with(name, "base-"), index = starts_with(name, "index-");
        if (!archive && !index) continue;
        struct stat st;
        if (::stat((dir + "/" + name).c_str(), &st) != 0) continue;
        (archive ? archives : indexes).emplace_back(st.st_mtim.tv_sec, name);
    }
    ::closedir(d);
    for (auto *v : {&archives, &indexes}) {
        if (v->size() <= CACHE_KEEP * (v == &indexes ? 4 : 1)) continue;
        std::sort(v->rbegin(), v->rend());
        for (size_t i = CACHE_KEEP * (v == &indexes ? 4 : 1); i < v->size(); i++)
            ::unlink((dir + "/" + (*v)[i].second).c_str());
    }
}

} // namespace

uint64_t hash64(std::string_view data, uint64_t seed) {
    // Four independent lanes over 32-byte stripes, then the tail; murmur3's finaliser.
    const uint64_t K1 = 0x9e3779b185ebca87ull, K2 = 0xc2b2ae3d27d4eb4full;
    uint64_t lane[4] = {seed + K1, seed ^ K2, seed - K1, ~seed};
    const char *p = data.data();
    size_t n = data.size(), i = 0;
    for (; i + 32 <= n; i += 32) {
        for (int l = 0; l < 4; l++) {
            uint64_t w;
            std::memcpy(&w, p + i + 8 * l, 8);
            lane[l] = rotl(lane[l] + w * K2, 31) * K1;
        }
    }
    uint64_t h = rotl(lane[0], 1) + rotl(lane[1], 7) + rotl(lane[2], 12) + rotl(lane[3], 18);
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        std::memcpy(&w, p + i, 8);
        h = rotl(h ^ (rotl(w * K2, 31) * K1), 27) * K1 + 0x85ebca77c2b2ae63ull;
    }
    for (; i < n; i++) h = rotl(h ^ (uint8_t(p[i]) * 0x27d4eb2f165667c5ull), 11) * K1;
    return fmix(h ^ n);
}

std::string default_cache_dir() {
    // KTSTR_CACHE_DIR is the kernel cache's root, verbatim (ktstr-kbuild lists
    // every visible entry there as a kernel): the archives go in a hidden
    // subdirectory of it.  Otherwise they sit beside ktstr/kernels.
    if (const char *d = getenv("KTSTR_CACHE_DIR"); d && *d) return cat(d, "/.initramfs");
    if (const char *x = getenv("XDG_CACHE_HOME"); x && *x) return cat(x, "/ktstr/initramfs");
    if (const char *h = getenv("HOME"); h && *h) return cat(h, "/.cache/ktstr/initramfs");
    return "/tmp/ktstr-cache/initramfs";
}

Compression parse_compression(std::string_view s) {
    if (s == "lz4") return Compression::lz4;
    if (s == "none") return Compression::none;
    fail(ErrorKind::usage, "unknown compression '", s, "' (valid: lz4, none)");
}

Include parse_include(std::string_view spec) {
    if (spec.empty()) fail(ErrorKind::usage, "--include needs HOST[:GUEST]");
    size_t colon = spec.find(':');
    Include inc;
    inc.host = std::string(spec.substr(0, colon));
    if (colon != std::string_view::npos) inc.guest = std::string(spec.substr(colon + 1));
    if (inc.host.empty()) fail(ErrorKind::usage, "--include '", spec, "': empty host path");
    if (inc.guest.empty()) {
        size_t slash = inc.host.find_last_of('/');
        inc.guest = "/include-files/" + inc.host.substr(slash == std::string::npos ? 0 : slash + 1);
    }
    if (inc.guest.back() == '/') {   // GUEST names a directory: keep the file name
        size_t slash = inc.host.find_last_of('/');
        inc.guest += inc.host.substr(slash == std::string::npos ? 0 : slash + 1);
    }
    archive_path(inc.guest);   // validates: no '..', not empty, not too long
    return inc;
}

Archive build_base(const BaseSpec &spec, const BuildOptions &opt) {
    std::string dir, index_path;
    if (!opt.cache_dir.empty()) {
        dir = opt.cache_dir;
        index_path = cat(dir, "/index-", hex16(hash64(request_key(spec, opt))));
        if (auto hit = cache_lookup(index_path)) return std::move(*hit);
    }

    Plan plan = plan_base(spec, opt);
    // The inputs are mapped, not read: the archive is the only copy made of them.
    std::vector<Mapping> maps(plan.items.size());
    std::vector<std::string_view> datas(plan.items.size());
    size_t total = 0;
    for (size_t i = 0; i < plan.items.size(); i++) {
        if (plan.items[i].symlink) continue;
        maps[i] = map_input(plan.items[i].host);
        if (maps[i]) datas[i] = std::string_view(reinterpret_cast<const char *>(maps[i].data()), maps[i].size());
        total += datas[i].size() + CPIO_HEADER_SIZE + plan.items[i].path.size() + 8;
    }
    std::set<std::string> dirs = {"dev"};
    for (const Item &it : plan.items)
        for (std::string p = parent_of(it.path); !p.empty(); p = parent_of(p)) dirs.insert(p);

    CpioWriter w;
    w.reserve(total + dirs.size() * 128 + 4096);
    for (const std::string &d : dirs) w.dir(d);   // std::set order: parents before children
    // The kernel opens /dev/console for init's stdio before devtmpfs is mounted.
    w.device("dev/console", 'c', 5, 1, 0600);
    for (size_t i = 0; i < plan.items.size(); i++) {
        const Item &it = plan.items[i];
        if (it.symlink) w.symlink(it.path, it.host);
        else w.file(it.path, datas[i], it.perm);
    }
    w.file(".ktstr_init_ok", "", 0644);
    w.trailer(512);

    Archive a;
    a.entries = w.entries();
    a.uncompressed_size = w.bytes().size();
    a.key = hex16(hash64(w.bytes()));
    a.owned = opt.compression == Compression::lz4 ? lz4_legacy_compress(w.bytes()) : w.take();

    if (!dir.empty()) {
        try {
            mkdir_p(dir);
            std::string name = cat("base-", a.key, opt.compression == Compression::lz4 ? ".cpio.lz4" : ".cpio");
            std::string path = dir + "/" + name;
            if (!stat_signature(path)) replace_file(path, a.owned, 0644);
            std::string idx = cat(INDEX_MAGIC, "\narchive ", name, "\nuncompressed ",
                                  a.uncompressed_size, "\nentries ", a.entries, "\nkey ", a.key, '\n');
            for (const std::string &in : plan.inputs)
                idx += cat("file ", stat_signature(in).value_or("-"), ' ', in, '\n');
            replace_file(index_path, idx, 0644);
            a.cache_path = path;
            cache_prune(dir);
        } catch (const Error &e) {
            log::warn("initramfs cache not updated: ", e.what());
        }
    }
    return a;
}

std::string build_suffix(const std::vector<SuffixFile> &files, Compression c) {
    CpioWriter w;
    std::set<std::string> dirs;
    for (const SuffixFile &f : files)
        for (std::string p = parent_of(archive_path(f.guest)); !p.empty(); p = parent_of(p)) dirs.insert(p);
    for (const std::string &d : dirs) w.dir(d);
    for (const SuffixFile &f : files) w.file(f.guest, f.data, f.perm);
    w.trailer(512);
    return c == Compression::lz4 ? lz4_legacy_compress(w.bytes(), 0, 1) : w.take();
}

} // namespace ktstr::initramfs
