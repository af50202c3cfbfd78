// libktstr/kconfig: Kconfig dependency expressions ("depends on A && (B || !C)",
// "PAHOLE_VERSION >= 116"): parsing, tristate evaluation against a .config,
// and explaining why one is false.
#include "expr.h"

#include <cctype>

namespace ktstr::kconfig {

namespace {

struct Lexer {
    std::string_view s;
    size_t pos = 0;

    void skip_space() {
        while (pos < s.size() && std::isspace(static_cast<unsigned char>(s[pos]))) ++pos;
    }
    bool eat(std::string_view tok) {
        skip_space();
        if (s.substr(pos, tok.size()) == tok) {
            pos += tok.size();
            return true;
        }
        return false;
    }
    bool at_end() {
        skip_space();
        return pos >= s.size();
    }
    [[noreturn]] void error(const char *what) {
        fail(ErrorKind::input, "cannot parse Kconfig expression '", s, "': ", what, " at offset ", pos);
    }
};

std::shared_ptr<Expr> make(Expr::Op op, std::string text = {}) {
    auto e = std::make_shared<Expr>();
    e->op = op;
    e->text = std::move(text);
    return e;
}

ExprPtr parse_or(Lexer &lx);

ExprPtr parse_atom(Lexer &lx) {
    lx.skip_space();
    if (lx.pos >= lx.s.size()) lx.error("unexpected end");
    char c = lx.s[lx.pos];
    if (c == '"' || c == '\'') {
        size_t end = lx.s.find(c, lx.pos + 1);
        if (end == std::string_view::npos) lx.error("unterminated string");
        auto e = make(Expr::Op::constant, std::string(lx.s.substr(lx.pos + 1, end - lx.pos - 1)));
        lx.pos = end + 1;
        return e;
    }
    if (c == '$' && lx.pos + 1 < lx.s.size() && lx.s[lx.pos + 1] == '(') {
        // A Kconfig macro ($(success,...)): its value is decided by the build
        // host, unknowable here.
        int depth = 0;
        size_t start = lx.pos;
        for (; lx.pos < lx.s.size(); ++lx.pos) {
            if (lx.s[lx.pos] == '(') ++depth;
            else if (lx.s[lx.pos] == ')' && --depth == 0) break;
        }
        if (lx.pos >= lx.s.size()) lx.error("unterminated $(");
        ++lx.pos;
        return make(Expr::Op::unknown, std::string(lx.s.substr(start, lx.pos - start)));
    }
    size_t start = lx.pos;
    while (lx.pos < lx.s.size() &&
           (std::isalnum(static_cast<unsigned char>(lx.s[lx.pos])) || lx.s[lx.pos] == '_' || lx.s[lx.pos] == '-'))
        ++lx.pos;
    if (start == lx.pos) lx.error("expected a symbol");
    std::string word(lx.s.substr(start, lx.pos - start));
    bool is_const = word == "y" || word == "m" || word == "n" ||
                    std::isdigit(static_cast<unsigned char>(word[0])) || word[0] == '-';
    return make(is_const ? Expr::Op::constant : Expr::Op::symbol, word);
}

ExprPtr parse_primary(Lexer &lx) {
    if (lx.eat("(")) {
        auto e = parse_or(lx);
        if (!lx.eat(")")) lx.error("expected ')'");
        return e;
    }
    auto lhs = parse_atom(lx);
    for (const char *op : {"!=", "<=", ">=", "=", "<", ">"}) {
        if (lx.eat(op)) {
            auto e = make(Expr::Op::compare, op);
            e->kids = {lhs, parse_atom(lx)};
            return e;
        }
    }
    return lhs;
}

ExprPtr parse_unary(Lexer &lx) {
    lx.skip_space();
    if (lx.pos < lx.s.size() && lx.s[lx.pos] == '!' && (lx.pos + 1 >= lx.s.size() || lx.s[lx.pos + 1] != '=')) {
        ++lx.pos;
        auto e = make(Expr::Op::negate);
        e->kids = {parse_unary(lx)};
        return e;
    }
    return parse_primary(lx);
}

ExprPtr parse_binary(Lexer &lx, std::string_view tok, Expr::Op op, ExprPtr (*next)(Lexer &)) {
    auto first = next(lx);
    if (!lx.eat(tok)) return first;
    auto e = make(op);
    e->kids.push_back(first);
    do e->kids.push_back(next(lx));
    while (lx.eat(tok));
    return e;
}

ExprPtr parse_and(Lexer &lx) { return parse_binary(lx, "&&", Expr::Op::all_of, parse_unary); }
ExprPtr parse_or(Lexer &lx) { return parse_binary(lx, "||", Expr::Op::any_of, parse_and); }

int tristate_of(std::string_view v) { return v == "y" ? 2 : v == "m" ? 1 : 0; }

// The value of an atom as text: a symbol's value in the .config ("n" when absent).
std::string text_of(const Expr &atom, const Config &cfg) {
    if (atom.op != Expr::Op::symbol) return atom.text;
    const Entry *e = cfg.find(atom.text);
    return e ? e->value : "n";
}

std::optional<long long> number_of(const std::string &s) {
    try {
        size_t used = 0;
        long long v = std::stoll(s, &used, 0);
        if (used == s.size()) return v;
    } catch (const std::exception &) {
    }
    return std::nullopt;
}

bool compare(const std::string &op, const std::string &a, const std::string &b) {
    auto na = number_of(a), nb = number_of(b);
    if (na && nb) {
        if (op == "=") return *na == *nb;
        if (op == "!=") return *na != *nb;
        if (op == "<") return *na < *nb;
        if (op == "<=") return *na <= *nb;
        if (op == ">") return *na > *nb;
        return *na >= *nb;
    }
    if (op == "=") return a == b;
    if (op == "!=") return a != b;
    return false;
}

void explain_into(const Expr &e, const Config &cfg, std::vector<std::string> &out, std::vector<std::string> *off) {
    switch (e.op) {
    case Expr::Op::symbol: {
        const Entry *entry = cfg.find(e.text);
        out.push_back(entry ? cat(e.text, " is off (", display_value(*entry), ")")
                            : cat(e.text, " is off (not in the .config)"));
        if (off) off->push_back(e.text);
        break;
    }
    case Expr::Op::negate: {
        const Expr &k = *e.kids[0];
        if (k.op == Expr::Op::symbol) out.push_back(cat(k.text, "=", text_of(k, cfg), " must be off"));
        else out.push_back(cat("!(", to_string(k), ") is false"));
        break;
    }
    case Expr::Op::compare:
        out.push_back(cat(to_string(e), " is false (", e.kids[0]->text, "=", text_of(*e.kids[0], cfg), ")"));
        break;
    case Expr::Op::all_of:
        for (auto &k : e.kids)
            if (eval(*k, cfg) == 0) explain_into(*k, cfg, out, off);
        break;
    case Expr::Op::any_of: {
        std::vector<std::string> parts;
        for (auto &k : e.kids) {
            std::vector<std::string> sub;
            explain_into(*k, cfg, sub, off);
            std::string joined;
            for (auto &s : sub) joined += (joined.empty() ? "" : " and ") + s;
            parts.push_back(joined);
        }
        std::string all;
        for (auto &p : parts) all += (all.empty() ? "" : "; ") + p;
        out.push_back(cat("none of its alternatives holds: ", all));
        break;
    }
    case Expr::Op::constant:
        out.push_back(cat("depends on constant ", e.text));
        break;
    case Expr::Op::unknown:
        break;
    }
}

} // namespace

ExprPtr parse_expr(std::string_view text) {
    Lexer lx{text};
    auto e = parse_or(lx);
    if (!lx.at_end()) lx.error("unexpected text");
    return e;
}

int eval(const Expr &e, const Config &cfg) {
    switch (e.op) {
    case Expr::Op::symbol:
    case Expr::Op::constant: return tristate_of(text_of(e, cfg));
    case Expr::Op::unknown: return 2;   // cannot know: do not blame it
    case Expr::Op::negate: return 2 - eval(*e.kids[0], cfg);
    case Expr::Op::compare:
        return compare(e.text, text_of(*e.kids[0], cfg), text_of(*e.kids[1], cfg)) ? 2 : 0;
    case Expr::Op::all_of: {
        int v = 2;
        for (auto &k : e.kids) v = std::min(v, eval(*k, cfg));
        return v;
    }
    case Expr::Op::any_of: {
        int v = 0;
        for (auto &k : e.kids) v = std::max(v, eval(*k, cfg));
        return v;
    }
    }
    return 0;
}

std::string to_string(const Expr &e) {
    switch (e.op) {
    case Expr::Op::symbol:
    case Expr::Op::unknown: return e.text;
    case Expr::Op::constant: return e.text;
    case Expr::Op::negate: {
        const Expr &k = *e.kids[0];
        bool simple = k.op == Expr::Op::symbol || k.op == Expr::Op::constant;
        return simple ? "!" + to_string(k) : "!(" + to_string(k) + ")";
    }
    case Expr::Op::compare: return to_string(*e.kids[0]) + " " + e.text + " " + to_string(*e.kids[1]);
    case Expr::Op::all_of:
    case Expr::Op::any_of: {
        std::string out;
        for (auto &k : e.kids) {
            bool wrap = e.op == Expr::Op::all_of && k->op == Expr::Op::any_of;
            std::string s = wrap ? "(" + to_string(*k) + ")" : to_string(*k);
            out += (out.empty() ? "" : e.op == Expr::Op::all_of ? " && " : " || ") + s;
        }
        return out;
    }
    }
    return {};
}

int eval_expr(const std::string &expr, const Config &config) { return eval(*parse_expr(expr), config); }

std::vector<std::string> explain_false(const std::string &expr, const Config &config,
                                       std::vector<std::string> *off_symbols) {
    auto e = parse_expr(expr);
    std::vector<std::string> out;
    if (eval(*e, config) == 0) explain_into(*e, config, out, off_symbols);
    return out;
}

} // namespace ktstr::kconfig
