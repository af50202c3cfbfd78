// libktstr/kconfig: architectures and the .config / fragment parser.
#include "ktstr/kconfig.h"

#include <sys/utsname.h>

namespace ktstr::kconfig {

Arch parse_arch(const std::string &name) {
    if (name == "x86_64") return Arch::x86_64;
    if (name == "aarch64" || name == "arm64") return Arch::aarch64;
    fail(ErrorKind::usage, "unknown architecture '", name, "' (valid: x86_64, aarch64)");
}

Arch host_arch() {
    utsname u{};
    if (::uname(&u) == 0 && std::string_view(u.machine) == "aarch64") return Arch::aarch64;
    return Arch::x86_64;
}

const char *arch_name(Arch a) { return a == Arch::x86_64 ? "x86_64" : "aarch64"; }
const char *kernel_arch_dir(Arch a) { return a == Arch::x86_64 ? "x86" : "arm64"; }
const char *make_arch(Arch a) { return a == Arch::x86_64 ? "x86_64" : "arm64"; }

std::string display_value(const Entry &e) {
    if (e.kind == Entry::Kind::string) {
        std::string out = "\"";
        for (char c : e.value) {
            if (c == '"' || c == '\\') out += '\\';
            out += c;
        }
        return out + "\"";
    }
    if (e.kind == Entry::Kind::tristate && e.value == "n") return "is not set";
    return e.value;
}

const Entry *Config::find(const std::string &name) const {
    auto it = index.find(name);
    return it == index.end() ? nullptr : &entries[it->second];
}

bool Config::set(Entry e) {
    auto [it, inserted] = index.try_emplace(e.name, entries.size());
    if (!inserted) {
        entries[it->second] = std::move(e);
        return true;
    }
    entries.push_back(std::move(e));
    return false;
}

namespace {

bool is_symbol_char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

bool is_symbol(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s)
        if (!is_symbol_char(c)) return false;
    return true;
}

bool all_digits(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s)
        if (c < '0' || c > '9') return false;
    return true;
}

bool all_hex(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) return false;
    return true;
}

// The value after '=': y/m/n, "string", number or hex; nullopt when malformed.
std::optional<std::pair<Entry::Kind, std::string>> parse_value(std::string_view v) {
    if (v == "y" || v == "m" || v == "n") return std::pair{Entry::Kind::tristate, std::string(v)};
    if (!v.empty() && v.front() == '"') {
        std::string out;
        for (size_t i = 1; i < v.size(); ++i) {
            char c = v[i];
            if (c == '\\') {
                if (i + 1 >= v.size()) return std::nullopt;
                out += v[++i];
            } else if (c == '"') {
                if (i + 1 != v.size()) return std::nullopt;   // text after the closing quote
                return std::pair{Entry::Kind::string, out};
            } else {
                out += c;
            }
        }
        return std::nullopt;   // no closing quote
    }
    if (v.size() > 2 && v[0] == '0' && (v[1] == 'x' || v[1] == 'X') && all_hex(v.substr(2)))
        return std::pair{Entry::Kind::hex, std::string(v)};
    std::string_view digits = !v.empty() && v[0] == '-' ? v.substr(1) : v;
    if (all_digits(digits)) return std::pair{Entry::Kind::number, std::string(v)};
    return std::nullopt;
}

[[noreturn]] void malformed(const std::string &file, int line, std::string_view text, const char *what) {
    fail(ErrorKind::input, file, ":", line, ": malformed line '", text, "': ", what);
}

constexpr const char *EXPECTED =
    "expected CONFIG_NAME=VALUE (y, m, n, \"string\", number or 0x hex), "
    "'# CONFIG_NAME is not set', a comment or a blank line";

// "# only-arch ARCH: SYM SYM..." (a comment to kconfig, a statement to us).
void parse_only_arch(std::string_view body, const std::string &file, int line, std::string_view text, Config &c) {
    auto colon = body.find(':');
    if (colon == std::string_view::npos) malformed(file, line, text, "expected '# only-arch ARCH: SYMBOL...'");
    std::string arch_word(trim(body.substr(0, colon)));
    Arch arch;
    try {
        arch = parse_arch(arch_word);
    } catch (const Error &) {
        fail(ErrorKind::input, file, ":", line, ": unknown architecture '", arch_word,
             "' in only-arch tag (valid: x86_64, aarch64)");
    }
    auto syms = split(body.substr(colon + 1), ' ', false);
    if (syms.empty()) malformed(file, line, text, "only-arch tag names no symbol");
    for (auto &s : syms) {
        std::string_view sym = trim(s);
        if (starts_with(sym, "CONFIG_")) sym.remove_prefix(7);
        if (!is_symbol(sym)) malformed(file, line, text, "only-arch tag: not a symbol name");
        c.only_arch[std::string(sym)] = arch;
    }
}

} // namespace

Config parse(std::string_view text, const std::string &file) {
    Config c;
    c.index.reserve(text.size() / 24);   // about one assignment per 24 bytes of a .config
    int line_no = 0;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t nl = text.find('\n', pos);
        std::string_view raw = text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
        pos = nl == std::string_view::npos ? text.size() : nl + 1;
        ++line_no;
        std::string_view line = trim(raw);   // also drops the CR of CRLF
        if (line.empty()) continue;
        Entry e;
        e.file = file;
        e.line = line_no;
        if (line[0] == '#') {
            std::string_view body = trim(line.substr(1));
            constexpr std::string_view not_set = " is not set";
            if (starts_with(body, "CONFIG_") && ends_with(body, not_set) &&
                is_symbol(body.substr(7, body.size() - 7 - not_set.size()))) {
                e.name = std::string(body.substr(7, body.size() - 7 - not_set.size()));
                e.value = "n";
            } else if (starts_with(body, "only-arch ")) {
                parse_only_arch(body.substr(10), file, line_no, line, c);
                continue;
            } else {
                continue;   // an ordinary comment (including commented-out opt-ins)
            }
        } else {
            if (!starts_with(line, "CONFIG_")) malformed(file, line_no, line, EXPECTED);
            auto eq = line.find('=');
            if (eq == std::string_view::npos || !is_symbol(line.substr(7, eq - 7)))
                malformed(file, line_no, line, EXPECTED);
            auto v = parse_value(line.substr(eq + 1));
            if (!v) malformed(file, line_no, line, EXPECTED);
            e.name = std::string(line.substr(7, eq - 7));
            e.kind = v->first;
            e.value = v->second;
        }
        if (const Entry *prev = c.find(e.name))
            c.warnings.push_back(cat(file, ":", line_no, ": CONFIG_", e.name, " assigned again (line ", prev->line,
                                     "); the later value (", e.kind == Entry::Kind::tristate ? e.value : display_value(e), ") wins"));
        c.set(std::move(e));
    }
    return c;
}

Config parse_file(const std::string &path) { return parse(read_file(path), path); }

} // namespace ktstr::kconfig
