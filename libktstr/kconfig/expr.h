// libktstr/kconfig (private): the Kconfig expression tree shared by the
// evaluator and the tree scanner.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ktstr/kconfig.h"

namespace ktstr::kconfig {

struct Expr;
using ExprPtr = std::shared_ptr<const Expr>;

struct Expr {
    // symbol: text = name; constant: y/m/n/number/string; unknown: a $(macro);
    // compare: text = operator, kids = {lhs, rhs}; negate: kids = {x};
    // all_of / any_of: && / || over kids.
    enum class Op { symbol, constant, unknown, negate, compare, all_of, any_of };
    Op op = Op::constant;
    std::string text;
    std::vector<ExprPtr> kids;
};

// Error(input) naming the expression when it cannot be parsed.
ExprPtr parse_expr(std::string_view text);
int eval(const Expr &e, const Config &cfg);   // 0 n, 1 m, 2 y
std::string to_string(const Expr &e);

} // namespace ktstr::kconfig
