// libktstr/kconfig: apply the fragment to a kernel tree with the kernel's own
// kconfig tooling (make defconfig / olddefconfig), then validate at once, so a
// lost critical option is found before hours of building, not after.
#include "ktstr/kconfig.h"
#include "ktstr/process.h"

#include <cstdio>
#include <filesystem>
#include <set>

#include <sys/stat.h>
#include <unistd.h>

namespace ktstr::kconfig {

namespace {

namespace fs = std::filesystem;

// A directive as kconfig writes it in a .config.
std::string directive_line(const Entry &e) {
    if (e.kind == Entry::Kind::tristate && e.value == "n") return cat("# CONFIG_", e.name, " is not set");
    return cat("CONFIG_", e.name, "=", display_value(e));
}

bool all_directives_present(const std::string &config_text, const Config &requested) {
    std::set<std::string_view> lines;
    for (size_t pos = 0; pos < config_text.size();) {
        size_t nl = config_text.find('\n', pos);
        if (nl == std::string::npos) nl = config_text.size();
        lines.insert(trim(std::string_view(config_text).substr(pos, nl - pos)));
        pos = nl + 1;
    }
    for (auto &e : requested.entries)
        if (!lines.count(directive_line(e))) return false;
    return true;
}

// Puts the build directory back as it was when something fails half way.
class Rollback {
public:
    Rollback(std::string config_path, std::optional<std::string> original, std::string created_dir)
        : config_path_(std::move(config_path)), original_(std::move(original)), created_dir_(std::move(created_dir)) {}
    ~Rollback() {
        if (committed_) return;
        std::error_code ec;
        if (!created_dir_.empty()) {
            fs::remove_all(created_dir_, ec);
            return;
        }
        try {
            if (original_) write_file_atomic(config_path_, *original_);
            else ::unlink(config_path_.c_str());
        } catch (const Error &e) {
            log::warn("could not restore ", config_path_, ": ", e.what());
        }
    }
    void commit() { committed_ = true; }

private:
    std::string config_path_;
    std::optional<std::string> original_;
    std::string created_dir_;
    bool committed_ = false;
};

} // namespace

ApplyResult apply(const ApplyOptions &opt) {
    if (opt.fragments.empty()) fail(ErrorKind::usage, "apply: no fragment (load_fragments() gives at least the base)");
    reject_critical_disables(opt.fragments);
    Config requested = requested_config(opt.fragments);

    ApplyResult res;
    auto t_scan = Clock::now();
    KconfigDb db = KconfigDb::scan(opt.tree);   // also proves the tree is a readable kernel tree
    res.scan_seconds = seconds_since(t_scan);

    std::string created_dir;
    std::string build_dir = opt.tree;
    if (!opt.out.empty()) {
        std::error_code ec;
        auto st = fs::status(opt.out, ec);
        if (fs::exists(st) && !fs::is_directory(st)) fail(ErrorKind::input, opt.out, ": exists and is not a directory (--out)");
        if (!fs::exists(st)) {
            if (!fs::create_directories(opt.out, ec) && ec)
                fail(ErrorKind::environment, "cannot create build directory ", opt.out, ": ", ec.message());
            created_dir = opt.out;
        } else if (::access(opt.out.c_str(), W_OK) != 0) {
            fail_errno(ErrorKind::input, opt.out + " (--out)");
        }
        build_dir = fs::absolute(opt.out).lexically_normal().string();
    } else if (::access(opt.tree.c_str(), W_OK) != 0) {
        fail_errno(ErrorKind::input, opt.tree + " (the tree is the build directory without --out)");
    }
    res.config_path = build_dir + "/.config";
    std::optional<std::string> original = try_read_file(res.config_path);
    Rollback rollback(res.config_path, original, created_dir);

    auto run_make = [&](const std::string &target) {
        std::vector<std::string> argv = {opt.make, "-C", opt.tree};
        if (!opt.out.empty()) argv.push_back("O=" + build_dir);
        argv.push_back(cat("ARCH=", make_arch(opt.arch)));
        argv.push_back(target);
        log::debug("running: ", shell_join(argv));
        SpawnOptions so;
        so.merge_stderr = true;
        RunResult r = run_capture(argv, opt.timeout_seconds, so);
        res.steps.push_back({target, r.seconds});
        if (r.timed_out)
            fail(ErrorKind::environment, "make ", target, " timed out after ", opt.timeout_seconds,
                 " s and was killed (raise --timeout if the machine is just slow): ", shell_join(argv));
        if (r.status != 0) {
            std::fwrite(r.out.data(), 1, r.out.size(), stderr);   // the make output, only on failure
            fail(ErrorKind::environment, "make ", target, " failed (exit ", r.status, "): ", shell_join(argv));
        }
    };

    if (!original) run_make("defconfig");
    std::string current = read_file(res.config_path);
    parse(current, res.config_path);   // a corrupt existing .config is bad input, named here
    if (!all_directives_present(current, requested)) {
        std::string text = current;
        if (!text.empty() && text.back() != '\n') text += '\n';
        text += effective_fragment(opt.fragments);
        write_file_atomic(res.config_path, text);
        run_make("olddefconfig");
        res.changed = true;
    }
    Config final_config = parse_file(res.config_path);
    res.validation = validate(final_config, requested, opt.arch, &db);
    res.validation.config_path = res.config_path;
    res.validation.kconfig_hash = fragment_hash(opt.fragments);
    rollback.commit();
    return res;
}

ojson to_json(const ApplyResult &r, const ApplyOptions &opt) {
    ojson doc = make_doc("kconfig-apply", 1);
    doc["tree"] = opt.tree;
    doc["out"] = opt.out.empty() ? ojson(nullptr) : ojson(opt.out);
    doc["config"] = r.config_path;
    doc["arch"] = arch_name(opt.arch);
    doc["kconfig_hash"] = fragment_hash(opt.fragments);
    doc["changed"] = r.changed;
    doc["steps"] = ojson::array();
    for (auto &s : r.steps) doc["steps"].push_back({{"target", s.target}, {"seconds", s.seconds}});
    doc["kconfig_scan_seconds"] = r.scan_seconds;
    doc["validation"] = to_json(r.validation);
    return doc;
}

} // namespace ktstr::kconfig
