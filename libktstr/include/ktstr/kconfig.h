// libktstr/kconfig: the kernel config fragment ktstr needs, and the tools to
// apply it to a kernel tree and to check a final .config against it.
//
//   embedded_fragment()   kconfig/ktstr.kconfig, compiled in (never read at run time)
//   effective_fragment()  that text plus --extra fragments, in order (what is applied and hashed)
//   fragment_hash()       CRC-32 of the effective text, 8 lowercase hex (the cache-key suffix)
//   parse()               .config / fragment parser (strict: malformed lines are errors)
//   apply()               defconfig if needed, append the fragment, olddefconfig, validate
//   validate()            compare a final .config with what the fragments asked for
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ktstr/json.h"

namespace ktstr::kconfig {

// ---- architectures ------------------------------------------------------------

enum class Arch { x86_64, aarch64 };

// "x86_64" / "aarch64" ("arm64" is accepted as a synonym).  Usage error otherwise.
Arch parse_arch(const std::string &name);
Arch host_arch();
const char *arch_name(Arch a);        // "x86_64", "aarch64"
const char *kernel_arch_dir(Arch a);  // the directory under arch/: "x86", "arm64"
const char *make_arch(Arch a);        // the ARCH= value for make: "x86_64", "arm64"

// ---- parsing ---------------------------------------------------------------------

// One assignment: CONFIG_NAME=VALUE or "# CONFIG_NAME is not set" (value "n").
struct Entry {
    enum class Kind { tristate, string, number, hex };
    std::string name;    // without the CONFIG_ prefix
    std::string value;   // "y" "m" "n"; the unescaped string; the number as written
    Kind kind = Kind::tristate;
    std::string file;
    int line = 0;
};

// How a value is written in a .config: y, m, "is not set", "text", 512, 0x1f.
std::string display_value(const Entry &e);

// A parsed .config or fragment.  Later assignments to a name replace earlier
// ones (kconfig's rule); within one file that draws a warning.
struct Config {
    std::vector<Entry> entries;                        // first-appearance order, final values
    std::unordered_map<std::string, size_t> index;     // name -> entries[i]
    std::vector<std::string> warnings;                 // "FILE:LINE: ..." (duplicates)
    // "# only-arch ARCH: SYM..." tags: the fragment's own statement that a symbol
    // exists for one architecture only.
    std::map<std::string, Arch> only_arch;

    const Entry *find(const std::string &name) const;
    // Add or replace (a later assignment wins); returns true when it replaced one.
    bool set(Entry e);
};

// Parse text; `file` names it in messages.  Accepts =y/m/n, "strings" (with \"
// and \\ escapes), decimal (also negative) and 0x hex numbers, "# CONFIG_X is
// not set", other comments, blank lines, CRLF.  Anything else throws
// Error(input) "FILE:LINE: malformed line '...': expected ...".
Config parse(std::string_view text, const std::string &file);
Config parse_file(const std::string &path);

// ---- the fragment, extras and the hash -------------------------------------------

std::string_view embedded_fragment();
inline constexpr const char *BASE_FRAGMENT_NAME = "ktstr.kconfig";

struct Fragment {
    std::string path;   // as given (BASE_FRAGMENT_NAME for the embedded one)
    std::string text;
};

// The embedded fragment followed by the extra files read from disk (Error(input)
// naming a missing/unreadable file).  Each extra is parsed, so a malformed
// line is reported before anything else happens.
std::vector<Fragment> load_fragments(const std::vector<std::string> &extra_paths);
// Base bytes, then per extra: "\n" if the text so far does not end in one, then its bytes.
std::string effective_fragment(const std::vector<Fragment> &fragments);
std::string fragment_hash(const std::vector<Fragment> &fragments);
// What the fragments ask for, merged in order (a later fragment overrides).
Config requested_config(const std::vector<Fragment> &fragments);
// Throws Error(input) naming file, line and option when an extra fragment
// (index >= 1) turns a critical option off ("# ... is not set", =n, or =m).
void reject_critical_disables(const std::vector<Fragment> &fragments);

// ---- critical options ------------------------------------------------------------------

struct CriticalOption {
    const char *name;     // without CONFIG_
    const char *why;      // what the harness uses it for
    const char *hint;     // why it usually goes missing
};
const std::vector<CriticalOption> &critical_options();
const CriticalOption *find_critical(const std::string &name);

// ---- Kconfig knowledge: arch ownership and dependencies ----------------------------------

// What a kernel tree's Kconfig files say about symbols: on which architectures
// a symbol can exist at all, and what it depends on.  Built by scanning a tree,
// or the built-in excerpt of Linux 6.12 for the fragment's critical options.
class KconfigDb {
public:
    KconfigDb();
    ~KconfigDb();
    KconfigDb(KconfigDb &&) noexcept;
    KconfigDb &operator=(KconfigDb &&) noexcept;

    // Reads TREE/Kconfig and every arch/*/Kconfig, following "source" lines.
    // Error(input) when TREE is not a kernel source tree.
    static KconfigDb scan(const std::string &tree);
    // Dependencies of the critical options as Linux 6.12 declares them.
    static const KconfigDb &builtin();

    bool from_tree() const;
    bool declares(const std::string &sym) const;
    // Architectures (kernel arch dir names, sorted) on which the symbol can be
    // enabled; nullopt when it can be enabled everywhere or is unknown.
    std::optional<std::vector<std::string>> only_on(const std::string &sym) const;
    // The "depends on" expressions that apply to the symbol on `arch` (enclosing
    // if/menu/choice conditions included).
    std::vector<std::string> depends(const std::string &sym, Arch arch) const;
    size_t symbol_count() const;
    // Why a symbol a fragment turned off is still on: the selectors that are on,
    // or a prompt hidden on this configuration (so the default wins).
    std::vector<std::string> why_forced_on(const std::string &sym, Arch arch, const Config &config) const;

    struct Impl;

private:
    explicit KconfigDb(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// Evaluate a Kconfig dependency expression against a .config (absent = n).
// Returns 0 (n), 1 (m) or 2 (y); Error(input) on an expression it cannot parse.
int eval_expr(const std::string &expr, const Config &config);
// Why an expression is false: one phrase per failing term, e.g. "BPF_JIT is off",
// "PAHOLE_VERSION >= 116 is false (PAHOLE_VERSION=0)".  Empty when it holds.
std::vector<std::string> explain_false(const std::string &expr, const Config &config,
                                       std::vector<std::string> *off_symbols = nullptr);

// ---- validation ------------------------------------------------------------------------------

struct Finding {
    std::string name;
    std::string expected;          // display form
    std::string actual;            // display form, "(absent)" when not in the .config
    std::string status;            // missing, not_set, demoted, promoted, enabled, different
    std::string origin;            // FILE:LINE of the request
    bool critical = false;
    std::vector<std::string> causes;        // human phrases, outermost first
    std::vector<std::string> off_dependencies; // symbols named as the cause
};

struct Skipped {
    std::string name;
    std::string expected;
    std::vector<std::string> arches;  // where it belongs
    std::string basis;                // "kconfig-tree" or "fragment"
    std::string reason;
};

struct Validation {
    Arch arch = Arch::x86_64;
    std::string config_path;
    std::string kconfig_hash;
    size_t requested = 0;           // options the fragments ask for
    size_t satisfied = 0;
    std::vector<Finding> differing;  // every requested option whose value differs (critical ones too)
    std::vector<Finding> critical_lost;
    std::vector<Skipped> skipped;
    std::vector<std::string> notes;
    bool ok() const { return critical_lost.empty(); }
};

// requested: requested_config(fragments); db: tree knowledge, or nullptr for the built-in one.
Validation validate(const Config &final_config, const Config &requested, Arch arch,
                    const KconfigDb *db = nullptr);
ojson to_json(const Validation &v);          // schema ktstr.kconfig-validate/1
std::string to_text(const Validation &v);    // the human report

// ---- apply -------------------------------------------------------------------------------------

struct ApplyOptions {
    std::string tree;                  // kernel source tree
    std::string out;                   // O= build directory; empty = in the tree
    Arch arch = Arch::x86_64;
    std::vector<Fragment> fragments;   // load_fragments()
    double timeout_seconds = 1800;     // per make invocation
    std::string make = "make";
};

struct MakeStep {
    std::string target;
    double seconds = 0;
};

struct ApplyResult {
    std::string config_path;
    bool changed = false;              // false: every directive was already in .config
    std::vector<MakeStep> steps;
    double scan_seconds = 0;
    Validation validation;
};

// Spec 1.3 + early 1.4: make defconfig when .config is missing; when a directive
// is not already an exact line, append the effective fragment and run make
// olddefconfig; then validate against the tree's Kconfig.  On failure the
// previous .config is restored (or removed when there was none) and a build
// directory this call created is removed.
ApplyResult apply(const ApplyOptions &opt);
ojson to_json(const ApplyResult &r, const ApplyOptions &opt);   // schema ktstr.kconfig-apply/1

} // namespace ktstr::kconfig
