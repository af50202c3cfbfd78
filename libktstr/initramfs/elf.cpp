// A binary's shared-library closure, found the way the dynamic loader finds it
// (ld.so(8)): the ELF interpreter, then breadth-first over DT_NEEDED, each soname searched
// in DT_RPATH (only without DT_RUNPATH), LD_LIBRARY_PATH, DT_RUNPATH, the directories of
// a non-standard interpreter, /etc/ld.so.cache and the default directories.
//
// The ELF parser reads program headers only (PT_INTERP, PT_DYNAMIC, PT_LOAD), so stripped
// binaries work; every offset and size is checked against the file.
#include "ktstr/initramfs.h"

#include <cstring>
#include <algorithm>
#include <deque>
#include <map>
#include <set>

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace ktstr::initramfs {

namespace {

constexpr uint32_t PT_LOAD_ = 1, PT_DYNAMIC_ = 2, PT_INTERP_ = 3;
constexpr int64_t DT_NULL_ = 0, DT_NEEDED_ = 1, DT_STRTAB_ = 5, DT_RPATH_ = 15, DT_RUNPATH_ = 29;

template <typename T>
T get(std::string_view img, uint64_t off, const std::string &where) {
    if (off > img.size() || img.size() - off < sizeof(T))
        fail(ErrorKind::input, where, ": truncated ELF (offset ", off, ")");
    T v;
    std::memcpy(&v, img.data() + off, sizeof v);
    return v;
}

std::string dirname_of(const std::string &p) {
    size_t s = p.rfind('/');
    if (s == std::string::npos) return ".";
    return s == 0 ? "/" : p.substr(0, s);
}

std::optional<std::string> real_path(const std::string &p) {
    char buf[PATH_MAX];
    if (!::realpath(p.c_str(), buf)) return std::nullopt;
    return std::string(buf);
}

// A readable 64-bit little-endian x86-64 ELF (skips 32-bit libraries in shared dirs).
bool is_elf64_x86(const std::string &path) {
    unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return false;
    unsigned char h[20];
    if (read_full(fd.get(), h, sizeof h) != sizeof h) return false;
    return std::memcmp(h, "\x7f" "ELF", 4) == 0 && h[4] == 2 && h[5] == 1 && h[18] == 62 &&
           h[19] == 0;
}

} // namespace

bool is_elf(const std::string &path) {
    unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return false;
    char h[4];
    return read_full(fd.get(), h, 4) == 4 && std::memcmp(h, "\x7f" "ELF", 4) == 0;
}

ElfInfo parse_elf(std::string_view img, const std::string &where) {
    if (img.size() < 64 || std::memcmp(img.data(), "\x7f" "ELF", 4) != 0)
        fail(ErrorKind::input, where, ": not an ELF file");
    if (img[4] != 2 || img[5] != 1)
        fail(ErrorKind::input, where, ": only 64-bit little-endian ELF is supported");
    uint64_t phoff = get<uint64_t>(img, 0x20, where);
    uint16_t phentsize = get<uint16_t>(img, 0x36, where);
    uint16_t phnum = get<uint16_t>(img, 0x38, where);
    if (phnum && phentsize < 56) fail(ErrorKind::input, where, ": bad program header size");

    struct Load { uint64_t vaddr, offset, filesz; };
    std::vector<Load> loads;
    ElfInfo info;
    uint64_t dyn_off = 0, dyn_size = 0;
    for (uint16_t i = 0; i < phnum; i++) {
        uint64_t ph = phoff + uint64_t(i) * phentsize;
        uint32_t type = get<uint32_t>(img, ph, where);
        uint64_t offset = get<uint64_t>(img, ph + 8, where);
        uint64_t vaddr = get<uint64_t>(img, ph + 16, where);
        uint64_t filesz = get<uint64_t>(img, ph + 32, where);
        if (offset > img.size() || filesz > img.size() - offset)
            fail(ErrorKind::input, where, ": program header ", i, " points outside the file");
        if (type == PT_LOAD_) loads.push_back({vaddr, offset, filesz});
        if (type == PT_INTERP_) {
            std::string_view s = img.substr(offset, filesz);
            info.interp = std::string(s.substr(0, s.find('\0')));
        }
        if (type == PT_DYNAMIC_) {
            info.dynamic = true;
            dyn_off = offset;
            dyn_size = filesz;
        }
    }
    if (!info.dynamic) return info;

    uint64_t strtab_vaddr = 0;
    bool have_strtab = false;
    std::vector<std::pair<int64_t, uint64_t>> strs;   // (tag, string offset)
    for (uint64_t p = dyn_off; p + 16 <= dyn_off + dyn_size; p += 16) {
        int64_t tag = get<int64_t>(img, p, where);
        uint64_t val = get<uint64_t>(img, p + 8, where);
        if (tag == DT_NULL_) break;
        if (tag == DT_STRTAB_) { strtab_vaddr = val; have_strtab = true; }
        if (tag == DT_NEEDED_ || tag == DT_RPATH_ || tag == DT_RUNPATH_) strs.emplace_back(tag, val);
    }
    if (strs.empty()) return info;
    if (!have_strtab) fail(ErrorKind::input, where, ": dynamic section without DT_STRTAB");
    uint64_t strtab_off = UINT64_MAX;
    for (const Load &l : loads) {
        if (strtab_vaddr >= l.vaddr && strtab_vaddr - l.vaddr < l.filesz) {
            strtab_off = l.offset + (strtab_vaddr - l.vaddr);
            break;
        }
    }
    if (strtab_off == UINT64_MAX)
        fail(ErrorKind::input, where, ": DT_STRTAB is not inside a loaded segment");
    for (auto &[tag, soff] : strs) {
        if (soff >= img.size() - strtab_off)
            fail(ErrorKind::input, where, ": dynamic string offset ", soff, " outside the file");
        std::string_view rest = img.substr(strtab_off + soff);
        size_t nul = rest.find('\0');
        if (nul == std::string_view::npos)
            fail(ErrorKind::input, where, ": unterminated dynamic string");
        std::string s(rest.substr(0, nul));
        if (tag == DT_NEEDED_) info.needed.push_back(s);
        else (tag == DT_RPATH_ ? info.rpath : info.runpath) = split(s, ':', false);
    }
    return info;
}

ElfInfo read_elf(const std::string &path) {
    unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) fail_errno(ErrorKind::input, cat("cannot open '", path, "'"));
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) fail_errno(ErrorKind::input, cat("cannot stat '", path, "'"));
    if (!S_ISREG(st.st_mode)) fail(ErrorKind::input, "'", path, "' is not a regular file");
    if (st.st_size < 64) fail(ErrorKind::input, path, ": not an ELF file");
    Mapping m = Mapping::map_fd(fd.get(), size_t(st.st_size), PROT_READ);
    return parse_elf(std::string_view(reinterpret_cast<const char *>(m.data()), m.size()), path);
}

std::string expand_dst(std::string_view e, std::string_view origin) {
    std::string out;
    for (size_t i = 0; i < e.size();) {
        if (e[i] != '$') { out += e[i++]; continue; }
        std::string_view rest = e.substr(i + 1);
        std::string_view name;
        size_t used = 1;
        if (!rest.empty() && rest[0] == '{') {
            size_t close = rest.find('}');
            if (close == std::string_view::npos) { out += e[i++]; continue; }
            name = rest.substr(1, close - 1);
            used += close + 1;
        } else {
            size_t n = 0;
            while (n < rest.size() && (isalnum(static_cast<unsigned char>(rest[n])) || rest[n] == '_')) n++;
            name = rest.substr(0, n);
            used += n;
        }
        if (name == "ORIGIN") out += origin;
        else if (name == "LIB") out += "lib64";
        else if (name == "PLATFORM") out += "x86_64";
        else { out += e[i++]; continue; }
        i += used;
    }
    return out;
}

// ---- resolver -------------------------------------------------------------------------

std::string Resolver::env_ld_library_path() {
    const char *v = getenv("LD_LIBRARY_PATH");
    return v ? v : "";
}

std::vector<std::string> Resolver::standard_dirs() {
    return {"/lib", "/usr/lib", "/lib64", "/usr/lib64", "/usr/local/lib", "/usr/local/lib64",
            "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"};
}

Resolver::Resolver(std::string ld_so_cache, std::string ld_library_path,
                   std::vector<std::string> default_dirs)
    : cache_path_(std::move(ld_so_cache)), ld_library_path_(std::move(ld_library_path)),
      default_dirs_(std::move(default_dirs)) {}

void Resolver::load_cache() {
    if (cache_loaded_) return;
    cache_loaded_ = true;
    if (cache_path_.empty()) return;
    auto text = try_read_file(cache_path_);
    if (!text) return;
    inputs_.push_back(cache_path_);
    static constexpr std::string_view MAGIC = "glibc-ld.so.cache1.1";
    size_t base = text->find(MAGIC);   // standalone, or after an old-format table
    if (base == std::string::npos || base > 1u << 20) {
        log::debug("ignoring ", cache_path_, ": not a glibc-ld.so.cache1.1 file");
        return;
    }
    std::string_view d = std::string_view(*text).substr(base);
    if (d.size() < 48) return;
    uint32_t nlibs;
    std::memcpy(&nlibs, d.data() + 20, 4);
    if (nlibs > (d.size() - 48) / 24) return;   // corrupt: ignore the cache
    for (uint32_t i = 0; i < nlibs; i++) {
        const char *e = d.data() + 48 + size_t(i) * 24;
        int32_t flags;
        uint32_t key, value;
        uint64_t hwcap;
        std::memcpy(&flags, e, 4);
        std::memcpy(&key, e + 4, 4);
        std::memcpy(&value, e + 8, 4);
        std::memcpy(&hwcap, e + 16, 8);
        // libc6 (type 3) for x86-64 (0x0300), baseline builds only (no glibc-hwcaps variant)
        if ((flags & 0xff) != 3 || (flags & 0xff00) != 0x0300 || hwcap != 0) continue;
        if (key >= d.size() || value >= d.size()) continue;
        std::string k(d.data() + key, strnlen(d.data() + key, d.size() - key));
        std::string v(d.data() + value, strnlen(d.data() + value, d.size() - value));
        cache_.emplace_back(std::move(k), std::move(v));
    }
}

std::optional<std::string> Resolver::find(const std::string &soname, const ElfInfo &who,
                                          const std::string &origin, const std::string &interp_dir,
                                          bool *from_private_dir) {
    *from_private_dir = false;
    if (soname.find('/') != std::string::npos) {
        std::string p = soname[0] == '/' ? soname : origin + "/" + soname;
        if (is_elf64_x86(p)) return p;
        return std::nullopt;
    }
    auto try_dirs = [&](const std::vector<std::string> &dirs, bool expand) -> std::optional<std::string> {
        for (const std::string &d : dirs) {
            std::string dir = expand ? expand_dst(d, origin) : d;
            if (dir.empty()) dir = ".";
            std::string p = dir + "/" + soname;
            if (is_elf64_x86(p)) return p;
        }
        return std::nullopt;
    };
    std::optional<std::string> hit;
    if (who.runpath.empty() && (hit = try_dirs(who.rpath, true))) { *from_private_dir = true; return hit; }
    if (!ld_library_path_.empty() && (hit = try_dirs(split(ld_library_path_, ':', false), true))) {
        *from_private_dir = true;
        return hit;
    }
    if ((hit = try_dirs(who.runpath, true))) { *from_private_dir = true; return hit; }
    if (!interp_dir.empty()) {
        bool standard = false;
        for (const std::string &d : default_dirs_) standard |= (d == interp_dir);
        if (!standard && (hit = try_dirs({interp_dir, interp_dir + "/../lib", interp_dir + "/../lib64"}, false))) {
            *from_private_dir = true;
            return hit;
        }
    }
    load_cache();
    for (const auto &[k, v] : cache_) {
        if (k == soname && is_elf64_x86(v)) return v;
    }
    return try_dirs(default_dirs_, false);
}

std::vector<ClosureFile> Resolver::closure(const std::string &binary) {
    inputs_.clear();
    cache_loaded_ = false;
    cache_.clear();
    inputs_.push_back(binary);
    ElfInfo root = read_elf(binary);
    std::vector<ClosureFile> out;
    std::map<std::string, size_t> by_canonical;
    auto add = [&](const std::string &found) -> bool {   // true when new
        auto canon = real_path(found);
        if (!canon) fail_errno(ErrorKind::input, cat("cannot resolve '", found, "'"));
        auto it = by_canonical.find(*canon);
        if (it == by_canonical.end()) {
            by_canonical[*canon] = out.size();
            out.push_back({*canon, {*canon}});
            if (found != *canon) out.back().paths.push_back(found);
            inputs_.push_back(*canon);
            return true;
        }
        auto &paths = out[it->second].paths;
        if (std::find(paths.begin(), paths.end(), found) == paths.end()) paths.push_back(found);
        return false;
    };

    std::string interp_dir;
    if (!root.interp.empty()) {
        if (::access(root.interp.c_str(), R_OK) != 0)
            fail(ErrorKind::input, binary, ": its ELF interpreter ", root.interp, " is missing");
        add(root.interp);
        interp_dir = dirname_of(root.interp);
    }
    struct Pending { ElfInfo info; std::string origin; };
    std::deque<Pending> queue;
    queue.push_back({std::move(root), dirname_of(real_path(binary).value_or(binary))});
    std::set<std::string> seen_sonames;
    std::vector<std::string> missing;
    while (!queue.empty()) {
        Pending cur = std::move(queue.front());
        queue.pop_front();
        for (const std::string &soname : cur.info.needed) {
            if (!seen_sonames.insert(soname).second) continue;
            bool private_dir = false;
            auto found = find(soname, cur.info, cur.origin, interp_dir, &private_dir);
            if (!found) {
                missing.push_back(soname);
                continue;
            }
            bool fresh = add(*found);
            // Libraries from an RPATH/RUNPATH/LD_LIBRARY_PATH directory would not be found by
            // the guest's loader at the same place relative to a relocated binary: also show
            // them in the loader's default directory.
            if (private_dir) {
                std::string alias = "/lib/x86_64-linux-gnu/" + soname;
                auto &paths = out[by_canonical[*real_path(*found)]].paths;
                if (std::find(paths.begin(), paths.end(), alias) == paths.end()) paths.push_back(alias);
            }
            if (fresh) queue.push_back({read_elf(*found), dirname_of(*found)});
        }
    }
    if (!missing.empty()) {
        std::string list;
        for (auto &m : missing) list += (list.empty() ? "" : ", ") + m;
        fail(ErrorKind::input, binary, ": cannot find shared libraries: ", list,
             " (searched RPATH/RUNPATH, LD_LIBRARY_PATH, ", cache_path_, " and the default directories)");
    }
    return out;
}

} // namespace ktstr::initramfs
