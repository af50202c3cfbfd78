// libktstr/kbuild: architectures, kernel versions and identifiers, cache keys,
// the cache root cascade.  Pure functions (spec 2.1, 2.2, 2.6).
#include "ktstr/kbuild.h"

#include <cstdlib>
#include <limits>
#include <tuple>


namespace ktstr::kbuild {

Getenv process_env() {
    return [](const char *name) -> const char * { return std::getenv(name); };
}

// ---- architecture -------------------------------------------------------------

const char *image_name(Arch a) { return a == Arch::x86_64 ? "bzImage" : "Image"; }
std::string image_build_path(Arch a) { return cat("arch/", kernel_arch_dir(a), "/boot/", image_name(a)); }

// ---- versions -------------------------------------------------------------------

namespace {
// A non-empty run of digits at s[i...]; advances i.
std::optional<uint64_t> digit_run(std::string_view s, size_t &i) {
    size_t start = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    if (i == start) return std::nullopt;
    return parse_u64(s.substr(start, i - start));
}
} // namespace

std::optional<Version> parse_version(std::string_view s) {
    Version v;
    v.text = std::string(s);
    size_t i = 0;
    auto major = digit_run(s, i);
    if (!major || i >= s.size() || s[i] != '.') return std::nullopt;
    ++i;
    auto minor = digit_run(s, i);
    if (!minor) return std::nullopt;
    v.major = *major;
    v.minor = *minor;
    if (i < s.size() && s[i] == '.') {
        ++i;
        auto patch = digit_run(s, i);
        if (!patch) return std::nullopt;
        v.patch = *patch;
        v.has_patch = true;
    }
    if (i < s.size()) {
        if (s.substr(i, 3) != "-rc") return std::nullopt;
        i += 3;
        auto rc = digit_run(s, i);
        if (!rc) return std::nullopt;
        v.rc = *rc;
    }
    if (i != s.size()) return std::nullopt;
    return v;
}

int compare_versions(const Version &a, const Version &b) {
    auto key = [](const Version &v) {
        uint64_t rc = v.rc ? *v.rc : std::numeric_limits<uint64_t>::max();   // a release sorts after its rcs
        return std::tuple(v.major, v.minor, v.has_patch ? v.patch : 0, rc);
    };
    auto ka = key(a), kb = key(b);
    return ka < kb ? -1 : kb < ka ? 1 : 0;
}

const char *id_kind_name(IdKind k) {
    switch (k) {
    case IdKind::path: return "path";
    case IdKind::version: return "version";
    case IdKind::range: return "range";
    case IdKind::git: return "git";
    case IdKind::cache_key: return "cache key";
    }
    return "?";
}

KernelId parse_kernel_id(std::string_view s, const Getenv &env) {
    KernelId id;
    id.text = std::string(s);
    // 1. git+URL#REF, split at the last '#'.
    if (starts_with(s, "git+")) {
        std::string_view rest = s.substr(4);
        size_t hash = rest.rfind('#');
        if (hash == std::string_view::npos || hash == 0 || hash + 1 == rest.size())
            fail(ErrorKind::usage, "kernel '", s, "': a git source is git+URL#REF with both URL and REF "
                 "non-empty (e.g. git+https://git.kernel.org/.../linux.git#v6.12)");
        id.kind = IdKind::git;
        id.git_url = std::string(rest.substr(0, hash));
        id.git_ref = std::string(rest.substr(hash + 1));
        return id;
    }
    // 2. A..B with both sides version-shaped: an inclusive range.
    if (size_t dots = s.find(".."); dots != std::string_view::npos) {
        auto a = parse_version(s.substr(0, dots)), b = parse_version(s.substr(dots + 2));
        if (a && b) {
            if (compare_versions(*a, *b) > 0)
                fail(ErrorKind::usage, "kernel range '", s, "' is inverted: ", a->text, " is newer than ",
                     b->text, "; swap the endpoints (", b->text, "..", a->text, ")");
            id.kind = IdKind::range;
            id.range_start = a->text;
            id.range_end = b->text;
            return id;
        }
    }
    // 3. Paths.
    if (s.find('/') != std::string_view::npos || starts_with(s, ".") || starts_with(s, "~")) {
        id.kind = IdKind::path;
        if (starts_with(s, "~/")) {
            const char *home = env ? env("HOME") : nullptr;
            if (home && *home) id.text = std::string(home) + std::string(s.substr(1));
        }
        return id;
    }
    // 4. Versions, 5. everything else is a cache key.
    id.kind = parse_version(s) ? IdKind::version : IdKind::cache_key;
    return id;
}

std::vector<KernelId> parse_kernel_id_list(std::string_view s, const Getenv &env) {
    std::vector<KernelId> out;
    for (auto &part : split(s, ',', true)) {
        std::string_view t = trim(part);
        if (!t.empty()) out.push_back(parse_kernel_id(t, env));
    }
    return out;
}

std::optional<std::string> makefile_kernel_version(std::string_view text) {
    std::map<std::string, std::string> vars;
    for (auto &line : split(text, '\n')) {
        std::string_view l = trim(line);
        for (const char *name : {"VERSION", "PATCHLEVEL", "SUBLEVEL", "EXTRAVERSION"}) {
            std::string_view n = name;
            if (!starts_with(l, n) || vars.count(name)) continue;
            std::string_view rest = trim(l.substr(n.size()));
            if (rest.empty() || rest[0] != '=') continue;
            vars[name] = std::string(trim(rest.substr(1)));
        }
        if (vars.size() == 4) break;
    }
    if (!vars.count("VERSION") || !vars.count("PATCHLEVEL") || vars["VERSION"].empty() ||
        vars["PATCHLEVEL"].empty())
        return std::nullopt;
    std::string v = vars["VERSION"] + "." + vars["PATCHLEVEL"];
    if (!vars["SUBLEVEL"].empty()) v += "." + vars["SUBLEVEL"];
    v += vars["EXTRAVERSION"];
    return v;
}

// ---- cache keys ---------------------------------------------------------------------

std::string tarball_key(const std::string &version, Arch a, const std::string &kc) {
    return cat(version, "-tarball-", arch_name(a), "-kc", kc);
}

std::string archive_key(const std::string &version, uint32_t archive_crc, Arch a, const std::string &kc) {
    return cat(version, "-archive-", hex8(archive_crc), "-", arch_name(a), "-kc", kc);
}

std::string git_key(const std::string &ref, const std::string &head_sha, Arch a, const std::string &kc) {
    std::string r = ref;
    for (char &c : r)
        if (c == '/' || c == '\\') c = '_';
    return cat(r, "-git-", head_sha.substr(0, 7), "-", arch_name(a), "-kc", kc);
}

std::string local_key(const std::string &head_sha, std::optional<uint32_t> pre_config_crc, Arch a,
                      const std::string &kc) {
    std::string k = cat("local-", head_sha.substr(0, 7), "-", arch_name(a));
    if (pre_config_crc) k += "-cfg" + hex8(*pre_config_crc);
    return k + "-kc" + kc;
}

std::string local_unknown_key(const std::string &canonical_path, Arch a, const std::string &kc) {
    return cat("local-unknown-", hex8(crc32_of(canonical_path)), "-", arch_name(a), "-kc", kc);
}

bool valid_cache_key(std::string_view key) {
    if (trim(key).empty() || key == "." || starts_with(key, ".tmp-")) return false;
    if (key.find("..") != std::string_view::npos) return false;
    for (char c : key)
        if (c == '/' || c == '\\' || c == '\0') return false;
    return true;
}

bool valid_image_name(std::string_view name) {
    if (name.empty() || name == "." || name.find("..") != std::string_view::npos) return false;
    for (char c : name)
        if (c == '/' || c == '\\' || c == '\0') return false;
    return true;
}

// ---- cache root -----------------------------------------------------------------------

std::string cache_root(const Getenv &env) {
    auto get = [&](const char *n) -> std::string {
        const char *v = env ? env(n) : nullptr;
        return v ? v : "";
    };
    if (std::string d = get("KTSTR_CACHE_DIR"); !d.empty()) return d;
    if (std::string x = get("XDG_CACHE_HOME"); !x.empty()) return x + "/ktstr/kernels";
    const char *home_raw = env ? env("HOME") : nullptr;
    const char *remedy = "; set KTSTR_CACHE_DIR (or XDG_CACHE_HOME) to a local directory";
    if (!home_raw) fail(ErrorKind::environment, "cannot place the kernel cache: HOME is not set", remedy);
    std::string home = home_raw;
    if (home.empty()) fail(ErrorKind::environment, "cannot place the kernel cache: HOME is empty", remedy);
    if (home == "/")
        fail(ErrorKind::environment, "cannot place the kernel cache: HOME is '/' (a system account?)", remedy);
    if (home[0] != '/')
        fail(ErrorKind::environment, "cannot place the kernel cache: HOME '", home, "' is not an absolute path",
             remedy);
    return home + "/.cache/ktstr/kernels";
}

} // namespace ktstr::kbuild
