// libktstr/kconfig: what a kernel tree's Kconfig files say about symbols.
//
// Only what validation needs is read: where each symbol is declared, whether it
// has a prompt or a default, its "depends on" lines (with the conditions of the
// enclosing if/menu/choice blocks) and who selects it.  From that follows on
// which architectures a symbol can be enabled at all:
//   - a declaration under arch/A/ exists only on A, one elsewhere everywhere;
//   - "depends on" narrows it (&& intersects, || unites, a symbol recurses);
//   - a symbol without prompt and default can only be selected, so it exists
//     only where one of its selectors does (ARM_AMBA: selected by ARM, ARM64).
#include "expr.h"

#include <algorithm>
#include <functional>
#include <set>

#include <dirent.h>
#include <sys/stat.h>

namespace ktstr::kconfig {

namespace {

struct Decl {
    std::string arch;                   // arch dir name, empty = generic
    bool prompt = false;
    bool has_default = false;
    std::vector<std::string> depends;   // expressions (container conditions included)
    std::string prompt_if;              // "bool \"text\" if EXPR": the prompt shows only when EXPR holds
};

struct Selector {
    std::string symbol;
    std::string arch;
    std::string cond;   // "if ..." condition, empty = always
};

bool is_dir(const std::string &p) {
    struct stat st{};
    return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Columns of leading whitespace (tabs to multiples of 8), as Kconfig's help
// text rule counts them.
size_t indent_of(std::string_view line) {
    size_t col = 0;
    for (char c : line) {
        if (c == ' ') ++col;
        else if (c == '\t') col = (col / 8 + 1) * 8;
        else break;
    }
    return col;
}

// Drop a '#' comment that is not inside quotes.
std::string_view strip_comment(std::string_view s) {
    char quote = 0;
    for (size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (quote) {
            if (c == '\\') ++i;
            else if (c == quote) quote = 0;
        } else if (c == '"' || c == '\'') {
            quote = c;
        } else if (c == '#') {
            return s.substr(0, i);
        }
    }
    return s;
}

std::string first_word(std::string_view s, std::string_view *rest) {
    s = trim(s);
    size_t end = 0;
    while (end < s.size() && !std::isspace(static_cast<unsigned char>(s[end]))) ++end;
    if (rest) *rest = trim(s.substr(end));
    return std::string(s.substr(0, end));
}

// "select FOO if BAR" -> {"FOO", "BAR"}
std::pair<std::string, std::string> split_if(std::string_view rest) {
    std::string_view tail;
    std::string sym = first_word(rest, &tail);
    if (starts_with(tail, "if ")) return {sym, std::string(trim(tail.substr(3)))};
    return {sym, ""};
}

} // namespace

struct KconfigDb::Impl {
    bool from_tree = false;
    std::string root;
    std::vector<std::string> arches;                      // arch dir names, sorted
    std::unordered_map<std::string, std::vector<Decl>> decls;
    std::unordered_map<std::string, std::vector<Selector>> selected_by;
    std::set<std::string> visited;
    mutable std::unordered_map<std::string, uint64_t> possible_memo;
    mutable std::unordered_map<std::string, ExprPtr> expr_memo;

    uint64_t all_mask() const { return arches.size() >= 64 ? ~0ull : (1ull << arches.size()) - 1; }
    uint64_t arch_mask(const std::string &arch) const {
        if (arch.empty()) return all_mask();
        auto it = std::lower_bound(arches.begin(), arches.end(), arch);
        return it != arches.end() && *it == arch ? 1ull << (it - arches.begin()) : 0;
    }

    ExprPtr expr(const std::string &text) const {
        auto it = expr_memo.find(text);
        if (it != expr_memo.end()) return it->second;
        ExprPtr e;
        try {
            e = parse_expr(text);
        } catch (const Error &) {
            e = nullptr;   // an expression we cannot read narrows nothing
        }
        expr_memo.emplace(text, e);
        return e;
    }

    uint64_t possible_expr(const Expr &e) const {
        switch (e.op) {
        case Expr::Op::symbol: return possible(e.text);
        case Expr::Op::constant: return e.text == "n" ? 0 : all_mask();
        case Expr::Op::compare: {
            // FOO=y, FOO=m, FOO!=n need FOO; anything else narrows nothing.
            const Expr &l = *e.kids[0], &r = *e.kids[1];
            if (l.op == Expr::Op::symbol && r.op == Expr::Op::constant &&
                ((e.text == "=" && (r.text == "y" || r.text == "m")) || (e.text == "!=" && r.text == "n")))
                return possible(l.text);
            return all_mask();
        }
        case Expr::Op::all_of: {
            uint64_t m = all_mask();
            for (auto &k : e.kids) m &= possible_expr(*k);
            return m;
        }
        case Expr::Op::any_of: {
            uint64_t m = 0;
            for (auto &k : e.kids) m |= possible_expr(*k);
            return m;
        }
        case Expr::Op::negate:
        case Expr::Op::unknown: return all_mask();
        }
        return all_mask();
    }

    uint64_t possible_text(const std::string &text) const {
        ExprPtr e = expr(text);
        return e ? possible_expr(*e) : all_mask();
    }

    uint64_t possible(const std::string &sym) const {
        auto memo = possible_memo.find(sym);
        if (memo != possible_memo.end()) return memo->second;
        auto it = decls.find(sym);
        if (it == decls.end()) return 0;   // declared nowhere: can never be set
        possible_memo[sym] = all_mask();   // a dependency cycle narrows nothing
        uint64_t selectable = 0;
        bool selectors_known = false;
        uint64_t result = 0;
        for (auto &d : it->second) {
            uint64_t m = arch_mask(d.arch);
            for (auto &dep : d.depends) m &= possible_text(dep);
            if (!d.prompt && !d.has_default) {
                if (!selectors_known) {
                    selectors_known = true;
                    auto sel = selected_by.find(sym);
                    if (sel != selected_by.end())
                        for (auto &s : sel->second) {
                            uint64_t sm = arch_mask(s.arch) & possible(s.symbol);
                            if (!s.cond.empty()) sm &= possible_text(s.cond);
                            selectable |= sm;
                        }
                }
                m &= selectable;
            }
            result |= m;
        }
        possible_memo[sym] = result;
        return result;
    }

    void parse_file(const std::string &rel, const std::vector<std::string> &inherited);
};

void KconfigDb::Impl::parse_file(const std::string &rel, const std::vector<std::string> &inherited) {
    if (!visited.insert(rel).second) return;
    auto text = try_read_file(root + "/" + rel);
    if (!text) return;   // osource of an absent file, or an unreadable one: nothing to learn
    std::string arch;
    if (starts_with(rel, "arch/")) {
        auto slash = rel.find('/', 5);
        if (slash != std::string::npos) arch = rel.substr(5, slash - 5);
    }
    std::string dir = rel.find('/') == std::string::npos ? "" : rel.substr(0, rel.rfind('/') + 1);

    // Containers: if/menu/choice blocks whose conditions apply to what they hold.
    struct Container { std::string kind; std::vector<std::string> deps; };
    std::vector<Container> stack;
    auto container_deps = [&] {
        std::vector<std::string> d = inherited;
        for (auto &c : stack) d.insert(d.end(), c.deps.begin(), c.deps.end());
        return d;
    };
    Decl *cur = nullptr;                 // the config entry being read
    std::string cur_sym;
    std::vector<std::string> *cur_deps = nullptr;   // where "depends on" goes
    size_t help_indent = 0;
    bool in_help = false, help_started = false;

    auto lines = split(*text, '\n');
    for (size_t i = 0; i < lines.size(); ++i) {
        std::string line = lines[i];
        while (!line.empty() && line.back() == '\\' && i + 1 < lines.size()) {
            line.pop_back();
            line += lines[++i];
        }
        if (in_help) {
            if (trim(line).empty()) continue;
            size_t ind = indent_of(line);
            if (!help_started) {
                help_started = true;
                help_indent = ind;
                continue;
            }
            if (ind >= help_indent && ind > 0) continue;
            in_help = false;
        }
        std::string_view body = trim(strip_comment(line));
        if (body.empty()) continue;
        std::string_view rest;
        std::string kw = first_word(body, &rest);
        if (kw == "config" || kw == "menuconfig") {
            cur_sym = first_word(rest, nullptr);
            auto &v = decls[cur_sym];
            v.push_back(Decl{arch, false, false, container_deps(), ""});
            cur = &v.back();
            cur_deps = &cur->depends;
        } else if (kw == "menu" || kw == "choice") {
            stack.push_back({kw, {}});
            cur = nullptr;
            cur_deps = &stack.back().deps;
        } else if (kw == "if") {
            stack.push_back({"if", {std::string(rest)}});
            cur = nullptr;
            cur_deps = nullptr;
        } else if (kw == "endif" || kw == "endmenu" || kw == "endchoice") {
            if (!stack.empty()) stack.pop_back();
            cur = nullptr;
            cur_deps = nullptr;
        } else if (kw == "comment" || kw == "mainmenu") {
            cur = nullptr;
            cur_deps = nullptr;   // a comment's own "depends on" concerns only it
        } else if (kw == "source" || kw == "rsource" || kw == "osource" || kw == "orsource") {
            std::string path(trim(rest));
            if (path.size() >= 2 && path.front() == '"' && path.back() == '"') path = path.substr(1, path.size() - 2);
            if (kw == "rsource" || kw == "orsource") path = dir + path;
            constexpr std::string_view srcarch = "$(SRCARCH)";
            if (auto at = path.find(srcarch); at != std::string::npos) {
                // arch/$(SRCARCH)/Kconfig.debug and the like: every architecture's.
                for (auto &a : arches) {
                    std::string p = path;
                    p.replace(at, srcarch.size(), a);
                    if (p.find('$') == std::string::npos) parse_file(p, container_deps());
                }
            } else if (path.find('$') == std::string::npos && path.find('*') == std::string::npos) {
                parse_file(path, container_deps());
            }
            cur = nullptr;
            cur_deps = nullptr;
        } else if (kw == "depends") {
            std::string_view expr_text;
            if (first_word(rest, &expr_text) == "on" && cur_deps) cur_deps->push_back(std::string(expr_text));
        } else if (kw == "visible") {
            // "visible if" hides a menu's prompts but leaves defaults working: not a dependency.
        } else if (kw == "help" || kw == "---help---") {
            in_help = true;
            help_started = false;
        } else if (!cur) {
            continue;
        } else if (kw == "bool" || kw == "tristate" || kw == "int" || kw == "hex" || kw == "string" || kw == "prompt") {
            if (!rest.empty() && (rest[0] == '"' || rest[0] == '\'')) {
                cur->prompt = true;
                size_t close = rest.find(rest[0], 1);
                std::string_view after = close == std::string_view::npos ? "" : trim(rest.substr(close + 1));
                if (starts_with(after, "if ")) cur->prompt_if = std::string(trim(after.substr(3)));
            }
        } else if (kw == "def_bool" || kw == "def_tristate" || kw == "default") {
            cur->has_default = true;
        } else if (kw == "select") {
            auto [sym, cond] = split_if(rest);
            selected_by[sym].push_back({cur_sym, arch, cond});
        }
    }
}

KconfigDb::KconfigDb() : impl_(std::make_unique<Impl>()) {}
KconfigDb::KconfigDb(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
KconfigDb::~KconfigDb() = default;
KconfigDb::KconfigDb(KconfigDb &&) noexcept = default;
KconfigDb &KconfigDb::operator=(KconfigDb &&) noexcept = default;

KconfigDb KconfigDb::scan(const std::string &tree) {
    if (!is_dir(tree)) fail(ErrorKind::input, tree, ": not a directory (expected a kernel source tree)");
    struct stat st{};
    if (::stat((tree + "/Makefile").c_str(), &st) != 0 || ::stat((tree + "/Kconfig").c_str(), &st) != 0)
        fail(ErrorKind::input, tree, ": not a kernel source tree (missing Makefile or Kconfig)");
    if (!try_read_file(tree + "/Kconfig")) fail_errno(ErrorKind::input, tree + "/Kconfig");
    auto impl = std::make_unique<Impl>();
    impl->from_tree = true;
    impl->root = tree;
    if (DIR *d = ::opendir((tree + "/arch").c_str())) {
        while (dirent *de = ::readdir(d)) {
            std::string name = de->d_name;
            if (name[0] != '.' && ::stat((tree + "/arch/" + name + "/Kconfig").c_str(), &st) == 0)
                impl->arches.push_back(name);
        }
        ::closedir(d);
    }
    std::sort(impl->arches.begin(), impl->arches.end());
    // The top file sources arch/$(SRCARCH)/Kconfig: every architecture's is read.
    impl->parse_file("Kconfig", {});
    return KconfigDb(std::move(impl));
}

// The dependencies of the critical options as Linux 6.12 declares them
// (kernel/Kconfig.preempt, lib/Kconfig.debug, kernel/trace/Kconfig, arch/Kconfig,
// init/Kconfig, usr/Kconfig, drivers/tty/serial/8250/Kconfig): enough to name
// the cause of a loss when no tree is at hand.
const KconfigDb &KconfigDb::builtin() {
    static const KconfigDb db = [] {
        auto impl = std::make_unique<Impl>();
        auto add = [&](const char *sym, std::vector<std::string> deps) {
            impl->decls[sym].push_back(Decl{"", true, false, std::move(deps), ""});
        };
        add("SCHED_CLASS_EXT", {"BPF_SYSCALL && BPF_JIT && DEBUG_INFO_BTF"});
        add("DEBUG_INFO_BTF", {"DEBUG_INFO", "!DEBUG_INFO_SPLIT && !DEBUG_INFO_REDUCED",
                               "!GCC_PLUGIN_RANDSTRUCT || COMPILE_TEST", "BPF_SYSCALL",
                               "PAHOLE_VERSION >= 116", "DEBUG_INFO_DWARF4 || PAHOLE_VERSION >= 121"});
        add("KPROBES", {"MODULES", "HAVE_KPROBES"});
        add("KPROBE_EVENTS", {"FTRACE", "KPROBES", "HAVE_REGS_AND_STACK_ACCESS_API"});
        add("BPF_EVENTS", {"FTRACE", "BPF_SYSCALL", "KPROBE_EVENTS || UPROBE_EVENTS", "PERF_EVENTS"});
        add("FUNCTION_TRACER", {"FTRACE", "HAVE_FUNCTION_TRACER"});
        add("BPF_JIT", {"BPF", "HAVE_CBPF_JIT || HAVE_EBPF_JIT"});
        add("CPUSETS", {"CGROUPS", "SMP"});
        add("CGROUP_SCHED", {"CGROUPS"});
        add("SERIAL_8250", {"TTY", "HAS_IOMEM"});
        return KconfigDb(std::move(impl));
    }();
    return db;
}

bool KconfigDb::from_tree() const { return impl_->from_tree; }
bool KconfigDb::declares(const std::string &sym) const { return impl_->decls.count(sym) != 0; }
size_t KconfigDb::symbol_count() const { return impl_->decls.size(); }

std::optional<std::vector<std::string>> KconfigDb::only_on(const std::string &sym) const {
    if (!impl_->from_tree || !declares(sym)) return std::nullopt;
    uint64_t m = impl_->possible(sym);
    if (m == impl_->all_mask()) return std::nullopt;
    std::vector<std::string> out;
    for (size_t i = 0; i < impl_->arches.size(); ++i)
        if (m & (1ull << i)) out.push_back(impl_->arches[i]);
    return out;
}

std::vector<std::string> KconfigDb::depends(const std::string &sym, Arch arch) const {
    std::vector<std::string> out;
    auto it = impl_->decls.find(sym);
    if (it == impl_->decls.end()) return out;
    for (auto &d : it->second)
        if (d.arch.empty() || d.arch == kernel_arch_dir(arch))
            for (auto &dep : d.depends)
                if (std::find(out.begin(), out.end(), dep) == out.end()) out.push_back(dep);
    return out;
}

std::vector<std::string> KconfigDb::why_forced_on(const std::string &sym, Arch arch, const Config &config) const {
    std::vector<std::string> out;
    auto sel = impl_->selected_by.find(sym);
    if (sel != impl_->selected_by.end())
        for (auto &s : sel->second) {
            if (!s.arch.empty() && s.arch != kernel_arch_dir(arch)) continue;
            const Entry *e = config.find(s.symbol);
            if (!e || e->value == "n") continue;
            try {
                if (!s.cond.empty() && eval_expr(s.cond, config) == 0) continue;
            } catch (const Error &) {
            }
            out.push_back(cat("selected by ", s.symbol, "=", e->value, s.cond.empty() ? "" : " (if " + s.cond + ")"));
        }
    auto it = impl_->decls.find(sym);
    if (it == impl_->decls.end()) return out;
    for (auto &d : it->second) {
        if (!d.arch.empty() && d.arch != kernel_arch_dir(arch)) continue;
        if (!d.has_default) continue;
        if (!d.prompt) {
            out.push_back("has no prompt, so its default applies and a fragment cannot turn it off");
        } else if (!d.prompt_if.empty()) {
            try {
                if (eval_expr(d.prompt_if, config) == 0)
                    out.push_back(cat("its prompt shows only if ", d.prompt_if,
                                      ", which is false here, so its default applies and a fragment cannot turn it off"));
            } catch (const Error &) {
            }
        }
    }
    return out;
}

} // namespace ktstr::kconfig
