// ktstr-kconfig: the kernel config fragment ktstr needs — print it, hash it,
// apply it to a kernel tree, check a final .config against it.
#include <cstdio>

#include "ktstr/cli.h"
#include "ktstr/json.h"
#include "ktstr/kconfig.h"

using namespace ktstr;
namespace kc = ktstr::kconfig;

namespace {

const std::string HELP = std::string(
    "Usage: ktstr-kconfig COMMAND [options]\n"
    "\n"
    "The kernel config fragment ktstr needs (kconfig/ktstr.kconfig, compiled in).\n"
    "\n"
    "Commands:\n"
    "  emit       print the effective fragment (the base, then each --extra file)\n"
    "  hash       print its kconfig hash: CRC-32, 8 lowercase hex digits\n"
    "  apply      --tree DIR [--out DIR]: make defconfig if there is no .config, append\n"
    "             the fragment, make olddefconfig, then validate the result\n"
    "  validate   --config FILE: compare a final .config with what the fragments ask for;\n"
    "             exit 1 when a critical option is lost\n"
    "\n"
    "Options:\n"
    "      --extra FILE           an extra fragment after the base, in order; also spelled\n"
    "                             --extra-kconfig (repeatable; all commands)\n"
    "      --json                 one JSON document on stdout (all commands)\n"
    "      --tree DIR             kernel source tree (apply: required; validate: optional, its\n"
    "                             Kconfig then decides architecture and dependency causes)\n"
    "      --out DIR              apply: out-of-tree build directory (make O=DIR)\n"
    "      --config FILE          validate: the final .config\n"
    "      --arch ARCH            x86_64 or aarch64 (default: the host's)\n"
    "      --timeout SECONDS      apply: limit per make invocation (default 1800; 0: none)\n"
    "  -h, --help                 this text\n"
    "      --version              the version\n"
    "\n") + cli::EXIT_CODES_HELP + "\nSee ktstr-kconfig(1).\n";

const std::vector<cli::Option> OPTIONS = {
    {"extra", 0, "FILE", "extra fragment", true},
    {"json", 0, "", "JSON output"},
    {"tree", 0, "DIR", "kernel source tree"},
    {"out", 0, "DIR", "build directory"},
    {"config", 0, "FILE", "final .config"},
    {"arch", 0, "ARCH", "x86_64 or aarch64"},
    {"timeout", 0, "SECONDS", "per make invocation"},
};

// --extra-kconfig is the spec's name for --extra; fold it before parsing so the
// order of mixed spellings is kept.
cli::Args parse_verb_args(const std::string &verb, std::vector<std::string> tokens,
                          std::initializer_list<const char *> allowed) {
    for (auto &t : tokens) {
        if (t == "--extra-kconfig") t = "--extra";
        else if (starts_with(t, "--extra-kconfig=")) t = "--extra=" + t.substr(16);
    }
    std::vector<cli::Option> opts;
    for (auto &o : OPTIONS)
        for (const char *name : allowed)
            if (o.name == name) opts.push_back(o);
    cli::Args a = cli::parse(tokens, opts);
    if (!a.positional().empty())
        fail(ErrorKind::usage, verb, ": unexpected argument '", a.positional().front(), "'");
    return a;
}

// The base and --extra fragments; a name assigned twice within one fragment is worth a warning.
std::vector<kc::Fragment> fragments_of(const cli::Args &a) {
    auto frags = kc::load_fragments(a.all("extra"));
    for (auto &w : kc::requested_config(frags).warnings) log::warn(w);
    return frags;
}

kc::Arch arch_of(const cli::Args &a) { return a.has("arch") ? kc::parse_arch(a.get("arch")) : kc::host_arch(); }

std::string basename_of(const std::string &p) {
    auto slash = p.rfind('/');
    return slash == std::string::npos ? p : p.substr(slash + 1);
}

ojson fragments_json(const std::vector<kc::Fragment> &frags) {
    ojson arr = ojson::array();
    for (auto &f : frags)
        arr.push_back({{"name", basename_of(f.path)}, {"path", f.path}, {"crc32", hex8(crc32_of(f.text))},
                       {"bytes", f.text.size()}});
    return arr;
}

int report_validation(const kc::Validation &v, const ojson &doc, bool json) {
    if (json) emit_line(doc);
    else std::fputs(kc::to_text(v).c_str(), stdout);
    if (v.ok()) return EXIT_OK;
    std::string names;
    for (auto &f : v.critical_lost) names += (names.empty() ? "CONFIG_" : ", CONFIG_") + f.name;
    log::error(v.critical_lost.size(), " critical option(s) lost: ", names);
    return EXIT_VERDICT_FAILED;
}

int cmd_emit(const std::vector<std::string> &args) {
    auto a = parse_verb_args("emit", args, {"extra", "json"});
    auto frags = fragments_of(a);
    std::string text = kc::effective_fragment(frags);
    if (a.has("json")) {
        ojson doc = make_doc("kconfig-emit", 1);
        doc["kconfig_hash"] = kc::fragment_hash(frags);
        doc["fragments"] = fragments_json(frags);
        doc["text"] = text;
        emit_line(doc);
    } else {
        std::fwrite(text.data(), 1, text.size(), stdout);
    }
    return EXIT_OK;
}

int cmd_hash(const std::vector<std::string> &args) {
    auto a = parse_verb_args("hash", args, {"extra", "json"});
    auto frags = fragments_of(a);
    std::string hash = kc::fragment_hash(frags);
    if (a.has("json")) {
        ojson doc = make_doc("kconfig-hash", 1);
        doc["kconfig_hash"] = hash;
        doc["base_hash"] = hex8(crc32_of(kc::embedded_fragment()));
        ojson extras = ojson::array();
        for (size_t i = 1; i < frags.size(); ++i)
            extras.push_back({{"name", basename_of(frags[i].path)}, {"crc32", hex8(crc32_of(frags[i].text))}});
        doc["extra_kconfig"] = extras;
        emit_line(doc);
    } else {
        std::printf("%s\n", hash.c_str());
    }
    return EXIT_OK;
}

int cmd_apply(const std::vector<std::string> &args) {
    auto a = parse_verb_args("apply", args, {"extra", "json", "tree", "out", "arch", "timeout"});
    if (!a.has("tree")) fail(ErrorKind::usage, "apply: --tree DIR is required");
    kc::ApplyOptions opt;
    opt.tree = a.get("tree");
    opt.out = a.get("out");
    opt.arch = arch_of(a);
    opt.timeout_seconds = a.get_double("timeout", 1800);
    opt.fragments = fragments_of(a);
    auto t0 = Clock::now();
    kc::ApplyResult r = kc::apply(opt);
    std::string steps;
    for (auto &s : r.steps) steps += cat(" make ", s.target, " ", static_cast<int>(s.seconds * 10) / 10.0, " s;");
    log::info(r.changed ? "configured " : "already configured (every directive present) ", r.config_path, " in ",
              static_cast<int>(seconds_since(t0) * 10) / 10.0, " s:", steps.empty() ? " no make run" : steps);
    return report_validation(r.validation, kc::to_json(r, opt), a.has("json"));
}

int cmd_validate(const std::vector<std::string> &args) {
    auto a = parse_verb_args("validate", args, {"extra", "json", "tree", "config", "arch"});
    if (!a.has("config")) fail(ErrorKind::usage, "validate: --config FILE is required");
    kc::Arch arch = arch_of(a);
    auto frags = fragments_of(a);
    kc::reject_critical_disables(frags);
    kc::Config final_config = kc::parse_file(a.get("config"));
    for (auto &w : final_config.warnings) log::warn(w);
    std::optional<kc::KconfigDb> db;
    if (a.has("tree")) db = kc::KconfigDb::scan(a.get("tree"));
    kc::Validation v = kc::validate(final_config, kc::requested_config(frags), arch, db ? &*db : nullptr);
    v.config_path = a.get("config");
    v.kconfig_hash = kc::fragment_hash(frags);
    // A .config does not say why an option differs; the Kconfig files do.
    if (!db && !v.differing.empty())
        log::info(v.differing.size(), v.differing.size() == 1 ? " option differs" : " options differ",
                  " from the fragment: Kconfig forced ", v.differing.size() == 1 ? "it" : "them",
                  " (a select, a default, a prompt hidden without EXPERT); --tree SRC names the cause");
    return report_validation(v, kc::to_json(v), a.has("json"));
}

} // namespace

int main(int argc, char **argv) {
    return cli::tool_main(argc, argv, {"ktstr-kconfig", HELP}, [](const std::vector<std::string> &args) {
        return cli::dispatch("ktstr-kconfig", args,
                             {{"emit", "print the effective fragment", cmd_emit},
                              {"hash", "print the kconfig hash", cmd_hash},
                              {"apply", "configure a kernel tree", cmd_apply},
                              {"validate", "check a final .config", cmd_validate}});
    });
}
