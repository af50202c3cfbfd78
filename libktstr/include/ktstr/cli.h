// libktstr/util: the command-line surface every tool shares (bpftool-style).
//
//   ktstr-TOOL [global options] VERB [options] [args]
//
// tool_main() sets up logging, answers --help/--version, runs the body and
// turns a thrown ktstr::Error into one line "ktstr-TOOL: error: ..." and the
// exit code of its kind.  Options accept "--name value" and "--name=value".
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ktstr/util.h"

namespace ktstr::cli {

struct Option {
    std::string name;          // long name without dashes: "topology"
    char short_name = 0;       // optional: 't'
    std::string value;         // value placeholder ("N", "FILE"); empty = flag
    std::string help;
    bool repeatable = false;
};

class Args {
public:
    bool has(const std::string &name) const { return values_.count(name) != 0; }
    // Last value given (options may be repeated; the later one wins).
    std::string get(const std::string &name, const std::string &dflt = "") const;
    std::vector<std::string> all(const std::string &name) const;
    // Numeric getters name the option and value on error (usage error, exit 2).
    uint64_t get_u64(const std::string &name, uint64_t dflt) const;
    double get_double(const std::string &name, double dflt) const;
    const std::vector<std::string> &positional() const { return positional_; }

private:
    friend Args parse(const std::vector<std::string> &, const std::vector<Option> &, bool);
    std::map<std::string, std::vector<std::string>> values_;
    std::vector<std::string> positional_;
};

// Parse tokens against the option table.  Unknown options, missing values and
// repeated non-repeatable options are usage errors naming the token.
// stop_at_positional: stop parsing options at the first positional word (for
// "GLOBAL-OPTS VERB VERB-OPTS"); the rest become positional verbatim.
Args parse(const std::vector<std::string> &tokens, const std::vector<Option> &options,
           bool stop_at_positional = false);

// "  -t, --topology N   help" lines for a --help text.
std::string format_options(const std::vector<Option> &options);

struct Verb {
    std::string name;
    std::string summary;
    std::function<int(const std::vector<std::string> &args)> run;
};
// Run the verb named by args[0]; unknown/missing verb -> usage error listing them.
int dispatch(const std::string &tool, const std::vector<std::string> &args,
             const std::vector<Verb> &verbs);

struct ToolInfo {
    std::string name;          // "ktstr-kconfig"
    std::string help;          // full --help text (usage, verbs, options, exit codes)
};

// The whole main(): returns the process exit code.
int tool_main(int argc, char **argv, const ToolInfo &info,
              const std::function<int(const std::vector<std::string> &args)> &body);

// The standard exit-code paragraph for --help texts.
extern const char *const EXIT_CODES_HELP;

} // namespace ktstr::cli
