// libktstr/kbuild: which kernel a run uses (spec 2.10), every step reported.
//
// Order: the explicit argument, KTSTR_TEST_KERNEL, KTSTR_KERNEL, the cache
// (newest entry built with the current fragment), the fixture kernel
// ($KTSTR_FIXTURES or ../shared/fixtures/linux-6.12 beside the repository),
// ./linux and ../linux build trees, the host kernel.  An explicit choice that
// misses is an error, never a silent fallback.
#include "ktstr/kbuild.h"
#include "ktstr/vmm.h"

#include <cstring>
#include <filesystem>

#include <fcntl.h>
#include <sys/utsname.h>
#include <unistd.h>

namespace ktstr::kbuild {

namespace fs = std::filesystem;

namespace {

bool is_file(const std::string &p) {
    std::error_code ec;
    return fs::is_regular_file(p, ec);
}
bool is_dir(const std::string &p) {
    std::error_code ec;
    return fs::is_directory(p, ec);
}
std::string canonical_or(const std::string &p) {
    std::error_code ec;
    auto c = fs::canonical(p, ec);
    return ec ? p : c.string();
}

// "6.12.118" from the bzImage's version string ("6.12.118 (user@host) #1 ...").
std::optional<std::string> bzimage_version(const std::string &path) {
    auto head = try_read_file(path, 0x10000);
    return head ? vmm::bzimage_version(*head) : std::nullopt;
}

bool is_bzimage(const std::string &path) {
    unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return false;
    uint8_t head[0x210];
    return read_full(fd.get(), head, sizeof head) == sizeof head && std::memcmp(head + 0x202, "HdrS", 4) == 0;
}

// "# Linux/x86 6.12.118 Kernel Configuration"
std::optional<std::string> config_version(const std::string &config) {
    auto text = try_read_file(config);
    if (!text) return std::nullopt;
    for (auto &line : split(text->substr(0, 4096), '\n', false)) {
        auto w = split(line, ' ', false);
        if (w.size() >= 4 && w[0] == "#" && starts_with(w[1], "Linux/") && w[3] == "Kernel") return w[2];
    }
    return std::nullopt;
}

std::map<std::string, std::string> schedulers_in(const std::string &dir) {
    std::map<std::string, std::string> out;
    std::error_code ec;
    for (auto &d : fs::directory_iterator(dir, ec)) {
        std::string name = d.path().filename().string();
        std::error_code fec;
        if (starts_with(name, "scx_") && d.is_regular_file(fec) && ::access(d.path().c_str(), X_OK) == 0)
            out[name] = d.path().string();
    }
    return out;
}

KernelDescriptor descriptor_from_json(const std::string &path) {
    json j = parse_json(read_file(path), path);
    require_schema(j, DESCRIPTOR_KIND, DESCRIPTOR_MAJOR, path);
    KernelDescriptor d;
    d.image = get_field<std::string>(j, "bzimage", path);
    auto opt = [&](const char *k) {
        std::string v = get_field_or<std::string>(j, k, "", path);
        return v.empty() ? std::nullopt : std::optional(v);
    };
    d.vmlinux = opt("vmlinux");
    d.config = opt("config");
    d.version = opt("version");
    d.kconfig_hash = opt("kconfig_hash");
    d.cache_key = opt("cache_key");
    if (j.contains("schedulers") && j["schedulers"].is_object())
        for (auto &[k, v] : j["schedulers"].items())
            if (v.is_string()) d.schedulers[k] = v.get<std::string>();
    d.dir = get_field_or<std::string>(j, "dir", fs::path(d.image).parent_path().string(), path);
    d.arch = get_field_or<std::string>(j, "arch", "", path);
    d.dirty = get_field_or<bool>(j, "dirty", false, path);
    if (!is_file(d.image)) fail(ErrorKind::input, path, ": field 'bzimage': ", d.image, " does not exist");
    return d;
}

// An image file plus whatever of the same build sits beside it.
KernelDescriptor descriptor_for_image(const std::string &image, const std::string &dir, Arch a) {
    KernelDescriptor d;
    d.image = canonical_or(image);
    d.dir = canonical_or(dir);
    d.arch = arch_name(a);
    for (const std::string &v : {dir + "/vmlinux"})
        if (is_file(v)) d.vmlinux = canonical_or(v);
    for (const std::string &c : {dir + "/config", dir + "/.config"})
        if (!d.config && is_file(c)) d.config = canonical_or(c);
    d.version = bzimage_version(d.image);
    if (!d.version && d.config) d.version = config_version(*d.config);
    d.schedulers = schedulers_in(dir + "/sched_ext");
    return d;
}

} // namespace

std::optional<KernelDescriptor> kernel_at_path(const std::string &path, Arch a) {
    if (is_file(path)) {
        if (ends_with(path, ".json")) return descriptor_from_json(path);
        return descriptor_for_image(path, fs::path(canonical_or(path)).parent_path().string(), a);
    }
    if (!is_dir(path)) return std::nullopt;
    std::string dir = canonical_or(path);
    if (is_file(dir + "/kernel.json")) return descriptor_from_json(dir + "/kernel.json");
    if (is_file(dir + "/metadata.json")) {   // a cache entry
        fs::path p(dir);
        CacheEntry e = Cache(p.parent_path().string()).read_entry(p.filename().string());
        if (!e.valid()) fail(ErrorKind::input, dir, ": corrupt cache entry: ", e.error);
        return descriptor_of(e, true);
    }
    if (is_file(dir + "/" + image_build_path(a))) {   // a build tree (in tree or O=)
        KernelDescriptor d = descriptor_for_image(dir + "/" + image_build_path(a), dir, a);
        d.dir = dir;
        return d;
    }
    if (is_file(dir + "/" + image_name(a))) return descriptor_for_image(dir + "/" + image_name(a), dir, a);
    return std::nullopt;
}

std::string find_fixture_kernel(const Getenv &env, const std::string &hint) {
    const char *f = env ? env("KTSTR_FIXTURES") : nullptr;
    std::vector<std::string> cands;
    if (f && *f) {
        cands.push_back(f);
        cands.push_back(std::string(f) + "/linux-6.12");
    }
    std::string h = hint.empty() ? self_dir() + "/../../../shared/fixtures/linux-6.12" : hint;
    cands.push_back(h);
    for (auto &c : cands)
        if (is_file(c + "/bzImage")) return canonical_or(c);
    return {};
}

ResolveResult resolve_kernel(const Cache &cache, const ResolveRequest &req) {
    ResolveResult res;
    auto note = [&](const std::string &step, const std::string &outcome) {
        res.searched.push_back(step + ": " + outcome);
        log::info("resolve: ", step, ": ", outcome);
    };
    auto found = [&](KernelDescriptor d, const std::string &step, const std::string &what) {
        d.resolved_by = step;
        if (d.arch.empty()) d.arch = arch_name(req.arch);
        note(step, "using " + what);
        res.kernel = std::move(d);
        return res;
    };
    // A chosen kernel (argument or KTSTR_KERNEL): a miss is an error.
    auto resolve_chosen = [&](const std::string &text, const std::string &step) -> ResolveResult {
        KernelId id = parse_kernel_id(text, req.env);
        switch (id.kind) {
        case IdKind::path: {
            std::error_code ec;
            if (!fs::exists(id.text, ec)) fail(ErrorKind::input, step, ": kernel path not found: ", id.text);
            auto d = kernel_at_path(id.text, req.arch);
            if (!d)
                fail(ErrorKind::input, step, ": ", id.text, " holds no kernel (expected ", image_name(req.arch),
                     ", kernel.json, a cache entry or a built tree with ", image_build_path(req.arch), ")");
            return found(*d, step, d->image);
        }
        case IdKind::version: {
            auto v = parse_version(id.text);
            if (v && v->is_series_prefix())
                fail(ErrorKind::usage, step, ": '", id.text, "' names a series; give a full version such as ",
                     id.text, ".8 (offline, the newest patch of a series cannot be looked up)");
            if (req.current_kc.size()) {
                if (auto e = cache.lookup(tarball_key(id.text, req.arch, req.current_kc)))
                    return found(descriptor_of(*e, true), step, "cache entry " + e->key);
            }
            // Same version from any source (e.g. a Debian archive), current fragment first.
            std::optional<CacheEntry> any;
            for (auto &e : cache.list()) {
                if (!e.valid() || e.meta->version != id.text || e.meta->arch != arch_name(req.arch)) continue;
                if (e.kconfig_status(req.current_kc) == KconfigStatus::matches)
                    return found(descriptor_of(e, true), step, "cache entry " + e.key);
                if (!any) any = e;
            }
            if (any) {
                log::warn(step, ": cache entry ", any->key, " was built with another kconfig fragment (",
                          any->meta->kconfig_hash.value_or("untracked"), "); rebuild with ktstr-kbuild build --force");
                return found(descriptor_of(*any, true), step, "cache entry " + any->key);
            }
            fail(ErrorKind::environment, step, ": kernel ", id.text, " is not in the cache (", cache.root(),
                 "); build it: ktstr-kbuild build --version ", id.text, " (or --tarball FILE / --source DIR)");
        }
        case IdKind::cache_key: {
            if (auto e = cache.lookup(id.text)) return found(descriptor_of(*e, true), step, "cache entry " + e->key);
            std::string hint = is_dir(id.text) ? cat("; did you mean ./", id.text, "?") : "";
            fail(ErrorKind::input, step, ": cache key '", id.text, "' not found in ", cache.root(),
                 " (run ktstr-kbuild list)", hint);
        }
        case IdKind::range:
        case IdKind::git:
            fail(ErrorKind::usage, step, ": '", text, "' is a ", id_kind_name(id.kind),
                 ", which names no single built kernel; build it with ktstr-kbuild build first");
        }
        fail(ErrorKind::usage, step, ": cannot resolve '", text, "'");
    };

    if (!req.explicit_id.empty()) return resolve_chosen(req.explicit_id, "argument");
    note("argument", "none");

    auto env = [&](const char *n) -> std::string {
        const char *v = req.env ? req.env(n) : nullptr;
        return v ? std::string(trim(v)) : "";
    };
    if (std::string t = env("KTSTR_TEST_KERNEL"); !t.empty()) {
        if (!is_file(t)) fail(ErrorKind::input, "KTSTR_TEST_KERNEL: kernel image not found: ", t);
        return found(*kernel_at_path(t, req.arch), "KTSTR_TEST_KERNEL", t);
    }
    if (std::string k = env("KTSTR_KERNEL"); !k.empty()) return resolve_chosen(k, "KTSTR_KERNEL");
    note("KTSTR_KERNEL", "unset");

    size_t valid = 0, stale = 0;
    for (auto &e : cache.list()) {
        if (!e.valid() || e.meta->arch != arch_name(req.arch)) continue;
        ++valid;
        if (e.kconfig_status(req.current_kc) == KconfigStatus::stale) {
            ++stale;
            continue;
        }
        return found(descriptor_of(e, true), "cache", "cache entry " + e.key + " (newest)");
    }
    note("cache", valid ? cat(valid, " entr", valid == 1 ? "y" : "ies", ", ", stale, " built with another kconfig fragment")
                        : cat("no entries in ", cache.root()));

    if (std::string fx = find_fixture_kernel(req.env, req.fixtures_hint); !fx.empty())
        return found(*kernel_at_path(fx, req.arch), "fixture", fx);
    note("fixture", "none ($KTSTR_FIXTURES unset and no ../shared/fixtures/linux-6.12 beside the repository)");

    for (const char *dir : {"./linux", "../linux"}) {
        if (is_file(cat(dir, "/", image_build_path(req.arch))) && is_file(cat(dir, "/vmlinux")))
            return found(*kernel_at_path(dir, req.arch), "build tree", dir);
    }
    note("build tree", "no built ./linux or ../linux");

    if (req.allow_host) {
        struct utsname u{};
        ::uname(&u);
        std::string r = u.release;
        for (const std::string &p : {"/lib/modules/" + r + "/vmlinuz", "/boot/vmlinuz-" + r, std::string("/boot/vmlinuz")}) {
            if (!is_bzimage(p)) continue;
            log::warn("resolve: the host kernel ", p, " was not built with the ktstr kconfig fragment; "
                      "sched_ext, BTF or the console may be missing");
            KernelDescriptor d = descriptor_for_image(p, fs::path(p).parent_path().string(), req.arch);
            d.vmlinux.reset();
            d.schedulers.clear();
            for (const std::string &v : {"/usr/lib/debug/boot/vmlinux-" + r, "/boot/vmlinux-" + r,
                                         "/lib/modules/" + r + "/build/vmlinux"})
                if (!d.vmlinux && is_file(v)) d.vmlinux = v;
            d.config = is_file("/boot/config-" + r) ? std::optional("/boot/config-" + r) : std::nullopt;
            return found(d, "host kernel", p);
        }
        note("host kernel", "no readable bzImage in /lib/modules/" + r + " or /boot");
    }
    std::string searched;
    for (auto &s : res.searched) searched += (searched.empty() ? "" : "; ") + s;
    fail(ErrorKind::environment, "no kernel found (searched: ", searched,
         "); remedies: build one (ktstr-kbuild build --tarball /usr/src/linux-source-6.12.tar.xz), set "
         "KTSTR_KERNEL to a kernel directory, version or cache key, or set KTSTR_FIXTURES to the fixture kernel");
}

} // namespace ktstr::kbuild
