// libktstr/util: option parsing, verb dispatch and the shared tool main().
#include "ktstr/cli.h"

#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>

namespace ktstr::cli {

const char *const EXIT_CODES_HELP =
    "Exit status:\n"
    "  0  success / the test passed\n"
    "  1  the test verdict failed\n"
    "  2  usage error or bad input (the message names the file, field or value)\n"
    "  3  environment or infrastructure failure (missing tool or device, build failed, guest hung)\n";

std::string Args::get(const std::string &name, const std::string &dflt) const {
    auto it = values_.find(name);
    return it == values_.end() || it->second.empty() ? dflt : it->second.back();
}

std::vector<std::string> Args::all(const std::string &name) const {
    auto it = values_.find(name);
    return it == values_.end() ? std::vector<std::string>{} : it->second;
}

uint64_t Args::get_u64(const std::string &name, uint64_t dflt) const {
    if (!has(name)) return dflt;
    std::string v = get(name);
    auto n = parse_u64(v);
    if (!n) fail(ErrorKind::usage, "--", name, ": '", v, "' is not a non-negative integer");
    return *n;
}

double Args::get_double(const std::string &name, double dflt) const {
    if (!has(name)) return dflt;
    std::string v = get(name);
    try {
        size_t used = 0;
        double d = std::stod(v, &used);
        if (used != v.size() || !(d >= 0)) throw std::invalid_argument(v);
        return d;
    } catch (const std::exception &) {
        fail(ErrorKind::usage, "--", name, ": '", v, "' is not a non-negative number");
    }
}

Args parse(const std::vector<std::string> &tokens, const std::vector<Option> &options, bool stop_at_positional) {
    Args a;
    auto find_long = [&](const std::string &n) -> const Option * {
        for (auto &o : options)
            if (o.name == n) return &o;
        return nullptr;
    };
    auto find_short = [&](char c) -> const Option * {
        for (auto &o : options)
            if (o.short_name && o.short_name == c) return &o;
        return nullptr;
    };
    for (size_t i = 0; i < tokens.size(); ++i) {
        const std::string &t = tokens[i];
        if (t == "--") {
            for (++i; i < tokens.size(); ++i) a.positional_.push_back(tokens[i]);
            break;
        }
        const Option *opt = nullptr;
        std::optional<std::string> inline_value;
        if (starts_with(t, "--")) {
            std::string name = t.substr(2);
            auto eq = name.find('=');
            if (eq != std::string::npos) {
                inline_value = name.substr(eq + 1);
                name = name.substr(0, eq);
            }
            opt = find_long(name);
            if (!opt) fail(ErrorKind::usage, "unknown option '--", name, "' (see --help)");
        } else if (t.size() >= 2 && t[0] == '-' && t[1] != '-' && !(t[1] >= '0' && t[1] <= '9')) {
            opt = find_short(t[1]);
            if (!opt) fail(ErrorKind::usage, "unknown option '", t.substr(0, 2), "' (see --help)");
            if (t.size() > 2) inline_value = t.substr(2);
        } else {
            if (stop_at_positional) {
                for (; i < tokens.size(); ++i) a.positional_.push_back(tokens[i]);
                break;
            }
            a.positional_.push_back(t);
            continue;
        }
        std::string value;
        if (opt->value.empty()) {
            if (inline_value) fail(ErrorKind::usage, "option '--", opt->name, "' takes no value");
        } else if (inline_value) {
            value = *inline_value;
        } else {
            if (i + 1 >= tokens.size())
                fail(ErrorKind::usage, "option '--", opt->name, "' needs a value (", opt->value, ")");
            value = tokens[++i];
        }
        auto &slot = a.values_[opt->name];
        if (!opt->repeatable) slot.clear();   // a repeated single-valued option: the later one wins
        slot.push_back(value);
    }
    return a;
}

std::string format_options(const std::vector<Option> &options) {
    std::string out;
    for (auto &o : options) {
        std::string left = o.short_name ? cat("  -", o.short_name, ", --", o.name) : cat("      --", o.name);
        if (!o.value.empty()) left += " " + o.value;
        if (left.size() < 30) left.resize(30, ' ');
        else left += "\n" + std::string(30, ' ');
        out += left + o.help + (o.repeatable ? " (repeatable)" : "") + "\n";
    }
    return out;
}

int dispatch(const std::string &tool, const std::vector<std::string> &args, const std::vector<Verb> &verbs) {
    std::string names;
    for (auto &v : verbs) names += (names.empty() ? "" : ", ") + v.name;
    if (args.empty()) fail(ErrorKind::usage, "missing command; one of: ", names, " (see ", tool, " --help)");
    for (auto &v : verbs)
        if (v.name == args[0]) return v.run(std::vector<std::string>(args.begin() + 1, args.end()));
    fail(ErrorKind::usage, "unknown command '", args[0], "'; one of: ", names);
}

int tool_main(int argc, char **argv, const ToolInfo &info,
              const std::function<int(const std::vector<std::string> &args)> &body) {
    std::signal(SIGPIPE, SIG_DFL);
    log::set_program(info.name);
    std::vector<std::string> args(argv + 1, argv + argc);
    // --help / --version anywhere before "--" answer at once.
    for (auto &a : args) {
        if (a == "--") break;
        if (a == "--help" || a == "-h") {
            std::fputs(info.help.c_str(), stdout);
            return EXIT_OK;
        }
        if (a == "--version") {
            std::printf("%s %s\n", info.name.c_str(), KTSTR_VERSION);
            return EXIT_OK;
        }
    }
    try {
        int rc = body(args);
        if (std::fflush(stdout) != 0) fail_errno(ErrorKind::environment, "writing standard output");
        return rc;
    } catch (const Error &e) {
        log::error(e.what());
        return e.exit_code();
    } catch (const std::bad_alloc &) {
        log::error("out of memory");
        return EXIT_ENVIRONMENT;
    } catch (const std::exception &e) {
        log::error("internal error: ", e.what());
        return EXIT_ENVIRONMENT;
    }
}

} // namespace ktstr::cli
