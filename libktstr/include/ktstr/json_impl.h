// Template bodies for ktstr/json.h.
#pragma once

#include "ktstr/util.h"

namespace ktstr {
namespace detail {
const char *json_type_word(const json &j);
template <typename T> const char *expected_word() {
    if constexpr (std::is_same_v<T, bool>) return "boolean";
    else if constexpr (std::is_arithmetic_v<T>) return "number";
    else if constexpr (std::is_same_v<T, std::string>) return "string";
    else return "value of the documented shape";
}
template <typename T> bool json_is(const json &j) {
    if constexpr (std::is_same_v<T, bool>) return j.is_boolean();
    else if constexpr (std::is_unsigned_v<T>) return j.is_number_unsigned() || (j.is_number_integer() && j.get<int64_t>() >= 0);
    else if constexpr (std::is_integral_v<T>) return j.is_number_integer();
    else if constexpr (std::is_floating_point_v<T>) return j.is_number();
    else if constexpr (std::is_same_v<T, std::string>) return j.is_string();
    else return true;
}
} // namespace detail

template <typename T>
T get_field(const json &doc, const std::string &field, const std::string &where) {
    if (!doc.is_object() || !doc.contains(field))
        fail(ErrorKind::input, where, ": missing field '", field, "'");
    const json &v = doc.at(field);
    if (!detail::json_is<T>(v))
        fail(ErrorKind::input, where, ": field '", field, "': expected ", detail::expected_word<T>(),
             ", got ", detail::json_type_word(v));
    try {
        return v.get<T>();
    } catch (const std::exception &e) {
        fail(ErrorKind::input, where, ": field '", field, "': ", e.what());
    }
}

template <typename T>
T get_field_or(const json &doc, const std::string &field, const T &dflt, const std::string &where) {
    if (!doc.is_object() || !doc.contains(field) || doc.at(field).is_null()) return dflt;
    return get_field<T>(doc, field, where);
}
} // namespace ktstr
