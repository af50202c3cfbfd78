// ktstr-kbuild: build, cache and resolve kernels (and their sched_ext
// schedulers) for ktstr.  The logic lives in libktstr/kbuild.
#include <cstdio>
#include <filesystem>
#include <iostream>

#include <unistd.h>

#include "ktstr/cli.h"
#include "ktstr/json.h"
#include "ktstr/kbuild.h"
#include "ktstr/kconfig.h"

using namespace ktstr;
using namespace ktstr::kbuild;
namespace fs = std::filesystem;

namespace {

const std::vector<cli::Option> GLOBAL_OPTIONS = {
    {"cache-dir", 0, "DIR", "kernel cache directory (default: $KTSTR_CACHE_DIR, $XDG_CACHE_HOME/ktstr/kernels, ~/.cache/ktstr/kernels)"},
    {"verbose", 'v', "", "print the commands run"},
};

const std::vector<cli::Option> BUILD_OPTIONS = {
    {"source", 0, "DIR", "a local kernel tree (built out of tree; cached when it is a clean git tree)"},
    {"tarball", 0, "FILE", "a kernel source archive, e.g. /usr/src/linux-source-6.12.tar.xz"},
    {"archive", 0, "FILE", "same as --tarball"},
    {"kernel-version", 0, "VER", "a kernel.org release, downloaded (needs the internet); also spelled --version VER"},
    {"git", 0, "URL", "a git repository (with --ref)"},
    {"ref", 0, "REF", "branch, tag or commit for --git"},
    {"extra-kconfig", 0, "FILE", "more kconfig lines after the ktstr fragment (part of the cache key)", true},
    {"schedulers", 0, "", "also build the tree's tools/sched_ext schedulers (needs clang >= 16)"},
    {"force", 0, "", "rebuild even when the cache has the kernel"},
    {"jobs", 'j', "N", "make -jN (default: the CPUs this process may use)"},
    {"cc", 0, "CC", "C compiler for the kernel (default gcc)"},
    {"llvm", 0, "SUFFIX", "LLVM= for tools/sched_ext, e.g. -16 (default: newest clang >= 16 found)"},
    {"in-tree", 0, "", "--source: build inside the tree instead of out of tree"},
    {"build-dir", 0, "DIR", "--source: the out-of-tree build directory (default under the cache)"},
    {"keep-work", 0, "", "keep the unpacked/cloned source and objects of temporary builds"},
    {"make-timeout", 0, "SECS", "timeout of each configuration make step (default 1800)"},
};

const std::vector<cli::Option> RESOLVE_OPTIONS = {
    {"extra-kconfig", 0, "FILE", "the fragment the kernel must match includes this file", true},
    {"no-host", 0, "", "never fall back to the host kernel"},
};

const std::string HELP = cat(
    "Usage: ktstr-kbuild [--cache-dir DIR] [-v] COMMAND [options]\n"
    "\n"
    "Build, cache and resolve kernels for ktstr.  A build applies the ktstr kconfig\n"
    "fragment (checking the critical options before compiling), builds bzImage and\n"
    "vmlinux, strips vmlinux to symbols + BTF + loadable segments, optionally builds\n"
    "the sched_ext example schedulers, and stores all of it atomically in the cache.\n"
    "A second build of the same input is answered from the cache.\n"
    "\n"
    "Commands:\n"
    "  build SOURCE [options]     build (or find in the cache); prints the kernel descriptor JSON\n"
    "  resolve [KERNEL]           print the descriptor of the kernel a run would use (ktstr.kernel/1)\n"
    "  list [--json]              list cache entries\n"
    "  show KEY [--verify]        print an entry's metadata; --verify re-checks every checksum\n"
    "  clean [--keep N] [--corrupt-only] [--force]\n"
    "                             remove corrupt entries and all but the N newest\n"
    "  locks [--json]             the cache's lock files and who holds them\n"
    "\n"
    "Global options:\n",
    cli::format_options(GLOBAL_OPTIONS),
    "\nbuild: SOURCE is one of --source DIR, --tarball FILE, --version VER, --git URL --ref REF\n",
    cli::format_options(BUILD_OPTIONS),
    "\nresolve: KERNEL is a path (bzImage, a directory holding one, kernel.json, a cache entry),\n"
    "a version or a cache key.  Without it: KTSTR_TEST_KERNEL, KTSTR_KERNEL, the newest cache\n"
    "entry built with the current fragment, the fixture kernel ($KTSTR_FIXTURES, else\n"
    "../shared/fixtures/linux-6.12 beside the repository), ./linux or ../linux build trees,\n"
    "the host kernel; every step is reported on stderr.\n",
    cli::format_options(RESOLVE_OPTIONS),
    "\nEnvironment:\n"
    "  KTSTR_CACHE_DIR, XDG_CACHE_HOME, HOME   the cache root, in that order\n"
    "  KTSTR_KERNEL, KTSTR_TEST_KERNEL         the kernel resolve picks (see above)\n"
    "  KTSTR_FIXTURES                          the fixture kernel directory\n"
    "  KTSTR_BUILD_DIR, TMPDIR                 where temporary builds unpack (needs ~10 GiB)\n"
    "  KTSTR_OFFLINE=1                         never download\n"
    "  KTSTR_BYPASS_LLC_LOCKS                  skip the per-source-tree build lock\n"
    "\n",
    cli::EXIT_CODES_HELP);

Cache open_cache(const cli::Args &global) {
    return Cache(global.has("cache-dir") ? global.get("cache-dir") : cache_root());
}

std::string current_kc(const std::vector<std::string> &extras) {
    return kconfig::fragment_hash(kconfig::load_fragments(extras));
}

int cmd_build(const cli::Args &global, const std::vector<std::string> &tokens) {
    cli::Args a = cli::parse(tokens, BUILD_OPTIONS);
    if (!a.positional().empty()) fail(ErrorKind::usage, "build: unexpected argument '", a.positional()[0], "'");
    BuildRequest req;
    int kinds = 0;
    if (a.has("source")) { req.kind = SourceKind::local; req.source = a.get("source"); ++kinds; }
    if (a.has("tarball") || a.has("archive")) {
        if (a.has("tarball") && a.has("archive")) fail(ErrorKind::usage, "give --tarball or --archive, not both");
        req.kind = SourceKind::archive;
        req.source = a.has("tarball") ? a.get("tarball") : a.get("archive");
        ++kinds;
    }
    if (a.has("kernel-version")) { req.kind = SourceKind::version; req.source = a.get("kernel-version"); ++kinds; }
    if (a.has("git")) {
        req.kind = SourceKind::git;
        req.git_url = a.get("git");
        req.git_ref = a.get("ref");
        if (req.git_ref.empty()) fail(ErrorKind::usage, "--git needs --ref REF (a branch, tag or commit)");
        ++kinds;
    } else if (a.has("ref")) {
        fail(ErrorKind::usage, "--ref goes with --git URL");
    }
    if (kinds != 1)
        fail(ErrorKind::usage, "build needs exactly one source: --source DIR, --tarball FILE, --version VER or "
             "--git URL --ref REF (see ktstr-kbuild --help)");
    if (req.kind != SourceKind::local && (a.has("in-tree") || a.has("build-dir")))
        fail(ErrorKind::usage, "--in-tree and --build-dir apply to --source builds only");
    req.extra_kconfig = a.all("extra-kconfig");
    req.schedulers = a.has("schedulers");
    req.force = a.has("force");
    req.jobs = static_cast<unsigned>(a.get_u64("jobs", 0));
    req.cc = a.get("cc");
    req.llvm_suffix = a.get("llvm");
    req.in_tree = a.has("in-tree");
    req.build_dir = a.get("build-dir");
    req.keep_work = a.has("keep-work");
    req.make_timeout_s = a.get_double("make-timeout", 0);

    Cache cache = open_cache(global);
    Progress progress(::isatty(2));
    BuildOutcome o = build_kernel(cache, req, progress);
    if (o.cache_hit)
        log::info("cached: ", o.key, " (", o.descriptor.dir, "); use --force to rebuild");
    emit_line(o.descriptor.to_json());
    return EXIT_OK;
}

int cmd_resolve(const cli::Args &global, const std::vector<std::string> &tokens) {
    cli::Args a = cli::parse(tokens, RESOLVE_OPTIONS);
    if (a.positional().size() > 1) fail(ErrorKind::usage, "resolve takes at most one kernel");
    Cache cache = open_cache(global);
    ResolveRequest req;
    req.explicit_id = a.positional().empty() ? "" : a.positional()[0];
    req.current_kc = current_kc(a.all("extra-kconfig"));
    req.allow_host = !a.has("no-host");
    ResolveResult r = resolve_kernel(cache, req);
    emit_line(r.kernel.to_json());
    return EXIT_OK;
}

int cmd_list(const cli::Args &global, const std::vector<std::string> &tokens) {
    cli::Args a = cli::parse(tokens, {{"json", 0, "", "one JSON document"}});
    if (!a.positional().empty()) fail(ErrorKind::usage, "list takes no arguments");
    Cache cache = open_cache(global);
    std::string kc = current_kc({});
    auto entries = cache.list();
    if (a.has("json")) {
        ojson doc = make_doc("kernel-list", 1);
        doc["cache"] = cache.root();
        doc["current_ktstr_kconfig_hash"] = kc;
        doc["active_prefixes_fetch_error"] = "not fetched: ktstr-kbuild works offline (no EOL data)";
        doc["entries"] = ojson::array();
        for (auto &e : entries) {
            ojson j;
            j["key"] = e.key;
            j["path"] = e.path;
            if (!e.valid()) {
                j["error"] = e.error;
                j["error_kind"] = e.error_kind;
            } else {
                auto &m = *e.meta;
                j["version"] = m.version ? ojson(*m.version) : ojson(nullptr);
                j["source"] = m.source.to_json();
                j["arch"] = m.arch;
                j["built_at"] = m.built_at;
                j["ktstr_kconfig_hash"] = m.kconfig_hash ? ojson(*m.kconfig_hash) : ojson(nullptr);
                j["kconfig_status"] = kconfig_status_name(e.kconfig_status(kc));
                j["eol"] = false;
                j["config_hash"] = m.config_hash ? ojson(*m.config_hash) : ojson(nullptr);
                j["image_name"] = m.image_name;
                j["image_path"] = e.image_path();
                j["has_vmlinux"] = m.has_vmlinux;
                j["vmlinux_stripped"] = m.vmlinux_stripped;
                j["schedulers"] = m.schedulers;
            }
            doc["entries"].push_back(j);
        }
        emit_line(doc);
        return EXIT_OK;
    }
    std::fprintf(stderr, "cache: %s\n", cache.root().c_str());
    if (entries.empty()) {
        std::fprintf(stderr, "no kernels cached; build one: ktstr-kbuild build --tarball /usr/src/linux-source-6.12.tar.xz\n");
        return EXIT_OK;
    }
    size_t stale = 0, untracked = 0, corrupt = 0;
    std::printf("%-48s %-12s %-8s %-7s %s\n", "KEY", "VERSION", "SOURCE", "ARCH", "BUILT");
    for (auto &e : entries) {
        if (!e.valid()) {
            ++corrupt;
            std::printf("%s (corrupt: %s)\n", e.key.c_str(), e.error.c_str());
            continue;
        }
        auto &m = *e.meta;
        std::string tag;
        switch (e.kconfig_status(kc)) {
        case KconfigStatus::stale: tag = " (stale kconfig)"; ++stale; break;
        case KconfigStatus::untracked: tag = " (untracked kconfig)"; ++untracked; break;
        case KconfigStatus::matches: break;
        }
        std::printf("%-48s %-12s %-8s %-7s %s%s\n", e.key.c_str(), m.version.value_or("-").c_str(),
                    source_type_name(m.source.type), m.arch.c_str(), m.built_at.c_str(), tag.c_str());
    }
    if (untracked)
        std::fprintf(stderr, "(untracked kconfig): %zu entr%s without a recorded fragment hash\n", untracked,
                     untracked == 1 ? "y" : "ies");
    if (stale)
        std::fprintf(stderr, "(stale kconfig): %zu entr%s built with another fragment than the current %s; rebuild: "
                     "ktstr-kbuild build --force SOURCE\n", stale, stale == 1 ? "y" : "ies", kc.c_str());
    if (corrupt)
        std::fprintf(stderr, "(corrupt): %zu entr%s in %s cannot be used; remove them: ktstr-kbuild clean "
                     "--corrupt-only --force\n", corrupt, corrupt == 1 ? "y" : "ies", cache.root().c_str());
    return EXIT_OK;
}

int cmd_show(const cli::Args &global, const std::vector<std::string> &tokens) {
    cli::Args a = cli::parse(tokens, {{"verify", 0, "", "re-compute every artifact checksum (exit 1 on a mismatch)"}});
    if (a.positional().size() != 1) fail(ErrorKind::usage, "show needs one cache KEY (see ktstr-kbuild list)");
    std::string key = a.positional()[0];
    Cache cache = open_cache(global);
    if (!valid_cache_key(key)) fail(ErrorKind::usage, "'", key, "' is not a valid cache key");
    CacheEntry e = cache.read_entry(key);
    if (!e.valid()) {
        if (e.error_kind == "missing" && !fs::exists(e.path))
            fail(ErrorKind::input, "cache key '", key, "' not found in ", cache.root(), " (run ktstr-kbuild list)");
        fail(ErrorKind::input, "cache entry ", key, " is corrupt (", e.error_kind, "): ", e.error,
             "; remove it: ktstr-kbuild clean --corrupt-only --force");
    }
    ojson doc = e.meta->to_json();
    doc["key"] = key;
    doc["path"] = e.path;
    doc["kconfig_status"] = kconfig_status_name(e.kconfig_status(current_kc({})));
    doc["descriptor"] = descriptor_of(e, true).to_json();
    int rc = EXIT_OK;
    if (a.has("verify")) {
        ojson checks = ojson::array();
        for (auto &art : e.meta->artifacts) {
            std::string p = e.path + "/" + art.file;
            auto data = try_read_file(p);
            std::string got = data ? hex8(crc32_of(*data)) : "missing";
            bool ok = data && got == art.crc32 && data->size() == art.size;
            if (!ok) {
                rc = EXIT_VERDICT_FAILED;
                log::error("checksum mismatch: ", p, ": recorded ", art.crc32, " (", art.size, " bytes), found ", got,
                           data ? cat(" (", data->size(), " bytes)") : std::string());
            }
            checks.push_back({{"file", art.file}, {"ok", ok}});
        }
        doc["verified"] = checks;
    }
    std::printf("%s\n", doc.dump(2).c_str());
    return rc;
}

int cmd_clean(const cli::Args &global, const std::vector<std::string> &tokens) {
    cli::Args a = cli::parse(tokens, {{"keep", 0, "N", "keep the N newest valid entries"},
                                      {"corrupt-only", 0, "", "remove only corrupt entries"},
                                      {"force", 0, "", "do not ask"}});
    if (!a.positional().empty()) fail(ErrorKind::usage, "clean takes no arguments");
    if (a.has("keep") && a.has("corrupt-only")) fail(ErrorKind::usage, "--keep and --corrupt-only exclude each other");
    std::optional<size_t> keep;
    if (a.has("keep")) keep = a.get_u64("keep", 0);
    Cache cache = open_cache(global);
    CleanPlan plan = cache.plan_clean(keep, a.has("corrupt-only"));
    for (auto &b : plan.busy) log::warn("skipping ", b.key, ": in use (", cache.entry_lock_path(b.key), ")");
    if (plan.remove.empty()) {
        std::fprintf(stderr, "nothing to clean in %s\n", cache.root().c_str());
        return EXIT_OK;
    }
    if (!a.has("force")) {
        if (!::isatty(0))
            fail(ErrorKind::usage, "clean would remove ", plan.remove.size(), " entr", plan.remove.size() == 1 ? "y" : "ies",
                 "; stdin is not a terminal, so pass --force");
        for (auto &e : plan.remove)
            std::fprintf(stderr, "  %s%s\n", e.key.c_str(), e.valid() ? "" : cat(" (corrupt: ", e.error, ")").c_str());
        std::fprintf(stderr, "remove these %zu entries from %s? [y/N] ", plan.remove.size(), cache.root().c_str());
        std::string answer;
        std::getline(std::cin, answer);
        if (answer != "y" && answer != "Y") {
            std::fprintf(stderr, "nothing removed\n");
            return EXIT_OK;
        }
    }
    size_t n = cache.remove_entries(plan.remove);
    std::fprintf(stderr, "removed %zu entr%s, kept %zu\n", n, n == 1 ? "y" : "ies", plan.keep.size() + plan.busy.size());
    return EXIT_OK;
}

int cmd_locks(const cli::Args &global, const std::vector<std::string> &tokens) {
    cli::Args a = cli::parse(tokens, {{"json", 0, "", "one JSON document"}});
    Cache cache = open_cache(global);
    ojson rows = ojson::array();
    std::error_code ec;
    for (auto &d : fs::directory_iterator(cache.root() + "/.locks", ec)) {
        std::string name = d.path().filename().string();
        if (!ends_with(name, ".lock")) continue;
        std::string key = name.substr(0, name.size() - 5);
        ojson r;
        r["lockfile"] = d.path().string();
        r["kind"] = starts_with(key, "build-") ? "build" : starts_with(key, "source-") ? "source" : "entry";
        r["cache_key"] = starts_with(key, "build-") ? key.substr(6) : starts_with(key, "source-") ? "" : key;
        r["holders"] = ojson::array();
        for (auto &h : lock_holders(d.path().string())) r["holders"].push_back({{"pid", h.pid}, {"cmdline", h.cmdline}});
        rows.push_back(r);
    }
    if (a.has("json")) {
        ojson doc = make_doc("kbuild-locks", 1);
        doc["cache"] = rows;
        emit_line(doc);
        return EXIT_OK;
    }
    std::fprintf(stderr, "cache: %s\n", cache.root().c_str());
    for (auto &r : rows) {
        if (r["holders"].empty()) continue;
        for (auto &h : r["holders"])
            std::printf("%-7s %-48s pid=%d cmd=%s\n", r["kind"].get<std::string>().c_str(),
                        r["cache_key"].get<std::string>().c_str(), h["pid"].get<int>(),
                        h["cmdline"].get<std::string>().c_str());
    }
    return EXIT_OK;
}

// "build --version 6.12.8" names a kernel, while a bare "--version" asks for
// the tool's version (answered by tool_main).  After the verb, rewrite the
// kernel one to --kernel-version before tool_main sees it.
std::vector<std::string> rename_kernel_version(int argc, char **argv) {
    std::vector<std::string> out(argv, argv + argc);
    bool after_verb = false;
    for (size_t i = 1; i < out.size(); ++i) {
        std::string &t = out[i];
        if (t == "--") break;
        if (!after_verb) {
            if (t == "--cache-dir") ++i;
            else if (!starts_with(t, "-")) after_verb = true;
            continue;
        }
        if (t == "--version") t = "--kernel-version";
        else if (starts_with(t, "--version=")) t = "--kernel-version=" + t.substr(10);
    }
    return out;
}

} // namespace

int main(int argc, char **argv) {
    std::vector<std::string> words = rename_kernel_version(argc, argv);
    std::vector<char *> cargv;
    for (auto &w : words) cargv.push_back(w.data());
    cargv.push_back(nullptr);
    return cli::tool_main(argc, cargv.data(), {"ktstr-kbuild", HELP}, [](const std::vector<std::string> &args) {
        cli::Args global = cli::parse(args, GLOBAL_OPTIONS, true);
        if (global.has("verbose")) log::set_level(log::Level::debug);
        auto bind = [&](int (*f)(const cli::Args &, const std::vector<std::string> &)) {
            return [&global, f](const std::vector<std::string> &rest) { return f(global, rest); };
        };
        return cli::dispatch("ktstr-kbuild", global.positional(),
                             {{"build", "build or find a kernel", bind(cmd_build)},
                              {"resolve", "print the kernel descriptor", bind(cmd_resolve)},
                              {"list", "list cache entries", bind(cmd_list)},
                              {"show", "show one entry", bind(cmd_show)},
                              {"clean", "remove cache entries", bind(cmd_clean)},
                              {"locks", "lock files and holders", bind(cmd_locks)}});
    });
}
